"""The training objective: a classification term over (spoof, bona fide), weighted cross-entropy or the
one-class softmax (OC-softmax), + the detector's aux losses, plus, optionally, a class-conditional
domain-alignment penalty on the embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sddkit.backends.heads import CosineHead
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import ConfigError
from sddkit.training.recipe import LossConfig


def _check_alignment_trains(cfg: LossConfig, model: torch.nn.Module) -> None:
    """Refuse ``domain_alignment`` where it is a constant: a mixture's embedding is its experts' (concatenated),
    and frozen experts compute it without autograd, so the penalty only shifted the logged loss while the gate
    trained as without it."""
    from sddkit.detectors.mixture import DetectorMixture

    if cfg.domain_alignment <= 0 or not isinstance(model, DetectorMixture):
        return
    if any(p.requires_grad for p in model.experts.parameters()):
        return  # experts fine-tuned with the gate: the penalty reaches them
    if not any(p.requires_grad for p in model.parameters()):
        return  # nothing is trained (an average ensemble): no loss is computed
    raise ConfigError(
        f"loss.domain_alignment={cfg.domain_alignment} aligns the model's embedding, which for a mixture with frozen "
        "experts is their embeddings, fixed: the penalty would be a constant the gate cannot learn from. Set "
        "loss.domain_alignment: 0, or mixture.freeze_experts: false to fine-tune the experts with the gate"
    )


def check_alignment_data(cfg: LossConfig, dataset: Any, column: str) -> None:
    """Refuse, before training, ``loss.domain_alignment`` over training data in which neither class spans two domains
    (``data.domain_column``; e.g. a ``path,label`` CSV whose ``attack`` is empty, or one attack and bona fide labelled
    ``bonafide``): :func:`domain_spread` is then 0 for every batch, and the run trained exactly as without the penalty
    while its recipe and run.json said it was aligned. A dataset of one's own without ``labels`` and ``domains`` is
    not checked."""
    labels, domains = getattr(dataset, "labels", None), getattr(dataset, "domains", None)
    if cfg.domain_alignment <= 0 or labels is None or domains is None:
        return
    labels, domains = np.asarray(labels), np.asarray(domains)
    # -1: unknown, which the penalty ignores (a dataset of one's own may name its domains)
    known = domains >= 0 if np.issubdtype(domains.dtype, np.number) else np.ones(len(domains), dtype=bool)
    spans = {c: np.unique(domains[known & (labels == c)]) for c in (0, 1)}
    if any(len(found) >= 2 for found in spans.values()):
        return
    names = getattr(dataset, "domain_names", None)

    def shown(found: np.ndarray) -> list[str]:
        return [names[int(d)] if names is not None and 0 <= int(d) < len(names) else str(d) for d in found]

    raise ConfigError(
        f"loss.domain_alignment={cfg.domain_alignment} aligns each class across the domains of data.domain_column "
        f"{column!r}, but in the training data the spoofs have {shown(spans[0])} and the bona fide items "
        f"{shown(spans[1])}: no class spans two domains, so the penalty is 0 at every step and the run would train "
        "as without it. Set data.domain_column to a column naming the attack systems or sources, or "
        "loss.domain_alignment: 0"
    )


@dataclass
class LossParts:
    """total = ce + sum(aux); every entry a scalar tensor (``total`` keeps its graph).

    ``ce`` is the classification term: cross-entropy, or the OC-softmax loss with ``kind: oc_softmax``.
    """

    total: Tensor
    ce: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)

    def detached(self) -> dict[str, Tensor]:
        """Named detached scalars for logging: ``loss``, ``ce``, ``aux/<name>``."""
        out = {"loss": self.total.detach(), "ce": self.ce.detach()}
        out.update({f"aux/{k}": v.detach().reshape(()) for k, v in self.aux.items()})
        return out


def domain_spread(embedding: Tensor, labels: Tensor, domains: Tensor) -> Tensor:
    """Between-domain spread of the class-conditional means of unit-normalised embeddings (a scalar).

    embedding: (B, E); labels, domains: (B,) int64, domain -1 = unknown (ignored). Per class c with
    items from at least two domains: ``sum_d (n_cd / n_c) * ||mu_cd - mu_c||^2``, where mu_cd is the mean
    of the class-c items of domain d and mu_c their pooled mean; the result averages the classes that
    qualify (0 if none). This is a first-moment (linear-kernel MMD) version of class-conditional domain
    alignment: it is 0 exactly when every domain's bona fide items, and every domain's spoof items, share
    one mean direction, so the score cannot depend on the domain through the class means. Embeddings are
    normalised first so that shrinking them cannot lower the penalty.
    """
    known = domains >= 0
    z = F.normalize(embedding.float()[known], dim=1)
    y, d = labels[known], domains[known]
    terms = []
    for c in (0, 1):
        rows = y == c
        present, group = torch.unique(d[rows], return_inverse=True)
        if len(present) < 2:
            continue
        zc = z[rows]
        counts = torch.bincount(group, minlength=len(present)).to(zc.dtype)  # (G,)
        means = torch.zeros(len(present), zc.shape[1], dtype=zc.dtype, device=zc.device).index_add_(0, group, zc)
        means = means / counts[:, None]
        pooled = zc.mean(dim=0)
        terms.append((counts / counts.sum() * (means - pooled).pow(2).sum(dim=1)).sum())
    if not terms:
        return embedding.new_zeros((), dtype=torch.float32)
    return torch.stack(terms).mean()


class DetectionLoss:
    """``loss(output, labels) -> LossParts``; labels (B,) int64 with 1 = bona fide.

    Logits are cast to float32 first so that a bf16-autocast forward still gets an fp32 loss.
    With class weights, torch's ``mean`` reduction divides by the summed weights of the batch's
    targets, so the loss scale does not depend on the class mix of a batch (under DDP, ERM and SAM take the
    step's batch over all ranks: :func:`pooled_over_ranks`; ``domain_alignment`` is the spread over each rank's
    own rows, and under MLDG over the meta-train rows only). With label smoothing too,
    an item's class weight scales its whole smoothed cross-entropy: the weights never move the
    smoothed target (1 - eps/2 on the true class).

    ``oc_scale``: with ``kind: oc_softmax``, the scale s of the model's cosine head (the loss reads the
    bona fide log-odds as s times a cosine); build through :meth:`for_model` to take it from the model.
    """

    def __init__(self, cfg: LossConfig, *, oc_scale: float | None = None):
        if cfg.kind == "oc_softmax" and not (oc_scale is not None and oc_scale > 0):
            raise ValueError(f"loss.kind oc_softmax needs the cosine head's scale (oc_scale > 0), got {oc_scale}")
        self.cfg = cfg
        self.oc_scale = oc_scale
        self._weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32)

    @classmethod
    def for_model(cls, cfg: LossConfig, model: torch.nn.Module) -> DetectionLoss:
        """The loss for training ``model``. ``kind: oc_softmax`` takes its scale from the model's own output
        layer, which must be a cosine head (a detector with ``head: cosine``; not a mixture, whose output
        mixes probabilities): raises ConfigError otherwise. ``domain_alignment`` on a mixture whose gate trains over
        frozen experts is refused too: its embedding is theirs, which no gradient reaches."""
        _check_alignment_trains(cfg, model)
        if cfg.kind != "oc_softmax":
            return cls(cfg)
        head = getattr(getattr(model, "backend", None), "classifier", None)
        if not isinstance(head, CosineHead):
            raise ConfigError("loss.kind oc_softmax needs a single detector whose back-end has head: cosine")
        return cls(cfg, oc_scale=head.scale)

    def classification(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The classification term alone (logged as ``ce``): logits (B, 2), labels (B,) -> scalar.

        ``kind: ce``: (weighted, smoothed) cross-entropy. ``kind: oc_softmax``: the one-class loss on the
        cosine score c = (bona fide log-odds) / s, s the head's scale, with the same class weighting as cross-entropy.
        """
        logits = logits.float()
        weight = None if self._weight is None else self._weight.to(logits.device)
        if self.cfg.kind == "ce":
            smoothing = self.cfg.label_smoothing
            if weight is None or smoothing == 0:
                return F.cross_entropy(logits, labels, weight=weight, label_smoothing=smoothing)
            # torch weights the smoothing term's classes by their own weights (pytorch/pytorch#104776), which
            # moves the target: with weights (0.1, 0.9) and smoothing 0.1 a spoof item is pulled towards 32%
            # bona fide. Weight each item's smoothed cross-entropy by its class weight instead.
            per_item = F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
            w = weight[labels]
            return (w * per_item).sum() / w.sum()
        scale, (m_spoof, m_bonafide) = self.oc_scale, self.cfg.oc_margins
        log_odds = logits[:, 1] - logits[:, 0]  # = scale * c with a cosine head
        bonafide = labels == 1
        per_item = F.softplus(torch.where(bonafide, scale * m_bonafide - log_odds, log_odds - scale * m_spoof))
        if weight is None:
            return per_item.mean()
        w = weight[labels]
        return (w * per_item).sum() / w.sum()

    @property
    def weighted(self) -> bool:
        """Whether the classification term is a class-weighted mean (``loss.class_weights``)."""
        return self._weight is not None

    def classification_weight(self, labels: Tensor) -> float:
        """What :meth:`classification` divides its sum over ``labels`` by: their summed class weights (their
        number without class weights). ``classification(...) * classification_weight(labels)`` summed over
        batches, over the sum of the weights, is the whole set's mean whatever the batch size."""
        if self._weight is None:
            return float(labels.numel())
        return float(self._weight[labels.cpu()].sum())

    def __call__(self, output: DetectorOutput, labels: Tensor, domains: Tensor | None = None) -> LossParts:
        """domains: (B,) int64 domain index per item (-1 unknown); used only with ``domain_alignment``."""
        ce = self.classification(output.logits, labels)
        aux = {k: v.float().reshape(()) for k, v in output.aux_losses.items()}
        if self.cfg.domain_alignment > 0:
            if domains is None:
                raise ValueError("loss.domain_alignment needs each item's domain (data.domain_column)")
            if torch.is_grad_enabled() and ce.requires_grad and not output.embedding.requires_grad:
                # a training step whose embedding no trainable parameter computes (e.g. a frozen encoder without
                # adapter under the linear head's parameter-free pooling): the penalty was a constant that only
                # shifted the logged loss, and the run trained as without it
                raise ConfigError(
                    f"loss.domain_alignment={self.cfg.domain_alignment} aligns the model's embedding, which no "
                    "trainable parameter computes here (the layers before it are frozen): the penalty would be a "
                    "constant the model cannot learn from. Set loss.domain_alignment: 0, or train what computes "
                    "the embedding (an adapter, or encoder.freeze: false)"
                )
            aux["domain_alignment"] = self.cfg.domain_alignment * domain_spread(output.embedding, labels, domains)
        total = ce + torch.stack(list(aux.values())).sum() if aux else ce
        return LossParts(total=total, ce=ce, aux=aux)


