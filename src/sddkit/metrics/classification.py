"""Threshold-free ranking quality (ROC AUC) and hard-decision rates at a threshold."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from sddkit.metrics.inputs import MetricError, check_binary, host_values


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
    threshold = _threshold(threshold)
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


def _threshold(value: object) -> float:
    """``value`` as a float decision threshold; a MetricError saying what to pass when it is not a number.

    An :class:`~sddkit.metrics.EERResult` or ``DCFResult`` given whole (``threshold_metrics(y, s, eer(y, s))``) failed
    deep in numpy with "'>=' not supported between instances of 'float' and 'EERResult'"; None or a string likewise.
    Its ``float()`` is the metric's value (the EER), not its threshold, so it is refused, not converted."""
    if hasattr(value, "threshold") and not isinstance(value, numbers.Real):
        raise MetricError(
            f"decision threshold must be a number, got a {type(value).__name__}: pass its .threshold "
            f"({value.threshold!r}), not the result itself (whose float() is the metric's value)"
        )
    value = host_values(value)  # a 0-d tensor, e.g. a threshold computed in torch
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()  # a 0-d array, e.g. np.asarray(0.5)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MetricError(f"decision threshold must be a number (accept iff score >= threshold), got {value!r}")
    if math.isnan(value):
        raise MetricError("decision threshold is NaN")
    return float(value)


def accuracy(labels: object, scores: object, threshold: float = 0.0) -> float:
    return threshold_metrics(labels, scores, threshold).accuracy


def balanced_accuracy(labels: object, scores: object, threshold: float = 0.0) -> float:
    return threshold_metrics(labels, scores, threshold).balanced_accuracy
