"""The metrics against independent re-implementations of the official definitions.

References written here from the formulas of the ASVspoof evaluation packages (2019 ``eval_metrics.py``:
``compute_det_curve``/``compute_eer``/``compute_tDCF_legacy``; 2021: ``compute_tDCF``; ASVspoof 5
``calculate_modules.py``: ``compute_mindcf``/``compute_actDCF``/``calculate_CLLR``; ``a_dcf.py``:
``calculate_a_dcf``) and, for the tie convention sddkit documents instead (one operating point per
*distinct* score, accept iff ``score >= threshold``), a brute force over every realisable threshold.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from sddkit.metrics import (
    ADCFCost,
    ASVRates,
    DCFCost,
    TDCFCost,
    a_dcf,
    act_dcf,
    bootstrap_ci,
    cllr,
    eer,
    min_cllr,
    min_dcf,
    min_tdcf_2019,
    min_tdcf_2021,
)

# --- references -----------------------------------------------------------------------------------


def _official_det(bona: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One operating point per *trial*, as the official ``compute_det_curve`` (mergesort, bona fide first)."""
    scores = np.concatenate([bona, spoof])
    is_bona = np.concatenate([np.ones(bona.size), np.zeros(spoof.size)])[np.argsort(scores, kind="mergesort")]
    bona_below = np.cumsum(is_bona)
    spoof_above = spoof.size - (np.arange(1, scores.size + 1) - bona_below)
    return np.r_[0.0, bona_below / bona.size], np.r_[1.0, spoof_above / spoof.size]


def _official_eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    frr, far = _official_det(bona, spoof)
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2)


