from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sddkit.config import from_dict
from sddkit.errors import ConfigError, SddkitError
from sddkit.metrics import (
    ADCFCost,
    ASVRates,
    DCFCost,
    MetricError,
    TDCFCost,
    a_dcf,
    act_dcf,
    bootstrap_ci,
    cllr,
    det_curve,
    eer,
    min_cllr,
    min_dcf,
    min_tdcf_2019,
    min_tdcf_2021,
    paired_bootstrap,
    roc_auc,
    threshold_metrics,
)


def _labelled(bona, spoof):
    return np.r_[np.ones(len(bona), int), np.zeros(len(spoof), int)], np.r_[bona, spoof].astype(float)


# The worked case used below: bona fide [0.9, 0.6, 0.4], spoof [0.5, 0.2].
# Sorted: 0.2 s, 0.4 b, 0.5 s, 0.6 b, 0.9 b. Operating points (accept iff score >= t):
#   t=0.2: miss 0,   fa 1     t=0.4: miss 0,   fa 1/2    t=0.5: miss 1/3, fa 1/2
#   t=0.6: miss 1/3, fa 0     t=0.9: miss 2/3, fa 0      t>0.9: miss 1,   fa 0
FIVE = _labelled([0.9, 0.6, 0.4], [0.5, 0.2])
FIVE_MISS = np.array([0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
FIVE_FA = np.array([1, 0.5, 0.5, 0, 0, 0])


def _brute_force_eer(labels, scores):
    """Oracle: try every distinct threshold (and one above the maximum) directly."""
    bona, spoof = scores[labels == 1], scores[labels == 0]
    candidates = np.r_[np.unique(scores), np.inf]
    miss = np.array([np.mean(bona < t) for t in candidates])
    fa = np.array([np.mean(spoof >= t) for t in candidates])
    i = np.argmin(np.abs(miss - fa))
    return (miss[i] + fa[i]) / 2, miss, fa


def _official_eer(bona, spoof):
    """The ASVspoof per-trial walk (compute_det_curve/compute_eer), valid for tie-free scores."""
    scores = np.r_[bona, spoof]
    labels = np.r_[np.ones(bona.size), np.zeros(spoof.size)][np.argsort(scores, kind="mergesort")]
    frr = np.r_[0, np.cumsum(labels) / bona.size]
    far = np.r_[1, (spoof.size - (np.arange(1, scores.size + 1) - np.cumsum(labels))) / spoof.size]
    i = np.argmin(np.abs(frr - far))
    return (frr[i] + far[i]) / 2


# --- DET / EER ----------------------------------------------------------------------------------


def test_det_curve_of_worked_case():
    curve = det_curve(*FIVE)
    np.testing.assert_allclose(curve.miss, FIVE_MISS)
    np.testing.assert_allclose(curve.fa, FIVE_FA)
    np.testing.assert_allclose(curve.thresholds[:-1], [0.2, 0.4, 0.5, 0.6, 0.9])
    assert curve.thresholds[-1] > 0.9 and (curve.n_bonafide, curve.n_spoof) == (3, 2)


def test_eer_worked_cases():
    result = eer(*FIVE)  # |miss - fa| smallest (1/6) at t = 0.5 -> (1/3 + 1/2) / 2
    assert result.eer == pytest.approx(5 / 12) and result.threshold == pytest.approx(0.5)
    assert float(result) == result.eer
    # 4 scores: bona [0.7], spoof [0.2, 0.5, 0.9]; at t = 0.7: miss 0, fa 1/3 -> EER 1/6
    four = eer(*_labelled([0.7], [0.2, 0.5, 0.9]))
    assert four.eer == pytest.approx(1 / 6) and four.threshold == pytest.approx(0.7)


def test_eer_separated_and_inverted():
    perfect = eer(*_labelled([3.0, 4.0], [1.0, 2.0]))
    assert perfect.eer == 0.0 and perfect.threshold == 3.0
    # the threshold applied as a decision rule realises the EER point
    rates = threshold_metrics(*_labelled([3.0, 4.0], [1.0, 2.0]), threshold=perfect.threshold)
    assert rates.tpr == 1.0 and rates.tnr == 1.0
    assert eer(*_labelled([1.0, 2.0], [3.0, 4.0])).eer == 1.0


def test_eer_ties():
    # all scores equal: only "accept all" and "reject all" exist -> 50 %; the per-trial walk of the
    # official code would stop between tied trials and report 100 %
    labels, scores = _labelled([1.0, 1.0], [1.0, 1.0])
    assert eer(labels, scores).eer == 0.5
    # bona [1, 2, 2], spoof [2, 0]: distinct thresholds 0, 1, 2; at t = 2: miss 1/3, fa 1/2
    labels, scores = _labelled([1.0, 2.0, 2.0], [2.0, 0.0])
    assert eer(labels, scores).eer == pytest.approx(5 / 12)
    # the order of tied trials never matters
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 6, 300).astype(float)
    reference = eer(labels, scores)
    for _ in range(5):
        perm = rng.permutation(300)
        assert eer(labels[perm], scores[perm]) == reference


@pytest.mark.parametrize("ties", [False, True])
def test_eer_matches_brute_force_and_official(ties):
    rng = np.random.default_rng(2)
    labels = (rng.random(400) < 0.3).astype(int)
    scores = rng.normal(size=400) + 1.2 * labels
    if ties:
        scores = np.round(scores, 1)
    expected, miss, fa = _brute_force_eer(labels, scores)
    assert eer(labels, scores).eer == pytest.approx(expected)
    curve = det_curve(labels, scores)
    np.testing.assert_allclose(curve.miss, miss)
    np.testing.assert_allclose(curve.fa, fa)
    if not ties:
        assert eer(labels, scores).eer == pytest.approx(_official_eer(scores[labels == 1], scores[labels == 0]))


@pytest.mark.parametrize(
    "labels, scores, match",
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "only bona fide"),
        ([0, 0], [0.1, 0.2], "only spoof"),
        ([1, 0], [0.1, np.nan], "non-finite"),
        ([1, 0], [np.inf, 0.2], "non-finite"),
        ([1, 0, 2], [0.1, 0.2, 0.3], "0 \\(spoof\\) or 1"),
        ([1, 0], [0.1, 0.2, 0.3], "same length"),
    ],
)
def test_bad_inputs_raise_metric_error(labels, scores, match):
    with pytest.raises(MetricError, match=match):
        eer(labels, scores)
    assert issubclass(MetricError, SddkitError) and issubclass(MetricError, ValueError)


