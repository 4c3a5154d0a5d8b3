"""Review 9 of MoLEx and the detector mixtures: expert directories at another rate than the gate's 16 kHz, expert
names sdd eval's gate tables cannot show, top-k routers and non-finite biases in add_experts through the Python API,
custom gates off the simplex, a MoLEx layer built directly on a half-precision projection."""

from __future__ import annotations

import copy

import pytest
import torch
from test_gates_review3 import _detector
from test_mixture_journey import _expert
from test_molex import frontend
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)
from torch import nn

from sddkit.config import from_dict
from sddkit.detectors import DetectorMixture
from sddkit.detectors.mixture import MixtureConfig, build_mixture, expert_names, resolved_mixture_config
from sddkit.errors import ConfigError
from sddkit.frontends.molex import MoLExConfig, MoLExLinear
from sddkit.registry import get_registry
from sddkit.training.recipe import TrainRecipe


def test_expert_dirs_recorded_at_another_rate_than_16_khz_are_refused(tmp_path):
    """Experts that agree on 8 kHz passed the same-rate check: the mixture was built, trained on 16 kHz audio (the
    trainer records 16 kHz for it) and its classic gate computed 16 kHz log-Mel statistics, without a word."""
    dirs = [_expert(tmp_path / "a", sample_rate=8000), _expert(tmp_path / "b", sample_rate=8000)]
    cfg = from_dict(MixtureConfig, {"expert_dirs": dirs, "gate": "classic"})
    with pytest.raises(ConfigError, match=r"inference.sample_rate 8000 Hz .* take 16000 Hz audio"):
        build_mixture(cfg)
    with pytest.raises(ConfigError, match="8000 Hz"):
        resolved_mixture_config(cfg)
    ok = [_expert(tmp_path / "c"), _expert(tmp_path / "d")]
    assert len(build_mixture(from_dict(MixtureConfig, {"expert_dirs": ok, "gate": "classic"})).experts) == 2


@pytest.mark.parametrize("reserved", ["n", "source", "attack"])
def test_expert_names_sdd_eval_cannot_show_are_refused_or_numbered(tmp_path, reserved):
    """An expert named like a column of sdd eval's gate tables (the count, a group) was recorded by sdd score and then
    silently numbered expert0.. by sdd eval: given, it is refused when the mixture is resolved (trainer set-up,
    describe); taken from a directory's name, the experts are numbered from the start, as for duplicates."""
    dirs = [_expert(tmp_path / reserved), _expert(tmp_path / "other")]
    named = from_dict(MixtureConfig, {"expert_dirs": dirs, "gate": "average"})
    assert expert_names(named) == ["expert0", "expert1"]
    assert resolved_mixture_config(named)["expert_names"] == ["expert0", "expert1"]
    given = from_dict(MixtureConfig, {"expert_dirs": dirs, "gate": "average", "expert_names": ["good", reserved]})
    with pytest.raises(ConfigError, match=rf"'{reserved}' would merge with a column of sdd eval's gate-weight tables"):
        resolved_mixture_config(given)
    # a recipe naming them is refused when read, before any expert loads
    recipe = {"mixture": {"expert_dirs": dirs, "gate": "classic", "expert_names": ["good", reserved]}}
    with pytest.raises(ConfigError, match=rf"^mixture.expert_names: '{reserved}' would merge"):
        from_dict(TrainRecipe, recipe)
    # a stored config that records such names (written before) still loads: only new names are checked
    stored = {**resolved_mixture_config(named), "expert_names": ["good", reserved]}
    assert len(build_mixture(from_dict(MixtureConfig, stored)).experts) == 2


def test_a_top_k_molex_layer_or_front_end_grown_through_the_api_is_refused_and_left_as_it_was():
    """Training refused growing a top-k MoLEx model (the new experts start below every old one, are never selected
    and never train); MoLExLinear.add_experts, SSLFrontend.add_experts and Router.add_experts called directly grew it
    anyway: new experts with a gate of exactly 0, and the old ones frozen."""
    torch.manual_seed(0)
    front = frontend("wav2vec2_tiny", num_experts=2, rank=2, router={"name": "topk", "k": 1})
    before = {k: v.clone() for k, v in front.state_dict().items()}
    trainable = {k for k, p in front.named_parameters() if p.requires_grad}
    with pytest.raises(ConfigError, match="add_experts needs a softmax router; this one routes top-1"):
        front.add_experts(1)
    assert front.expert_groups == (2,) and front.molex_config.added_experts == []
    assert {k for k, p in front.named_parameters() if p.requires_grad} == trainable
    assert all(torch.equal(v, before[k]) for k, v in front.state_dict().items())
    router = get_registry("router").build({"name": "topk", "k": 2}, in_features=8, num_experts=3)
    layer = MoLExLinear(nn.Linear(8, 6), num_experts=3, rank=2, alpha=4.0, router=copy.deepcopy(router))
    with pytest.raises(ConfigError, match="top-2"):
        layer.add_experts(1, bias=-6.0)
    assert layer.expert_groups == (3,) and layer.router.num_experts == 3 and layer.lora_A[0].requires_grad
    with pytest.raises(ConfigError, match="top-2"):
        router.add_experts(1, -6.0)
    assert router.num_experts == 3
    # a config recording such a growth is refused when read, not deep in building
    spec = {"router": {"name": "topk", "k": 1}, "num_experts": 2, "added_experts": [1]}
    with pytest.raises(ConfigError, match=r"added_experts \[1\] needs a softmax router"):
        from_dict(MoLExConfig, spec)
    # softmax routers still grow
    soft = frontend("wav2vec2_tiny", num_experts=2, rank=2)
    soft.add_experts(1)
    assert soft.expert_groups == (2, 1)