def _realisable_rates(bona: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, miss, fa) for every threshold a rule ``score >= t`` can realise, lowest first."""
    thresholds = np.r_[np.unique(np.concatenate([bona, spoof])), np.inf]
    miss = np.array([np.mean(bona < t) for t in thresholds])
    fa = np.array([np.mean(spoof >= t) for t in thresholds])
    return thresholds, miss, fa


def _brute_eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    _, miss, fa = _realisable_rates(bona, spoof)
    i = int(np.argmin(np.abs(miss - fa)))
    return float((miss[i] + fa[i]) / 2)


def _official_min_dcf(frr, far, p_spoof=0.05, c_miss=1.0, c_fa=10.0) -> float:
    best = min(c_miss * (1 - p_spoof) * m + c_fa * p_spoof * f for m, f in zip(frr, far))
    return best / min(c_miss * (1 - p_spoof), c_fa * p_spoof)


def _official_act_dcf(bona, spoof, p_spoof=0.05, c_miss=1.0, c_fa=10.0) -> float:
    threshold = -math.log(c_miss * (1 - p_spoof) / (c_fa * p_spoof))
    cost = c_miss * (1 - p_spoof) * np.mean(bona < threshold) + c_fa * p_spoof * np.mean(spoof >= threshold)
    return float(cost / min(c_fa * p_spoof, c_miss * (1 - p_spoof)))


def _official_cllr(bona, spoof) -> float:
    return float(0.5 * (np.mean(np.log1p(np.exp(-bona))) + np.mean(np.log1p(np.exp(spoof)))) / math.log(2))


def _pav(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Plain pool-adjacent-violators: the non-decreasing weighted least-squares fit of ``values``."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, weights):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2, c2), (m1, w1, c1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return np.concatenate([np.full(c, m) for m, _, c in blocks])


def _reference_min_cllr(bona: np.ndarray, spoof: np.ndarray) -> float:
    scores = np.concatenate([bona, spoof])
    is_bona = np.concatenate([np.ones(bona.size), np.zeros(spoof.size)])
    # tied scores must share one calibrated value: fit PAV on the per-distinct-score bona fide fraction
    distinct, inverse = np.unique(scores, return_inverse=True)
    counts = np.bincount(inverse)
    fraction = np.bincount(inverse, weights=is_bona) / counts
    posterior = _pav(fraction, counts)[inverse]
    prior_log_odds = math.log(bona.size / spoof.size)
    with np.errstate(divide="ignore"):
        llr = np.log(posterior) - np.log(1 - posterior) - prior_log_odds
    tar, non = llr[is_bona == 1], llr[is_bona == 0]
    return float((np.logaddexp(0, -tar).mean() + np.logaddexp(0, non).mean()) / (2 * math.log(2)))


def _tdcf_constants_2019(asv: ASVRates, p_tar=0.9405, p_non=0.0095, p_spoof=0.05, c_miss=1.0, c_fa=10.0):
    c1 = p_tar * (c_miss - c_miss * asv.pmiss) - p_non * c_fa * asv.pfa
    c2 = c_fa * p_spoof * (1 - asv.pmiss_spoof)
    return c1, c2


def _official_adcf_curve(tar, non, spf):
    """``compute_a_det_curve`` of the ASVspoof 5 package: one point per trial, mergesort order."""
    scores = np.concatenate([tar, non, spf])
    kind = np.concatenate([np.ones(tar.size), np.zeros(non.size), np.full(spf.size, 2)])
    kind = kind[np.argsort(scores, kind="mergesort")]
    miss = np.r_[0.0, np.cumsum(kind == 1) / tar.size]
    fa_non = np.r_[1.0, 1 - np.cumsum(kind == 0) / non.size]
    fa_spf = np.r_[1.0, 1 - np.cumsum(kind == 2) / spf.size]
    return miss, fa_non, fa_spf


def _official_adcf(tar, non, spf, p_tar=0.9405, p_non=0.0095, p_spf=0.05, c_miss=1.0, c_fa_asv=10.0, c_fa_cm=10.0):
    miss, fa_non, fa_spf = _official_adcf_curve(tar, non, spf)
    raw = c_miss * p_tar * miss + c_fa_asv * p_non * fa_non + c_fa_cm * p_spf * fa_spf
    return float(np.min(raw / min(c_fa_asv * p_non + c_fa_cm * p_spf, c_miss * p_tar)))


# --- score sets -----------------------------------------------------------------------------------

_RNG = np.random.default_rng(20240601)
TIE_FREE = {
    "one_each_separated": (np.array([1.0]), np.array([-1.0])),
    "one_each_inverted": (np.array([-1.0]), np.array([1.0])),
    "perfectly_separated": (np.array([2.0, 3.5, 4.0]), np.array([-3.0, -1.0, 0.5, 1.0])),
    "inverted": (np.array([-2.0, -3.5, -4.0]), np.array([3.0, 1.0, 0.5, 1.5])),
    "random_300": (_RNG.normal(1.0, 1.5, 180), _RNG.normal(-1.0, 1.5, 120)),
    "random_overlap": (_RNG.normal(0.2, 1.0, 90), _RNG.normal(0.0, 1.0, 310)),
}
TIED = {
    "all_tied": (np.array([0.0, 0.0]), np.array([0.0, 0.0, 0.0])),
    "tie_across_classes": (np.array([0.9, 0.5, 0.5, 0.1]), np.array([0.5, 0.5, -0.2])),
    "rounded_random": (np.round(_RNG.normal(1.0, 1.0, 200), 1), np.round(_RNG.normal(0.0, 1.0, 150), 1)),
}


def _labels(bona, spoof):
    return np.r_[np.ones(bona.size, int), np.zeros(spoof.size, int)], np.r_[bona, spoof]


# --- EER ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TIE_FREE))
def test_eer_equals_the_official_compute_eer_on_tie_free_scores(name):
    bona, spoof = TIE_FREE[name]
    result = eer(*_labels(bona, spoof))
    assert result.eer == pytest.approx(_official_eer(bona, spoof), abs=1e-15)
    # the threshold is realisable with sddkit's rule: the rates at it give back the same EER
    miss, fa = np.mean(bona < result.threshold), np.mean(spoof >= result.threshold)
    assert (miss + fa) / 2 == pytest.approx(result.eer, abs=1e-15)


@pytest.mark.parametrize("name", sorted(TIE_FREE) + sorted(TIED))
def test_eer_equals_the_brute_force_over_realisable_thresholds(name):
    bona, spoof = {**TIE_FREE, **TIED}[name]
    assert eer(*_labels(bona, spoof)).eer == pytest.approx(_brute_eer(bona, spoof), abs=1e-15)


def test_eer_on_ties_departs_from_the_official_walk_as_documented():
    # official: trial-by-trial through a tie gives an unrealisable point; one bona fide and one spoof,
    # both at 0, come out at 100 % there, 50 % here (no threshold separates them)
    bona, spoof = np.array([0.0]), np.array([0.0])
    assert _official_eer(bona, spoof) == 1.0
    assert eer(*_labels(bona, spoof)).eer == 0.5


def test_eer_of_the_hand_cases():
    assert eer(*_labels(*TIE_FREE["perfectly_separated"])).eer == 0.0
    assert eer(*_labels(*TIE_FREE["inverted"])).eer == 1.0
    assert eer(*_labels(*TIE_FREE["one_each_inverted"])).eer == 1.0


# --- minDCF / actDCF (ASVspoof 5 track 1: P_spoof 0.05, C_miss 1, C_fa 10) ------------------------


@pytest.mark.parametrize("name", sorted(TIE_FREE))
def test_min_dcf_equals_the_official_compute_mindcf_on_tie_free_scores(name):
    bona, spoof = TIE_FREE[name]
    frr, far = _official_det(bona, spoof)
    assert min_dcf(*_labels(bona, spoof)).dcf == pytest.approx(_official_min_dcf(frr, far), abs=1e-12)


@pytest.mark.parametrize("name", sorted(TIED))
def test_min_dcf_on_ties_is_the_best_realisable_threshold(name):
    bona, spoof = TIED[name]
    _, miss, fa = _realisable_rates(bona, spoof)
    assert min_dcf(*_labels(bona, spoof)).dcf == pytest.approx(_official_min_dcf(miss, fa), abs=1e-12)


def test_min_dcf_constants_are_the_documented_ones():
    cost = DCFCost()
    assert (cost.p_spoof, cost.c_miss, cost.c_fa) == (0.05, 1.0, 10.0)
    assert cost.normaliser == pytest.approx(0.5) and cost.bayes_threshold == pytest.approx(-math.log(1.9))


@pytest.mark.parametrize("name", sorted(TIE_FREE) + sorted(TIED))
def test_act_dcf_equals_the_official_compute_actdcf(name):
    bona, spoof = {**TIE_FREE, **TIED}[name]
    # shift some scores onto the Bayes threshold itself: the official rule accepts them
    bona = np.r_[bona, -math.log(1.9)]
    assert act_dcf(*_labels(bona, spoof)).dcf == pytest.approx(_official_act_dcf(bona, spoof), abs=1e-12)


def test_act_dcf_with_other_costs():
    bona, spoof = TIE_FREE["random_overlap"]
    cost = DCFCost(p_spoof=0.3, c_miss=2.0, c_fa=3.0)
    expected = _official_act_dcf(bona, spoof, p_spoof=0.3, c_miss=2.0, c_fa=3.0)
    assert act_dcf(*_labels(bona, spoof), cost).dcf == pytest.approx(expected, abs=1e-12)


# --- Cllr / minCllr -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TIE_FREE) + sorted(TIED))
def test_cllr_equals_the_official_calculate_cllr(name):
    bona, spoof = {**TIE_FREE, **TIED}[name]
    assert cllr(*_labels(bona, spoof)) == pytest.approx(_official_cllr(bona, spoof), rel=1e-12)


@pytest.mark.parametrize("name", sorted(TIE_FREE) + sorted(TIED))
def test_min_cllr_equals_a_plain_pav_reference(name):
    bona, spoof = {**TIE_FREE, **TIED}[name]
    got = min_cllr(*_labels(bona, spoof))
    assert got == pytest.approx(_reference_min_cllr(bona, spoof), abs=1e-12)
    assert got <= cllr(*_labels(bona, spoof)) + 1e-12


def test_min_cllr_hand_cases():
    assert min_cllr(*_labels(*TIE_FREE["perfectly_separated"])) == 0.0
    # inverted or all tied: the best monotone map outputs the prior, i.e. LLR 0 everywhere: 1 bit
    assert min_cllr(*_labels(*TIE_FREE["inverted"])) == pytest.approx(1.0)
    assert min_cllr(*_labels(*TIED["all_tied"])) == pytest.approx(1.0)


# --- t-DCF ----------------------------------------------------------------------------------------

ASV_CASES = [ASVRates(), ASVRates(pfa=0.1, pmiss=0.2, pfa_spoof=0.6), ASVRates(pfa=0.0, pmiss=0.0, pfa_spoof=1.0)]


@pytest.mark.parametrize("asv", ASV_CASES)
@pytest.mark.parametrize("name", sorted(TIE_FREE))
def test_tdcf_2019_equals_the_official_legacy_form(name, asv):
    bona, spoof = TIE_FREE[name]
    frr, far = _official_det(bona, spoof)
    c1, c2 = _tdcf_constants_2019(asv)
    expected = float(np.min((c1 * frr + c2 * far) / min(c1, c2)))
    assert min_tdcf_2019(*_labels(bona, spoof), asv).tdcf == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("asv", ASV_CASES)
@pytest.mark.parametrize("name", sorted(TIE_FREE))
def test_tdcf_2021_equals_the_official_revised_form(name, asv):
    bona, spoof = TIE_FREE[name]
    frr, far = _official_det(bona, spoof)
    p_tar, p_non, p_spoof = 0.95 * 0.99, 0.95 * 0.01, 0.05
    c0 = p_tar * 1.0 * asv.pmiss + p_non * 10.0 * asv.pfa
    c1 = p_tar * 1.0 - c0
    c2 = p_spoof * 10.0 * asv.pfa_spoof
    expected = float(np.min((c0 + c1 * frr + c2 * far) / (c0 + min(c1, c2))))
    assert min_tdcf_2021(*_labels(bona, spoof), asv).tdcf == pytest.approx(expected, abs=1e-12)


def test_tdcf_defaults_are_the_asvspoof_cost_model_and_organisers_asv_rates():
    cost = TDCFCost()
    assert (cost.p_tar, cost.p_non, cost.p_spoof) == pytest.approx((0.9405, 0.0095, 0.05))
    assert (cost.c_miss, cost.c_fa, cost.c_fa_spoof) == (1.0, 10.0, 10.0)
    asv = ASVRates()
    assert (asv.pfa, asv.pmiss, asv.pfa_spoof) == (0.01881016557566423, 0.01880141010575793, 0.4607082907604729)


def test_tdcf_of_a_perfect_cm_is_the_error_free_floor():
    bona, spoof = TIE_FREE["perfectly_separated"]
    assert min_tdcf_2019(*_labels(bona, spoof)).tdcf == 0.0
    asv = ASVRates()
    c0 = 0.9405 * asv.pmiss + 0.0095 * 10 * asv.pfa
    floor = c0 / (c0 + min(0.9405 - c0, 0.05 * 10 * asv.pfa_spoof))
    assert min_tdcf_2021(*_labels(bona, spoof)).tdcf == pytest.approx(floor, abs=1e-12)


# --- a-DCF (ASVspoof 5 track 2) -------------------------------------------------------------------

SASV = {
    "random": (_RNG.normal(3.0, 1.0, 150), _RNG.normal(-1.0, 1.5, 120), _RNG.normal(0.5, 1.5, 200)),
    "one_each": (np.array([2.0]), np.array([0.0]), np.array([1.0])),
    "separated": (np.array([5.0, 6.0]), np.array([-1.0, 0.0]), np.array([1.0, 2.0, 3.0])),
    "inverted": (np.array([-5.0, -6.0]), np.array([1.0, 0.0]), np.array([1.5, 2.0, 3.0])),
}


@pytest.mark.parametrize("name", sorted(SASV))
def test_a_dcf_default_is_the_asvspoof5_evaluation_package(name):
    """The ASVspoof 5 evaluation package as it stands scores track 2 with the t-DCF's cost model:
    P_tar 0.9405, P_non 0.0095, P_spf 0.05, C_miss 1, C_fa_asv 10, C_fa_cm 10."""
    tar, non, spf = SASV[name]
    assert a_dcf(tar, non, spf).a_dcf == pytest.approx(_official_adcf(tar, non, spf), abs=1e-12)


def test_a_dcf_cost_defaults():
    cost = ADCFCost()
    assert (cost.p_tar, cost.p_non, cost.p_spf) == pytest.approx((0.9405, 0.0095, 0.05))
    assert (cost.c_miss, cost.c_fa_asv, cost.c_fa_spoof) == (1.0, 10.0, 10.0)
    assert cost.normaliser == pytest.approx(0.595)  # min(10 * 0.0095 + 10 * 0.05, 1 * 0.9405)


@pytest.mark.parametrize("name", sorted(SASV))
def test_a_dcf_with_the_first_release_costs_matches_the_official_formula(name):
    """The package's first releases: ``a_dcf.CostModel()``, P_tar 0.9, P_non 0.05, P_spf 0.05, C_fa_cm 20."""
    tar, non, spf = SASV[name]
    cost = ADCFCost(p_tar=0.9, p_non=0.05, p_spf=0.05, c_miss=1.0, c_fa_asv=10.0, c_fa_spoof=20.0)
    expected = _official_adcf(tar, non, spf, p_tar=0.9, p_non=0.05, c_fa_cm=20.0)
    assert a_dcf(tar, non, spf, cost).a_dcf == pytest.approx(expected, abs=1e-12)


