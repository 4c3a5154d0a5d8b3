"""Review 5 (metrics4): sddkit's metrics against the ASVspoof 5 evaluation package, by hand.

The package (asvspoof-challenge/asvspoof5, ``evaluation-package/``) went through versions that score track 2
differently. Its first releases called ``a_dcf.CostModel()`` without arguments (P_tar 0.9, P_non 0.05,
P_spf 0.05, C_miss 1, C_fa_asv 10, C_fa_cm 20) and reported the legacy (2019) min t-DCF; the package as it
stands builds the a-DCF cost model from the t-DCF one (P_tar 0.95 * 0.99, P_non 0.95 * 0.01, P_spf 0.05,
C_miss 1, C_fa_asv 10, C_fa_cm 10) and reports the revised (2021) min t-DCF. Both take the same hard-coded
ASV error rates. Every expected figure below is worked out by hand or re-derived here from those definitions,
never by calling sddkit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sddkit.metrics import ADCFCost, ASVRates, DCFCost, a_dcf, act_dcf, min_dcf, min_tdcf_2019, min_tdcf_2021

# The organisers' pooled ASV error rates, as written in calculate_metrics.py
PFA_NON_ASV_ORG = 0.01881016557566423
PMISS_ASV_ORG = 0.01880141010575793
PFA_SPF_ASV_ORG = 0.4607082907604729

# The small SASV set of the hand cases: sorted, -1 spoof, 0 nontarget, 1 target, 2 spoof, 3 target
TAR, NON, SPF = [3.0, 1.0], [0.0], [2.0, -1.0]


def _per_trial_min_adcf(tar, non, spf, p_tar, p_non, p_spf, c_miss, c_fa_asv, c_fa_cm) -> float:
    """The package's ``compute_a_det_curve`` walk (one point per trial, mergesort) and ``normalize``."""
    scores = np.concatenate([tar, non, spf])
    kind = np.concatenate([np.full(len(tar), 1), np.full(len(non), 0), np.full(len(spf), 2)])
    kind = kind[np.argsort(scores, kind="mergesort")]
    fn, fp_non, fp_spf = 0, len(non), len(spf)
    costs = [c_fa_asv * p_non + c_fa_cm * p_spf]  # before any trial: everything accepted
    for k in kind:
        fn += k == 1
        fp_non -= k == 0
        fp_spf -= k == 2
        costs.append(
            c_miss * p_tar * fn / len(tar) + c_fa_asv * p_non * fp_non / len(non) + c_fa_cm * p_spf * fp_spf / len(spf)
        )
    return min(costs) / min(c_fa_asv * p_non + c_fa_cm * p_spf, c_miss * p_tar)


def test_a_dcf_defaults_are_the_package_as_it_stands_on_a_hand_case():
    """Weights 0.9405 (miss), 10 * 0.0095 = 0.095 (nontarget accepted), 10 * 0.05 = 0.5 (spoof accepted);
    normaliser min(0.095 + 0.5, 0.9405) = 0.595. Accepting from t = 1 misses nothing and lets in one of the
    two spoofs only: 0.5 / 2 = 0.25, the minimum (t = 0 adds the nontarget: 0.345; t = 3 misses a target:
    0.47025). sddkit used the first release's costs, whose minimum here is 0.45 / 0.9 = 0.5 at t = 3."""
    assert ADCFCost().normaliser == pytest.approx(0.595)
    result = a_dcf(TAR, NON, SPF)
    assert result.a_dcf == pytest.approx(0.25 / 0.595, abs=1e-12)
    assert result.threshold == 1.0
    assert a_dcf(TAR, NON, SPF, threshold=0.0).a_dcf == pytest.approx(0.345 / 0.595, abs=1e-12)
    assert a_dcf(TAR, NON, SPF, threshold=3.0).a_dcf == pytest.approx(0.47025 / 0.595, abs=1e-12)


