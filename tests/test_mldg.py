"""First-order MLDG: equivalence with ERM at beta 0, a hand-computed step, and no copies of frozen weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_train_support import (
    FRAME,
    SyntheticDataset,
    TinyBackend,
    TinyBackendConfig,
    TinyFrontend,
    TinyFrontendConfig,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch import Tensor, nn

from sddkit.detectors.detector import Detector
from sddkit.detectors.outputs import BackendOutput, FrontendOutput
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.erm import ERM
from sddkit.training.losses import DetectionLoss
from sddkit.training.mldg import MLDG, MLDGConfig, split_blocks, split_domains
from sddkit.training.recipe import LossConfig
from sddkit.training.strategy import StepContext, subset


def _batch(n: int = 12, n_attacks: int = 4, offset: int = 0) -> dict[str, Tensor]:
    ds = SyntheticDataset(n=60, n_attacks=n_attacks)
    items = [ds[i] for i in range(offset, offset + n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _ctx(model: nn.Module, opt: torch.optim.Optimizer, clip: float | None = 1.0) -> StepContext:
    loss = DetectionLoss(LossConfig(class_weights=(0.3, 0.7)))
    return StepContext(model=model, module=model, optimizer=opt, loss_fn=loss, grad_clip=clip)


def _bn_detector() -> Detector:
    cfg = TinyFrontendConfig(aux_weight=0.01)
    return Detector(frontend=TinyFrontend(cfg), backend=TinyBackend(TinyBackendConfig(batch_norm=True), cfg.dim))


def _adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)


def test_registered_and_configured():
    reg = get_registry("strategy")
    assert {"erm", "mldg"} <= set(reg.names())
    strategy = reg.build({"name": "mldg", "beta": 0.5, "n_meta_test": 2}, seed=3)
    assert isinstance(strategy, MLDG) and strategy.cfg.beta == 0.5 and strategy.cfg.n_meta_test == 2
    with pytest.raises(ConfigError, match="beta must be >= 0 and finite, got -1.0"):
        reg.parse({"name": "mldg", "beta": -1.0})


def test_split_domains_shares_bonafide_and_holds_out_whole_domains():
    batch = _batch(n=24)
    labels, domains = batch["label"], batch["domain"]
    g = torch.Generator().manual_seed(0)
    train, test = split_domains(labels, domains, n_meta_test=2, share_bonafide=True, generator=g)
    bona = set(torch.nonzero(labels == 1).flatten().tolist())
    assert bona <= set(train.tolist()) and bona <= set(test.tolist())
    train_dom = set(domains[train][labels[train] == 0].tolist())
    test_dom = set(domains[test][labels[test] == 0].tolist())
    assert len(test_dom) == 2 and not train_dom & test_dom
    assert train_dom | test_dom == set(domains[labels == 0].tolist())
    # without sharing, bona fide rows are dealt between the halves (1 of 4 domains held out: ~1/4)
    train, test = split_domains(labels, domains, n_meta_test=1, share_bonafide=False, generator=g)
    assert not set(train.tolist()) & set(test.tolist()) and len(train) + len(test) == 24
    assert len(bona & set(test.tolist())) == round(len(bona) / 4)
    # a bona fide row whose domain is a spoof domain (domain = source) follows its domain
    labels2, domains2 = torch.tensor([1, 0, 1, 0, 0, 1]), torch.tensor([5, 5, 6, 6, 7, 9])
    train, test = split_domains(labels2, domains2, n_meta_test=1, share_bonafide=True, generator=g)
    for rows in (train.tolist(), test.tolist()):
        assert 5 in rows  # the orphan bona fide row (domain 9) is in both halves
        assert ({0, 1} <= set(rows)) or not ({0, 1} & set(rows))  # domain 5 (bona + spoof) stays together
    # too few domains: no split
    one = torch.ones(4, dtype=torch.long)
    assert split_domains(one * 0, one, n_meta_test=1, share_bonafide=True, generator=g) is None


def test_split_blocks_holds_out_whole_domain_blocks_with_their_bonafide_share():
    # a DomainBatchSampler batch: 4 blocks of (1 bona fide + 1 spoof); bona fide rows carry the
    # attack column's "bonafide" domain (id 9), yet each must stay with its block's attack
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    domains = torch.tensor([9, 0, 9, 1, 9, 2, 9, 3])
    blocks = torch.arange(8) // 2
    g = torch.Generator().manual_seed(0)
    seen_test_blocks = set()
    for _ in range(20):
        train, test = split_blocks(blocks, n_meta_test=2, generator=g)
        test_blocks = set(blocks[test].tolist())
        assert len(test_blocks) == 2 and not test_blocks & set(blocks[train].tolist())
        assert sorted(train.tolist() + test.tolist()) == list(range(8))
        for b in test_blocks:  # the block's bona fide row goes to meta-test with its spoof row
            assert {2 * b, 2 * b + 1} <= set(test.tolist())
        seen_test_blocks |= test_blocks
    assert seen_test_blocks == {0, 1, 2, 3}  # the held-out domains change from step to step
    assert split_blocks(torch.zeros(4, dtype=torch.long), n_meta_test=1, generator=g) is None
    # MLDG uses the blocks when the batch has them, whatever share_bonafide says
    batch = {"label": labels, "domain": domains, "domain_block": blocks}
    train, test = MLDG(MLDGConfig(n_meta_test=1, share_bonafide=True), seed=0).split(batch)
    assert len(test) == 2 and labels[test].tolist().count(1) == 1 and len(train) == 6


def test_beta_zero_is_exactly_the_erm_step_on_the_meta_train_rows():
    torch.manual_seed(0)
    model_m = _bn_detector()
    model_e = copy.deepcopy(model_m)
    opt_m, opt_e = _adamw(model_m), _adamw(model_e)
    mldg = MLDG(MLDGConfig(beta=0.0, n_meta_test=1), seed=7)
    splitter = MLDG(MLDGConfig(), seed=7)  # the same split stream
    erm = ERM()
    for step in range(3):
        batch = _batch(offset=12 * step)
        train_rows, _ = splitter.split(batch)
        res_m = mldg.step(batch, _ctx(model_m, opt_m))
        res_e = erm.step(subset(batch, train_rows), _ctx(model_e, opt_e))
        assert torch.equal(res_m.loss, res_e.loss)
        assert res_m.metrics["mldg/fallback"] == 0
    for (name, a), b in zip(model_m.state_dict().items(), model_e.state_dict().values()):
        assert torch.equal(a, b), name  # parameters AND batch-norm statistics, bit for bit
    assert not torch.equal(
        model_m.state_dict()["backend.head.weight"], _bn_detector().state_dict()["backend.head.weight"]
    )


class FrozenProjection(nn.Module):
    """A frozen linear 'encoder': (B, T) -> (B, 1, D); records the weight storage it computes with."""

    def __init__(self, t: int, d: int):
        super().__init__()
        self.proj = nn.Linear(t, d)
        self.proj.requires_grad_(False)
        self.seen: list[int] = []
        self.output_dim = d

    def forward(self, waveform: Tensor) -> FrontendOutput:
        self.seen.append(self.proj.weight.data_ptr())
        return FrontendOutput(features=self.proj(waveform).unsqueeze(1))


class LinearHead(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.head = nn.Linear(d, 2)

    def forward(self, features: Tensor) -> BackendOutput:
        emb = features.mean(dim=1)
        return BackendOutput(logits=self.head(emb), embedding=emb)


CLASS_WEIGHTS = np.array([0.3, 0.7])  # as in _ctx


def _ce_grads(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Class-weighted mean CE of logits x @ w.T + b, by hand.

    L = sum_i c_i * nll_i / sum_i c_i with c_i = weight[y_i]; dL/dz_i = c_i (softmax(z_i) - onehot_i) / sum c.
    """
    z = x @ w.T + b
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    c = CLASS_WEIGHTS[y]
    loss = float((c * -np.log(p[np.arange(len(y)), y])).sum() / c.sum())
    dz = c[:, None] * (p - np.eye(2)[y]) / c.sum()
    return dz.T @ x, dz.sum(axis=0), loss


