"""DET and ROC plots (PNG) drawn with matplotlib's Agg canvas: no display, no pyplot state."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from sddkit.metrics.det import DetCurve, eer_from_curve

# DET axes show error rates on the normal-deviate (probit) scale between these rates
_DET_TICKS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95)
_DET_LIMITS = (0.0005, 0.95)
# the axes reach this share of their range beyond the curves' extremes (rates clipped to _DET_LIMITS on a DET plot,
# 0 and 1 on a ROC plot): a curve along an extreme, e.g. a system without errors, is drawn inside the frame, not
# hidden under it
_EDGE_PAD = 0.015


_MAX_POINTS = 4000  # curves of large sets are thinned to this many operating points for drawing


def _thin(curve: DetCurve) -> tuple[np.ndarray, np.ndarray]:
    """(fa, miss) at no more than ~_MAX_POINTS evenly spaced operating points, ends included."""
    idx = np.unique(np.linspace(0, curve.miss.size - 1, min(curve.miss.size, _MAX_POINTS)).astype(np.int64))
    return curve.fa[idx], curve.miss[idx]


def plain_text(name: object) -> str:
    """A group's or expert's name as literal plot text: matplotlib reads ``$...$`` as math (``$5 and $10 calls``
    lost its dollars; ``$\\x$`` made saving the figure fail)."""
    return str(name).replace("$", r"\$")


def _probit(rate: np.ndarray) -> np.ndarray:
    return norm.ppf(np.clip(rate, *_DET_LIMITS))


_SEGMENT_STEP = 0.05  # most normal deviates between drawn points along a segment both rates change on (a DET plot)


def _det_points(fa: np.ndarray, miss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probit (fa, miss) of a DET curve drawn through its operating points.

    Between two operating points where both rates change (a run of tied scores, or points a thinned curve skips)
    lie the points of the thresholds that accept part of the run (the tied trials taken in random order): on the
    straight line between the two in the rates, which probit axes bend. A straight probit segment between them
    left the curve: scores all tied (EER 50 %) crossed miss = fa at 20 %, far from their EER marker. Each such
    segment is drawn through points spread evenly along both probit axes.
    """
    px, py = _probit(fa), _probit(miss)
    xs, ys = [px[:1]], [py[:1]]
    for i in range(fa.size - 1):
        span = max(abs(px[i + 1] - px[i]), abs(py[i + 1] - py[i]))
        if fa[i + 1] != fa[i] and miss[i + 1] != miss[i] and span > _SEGMENT_STEP:
            k = int(np.ceil(span / _SEGMENT_STEP))
            # the shares t of the way along the segment where fa, and where miss, take evenly spaced probit values
            t = np.concatenate(
                [
                    (norm.cdf(np.linspace(p0, p1, k + 1)[1:-1]) - r0) / (r1 - r0)
                    for p0, p1, r0, r1 in (
                        (px[i], px[i + 1], fa[i], fa[i + 1]),
                        (py[i], py[i + 1], miss[i], miss[i + 1]),
                    )
                ]
            )
            t = np.unique(np.clip(t, 0.0, 1.0))
            xs.append(_probit(fa[i] + t * (fa[i + 1] - fa[i])))
            ys.append(_probit(miss[i] + t * (miss[i + 1] - miss[i])))
        xs.append(px[i + 1 : i + 2])
        ys.append(py[i + 1 : i + 2])
    return np.concatenate(xs), np.concatenate(ys)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return path


def plot_det(curves: Mapping[str, DetCurve], path: str | Path, title: str = "DET curve") -> Path:
    """Write a DET plot (miss vs false-alarm rate on normal-deviate axes) of named curves.

    The axes span error rates of 0.05 % to 95 %; a rate beyond them (a zero rate among them: no errors of that kind at
    that threshold) is drawn at that edge, just inside the frame."""
    fig = Figure(figsize=(6, 6), layout="tight")
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        point = eer_from_curve(curve)
        (line,) = ax.plot(
            *_det_points(*_thin(curve)),
            lw=2.0 if i == 0 else 1.2,
            label=f"{plain_text(name)} (EER {100 * point.eer:.2f}%)",
        )
        # the EER operating point, on the line miss = fa where the legend's figure puts it
        at = _probit(np.array([point.eer]))
        ax.plot(at, at, marker="o", ms=6, mec="white", mew=0.8, color=line.get_color(), ls="none", zorder=3)
    ticks = norm.ppf(_DET_TICKS)
    labels = [f"{100 * t:g}" for t in _DET_TICKS]
    lo, hi = norm.ppf(_DET_LIMITS)
    ax.plot([lo, hi], [lo, hi], color="0.7", lw=0.8, ls="--")  # the EER line miss = fa
    view = (lo - _EDGE_PAD * (hi - lo), hi + _EDGE_PAD * (hi - lo))
    ax.set(xlim=view, ylim=view, xticks=ticks, yticks=ticks, title=title)
    ax.set_xticklabels(labels)
    ax.set_yticklabels(labels)
    ax.set_xlabel("False alarm rate: spoof accepted (%)")
    ax.set_ylabel("Miss rate: bona fide rejected (%)")
    ax.grid(True, color="0.9")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, Path(path))


