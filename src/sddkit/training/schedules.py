"""Optimiser and learning-rate schedule builders (stepped once per optimisation step)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import CyclicLR, LambdaLR, LRScheduler

from sddkit.errors import ConfigError
from sddkit.training.recipe import OptimizerConfig, ScheduleConfig

log = logging.getLogger(__name__)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad`` in registration order (the optimizer's parameter order)."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """AdamW over ``params`` (only trainable ones: a frozen encoder costs no optimiser state)."""
    params = list(params)
    if not params:
        raise ConfigError("the model has no trainable parameters: nothing to optimise")
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, *, check: bool = True
) -> LRScheduler:
    """The schedule of ``cfg``; ``total_steps`` is the planned number of optimisation steps. ``check``: warn when
    the warm-up outlasts them (off for a plan a resume replaces, which would warn about steps it does not take)."""
    if cfg.name == "cyclic":
        # cycle_momentum=False: AdamW has no 'momentum' to cycle, and the published recipe cycles the lr only
        return CyclicLR(
            optimizer,
            base_lr=cfg.base_lr,
            max_lr=cfg.max_lr,
            step_size_up=cfg.step_size,
            mode=cfg.cyclic_mode,
            gamma=cfg.gamma,
            cycle_momentum=False,
        )
    warmup = cfg.warmup_steps
    if check:
        _check_warmup(cfg, total_steps)
    if cfg.name == "constant":

        def constant(step: int) -> float:
            return min(1.0, (step + 1) / warmup) if warmup else 1.0

        return LambdaLR(optimizer, constant)

    decay_steps = max(1, total_steps - warmup)
    floor = cfg.min_lr_ratio

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / decay_steps)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, cosine)


def _check_warmup(cfg: ScheduleConfig, total_steps: int) -> None:
    """Warn when the warm-up outlasts the run: the lr would only ramp (a cosine would never decay).

    A warning, not an error: a short trial of a full recipe (``trainer.max_steps``) is legitimate.
    """
    # constant reaches optimizer.lr on its last step when warmup == total; cosine then has no decay left
    too_long = cfg.warmup_steps > total_steps if cfg.name == "constant" else cfg.warmup_steps >= total_steps
    if cfg.warmup_steps and too_long:
        log.warning(
            "schedule.warmup_steps=%d but the run plans %d steps: the lr only ramps up to %.3g x optimizer.lr%s",
            cfg.warmup_steps,
            total_steps,
            min(1.0, total_steps / cfg.warmup_steps),
            "" if cfg.name == "constant" else " and the cosine decay never starts",
        )
