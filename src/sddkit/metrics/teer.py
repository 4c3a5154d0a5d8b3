"""Concurrent tandem equal error rate (t-EER; Kinnunen et al., "t-EER: Parameter-free tandem evaluation of
countermeasures and biometric comparators", IEEE TPAMI 2023) of a countermeasure (CM) before an ASV system.

A bona fide trial passes the tandem when the CM accepts it and the ASV accepts it; a spoof is let through when both
accept it. With the CM and ASV error rates at thresholds ``(t_cm, t_asv)`` (and the two systems' decisions taken
as independent, as in the paper)::

    Pmiss_tdm = Pmiss_cm + (1 - Pmiss_cm) Pmiss_asv
    Pfa_tdm   = (1 - rho) (1 - Pmiss_cm) Pfa_non_asv + rho Pfa_cm Pfa_spf_asv

where ``rho`` is the prior of a spoof among the non-target trials. For each ``rho`` the points where
``Pmiss_tdm = Pfa_tdm`` form a path of threshold pairs; the paths of all ``rho`` cross where the two
false-alarm terms are equal, ``(1 - Pmiss_cm) Pfa_non_asv = Pfa_cm Pfa_spf_asv``, so that the tandem's miss and
false-alarm rates agree whatever ``rho`` is. The tandem error there, ``Pfa_cm Pfa_spf_asv``, is the *concurrent*
t-EER, the figure the ASVspoof 5 evaluation package reports as "t-EER".

How the value is picked, as the package's ``compute_teer`` (``evaluation-package/calculate_modules.py`` of
asvspoof-challenge/asvspoof5, read at commit 8db95086) picks it: the CM operating points are those of its
``compute_det_curve`` (one per trial of the sorted CM scores, bona fide trials sorted before spoof ones of equal
score), the ASV ones those of its ``compute_Pmiss_Pfa_Pspoof_curves`` (one per trial of the sorted ASV scores:
target, then non-target, then spoof on ties). For each ASV point, the CM point nearest the path (smallest
``|Pmiss_tdm - Pfa_tdm|``, the first on ties) is taken, at ``rho`` = 0.5; of the ASV points where
``Pmiss_asv < (1 - rho) Pfa_non_asv + rho Pfa_spf_asv`` (the region where a path exists), the first whose pair is
nearest the crossing, by ``|Pfa_non_asv / Pfa_spf_asv - Pfa_cm / (1 - Pmiss_cm)|``, gives the value. sddkit does
the same with the same floating-point operations, and returns the same value as a fraction (the package returns
percent). Where the package walks all CM points for each ASV point (``O(M N)``: a quarter of an hour on ASVspoof
5's hundreds of thousands of trials), this finds the nearest CM point by bisection: ``Pmiss_tdm - Pfa_tdm`` never
decreases along the CM points, so the search is ``O(M log N)`` in time and ``O(M + N)`` in memory for ``M`` ASV and
``N`` CM trials. The package's first release (e.g. commit 78680450) searched at ``rho`` = 0 (its loop over 0, 0.5
and 1 returned after the first); ``rho=0.0`` reproduces those figures. Like the package's walk, the operating
points include those inside runs of tied scores, which no threshold realises.

The inputs are the marginal score sets: the package takes the CM scores of its target and non-target trials as
the bona fide set and those of its spoof trials as the spoof set (each a CM score per SASV trial, so an utterance
tested against several claimed speakers counts once per trial), and the ASV scores of the same trials by kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sddkit.metrics.inputs import MetricError, as_scores


@dataclass(frozen=True)
class TEERResult:
    """Concurrent t-EER as a fraction in [0, 1] and the thresholds of its operating point.

    Thresholds follow "accept iff score >= threshold": each is the lowest score its system accepts there (just
    above the highest score when it accepts none), where ``compute_teer`` records the highest one it rejects. A
    point inside a run of tied scores is named by the tied value.
    """

    teer: float
    cm_threshold: float
    asv_threshold: float

    def __float__(self) -> float:
        return self.teer


def _walk(groups: tuple[np.ndarray, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sorted scores of all ``groups`` (stable: on ties the earlier group first) and, per group, how many of its
    trials lie at or below each sorted position, with a leading 0: (K,), [(K + 1,)] for K trials in all."""
    scores = np.concatenate(groups)
    kind = np.repeat(np.arange(len(groups)), [g.size for g in groups])
    order = np.argsort(scores, kind="stable")
    kind = kind[order]
    counts = [np.r_[0, np.cumsum(kind == i)] for i in range(len(groups))]
    return scores[order], counts


def _threshold(sorted_scores: np.ndarray, index: int) -> float:
    """The lowest accepted score at walk point ``index`` (the first ``index`` trials rejected)."""
    if index < sorted_scores.size:
        return float(sorted_scores[index])
    with np.errstate(over="ignore"):  # above the largest float it is inf: still above every score
        return float(np.nextafter(sorted_scores[-1], np.inf))