# --- AUC and threshold metrics ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(500) < 0.4).astype(int)
    scores = rng.normal(size=500) + labels
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    tied = np.round(scores)  # many ties between classes
    assert roc_auc(labels, tied) == pytest.approx(roc_auc_score(labels, tied))


def test_auc_extremes():
    assert roc_auc(*_labelled([2, 3], [0, 1])) == 1.0
    assert roc_auc(*_labelled([0, 1], [2, 3])) == 0.0
    assert roc_auc(*_labelled([1, 1], [1, 1])) == 0.5


def test_threshold_metrics_hand_case():
    # threshold 0.5: bona [0.9, 0.6, 0.4] -> 2 of 3 accepted; spoof [0.5, 0.2] -> 1 of 2 rejected
    m = threshold_metrics(*FIVE, threshold=0.5)
    assert m.tpr == pytest.approx(2 / 3) and m.tnr == pytest.approx(1 / 2)
    assert m.accuracy == pytest.approx(3 / 5) and m.balanced_accuracy == pytest.approx(7 / 12)


# --- DCF ----------------------------------------------------------------------------------------


def test_dcf_constants():
    cost = DCFCost()
    assert cost.normaliser == pytest.approx(0.5)  # min(0.95 * 1, 0.05 * 10)
    assert cost.bayes_threshold == pytest.approx(-math.log(1.9))


