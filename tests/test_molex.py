"""MoLEx: routers, the mixture maths, auxiliary losses, per-call collection, add_experts."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from sddkit.config import from_dict, to_dict
from sddkit.errors import ConfigError
from sddkit.frontends.lora import LoRALinear
from sddkit.frontends.molex import (
    _RECORDS,
    MoLExConfig,
    MoLExLinear,
    collect_routing,
    load_balance_loss,
    pairwise_orthogonality,
)
from sddkit.frontends.ssl import SSLFrontendConfig
from sddkit.registry import get_registry


def router(spec, in_features=8, num_experts=4):
    return get_registry("router").build(spec, in_features=in_features, num_experts=num_experts)


def frontend(encoder="wav2vec2_tiny", **molex):
    spec = {"name": "ssl", "encoder": {"name": encoder, "dropout": 0.0}, "adapter": "molex", "molex": molex}
    return get_registry("frontend").build(spec)


# --- routers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["token", "utterance"])
def test_softmax_router_weights_sum_to_one(level):
    r = router({"name": "softmax", "level": level})
    out = r(torch.randn(2, 5, 8))
    expected_frames = 5 if level == "token" else 1
    assert out.gates.shape == (2, expected_frames, 4)
    torch.testing.assert_close(out.gates.sum(-1), torch.ones(2, expected_frames))
    assert torch.all(out.gates > 0)


def test_utterance_router_uses_the_mean_frame():
    r = router({"name": "softmax", "level": "utterance"})
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(r(x).probs, torch.softmax(r.logits(x.mean(1, keepdim=True)), -1))


@pytest.mark.parametrize("mode", ["weighted", "straight_through"])
def test_topk_routes_to_exactly_k_experts(mode):
    x = torch.randn(2, 6, 8)
    one = router({"name": "topk", "k": 1, "mode": mode})(x)
    assert torch.all((one.gates != 0).sum(-1) == 1)
    torch.testing.assert_close(one.gates.sum(-1), torch.ones(2, 6))
    assert torch.equal(one.gates.argmax(-1), one.probs.argmax(-1))
    r2 = router({"name": "topk", "k": 2, "mode": mode})
    two = r2(x)
    assert torch.all((two.gates != 0).sum(-1) == 2)
    top, _ = two.probs.topk(2, dim=-1)
    torch.testing.assert_close(two.gates.topk(2, dim=-1).values, top / top.sum(-1, keepdim=True))


def test_topk_gradients_weighted_vs_straight_through():
    x = torch.randn(2, 6, 8)
    weighted = router({"name": "topk", "k": 1, "mode": "weighted"})
    st = copy.deepcopy(weighted)
    st.straight_through = True
    probe = torch.randn(2, 6, 4)
    # k = 1, weighted: the gate is the constant one-hot -> the task loss cannot train the router
    assert not weighted(x).gates.requires_grad
    (st(x).gates * probe).sum().backward()
    # straight-through: the dense softmax gradient reaches every expert's row
    assert torch.all(st.weights[0].grad.abs().sum(-1) > 0)


def test_router_config_errors():
    with pytest.raises(ConfigError, match="exceeds"):
        router({"name": "topk", "k": 5})
    with pytest.raises(ConfigError):
        get_registry("router").parse({"name": "softmax", "temperature": 0})
    with pytest.raises(ConfigError):
        get_registry("router").parse({"name": "topk", "mode": "hard"})


# --- the mixture ------------------------------------------------------------------------------


def test_one_expert_molex_equals_lora_with_the_same_factors():
    base = nn.Linear(8, 6)
    lora = LoRALinear(copy.deepcopy(base), rank=3, alpha=6.0)
    molex = MoLExLinear(copy.deepcopy(base), num_experts=1, rank=3, alpha=6.0, router=router("softmax", 8, 1))
    with torch.no_grad():
        lora.lora_B.normal_()
        molex.lora_A[0].copy_(lora.lora_A[None])
        molex.lora_B[0].copy_(lora.lora_B[None])
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(molex(x), lora(x))


def test_mixture_matches_the_per_expert_formula():
    base = nn.Linear(8, 6)
    layer = MoLExLinear(base, num_experts=3, rank=2, alpha=4.0, router=router("softmax", 8, 3))
    with torch.no_grad():
        layer.lora_B[0].normal_()
    x = torch.randn(2, 5, 8)
    g = layer.router(x).gates
    expected = base(x)
    for e in range(3):
        a, b = layer.lora_A[0][e], layer.lora_B[0][e]
        expected = expected + g[..., e : e + 1] * 2.0 * (x @ a.T @ b.T)
    torch.testing.assert_close(layer(x), expected)


def test_load_balance_loss_by_hand():
    # unit 1 -> expert 0 (0.8), unit 2 -> expert 0 (0.6): f = (1, 0), P = (0.7, 0.3): 2 * 0.7 = 1.4
    skewed = torch.tensor([[[0.8, 0.2], [0.6, 0.4]]])
    balanced = torch.tensor([[[0.9, 0.1], [0.1, 0.9]]])  # f = P = (0.5, 0.5): 2 * 0.5 = 1
    torch.testing.assert_close(load_balance_loss(torch.cat([skewed, balanced])), torch.tensor([1.4, 1.0]))


def test_orthogonality_by_hand():
    # A_e: (1, 3). e0 = [1,0,0], e1 = [0,1,0], e2 = [2,0,0]: pairs (0,1) 0, (0,2) 2^2, (1,2) 0
    a = torch.tensor([[[[1.0, 0, 0]], [[0, 1.0, 0]], [[2.0, 0, 0]]]])  # (M=1, E=3, r=1, in=3)
    torch.testing.assert_close(pairwise_orthogonality(a), torch.tensor([4.0]))
    torch.testing.assert_close(pairwise_orthogonality(a[:, :2]), torch.tensor([0.0]))
    # B_e: (out=3, r=1); B_i^T B_j is the dot product of the columns
    torch.testing.assert_close(pairwise_orthogonality(a.transpose(-1, -2), transpose=True), torch.tensor([4.0]))


# --- the front-end ----------------------------------------------------------------------------


def test_frontend_losses_stats_and_no_state_on_self():
    front = frontend(num_experts=3, rank=2, router={"name": "softmax"}).train()
    assert [n for n, p in front.named_parameters() if p.requires_grad] and all(
        ("lora_" in n or ".router." in n) for n, p in front.named_parameters() if p.requires_grad
    )
    attrs_before = {name: dict(vars(m)) for name, m in front.named_modules()}
    x = torch.randn(2, 4000)
    out = front(x)
    assert _RECORDS.get() is None  # the collector is closed
    assert {name: dict(vars(m)) for name, m in front.named_modules()} == attrs_before
    n_layers, frames = 2 * 4, out.features.shape[1]  # targets q, k, v, out in 2 layers
    assert set(out.aux_losses) == {"molex_load_balance", "molex_orthogonality"}
    assert all(v.dim() == 0 and v.requires_grad for v in out.aux_losses.values())
    torch.testing.assert_close(out.aux_losses["molex_load_balance"], 0.01 * out.stats["molex_load_balance"])
    torch.testing.assert_close(out.aux_losses["molex_orthogonality"], 0.01 * out.stats["molex_orthogonality"])
    assert out.stats["molex_gate_mean"].shape == (2, n_layers, 3)  # (utterances, layers, experts)
    torch.testing.assert_close(out.stats["molex_gate_mean"].sum(-1), torch.ones(2, n_layers))
    assert torch.all(out.stats["molex_top1_count"].sum(-1) == frames)
    assert 1.0 <= out.stats["molex_load_balance"] <= 3.0
    # the statistics of one utterance do not depend on the rest of the batch
    alone = front(x[1:])
    torch.testing.assert_close(alone.stats["molex_gate_mean"][0], out.stats["molex_gate_mean"][1])
    # call twice: independent results, nothing accumulated
    again = front(x)
    assert torch.all(again.stats["molex_top1_count"].sum(-1) == frames)
    with pytest.raises(ConfigError, match="cannot be merged"):
        front.merge()


def test_collection_is_per_call_and_per_thread():
    front = frontend(num_experts=2, rank=2).eval()
    with collect_routing() as outer:
        front(torch.randn(1, 4000))
    assert outer == []  # the front-end's own context shadowed the outer one

    def run(batch):
        with torch.no_grad():
            return front(torch.randn(batch, 4000)).stats["molex_top1_count"]

    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(run, [1, 3, 2, 4]))
    assert [c.shape[0] for c in counts] == [1, 3, 2, 4]
    assert all(torch.all(c.sum(-1) == 199) for c in counts)  # each call saw only its own frames


def test_utterance_level_statistics_count_utterances():
    out = frontend(num_experts=2, rank=2, router={"name": "topk", "k": 1, "level": "utterance"}).eval()(
        torch.randn(3, 4000)
    )
    assert out.stats["molex_top1_count"].shape == (3, 8, 2)
    assert torch.all(out.stats["molex_top1_count"].sum(-1) == 1)  # one routing decision per utterance
    assert torch.equal(out.stats["molex_gate_mean"], out.stats["molex_top1_count"].float())  # top-1: one-hot


def test_add_experts_keeps_old_behaviour_and_trains_only_the_new():
    front = frontend("whisper_tiny", num_experts=2, rank=2, load_balance_weight=0.0, orthogonality_weight=0.0)
    front.eval()
    for _, m in front.adapted_modules():  # pretend a first training happened
        with torch.no_grad():
            m.lora_B[0].normal_(std=0.2)
    x = torch.randn(2, 4000)
    with torch.no_grad():
        before = front(x).features
    old = [p for p in front.parameters() if p.requires_grad]
    new = front.add_experts(2)
    assert front.expert_groups == (2, 2) and front.config.molex.added_experts == [2]
    assert new and all(p.requires_grad for p in new) and not any(p.requires_grad for p in old)
    out = front(x)
    assert (out.features - before).abs().max() < 1e-3  # new experts start with ~0 gate and B = 0
    assert out.stats["molex_gate_mean"].shape == (2, 8, 4) and torch.all(out.stats["molex_gate_mean"][..., 2:] < 1e-2)
    (out.features * torch.randn_like(out.features)).sum().backward()
    assert all(p.grad is None for p in old)
    for _, m in front.adapted_modules():
        assert m.lora_B[1].grad.abs().sum() > 0 and m.router.weights[1].grad.abs().sum() > 0

    # the recorded config rebuilds the same structure, and the state dict loads into it
    recipe = {"name": "ssl", "encoder": {"name": "whisper_tiny", "dropout": 0.0}, "adapter": "molex"}
    grown = front.config_after_growth(recipe)
    assert grown["molex"]["added_experts"] == [2] and "molex" not in recipe
    assert to_dict(get_registry("frontend").parse(grown).config)["molex"]["added_experts"] == [2]
    rebuilt = (
        get_registry("frontend").build(get_registry("frontend").parse({"name": "ssl", **to_dict(front.config)})).eval()
    )
    rebuilt.load_state_dict(front.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x).features, front(x).features)
    assert not any(p.requires_grad for m in (rebuilt.adapted_modules()[0][1],) for p in (m.lora_A[0], m.lora_B[0]))


def test_gradient_checkpointing_gives_the_same_losses_and_gradients():
    torch.manual_seed(1)
    plain = frontend("wavlm_tiny", num_experts=2, rank=2, router={"name": "topk", "k": 1, "mode": "straight_through"})
    spec = to_dict(plain.config)
    spec["encoder"]["gradient_checkpointing"] = True
    ckpt = get_registry("frontend").build(get_registry("frontend").parse({"name": "ssl", **spec}))
    ckpt.load_state_dict(plain.state_dict())
    for _, m in plain.adapted_modules():
        with torch.no_grad():
            m.lora_B[0].normal_(std=0.1)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4000)
    grads, calls = [], []
    for front in (plain.train(), ckpt.train()):
        probe = front.adapted_modules()[0][1]
        count = [0]
        hook = probe.register_forward_pre_hook(lambda *_, c=count: c.__setitem__(0, c[0] + 1))
        out = front(x)
        loss = out.features.pow(2).mean() + sum(out.aux_losses.values())
        loss.backward()
        assert torch.all(out.stats["molex_top1_count"].sum(-1) == out.features.shape[1])  # no double records
        grads.append({n: p.grad.clone() for n, p in front.named_parameters() if p.requires_grad})
        hook.remove()
        calls.append(count[0])
    assert calls == [1, 2]  # checkpointing recomputed the layer in backward, outside the collector
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)


def test_molex_config_round_trip():
    cfg = from_dict(SSLFrontendConfig, {"encoder": "hubert_tiny", "adapter": "molex", "molex": {"router": "topk"}})
    assert cfg.molex.router.name == "topk" and cfg.molex.router.config.k == 2
    assert from_dict(SSLFrontendConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError):
        from_dict(MoLExConfig, {"num_experts": 0})


# --- input checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_experts": 3, "rank": 0}, "rank"),
        ({"num_experts": 3, "rank": 2, "alpha": float("inf")}, "alpha"),
        ({"num_experts": 2, "rank": 2}, "router has 3 experts, the layer num_experts=2"),  # router built for 3
        ({"num_experts": 3, "rank": 2, "in_features": 6}, "router reads 8 features, the layer 6"),
    ],
)
def test_molex_linear_rejects_a_bad_shape_or_a_mismatched_router(kwargs, match):
    """Before: a ZeroDivisionError, NaN outputs, or a split error deep in the first forward."""
    kwargs = {"alpha": 2.0, **kwargs}
    in_features = kwargs.pop("in_features", 8)
    with pytest.raises(ValueError, match=match):
        MoLExLinear(nn.Linear(in_features, 5), router=router("softmax", 8, 3), **kwargs)


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"num_experts": 2, "router": {"name": "topk", "k": 3}}, "k=3"),
        ({"new_expert_bias": float("-inf")}, "new_expert_bias"),
        ({"alpha": float("inf")}, "alpha"),
        ({"router": {"name": "softmax", "temperature": float("inf")}}, "temperature"),
    ],
)
def test_molex_config_rejects_what_would_fail_or_stall_later(section, match):
    """k > experts failed only when the model was built; a -inf new-expert bias gives the new
    experts a gate of exactly 0, so they never get a gradient; inf alpha / temperature give NaNs."""
    with pytest.raises(ConfigError, match=match):
        from_dict(MoLExConfig, section)


def test_experts_added_together_start_with_distinct_router_rows():
    # the rows started at zero with one bias: two experts added at once got identical gradients and routed as one
    from sddkit.frontends.routers import NEW_ROW_SCALE, Router

    torch.manual_seed(0)
    router = Router(16, 2)
    router.add_experts(3, bias=-6.0)
    new = router.weights[1]
    assert new.requires_grad and not router.weights[0].requires_grad
    assert all(not torch.equal(new[i], new[j]) for i in range(3) for j in range(i + 1, 3))
    assert new.abs().max() <= NEW_ROW_SCALE / 16**0.5
    x = torch.randn(4, 5, 16)
    gates = router(x).gates
    assert gates[..., 2:].max() < 1e-2  # still ~0 weight at the start
    (gates[..., 2:] * torch.randn_like(gates[..., 2:])).sum().backward()
    g = new.grad
    assert not torch.allclose(g[0], g[1])
