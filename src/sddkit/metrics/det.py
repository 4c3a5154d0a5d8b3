"""DET curve and equal error rate, following the ASVspoof evaluation packages.

The official ``compute_det_curve`` sorts all scores and, after each sorted score, counts the
bona fide trials rejected (miss) and the spoof trials still accepted (false alarm); the EER
is the mean of miss and false-alarm rate at the operating point where ``|miss - fa|`` is
smallest. That walk visits one point per *trial*, so tied scores produce operating points no
threshold can realise (and an all-tied score set can come out at 100 % EER). Here the walk is
over *distinct* score values instead; on tie-free scores the curve is identical to the official one,
and so is the EER unless two operating points are exactly equally close to ``miss = fa`` (e.g. 14 bona
fide and 4 spoof trials with gaps 1/4 - 3/14 and 4/14 - 1/4): the official ``np.argmin`` then takes
whichever the floating-point rounding of the two gaps favours, sddkit the first (see :func:`eer_from_curve`).

The minima (minDCF, the t-DCFs, the a-DCF) are those of the official walk also on ties: it counts tied bona
fide (target) trials as rejected before the spoof (non-target, spoof) ones, so each point it adds inside a run
of ties costs at least as much as one of the run's two ends.

Decision rule used throughout sddkit: a trial is accepted as bona fide iff
``score >= threshold``. A returned threshold (EER, minDCF, t-DCF, a-DCF) is thus the lowest *accepted*
score, where the official ``compute_eer``, ``compute_mindcf``, ``compute_tDCF`` and ``calculate_a_dcf`` return the
highest *rejected* one (the lowest score less 0.001, or 1e-8 for the a-DCF, when all are accepted): the same
operating point, named by the next lower score. actDCF's is its Bayes threshold, as the official one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sddkit.metrics.inputs import check_binary


@dataclass(frozen=True)
class DetCurve:
    """Operating points of a detector, from "accept everything" to "reject everything".

    miss: (K+1,) fraction of bona fide trials rejected (score < threshold), non-decreasing.
    fa: (K+1,) fraction of spoof trials accepted (score >= threshold), non-increasing.
    thresholds: (K+1,) threshold of each point for the rule ``score >= threshold``; the last
        one lies just above the highest score (inf when that is the largest float, 1.8e308). K is the number of
        distinct scores.
    """

    miss: np.ndarray
    fa: np.ndarray
    thresholds: np.ndarray
    n_bonafide: int
    n_spoof: int


def det_curve(labels: object, scores: object) -> DetCurve:
    """DET curve of ``scores`` (higher = bona fide) against ``labels`` (1 = bona fide)."""
    y, s = check_binary(labels, scores)
    order = np.argsort(s)
    s_sorted, y_sorted = s[order], y[order]
    n_bona = int(y.sum())
    n_spoof = len(y) - n_bona
    # index of the last trial of every run of equal scores: operating points sit between runs
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    bona_at_or_below = np.cumsum(y_sorted)[last]
    spoof_at_or_below = last + 1 - bona_at_or_below
    miss = np.r_[0.0, bona_at_or_below / n_bona]
    fa = np.r_[1.0, (n_spoof - spoof_at_or_below) / n_spoof]
    distinct = s_sorted[last]
    with np.errstate(over="ignore"):  # above the largest float (1.8e308) it is inf: still above every score
        thresholds = np.r_[distinct, np.nextafter(distinct[-1], np.inf)]
    return DetCurve(miss=miss, fa=fa, thresholds=thresholds, n_bonafide=n_bona, n_spoof=n_spoof)


@dataclass(frozen=True)
class EERResult:
    """Equal error rate as a fraction in [0, 1] and its threshold (accept iff score >= threshold)."""

    eer: float
    threshold: float

    def __float__(self) -> float:
        return self.eer


def eer_from_curve(curve: DetCurve) -> EERResult:
    """EER at the point where |miss - fa| is smallest (first such point on ties, as np.argmin).

    Gaps equal as fractions can differ in their last bit (1 - 1/3 vs 2/3 - 0), so a tie is judged with a
    tolerance of half the smallest difference two unequal gaps can have: every gap is a whole multiple of
    ``1 / (n_bonafide n_spoof)`` (a fixed 1e-12 merged real gaps of sets of a million trials per class). That
    half stays above the rounding error (< 5e-16) while n_bonafide n_spoof is below about 1e15 (30 million trials
    per class); otherwise rounding, not order, would pick the point.
    """
    gap = np.abs(curve.miss - curve.fa)
    tolerance = 0.5 / (float(curve.n_bonafide) * float(curve.n_spoof))
    idx = int(np.flatnonzero(gap <= gap.min() + tolerance)[0])
    return EERResult(eer=float((curve.miss[idx] + curve.fa[idx]) / 2), threshold=float(curve.thresholds[idx]))


def eer(labels: object, scores: object) -> EERResult:
    """Equal error rate (fraction) of ``scores`` against ``labels`` (1 = bona fide, 0 = spoof).

    Raises MetricError with only one class or non-finite scores.
    """
    return eer_from_curve(det_curve(labels, scores))


@dataclass(frozen=True)
class CurveMetric:
    """A metric that depends on the DET curve alone (EER, minDCF), callable as ``metric(labels, scores)``.

    ``from_curve``: the metric of a :class:`DetCurve` (:func:`eer_from_curve`, ``min_dcf_from_curve``). The
    bootstraps (:mod:`sddkit.metrics.bootstrap`) recognise it and build each replicate's curve from per-trial
    counts over one sort of the scores, instead of sorting every resample: the same values, far faster.
    """

    from_curve: Callable[[DetCurve], object]

    def __call__(self, labels: object, scores: object) -> object:
        return self.from_curve(det_curve(labels, scores))