def pooled_over_ranks(parts: LossParts, loss_fn: object, labels: Tensor, world_size: int) -> LossParts:
    """``parts`` of one rank, its classification term rescaled so that the average over the ``world_size`` ranks
    (what DDP does to the gradients) is the class-weighted mean over all ranks' items (a collective).

    The gradient is that of ``ce * w_rank * world / w_all``, with ``w_rank`` the summed class weights of this
    rank's items and ``w_all`` every rank's; the value of ``ce`` (what is logged) is the pooled weighted mean
    itself. Without class weights (or in one process) ``parts`` come back as they are: equal batches per rank
    already make the average of the ranks' means the pooled mean.
    """
    import torch.distributed as dist

    if world_size <= 1 or not dist.is_initialized() or not isinstance(loss_fn, DetectionLoss) or not loss_fn.weighted:
        return parts
    local = loss_fn.classification_weight(labels)
    # detached: float() of a tensor that records its graph warns once per process ("Converting a tensor with
    # requires_grad=True to a scalar"), in every DDP run of a class-weighted recipe
    sums = torch.tensor([local, local * float(parts.ce.detach())], dtype=torch.float64, device=labels.device)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    scaled = parts.ce * (local * world_size / float(sums[0]))
    pooled_mean = torch.tensor(float(sums[1] / sums[0]), dtype=parts.ce.dtype, device=parts.ce.device)
    ce = scaled + (pooled_mean - scaled).detach()  # the gradient of ``scaled``, the value of the pooled mean
    return LossParts(total=parts.total + (ce - parts.ce), ce=ce, aux=parts.aux)
