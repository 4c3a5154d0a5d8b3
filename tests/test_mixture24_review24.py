"""Review 24 of detector mixtures: what earlier reviews left open."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sddkit.detectors import Detector, DetectorMixture
from sddkit.detectors.outputs import BackendOutput, FrontendOutput
from sddkit.registry import get_registry


class FixedLogits(nn.Module):
    """A back-end whose logits are fixed (B copies of ``logits``); its embedding is a constant of size ``dim``."""

    def __init__(self, logits: list[float], dim: int = 4):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))
        self.register_buffer("emb", torch.ones(dim))

    def forward(self, x):
        b = x.shape[0]
        return BackendOutput(logits=self.logits.expand(b, -1), embedding=self.emb.expand(b, -1))


class PassThrough(nn.Module):
    output_dim = None

    def forward(self, waveform):
        return FrontendOutput(features=waveform)


GAP = 18.0  # the gate's logit gap: the minority expert's weight is exp(-18) = 1.5e-8, below float16's 3e-8


def _fixed_gate(name: str) -> nn.Module:
    """A gate whose logits are (0, -GAP) whatever the input: its last linear layer weighs nothing but its bias."""
    dims = [4, 4]
    if name == "attention":
        cfg = {"name": name, "d_model": 4, "heads": 1, "layers": 1, "ff_dim": 8, "dropout": 0.0}
    else:
        cfg = {"name": name}
    g = get_registry("gate").build(cfg, num_experts=2, embedding_dims=dims)
    with torch.no_grad():
        for p in g.parameters():
            if p.dim() >= 1 and name == "attention":
                p.zero_()
        if name == "classic":
            g.linear.weight.zero_()
            g.linear.bias.copy_(torch.tensor([0.0, -GAP]))
        elif name == "enhanced_mlp":
            g.mlp[-1].weight.zero_()
            g.mlp[-1].bias.copy_(torch.tensor([0.0, -GAP]))
        else:  # tokens = expert_embedding (projections and residual branches zero); readout reads feature 0
            for layer in g.encoder.layers:
                layer.norm1.weight.fill_(1.0)
                layer.norm2.weight.fill_(1.0)
            g.expert_embedding[:, 0] = torch.tensor([0.0, -GAP])
            g.readout.weight[0, 0] = 1.0
    return g


@pytest.mark.parametrize("name", ["classic", "enhanced_mlp", "attention"])
def test_a_float16_gate_keeps_a_small_weight_and_the_mixtures_log_odds(name):
    # expert 0 is sure of bona fide (log-odds +40), expert 1 of spoof (-40); the gate gives expert 1 a weight of
    # exp(-18): the mixture's p(spoof) is ~1.5e-8, its log-odds ~+18. A float16 softmax rounded that weight to exactly
    # 0, leaving expert 0 alone: log-odds +40, 22 nats off
    experts = [Detector(frontend=PassThrough(), backend=FixedLogits(l)) for l in ([-20.0, 20.0], [20.0, -20.0])]
    mix = DetectorMixture(experts=experts, gate=_fixed_gate(name)).eval()
    x = 0.1 * torch.randn(2, 1600)
    with torch.no_grad():
        ref = mix(x)
        half = mix.to(torch.float16)(x)
    w = 1.0 / (1.0 + math.exp(GAP))
    p_spoof = w * (1 - 1 / (1 + math.exp(40))) + (1 - w) / (1 + math.exp(40))
    expected = math.log1p(-p_spoof) - math.log(p_spoof)
    torch.testing.assert_close(ref.score.double(), torch.full((2,), expected, dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(half.score.double(), torch.full((2,), expected, dtype=torch.float64), atol=0.05, rtol=0)
    assert half.stats["gate_weights"].dtype == torch.float32
    assert half.stats["gate_weights"][:, 1].min() > 0


@pytest.mark.parametrize("name", ["classic", "enhanced_mlp", "attention"])
def test_a_bfloat16_gates_weights_sum_to_one(name):
    # a bfloat16 softmax's rows sum to 1 only within 0.4 %: the mixture's logits were then no log-probabilities
    torch.manual_seed(0)
    dims = [4, 4, 4]
    g = get_registry("gate").build(name, num_experts=3, embedding_dims=dims).eval().to(torch.bfloat16)
    x = torch.randn(64, 1600)
    with torch.no_grad():
        w = g(x, [torch.randn(64, d, dtype=torch.bfloat16) for d in dims])
    assert w.dtype == torch.float32
    torch.testing.assert_close(w.sum(-1), torch.ones(64), atol=1e-6, rtol=0)
