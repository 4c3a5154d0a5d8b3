"""Review 10 of the metrics (metrics10): settings passed in the wrong place, and labels given as text."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.errors import ProtocolError
from sddkit.metrics import (
    ADCFCost,
    ASVRates,
    DCFCost,
    MetricError,
    TDCFCost,
    a_dcf,
    act_dcf,
    det_curve,
    eer,
    min_dcf,
    min_dcf_from_curve,
    min_tdcf_2019,
    min_tdcf_2021,
    paired_bootstrap,
)
from sddkit.scoring.calibration import fit_calibration

LABELS = np.array([1, 1, 1, 0, 0, 0])
SCORES = np.array([2.0, 0.5, -0.2, 0.1, -1.0, -3.0])


def test_a_threshold_given_in_the_place_of_the_a_dcf_costs_is_refused_not_read_as_the_defaults() -> None:
    tar, non, spf = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5]), np.array([-2.0, 0.2, 1.5])
    # a_dcf(tar, non, spf, 0.0) meant "the a-DCF at threshold 0": `cost or ADCFCost()` took the 0.0 for "no costs
    # given" and returned the minimum over all thresholds instead, without a word
    at_zero = a_dcf(tar, non, spf, threshold=0.0).a_dcf
    minimum = a_dcf(tar, non, spf).a_dcf
    # by hand: at 0 every target is accepted, 1 of 2 nontargets and 2 of 3 spoofs are accepted
    assert at_zero == pytest.approx((10 * 0.0095 * 0.5 + 10 * 0.05 * 2 / 3) / 0.595)
    assert minimum != pytest.approx(at_zero)
    with pytest.raises(
        MetricError, match=r"a-DCF cost must be ADCFCost\(\.\.\.\) \(or None for the defaults\), got 0\.0"
    ):
        a_dcf(tar, non, spf, 0.0)
    # another number failed deep inside: "'float' object has no attribute 'c_miss'"
    with pytest.raises(MetricError, match=r"a-DCF cost must be ADCFCost.*got 0\.5"):
        a_dcf(tar, non, spf, 0.5)
    # the costs themselves, and None, are taken as before
    assert a_dcf(tar, non, spf, ADCFCost()).a_dcf == minimum
    assert a_dcf(tar, non, spf, None, 0.0).a_dcf == at_zero


def test_the_costs_of_another_metric_are_named_not_an_attribute_error() -> None:
    # min_tdcf_2021(labels, scores, TDCFCost(...)): the cost in the place of the ASV error rates said only
    # "'TDCFCost' object has no attribute 'pmiss'"
    with pytest.raises(MetricError, match=r"t-DCF ASV error rates must be ASVRates\(\.\.\.\).*got TDCFCost"):
        min_tdcf_2021(LABELS, SCORES, TDCFCost())
    with pytest.raises(MetricError, match=r"t-DCF ASV error rates must be ASVRates"):
        min_tdcf_2019(LABELS, SCORES, TDCFCost())
    with pytest.raises(MetricError, match=r"t-DCF cost must be TDCFCost\(\.\.\.\).*got DCFCost"):
        min_tdcf_2021(LABELS, SCORES, ASVRates(), DCFCost())
    with pytest.raises(MetricError, match=r"DCF cost must be DCFCost\(\.\.\.\).*got TDCFCost"):
        min_dcf(LABELS, SCORES, TDCFCost())
    with pytest.raises(MetricError, match=r"DCF cost must be DCFCost.*got ADCFCost"):
        act_dcf(LABELS, SCORES, ADCFCost())
    with pytest.raises(MetricError, match=r"DCF cost must be DCFCost.*got 0"):
        min_dcf_from_curve(det_curve(LABELS, SCORES), 0)
    # right types and None: the values of before (by hand: the defaults normalise to 1.9 Pmiss + Pfa; the best
    # threshold, -0.2, misses no bona fide and accepts 1 of the 3 spoofs)
    assert min_dcf(LABELS, SCORES).dcf == pytest.approx(1 / 3)
    assert min_dcf(LABELS, SCORES, DCFCost()).dcf == min_dcf(LABELS, SCORES, None).dcf
    assert min_tdcf_2021(LABELS, SCORES, ASVRates(), TDCFCost()).tdcf == min_tdcf_2021(LABELS, SCORES).tdcf


def test_labels_given_as_text_digits_are_said_to_be_text() -> None:
    # a CSV column read as strings: "labels must be 0 (spoof) or 1 (bona fide); found ['0', '1']" read as a riddle
    text = LABELS.astype(str)
    with pytest.raises(MetricError, match=r"found \['0', '1'\] \(text, not numbers"):
        eer(text, SCORES)
    with pytest.raises(MetricError, match=r"\(text, not numbers"):
        paired_bootstrap(eer, text.tolist(), SCORES, SCORES, n=10)
    # other bad labels are named as before, without the hint
    with pytest.raises(MetricError, match=r"found \['bonafide', 'spoof'\]$"):
        eer(np.where(LABELS == 1, "bonafide", "spoof"), SCORES)
    with pytest.raises(MetricError, match=r"found \[0, 2\]$"):
        eer(LABELS * 2, SCORES)
    assert eer(text.astype(int), SCORES).eer == pytest.approx(1 / 3)


def test_calibration_labels_that_are_text_digits_a_mix_or_missing_are_named() -> None:
    # "labels must be 'bonafide'/'spoof' or 1/0; found ['0' '1']": the digits were text
    with pytest.raises(ProtocolError, match=r"found \['0', '1'\] \(text, not numbers: give 1/0 as numbers\)"):
        fit_calibration(SCORES, LABELS.astype(str))
    # numbers and text mixed: the numbers were compared as text too, and looked like the allowed 1/0
    mixed = np.array([1, "spoof", 1, 0, "spoof", 0], dtype=object)
    with pytest.raises(ProtocolError, match=r"found \['0', '1'\] \(labels that are not text among text ones: 1, 0;"):
        fit_calibration(SCORES, mixed)
    # a missing label in a text column was "found ['nan']", as if someone had written nan
    with pytest.raises(ProtocolError, match=r"found \['nan'\] \(labels that are not text among text ones: nan;"):
        fit_calibration(SCORES, ["bonafide"] * 2 + [float("nan")] + ["spoof"] * 3)
    with pytest.raises(ProtocolError, match=r"found \['None'\] \(labels that are not text among text ones: None;"):
        fit_calibration(SCORES, ["bonafide"] * 2 + [None] + ["spoof"] * 3)
    # a missing label (NaN, None) was refused without saying which values were wrong
    with pytest.raises(ProtocolError, match=r"numeric labels must be 1 \(bona fide\) or 0 \(spoof\); found nan"):
        fit_calibration(SCORES, [1, 1, np.nan, 0, 0, 0])
    with pytest.raises(ProtocolError, match=r"; found None"):
        fit_calibration(SCORES, [1, 1, None, 0, 0, 0])
    with pytest.raises(ProtocolError, match=r"; found 2, 3"):
        fit_calibration(SCORES, [1, 2, 3, 0, 0, 0])
    # valid labels fit as before: text 'bonafide'/'spoof' and numbers give the same map
    by_text = fit_calibration(SCORES, np.where(LABELS == 1, "bonafide", "spoof"))
    assert by_text == fit_calibration(SCORES, LABELS)
