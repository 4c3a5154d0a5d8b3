"""Validation pass: scores, EER, loss and per-utterance statistics, sharded over DDP ranks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sddkit.training.data import eval_batches, worker_errors
from sddkit.training.distributed import DistInfo, all_gather_objects
from sddkit.training.losses import DetectionLoss
from sddkit.training.provenance import preserved_rng


@dataclass
class EvalResult:
    """Scores of a whole evaluation set, in dataset order (gathered from every rank).

    eer: equal error rate as a fraction (None when the set lacks one class; non-finite scores raise
    FloatingPointError); loss: the classification
    loss's mean over the whole set (weighted by the class weights, as in training), whatever the batch size;
    stats: per-utterance ``(N, ..., K)`` arrays of the ``DetectorOutput.stats`` entries shaped ``(B, ..., K)``,
    e.g. MoLEx router probabilities per layer and expert ``(N, layers, experts)``.
    """

    eer: float | None
    loss: float
    labels: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    stats: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.labels.size)


def _per_utterance(stat: Tensor, batch: int) -> np.ndarray | None:
    """(B, ..., K) -> the same shape in float64, kept whole (e.g. MoLEx's (B, layers, experts): expert k of one
    layer is unrelated to expert k of another, so averaging over layers here would hide the routing); None for
    batch-level statistics."""
    if stat.dim() < 2 or stat.shape[0] != batch:
        return None
    return stat.detach().float().cpu().numpy().astype(np.float64)


def _check_finite(scores: np.ndarray, indices: np.ndarray, loss: float) -> None:
    """Refuse non-finite scores (or loss): the EER would be None as for a set lacking a class, and the validation
    silently out of model selection and early stopping (e.g. batch-norm running statistics gone NaN while the
    training loss, on batch statistics, stayed finite)."""
    bad = ~np.isfinite(scores)
    if bad.any():
        raise FloatingPointError(
            f"the model gave {int(bad.sum())} non-finite score(s) (NaN or inf) of {scores.size}, e.g. for the "
            f"item(s) at index {indices[bad][:5].tolist()}"
        )
    if not np.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss} with finite scores")


@torch.no_grad()
def evaluate(
    module: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    loss_fn: DetectionLoss,
    info: DistInfo | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    collect_stats: bool = False,
    num_workers: int = 0,
) -> EvalResult:
    """Score ``dataset`` with ``module`` in eval mode; every rank gets the full, gathered result.

    The reported loss is ``loss_fn``'s classification term alone (no auxiliary or alignment terms).
    """
    from sddkit.metrics import MetricError, eer

    info = info or DistInfo()
    was_training = module.training
    module.eval()
    labels, scores, indices, losses, weights = [], [], [], [], []
    stats: dict[str, list[np.ndarray]] = {}
    batches = eval_batches(len(dataset), batch_size, info)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers)
    try:
        with preserved_rng():
            for batch in worker_errors(loader):
                wave = batch["waveform"].to(device, non_blocking=True)
                y = batch["label"].to(device)
                with autocast():
                    out = module(wave)
                # a batch's loss is a (weighted) mean: undo its own denominator, divide by the set's below
                weight = loss_fn.classification_weight(y)
                losses.append(float(loss_fn.classification(out.logits, y)) * weight)
                weights.append(weight)
                labels.append(batch["label"].numpy())
                scores.append(out.score.float().cpu().numpy().astype(np.float64))
                indices.append(batch["index"].numpy())
                if collect_stats:
                    for key, value in out.stats.items():
                        per = _per_utterance(value, len(y))
                        if per is not None:
                            stats.setdefault(key, []).append(per)
    finally:
        module.train(was_training)

    local = {
        "labels": np.concatenate(labels) if labels else np.zeros(0, np.int64),
        "scores": np.concatenate(scores) if scores else np.zeros(0),
        "indices": np.concatenate(indices) if indices else np.zeros(0, np.int64),
        "loss": float(sum(losses)),
        "loss_weight": float(sum(weights)),
        "stats": {k: np.concatenate(v) for k, v in stats.items()},
    }
    parts = all_gather_objects(local)
    all_idx = np.concatenate([p["indices"] for p in parts])
    order = np.argsort(all_idx, kind="stable")
    y = np.concatenate([p["labels"] for p in parts])[order]
    s = np.concatenate([p["scores"] for p in parts])[order]
    total_weight = sum(p["loss_weight"] for p in parts)
    loss = sum(p["loss"] for p in parts) / total_weight if total_weight > 0 else 0.0
    _check_finite(s, all_idx[order], loss)
    # a statistic only some ranks produced cannot be aligned with the gathered order: keep common ones (of the
    # ranks that scored any item: one with no share of a set smaller than the job produced none, and dropped them all)
    scored = [p for p in parts if p["indices"].size] or parts
    keys = sorted(set.intersection(*(set(p["stats"]) for p in scored)))
    gathered = {k: np.concatenate([p["stats"][k] for p in scored])[order] for k in keys}
    try:
        value: float | None = float(eer(y, s))
    except MetricError:
        value = None
    return EvalResult(
        eer=value,
        loss=loss,
        labels=y,
        scores=s,
        indices=all_idx[order],
        stats=gathered,
    )
