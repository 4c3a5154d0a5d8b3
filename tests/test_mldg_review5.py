"""Review 5 of MLDG: auxiliary losses counted once, bona fide orphans dealt without bias, and the DDP claim
that per-rank class-weighted means are exact with domain_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_mldg import LinearHead
from test_train_support import (
    SyntheticDataset,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch import Tensor, nn

from sddkit.detectors.detector import Detector
from sddkit.detectors.outputs import FrontendOutput
from sddkit.training.losses import DetectionLoss
from sddkit.training.mldg import MLDG, MLDGConfig, split_domains
from sddkit.training.recipe import LossConfig
from sddkit.training.strategy import StepContext


def _batch(n: int = 12, n_attacks: int = 4) -> dict[str, Tensor]:
    ds = SyntheticDataset(n=60, n_attacks=n_attacks)
    items = [ds[i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class RegularisedFrontend(nn.Module):
    """A trainable projection plus a parameter ``z`` that only an input-independent aux loss reads (as MoLEx's
    orthogonality loss reads the expert weights only)."""

    def __init__(self, t: int, d: int, weight: float):
        super().__init__()
        self.proj = nn.Linear(t, d)
        self.z = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
        self.weight = weight
        self.output_dim = d

    def forward(self, waveform: Tensor) -> FrontendOutput:
        aux = {"reg": self.weight * self.z.pow(2).sum()}
        return FrontendOutput(features=self.proj(waveform).unsqueeze(1), aux_losses=aux)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_auxiliary_losses_count_once_not_one_plus_beta_times(beta):
    torch.manual_seed(0)
    weight = 0.3
    front = RegularisedFrontend(32, 4, weight)
    model = Detector(frontend=front, backend=LinearHead(4))
    z0 = front.z.detach().clone()
    batch = _batch()
    batch["waveform"] = batch["waveform"][:, :32]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    ctx = StepContext(model=model, module=model, optimizer=opt, loss_fn=DetectionLoss(LossConfig()))
    result = MLDG(MLDGConfig(beta=beta, inner_lr=0.1), seed=0).step(batch, ctx)
    assert float(result.metrics["mldg/fallback"]) == 0.0
    # the regulariser's gradient is what ERM gives it (2 w z), not 2 w z + beta * 2 w z'
    torch.testing.assert_close(front.z.grad, 2 * weight * z0)
    # the recorded objective: meta-train loss (aux included) + beta * meta-test classification loss
    m = result.metrics
    assert float(m["meta_test/loss"]) == float(m["meta_test/ce"])
    assert "meta_test/aux/reg" not in m
    assert float(result.loss) == pytest.approx(float(m["meta_train/loss"]) + beta * float(m["meta_test/ce"]))
    assert float(m["meta_train/aux/reg"]) == pytest.approx(weight * float(z0.pow(2).sum()))


def test_unshared_bonafide_orphans_reach_meta_test_in_proportion():
    """share_bonafide False: a lone bona fide row of no attack, with two spoof domains (one held out), belongs to
    meta-test half of the time; round(0.5) = 0 sent it to meta-train every time."""
    labels = torch.tensor([1, 0, 0, 0, 0])
    domains = torch.tensor([0, 1, 1, 2, 2])
    generator = torch.Generator().manual_seed(0)
    in_test = 0
    for _ in range(400):
        train, test = split_domains(labels, domains, n_meta_test=1, share_bonafide=False, generator=generator)
        assert sorted(train.tolist() + test.tolist()) == list(range(5))  # every row in exactly one half
        in_test += int(0 in test.tolist())
    assert 150 < in_test < 250
    # a whole share is dealt exactly: 4 orphans, 4 domains, 1 held out -> exactly one orphan in meta-test
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    domains = torch.tensor([0, 0, 0, 0, 1, 2, 3, 4])
    for _ in range(20):
        train, test = split_domains(labels, domains, n_meta_test=1, share_bonafide=False, generator=generator)
        assert int((labels[test] == 1).sum()) == 1 and int((labels[train] == 1).sum()) == 3


def test_with_domain_batch_the_ranks_mean_class_weighted_losses_average_to_the_pooled_one():
    """What the module docstring says of DDP: MLDG takes each rank's own class-weighted means (no pooled
    collective), and with ``domain_batch`` every rank's halves hold the same class mix, so their average is
    the class-weighted mean over all ranks' rows exactly."""
    from sddkit.data.samplers import DomainBatchSampler
    from sddkit.training.mldg import split_blocks

    rng = np.random.default_rng(0)
    labels = np.array([1] * 30 + [0] * 90)
    attacks = np.array(["bonafide"] * 30 + [f"A{i % 5}" for i in range(90)])
    loss = DetectionLoss(LossConfig(class_weights=(0.1, 0.9)))
    logits = torch.from_numpy(rng.standard_normal((len(labels), 2)))
    y = torch.from_numpy(labels)
    ranks = [DomainBatchSampler(attacks, labels, batch_size=16, seed=1, rank=r, world_size=2) for r in range(2)]
    for step0, step1 in zip(*ranks):
        halves = []
        for rows in (step0, step1):
            blocks = torch.arange(len(rows)) // ranks[0].per_domain
            train, test = split_blocks(blocks, n_meta_test=1, generator=torch.Generator().manual_seed(3))
            halves.append((torch.tensor(rows)[train], torch.tensor(rows)[test]))
        for k in range(2):  # meta-train, meta-test
            per_rank = [loss.classification(logits[h[k]], y[h[k]]) for h in halves]
            pooled = loss.classification(
                logits[torch.cat([h[k] for h in halves])], y[torch.cat([h[k] for h in halves])]
            )
            torch.testing.assert_close(sum(per_rank) / 2, pooled)
