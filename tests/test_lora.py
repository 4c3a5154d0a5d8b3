"""LoRA: the adapter maths, and per encoder family that it really reaches the model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sddkit.frontends.lora import LoRAConfig, LoRALinear
from sddkit.frontends.ssl import SSLFrontend, num_params
from sddkit.registry import get_registry

ALL_TARGETS = ["q", "k", "v", "out", "ffn_in", "ffn_out"]


def test_lora_linear_maths_merge_and_unmerge():
    base = nn.Linear(6, 5)
    reference = copy.deepcopy(base)
    lora = LoRALinear(base, rank=2, alpha=4.0).eval()  # merged, a training-mode forward with gradients is refused
    assert lora.weight is base.weight and lora.bias is base.bias  # same Parameters, same state-dict keys
    assert lora.scale == 2.0 and torch.all(lora.lora_B == 0)
    assert lora.lora_A.abs().max() <= 1 / 6**0.5  # Kaiming-uniform bound of nn.Linear
    x = torch.randn(3, 4, 6)
    torch.testing.assert_close(lora(x), reference(x))  # B = 0: the base model
    with torch.no_grad():
        lora.lora_B.normal_()
    a, b = lora.lora_A.detach(), lora.lora_B.detach()
    expected = reference(x) + 2.0 * (x @ a.T @ b.T)
    torch.testing.assert_close(lora(x), expected)
    lora.merge()
    assert lora.merged and not torch.allclose(lora.weight, reference.weight)
    torch.testing.assert_close(lora(x), expected, atol=1e-5, rtol=1e-5)
    lora.merge()  # idempotent
    torch.testing.assert_close(lora(x), expected, atol=1e-5, rtol=1e-5)
    lora.unmerge()
    torch.testing.assert_close(lora.weight, reference.weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(lora(x), expected)


def test_lora_dropout_only_in_training():
    base = nn.Linear(8, 8)
    reference = copy.deepcopy(base)
    lora = LoRALinear(base, rank=2, alpha=2.0, dropout=0.5)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(4, 8)
    lora.eval()
    a, b = lora.lora_A.detach(), lora.lora_B.detach()
    # eval: the plain LoRA formula (no dropout mask, no 1 / (1 - p) rescaling)
    torch.testing.assert_close(lora(x), reference(x) + 1.0 * (x @ a.T @ b.T))
    lora.train()
    assert not torch.allclose(lora(x), lora(x))


def test_lora_config_validation():
    from sddkit.config import from_dict
    from sddkit.errors import ConfigError

    assert from_dict(LoRAConfig, {}).targets == ["q", "k", "v", "out"] and LoRAConfig().alpha == 2.0
    for bad in ({"rank": 0}, {"targets": ["q", "query"]}, {"targets": []}, {"dropout": 1.0}):
        with pytest.raises(ConfigError):
            from_dict(LoRAConfig, bad)


def test_ssl_config_records_only_the_chosen_adapter():
    from sddkit.errors import ConfigError

    frontends = get_registry("frontend")
    lora = frontends.parse({"name": "ssl", "encoder": "hubert_tiny", "adapter": "lora", "lora": {"rank": 4}}).to_dict()
    assert lora["lora"]["rank"] == 4 and lora["molex"] is None
    molex = frontends.parse({"name": "ssl", "encoder": "hubert_tiny", "adapter": "molex"}).to_dict()
    assert molex["lora"] is None and molex["molex"]["num_experts"] >= 1
    bare = frontends.parse({"name": "ssl", "encoder": "hubert_tiny"}).to_dict()
    assert bare["lora"] is None and bare["molex"] is None
    # directories written before this change record both sections, the unused one at its defaults: they load
    old = dict(
        lora, molex=frontends.parse({"name": "ssl", "encoder": "hubert_tiny", "adapter": "molex"}).to_dict()["molex"]
    )
    assert frontends.parse(old).to_dict() == lora
    # a tuned section that the adapter would ignore is a mistake in the recipe
    with pytest.raises(ConfigError, match="'molex' section needs adapter: molex"):
        frontends.parse({"name": "ssl", "encoder": "hubert_tiny", "adapter": "lora", "molex": {"num_experts": 8}})
    with pytest.raises(ConfigError, match="'lora' section needs adapter: lora"):
        frontends.parse({"name": "ssl", "encoder": "hubert_tiny", "lora": {"rank": 2}})


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm", "whisper"])
def test_lora_reaches_every_projection(family):
    """B = 0 leaves the encoder as it was; with B != 0 every A and B gets a gradient and moves the output.

    For WavLM this fails if the attention bypasses the projection modules (see encoders.py).
    """
    plain = get_registry("frontend").build({"name": "ssl", "encoder": {"name": f"{family}_tiny", "dropout": 0.0}})
    plain.eval()
    front = SSLFrontend(
        encoder=copy.deepcopy(plain.encoder), adapter="lora", lora=LoRAConfig(rank=2, targets=ALL_TARGETS)
    ).eval()
    assert len(front.adapted_names) == 2 * len(ALL_TARGETS)
    trainable = [n for n, p in front.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert num_params(front, trainable_only=True) == sum(
        m.lora_A.numel() + m.lora_B.numel() for _, m in front.adapted_modules()
    )

    x = torch.randn(2, 4000)
    with torch.no_grad():
        base_out = plain(x).features
        torch.testing.assert_close(front(x).features, base_out, atol=1e-5, rtol=1e-5)
        for _, m in front.adapted_modules():
            m.lora_B.normal_(std=0.1)
    out = front(x).features
    assert (out - base_out).abs().max() > 1e-3
    (out * torch.randn_like(out)).sum().backward()
    for name, m in front.adapted_modules():
        assert m.lora_A.grad is not None and m.lora_A.grad.abs().sum() > 0, name
        assert m.lora_B.grad is not None and m.lora_B.grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in front.named_parameters() if "lora_" not in n)

    weights = {n: m.weight.detach().clone() for n, m in front.adapted_modules()}
    with torch.no_grad():
        unmerged = front(x).features
        front.merge()
        torch.testing.assert_close(front(x).features, unmerged, atol=1e-5, rtol=1e-5)
        front.unmerge()
    for n, m in front.adapted_modules():
        torch.testing.assert_close(m.weight, weights[n], atol=1e-6, rtol=0)


def test_lora_with_full_fine_tuning_trains_the_base_too():
    front = get_registry("frontend").build(
        {"name": "ssl", "encoder": {"name": "hubert_tiny", "freeze": False}, "adapter": "lora"}
    )
    names = {n for n, p in front.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in names) and "encoder.model.encoder.layers.0.attention.q_proj.weight" in names


def test_xlsr_300m_parameter_counts_on_meta():
    """LoRA r=2 on q, k, v, out of XLS-R 300M: 24 layers * 4 * r * (1024 + 1024) = 393,216."""
    frontends = get_registry("frontend")
    with torch.device("meta"):
        frozen = frontends.build({"name": "ssl", "encoder": {"name": "xlsr_300m"}})
        lora = frontends.build(
            {"name": "ssl", "encoder": {"name": "xlsr_300m"}, "adapter": "lora", "lora": {"rank": 2}}
        )
        full = frontends.build({"name": "ssl", "encoder": {"name": "xlsr_300m", "freeze": False}})
    assert num_params(frozen) == 315_438_720 and num_params(frozen, trainable_only=True) == 0
    assert num_params(lora, trainable_only=True) == 24 * 4 * 2 * (1024 + 1024) == 393_216
    assert num_params(lora) - num_params(frozen) == 393_216
    # full fine-tuning: everything but SpecAugment's 1024-dim mask vector (unused without masking)
    assert num_params(full, trainable_only=True) == 315_438_720 - 1024


# --- input checks and merge bookkeeping -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0, "alpha": 2.0}, "rank"),
        ({"rank": -2, "alpha": 2.0}, "rank"),
        ({"rank": 2, "alpha": 0.0}, "alpha"),
        ({"rank": 2, "alpha": float("nan")}, "alpha"),
        ({"rank": 2, "alpha": float("inf")}, "alpha"),
        ({"rank": 2, "alpha": 2.0, "dropout": 1.0}, "dropout"),
    ],
)
def test_lora_linear_rejects_a_bad_shape_with_a_value_error(kwargs, match):
    """Built directly (not from a config), a bad rank or alpha is named, not a ZeroDivisionError or NaNs."""
    with pytest.raises(ValueError, match=match):
        LoRALinear(nn.Linear(4, 4), **kwargs)


def test_lora_config_rejects_an_infinite_alpha():
    """alpha = inf gives scale = inf, and inf * (B = 0) = NaN on every output."""
    from sddkit.config import from_dict
    from sddkit.errors import ConfigError

    with pytest.raises(ConfigError, match="alpha"):
        from_dict(LoRAConfig, {"alpha": float("inf")})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_unmerge_restores_the_weights(dtype):
    """In half precision ``W + BA - BA`` rounds: about 1 weight in 10 came back 1 ulp off (bitwise
    equal now); in float32 the subtraction is kept, exact to rounding."""
    torch.manual_seed(0)
    base = nn.Linear(64, 48).to(dtype)
    w0 = base.weight.detach().clone()
    lora = LoRALinear(base, rank=4, alpha=8.0)
    with torch.no_grad():
        lora.lora_B.normal_(std=0.05)
    for _ in range(3):
        lora.merge()
        lora.merge()  # idempotent
        assert lora.weight.dtype == dtype and not torch.equal(lora.weight, w0)
        lora.unmerge()
        lora.unmerge()
        if dtype == torch.float32:
            torch.testing.assert_close(lora.weight, w0, atol=1e-6, rtol=0)
        else:
            assert torch.equal(lora.weight, w0)


def test_unmerge_keeps_base_training_done_while_merged():
    """Full fine-tuning with LoRA, stepped while merged: unmerge removes B A only, not the update
    (bfloat16: the copy of W that merge keeps is stale then)."""
    base = nn.Linear(8, 8).to(torch.bfloat16)
    lora = LoRALinear(base, rank=2, alpha=2.0)
    with torch.no_grad():
        lora.lora_B.normal_()
    w0 = lora.weight.detach().clone()
    lora.merge()
    with torch.no_grad():
        lora.weight.add_(1.0)  # an optimizer step on the base weight
    lora.unmerge()
    torch.testing.assert_close(lora.weight, w0 + 1.0, atol=1e-2, rtol=0)  # bfloat16 rounding at 1.0


def _lora_pair(seed: int) -> LoRALinear:
    torch.manual_seed(seed)
    lora = LoRALinear(nn.Linear(8, 6), rank=2, alpha=4.0)
    with torch.no_grad():
        lora.lora_B.normal_()
    return lora


def test_state_dict_of_a_merged_lora_holds_the_base_weights():
    """Saved merged, the weight held W + s B A next to A and B: a fresh model added B A twice."""
    src = _lora_pair(0)
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = src(x)
    w0 = src.weight.detach().clone()
    src.merge()
    state = src.state_dict()
    assert src.merged  # saving does not unmerge
    torch.testing.assert_close(state["weight"], w0, atol=1e-6, rtol=0)
    fresh = _lora_pair(1)
    fresh.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), expected)
        torch.testing.assert_close(src(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("with_base", [True, False])
def test_loading_into_a_merged_lora_uses_the_loaded_adapter(with_base):
    """The loaded A, B (and W, if given) replace the merged ones; the layer stays merged.

    Before, the merged layer kept computing with the old B A (or none, if W was loaded) and a
    later unmerge subtracted the new B A from weights that never held it. ``with_base=False`` is
    a trainable-only checkpoint (the frozen base comes from the pretrained files).
    """
    src, dst = _lora_pair(0), _lora_pair(1)
    if not with_base:
        dst.weight, dst.bias = copy.deepcopy(src.weight), copy.deepcopy(src.bias)
    w_base = dst.weight.detach().clone()
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = src(x)
    state = src.state_dict()
    if not with_base:
        state = {k: v for k, v in state.items() if k.startswith("lora_")}
    dst.merge()
    dst.load_state_dict(state, strict=with_base)
    assert dst.merged
    with torch.no_grad():
        torch.testing.assert_close(dst(x), expected, atol=1e-5, rtol=1e-5)
        dst.unmerge()
        torch.testing.assert_close(dst(x), expected)
    torch.testing.assert_close(dst.weight, src.weight if with_base else w_base, atol=1e-6, rtol=0)


def test_merged_frontend_round_trips_through_safetensors(tmp_path):
    """A merged LoRA front-end saved with safetensors and loaded into a fresh (unmerged) build
    gives the same features, and loading it into a merged build keeps that build merged."""
    from safetensors.torch import load_file, save_file

    spec = {"name": "ssl", "encoder": {"name": "hubert_tiny", "dropout": 0.0}, "adapter": "lora"}
    frontends = get_registry("frontend")
    torch.manual_seed(0)
    front = frontends.build({**spec, "lora": {"rank": 2}}).eval()
    for _, m in front.adapted_modules():
        with torch.no_grad():
            m.lora_B.normal_(std=0.1)
    x = torch.randn(2, 4000)
    with torch.no_grad():
        expected = front(x).features
    front.merge()
    save_file({k: v.contiguous() for k, v in front.state_dict().items()}, tmp_path / "w.safetensors")
    state = load_file(tmp_path / "w.safetensors")
    for merged in (False, True):
        torch.manual_seed(1)
        fresh = frontends.build({**spec, "lora": {"rank": 2}}).eval()
        if merged:
            fresh.merge()
        fresh.load_state_dict(state)
        assert all(m.merged == merged for _, m in fresh.adapted_modules())
        with torch.no_grad():
            torch.testing.assert_close(fresh(x).features, expected, atol=1e-5, rtol=1e-5)


def test_a_training_forward_through_a_merged_layer_is_refused():
    """Merged, A and B are not used: a training step through a merged layer (a model from ``load_detector``, which
    merges for scoring) trained nothing in the adapter, without a word. Scoring, no-grad and frozen adapters pass."""
    from sddkit.errors import ConfigError

    layer = LoRALinear(nn.Linear(8, 4), rank=2, alpha=2.0)
    x = torch.randn(3, 8)
    layer.merge()
    layer.train()
    with pytest.raises(ConfigError, match="merged.*train nothing.*unmerge"):
        layer(x).sum().backward()
    with torch.no_grad():
        layer(x)
    layer.eval()
    layer(x)
    layer.train()
    for p in (layer.lora_A, layer.lora_B):
        p.requires_grad_(False)
    layer(x)
    for p in (layer.lora_A, layer.lora_B):
        p.requires_grad_(True)
    layer.unmerge()
    layer(x).sum().backward()
    assert layer.lora_B.grad is not None and layer.lora_B.grad.abs().sum() > 0