def test_a_dcf_on_ties_is_the_best_realisable_threshold():
    tar, non, spf = np.array([1.0, 1.0, 2.0]), np.array([1.0, 0.0]), np.array([1.0, 2.0, -1.0])
    cost = ADCFCost(p_tar=0.9, p_non=0.05, p_spf=0.05, c_fa_spoof=20.0)
    best = math.inf
    for t in np.r_[np.unique(np.r_[tar, non, spf]), np.inf]:
        raw = 0.9 * np.mean(tar < t) + 10 * 0.05 * np.mean(non >= t) + 20 * 0.05 * np.mean(spf >= t)
        best = min(best, raw / cost.normaliser)
    assert a_dcf(tar, non, spf, cost).a_dcf == pytest.approx(best, abs=1e-12)


# --- bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_ci_covers_the_true_eer_about_as_often_as_claimed():
    """Gaussian classes N(d, 1) vs N(0, 1) have EER Phi(-d/2); a 90 % stratified percentile interval
    should contain it in roughly 90 % of simulated evaluation sets (loose bounds: 60 sets)."""
    d, truth = 2.0, float(norm.cdf(-1.0))
    rng = np.random.default_rng(7)
    hits = 0
    for seed in range(60):
        bona, spoof = rng.normal(d, 1.0, 150), rng.normal(0.0, 1.0, 150)
        _, low, high = bootstrap_ci(lambda y, s: eer(y, s).eer, *_labels(bona, spoof), n=200, alpha=0.1, seed=seed)
        hits += low <= truth <= high
    assert 0.75 <= hits / 60 <= 1.0


def test_bootstrap_ci_is_the_percentile_interval_of_stratified_replicates():
    bona, spoof = TIE_FREE["random_overlap"]
    labels, scores = _labels(bona, spoof)
    seen: list[tuple[int, int]] = []

    def metric(y, s):
        seen.append((int(y.sum()), int(y.size - y.sum())))
        return float(np.mean(s[y == 1]) - np.mean(s[y == 0]))

    point, low, high = bootstrap_ci(metric, labels, scores, n=400, alpha=0.2, seed=3)
    assert point == pytest.approx(bona.mean() - spoof.mean())
    assert set(seen) == {(bona.size, spoof.size)}  # stratified: class counts fixed in every replicate
    # a difference of means: the percentile interval is close to the normal one
    se = math.sqrt(bona.var() / bona.size + spoof.var() / spoof.size)
    assert low == pytest.approx(point - norm.ppf(0.9) * se, abs=0.35 * se)
    assert high == pytest.approx(point + norm.ppf(0.9) * se, abs=0.35 * se)
