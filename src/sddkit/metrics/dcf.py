"""Detection cost functions of ASVspoof 5 track 1: minimum and actual normalised DCF.

    DCF(t) = C_miss * (1 - P_spoof) * P_miss(t) + C_fa * P_spoof * P_fa(t)

normalised by the cost of the better trivial system, ``min(C_miss (1 - P_spoof), C_fa P_spoof)``,
so a useless detector scores 1. With the ASVspoof 5 constants (P_spoof = 0.05, C_miss = 1,
C_fa = 10) the normaliser is 0.5 and ``DCF_norm = 1.9 P_miss + P_fa``.

minDCF takes the best threshold over the DET curve (calibration-free); actDCF uses the
Bayes threshold for log-likelihood-ratio scores, ``-log(C_miss (1 - P_spoof) / (C_fa P_spoof))``
(``-ln 1.9`` with the constants above), so it also measures calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sddkit.metrics.det import DetCurve, det_curve
from sddkit.metrics.inputs import settings, split_classes


@dataclass
class DCFCost:
    """Priors and costs of the bona fide/spoof DCF (defaults: ASVspoof 5 track 1)."""

    p_spoof: float = 0.05
    c_miss: float = 1.0
    c_fa: float = 10.0

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.p_spoof, self.c_miss, self.c_fa)):
            raise ValueError(f"DCF priors and costs must be finite, got {self}")
        if not 0.0 < self.p_spoof < 1.0:
            raise ValueError(f"p_spoof must be in (0, 1), got {self.p_spoof}")
        if self.c_miss <= 0 or self.c_fa <= 0:
            raise ValueError(f"costs must be positive, got c_miss={self.c_miss}, c_fa={self.c_fa}")

    @property
    def miss_weight(self) -> float:
        return self.c_miss * (1.0 - self.p_spoof)

    @property
    def fa_weight(self) -> float:
        return self.c_fa * self.p_spoof

    @property
    def normaliser(self) -> float:
        """Cost of the better of "accept all" and "reject all"."""
        return min(self.miss_weight, self.fa_weight)

    @property
    def bayes_threshold(self) -> float:
        """Optimal threshold on calibrated LLR scores: ``-log(C_miss (1 - P_spoof) / (C_fa P_spoof))``.

        Computed in that order and with numpy's ``log``, as the official ``compute_actDCF`` does
        (``-np.log(beta)``): the equal ``log(C_fa P_spoof / (C_miss (1 - P_spoof)))`` can round one ulp apart
        (-0.6418538861723948 vs the official -0.6418538861723947 for the ASVspoof 5 costs), and so can Python's
        ``math.log``, which numpy's does not always equal (e.g. ``P_spoof = 0.16, C_miss = 10, C_fa = 50``), each
        flipping a score lying exactly there.
        """
        return -float(np.log(self.miss_weight / self.fa_weight))


@dataclass(frozen=True)
class DCFResult:
    """Normalised DCF and the threshold it was taken at (accept iff score >= threshold)."""

    dcf: float
    threshold: float

    def __float__(self) -> float:
        return self.dcf


def min_dcf_from_curve(curve: DetCurve, cost: DCFCost | None = None) -> DCFResult:
    cost = settings(cost, DCFCost, "DCF cost")
    dcf = (cost.miss_weight * curve.miss + cost.fa_weight * curve.fa) / cost.normaliser
    idx = int(np.argmin(dcf))
    return DCFResult(dcf=float(dcf[idx]), threshold=float(curve.thresholds[idx]))


def min_dcf(labels: object, scores: object, cost: DCFCost | None = None) -> DCFResult:
    """Minimum normalised DCF over all thresholds."""
    return min_dcf_from_curve(det_curve(labels, scores), cost)


def act_dcf(labels: object, scores: object, cost: DCFCost | None = None) -> DCFResult:
    """Normalised DCF at the Bayes threshold for LLR scores (``cost.bayes_threshold``)."""
    cost = settings(cost, DCFCost, "DCF cost")
    bona, spoof = split_classes(labels, scores)
    threshold = cost.bayes_threshold
    p_miss = float(np.mean(bona < threshold))
    p_fa = float(np.mean(spoof >= threshold))
    dcf = (cost.miss_weight * p_miss + cost.fa_weight * p_fa) / cost.normaliser
    return DCFResult(dcf=float(dcf), threshold=threshold)