class _ScaledGate(nn.Module):
    """A custom gate: softmax weights times ``scale``, plus ``shift``."""

    def __init__(self, num_experts: int, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.num_experts, self.scale, self.shift = num_experts, scale, shift
        self.linear = nn.Linear(4, num_experts)

    def forward(self, waveform, embeddings):
        return torch.softmax(self.linear(embeddings[0].to(self.linear.weight.dtype)), dim=-1) * self.scale + self.shift


@pytest.mark.parametrize(
    "scale, shift",
    [(2.0, 0.0), (1.0, -0.2)],  # rows summing to 2; negative weights (taken as 0 by mix_log_probs)
)
def test_a_custom_gate_off_the_simplex_is_named(scale, shift):
    """Weights not summing to one gave logits that are no log-probabilities (softmax(logits) no mixture), negative
    ones were silently dropped, and sdd eval refused the recorded gate_weights only after every file was scored."""
    torch.manual_seed(0)
    experts = [_detector(4), _detector(4)]
    mix = DetectorMixture(experts=experts, gate=_ScaledGate(2, scale, shift)).eval()
    with pytest.raises(ValueError, match=r"_ScaledGate returned weights off the simplex .* for 3 of 3 inputs"):
        mix(torch.randn(3, 1600))


def test_a_custom_gate_on_the_simplex_still_mixes_also_in_bfloat16():
    torch.manual_seed(0)
    experts = [_detector(4), _detector(4), _detector(4)]
    mix = DetectorMixture(experts=experts, gate=_ScaledGate(3)).eval()
    out = mix(torch.randn(3, 1600))
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(3))
    half = DetectorMixture(experts=copy.deepcopy(experts), gate=_ScaledGate(3).to(torch.bfloat16)).eval()
    assert torch.isfinite(half(torch.randn(3, 1600)).score).all()
    for name in ("average", "classic", "enhanced_mlp", "attention"):  # the built-in gates are softmaxes
        gate = get_registry("gate").build(name, num_experts=3, embedding_dims=[4, 4, 4])
        DetectorMixture(experts=copy.deepcopy(experts), gate=gate.to(torch.bfloat16)).eval()(torch.randn(3, 1600))


@pytest.mark.parametrize("bias", [float("nan"), float("-inf"), float("inf")])
def test_a_non_finite_bias_for_new_experts_is_refused_by_the_api_as_by_the_config(bias):
    """MoLExConfig refuses a non-finite new_expert_bias; MoLExLinear.add_experts and Router.add_experts took one:
    NaN made every output of the layer NaN, -inf gave the new experts a gate of exactly 0 (they never train)."""
    torch.manual_seed(0)
    router = get_registry("router").build("softmax", in_features=8, num_experts=2)
    layer = MoLExLinear(nn.Linear(8, 6), num_experts=2, rank=2, alpha=4.0, router=copy.deepcopy(router))
    with pytest.raises(ConfigError, match="add_experts needs a finite bias for the new experts"):
        layer.add_experts(1, bias=bias)
    assert layer.expert_groups == (2,) and layer.router.num_experts == 2 and layer.lora_A[0].requires_grad
    assert torch.isfinite(layer(torch.randn(1, 3, 8))).all()
    with pytest.raises(ConfigError, match="finite bias"):
        router.add_experts(1, bias)
    assert router.num_experts == 2
    layer.add_experts(1, bias=-6.0)
    assert layer.expert_groups == (2, 1)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_molex_layer_built_directly_on_a_half_precision_projection_takes_its_router_along(dropout):
    """apply_molex moved each router to its projection's dtype; a MoLExLinear built directly on a bfloat16 Linear
    with a (float32) router failed in its first forward, in the fused matmul or the separate router pass."""
    torch.manual_seed(0)
    router = get_registry("router").build("softmax", in_features=8, num_experts=2)
    base = nn.Linear(8, 6).to(torch.bfloat16)
    layer = MoLExLinear(base, num_experts=2, rank=2, alpha=4.0, router=router, dropout=dropout).train()
    out = layer(torch.randn(1, 3, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert layer.router.weights[0].dtype == torch.bfloat16
