"""``sam``: sharpness-aware minimisation (Foret et al., ICLR 2021) and its adaptive form ASAM
(Kwon et al., ICML 2021), used for anti-spoofing generalisation by Shim et al. (Interspeech 2023).

One step on a batch, with trainable parameters θ and the batch loss L:

1. ``g = ∇L(θ)``;
2. the ascent direction ``e = rho * T² g / ||T g||``, with ``T = 1`` (SAM) or ``T = |θ| + eta``
   element-wise (ASAM, scale-invariant) for weights and ``T = 1`` for biases (every parameter whose name's
   last part, list indices aside, says ``bias``: ``bias``, ``bias_ih_l0``, ``in_proj_bias``, ``biases.0``),
   as in the authors' code: a bias sets an offset, not a scale, so rescaling the weights leaves it where it is;
3. ``g' = ∇L(θ + e)``: the gradient at the worst nearby point;
4. θ is restored and the outer optimiser (AdamW) applies ``g'`` at θ (clipped like any step).

The second pass must not change batch-norm running statistics a second time: buffers are
snapshotted before it and restored after, so a step updates them exactly as one ERM forward does.
θ and the buffers are restored even if the second pass fails (an out-of-memory error, a Ctrl-C):
the model is never left at θ + e. Both passes draw the same random numbers from every global
generator: torch's (dropout masks) and numpy's and Python's (transformers' SpecAugment time masks,
``encoder.spec_augment``, draw from numpy's), so ``g`` and ``g'`` are gradients of one loss. With
``rho = 0`` the perturbation is zero and a step is the ERM step (two identical passes; the
generators advance once per step, as in ERM).

DDP: both passes go through the wrapper, so ``g`` (hence ``e``) and ``g'`` are the all-reduced
gradients and every replica perturbs and steps identically.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sddkit.config import set_away_from_default
from sddkit.training import STRATEGIES
from sddkit.training.strategy import Batch, StepContext, StepResult


@dataclass
class SAMConfig:
    """rho: radius of the neighbourhood (published: 0.05 for SAM, 0.5-2 for ASAM).
    adaptive: ASAM's parameter-scaled neighbourhood (weights only; biases keep SAM's). eta: ASAM's
    offset keeping zero weights movable (read with ``adaptive: true`` only; another value without it is refused).
    """

    rho: float = 0.05
    adaptive: bool = False
    eta: float = 0.01

    def __post_init__(self) -> None:
        if not 0 <= self.rho < math.inf:
            raise ValueError(f"rho must be >= 0 and finite, got {self.rho}")
        if not 0 <= self.eta < math.inf:
            raise ValueError(f"eta must be >= 0 and finite, got {self.eta}")
        if not self.adaptive and set_away_from_default(self, ["eta"]):  # plain SAM never reads it: the recipe misleads
            raise ValueError(
                f"eta: {self.eta} is read by ASAM only (adaptive: true); plain SAM ignores it (leave it out)"
            )


def _is_bias(name: str) -> bool:
    """A bias, which ASAM does not rescale: ``...bias``, an LSTM's ``...bias_ih_l0``, attention's ``...in_proj_bias``
    and a ``ParameterList`` of them (a router's ``...biases.0``).

    The name's last part that is not a list index is read: the router's zero-initialised biases (``biases.0``) and
    the gate transformer's ``in_proj_bias`` were taken for weights, so their ASAM scale was ``|0| + eta``, and their
    perturbation about ``eta**2`` times SAM's (a ten-thousandth with the default eta), while the docs promise SAM's."""
    parts = [part for part in name.split(".") if not part.isdigit()]
    return bool(parts) and "bias" in parts[-1]


@contextlib.contextmanager
def _drawn_again(device: torch.device) -> Iterator[None]:
    """Run the block, then set every global generator (Python's, numpy's, torch's CPU one and ``device``'s when
    CUDA) back to where it was, so that the next pass draws the very same numbers."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class SAM:
    """Two forward/backward passes per step: ascend to θ + e, take the gradient there, step at θ."""

    name = "sam"

    def __init__(self, cfg: SAMConfig):
        self.cfg = cfg

    def _loss_and_grads(self, batch: Batch, ctx: StepContext):
        ctx.optimizer.zero_grad(set_to_none=True)
        with ctx.autocast():
            output = ctx.model(batch["waveform"])
        parts = ctx.pooled_loss(output, batch["label"], domains=batch.get("domain"))
        parts.total.backward()
        return parts

    @torch.no_grad()
    def _perturbation(self, named: list[tuple[str, torch.nn.Parameter]]) -> tuple[list[Tensor | None], Tensor]:
        """Per parameter ``e`` (None where it has no gradient) and the (scaled) gradient norm."""
        params = [p for _, p in named]
        scales = [(p.abs() + self.cfg.eta) if self.cfg.adaptive and not _is_bias(name) else None for name, p in named]
        scaled = [None if p.grad is None else (p.grad if s is None else s * p.grad) for p, s in zip(params, scales)]
        present = [g.float() for g in scaled if g is not None]
        norm = (
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present])) if present else None
        )
        if norm is None or not torch.isfinite(norm) or norm == 0:
            # on the parameters' device: the logged norms of a window are stacked together (a CPU zero among
            # CUDA norms failed there)
            device = norm.device if norm is not None else (params[0].device if params else None)
            return [None] * len(params), torch.zeros((), device=device)
        factor = self.cfg.rho / norm
        perturb = [None if g is None else (g if s is None else s * g) * factor for g, s in zip(scaled, scales)]
        return perturb, norm

    def step(self, batch: Batch, ctx: StepContext) -> StepResult:
        named = ctx.trainable()
        params = [p for _, p in named]
        # both passes draw the same dropout and SpecAugment masks (one stochastic loss L_B, taken at θ and at
        # θ + e); the generators then advance once per step, as in ERM
        with _drawn_again(batch["waveform"].device):
            first = self._loss_and_grads(batch, ctx)
        perturb, norm = self._perturbation(named)
        # θ and the buffers are copied, not recomputed as (θ + e) - e, so θ comes back bit-exact
        saved = [(p, p.detach().clone()) for p, e in zip(params, perturb) if e is not None]
        buffers = [(b, b.detach().clone()) for b in ctx.module.buffers()]
        try:
            with torch.no_grad():
                for p, e in zip(params, perturb):
                    if e is not None:
                        p.add_(e.to(p.dtype))
            second = self._loss_and_grads(batch, ctx)
        finally:  # also when the second pass fails: the model must not stay at θ + e
            with torch.no_grad():
                for tensor, copy in saved + buffers:  # the second pass must not move running statistics again
                    tensor.copy_(copy)
        grad_norm = ctx.clip_and_step()
        metrics = {
            **first.detached(),
            "grad_norm": grad_norm,
            "sam/loss_perturbed": second.total.detach(),
            "sam/first_grad_norm": norm.detach(),
        }
        return StepResult(loss=first.total.detach(), metrics=metrics)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@STRATEGIES.register("sam", config=SAMConfig)
def build_sam(cfg: SAMConfig, **context: Any) -> SAM:
    """Sharpness-aware minimisation (``adaptive: true`` for ASAM): a step takes the gradient at θ + e."""
    return SAM(cfg)
