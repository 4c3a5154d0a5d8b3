"""Log-likelihood-ratio cost (Cllr) and its calibration-free minimum (minCllr).

    Cllr = 1 / (2 ln 2) * ( mean_bona log(1 + e^-s) + mean_spoof log(1 + e^s) )

in bits, for scores ``s`` read as natural-log LLRs of bona fide vs spoof. A system that
always outputs 0 (no information) has Cllr = 1; perfect, confident LLRs approach 0. It is the ASVspoof 5
``calculate_CLLR`` to rounding, except that a wrong-side LLR beyond about 709 in size, whose ``log1p(exp(.))``
overflows to inf there, costs its finite amount here.
minCllr is the Cllr after the optimal monotone recalibration (pool-adjacent-violators on the
scores, converted back to LLRs by removing the empirical prior), so ``Cllr - minCllr`` is
the calibration loss.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata
from sklearn.isotonic import IsotonicRegression

from sddkit.metrics.inputs import check_binary, split_classes


def _cllr(bona: np.ndarray, spoof: np.ndarray) -> float:
    # logaddexp(0, x) = log(1 + e^x) without overflow for large |x|
    bona_cost = _mean(np.logaddexp(0.0, -bona))
    spoof_cost = _mean(np.logaddexp(0.0, spoof))
    with np.errstate(over="ignore"):
        value = float((bona_cost + spoof_cost) / (2.0 * math.log(2.0)))
        if math.isinf(value):  # two costs near the float limit overflow in their sum, not always once divided
            value = float(bona_cost / (2.0 * math.log(2.0)) + spoof_cost / (2.0 * math.log(2.0)))
    return value


def _mean(costs: np.ndarray) -> np.floating:
    """The mean of finite ``costs``, finite also where their sum overflows (scores near the float limit, 1.8e308,
    whose mean cost is inf otherwise, with numpy's overflow warning)."""
    with np.errstate(over="ignore"):
        mean = costs.mean()
    if np.isinf(mean):
        mean = (costs / costs.size).sum()
    return mean


def cllr(labels: object, scores: object) -> float:
    """Cllr in bits of LLR ``scores`` (natural log, higher = bona fide)."""
    bona, spoof = split_classes(labels, scores)
    return _cllr(bona, spoof)


def min_cllr(labels: object, scores: object) -> float:
    """Cllr after optimal monotone (PAV) calibration; always <= :func:`cllr` of any monotone map."""
    y, s = check_binary(labels, scores)
    # isotonic regression of the 0/1 labels on the scores gives the PAV posterior P(bona | s);
    # tied scores are pooled into one block, as a monotone map must treat them alike. It is fitted on
    # dense ranks: sklearn merges X values less than 1e-15 apart (absolute), which would pool distinct
    # small-magnitude scores (e.g. probabilities near 0) as if they were ties
    ranks = rankdata(s, method="dense")
    posterior = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(ranks, y.astype(np.float64))
    n_bona = int(y.sum())
    prior_log_odds = math.log(n_bona / (len(y) - n_bona))
    with np.errstate(divide="ignore"):
        # posterior 0 or 1 gives infinite LLRs only on trials whose cost they make 0
        llr = np.log(posterior) - np.log1p(-posterior) - prior_log_odds
    return _cllr(llr[y], llr[~y])