def test_a_dcf_first_release_costs_reproduce_the_old_figures():
    first = ADCFCost(p_tar=0.9, p_non=0.05, p_spf=0.05, c_miss=1.0, c_fa_asv=10.0, c_fa_spoof=20.0)
    # weights 0.9, 0.5, 1.0; normaliser min(1.5, 0.9) = 0.9; best: t = 3, one target missed: 0.45
    result = a_dcf(TAR, NON, SPF, first)
    assert result.a_dcf == pytest.approx(0.45 / 0.9, abs=1e-12) and result.threshold == 3.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_dcf_default_equals_the_package_walk_with_the_tdcf_cost_model(seed):
    rng = np.random.default_rng(seed)
    tar, non, spf = rng.normal(2.0, 1.0, 40), rng.normal(-1.0, 1.0, 25), rng.normal(0.5, 1.5, 60)
    expected = _per_trial_min_adcf(tar, non, spf, 0.95 * 0.99, 0.95 * 0.01, 0.05, 1.0, 10.0, 10.0)
    assert a_dcf(tar, non, spf).a_dcf == pytest.approx(expected, abs=1e-12)
    first = _per_trial_min_adcf(tar, non, spf, 0.9, 0.05, 0.05, 1.0, 10.0, 20.0)
    cost = ADCFCost(p_tar=0.9, p_non=0.05, p_spf=0.05, c_fa_spoof=20.0)
    assert a_dcf(tar, non, spf, cost).a_dcf == pytest.approx(first, abs=1e-12)


def test_tdcf_defaults_on_a_hand_case_with_the_hard_coded_asv_rates():
    """Bona fide 0.5, 2; spoof -1, 1. Operating points (miss, fa): (0, 1), (0, 1/2) at t = 0.5, (1/2, 1/2),
    (1/2, 0) at t = 2, (1, 0)."""
    asv = ASVRates()
    assert (asv.pfa, asv.pmiss, asv.pfa_spoof) == (PFA_NON_ASV_ORG, PMISS_ASV_ORG, PFA_SPF_ASV_ORG)
    labels, scores = [1, 1, 0, 0], [0.5, 2.0, -1.0, 1.0]
    p_tar, p_non, p_spoof = 0.95 * 0.99, 0.95 * 0.01, 0.05
    # legacy, as the first releases: Pmiss_spoof_asv = 1 - 0.4607...; C2 = 10 * 0.05 * 0.4607 = 0.2304 < C1
    c1 = p_tar * (1 - PMISS_ASV_ORG) - p_non * 10 * PFA_NON_ASV_ORG
    c2 = 10 * p_spoof * (1 - (1 - PFA_SPF_ASV_ORG))
    assert c2 < c1
    # best point (0, 1/2): C2 / 2 / C2 = 1/2; (1/2, 0) costs C1 / 2 / C2 = 1.99
    legacy = min_tdcf_2019(labels, scores)
    assert legacy.tdcf == pytest.approx(0.5, abs=1e-12) and legacy.threshold == 0.5
    # revised, as the package now: C0 = 0.019470, C1 = 0.921030, C2 = 0.230354; normaliser C0 + C2
    c0 = p_tar * PMISS_ASV_ORG + p_non * 10 * PFA_NON_ASV_ORG
    c2 = p_spoof * 10 * PFA_SPF_ASV_ORG
    assert c0 == pytest.approx(0.0194697, abs=1e-7) and c2 == pytest.approx(0.2303541, abs=1e-7)
    revised = min_tdcf_2021(labels, scores)
    assert revised.tdcf == pytest.approx((c0 + c2 / 2) / (c0 + c2), abs=1e-12)
    assert revised.tdcf == pytest.approx(0.538967, abs=1e-6) and revised.threshold == 0.5


