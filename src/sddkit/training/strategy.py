"""The strategy contract: a strategy owns ONE optimisation step; the trainer owns everything else.

    result = strategy.step(batch, ctx)     # zero grads, forward(s), backward(s), clip, optimizer.step()

``batch`` is the collated dataset dict already on the device: ``waveform`` (B, T) float32,
``label`` (B,) int64 (1 = bona fide), ``domain`` (B,) int64, ``index`` (B,) int64, and, for a batch the
``domain_batch`` sampler drew, ``domain_block`` (B,) int64, the per-domain block of each row, which MLDG holds out
whole (without it MLDG splits the rows by their spoof domains, bona fide rows going to both halves).
A strategy with random choices of its own keeps them in a ``torch.Generator`` and exposes
``state_dict()``/``load_state_dict()`` so checkpoints resume it exactly.

A loop of one's own takes the trainer's steps with the same objects::

    ctx = StepContext(model=model, module=model, optimizer=optimizer,
                      loss_fn=DetectionLoss.for_model(recipe.loss, model), grad_clip=recipe.trainer.grad_clip)
    strategy = get_registry("strategy").build(recipe.strategy, seed=recipe.seed)
    batches = epoch_batches(dataset, recipe.data, seed=recipe.seed, epoch=epoch, info=DistInfo())
    for batch in DataLoader(dataset, batch_sampler=batches):
        result = strategy.step(with_domain_blocks(batch, batches), ctx)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from sddkit.detectors.outputs import DetectorOutput
from sddkit.training.losses import LossParts, pooled_over_ranks

Batch = dict[str, Tensor]


class LossFn(Protocol):
    """The training objective as strategies call it (:class:`~sddkit.training.losses.DetectionLoss`): ``domains``
    (B,) int64 or None feeds ``loss.domain_alignment``; a callable of ``(output, labels)`` alone fails there."""

    def __call__(self, output: DetectorOutput, labels: Tensor, domains: Tensor | None = None) -> LossParts: ...


@dataclass
class StepContext:
    """What a strategy may use for one step.

    model: what a pooled forward calls (the ``DistributedDataParallel`` wrapper under DDP, so its
    backward all-reduces gradients); module: the un-wrapped detector (for functional calls and
    steps that synchronise gradients themselves); world_size: number of data-parallel replicas.
    """

    model: nn.Module
    module: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    grad_clip: float | None = None
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    world_size: int = 1

    def pooled_loss(self, output: DetectorOutput, labels: Tensor, domains: Tensor | None = None) -> LossParts:
        """``loss_fn`` for a pass whose gradients DDP averages over the ranks (every rank must call it alike).

        With class weights each rank's classification term is a weighted mean over its own items; the average
        of those over the ranks is not the weighted mean of the step's items (a rank with no bona fide item
        would count its spoofs several times as much). Rescaled by the ranks' summed weights, it is: the step
        then optimises what one process with the whole batch would. Unchanged in a single process.
        """
        parts = self.loss_fn(output, labels, domains=domains)
        return pooled_over_ranks(parts, self.loss_fn, labels, self.world_size)

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) of the trainable parameters of the un-wrapped module, in order."""
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def no_sync(self) -> AbstractContextManager[Any]:
        """DDP's ``no_sync`` when the model is wrapped, else a no-op."""
        sync = getattr(self.model, "no_sync", None)
        return sync() if callable(sync) and self.model is not self.module else contextlib.nullcontext()

    def clip_and_step(self) -> Tensor:
        """Clip the trainable gradients' global norm (if configured), step the optimiser; returns the norm.

        Raises FloatingPointError, before the optimiser moves, when the gradient is not finite.
        """
        params = [p for _, p in self.trainable() if p.grad is not None]
        if self.grad_clip is not None and params:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        elif params:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params]))
        else:  # on the parameters' device, as the norms it is logged with
            norm = torch.zeros((), device=next((p.device for _, p in self.trainable()), None))
        # a NaN/inf gradient (possible with a finite loss, e.g. sqrt at 0) would spoil the weights and the
        # optimiser moments for good, and the next checkpoint with them; the norm is the same on every rank
        if not torch.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient norm {float(norm)}: the optimiser step was not taken")
        self.optimizer.step()
        return norm.detach()


@dataclass
class StepResult:
    """loss: the optimised objective (detached scalar); metrics: named detached scalars to log."""

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


class Strategy(Protocol):
    name: str

    def step(self, batch: Batch, ctx: StepContext) -> StepResult: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def subset(batch: Batch, index: Tensor) -> Batch:
    """The rows ``index`` of every (B, ...) tensor of ``batch``."""
    return {k: v[index] for k, v in batch.items()}


def with_domain_blocks(batch: Batch, batches: Any) -> Batch:
    """``batch`` with ``domain_block`` (B,) int64 added when ``batches``, the batch sampler that drew it (e.g.
    :func:`~sddkit.training.data.epoch_batches` of a ``domain_batch`` recipe), yields per-domain blocks of
    ``per_domain`` consecutive rows (:class:`~sddkit.data.samplers.DomainBatchSampler`); else ``batch`` as it is.

    What the trainer adds before each step: a loop of one's own that left it out trained another MLDG than the
    recipe's (rows split by spoof domain, the bona fide rows in both halves, instead of whole blocks held out)."""
    per_domain = getattr(batches, "per_domain", None)
    if per_domain is None:
        return batch
    labels = batch["label"]
    return {**batch, "domain_block": torch.arange(len(labels), device=labels.device) // int(per_domain)}
