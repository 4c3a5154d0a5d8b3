"""Review of the training strategies and their parts: weighted label smoothing by hand, no optimiser step on a
non-finite gradient, strategy settings that cannot train, and a cosine warm-up longer than the run."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
from test_mldg import _batch
from test_train_support import (
    TinyFrontend,
    TinyFrontendConfig,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch import Tensor, nn

from sddkit.detectors.detector import Detector
from sddkit.detectors.outputs import BackendOutput
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.losses import DetectionLoss
from sddkit.training.recipe import LossConfig, ScheduleConfig
from sddkit.training.schedules import build_scheduler
from sddkit.training.strategy import StepContext


# --- weighted, smoothed cross-entropy ------------------------------------------------------------------------
def _smoothed_ce_by_hand(logits: Tensor, labels: Tensor, weights: tuple[float, float], eps: float) -> float:
    """sum_i w[y_i] * H(q_i, p_i) / sum_i w[y_i], with q_i = (1 - eps) onehot(y_i) + eps / 2 (two classes)."""
    total = norm = 0.0
    for z, y in zip(logits.double().tolist(), labels.tolist()):
        log_z = math.log(math.exp(z[0]) + math.exp(z[1]))
        log_p = [z[0] - log_z, z[1] - log_z]
        q = [eps / 2, eps / 2]
        q[y] += 1 - eps
        total += weights[y] * -(q[0] * log_p[0] + q[1] * log_p[1])
        norm += weights[y]
    return total / norm


def test_class_weights_do_not_change_the_smoothed_target():
    # a class weight scales how much an item counts, never what it is pulled towards: with smoothing eps
    # the loss of one item is lowest at p(true class) = 1 - eps / 2, whatever the weights
    weights, eps = (0.1, 0.9), 0.1
    loss = DetectionLoss(LossConfig(class_weights=weights, label_smoothing=eps))
    torch.manual_seed(0)
    logits, labels = torch.randn(7, 2) * 2, torch.tensor([0, 1, 1, 0, 0, 0, 1])
    expected = _smoothed_ce_by_hand(logits, labels, weights, eps)
    assert float(loss.classification(logits, labels)) == pytest.approx(expected, rel=1e-6)
    for label in (0, 1):
        z = torch.zeros(1, 2, requires_grad=True)
        opt = torch.optim.SGD([z], lr=1.0)
        for _ in range(300):
            opt.zero_grad()
            loss.classification(z, torch.tensor([label])).backward()
            opt.step()
        assert float(z.detach().softmax(dim=1)[0, label]) == pytest.approx(1 - eps / 2, abs=1e-4), label
    # evaluation's pooled loss divides by the same sum of weights
    assert loss.classification_weight(labels) == pytest.approx(sum(weights[y] for y in labels.tolist()))


def test_unweighted_or_unsmoothed_loss_is_torch_cross_entropy():
    torch.manual_seed(1)
    logits, labels = torch.randn(9, 2), torch.randint(0, 2, (9,))
    weight = torch.tensor([0.3, 0.7])
    plain = DetectionLoss(LossConfig(class_weights=(0.3, 0.7)))
    smooth = DetectionLoss(LossConfig(label_smoothing=0.2))
    assert torch.equal(plain.classification(logits, labels), nn.functional.cross_entropy(logits, labels, weight))
    ref = nn.functional.cross_entropy(logits, labels, label_smoothing=0.2)
    assert torch.equal(smooth.classification(logits, labels), ref)


# --- a non-finite gradient never reaches the optimiser --------------------------------------------------------
class SqrtAtZeroBackend(nn.Module):
    """A finite output whose gradient is NaN: ``0 * sqrt(z)`` at z = 0 (d sqrt / dz = inf, times 0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.head = nn.Linear(dim, 2)
        self.z = nn.Parameter(torch.zeros(()))

    def forward(self, features: Tensor) -> BackendOutput:
        emb = features.mean(dim=1)
        return BackendOutput(logits=self.head(emb) + 0.0 * self.z.sqrt(), embedding=emb)


@pytest.mark.parametrize("spec", [{"name": "erm"}, {"name": "mldg"}, {"name": "sam"}], ids=lambda s: s["name"])
@pytest.mark.parametrize("clip", [None, 1.0])
def test_a_non_finite_gradient_stops_before_the_optimiser_step(spec, clip):
    torch.manual_seed(0)
    cfg = TinyFrontendConfig()
    model = Detector(frontend=TinyFrontend(cfg), backend=SqrtAtZeroBackend(cfg.dim))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    # a first, healthy step (z = 1 here) so that there is optimiser state to spoil
    with torch.no_grad():
        model.backend.z.fill_(1.0)
    strategy = get_registry("strategy").build(spec, seed=0)
    ctx = StepContext(model=model, module=model, optimizer=opt, loss_fn=DetectionLoss(LossConfig()), grad_clip=clip)
    strategy.step(_batch(), ctx)
    with torch.no_grad():
        model.backend.z.zero_()
    weights, moments = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        strategy.step(_batch(offset=12), ctx)
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(value, moments["state"][idx][key]), (idx, key)


# --- settings that cannot train --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        {"name": "mldg", "beta": math.inf},
        {"name": "mldg", "inner_lr": math.inf},
        {"name": "mldg", "inner_eps": 0.0},
        {"name": "mldg", "inner_eps": -1e-8},
        {"name": "mldg", "inner_eps": math.inf},
        {"name": "sam", "rho": math.inf},
        {"name": "sam", "eta": math.inf},
    ],
    ids=str,
)
def test_strategy_settings_that_cannot_train_are_refused_when_parsed(spec):
    with pytest.raises((ValueError, ConfigError)):
        get_registry("strategy").parse(spec)


# --- cosine warm-up ---------------------------------------------------------------------------------------------
def _lrs(cfg: ScheduleConfig, total: int) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, cfg, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_warmup_then_decay_by_hand():
    lrs = _lrs(ScheduleConfig(name="cosine", warmup_steps=2, min_lr_ratio=0.1), 6)
    decay = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert lrs == pytest.approx([0.5, 1.0, *decay])


def test_a_warmup_as_long_as_the_run_is_reported(caplog):
    # the lr would only ramp: it never reaches optimizer.lr and the cosine never starts
    with caplog.at_level(logging.WARNING, logger="sddkit.training.schedules"):
        lrs = _lrs(ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1), 5)
    assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert len(caplog.records) == 1 and "warmup_steps" in caplog.text and "10" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sddkit.training.schedules"):
        _lrs(ScheduleConfig(name="cosine", warmup_steps=4), 5)
        _lrs(ScheduleConfig(name="constant", warmup_steps=5), 5)  # full lr on its last step
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="sddkit.training.schedules"):
        _lrs(ScheduleConfig(name="constant", warmup_steps=6), 5)
    assert len(caplog.records) == 1
