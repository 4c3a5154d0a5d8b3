"""Training a back-end that is fitted by EM, not by gradients (``fitted_by_em``: the ``gmm`` back-end).

``sdd train`` takes this path for a detector whose back-end declares ``fitted_by_em``: it reads the training data
through the recipe's data pipeline (crops, sampler and augmentation as configured, over ``trainer.epochs`` passes),
runs the front-end in eval mode, keeps a uniform sample of at most ``max_frames_per_class`` feature frames per class
(drawn with the recipe's seed), fits the back-end by EM, validates once and exports ``best/`` = ``final/`` like any
run. No optimiser, schedule or checkpoint is involved; what only gradient training reads is refused (a strategy
other than ``erm``, ``trainer.ema_decay``, a mixture that would train the back-end, ...) or, for settings that
change nothing but the validation loss (optimizer, schedule, loss), named in a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sddkit.config import set_away_from_default, to_dict
from sddkit.errors import ConfigError
from sddkit.training.data import epoch_batches, loader_generator, worker_errors
from sddkit.training.distributed import DistInfo

log = logging.getLogger("sddkit.training")

__all__ = ["FrameSample", "check_em_recipe", "collect_frames", "em_backend"]


def em_backend(module: nn.Module) -> nn.Module | None:
    """The back-end of a single detector that is fitted by EM (``fitted_by_em``), else None."""
    from sddkit.detectors.detector import Detector

    if isinstance(module, Detector) and getattr(module.backend, "fitted_by_em", False):
        return module.backend
    return None


def _has_em_module(module: nn.Module) -> bool:
    return any(getattr(m, "fitted_by_em", False) for m in module.modules())


def check_em_recipe(recipe: Any, module: nn.Module, *, world_size: int) -> None:
    """Refuse a recipe that combines an EM-fitted back-end with what only gradient training means."""
    from sddkit.training.recipe import LossConfig, OptimizerConfig, ScheduleConfig

    if em_backend(module) is None:
        if recipe.mixture is not None and not recipe.mixture.freeze_experts and _has_em_module(module):
            # its buffers take no gradient: the expert would stay unfitted (every score 0) while the gate trains
            raise ConfigError(
                "mixture: an expert with a gmm back-end is fitted by EM, not by gradients, so it cannot be trained "
                "with the gate (freeze_experts: false); fit it on its own with sdd train, then give its folder in "
                "mixture.expert_dirs with freeze_experts: true"
            )
        return
    where = "model.backend gmm is fitted by EM, not by gradient steps"
    if recipe.init_from is not None:
        raise ConfigError(
            f"{where}: init_from would be refitted from scratch on this recipe's data; give the detector config in "
            "'model:' instead"
        )
    if recipe.strategy.name != "erm":
        raise ConfigError(f"{where}: strategy {recipe.strategy.name!r} takes gradient steps; leave strategy out (erm)")
    if recipe.molex is not None:
        raise ConfigError(f"{where}: the molex section applies to MoLEx front-ends trained by gradients; remove it")
    if recipe.trainer.ema_decay is not None:
        raise ConfigError(f"{where}: trainer.ema_decay averages gradient-trained weights; remove it")
    if recipe.trainer.max_steps is not None:
        raise ConfigError(
            f"{where}: trainer.max_steps counts gradient steps; trainer.epochs says how many passes over data.train "
            "the training frames are drawn from"
        )
    if world_size > 1:
        raise ConfigError(f"{where} in one process: run sdd train without torchrun")
    unread = [
        name
        for name, given, default in (
            ("optimizer", recipe.optimizer, OptimizerConfig()),
            ("schedule", recipe.schedule, ScheduleConfig()),
        )
        if to_dict(given) != to_dict(default)
    ]
    # the loop's own settings: one validation, no checkpoint, nothing to clip or average
    unread += [
        f"trainer.{name}"
        for name in set_away_from_default(
            recipe.trainer,
            ["val_every", "patience", "keep_top_k", "average_top_k", "average_bn", "save_every", "grad_clip"],
        )
    ]
    if unread:
        log.warning("%s: %s not read (no gradient step is taken)", where, ", ".join(unread))
    if to_dict(recipe.loss) != to_dict(LossConfig()):
        log.warning("%s: the loss section only changes the validation loss logged (val_loss), not the fit", where)


class FrameSample:
    """A uniform sample without replacement of at most ``capacity`` frames from a stream, deterministic for a seed:
    every frame gets a random key and the ``capacity`` smallest keys are kept (memory: capacity + one batch)."""

    def __init__(self, capacity: int, generator: torch.Generator):
        self.capacity = capacity
        self.generator = generator
        self.frames: Tensor | None = None
        self.keys = torch.empty(0)
        self.seen = 0

    def add(self, frames: Tensor) -> None:
        keys = torch.rand(frames.shape[0], generator=self.generator)
        self.seen += frames.shape[0]
        frames = frames.detach().float().cpu()
        self.frames = frames if self.frames is None else torch.cat([self.frames, frames])
        self.keys = torch.cat([self.keys, keys])
        if self.keys.numel() > self.capacity:
            kept = torch.topk(self.keys, self.capacity, largest=False).indices.sort().values
            self.frames, self.keys = self.frames[kept], self.keys[kept]


def collect_frames(
    module: nn.Module,
    dataset: Dataset,
    data_cfg: Any,
    *,
    seed: int,
    epochs: int,
    max_frames_per_class: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> tuple[tuple[Tensor, Tensor], dict[str, int]]:
    """(spoof frames (N0, D), bona fide frames (N1, D)) sampled from ``epochs`` passes of the recipe's training
    batches through ``module``'s front-end (eval mode, no gradient), and the frames seen per class."""
    backend = module.backend  # type: ignore[union-attr]
    generator = torch.Generator().manual_seed(int(seed))
    samples = [FrameSample(max_frames_per_class, generator) for _ in range(2)]
    was_training = module.training
    module.eval()  # no dropout or SpecAugment in the features the mixtures are fitted to
    try:
        for epoch in range(epochs):
            batches = epoch_batches(dataset, data_cfg, seed=seed, epoch=epoch, info=DistInfo())
            loader = DataLoader(
                dataset,
                batch_sampler=batches,
                num_workers=data_cfg.num_workers,
                generator=loader_generator(seed, epoch, 0),
            )
            for batch in worker_errors(loader):
                with torch.no_grad(), autocast():
                    features = module.frontend(batch["waveform"].to(device)).features  # type: ignore[union-attr]
                frames = features.transpose(1, 2) if backend.time_axis == 2 else features  # (B, T, D)
                labels = batch["label"]
                for c in range(2):
                    chosen = frames[(labels == c).to(frames.device)]
                    if chosen.numel():
                        samples[c].add(chosen.reshape(-1, chosen.shape[-1]))
    finally:
        module.train(was_training)
    names = ("spoof", "bona fide")
    for c, sample in enumerate(samples):
        if sample.frames is None:
            raise ConfigError(f"data.train gave no {names[c]} frames: the gmm back-end fits one mixture per class")
    seen = {"spoof_frames": samples[0].seen, "bonafide_frames": samples[1].seen}
    return (samples[0].frames, samples[1].frames), seen  # type: ignore[return-value]