def test_min_dcf_hand_case():
    # normalised DCF = (0.95 miss + 0.5 fa) / 0.5 = 1.9 miss + fa along the worked curve
    expected = 1.9 * FIVE_MISS + FIVE_FA  # [1, 0.5, 1.133, 0.633, 1.267, 1.9]
    result = min_dcf(*FIVE)
    assert result.dcf == pytest.approx(expected.min()) and result.dcf == pytest.approx(0.5)
    assert result.threshold == pytest.approx(0.4)
    # other costs: P_spoof 0.5, C_miss = C_fa = 1 -> (0.5 miss + 0.5 fa) / 0.5 = miss + fa, min 1/3 at t = 0.6
    assert min_dcf(*FIVE, DCFCost(p_spoof=0.5, c_miss=1, c_fa=1)).dcf == pytest.approx(1 / 3)


def test_act_dcf_hand_case():
    # threshold -ln 1.9 = -0.642: bona [2, -1] -> miss 1/2; spoof [-2, 0] -> fa 1/2
    result = act_dcf(*_labelled([2.0, -1.0], [-2.0, 0.0]))
    assert result.threshold == pytest.approx(-math.log(1.9))
    assert result.dcf == pytest.approx(1.9 * 0.5 + 0.5)
    # a score exactly at the threshold is accepted (score >= threshold), for either class: equal costs
    # and P_spoof 0.5 put the threshold at 0 -> bona [0, 1] no miss, spoof [0, -1] fa 1/2
    at_threshold = act_dcf(*_labelled([0.0, 1.0], [0.0, -1.0]), DCFCost(p_spoof=0.5, c_miss=1, c_fa=1))
    assert at_threshold.threshold == 0.0 and at_threshold.dcf == pytest.approx(0.5)
    # act DCF can never beat min DCF on the same scores
    rng = np.random.default_rng(3)
    labels = (rng.random(300) < 0.5).astype(int)
    scores = rng.normal(size=300) * 2 + 2 * labels - 1
    assert act_dcf(labels, scores).dcf >= min_dcf(labels, scores).dcf - 1e-12


# --- Cllr ---------------------------------------------------------------------------------------


def test_cllr_values():
    assert cllr(*_labelled([0.0, 0.0], [0.0])) == pytest.approx(1.0)
    assert cllr(*_labelled([60.0, 80.0], [-70.0])) < 1e-20
    # LLR +-ln 3 on the right side: each trial costs log2(1 + 1/3)
    assert cllr(*_labelled([math.log(3)], [-math.log(3)])) == pytest.approx(math.log2(4 / 3))
    # confidently wrong is very expensive (no overflow)
    assert cllr(*_labelled([-800.0], [800.0])) == pytest.approx(800 / math.log(2))


def test_min_cllr():
    rng = np.random.default_rng(4)
    labels = (rng.random(400) < 0.5).astype(int)
    scores = rng.normal(size=400) + 1.5 * labels
    m = min_cllr(labels, scores)
    assert 0.0 < m < 1.0
    assert m <= cllr(labels, scores) + 1e-12 and m <= cllr(labels, 5 * scores - 3) + 1e-12
    assert min_cllr(labels, np.exp(scores)) == pytest.approx(m)  # monotone maps do not change it
    assert min_cllr(*_labelled([2.0, 3.0], [0.0, 1.0])) == pytest.approx(0.0, abs=1e-12)
    assert min_cllr(*_labelled([1.0, 1.0, 1.0], [1.0])) == pytest.approx(1.0)  # uninformative


# --- t-DCF --------------------------------------------------------------------------------------


