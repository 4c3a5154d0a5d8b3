"""``WeightEMA``: the exponential moving average of a model's trainable weights (``trainer.ema_decay``), and
``BatchNormEstimate``: the running statistics of those averaged weights' normalisation layers.

After every optimiser step ``ema = decay * ema + (1 - decay) * param`` for each trainable floating-point
parameter, kept in float32 on the parameter's device. Frozen parameters and buffers are not averaged. The running
statistics that training updates (batch norms, and instance norms with ``track_running_stats``: every
``_NormBase`` with running statistics, which eval mode normalises with) are re-estimated for the averaged weights
instead, as SWA's ``torch.optim.swa_utils.update_bn`` does for batch norms (and only for ``_BatchNorm``): the
average of weights pointing in different directions is shorter, so its activations have other statistics than the
raw model's (recipes/sddbench/default_model.yaml, decay 0.99, at step 270: 30.5 % val EER with the raw model's
statistics, 16.0 % with re-estimated ones; the raw weights 14.1 %). The trainer validates, ranks, checkpoints and
exports the averaged model, and trains on from the raw weights and statistics.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from sddkit.errors import CheckpointError
from sddkit.training.provenance import preserved_rng


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


_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _cumulative(calls: dict[str, int], name: str, norm: nn.Module, args: object) -> None:
    """Forward pre-hook of a re-estimated norm: counts its calls (an instance norm no batch reaches keeps its
    statistics) and gives a norm other than a batch norm momentum 1/k at its k-th, what a batch norm's None does through
    num_batches_tracked (an instance norm neither counts nor reads None as the cumulative average)."""
    calls[name] += 1
    if not isinstance(norm, _BatchNorm):
        norm.momentum = 1.0 / calls[name]


def _key(name: str, stat: str) -> str:
    return f"{name}.{stat}" if name else stat


def updated_batch_norms(module: nn.Module) -> list[tuple[str, _NormBase]]:
    """``module``'s normalisation layers whose running statistics training updates: those with running statistics
    (batch norms, SyncBatchNorm, lazy ones, instance norms with ``track_running_stats``: any ``_NormBase``) that are
    in training mode once ``module.train()`` is called. A frozen one kept in eval mode (MoLEx's frozen parts, a
    frozen encoder's, a mixture's frozen experts) keeps its statistics. Every module's mode is left as it was."""
    modes = [(m, m.training) for m in module.modules()]
    module.train()
    try:
        return [
            (name, m)
            for name, m in module.named_modules()
            if isinstance(m, _NormBase) and m.training and m.track_running_stats and m.running_mean is not None
        ]
    finally:
        for m, mode in modes:
            m.training = mode


class BatchNormEstimate:
    """The running statistics of ``norms`` (:func:`updated_batch_norms`) for the weights ``module`` holds, on fixed
    ``batches`` of waveforms, as ``torch.optim.swa_utils.update_bn`` computes them for batch norms: statistics
    reset, ``momentum`` None (the cumulative average over the batches; an instance norm, which reads None as 0 and
    would keep the reset values, gets ``momentum`` 1/k at its k-th call instead: the same average), a forward of
    each batch under no_grad with the model in training mode (``model.train()``, so dropout and other
    training-mode behaviour are on too, drawing from the torch, numpy and Python generators seeded with ``seed``
    every time: the same weights give the same statistics), then the modes the modules had (validation switches to
    eval mode itself). A norm no batch reaches keeps its statistics.

    :meth:`estimate` leaves the model as it found it (buffers, momenta, modes and random generators exactly): what
    training goes on from is untouched.
    """

    def __init__(
        self,
        module: nn.Module,
        norms: list[tuple[str, _NormBase]],
        batches: list[torch.Tensor],
        *,
        seed: int,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ):
        if not norms or not batches:
            raise ValueError(
                "BatchNormEstimate needs norms with running statistics to re-estimate and batches to do it on"
            )
        self.module, self.norms, self.batches, self.seed, self.autocast = module, norms, batches, seed, autocast

    def _buffers(self) -> dict[str, torch.Tensor]:
        """Copies of the norms' statistics under their state-dict keys."""
        return {_key(name, stat): getattr(bn, stat).detach().clone() for name, bn in self.norms for stat in _STATS}

    @torch.no_grad()
    def _put(self, stats: dict[str, torch.Tensor]) -> None:
        for name, bn in self.norms:
            for stat in _STATS:
                getattr(bn, stat).copy_(stats[_key(name, stat)])

    @torch.no_grad()
    def estimate(self) -> dict[str, torch.Tensor]:
        """The statistics of the weights in the model now (state-dict keys -> tensors); the model unchanged."""
        raw = self._buffers()
        momenta = [bn.momentum for _, bn in self.norms]
        modes = [(m, m.training) for m in self.module.modules()]
        calls = {name: 0 for name, _ in self.norms}
        hooks = [bn.register_forward_pre_hook(functools.partial(_cumulative, calls, name)) for name, bn in self.norms]
        try:
            with preserved_rng():
                # numpy's and Python's too: transformers' SpecAugment draws its time masks from them, and the
                # statistics would depend on where training stands (and differ between ranks)
                torch.manual_seed(self.seed)
                np.random.seed(self.seed % 2**32)
                random.seed(self.seed)
                for _, bn in self.norms:
                    bn.reset_running_stats()
                    bn.momentum = None
                self.module.train()
                for waveform in self.batches:
                    with self.autocast():
                        self.module(waveform)
            stats = self._buffers()
        finally:
            for hook in hooks:
                hook.remove()
            self._put(raw)
            for (_, bn), momentum in zip(self.norms, momenta):
                bn.momentum = momentum
            for m, mode in modes:
                m.training = mode
        for name, bn in self.norms:
            # a batch norm counts the batches it took statistics from: one called only on batches of one row
            # (gates.BatchNorm1d normalises those with its running statistics, as in eval mode) took none, and its
            # reset values are no estimate; an instance norm in training mode updates on every call
            reached = int(stats[_key(name, "num_batches_tracked")]) if isinstance(bn, _BatchNorm) else calls[name]
            if reached == 0:
                # no batch reached it (a branch these batches never took): it keeps the statistics it has
                stats.update({_key(name, stat): raw[_key(name, stat)] for stat in _STATS})
        return stats

    @contextlib.contextmanager
    def loaded(self, stats: dict[str, torch.Tensor]) -> Iterator[None]:
        """``stats`` (from :meth:`estimate`) in the model for the block, its own statistics back afterwards."""
        raw = self._buffers()
        self._put(stats)
        try:
            yield
        finally:
            self._put(raw)

    def load(self, stats: dict[str, torch.Tensor]) -> None:
        """Put ``stats`` in the model for good (the end of training)."""
        self._put(stats)
