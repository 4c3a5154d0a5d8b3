"""Class-conditional domain alignment (``loss.domain_alignment``): the penalty by hand, its invariances,
and its gradient through a training step and a trainer run."""

from __future__ import annotations

import pytest
import torch
from test_sam import _batch, _detector
from test_train import _recipe
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import ConfigError
from sddkit.training.erm import ERM
from sddkit.training.losses import DetectionLoss, domain_spread
from sddkit.training.recipe import LossConfig
from sddkit.training.strategy import StepContext
from sddkit.training.trainer import Trainer

# class 0 (spoof): two items of domain 0 at (1, 0), one of domain 1 at (0, 1); class 1 (bona fide): one
# domain only, plus an item of unknown domain (-1), so it adds nothing.
EMB = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [-1.0, 0.0]])
LABELS = torch.tensor([0, 0, 0, 1, 1, 1])
DOMAINS = torch.tensor([0, 0, 1, 2, 2, -1])


def test_domain_spread_by_hand():
    # spoof mean (2/3, 1/3): domain 0 is off by (1/3, -1/3), weight 2/3; domain 1 by (-2/3, 2/3), weight 1/3
    expected = 2 / 3 * 2 / 9 + 1 / 3 * 8 / 9
    assert float(domain_spread(EMB, LABELS, DOMAINS)) == pytest.approx(expected, rel=1e-6)
    # the embeddings are normalised: scaling them changes nothing
    assert float(domain_spread(7.0 * EMB, LABELS, DOMAINS)) == pytest.approx(expected, rel=1e-6)
    # both classes count once each when both span two domains
    two = torch.tensor([0, 0, 1, 2, 3, -1])
    bona = (0.5 * (0.6 - 0.7) ** 2 * 2 + 0.5 * (0.8 - 0.7) ** 2 * 2) * 1.0  # two items, means (0.7, 0.7)
    assert float(domain_spread(EMB, LABELS, two)) == pytest.approx((expected + bona) / 2, rel=1e-6)


def test_domain_spread_is_zero_when_domains_share_class_means():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.3, 0.4]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    domains = torch.tensor([0, 0, 1, 1, 1])  # each spoof domain holds one of each direction
    assert float(domain_spread(emb, labels, domains)) == pytest.approx(0.0, abs=1e-7)
    assert float(domain_spread(emb, labels, torch.full((5,), -1))) == 0.0  # no known domain at all


def test_loss_adds_the_weighted_penalty_and_zero_weight_changes_nothing():
    logits = torch.randn(6, 2)
    out = DetectorOutput(logits=logits, score=logits[:, 1] - logits[:, 0], embedding=EMB)
    plain = DetectionLoss(LossConfig())(out, LABELS, domains=DOMAINS)
    assert "domain_alignment" not in plain.aux
    aligned = DetectionLoss(LossConfig(domain_alignment=0.5))(out, LABELS, domains=DOMAINS)
    assert torch.equal(aligned.ce, plain.ce)
    penalty = 0.5 * domain_spread(EMB, LABELS, DOMAINS)
    torch.testing.assert_close(aligned.aux["domain_alignment"], penalty)
    torch.testing.assert_close(aligned.total, plain.total + penalty)
    with pytest.raises(ValueError, match="needs each item's domain"):
        DetectionLoss(LossConfig(domain_alignment=0.5))(out, LABELS)
    with pytest.raises(ConfigError, match="domain_alignment"):
        from_dict(LossConfig, {"domain_alignment": -1.0})


def test_erm_step_with_alignment_moves_the_embedding_weights_differently():
    batch = _batch(12)
    grads = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = _detector(batch_norm=False)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
        ctx = StepContext(
            model=model, module=model, optimizer=opt, loss_fn=DetectionLoss(LossConfig(domain_alignment=weight))
        )
        result = ERM().step(batch, ctx)
        assert ("aux/domain_alignment" in result.metrics) == (weight > 0)
        grads[weight] = model.frontend.adapter.weight.grad.clone()
    # the penalty acts on the embedding, so the front-end's gradient changes (the head's does not see it)
    assert (grads[1.0] - grads[0.0]).abs().max() > 1e-6


def test_trainer_runs_with_domain_alignment(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    r = _recipe(tmp_path, loss={"domain_alignment": 0.1}, trainer={"epochs": 1})
    result = Trainer(r, train_data=SyntheticDataset(32), val_data=SyntheticDataset(16, seed=9)).fit()
    assert result.step == 4 and result.best_eer is not None
    assert '"domain_alignment": 0.1' in (tmp_path / "run" / "run.json").read_text()
