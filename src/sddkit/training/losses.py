"""The training objective: weighted cross-entropy over (spoof, bona fide) + the detector's aux losses."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from sddkit.detectors.outputs import DetectorOutput
from sddkit.training.recipe import LossConfig


@dataclass
class LossParts:
    """total = ce + sum(aux); every entry a scalar tensor (``total`` keeps its graph)."""

    total: Tensor
    ce: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)

    def detached(self) -> dict[str, Tensor]:
        """Named detached scalars for logging: ``loss``, ``ce``, ``aux/<name>``."""
        out = {"loss": self.total.detach(), "ce": self.ce.detach()}
        out.update({f"aux/{k}": v.detach().reshape(()) for k, v in self.aux.items()})
        return out


class DetectionLoss:
    """``loss(output, labels) -> LossParts``; labels (B,) int64 with 1 = bona fide.

    Logits are cast to float32 first so that a bf16-autocast forward still gets an fp32 loss.
    With class weights, torch's ``mean`` reduction divides by the summed weights of the batch's
    targets, so the loss scale does not depend on the class mix of a batch.
    """

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg
        self._weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32)

    def __call__(self, output: DetectorOutput, labels: Tensor) -> LossParts:
        logits = output.logits.float()
        weight = None if self._weight is None else self._weight.to(logits.device)
        ce = F.cross_entropy(logits, labels, weight=weight, label_smoothing=self.cfg.label_smoothing)
        aux = {k: v.float().reshape(()) for k, v in output.aux_losses.items()}
        total = ce + torch.stack(list(aux.values())).sum() if aux else ce
        return LossParts(total=total, ce=ce, aux=aux)