def test_applied_gradient_matches_hand_computed_first_order_mldg():
    torch.manual_seed(1)
    d, beta, lr, eps = 5, 0.7, 0.05, 1e-8
    model = Detector(frontend=FrozenProjection(32, d), backend=LinearHead(d))
    batch = _batch(n=12)
    batch["waveform"] = batch["waveform"][:, :32] * 3
    cfg = MLDGConfig(beta=beta, inner_lr=lr, inner_eps=eps, n_meta_test=1)
    train_rows, test_rows = MLDG(cfg, seed=11).split(batch)

    # by hand, in float64
    with torch.no_grad():
        feats = model.frontend(batch["waveform"]).features[:, 0].double().numpy()
    w0 = model.backend.head.weight.detach().double().numpy()
    b0 = model.backend.head.bias.detach().double().numpy()
    y = batch["label"].numpy()
    gw_tr, gb_tr, loss_tr = _ce_grads(w0, b0, feats[train_rows], y[train_rows])
    # first Adam step from a fresh state: m_hat = g, v_hat = g^2, so theta' = theta - lr * g / (|g| + eps)
    w1 = w0 - lr * gw_tr / (np.abs(gw_tr) + eps)
    b1 = b0 - lr * gb_tr / (np.abs(gb_tr) + eps)
    gw_te, gb_te, loss_te = _ce_grads(w1, b1, feats[test_rows], y[test_rows])

    opt = torch.optim.SGD(model.backend.parameters(), lr=1.0)
    result = MLDG(cfg, seed=11).step(batch, _ctx(model, opt, clip=None))
    np.testing.assert_allclose(
        model.backend.head.weight.grad.double().numpy(), gw_tr + beta * gw_te, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        model.backend.head.bias.grad.double().numpy(), gb_tr + beta * gb_te, rtol=1e-4, atol=1e-6
    )
    # SGD(lr=1) applied exactly that gradient to the original parameters
    np.testing.assert_allclose(
        model.backend.head.weight.detach().double().numpy(), w0 - (gw_tr + beta * gw_te), rtol=1e-4, atol=1e-6
    )
    assert float(result.loss) == pytest.approx(loss_tr + beta * loss_te, rel=1e-5)
    # and it is not the plain meta-train gradient: the meta-test term matters
    assert np.abs(beta * gw_te).max() > 1e-3


