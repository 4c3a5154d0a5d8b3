"""Evaluation metrics of the field (numpy; higher score = more bona fide; label 1 = bona fide).

Every metric takes ``(labels, scores)`` (sequences, numpy arrays or torch tensors, a model's ``output.score`` as it
is, on any device; a-DCF takes target/nontarget/spoof SASV scores; the
t-DCFs optionally the ASV error rates; the t-EER the CM's bona fide/spoof and the ASV's target/nontarget/spoof
scores), validates them (:class:`MetricError` on one class, NaN/inf or
bad shapes), and returns a float or a small frozen dataclass that also converts with ``float()``
(EER, DCFs, t-DCF, a-DCF, t-EER); :func:`threshold_metrics` returns several rates at once
(:class:`ThresholdMetrics`) and :func:`det_curve` the operating points. :func:`bootstrap_ci` and
:func:`paired_bootstrap` take such a metric and resample the trials.
"""

from sddkit.metrics.adcf import ADCFCost, ADCFResult, a_dcf
from sddkit.metrics.bootstrap import PairedDifference, bootstrap_ci, paired_bootstrap
from sddkit.metrics.classification import (
    ThresholdMetrics,
    accuracy,
    balanced_accuracy,
    roc_auc,
    threshold_metrics,
)
from sddkit.metrics.cllr import cllr, min_cllr
from sddkit.metrics.dcf import DCFCost, DCFResult, act_dcf, min_dcf, min_dcf_from_curve
from sddkit.metrics.det import CurveMetric, DetCurve, EERResult, det_curve, eer, eer_from_curve
from sddkit.metrics.inputs import MetricError
from sddkit.metrics.tdcf import (
    ASVRates,
    TDCFCost,
    TDCFResult,
    asv_rates_from_scores,
    min_tdcf_2019,
    min_tdcf_2021,
    tdcf_2019_from_curve,
    tdcf_2021_from_curve,
)
from sddkit.metrics.teer import TEERResult, t_eer

__all__ = [
    "ADCFCost",
    "ADCFResult",
    "ASVRates",
    "CurveMetric",
    "DCFCost",
    "DCFResult",
    "DetCurve",
    "EERResult",
    "MetricError",
    "TDCFCost",
    "TDCFResult",
    "TEERResult",
    "ThresholdMetrics",
    "a_dcf",
    "accuracy",
    "act_dcf",
    "asv_rates_from_scores",
    "balanced_accuracy",
    "bootstrap_ci",
    "paired_bootstrap",
    "PairedDifference",
    "cllr",
    "det_curve",
    "eer",
    "eer_from_curve",
    "min_cllr",
    "min_dcf",
    "min_dcf_from_curve",
    "min_tdcf_2019",
    "min_tdcf_2021",
    "roc_auc",
    "t_eer",
    "tdcf_2019_from_curve",
    "tdcf_2021_from_curve",
    "threshold_metrics",
]
