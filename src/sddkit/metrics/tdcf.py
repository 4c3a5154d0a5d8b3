"""Tandem detection cost function (t-DCF) of a countermeasure (CM) placed before a fixed ASV system.

Two forms, both minimised over the CM threshold along the DET curve:

* ASVspoof 2019 (legacy; Kinnunen et al., Odyssey 2018), the official ``compute_tDCF_legacy``::

      C1 = P_tar (C_miss_cm - C_miss_asv Pmiss_asv) - P_non C_fa_asv Pfa_asv
      C2 = C_fa_cm P_spoof (1 - Pmiss_spoof_asv)
      t-DCF_norm(t) = (C1 Pmiss_cm(t) + C2 Pfa_cm(t)) / min(C1, C2)

  (The ASVspoof 5 evaluation package's first releases reported their "min t-DCF" with this form.)

* ASVspoof 2021 (revised; Kinnunen et al., IEEE/ACM TASLP 2020), the official ``compute_tDCF``::

      C0 = P_tar C_miss Pmiss_asv + P_non C_fa Pfa_asv
      C1 = P_tar C_miss - C0
      C2 = P_spoof C_fa_spoof Pfa_spoof_asv
      t-DCF_norm(t) = (C0 + C1 Pmiss_cm(t) + C2 Pfa_cm(t)) / (C0 + min(C1, C2))

  (The ASVspoof 5 evaluation package as it stands reports its "min t-DCF" with this form, keeping the
  legacy one as ``compute_tDCF_legacy``.)

The ASV error rates are inputs. The defaults are the ASVspoof 5 organisers' pooled ASV rates
hard-coded in the ASVspoof 5 evaluation package (``calculate_metrics.py``, "pre-computed ASV error
rates pooled over all conditions", used there whenever no organiser ASV scores are given):
Pfa_asv = 0.01881016557566423, Pmiss_asv = 0.01880141010575793,
Pfa_spoof_asv = 0.4607082907604729 (so Pmiss_spoof_asv = 1 - that). They are the rates of the
ASVspoof 5 organisers' ASV system, not of the ASVspoof 2019/2021 ones, whose official figures used
their own ASV scores per condition (2021: the pre-computed C0/C1/C2 of its evaluation package).
Given the organisers' ASV scores instead (``asv_scores_org``, read at commit 8c000276), that package passes
the third value of ``obtain_asv_error_rates``, the ASV's spoof *miss* rate, as ``Pfa_spf_ASV_org`` to
``compute_tDCF``; :func:`asv_rates_from_scores` gives the spoof false-alarm rate there, as the ASVspoof 2019
and 2021 scripts do, so a t-DCF from those scores is not that package's figure.

The official functions refuse CM scores with fewer than 3 distinct values ("binary decisions"); here they
are scored like any others.

Costs (one dataclass for both forms): the 2021 ``C_miss``, ``C_fa``, ``C_fa_spoof`` are used
in the legacy form as ``C_miss_asv = C_miss_cm = c_miss``, ``C_fa_asv = c_fa`` and
``C_fa_cm = c_fa_spoof``, which reproduces both official cost models (1, 10, 1, 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sddkit.metrics.det import DetCurve, det_curve
from sddkit.metrics.inputs import MetricError, as_scores, settings


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a rate in [0, 1], got {value}")


@dataclass
class ASVRates:
    """Error rates of the fixed ASV system at its operating point (fractions, not percent)."""

    pfa: float = 0.01881016557566423  # nontargets (zero-effort impostors) accepted
    pmiss: float = 0.01880141010575793  # targets rejected
    pfa_spoof: float = 0.4607082907604729  # spoofs accepted

    def __post_init__(self) -> None:
        for name in ("pfa", "pmiss", "pfa_spoof"):
            _check_rate(name, getattr(self, name))

    @property
    def pmiss_spoof(self) -> float:
        """Spoofs rejected by the ASV system (the legacy form's input)."""
        return 1.0 - self.pfa_spoof


def asv_rates_from_scores(target: object, nontarget: object, spoof: object) -> ASVRates:
    """An ASV system's error rates at its own EER threshold, obtained as the official ASVspoof 2019 and 2021
    evaluation scripts obtain them from the organisers' ASV scores (``obtain_asv_error_rates``), so that a t-DCF
    computed with them is the challenges' figure.

    ``target``, ``nontarget``, ``spoof``: the ASV scores (higher = more likely the claimed speaker) of target,
    zero-effort non-target and spoofed trials. The threshold is the one the official ``compute_eer`` returns:
    the candidates are the lowest score less 0.001 and every score (targets sorted before non-targets of equal
    score); at each, the targets up to it count as missed and the non-targets after it as accepted, and the first
    candidate where the two rates are closest is taken. The rates are then counted as the scripts count them: a
    target scoring below the threshold is missed, a non-target or spoof scoring at or above it is accepted.
    """
    tar = as_scores(target, "ASV target scores")
    non = as_scores(nontarget, "ASV non-target scores")
    spf = as_scores(spoof, "ASV spoof scores")
    for name, values in (("target", tar), ("non-target", non), ("spoof", spf)):
        if values.size == 0:
            raise MetricError(f"ASV error rates need {name} trials; the ASV scores hold none")
    scores = np.concatenate([tar, non])
    order = np.argsort(scores, kind="stable")  # stable: a target ties before a non-target, as in the scripts
    is_target = np.concatenate([np.ones(tar.size), np.zeros(non.size)])[order]
    targets_below = np.cumsum(is_target)
    nontargets_above = non.size - (np.arange(1, scores.size + 1) - targets_below)
    miss = np.concatenate([[0.0], targets_below / tar.size])
    false_alarm = np.concatenate([[1.0], nontargets_above / non.size])
    candidates = np.concatenate([[scores[order[0]] - 0.001], scores[order]])
    threshold = candidates[int(np.argmin(np.abs(miss - false_alarm)))]
    return ASVRates(
        pfa=float(np.mean(non >= threshold)),
        pmiss=float(np.mean(tar < threshold)),
        pfa_spoof=float(np.mean(spf >= threshold)),
    )


@dataclass
class TDCFCost:
    """Priors and costs of the t-DCF (defaults: ASVspoof 2019/2021/5, P_spoof = 0.05)."""

    p_tar: float = 0.95 * 0.99
    p_non: float = 0.95 * 0.01
    p_spoof: float = 0.05
    c_miss: float = 1.0
    c_fa: float = 10.0
    c_fa_spoof: float = 10.0

    def __post_init__(self) -> None:
        priors = (self.p_tar, self.p_non, self.p_spoof)
        if not all(math.isfinite(v) for v in (*priors, self.c_miss, self.c_fa, self.c_fa_spoof)):
            raise ValueError(f"t-DCF priors and costs must be finite, got {self}")
        if min(priors) < 0 or abs(sum(priors) - 1.0) > 1e-10:
            raise ValueError(f"priors p_tar, p_non, p_spoof must be non-negative and sum to 1, got {priors}")
        if min(self.c_miss, self.c_fa, self.c_fa_spoof) < 0:
            raise ValueError("t-DCF costs must be non-negative")


@dataclass(frozen=True)
class TDCFResult:
    """Minimum normalised t-DCF and the CM threshold attaining it (accept iff score >= threshold)."""

    tdcf: float
    threshold: float

    def __float__(self) -> float:
        return self.tdcf


def _minimum(curve: DetCurve, values: np.ndarray) -> TDCFResult:
    idx = int(np.argmin(values))
    return TDCFResult(tdcf=float(values[idx]), threshold=float(curve.thresholds[idx]))


def tdcf_2019_from_curve(curve: DetCurve, asv: ASVRates | None = None, cost: TDCFCost | None = None) -> TDCFResult:
    asv, cost = settings(asv, ASVRates, "t-DCF ASV error rates"), settings(cost, TDCFCost, "t-DCF cost")
    c1 = cost.p_tar * (cost.c_miss - cost.c_miss * asv.pmiss) - cost.p_non * cost.c_fa * asv.pfa
    c2 = cost.c_fa_spoof * cost.p_spoof * (1.0 - asv.pmiss_spoof)
    if c1 <= 0:
        raise MetricError(f"t-DCF weights must be positive (C1={c1:.4g}, C2={c2:.4g}); check the ASV error rates")
    if c2 <= 0:
        # the ASV accepts no spoof (pfa_spoof = 0) or spoofs cost nothing: no CM error can matter, and the normaliser
        # min(C1, C2) is 0
        raise MetricError(
            "the legacy t-DCF is undefined when C2 = C_fa_spoof P_spoof Pfa_spoof_asv is 0 "
            f"(pfa_spoof={asv.pfa_spoof}, p_spoof={cost.p_spoof}, c_fa_spoof={cost.c_fa_spoof}): its normaliser "
            "min(C1, C2) is 0"
        )
    return _minimum(curve, (c1 * curve.miss + c2 * curve.fa) / min(c1, c2))


def tdcf_2021_from_curve(curve: DetCurve, asv: ASVRates | None = None, cost: TDCFCost | None = None) -> TDCFResult:
    asv, cost = settings(asv, ASVRates, "t-DCF ASV error rates"), settings(cost, TDCFCost, "t-DCF cost")
    c0 = cost.p_tar * cost.c_miss * asv.pmiss + cost.p_non * cost.c_fa * asv.pfa
    c1 = cost.p_tar * cost.c_miss - c0
    c2 = cost.p_spoof * cost.c_fa_spoof * asv.pfa_spoof
    if c1 < 0 or c2 < 0:
        raise MetricError(
            f"t-DCF weights must be non-negative (C0={c0:.4g}, C1={c1:.4g}, C2={c2:.4g}); check the ASV error rates"
        )
    if c0 + min(c1, c2) <= 0:
        # e.g. an ASV without errors that accepts no spoof: the system without a CM costs nothing
        raise MetricError(
            f"the t-DCF is undefined when its normaliser C0 + min(C1, C2) is 0 (C0={c0:.4g}, C1={c1:.4g}, "
            f"C2={c2:.4g}): with these ASV error rates and costs the ASV alone costs nothing"
        )
    return _minimum(curve, (c0 + c1 * curve.miss + c2 * curve.fa) / (c0 + min(c1, c2)))


def min_tdcf_2019(
    labels: object, scores: object, asv: ASVRates | None = None, cost: TDCFCost | None = None
) -> TDCFResult:
    """Minimum normalised t-DCF, ASVspoof 2019 (legacy) form, of CM ``scores``."""
    return tdcf_2019_from_curve(det_curve(labels, scores), asv, cost)


def min_tdcf_2021(
    labels: object, scores: object, asv: ASVRates | None = None, cost: TDCFCost | None = None
) -> TDCFResult:
    """Minimum normalised t-DCF, ASVspoof 2021 (revised) form, of CM ``scores``."""
    return tdcf_2021_from_curve(det_curve(labels, scores), asv, cost)