def t_eer(
    cm_bonafide: object,
    cm_spoof: object,
    asv_target: object,
    asv_nontarget: object,
    asv_spoof: object,
    *,
    rho: float = 0.5,
) -> TEERResult:
    """Concurrent t-EER of CM scores (higher = bona fide) before ASV scores (higher = the claimed speaker).

    ``cm_bonafide``/``cm_spoof``: the CM scores of bona fide and spoof trials; ``asv_target``, ``asv_nontarget``,
    ``asv_spoof``: the ASV scores of target, non-target and spoof trials. ``rho``: the spoof prior of the search
    (module docstring; 0.5 as the ASVspoof 5 package now, 0 as its first release). Raises MetricError on an empty
    set, non-finite scores, a set that is not 1-D, or when no ASV point has a finite distance to the crossing.
    """
    try:
        rho = float(rho)
    except (TypeError, ValueError):
        raise MetricError(f"t-EER rho must be a number in [0, 1], got {rho!r}") from None
    if not 0.0 <= rho <= 1.0:  # also refuses NaN
        raise MetricError(f"t-EER rho must be a number in [0, 1], got {rho}")
    named = {
        "CM bona fide": cm_bonafide,
        "CM spoof": cm_spoof,
        "ASV target": asv_target,
        "ASV non-target": asv_nontarget,
        "ASV spoof": asv_spoof,
    }
    sets = {name: as_scores(values, f"{name} scores") for name, values in named.items()}
    empty = [name for name, values in sets.items() if values.size == 0]
    if empty:
        raise MetricError(f"t-EER needs trials of every kind; no {', '.join(empty)} scores given")
    bona, spoof, tar, non, spf = sets.values()

    # the operations below are those of compute_det_curve / compute_Pmiss_Pfa_Pspoof_curves, in their order, so
    # that rates, gaps and ties come out bit for bit as there
    cm_sorted, (bona_below, spoof_below) = _walk((bona, spoof))
    n_cm = cm_sorted.size
    miss_cm = bona_below / bona.size
    fa_cm = np.r_[1.0, (spoof.size - spoof_below[1:]) / spoof.size]
    asv_sorted, (tar_below, non_below, spf_below) = _walk((tar, non, spf))
    miss_asv = tar_below / tar.size
    fa_non = np.r_[1.0, 1 - non_below[1:] / non.size]
    fa_spf = np.r_[1.0, 1 - spf_below[1:] / spf.size]

    allowed = np.flatnonzero(miss_asv < (1 - rho) * fa_non + rho * fa_spf)
    a, b, c = miss_asv[allowed], fa_non[allowed], fa_spf[allowed]
    kept_cm = 1 - miss_cm
    non_weight = (1 - rho) * kept_cm
    spf_weight = rho * fa_cm

    def gap(k: np.ndarray) -> np.ndarray:
        """Pmiss_tdm - Pfa_tdm at CM point ``k[i]`` and ASV point ``allowed[i]``."""
        return (miss_cm[k] + kept_cm[k] * a) - (non_weight[k] * b + spf_weight[k] * c)

    def first_at_least(level: np.ndarray | float) -> np.ndarray:
        """Per ASV point, the first CM point whose gap is >= ``level`` (n_cm + 1 when none): the gap never
        decreases along the CM points (its weight on Pmiss_cm, 1 - Pmiss_asv + (1 - rho) Pfa_non_asv, is >= 0,
        and the one on Pfa_cm, -rho Pfa_spf_asv, <= 0). Rounding could only break that between gaps a few ulps
        apart; where a path exists, a step along the CM points leaves the gap as it is (computed alike) or moves it
        by at least 1 / (n_bona n_target) or rho / (n_spoof n_asv_spoof)."""
        lo = np.zeros(allowed.size, dtype=np.int64)
        hi = np.full(allowed.size, n_cm + 1, dtype=np.int64)
        for _ in range((n_cm + 1).bit_length()):
            mid = (lo + hi) // 2
            below = gap(np.minimum(mid, n_cm)) < level
            searching = lo < hi
            lo = np.where(searching & below, mid + 1, lo)
            hi = np.where(searching & ~below, mid, hi)
        return lo

    # np.argmin(|gap|) over a non-decreasing gap: the first point at or above 0, or the first of the run of the
    # last value below 0, whichever is nearer 0 (the earlier one when both are as near)
    above = first_at_least(0.0)
    last_below = np.maximum(above - 1, 0)
    run_start = first_at_least(gap(last_below))
    gap_above = np.abs(gap(np.minimum(above, n_cm)))
    gap_below = np.abs(gap(run_start))
    take_below = (above > 0) & ((above > n_cm) | (gap_below <= gap_above))
    nearest = np.where(take_below, run_start, above)

    with np.errstate(divide="ignore", invalid="ignore"):  # b / 0 or f / 0: infinitely far (or NaN), never taken
        distance = np.abs(b / c - fa_cm[nearest] / kept_cm[nearest])
    usable = distance < np.inf
    if not usable.any():
        raise MetricError(
            "t-EER is undefined for these scores: at no ASV operating point with a tandem path does the CM operating "
            f"point nearest the path accept a bona fide trial and the ASV a spoof trial ({bona.size} CM bona fide, "
            f"{spoof.size} CM spoof, {tar.size} ASV target, {non.size} ASV non-target, {spf.size} ASV spoof scores)"
        )
    best = int(np.argmin(np.where(usable, distance, np.inf)))
    cm_point = int(nearest[best])
    asv_point = int(allowed[best])
    return TEERResult(
        teer=float(c[best] * fa_cm[cm_point]),
        cm_threshold=_threshold(cm_sorted, cm_point),
        asv_threshold=_threshold(asv_sorted, asv_point),
    )
