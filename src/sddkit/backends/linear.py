"""Pooled linear head: mean and standard deviation over time, then one linear layer.

frames (B, N, D) or spectral features (B, F, T)
  -> per-dimension mean and std over time          -> embedding (B, 2 * in_dim)
  -> dropout -> linear -> logits (B, 2)

The time axis follows the front-end: axis 1 for encoder frames, axis 2 for spectral features.
``layout="auto"`` takes the front-end's layout when the detector knows it (every registered
front-end declares one); a head built on its own picks the axis whose partner has size ``in_dim``,
and when both sizes equal ``in_dim`` (e.g. 80 frames of 80 mel bins) the layout is ambiguous and
must be set explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from sddkit.backends import BACKENDS
from sddkit.backends.heads import ClassifierConfig, build_classifier
from sddkit.backends.layout import require_explicit_layout
from sddkit.detectors.outputs import BackendOutput
from sddkit.errors import ConfigError

STD_FLOOR = 1e-8  # variance floor: keeps the std's gradient finite for constant inputs


def mean_std_pool(x: Tensor, dim: int) -> Tensor:
    """Concatenate the mean and (population) standard deviation along ``dim``: (..., 2 * D)."""
    mean = x.mean(dim=dim)
    std = x.var(dim=dim, correction=0).clamp_min(STD_FLOOR).sqrt()
    return torch.cat([mean, std], dim=-1)


@dataclass
class LinearHeadConfig(ClassifierConfig):
    layout: Literal["auto", "frames", "spectral"] = "auto"  # frames: (B, N, D); spectral: (B, F, T)
    dropout: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.layout not in ("auto", "frames", "spectral"):  # a KeyError at build, or no axis at the forward
            raise ValueError(f"layout must be 'auto', 'frames' or 'spectral', got {self.layout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class LinearHead(nn.Module):
    """(B, N, in_dim) or (B, in_dim, T) -> BackendOutput(logits (B, 2), embedding (B, 2 * in_dim))."""

    def __init__(self, in_dim: int, cfg: LinearHeadConfig):
        super().__init__()
        self.in_dim = in_dim
        self.layout = cfg.layout
        self.dropout = nn.Dropout(cfg.dropout)
        self.embedding_dim = 2 * in_dim
        self.classifier = build_classifier(cfg, 2 * in_dim)

    def _time_axis(self, shape: torch.Size) -> int:
        if len(shape) != 3:
            raise ValueError(f"expected (B, N, D) or (B, F, T) features, got shape {tuple(shape)}")
        frames_ok, spectral_ok = shape[2] == self.in_dim, shape[1] == self.in_dim
        if self.layout == "frames" and frames_ok:
            return 1
        if self.layout == "spectral" and spectral_ok:
            return 2
        if self.layout == "auto" and frames_ok != spectral_ok:
            return 1 if frames_ok else 2
        if self.layout == "auto" and frames_ok:
            raise ValueError(f"ambiguous feature layout {tuple(shape)}: set layout to 'frames' or 'spectral'")
        raise ValueError(f"features {tuple(shape)} have no axis of size {self.in_dim} (layout {self.layout!r})")

    def forward(self, features: Tensor) -> BackendOutput:
        axis = self._time_axis(features.shape)
        if features.shape[axis] == 0:  # the mean and std of no frames are NaN
            raise ValueError(f"the linear head needs at least 1 frame, got features of shape {tuple(features.shape)}")
        pooled = mean_std_pool(features, dim=axis)
        return BackendOutput(logits=self.classifier(self.dropout(pooled)), embedding=pooled)


@BACKENDS.register("linear", config=LinearHeadConfig)
def build_linear(
    cfg: LinearHeadConfig, *, in_dim: int | None = None, feature_layout: str | None = None, **_: object
) -> LinearHead:
    """Mean+std pooling over time and a linear layer, on (B, N, D) or (B, F, T) features.

    feature_layout: the front-end's layout (``frames`` or ``spectral``) when it is known; it resolves
    ``layout="auto"`` once, so an input with as many frames as feature bins is not refused as ambiguous.
    """
    if in_dim is None:
        raise ConfigError("backend 'linear' needs frame or spectral features, not the raw waveform")
    if cfg.layout == "auto" and feature_layout in ("frames", "spectral"):
        cfg = replace(cfg, layout=feature_layout)
    elif cfg.layout != "auto":
        require_explicit_layout("linear", cfg.layout, feature_layout)
    return LinearHead(in_dim, cfg)
