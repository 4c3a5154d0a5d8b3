"""Architecture-agnostic DCF (a-DCF; Shim et al., Odyssey 2024) of spoofing-aware speaker verification.

A SASV system gives one score per trial; a trial is a *target* (bona fide, right speaker),
a *nontarget* (bona fide, wrong speaker) or a *spoof*. At threshold t (accept iff
score >= t)::

    a-DCF(t) = C_miss P_tar Pmiss_tar(t) + C_fa_asv P_non Pfa_non(t) + C_fa_spoof P_spf Pfa_spf(t)

normalised, as in the reference ``calculate_a_dcf``, by the cheaper trivial system:
``min(C_fa_asv P_non + C_fa_spoof P_spf, C_miss P_tar)`` (accept all vs reject all). The
minimum over thresholds is the min a-DCF.

Defaults are the costs the ASVspoof 5 evaluation package (``evaluation-package/calculate_metrics.py`` of
asvspoof-challenge/asvspoof5) scores track 2 with as it stands (read at commits 8db95086 and 8c000276):
``calculate_aDCF_tdcf_tEER`` builds its ``a_dcf.CostModel`` from the t-DCF cost model, so
P_tar = 0.95 * 0.99 = 0.9405, P_non = 0.95 * 0.01 = 0.0095,
P_spf = 0.05, C_miss = 1, C_fa_asv = 10, C_fa_spoof = 10, and the normaliser is
min(10 * 0.0095 + 10 * 0.05, 0.9405) = 0.595 (accept-all is the cheaper trivial system). The package's first
releases (e.g. commit 78680450) called ``a_dcf.CostModel()`` without arguments instead, i.e. the defaults of the
``a_dcf`` package (shimhz/a_DCF): P_tar = 0.9, P_non = 0.05, P_spf = 0.05, C_miss = 1, C_fa_asv = 10, C_fa_spoof = 20
(normaliser min(0.5 + 1.0, 0.9) = 0.9); pass ``ADCFCost(p_tar=0.9, p_non=0.05, p_spf=0.05,
c_fa_spoof=20.0)`` to reproduce figures computed with those.
As for the DET curve, tied scores share one operating point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sddkit.metrics.inputs import MetricError, as_scores, settings


@dataclass
class ADCFCost:
    """Priors and costs of the a-DCF (defaults: ASVspoof 5 track 2, as its evaluation package now scores it)."""

    p_tar: float = 0.95 * 0.99
    p_non: float = 0.95 * 0.01
    p_spf: float = 0.05
    c_miss: float = 1.0
    c_fa_asv: float = 10.0
    c_fa_spoof: float = 10.0

    def __post_init__(self) -> None:
        priors = (self.p_tar, self.p_non, self.p_spf)
        if not all(math.isfinite(v) for v in (*priors, self.c_miss, self.c_fa_asv, self.c_fa_spoof)):
            raise ValueError(f"a-DCF priors and costs must be finite, got {self}")
        if min(priors) < 0 or abs(sum(priors) - 1.0) > 1e-10:
            raise ValueError(f"priors p_tar, p_non, p_spf must be non-negative and sum to 1, got {priors}")
        if min(self.c_miss, self.c_fa_asv, self.c_fa_spoof) <= 0:
            raise ValueError("a-DCF costs must be positive")
        if self.normaliser <= 0:
            # p_tar = 0 or p_non = p_spf = 0: one trivial system costs nothing, the normalised a-DCF is 0/0
            raise ValueError(f"a-DCF needs p_tar > 0 and p_non + p_spf > 0, got {priors}")

    @property
    def normaliser(self) -> float:
        accept_all = self.c_fa_asv * self.p_non + self.c_fa_spoof * self.p_spf
        reject_all = self.c_miss * self.p_tar
        return min(accept_all, reject_all)


@dataclass(frozen=True)
class ADCFResult:
    """Normalised a-DCF and its threshold (accept iff score >= threshold)."""

    a_dcf: float
    threshold: float

    def __float__(self) -> float:
        return self.a_dcf


def _fraction_above(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``sorted_scores`` >= each threshold."""
    return 1.0 - np.searchsorted(sorted_scores, thresholds, side="left") / sorted_scores.size


def a_dcf(
    target: object,
    nontarget: object,
    spoof: object,
    cost: ADCFCost | None = None,
    threshold: float | None = None,
) -> ADCFResult:
    """Min a-DCF of SASV scores (or the a-DCF at ``threshold`` when one is given)."""
    cost = settings(cost, ADCFCost, "a-DCF cost")  # a threshold in its place (a_dcf(t, n, s, 0.0)) is refused
    tar = np.sort(as_scores(target, "target scores"))
    non = np.sort(as_scores(nontarget, "nontarget scores"))
    spf = np.sort(as_scores(spoof, "spoof scores"))
    empty = [name for name, arr in (("target", tar), ("nontarget", non), ("spoof", spf)) if arr.size == 0]
    if empty:
        raise MetricError(f"a-DCF needs target, nontarget and spoof trials; none of: {', '.join(empty)}")
    if threshold is None:
        distinct = np.unique(np.concatenate([tar, non, spf]))
        with np.errstate(over="ignore"):  # above the largest float (1.8e308) it is inf: still above every score
            thresholds = np.r_[distinct, np.nextafter(distinct[-1], np.inf)]
    elif math.isnan(threshold):
        raise MetricError("a-DCF threshold is NaN")
    else:
        thresholds = np.array([float(threshold)])
    p_miss = 1.0 - _fraction_above(tar, thresholds)
    p_fa_non = _fraction_above(non, thresholds)
    p_fa_spf = _fraction_above(spf, thresholds)
    raw = cost.c_miss * cost.p_tar * p_miss + cost.c_fa_asv * cost.p_non * p_fa_non
    raw = raw + cost.c_fa_spoof * cost.p_spf * p_fa_spf
    values = raw / cost.normaliser
    idx = int(np.argmin(values))
    return ADCFResult(a_dcf=float(values[idx]), threshold=float(thresholds[idx]))
