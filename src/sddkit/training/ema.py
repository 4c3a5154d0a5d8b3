"""``WeightEMA``: the exponential moving average of a model's trainable weights (``trainer.ema_decay``).

After every optimiser step ``ema = decay * ema + (1 - decay) * param`` for each trainable floating-point
parameter, kept in float32 on the parameter's device. Frozen parameters and buffers (batch-norm running
statistics, ``num_batches_tracked``) are not averaged: the averaged model takes them from the model as they are
(running statistics are averages already; counters are integers). The trainer validates, ranks, checkpoints and
exports the averaged model, and trains on from the raw weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from sddkit.errors import CheckpointError


class WeightEMA:
    """The moving average of ``module``'s trainable floating-point parameters, starting from their values now.

    Build it once the parameter set is final (after a MoLEx growth, before the first step): the parameters it
    averages are fixed when it is built.
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad and p.is_floating_point()]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        ids = {id(p): i for i, p in enumerate(self.params)}
        # every name a state dict gives a tied parameter under (named_parameters lists the first only)
        self._index = {n: ids[id(p)] for n, p in module.named_parameters(remove_duplicate=False) if id(p) in ids}
        with torch.no_grad():
            self.shadow = [p.detach().to(torch.float32, copy=True) for p in self.params]
        self._float32 = all(p.dtype == torch.float32 for p in self.params)

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average, after an optimiser step (in place: nothing is allocated for float32 weights)."""
        if not self.params:
            return
        # lerp computes end - (end - start) * (1 - weight) for weight >= 0.5: decay 0 gives the weights bit for bit
        weight = 1.0 - self.decay
        if self._float32:
            torch._foreach_lerp_(self.shadow, self.params, weight)
        else:
            for s, p in zip(self.shadow, self.params):
                s.lerp_(p.float(), weight)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The averaged weights in the model for the block, the raw ones back afterwards (bit for bit, also when the
        block fails); buffers and modes are left alone."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw):
                    p.copy_(r)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Put the averaged weights in the model for good (the end of training)."""
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)

    def model_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` (a state dict of the model, possibly partial) with the averaged weights in the parameters' dtype
        in place of the averaged parameters: the state of the averaged model."""
        out = {}
        for key, value in state.items():
            i = self._index.get(key)
            out[key] = value if i is None else self.shadow[i].to(value.dtype)
        return out

    @torch.no_grad()
    def load_model_state(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Take the averaged weights from the state of an averaged model (:meth:`model_state`, as a checkpoint holds
        it)."""
        for name, s in zip(self.names, self.shadow):
            saved = state.get(name)
            if saved is None or tuple(saved.shape) != tuple(s.shape):
                problem = "missing" if saved is None else f"of shape {tuple(saved.shape)}, not {tuple(s.shape)}"
                raise CheckpointError(
                    f"{where}: the averaged weight {name} (trainer.ema_decay) is {problem}: the checkpoint's model "
                    "does not fit the one the recipe builds"
                )
            s.copy_(saved)
