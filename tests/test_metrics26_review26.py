"""Review 26 of sddkit.metrics: typed, actionable errors for a misplaced threshold, scores given as the ASVspoof
packages' (bona fide scores, spoof scores) pair, and non-finite scores."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.metrics import MetricError, eer, min_dcf, threshold_metrics
from sddkit.metrics.inputs import from_classes

LABELS = [1, 1, 0, 0]
SCORES = [2.0, 1.0, 0.5, -1.0]


@pytest.mark.parametrize("result", [eer(LABELS, SCORES), min_dcf(LABELS, SCORES)])
def test_threshold_metrics_refuses_a_metric_result_and_names_its_threshold(result):
    # threshold_metrics(y, s, eer(y, s)) failed in numpy: "'>=' not supported between 'float' and 'EERResult'"
    with pytest.raises(MetricError, match=r"pass its \.threshold \(1\.0\)"):
        threshold_metrics(LABELS, SCORES, result)
    assert threshold_metrics(LABELS, SCORES, result.threshold).accuracy == 1.0


@pytest.mark.parametrize("threshold", [None, "0.5", True])
def test_threshold_metrics_refuses_a_threshold_that_is_no_number(threshold):
    with pytest.raises(MetricError, match="decision threshold must be a number"):
        threshold_metrics(LABELS, SCORES, threshold)
    # numpy's numbers, 0-d arrays among them, stay thresholds
    assert threshold_metrics(LABELS, SCORES, np.float32(0.7)).tpr == 1.0
    assert threshold_metrics(LABELS, SCORES, np.asarray(1.5)).tpr == 0.5
    assert threshold_metrics(LABELS, SCORES, np.int64(3)).tnr == 1.0


def test_class_scores_in_place_of_labels_get_a_hint():
    bona, spoof = [2.0, 1.5, 0.3], [0.1, -1.0]
    for args in ((bona, spoof), (bona[:2], spoof)):  # unequal lengths, and equal ones
        with pytest.raises(MetricError, match=r"look like scores: .*from_classes\(bona, spoof\)"):
            eer(*args)
    assert eer(*from_classes(bona, spoof)).eer == 0.0  # every bona fide score above every spoof one
    # 0/1 labels of another length, or NaN among them, are not scores: no such hint
    for labels, scores in (([1, 0, 1], [0.1, 0.2]), ([1.0, np.nan], [0.1, 0.2])):
        with pytest.raises(MetricError) as info:
            eer(labels, scores)
        assert "look like scores" not in str(info.value)


def test_non_finite_scores_say_where_and_what_to_do():
    scores = np.zeros(1000)
    scores[:500] = 1.0
    scores[737] = -np.inf
    with pytest.raises(MetricError, match=r"first at index 737.*np\.clip"):
        eer(np.r_[np.ones(500), np.zeros(500)].astype(int), scores)
