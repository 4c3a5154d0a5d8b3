"""Small dataclasses returned by forwards that carry more than one tensor.

Nothing is stored on ``self`` during a forward: auxiliary losses and statistics travel
in these objects, so a module can be called twice (MLDG inner step, DDP) safely.

Conventions: class 0 = spoof, class 1 = bona fide (as in the published AASIST weights);
``score`` is the bona fide log-odds ``logits[:, 1] - logits[:, 0]`` (higher = more bona fide).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class FrontendOutput:
    """What a front-end hands to a back-end.

    features: (B, N, D) frame sequence for encoders, (B, F, T) for spectral front-ends,
              (B, T) for the raw-waveform pass-through.
    aux_losses: named scalar losses to add to the training objective (already weighted).
    stats: named tensors for analysis (e.g. per-expert router use), never part of the loss.
    """

    features: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class BackendOutput:
    """logits: (B, 2) over (spoof, bona fide); embedding: (B, E) last hidden representation."""

    logits: Tensor
    embedding: Tensor


@dataclass
class DetectorOutput:
    """logits (B, 2); score (B,) bona fide log-odds; embedding (B, E); aux losses and stats."""

    logits: Tensor
    score: Tensor
    embedding: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)

    @property
    def aux_loss(self) -> Tensor:
        """Sum of the auxiliary losses (a zero scalar when there are none)."""
        if not self.aux_losses:
            return self.logits.new_zeros(())
        return torch.stack([v.reshape(()) for v in self.aux_losses.values()]).sum()


def bonafide_log_odds(logits: Tensor) -> Tensor:
    """(B, 2) logits -> (B,) log P(bona fide)/P(spoof), in float32 at least.

    Under bfloat16/float16 (autocast or a half-precision model) the difference of two rounded logits keeps about
    3 significant digits, so many distinct trials would tie and the validation EER would move; float64 stays.
    """
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return logits[:, 1] - logits[:, 0]
