from __future__ import annotations

import pytest
import torch
from torch import nn

from sddkit.detectors import Detector, DetectorMixture
from sddkit.detectors.outputs import BackendOutput, FrontendOutput
from sddkit.registry import get_registry


class FrameStats(nn.Module):
    """(B, T) -> (B, 8): mean |x| of 8 equal chunks."""

    output_dim = 8

    def forward(self, waveform):
        b, t = waveform.shape
        return FrontendOutput(features=waveform[:, : t - t % 8].reshape(b, 8, -1).abs().mean(-1))


class Head(nn.Module):
    def __init__(self, emb: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, emb), nn.BatchNorm1d(emb), nn.Tanh())
        self.out = nn.Linear(emb, 2)

    def forward(self, x):
        e = self.body(x)
        return BackendOutput(logits=self.out(e), embedding=e)


def toy_detector(emb: int) -> Detector:
    return Detector(frontend=FrameStats(), backend=Head(emb))


def gate(name: str, dims: list[int], **cfg):
    return get_registry("gate").build({"name": name, **cfg}, num_experts=len(dims), embedding_dims=dims)


WAVE = torch.randn(4, 1600)


@pytest.mark.parametrize("name", ["average", "enhanced_mlp", "attention", "classic"])
def test_gate_weights_on_simplex(name):
    dims = [6, 10, 4]
    g = gate(name, dims)
    g.train()
    w = g(WAVE, [torch.randn(4, d) for d in dims])
    assert w.shape == (4, 3)
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(4))


@pytest.mark.parametrize("name", ["average", "enhanced_mlp", "attention"])
def test_mixture_is_weighted_sum_of_expert_probabilities(name):
    experts = [toy_detector(d) for d in (6, 10, 4)]
    mix = DetectorMixture(experts=experts, gate=gate(name, [6, 10, 4]), freeze_experts=True).eval()
    out = mix(WAVE)
    w = out.stats["gate_weights"]
    probs = torch.stack([torch.softmax(e(WAVE).logits, -1) for e in experts], 1)
    expected = (w.unsqueeze(-1) * probs).sum(1)
    torch.testing.assert_close(torch.softmax(out.logits, -1), expected)
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(4))  # logits are log-probabilities
    torch.testing.assert_close(out.score, expected[:, 1].log() - expected[:, 0].log())
    assert out.stats["expert_scores"].shape == (4, 3)
    assert out.embedding.shape == (4, 20)
    if name == "average":
        torch.testing.assert_close(expected, probs.mean(1))


def test_one_expert_mixture_equals_the_expert():
    expert = toy_detector(5).eval()
    mix = DetectorMixture(experts=[expert], gate=gate("enhanced_mlp", [5])).eval()
    torch.testing.assert_close(mix(WAVE).score, expert(WAVE).score, atol=1e-5, rtol=0)


def test_frozen_experts_get_no_gradient_and_stay_in_eval():
    experts = [toy_detector(6), toy_detector(6)]
    mix = DetectorMixture(experts=experts, gate=gate("attention", [6, 6]), freeze_experts=True)
    mix.train()
    assert all(not e.training for e in mix.experts) and mix.gate.training
    bn_before = experts[0].backend.body[1].running_mean.clone()
    out = mix(WAVE)
    nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is None for p in mix.experts.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mix.gate.parameters())
    assert torch.equal(experts[0].backend.body[1].running_mean, bn_before)


def test_fine_tuned_experts_receive_gradient():
    mix = DetectorMixture(
        experts=[toy_detector(6), toy_detector(6)], gate=gate("enhanced_mlp", [6, 6]), freeze_experts=False
    ).train()
    out = mix(WAVE)
    nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is not None for p in mix.experts.parameters())


def test_gate_expert_count_mismatch():
    with pytest.raises(ValueError, match="built for 3 experts"):
        DetectorMixture(experts=[toy_detector(4)], gate=gate("average", [4, 4, 4]))


@pytest.mark.parametrize("name", ["average", "classic", "enhanced_mlp", "attention"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_gate_runs_in_the_mixtures_half_precision(name, dtype):
    # the classic gate's log-Mel statistics are float32 (no half-precision FFT) and crashed its half batch norm
    dims = [6, 10]
    mix = DetectorMixture(experts=[toy_detector(d) for d in dims], gate=gate(name, dims)).eval().to(dtype)
    with torch.no_grad():
        out = mix(torch.randn(3, 16000))
    assert torch.isfinite(out.score).all()
    torch.testing.assert_close(out.stats["gate_weights"].float().sum(-1), torch.ones(3), atol=1e-2, rtol=0)
