"""Output layers (``head: linear | cosine``) on every back-end and the OC-softmax loss: values by hand,
configuration checks, and a training run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_backends import DEFAULT_INPUTS
from test_train import _recipe
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.backends import BACKENDS
from sddkit.backends.heads import CosineHead
from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import ConfigError
from sddkit.training.losses import DetectionLoss
from sddkit.training.recipe import LossConfig
from sddkit.training.trainer import Trainer


def test_cosine_head_by_hand():
    head = CosineHead(2, scale=10.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 0.0]]))  # the direction (1, 0), whatever its length
    x = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 1.0]])
    cos = torch.tensor([1.0, 0.0, -1.0 / math.sqrt(2.0)])
    logits = head(x)
    torch.testing.assert_close(logits[:, 1] - logits[:, 0], 10.0 * cos)
    torch.testing.assert_close(logits.sum(dim=1), torch.zeros(3))  # symmetric: (-s c / 2, s c / 2)


# gmm has no output layer (its score is its mixtures' LLR): it refuses head: cosine (tests/test_gmmbackend_review29.py)
@pytest.mark.parametrize("name", sorted(set(DEFAULT_INPUTS) - {"gmm"}))
def test_every_backend_takes_either_head(name):
    in_dim, shape = DEFAULT_INPUTS[name]
    linear = BACKENDS.build(name, in_dim=in_dim)
    # the default keeps the published output layer and its state-dict keys (checkpoints load as before)
    assert isinstance(linear.classifier, torch.nn.Linear)
    assert {"classifier.weight", "classifier.bias"} <= set(linear.state_dict())
    cosine = BACKENDS.build({"name": name, "head": "cosine", "head_scale": 5.0}, in_dim=in_dim).eval()
    assert isinstance(cosine.classifier, CosineHead) and "classifier.bias" not in cosine.state_dict()
    with torch.no_grad():
        out = cosine(torch.randn(shape))
    log_odds = out.logits[:, 1] - out.logits[:, 0]
    expected = 5.0 * F.cosine_similarity(out.embedding, cosine.classifier.weight, dim=1)
    torch.testing.assert_close(log_odds, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="head_scale"):
        BACKENDS.parse({"name": name, "head_scale": 0.0})


def test_oc_softmax_loss_by_hand():
    cfg = LossConfig(kind="oc_softmax", oc_margins=(0.2, 0.9))
    cos = torch.tensor([0.95, 0.3, 0.5, -0.4])
    labels = torch.tensor([1, 1, 0, 0])
    logits = torch.stack([-10.0 * cos, 10.0 * cos], dim=1)  # what a cosine head of scale 20 gives
    out = DetectorOutput(logits=logits, score=20.0 * cos, embedding=logits)

    def softplus(v: float) -> float:
        return math.log1p(math.exp(v))

    per_item = [
        softplus(20 * (0.9 - 0.95)),
        softplus(20 * (0.9 - 0.3)),
        softplus(20 * (0.5 - 0.2)),
        softplus(20 * (-0.4 - 0.2)),
    ]
    parts = DetectionLoss(cfg, oc_scale=20.0)(out, labels)
    assert float(parts.ce) == pytest.approx(sum(per_item) / 4, rel=1e-5)
    weighted = DetectionLoss(LossConfig(kind="oc_softmax", class_weights=(0.25, 0.75)), oc_scale=20.0)(out, labels)
    expected = (0.75 * (per_item[0] + per_item[1]) + 0.25 * (per_item[2] + per_item[3])) / 2.0
    assert float(weighted.ce) == pytest.approx(expected, rel=1e-5)
    # validation reports the same term
    assert float(DetectionLoss(cfg, oc_scale=20.0).classification(logits, labels)) == pytest.approx(
        sum(per_item) / 4, rel=1e-5
    )


def test_oc_softmax_configuration_is_checked(tmp_path, monkeypatch):
    for bad in ({"oc_margins": [0.9, 0.2]}, {"oc_margins": [0.2, 1.5]}):
        with pytest.raises(ConfigError, match="oc_margins"):
            from_dict(LossConfig, bad)
    with pytest.raises(ConfigError, match="oc_scale"):  # the scale is the head's (head_scale), not the loss's
        from_dict(LossConfig, {"kind": "oc_softmax", "oc_scale": 20.0})
    for scale in (None, 0.0):
        with pytest.raises(ValueError, match="scale"):
            DetectionLoss(LossConfig(kind="oc_softmax"), oc_scale=scale)
    with pytest.raises(ConfigError, match="label_smoothing"):
        from_dict(LossConfig, {"kind": "oc_softmax", "label_smoothing": 0.1})
    with pytest.raises(ConfigError, match="single detector"):  # e.g. a mixture: its output mixes probabilities
        DetectionLoss.for_model(LossConfig(kind="oc_softmax"), torch.nn.ModuleList([CosineHead(4, 20.0)]))
    install_tiny(monkeypatch)
    data = {"train_data": SyntheticDataset(8), "val_data": SyntheticDataset(8, seed=9)}
    linear = {"frontend": {"name": "tiny_test"}, "backend": {"name": "linear"}}
    with pytest.raises(ConfigError, match="head: cosine"):
        Trainer(_recipe(tmp_path, model=linear, loss={"kind": "oc_softmax"}), **data).fit()

    # the loss takes its scale from the model's cosine head: at cosine 0.5 with head_scale 10, a spoof
    # costs softplus(10 * (0.5 - 0.2)) (it would be softplus(20 * 0.3) at the default scale 20)
    backend = {"name": "linear", "head": "cosine", "head_scale": 10.0}
    detector = build_detector(from_dict(DetectorConfig, {"frontend": {"name": "tiny_test"}, "backend": backend}))
    loss = DetectionLoss.for_model(LossConfig(kind="oc_softmax"), detector)
    assert loss.oc_scale == 10.0
    logits = torch.tensor([[-2.5, 2.5]])  # bona fide log-odds 5 = 10 * 0.5
    assert float(loss.classification(logits, torch.tensor([0]))) == pytest.approx(math.log1p(math.exp(3.0)), rel=1e-6)


def test_trainer_learns_with_oc_softmax(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    model = {"frontend": {"name": "tiny_test"}, "backend": {"name": "linear", "head": "cosine"}}
    r = _recipe(tmp_path, model=model, loss={"kind": "oc_softmax"}, trainer={"epochs": 6})
    result = Trainer(r, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9)).fit()
    # the synthetic task is separable (a sine per attack), so a working one-class objective learns it
    assert result.best_eer is not None and result.best_eer < 0.2