def test_min_tdcf_hand_case():
    asv = ASVRates(pfa=0.1, pmiss=0.2, pfa_spoof=0.4)
    cost = TDCFCost()  # p_tar 0.9405, p_non 0.0095, p_spoof 0.05, costs 1, 10, 10
    # legacy: C1 = 0.9405 (1 - 0.2) - 0.0095 * 10 * 0.1 = 0.7429; C2 = 10 * 0.05 * (1 - 0.6) = 0.2
    c1, c2 = 0.9405 * 0.8 - 0.0095 * 10 * 0.1, 10 * 0.05 * 0.4
    legacy = (c1 * FIVE_MISS + c2 * FIVE_FA) / min(c1, c2)
    result = min_tdcf_2019(*FIVE, asv, cost)
    assert result.tdcf == pytest.approx(legacy.min()) and result.tdcf == pytest.approx(0.5)
    assert result.threshold == pytest.approx(0.4)
    # revised: C0 = 0.9405 * 0.2 + 0.0095 * 10 * 0.1 = 0.1976; C1 = 0.9405 - C0; C2 = 0.05 * 10 * 0.4
    c0 = 0.9405 * 0.2 + 0.0095 * 10 * 0.1
    c1, c2 = 0.9405 - c0, 0.05 * 10 * 0.4
    revised = (c0 + c1 * FIVE_MISS + c2 * FIVE_FA) / (c0 + min(c1, c2))
    result = min_tdcf_2021(*FIVE, asv, cost)
    assert result.tdcf == pytest.approx(revised.min()) and result.tdcf == pytest.approx(0.2976 / 0.3976)


def test_tdcf_defaults_and_bounds():
    asv = ASVRates()
    assert asv.pmiss_spoof == pytest.approx(1 - 0.4607082907604729)
    rng = np.random.default_rng(5)
    labels = (rng.random(300) < 0.5).astype(int)
    scores = rng.normal(size=300) + 2 * labels
    for fn in (min_tdcf_2019, min_tdcf_2021):
        assert 0.0 < fn(labels, scores).tdcf <= 1.0  # never worse than the trivial CMs
    # a perfect CM reaches the revised form's floor C0 / (C0 + min(C1, C2))
    c0 = 0.9405 * asv.pmiss + 0.0095 * 10 * asv.pfa
    floor = c0 / (c0 + min(0.9405 - c0, 0.05 * 10 * asv.pfa_spoof))
    assert min_tdcf_2021(*_labelled([3, 4], [1, 2])).tdcf == pytest.approx(floor)
    assert min_tdcf_2019(*_labelled([3, 4], [1, 2])).tdcf == 0.0
    with pytest.raises(ValueError, match="pfa must be a rate"):
        ASVRates(pfa=1.5)
    with pytest.raises(ConfigError, match="pfa must be a rate"):
        from_dict(ASVRates, {"pfa": 1.5})


# --- a-DCF --------------------------------------------------------------------------------------


def test_a_dcf_hand_case():
    # the ASVspoof 5 package's first-release costs (a_dcf.CostModel()): weights 0.9 miss,
    # 10 * 0.05 = 0.5 fa_non, 20 * 0.05 = 1.0 fa_spf; normaliser min(0.5 + 1.0, 0.9) = 0.9 (reject-all)
    # sorted: -1 spf, 0 non, 1 tar, 2 spf, 3 tar; best at t = 3: miss 1/2, nothing else accepted
    first = ADCFCost(p_tar=0.9, p_non=0.05, p_spf=0.05, c_fa_spoof=20.0)
    assert first.normaliser == pytest.approx(0.9)
    result = a_dcf([3.0, 1.0], [0.0], [2.0, -1.0], first)
    assert result.a_dcf == pytest.approx(0.45 / 0.9) and result.threshold == pytest.approx(3.0)
    # a fixed threshold 0.5: miss 0, fa_non 0, fa_spf 1/2; at 1.5 the target at 1 is missed too
    assert a_dcf([3.0, 1.0], [0.0], [2.0, -1.0], first, threshold=0.5).a_dcf == pytest.approx(0.5 / 0.9)
    assert a_dcf([3.0, 1.0], [0.0], [2.0, -1.0], first, threshold=1.5).a_dcf == pytest.approx(0.95 / 0.9)
    # reject-all costs exactly the normaliser; accept-all costs 1.5 / 0.9
    assert a_dcf([3.0, 1.0], [0.0], [2.0, -1.0], first, threshold=10).a_dcf == pytest.approx(1.0)
    assert a_dcf([3.0, 1.0], [0.0], [2.0, -1.0], first, threshold=-10).a_dcf == pytest.approx(1.5 / 0.9)
    # the defaults, the package as it stands (the t-DCF's priors and costs): weights 0.9405, 0.095, 0.5;
    # normaliser 0.595
    assert ADCFCost().normaliser == pytest.approx(0.595)
    result = a_dcf([3.0, 1.0], [0.0], [2.0, -1.0])
    assert result.a_dcf == pytest.approx(0.25 / 0.595) and result.threshold == pytest.approx(1.0)
    with pytest.raises(MetricError, match="nontarget"):
        a_dcf([1.0], [], [0.0])