def test_min_dcf_and_act_dcf_defaults_on_a_hand_case():
    """P_spoof 0.05, C_miss 1, C_fa 10: DCF_norm = (0.95 Pmiss + 0.5 Pfa) / 0.5 = 1.9 Pmiss + Pfa.
    Bona fide -2, 1, 3; spoof -1, 0.5: accepting from t = 1 costs Pfa 0 + Pmiss 1/3 * 1.9 = 0.6333, the
    minimum (accept all: 1; from t = 0.5: 1.9 / 3 + 1/2; from t = 3: 1.9 * 2/3). actDCF's threshold
    -ln 1.9 = -0.642 rejects the bona fide -2 and the spoof -1, accepts the spoof 0.5: 1.9 / 3 + 1/2."""
    labels, scores = [1, 1, 1, 0, 0], [-2.0, 1.0, 3.0, -1.0, 0.5]
    mindcf = min_dcf(labels, scores)
    assert mindcf.dcf == pytest.approx(1.9 / 3, abs=1e-12) and mindcf.threshold == 1.0
    actdcf = act_dcf(labels, scores)
    assert actdcf.dcf == pytest.approx(1.9 / 3 + 0.5, abs=1e-12)


def test_act_dcf_threshold_is_the_official_float():
    """The package computes ``threshold = -log(beta)``, beta = C_miss (1 - P_spoof) / (C_fa P_spoof), and
    counts a bona fide miss iff score < threshold, a spoof false alarm iff score >= threshold. sddkit took
    ``log(C_fa P_spoof / (C_miss (1 - P_spoof)))``, one ulp lower for the ASVspoof 5 costs, so a score lying
    on that lower float was accepted where the package rejects it."""
    beta = 1.0 * (1 - 0.05) / (10.0 * 0.05)
    official = -math.log(beta)
    assert DCFCost().bayes_threshold == official
    below = np.nextafter(official, -np.inf)  # the float sddkit used: -0.6418538861723948
    bona, spoof = np.array([below, 1.0]), np.array([below, -5.0])
    # official: the bona fide at `below` is missed (1/2), the spoof there is not accepted (0): 1.9 * 1/2
    labels = np.r_[np.ones(2, int), np.zeros(2, int)]
    result = act_dcf(labels, np.r_[bona, spoof])
    assert result.threshold == official
    assert result.dcf == pytest.approx(0.95, abs=1e-12)
    # a score exactly on the official threshold is accepted, as the package does
    on = np.r_[official, 1.0, official, -5.0]
    assert act_dcf(labels, on).dcf == pytest.approx(1.0 * 0.5, abs=1e-12)  # Pmiss 0, Pfa 1/2


def test_report_markdown_names_the_asv_error_rates_of_its_tdcfs():
    """report.md labelled its min t-DCFs "ASVspoof 2019 form" / "2021 form" only, though they take the
    ASVspoof 5 organisers' ASV rates whatever the corpus: on ASVspoof 2019/2021 data they are not those
    challenges' official figures. The rows now name the ASV rates used."""
    from sddkit.data.table import UtteranceTable
    from sddkit.evaluation import EvalConfig, evaluate, render_markdown

    records = [{"utt_id": f"u{i}", "label": "bonafide" if i % 2 else "spoof"} for i in range(6)]
    table = UtteranceTable.from_records(records)
    scores = np.array([-1.0, 1.0, 0.2, 2.0, -0.5, 0.1])
    text = render_markdown(evaluate(table, scores, EvalConfig(bootstrap=0)))
    rows = [line for line in text.splitlines() if line.startswith("| min t-DCF")]
    assert len(rows) == 2
    for row in rows:
        assert "ASV Pfa 0.01881, Pmiss 0.0188, Pfa_spoof 0.4607" in row
    custom = EvalConfig(bootstrap=0, asv=ASVRates(pfa=0.1, pmiss=0.2, pfa_spoof=0.6))
    assert "ASV Pfa 0.1, Pmiss 0.2, Pfa_spoof 0.6" in render_markdown(evaluate(table, scores, custom))