def plot_roc(
    curves: Mapping[str, DetCurve], path: str | Path, aucs: Mapping[str, float] | None = None, title: str = "ROC"
) -> Path:
    """Write a ROC plot (bona fide accepted vs spoof accepted) of named curves."""
    fig = Figure(figsize=(6, 6), layout="tight")
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        label = plain_text(name) if aucs is None or name not in aucs else f"{plain_text(name)} (AUC {aucs[name]:.4f})"
        fa, miss = _thin(curve)
        ax.plot(fa, 1.0 - miss, lw=2.0 if i == 0 else 1.2, label=label)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    view = (-_EDGE_PAD, 1 + _EDGE_PAD)  # a perfect system's curve runs along x = 0 and y = 1
    ax.set(xlim=view, ylim=view, title=title)
    ax.set_xlabel("False positive rate: spoof accepted")
    ax.set_ylabel("True positive rate: bona fide accepted")
    ax.grid(True, color="0.9")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, Path(path))


_HIST_BINS = 60
_FLOAT_MAX = float(np.finfo(np.float64).max)
_HIST_UNIT_ABOVE = 1e100  # scores beyond this magnitude are drawn in units of a power of ten
_HIST_FENCE = 3.0  # the histogram axis ends this many interquartile ranges beyond the quartiles (or at the scores)


def class_score_counts(curve: DetCurve) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct scores, bona fide count, spoof count) of each distinct score, read back from a DET curve.

    The curve's cumulative rates hold the per-class counts of every distinct score, so the score histograms
    need neither the scores themselves nor memory beyond the curve.
    """
    bona = np.rint(np.diff(curve.miss) * curve.n_bonafide)
    spoof = np.rint(-np.diff(curve.fa) * curve.n_spoof)
    return curve.thresholds[:-1], bona, spoof


def plot_score_histogram(
    curve: DetCurve, path: str | Path, threshold: float | None = None, title: str = "scores per class"
) -> Path:
    """Write a PNG of the bona fide and spoof score histograms (each normalised to its class's trials).

    The bins span all scores up to 3 interquartile ranges beyond either class's quartiles; scores farther out
    are counted in the edge bins (the x label says how many), so one stray score cannot squash the histograms
    into a single bin.
    ``threshold``: drawn as a vertical line (e.g. the EER threshold).
    """
    scores, bona, spoof = class_score_counts(curve)
    total = bona + spoof
    lo, hi = float(scores[-1]), float(scores[0])
    for counts in (bona, spoof):  # each class's own spread: the larger class must not push the other off the axis
        cum = np.cumsum(counts) / counts.sum()
        q25, q75 = (float(scores[min(np.searchsorted(cum, q), scores.size - 1)]) for q in (0.25, 0.75))
        lo, hi = min(lo, q25 - _HIST_FENCE * (q75 - q25)), max(hi, q75 + _HIST_FENCE * (q75 - q25))
    lo, hi = max(lo, float(scores[0])), min(hi, float(scores[-1]))
    if not hi > lo:  # all scores tied: an axis a unit wide around them
        lo, hi = lo - 0.5, hi + 0.5
        if not hi > lo:  # where 0.5 is below a float's step (|score| >= 2**53): an eighth of the score either side
            pad = abs(lo) / 8
            lo, hi = max(lo - pad, -_FLOAT_MAX), min(hi + pad, _FLOAT_MAX)
    outside = int(total[(scores < lo) | (scores > hi)].sum())
    # scores of huge magnitude (up to the float limit, 1.8e308) are drawn in units of a power of ten: the axis's
    # span, and matplotlib's transforms of it, overflowed (a crash in np.histogram or in matplotlib)
    magnitude = max(abs(lo), abs(hi))
    exponent = math.floor(math.log10(magnitude)) if magnitude > _HIST_UNIT_ABOVE else 0
    unit = 10.0**exponent
    lo, hi = lo / unit, hi / unit
    edges = np.linspace(lo, hi, _HIST_BINS + 1)
    clipped = np.clip(scores / unit, lo, hi)
    fig = Figure(figsize=(7, 4), layout="tight")
    ax = fig.add_subplot()
    for counts, n, name, color in (
        (bona, curve.n_bonafide, "bona fide", "tab:blue"),
        (spoof, curve.n_spoof, "spoof", "tab:red"),
    ):
        hist, _ = np.histogram(clipped, bins=edges, weights=counts)
        ax.stairs(hist / n, edges, fill=True, alpha=0.4, color=color, label=f"{name} ({n})")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(float(np.clip(threshold / unit, lo, hi)), color="0.3", lw=1.0, ls="--", label="EER threshold")
    xlabel = "score (higher = more bona fide)" if not exponent else f"score / 1e{exponent} (higher = more bona fide)"
    if outside:
        xlabel += f"; {outside} score(s) beyond the axis counted in the edge bins"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of the class's trials")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, Path(path))