def test_frozen_encoder_is_never_copied(monkeypatch):
    torch.manual_seed(2)
    encoder = FrozenProjection(32, 4)
    model = Detector(frontend=encoder, backend=LinearHead(4))
    original_ptr = encoder.proj.weight.data_ptr()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    head = model.backend.head
    theta, head_ptr = head.weight.detach().clone(), head.weight.data_ptr()
    seen = []  # the head weight each pass computes with
    head.register_forward_pre_hook(lambda module, args: seen.append(module.weight.detach().numpy().copy()))
    cloned = []
    real_clone = torch.Tensor.clone

    def spy(tensor, *args, **kwargs):
        cloned.append(tuple(tensor.shape))
        return real_clone(tensor, *args, **kwargs)

    batch = _batch(n=12)
    batch["waveform"] = batch["waveform"][:, :32]
    opt = torch.optim.SGD(model.backend.parameters(), lr=0.0)  # the outer step leaves θ where it was
    monkeypatch.setattr(torch.Tensor, "clone", spy)
    MLDG(MLDGConfig(), seed=0).step(batch, _ctx(model, opt))
    monkeypatch.undo()
    # θ is copied aside (the trainable tensors only: never the frozen (4, 32) projection) and comes back in place
    assert tuple(encoder.proj.weight.shape) not in cloned and cloned.count(tuple(theta.shape)) == 1
    assert torch.equal(head.weight, theta) and head.weight.data_ptr() == head_ptr
    # meta-train at θ, meta-test at the adapted θ'
    assert len(seen) == 2 and np.array_equal(seen[0], theta.numpy()) and not np.array_equal(seen[1], theta.numpy())
    # both passes (meta-train and meta-test) computed with the very same frozen weight storage, unchanged
    assert encoder.seen == [original_ptr, original_ptr]
    for name, tensor in model.named_parameters():
        if name in frozen:
            assert torch.equal(tensor, frozen[name]) and tensor.grad is None, name


def test_too_few_domains_falls_back_to_a_plain_step():
    torch.manual_seed(3)
    model = _bn_detector()
    batch = _batch(n=12, n_attacks=1)  # bona fide + a single attack: nothing to hold out
    before = copy.deepcopy(model.state_dict())
    result = MLDG(MLDGConfig(), seed=0).step(batch, _ctx(model, _adamw(model)))
    assert float(result.metrics["mldg/fallback"]) == 1.0
    assert not torch.equal(before["backend.head.weight"], model.state_dict()["backend.head.weight"])
    assert torch.equal(before["frontend.encoder.weight"], model.state_dict()["frontend.encoder.weight"])
    assert FRAME == 16


def test_a_run_whose_batches_never_split_is_reported_once(caplog):
    torch.manual_seed(3)
    model = _bn_detector()
    strategy, ctx = MLDG(MLDGConfig(), seed=0), _ctx(model, _adamw(model))
    with caplog.at_level("WARNING", logger="sddkit.training.mldg"):
        for _ in range(MLDG.WARN_AFTER - 1):
            strategy.step(_batch(n=12, n_attacks=1), ctx)
        assert not caplog.records  # not yet: a few unsplittable batches are normal
        for _ in range(5):
            strategy.step(_batch(n=12, n_attacks=1), ctx)
    assert len(caplog.records) == 1 and "every step was a plain step" in caplog.text
    caplog.clear()
    mixed = MLDG(MLDGConfig(), seed=0)  # one splittable batch among them: no warning
    with caplog.at_level("WARNING", logger="sddkit.training.mldg"):
        mixed.step(_batch(n=12, n_attacks=4), ctx)
        for _ in range(MLDG.WARN_AFTER):
            mixed.step(_batch(n=12, n_attacks=1), ctx)
    assert not caplog.records
