"""Threshold-free ranking quality (ROC AUC) and hard-decision rates at a threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import rankdata

from sddkit.metrics.inputs import MetricError, check_binary


def roc_auc(labels: object, scores: object) -> float:
    """Area under the ROC curve: P(bona fide score > spoof score), ties counted 1/2.

    Computed from the Mann-Whitney U statistic with mid-ranks for ties, which equals the
    trapezoidal area under the ROC curve (and ``sklearn.metrics.roc_auc_score``).
    """
    y, s = check_binary(labels, scores)
    ranks = rankdata(s)  # average ranks: a tie between classes contributes one half
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class ThresholdMetrics:
    """Hard-decision rates for the rule "bona fide iff score >= threshold".

    tpr: bona fide accepted (1 - miss); tnr: spoof rejected (1 - false alarm);
    accuracy: fraction of all trials decided correctly (depends on the class balance);
    balanced_accuracy: (tpr + tnr) / 2.
    """

    threshold: float
    accuracy: float
    tpr: float
    tnr: float
    balanced_accuracy: float


def threshold_metrics(labels: object, scores: object, threshold: float = 0.0) -> ThresholdMetrics:
    """Accuracy, TPR, TNR and balanced accuracy at ``threshold`` (0 = even odds for log-odds scores)."""
    y, s = check_binary(labels, scores)
    if math.isnan(threshold):
        raise MetricError("decision threshold is NaN")
    accept = s >= threshold
    tpr = float(accept[y].mean())
    tnr = float((~accept[~y]).mean())
    return ThresholdMetrics(
        threshold=float(threshold),
        accuracy=float((accept == y).mean()),
        tpr=tpr,
        tnr=tnr,
        balanced_accuracy=(tpr + tnr) / 2,
    )


def accuracy(labels: object, scores: object, threshold: float = 0.0) -> float:
    return threshold_metrics(labels, scores, threshold).accuracy


def balanced_accuracy(labels: object, scores: object, threshold: float = 0.0) -> float:
    return threshold_metrics(labels, scores, threshold).balanced_accuracy
