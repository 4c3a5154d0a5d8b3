"""Third review of LoRA / MoLEx in the speech encoders: statistics under Whisper's 30 s padding, computed weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from sddkit.frontends.lora import LoRALinear
from sddkit.frontends.molex import MoLExLinear, routing_summary
from sddkit.frontends.routers import RouterOutput, top1_one_hot
from sddkit.registry import get_registry


def test_whisper_padded_to_30s_counts_only_the_input_frames():
    """pad_to_30s runs all 1500 positions and keeps the input's 50: the statistics counted 1500 frames per
    utterance, 97 % of them padding, so the expert use said nothing about the audio."""
    torch.manual_seed(0)
    spec = {
        "name": "ssl",
        "encoder": {"name": "whisper_tiny", "dropout": 0.0, "pad_to_30s": True},
        "adapter": "molex",
        "molex": {"num_experts": 2, "rank": 2},
    }
    front = get_registry("frontend").build(spec).eval()
    with torch.no_grad():
        out = front(torch.randn(2, 16000))
    frames = out.features.shape[1]
    assert frames == 50
    counts = out.stats["molex_top1_count"]
    assert counts.shape == (2, 8, 2) and torch.all(counts.sum(-1) == frames)


def test_routing_summary_keeps_the_first_frames_of_token_level_records():
    layer = MoLExLinear(
        nn.Linear(4, 4),
        num_experts=2,
        rank=1,
        alpha=1.0,
        router=get_registry("router").build("softmax", in_features=4, num_experts=2),
    )
    probs = torch.softmax(torch.randn(1, 5, 2), dim=-1)
    summary = routing_summary([layer], [(layer, RouterOutput(gates=probs, probs=probs))], batch_size=1, frames=3)
    kept = probs[:, :3]
    torch.testing.assert_close(summary.gate_mean[:, 0], kept.mean(dim=1))
    assert torch.equal(summary.top1_count[:, 0], top1_one_hot(kept).sum(dim=1).long())
    expected = 2 * (top1_one_hot(kept).mean(dim=1) * kept.mean(dim=1)).sum()
    torch.testing.assert_close(summary.load_balance, expected)


@pytest.mark.parametrize("norm", ["parametrization", "hook"])
def test_lora_refuses_a_computed_weight(norm):
    """A weight-normed Linear's weight is computed from g and v: LoRA took a frozen snapshot of it, dropped g and v
    (and the state-dict key of the weight), and a merge wrote into a tensor recomputed at the next forward."""
    torch.manual_seed(0)
    if norm == "parametrization":
        base = parametrizations.weight_norm(nn.Linear(8, 4))
    else:
        with pytest.warns(FutureWarning):
            base = nn.utils.weight_norm(nn.Linear(8, 4))
    with pytest.raises(ValueError, match="weight is computed"):
        LoRALinear(base, rank=2, alpha=2.0)


def test_weighted_top1_router_without_load_balancing_is_refused_for_training():
    """A weighted top-1 gate is the constant 1, so only the load-balancing loss trains the router: with its weight
    at 0 the router kept its random initialisation through the whole training, silently. A training recipe refuses
    it; a model configured so still builds (a model directory trained so loads)."""
    from sddkit.config import from_dict
    from sddkit.frontends.molex import MoLExConfig
    from sddkit.frontends.ssl import SSLFrontendConfig
    from sddkit.training.recipe import TrainRecipe

    molex = {"num_experts": 2, "router": {"name": "topk", "k": 1}, "load_balance_weight": 0.0}
    frontend = {"name": "ssl", "encoder": "hubert_tiny", "adapter": "molex", "molex": molex}
    recipe = {"model": {"frontend": frontend, "backend": "linear"}}
    with pytest.raises(ValueError, match="load_balance_weight 0"):
        from_dict(TrainRecipe, recipe)
    assert from_dict(SSLFrontendConfig, {k: v for k, v in frontend.items() if k != "name"}).molex is not None
    for ok in ({"load_balance_weight": 0.01}, {"router": {"name": "topk", "k": 1, "mode": "straight_through"}}):
        assert from_dict(MoLExConfig, {**molex, **ok}).untrainable_router() is None
        fixed = {**frontend, "molex": {**molex, **ok}}
        assert isinstance(from_dict(TrainRecipe, {"model": {"frontend": fixed, "backend": "linear"}}), TrainRecipe)


def test_utterance_routing_over_whisper_30s_padding_is_refused_for_training():
    # the router pooled all 1500 positions of a padded Whisper input (a 4 s window: 87 % padding), so every input
    # routed alike; token-level routing, or no padding, is fine
    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe

    def recipe(level: str, pad: bool) -> dict:
        molex = {"num_experts": 2, "router": {"name": "softmax", "level": level}}
        encoder = {"name": "whisper_tiny", "pad_to_30s": pad}
        frontend = {"name": "ssl", "encoder": encoder, "adapter": "molex", "molex": molex}
        return {"model": {"frontend": frontend, "backend": "linear"}}

    with pytest.raises(ValueError, match="utterance-level MoLEx router on an encoder with pad_to_30s"):
        from_dict(TrainRecipe, recipe("utterance", True))
    for level, pad in (("token", True), ("utterance", False)):
        assert isinstance(from_dict(TrainRecipe, recipe(level, pad)), TrainRecipe)