# --- bootstrap ----------------------------------------------------------------------------------


def _gauss(n, seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    labels[:2] = [0, 1]
    return labels, rng.normal(size=n) + 1.5 * labels


def test_bootstrap_ci_contains_point_and_narrows():
    def metric(y, s):
        return eer(y, s)  # an EERResult: bootstrap_ci converts with float()

    small = bootstrap_ci(metric, *_gauss(200, 6), n=200)
    large = bootstrap_ci(metric, *_gauss(5000, 7), n=200)
    for point, low, high in (small, large):
        assert low <= point <= high and low < high
    assert large[2] - large[1] < small[2] - small[1]
    assert small[0] == eer(*_gauss(200, 6)).eer


def test_bootstrap_ci_seeded_and_unstratified():
    labels, scores = _gauss(300, 8)
    a = bootstrap_ci(roc_auc, labels, scores, n=100, seed=3)
    assert a == bootstrap_ci(roc_auc, labels, scores, n=100, seed=3)
    assert a != bootstrap_ci(roc_auc, labels, scores, n=100, seed=4)
    point, low, high = bootstrap_ci(roc_auc, labels, scores, n=100, stratified=False)
    assert low <= point <= high
    # a tiny class: unstratified replicates without a bona fide trial are redrawn, not failed
    tiny = np.r_[np.zeros(9, int), 1], np.arange(10.0)
    assert bootstrap_ci(roc_auc, *tiny, n=50, stratified=False)[0] == 1.0
    with pytest.raises(MetricError):
        bootstrap_ci(roc_auc, labels, scores, n=0)


def test_paired_bootstrap_of_an_eer_difference():
    labels, a = _gauss(400, 9)
    rng = np.random.default_rng(10)
    same = paired_bootstrap(eer, labels, a, a, n=200)
    assert (same.diff, same.low, same.high, same.p_b_not_better) == (0.0, 0.0, 0.0, 1.0)
    better = a + 1.5 * labels  # more separation: lower EER
    d = paired_bootstrap(eer, labels, a, better, n=300)
    assert d.diff == pytest.approx(eer(labels, better).eer - eer(labels, a).eer) and d.diff < 0
    assert d.low <= d.diff <= d.high < 0 and d.p_b_not_better < 0.05
    # pairing: a nearly identical system gets a far narrower interval than either system alone
    close = a + 0.05 * rng.normal(size=a.size)
    paired = paired_bootstrap(eer, labels, a, close, n=300)
    _, low_a, high_a = bootstrap_ci(eer, labels, a, n=300)
    assert paired.high - paired.low < 0.5 * (high_a - low_a)
    # several runs: the point difference is the mean of the per-run differences
    runs_a, runs_b = np.stack([a, close]), np.stack([better, a])
    expected = np.mean([eer(labels, rb).eer - eer(labels, ra).eer for ra, rb in zip(runs_a, runs_b)])
    assert paired_bootstrap(eer, labels, runs_a, runs_b, n=50).diff == pytest.approx(expected)
    with pytest.raises(MetricError, match="equal shapes"):
        paired_bootstrap(eer, labels, runs_a, a, n=10)


def test_eer_takes_the_first_of_two_exactly_tied_operating_points():
    # |miss - fa| is 2/3 at thresholds 2 and 3 (1 - 1/3 and 2/3 - 0, unequal in their last bit); the first wins
    y = np.r_[np.ones(3), np.zeros(3)]
    s = np.array([1.0, 2.0, 3.0, 2.0, 2.0, 2.0])
    r = eer(y, s)
    assert r.eer == pytest.approx(2 / 3) and r.threshold == 2.0
