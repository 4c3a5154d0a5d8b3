"""SpecAugment (Park et al. 2019) time and frequency masking on spectral features.

It works on torch features ``(B, F, T)`` (or ``(F, T)``), typically inside a spectral front-end during
training, on any device:

    mask = SpecAugment(SpecAugmentConfig(freq_width=(0, 15)))
    feats = mask(feats, generator=torch.Generator().manual_seed(0))

Each item gets its own masks: ``num_freq_masks`` bands of ``f ~ U[freq_width]`` bins and
``num_time_masks`` spans of ``t ~ U[time_width]`` frames (at most ``max_time_fraction`` of
the item's frames), filled with zero or the item's mean. Random numbers are drawn on the
CPU from ``generator`` so results are identical on CPU and GPU.

It lives with the features, not with the waveform augmentations, so that a spectral front-end can use it
without importing them (and their scipy signal stack); ``sddkit.augment`` registers it as ``spec_augment``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from sddkit.config import check_probability, check_range


@dataclass
class SpecAugmentConfig:
    """freq_width / time_width: inclusive (low, high) ranges of one mask's width in bins / frames;
    num_freq_masks / num_time_masks: masks per item; max_time_fraction: cap of one time mask as a
    fraction of the frames; mask_value: "zero" or "mean" (the item's mean); p: probability per item."""

    freq_width: tuple[int, int] = (0, 15)
    time_width: tuple[int, int] = (0, 40)
    num_freq_masks: int = 2
    num_time_masks: int = 2
    max_time_fraction: float = 0.2
    mask_value: Literal["zero", "mean"] = "zero"
    p: float = 1.0

    def __post_init__(self) -> None:
        for name in ("freq_width", "time_width"):
            check_range(name, getattr(self, name), lo=0)
        for name in ("num_freq_masks", "num_time_masks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.max_time_fraction <= 1.0:
            raise ValueError(f"max_time_fraction must be in (0, 1], got {self.max_time_fraction}")
        check_probability(self.p)
        if self.mask_value not in ("zero", "mean"):  # anything else filled the masks with zeros
            raise ValueError(f"mask_value must be 'zero' or 'mean', got {self.mask_value!r}")


def _band_masks(
    b: int, size: int, count: int, width: tuple[int, int], cap: int, generator: torch.Generator | None
) -> Tensor:
    """(B, size) bool: the union of ``count`` random bands per item, widths in ``width`` capped at ``cap``."""
    mask = torch.zeros(b, size, dtype=torch.bool)
    if count == 0 or size == 0:
        return mask
    lo, hi = min(width[0], cap), min(width[1], cap)
    widths = lo + (torch.rand(b, count, generator=generator) * (hi - lo + 1)).long().clamp(max=hi - lo)
    starts = (torch.rand(b, count, generator=generator) * (size - widths + 1)).long()
    pos = torch.arange(size).view(1, 1, size)
    inside = (pos >= starts.unsqueeze(-1)) & (pos < (starts + widths).unsqueeze(-1))
    return inside.any(dim=1)


def _time_cap(fraction: float, frames: int) -> int:
    """The widest time mask: ``max_time_fraction`` of ``frames``, rounded down to whole frames.

    Rounded to 1e-9 first: the float product falls just short of a whole number for many fractions (0.29 * 100 is
    28.999999999999996), and ``int`` alone capped those masks a frame below the fraction asked for.
    """
    return math.floor(round(fraction * frames, 9))


class SpecAugment:
    """Random time and frequency masks on (B, F, T) or (F, T) features; returns a new tensor."""

    domain: ClassVar[str] = "features"

    def __init__(self, cfg: SpecAugmentConfig):
        self.cfg = cfg

    def __call__(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """features: (B, F, T) or (F, T) -> same shape; ``generator`` (CPU) makes it reproducible."""
        single = features.dim() == 2
        x = features.unsqueeze(0) if single else features
        if x.dim() != 3:
            raise ValueError(f"SpecAugment expects (B, F, T) or (F, T) features, got {tuple(features.shape)}")
        c = self.cfg
        b, f, t = x.shape
        apply = torch.rand(b, generator=generator) < c.p
        fmask = _band_masks(b, f, c.num_freq_masks, c.freq_width, f, generator)
        tmask = _band_masks(b, t, c.num_time_masks, c.time_width, _time_cap(c.max_time_fraction, t), generator)
        mask = (fmask.unsqueeze(2) | tmask.unsqueeze(1)) & apply.view(b, 1, 1)
        mask = mask.to(x.device)
        fill = x.mean(dim=(1, 2), keepdim=True) if c.mask_value == "mean" else torch.zeros((), dtype=x.dtype)
        out = torch.where(mask, fill.to(device=x.device, dtype=x.dtype), x)
        return out.squeeze(0) if single else out

    def __repr__(self) -> str:
        return f"SpecAugment({self.cfg!r})"
