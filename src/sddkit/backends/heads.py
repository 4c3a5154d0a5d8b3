"""The output layer that every back-end ends with: embedding (B, E) -> logits (B, 2) (spoof, bona fide).

- ``linear`` (default): ``nn.Linear(E, 2)``, as published for each back-end.
- ``cosine``: one learnt direction w; with c = cos(w, x) the logits are (-s c / 2, +s c / 2), so the bona
  fide log-odds is ``s * c``, bounded by the scale s (``head_scale``). Trained with plain cross-entropy it is
  a normalised softmax; with ``loss.kind: oc_softmax`` it is the one-class (OC-softmax) set-up of Zhang,
  Jiang and Duan (IEEE SPL 2021), whose score is c: bona fide embeddings gather around w, spoofs are
  pushed away from it without being asked to form a cluster of their own.

Back-end configs inherit :class:`ClassifierConfig`, so every back-end takes ``head`` and ``head_scale``
and builds its output layer with :func:`build_classifier`. The layer is the back-end's ``classifier``
attribute in both cases (state-dict keys ``classifier.weight`` [+ ``classifier.bias``]).

Both compute their logits in the layer's own dtype (float32) under autocast too (``trainer.bf16``): bfloat16 logits
keep 8 significant bits, so logits near 6 were rounded to steps of 1/32 and the validation scores (their difference)
tied and reordered against float32 scoring of the same weights, moving the validation EER that picks ``best/``.
A back-end of one's own ends in :class:`Float32Linear` (or :func:`build_classifier`) for the same reason; a
``Detector`` warns once about a back-end whose logits autocast lowers (``sddkit.detectors.detector``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sddkit.config import set_away_from_default

__all__ = ["ClassifierConfig", "CosineHead", "Float32Linear", "build_classifier"]


@contextmanager
def _without_autocast(x: Tensor) -> Iterator[bool]:
    """Autocast off for ``x``'s device inside; yields whether it was on (the input then needs casting back up)."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        yield False
        return
    with torch.autocast(device_type=device, enabled=False):
        yield True


class Float32Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) that autocast does not lower: under autocast it
    computes in its weight's dtype (float32 in training), on its input cast to that dtype. Outside autocast it is
    ``nn.Linear`` exactly (a half-precision model stays in its own dtype)."""

    def forward(self, x: Tensor) -> Tensor:
        with _without_autocast(x) as lifted:
            return super().forward(x.to(self.weight.dtype) if lifted else x)


@dataclass(kw_only=True)
class ClassifierConfig:
    """head: ``linear`` or ``cosine``; head_scale: s of the cosine head (its log-odds lie in [-s, s])."""

    head: Literal["linear", "cosine"] = "linear"
    head_scale: float = 20.0

    def __post_init__(self) -> None:
        if self.head not in ("linear", "cosine"):  # build_classifier built a linear head for anything else
            raise ValueError(f"head must be 'linear' or 'cosine', got {self.head!r}")
        if not (self.head_scale > 0 and math.isfinite(self.head_scale)):
            raise ValueError(f"head_scale must be a finite number > 0, got {self.head_scale}")
        if self.head == "linear" and set_away_from_default(self, ["head_scale"]):
            # the linear head never reads it: the recipe would say one thing and train another
            raise ValueError(
                f"head_scale ({self.head_scale}) is the cosine head's scale; set head: cosine or drop head_scale"
            )


class CosineHead(nn.Module):
    """(B, E) -> logits (B, 2) = (-s c / 2, s c / 2), c = cos(w, x) with a learnt direction w (1, E)."""

    def __init__(self, in_dim: int, scale: float):
        super().__init__()
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(1, in_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's initialisation

    def cosine(self, x: Tensor) -> Tensor:
        """(B, E) -> (B,) cosine between each embedding and w."""
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1)).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        # in float32 under autocast too: a bfloat16 cosine times the scale (20) moved the log-odds in steps of 0.04
        with _without_autocast(x) as lifted:
            half = 0.5 * self.scale * self.cosine(x.to(self.weight.dtype) if lifted else x)
        return torch.stack([-half, half], dim=-1)

    def extra_repr(self) -> str:
        return f"in_dim={self.weight.shape[1]}, scale={self.scale}"


def build_classifier(cfg: ClassifierConfig, in_dim: int) -> nn.Module:
    """The output layer ``cfg.head`` asks for, on embeddings of size ``in_dim``."""
    if cfg.head == "cosine":
        return CosineHead(in_dim, cfg.head_scale)
    return Float32Linear(in_dim, 2)
