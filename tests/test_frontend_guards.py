"""Front-end guards: adapters need layers, added experts start near zero gate, refused calls change nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sddkit.errors import ConfigError
from sddkit.frontends.molex import MoLExLinear
from sddkit.registry import get_registry


@pytest.mark.parametrize("adapter", ["lora", "molex"])
def test_adapter_on_an_encoder_without_layers_is_refused(adapter):
    """``layer: 0`` keeps no transformer layer: an adapter would have nothing to adapt (LoRA trained
    nothing, silently; MoLEx crashed with an IndexError in its first forward)."""
    spec = {"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "layer": 0}, "adapter": adapter}
    with pytest.raises(ConfigError, match="no transformer layer"):
        get_registry("frontend").build(spec)
    # without an adapter, layer 0 stays valid
    get_registry("frontend").build({"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "layer": 0}})


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_added_experts_start_near_zero_gate_at_any_temperature(temperature):
    """``new_expert_bias`` promises a ~0 gate for added experts; the router divides logits by its
    temperature, so an unscaled bias of -6 at temperature 4 acted as -1.5 and moved old outputs."""
    torch.manual_seed(0)
    router = get_registry("router").build(
        {"name": "softmax", "temperature": temperature}, in_features=16, num_experts=2
    )
    layer = MoLExLinear(nn.Linear(16, 8), num_experts=2, rank=2, alpha=2.0, router=router)
    with torch.no_grad():
        layer.lora_B[0].normal_()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        base = nn.functional.linear(x, layer.weight, layer.bias)
        before = layer(x)
        layer.add_experts(2, bias=-6.0)
        after = layer(x)
        new_gates = layer.router(x).gates[..., 2:]
    assert new_gates.max() < 1e-2
    assert (after - before).norm() / (before - base).norm() < 1e-2


@pytest.mark.parametrize("option", [{"normalize": True}, {"spec_augment": True}])
def test_whisper_refuses_options_it_cannot_apply(option):
    """Whisper ignored ``normalize: true`` and ``spec_augment: true`` without a word."""
    with pytest.raises(ConfigError, match="whisper"):
        get_registry("encoder").build({"name": "whisper_tiny", **option})
    get_registry("encoder").build({"name": "whisper_tiny", "normalize": False, "spec_augment": False})


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "2"])
def test_a_refused_add_experts_leaves_the_layer_unchanged(n):
    """MoLExLinear.add_experts froze the old experts and appended a group before the router refused n < 1
    (and a count of 2.5 got as far as freezing the old experts before torch refused it)."""
    router = get_registry("router").build("softmax", in_features=8, num_experts=2)
    layer = MoLExLinear(nn.Linear(8, 6), num_experts=2, rank=2, alpha=2.0, router=router)
    with pytest.raises(ConfigError, match="n >= 1"):
        layer.add_experts(n, bias=-6.0)
    assert layer.expert_groups == (2,) and layer.router.num_experts == 2
    assert all(p.requires_grad for p in layer.parameters() if p is not layer.weight and p is not layer.bias)


@pytest.mark.parametrize("n", [2.5, 0])
def test_a_refused_front_end_add_experts_grows_no_layer(n):
    """SSLFrontend.add_experts asks every layer before growing any: the first layer was grown (and its old experts
    frozen) before a later one refused, leaving a model that matched no config."""
    front = get_registry("frontend").build({"name": "ssl", "encoder": "wav2vec2_tiny", "adapter": "molex"})
    before = {name: tuple(p.shape) for name, p in front.named_parameters()}
    trainable = {name for name, p in front.named_parameters() if p.requires_grad}
    with pytest.raises(ConfigError, match="whole number n >= 1"):
        front.add_experts(n)
    assert {name: tuple(p.shape) for name, p in front.named_parameters()} == before
    assert {name for name, p in front.named_parameters() if p.requires_grad} == trainable
    assert front.molex_config.added_experts == []
    new = front.add_experts(2)  # an integer count still grows, recorded as a plain int
    assert new and front.molex_config.added_experts == [2]
