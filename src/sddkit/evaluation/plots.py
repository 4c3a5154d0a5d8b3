"""DET and ROC plots (PNG) drawn with matplotlib's Agg canvas: no display, no pyplot state."""

from __future__ import annotations

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


_MAX_POINTS = 4000  # curves of large sets are thinned to this many operating points for drawing


def _thin(curve: DetCurve) -> tuple[np.ndarray, np.ndarray]:
    """(fa, miss) at no more than ~_MAX_POINTS evenly spaced operating points, ends included."""
    idx = np.unique(np.linspace(0, curve.miss.size - 1, min(curve.miss.size, _MAX_POINTS)).astype(np.int64))
    return curve.fa[idx], curve.miss[idx]


def _probit(rate: np.ndarray) -> np.ndarray:
    return norm.ppf(np.clip(rate, *_DET_LIMITS))


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return path


def plot_det(curves: Mapping[str, DetCurve], path: str | Path, title: str = "DET curve") -> Path:
    """Write a DET plot (miss vs false-alarm rate on normal-deviate axes) of named curves."""
    fig = Figure(figsize=(6, 6), layout="tight")
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        point = eer_from_curve(curve)
        fa, miss = _thin(curve)
        ax.plot(
            _probit(fa),
            _probit(miss),
            lw=2.0 if i == 0 else 1.2,
            label=f"{name} (EER {100 * point.eer:.2f}%)",
        )
    ticks = norm.ppf(_DET_TICKS)
    labels = [f"{100 * t:g}" for t in _DET_TICKS]
    lo, hi = norm.ppf(_DET_LIMITS)
    ax.plot([lo, hi], [lo, hi], color="0.7", lw=0.8, ls="--")  # the EER line miss = fa
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xticks=ticks, yticks=ticks, title=title)
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
        label = name if aucs is None or name not in aucs else f"{name} (AUC {aucs[name]:.4f})"
        fa, miss = _thin(curve)
        ax.plot(fa, 1.0 - miss, lw=2.0 if i == 0 else 1.2, label=label)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set(xlim=(0, 1), ylim=(0, 1), title=title)
    ax.set_xlabel("False positive rate: spoof accepted")
    ax.set_ylabel("True positive rate: bona fide accepted")
    ax.grid(True, color="0.9")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, Path(path))
