"""Review 7 of MoLEx: the one-expert/LoRA equivalence with gradients and dropout, the orthogonality loss at zero and
above it, and the per-attack numbers of molex_report.json on tiny data worked by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sddkit.frontends.lora import LoRALinear
from sddkit.frontends.molex import MoLExLinear, orthogonality_loss, pairwise_orthogonality
from sddkit.registry import get_registry
from sddkit.training.molex import eer_by_attack, expert_use_by_attack


def _router(spec, in_features, num_experts):
    return get_registry("router").build(spec, in_features=in_features, num_experts=num_experts)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "softmax"},
        {"name": "topk", "k": 1, "mode": "weighted"},
        {"name": "topk", "k": 1, "mode": "straight_through"},
        {"name": "softmax", "level": "utterance"},
    ],
)
@pytest.mark.parametrize("training", [False, True])
def test_one_expert_molex_is_lora_in_values_and_gradients(spec, training):
    """E = 1: the gate is exactly 1 whatever the router, so output and expert gradients are LoRA's, also with
    active LoRA dropout (the same random mask from the same seed) and in training mode."""
    torch.manual_seed(0)
    base = nn.Linear(8, 6)
    dropout = 0.25 if training else 0.0
    lora = LoRALinear(copy.deepcopy(base), rank=3, alpha=6.0, dropout=dropout)
    molex = MoLExLinear(
        copy.deepcopy(base), num_experts=1, rank=3, alpha=6.0, router=_router(spec, 8, 1), dropout=dropout
    )
    with torch.no_grad():
        lora.lora_B.normal_()
        molex.lora_A[0].copy_(lora.lora_A[None])
        molex.lora_B[0].copy_(lora.lora_B[None])
    lora.train(training)
    molex.train(training)
    x = torch.randn(2, 5, 8)
    probe = torch.randn(2, 5, 6)
    torch.manual_seed(1)
    y_lora = lora(x)
    torch.manual_seed(1)
    y_molex = molex(x)
    torch.testing.assert_close(y_molex, y_lora)
    (y_lora * probe).sum().backward()
    (y_molex * probe).sum().backward()
    torch.testing.assert_close(molex.lora_A[0].grad[0], lora.lora_A.grad)
    torch.testing.assert_close(molex.lora_B[0].grad[0], lora.lora_B.grad)
    # and so does the gradient of the base weight (each layer holds its own copy)
    torch.testing.assert_close(molex.weight.grad, lora.weight.grad)


def _layer(num_experts, rank, in_features=6, out_features=5):
    base = nn.Linear(in_features, out_features)
    return MoLExLinear(
        base,
        num_experts=num_experts,
        rank=rank,
        alpha=2.0,
        router=_router({"name": "softmax"}, in_features, num_experts),
    )


def test_orthogonality_is_zero_for_orthogonal_experts_and_positive_otherwise():
    layer = _layer(num_experts=3, rank=2)
    eye_in, eye_out = torch.eye(6), torch.eye(5)
    with torch.no_grad():
        # A_e: rows 2e, 2e + 1 of the identity (disjoint row spaces); B_e: disjoint columns of the identity
        layer.lora_A[0].copy_(eye_in.reshape(3, 2, 6))
        layer.lora_B[0].copy_(torch.stack([eye_out[:, [0, 1]], eye_out[:, [2, 3]], eye_out[:, [4, 4]] * 0]))
    for on in ("A", "B", "both"):
        assert orthogonality_loss([layer], on).item() == 0.0
    with torch.no_grad():
        layer.lora_A[0][2, 0] = eye_in[0] * 3.0  # expert 2 shares direction 0 with expert 0: <a, a'> = 3
        layer.lora_B[0][1, :, 0] = eye_out[1] * 2.0  # expert 1's first column on expert 0's second: <b, b'> = 2
    # A: only pair (0, 2), Gram entry (row 0, row 0) = 3 -> 9; B: only pair (0, 1), entry (col 1, col 0) = 2 -> 4
    torch.testing.assert_close(orthogonality_loss([layer], "A"), torch.tensor(9.0))
    torch.testing.assert_close(orthogonality_loss([layer], "B"), torch.tensor(4.0))
    torch.testing.assert_close(orthogonality_loss([layer], "both"), torch.tensor(13.0))
    # the mean over layers: with a second, orthogonal copy the loss halves
    other = _layer(num_experts=3, rank=2)
    with torch.no_grad():
        other.lora_A[0].copy_(eye_in.reshape(3, 2, 6))
        other.lora_B[0].zero_()
    torch.testing.assert_close(orthogonality_loss([layer, other], "both"), torch.tensor(6.5))


def test_orthogonality_excludes_the_diagonal_and_counts_each_pair_once():
    """An expert with itself never counts (its own Gram ||A A^T||^2 > 0); each unordered pair counts once."""
    a = torch.randn(1, 2, 3, 7)
    expected = (a[0, 0] @ a[0, 1].T).pow(2).sum()
    torch.testing.assert_close(pairwise_orthogonality(a), expected[None])
    b = torch.randn(1, 2, 7, 3)  # (M, E, out, r): B_i^T B_j, r x r
    torch.testing.assert_close(pairwise_orthogonality(b, transpose=True), (b[0, 0].T @ b[0, 1]).pow(2).sum()[None])


def test_report_numbers_per_attack_by_hand():
    """Bona fide 0.9 0.8 0.7 0.6; A01 spoofs 0.1 0.2 (separated: EER 0); A02 spoofs 0.75 0.65 (the DET points
    cross at FRR = FAR = 1/2); pooled, 0.75 and 0.65 among four spoofs cross at 1/4."""
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2, 0.75, 0.65])
    attacks = np.array(["bonafide"] * 4 + ["A01", "A01", "A02", "A02"])
    got = eer_by_attack(labels, scores, attacks)
    assert got["n"] == 8
    assert got["per_attack"] == pytest.approx({"A01": 0.0, "A02": 0.5})
    assert got["eer"] == pytest.approx(0.25)
    gate = np.array([[[0.5, 0.5]]] * 4 + [[[1.0, 0.0]], [[0.8, 0.2]], [[0.0, 1.0]], [[0.2, 0.8]]])  # (N, 1, 2)
    use = expert_use_by_attack({"molex_gate_mean": gate}, attacks)["molex_gate_mean"]
    assert use == {"A01": [0.9, 0.1], "A02": [0.1, 0.9], "bonafide": [0.5, 0.5]}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("k", [1, 2])
def test_straight_through_gates_are_the_weighted_gates_bit_for_bit(dtype, k):
    """Straight-through changes the backward only. ``(g + p) - p`` rounded the forward gates: in bfloat16 a top-1
    gate came out 0.996 instead of 1 (so top-1 gate means were no longer one-hot), gates off by up to 2^-8."""
    torch.manual_seed(0)
    st = _router({"name": "topk", "k": k, "mode": "straight_through"}, 16, 4).to(dtype)
    weighted = _router({"name": "topk", "k": k, "mode": "weighted"}, 16, 4).to(dtype)
    weighted.load_state_dict(st.state_dict())
    x = torch.randn(4, 50, 16, dtype=dtype)
    gates = st(x).gates
    assert torch.equal(gates.detach(), weighted(x).gates.detach())
    if k == 1:
        assert torch.equal(gates.detach(), torch.nn.functional.one_hot(gates.argmax(-1), 4).to(dtype))
    # the backward is still the dense softmax's: every expert's router row gets a gradient
    (gates.float() * torch.randn(4, 50, 4)).sum().backward()
    assert torch.all(st.weights[0].grad.abs().sum(-1) > 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"level": "utt"}, "level"),  # silently routed every frame
        ({"top_k": 0}, "k must be >= 1"),  # NaN gates
        ({"temperature": 0.0}, "temperature"),  # infinite logits
        ({"temperature": float("nan")}, "temperature"),
    ],
)
def test_a_router_built_directly_checks_what_its_configs_check(kwargs, match):
    from sddkit.errors import ConfigError
    from sddkit.frontends.routers import Router

    with pytest.raises(ConfigError, match=match):
        Router(8, 4, **kwargs)
    Router(8, 4, level="utterance", top_k=4, temperature=0.5)  # the valid edges still build


def test_an_unknown_orthogonality_factor_is_refused_not_a_zero_loss():
    """``on="a"`` (or a config built directly with it, which no recipe check sees) compared no factor: the loss was
    exactly 0 and training ran without it."""
    from sddkit.frontends.molex import MoLExConfig

    layer = _layer(num_experts=2, rank=2)
    with pytest.raises(ValueError, match="orthogonality_on"):
        orthogonality_loss([layer], "a")
    with pytest.raises(ValueError, match="orthogonality_on"):
        MoLExConfig(orthogonality_on="a")  # type: ignore[arg-type]


def test_gate_means_of_a_bfloat16_model_are_averaged_in_float32():
    """The statistics are float32, but the mean over frames was taken in bfloat16 and rounded: ~1e-3 off the mean
    of the gates the model used, in a report that prints six decimals."""
    from sddkit.frontends.molex import RouterOutput, routing_summary

    layer = _layer(num_experts=4, rank=2)
    torch.manual_seed(0)
    gates = torch.softmax(torch.randn(8, 200, 4) * 0.3, -1).to(torch.bfloat16)
    summary = routing_summary([layer], [(layer, RouterOutput(gates=gates, probs=gates))], batch_size=8)
    expected = gates.double().mean(dim=1)  # the exact mean of the gates as used
    assert summary.gate_mean.dtype == torch.float32
    torch.testing.assert_close(summary.gate_mean[:, 0].double(), expected, atol=1e-6, rtol=0)
