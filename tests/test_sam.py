"""Sharpness-aware minimisation: rho 0 equals ERM, a hand-computed SAM and ASAM step, buffers moved once."""

from __future__ import annotations

import copy

import pytest
import torch
from test_train import _recipe
from test_train_support import (
    SyntheticDataset,
    TinyBackend,
    TinyBackendConfig,
    TinyFrontend,
    TinyFrontendConfig,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch import Tensor, nn

from sddkit.detectors.detector import Detector
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.erm import ERM
from sddkit.training.losses import DetectionLoss
from sddkit.training.recipe import LossConfig
from sddkit.training.sam import SAM, SAMConfig
from sddkit.training.strategy import StepContext
from sddkit.training.trainer import Trainer


def _batch(n: int = 12, offset: int = 0) -> dict[str, Tensor]:
    ds = SyntheticDataset(n=60, n_attacks=4)
    items = [ds[i] for i in range(offset, offset + n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _detector(batch_norm: bool = True) -> Detector:
    cfg = TinyFrontendConfig(aux_weight=0.01)
    return Detector(frontend=TinyFrontend(cfg), backend=TinyBackend(TinyBackendConfig(batch_norm=batch_norm), cfg.dim))


def _ctx(model: nn.Module, opt: torch.optim.Optimizer, clip: float | None = None) -> StepContext:
    return StepContext(model=model, module=model, optimizer=opt, loss_fn=DetectionLoss(LossConfig()), grad_clip=clip)


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def test_registered_and_configured():
    reg = get_registry("strategy")
    assert "sam" in reg.names()
    strategy = reg.build({"name": "sam", "rho": 0.5, "adaptive": True})
    assert isinstance(strategy, SAM) and strategy.cfg.rho == 0.5 and strategy.cfg.adaptive
    with pytest.raises(ConfigError, match="rho must be >= 0 and finite, got -0.1"):
        reg.parse({"name": "sam", "rho": -0.1})


def test_rho_zero_is_exactly_the_erm_step():
    torch.manual_seed(0)
    model_s = _detector()
    model_e = copy.deepcopy(model_s)
    opt_s = torch.optim.AdamW(_trainable(model_s), lr=1e-2)
    opt_e = torch.optim.AdamW(_trainable(model_e), lr=1e-2)
    sam, erm = SAM(SAMConfig(rho=0.0)), ERM()
    for step in range(3):
        batch = _batch(offset=12 * step)
        res_s = sam.step(batch, _ctx(model_s, opt_s, clip=1.0))
        res_e = erm.step(batch, _ctx(model_e, opt_e, clip=1.0))
        assert torch.equal(res_s.loss, res_e.loss)
    for (name, a), b in zip(model_s.state_dict().items(), model_e.state_dict().values()):
        assert torch.equal(a, b), name  # parameters AND batch-norm statistics, bit for bit


def _reference_step(model: nn.Module, batch: dict[str, Tensor], rho: float, adaptive: bool, eta: float, lr: float):
    """SAM by hand with autograd: θ - lr * ∇L(θ + e), e = rho T² g / ||T g||; returns the new parameters."""
    loss_fn = DetectionLoss(LossConfig())
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    grads = torch.autograd.grad(loss_fn(model(batch["waveform"]), batch["label"]).total, params)
    # ASAM rescales weights only (the authors' code): biases keep T = 1
    scales = [(p.detach().abs() + eta) if adaptive and "bias" not in n else torch.ones_like(p) for n, p in named]
    assert any("bias" in n for n, _ in named) and any("bias" not in n for n, _ in named)
    norm = torch.sqrt(sum(((s * g) ** 2).sum() for s, g in zip(scales, grads)))
    ascended = copy.deepcopy(model)
    with torch.no_grad():
        for q, s, g in zip(_trainable(ascended), scales, grads):
            q.add_(rho * s * s * g / norm)
    grads2 = torch.autograd.grad(loss_fn(ascended(batch["waveform"]), batch["label"]).total, _trainable(ascended))
    return [p.detach() - lr * g2 for p, g2 in zip(params, grads2)]


@pytest.mark.parametrize("adaptive", [False, True])
def test_step_applies_the_gradient_taken_at_the_ascended_point(adaptive):
    torch.manual_seed(1)
    model = _detector(batch_norm=False)
    reference_model = copy.deepcopy(model)
    batch = _batch()
    rho, lr = (0.5 if adaptive else 0.05), 0.1
    expected = _reference_step(reference_model, batch, rho, adaptive, eta=0.01, lr=lr)
    plain_sgd = torch.optim.SGD(_trainable(model), lr=lr)
    result = SAM(SAMConfig(rho=rho, adaptive=adaptive, eta=0.01)).step(batch, _ctx(model, plain_sgd))
    for p, e in zip(_trainable(model), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    # the reported loss is the loss at θ; the perturbed loss is higher (ascent along the gradient)
    assert result.metrics["sam/loss_perturbed"] > result.loss
    # and the step differs from plain gradient descent
    erm_model = copy.deepcopy(reference_model)
    ERM().step(batch, _ctx(erm_model, torch.optim.SGD(_trainable(erm_model), lr=lr)))
    assert not all(torch.equal(a, b) for a, b in zip(_trainable(erm_model), _trainable(model)))


def test_weights_come_back_exactly_and_running_statistics_move_once():
    torch.manual_seed(2)
    model = _detector()
    erm_model = copy.deepcopy(model)
    before = [p.detach().clone() for p in _trainable(model)]
    batch = _batch()
    frozen = torch.optim.SGD(_trainable(model), lr=0.0)  # lr 0: any change would come from SAM itself
    SAM(SAMConfig(rho=0.3)).step(batch, _ctx(model, frozen))
    assert all(torch.equal(a, b) for a, b in zip(before, _trainable(model)))
    ERM().step(batch, _ctx(erm_model, torch.optim.SGD(_trainable(erm_model), lr=0.0)))
    for (name, a), b in zip(model.named_buffers(), erm_model.buffers()):
        assert torch.equal(a, b), name  # one forward's worth of batch-norm updates, as in ERM


def test_trainer_runs_sam_from_a_recipe_and_records_it(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    r = _recipe(tmp_path, strategy={"name": "sam", "rho": 0.1, "adaptive": True}, trainer={"epochs": 1})
    result = Trainer(r, train_data=SyntheticDataset(32), val_data=SyntheticDataset(16, seed=9)).fit()
    assert result.step == 4 and result.best_eer is not None
    run = (tmp_path / "run" / "run.json").read_text()
    assert '"name": "sam"' in run and '"adaptive": true' in run
