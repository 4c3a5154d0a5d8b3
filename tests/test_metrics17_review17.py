"""The metrics against the official ASVspoof reference functions, read in their sources (asvspoof-challenge/asvspoof5
``evaluation-package/calculate_modules.py`` at 8c000276 and 8db95086, ``calculate_metrics.py`` at 8c000276,
``a_dcf.py``; asvspoof-challenge/2021 ``eval-package/eval_metrics.py``). Literal numbers below were produced by a
transcription of those functions kept outside the repository."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sddkit.metrics import (
    ADCFCost,
    ASVRates,
    DCFCost,
    a_dcf,
    act_dcf,
    asv_rates_from_scores,
    cllr,
    eer,
    min_dcf,
    min_tdcf_2019,
    min_tdcf_2021,
)


@pytest.mark.parametrize(
    ("p_spoof", "c_miss", "c_fa"), [(0.16, 10.0, 50.0), (0.69, 2.0, 1.0), (0.4, 2.0, 3.0), (0.05, 1.0, 10.0)]
)
def test_act_dcf_threshold_is_numpys_log_as_in_compute_actdcf(p_spoof, c_miss, c_fa) -> None:
    """calculate_modules.py, compute_actDCF: ``threshold = - np.log(beta)``. Python's math.log is one ulp away from
    numpy's for the first three costs (on x86-64 numpy 2.4), so a score lying on the official threshold was missed
    or the threshold was not the official float."""
    beta = c_miss * (1 - p_spoof) / (c_fa * p_spoof)
    official = -np.log(beta)
    result = act_dcf([1, 1, 0, 0], [official, 10.0, official, -10.0], DCFCost(p_spoof, c_miss, c_fa))
    assert result.threshold == official
    # both trials on the threshold are accepted, as compute_actDCF does: no miss, half the spoofs accepted
    normaliser = min(c_miss * (1 - p_spoof), c_fa * p_spoof)
    assert result.dcf == pytest.approx(c_fa * p_spoof * 0.5 / normaliser, abs=1e-12)


def test_minima_on_tied_scores_are_the_official_per_trial_walks() -> None:
    """compute_mindcf / compute_tDCF / compute_tDCF_legacy over compute_det_curve, and _calculate_a_dcf, walk one
    point per trial through ties; their minima are still those of the realisable points sddkit walks."""
    labels = [1] * 5 + [0] * 6
    scores = [0.0, 0.0, 1.0, 2.0, 2.0, 0.0, 1.0, 1.0, 2.0, -1.0, 0.0]
    assert min_dcf(labels, scores).dcf == pytest.approx(0.8333333333333334, abs=1e-12)
    assert min_tdcf_2021(labels, scores).tdcf == pytest.approx(0.8463222806274567, abs=1e-12)
    assert min_tdcf_2019(labels, scores).tdcf == pytest.approx(0.8333333333333334, abs=1e-12)
    tar, non, spf = [1.0, 1.0, 2.0], [1.0, 0.0, 2.0], [1.0, 2.0, 0.0, 1.0]
    assert a_dcf(tar, non, spf).a_dcf == pytest.approx(0.7366946778711485, abs=1e-12)  # calculate_metrics' costs
    first_release = ADCFCost(p_tar=0.9, p_non=0.05, p_spf=0.05, c_fa_spoof=20.0)  # a_dcf.CostModel()
    assert a_dcf(tar, non, spf, first_release).a_dcf == pytest.approx(1.0, abs=1e-12)


def test_returned_thresholds_are_the_lowest_accepted_score_where_the_scripts_give_the_highest_rejected() -> None:
    # bona fide 1, 3; spoof 0, 2: the EER point rejects 0 and 1 and accepts 2 and 3 (miss = fa = 1/2);
    # compute_eer returns 1.0 (the last rejected score), sddkit 2.0 (accept iff score >= 2)
    result = eer([1, 1, 0, 0], [1.0, 3.0, 0.0, 2.0])
    assert (result.eer, result.threshold) == (0.5, 2.0)
    # _calculate_a_dcf's min_a_dcf_thresh is 0.0 here (targets 1, 1, 2 accepted, non-targets 1, 2 and spoofs 1, 1,
    # 2 too); sddkit names the same point by 1.0
    assert a_dcf([1.0, 1.0, 2.0], [1.0, 0.0, 2.0], [1.0, 2.0, 0.0, 1.0]).threshold == 1.0


def test_asv_rates_take_the_spoof_acceptance_rate_not_the_asvspoof5_packages_miss_rate() -> None:
    """compute_eer(tar, non) puts the ASV threshold at 1.0 (the last rejected score), and obtain_asv_error_rates
    then accepts the non-target at 1.0: Pfa 1/2, Pmiss 0, spoofs accepted 1/3 (rejected 2/3). calculate_metrics.py
    (8c000276), given organiser ASV scores, passes the third value (Pmiss_spoof_asv, 2/3) to compute_tDCF as the
    spoof acceptance rate; the 2019/2021 scripts pass the fourth (1/3), as sddkit does."""
    rates = asv_rates_from_scores([2.0, 3.0], [0.0, 1.0], [2.5, 0.5, 0.2])
    assert (rates.pfa, rates.pmiss) == (0.5, 0.0) and rates.pfa_spoof == pytest.approx(1 / 3, abs=1e-15)
    labels, scores = [1, 1, 1, 0, 0, 0], [1.0, 3.0, 4.0, 0.0, 2.0, -1.0]
    assert min_tdcf_2021(labels, scores, rates).tdcf == pytest.approx(0.4811932555123216, abs=1e-12)
    package = ASVRates(pfa=0.5, pmiss=0.0, pfa_spoof=2 / 3)  # what that package computes with: 0.41648...
    assert min_tdcf_2021(labels, scores, package).tdcf == pytest.approx(0.4164843180160467, abs=1e-12)


def test_cllr_is_finite_where_calculate_cllr_overflows() -> None:
    # calculate_CLLR's log1p(exp(800)) is inf; the cost of a bona fide LLR of -800 is 800 nats (+ e^-800)
    expected = (800.0 + math.log1p(math.exp(-1.0))) / (2 * math.log(2))
    assert cllr([1, 0], [-800.0, -1.0]) == pytest.approx(expected, rel=1e-15)
