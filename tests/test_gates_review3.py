"""Third review of the detector mixtures and their gates: half-precision mixing, gates on one input, bad gates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sddkit.detectors import Detector, DetectorMixture
from sddkit.detectors.mixture import mix_log_probs
from sddkit.detectors.outputs import BackendOutput, FrontendOutput
from sddkit.registry import get_registry


class FrameStats(nn.Module):
    """(B, T) -> (B, 8): mean |x| of 8 equal chunks."""

    output_dim = 8

    def forward(self, waveform: torch.Tensor) -> FrontendOutput:
        b, t = waveform.shape
        return FrontendOutput(features=waveform[:, : t - t % 8].reshape(b, 8, -1).abs().mean(-1))


class Head(nn.Module):
    def __init__(self, emb: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, emb), nn.Tanh())
        self.out = nn.Linear(emb, 2)

    def forward(self, x: torch.Tensor) -> BackendOutput:
        e = self.body(x)
        return BackendOutput(logits=self.out(e) * 20.0, embedding=e)  # spread-out scores


def _detector(emb: int) -> Detector:
    return Detector(frontend=FrameStats(), backend=Head(emb))


def _gate(name: str, dims: list[int], **cfg) -> nn.Module:
    return get_registry("gate").build({"name": name, **cfg}, num_experts=len(dims), embedding_dims=dims)


@pytest.mark.parametrize("name", ["classic", "enhanced_mlp", "attention"])
def test_a_bfloat16_mixture_scores_in_float32(name):
    # the mixture's log-probabilities and score were rounded to bfloat16 (~3 significant digits): 64 distinct
    # trials gave 6 distinct scores, where a Detector's score is the float32 difference of its logits
    torch.manual_seed(0)
    dims = [6, 10]
    mix = DetectorMixture(experts=[_detector(d) for d in dims], gate=_gate(name, dims)).eval().to(torch.bfloat16)
    x = torch.randn(64, 1600)
    with torch.no_grad():
        out = mix(x)
    assert out.score.dtype == torch.float32
    # the score is the log-odds of the mixture of the experts' probabilities (from their logits, as they are),
    # to float32 precision, not bfloat16's 0.03 at a log-odds of -9
    with torch.no_grad():
        probs = torch.stack([torch.softmax(e(x).logits.double(), -1) for e in mix.experts], 1)
    mixed = (out.stats["gate_weights"].double().unsqueeze(-1) * probs).sum(1)
    torch.testing.assert_close(out.score.double(), mixed[:, 1].log() - mixed[:, 0].log(), atol=1e-4, rtol=1e-5)


def test_a_bfloat16_one_expert_mixture_equals_the_expert():
    torch.manual_seed(0)
    expert = _detector(5)
    mix = DetectorMixture(experts=[expert], gate=_gate("attention", [5])).eval().to(torch.bfloat16)
    x = torch.randn(16, 1600)
    with torch.no_grad():
        ref, out = expert(x), mix(x)
    torch.testing.assert_close(out.score, ref.score, atol=1e-4, rtol=1e-5)


def test_mix_log_probs_keeps_a_float16_weight_below_the_smallest_normal():
    # a float16 weight of 3e-6 (a subnormal) was clamped up to 6.1e-5 before its log: the mixture's
    # log p(bona fide) was -9.70 where it is -12.72
    log_probs = torch.log_softmax(torch.tensor([[[20.0, -20.0], [-20.0, 20.0]]]), dim=-1)
    weights = torch.tensor([[1 - 3e-6, 3e-6]])
    for dtype in (torch.float16, torch.bfloat16):
        w, lp = weights.to(dtype), log_probs.to(dtype)
        expected = torch.log((w.double().unsqueeze(-1) * lp.double().exp()).sum(1))
        mixed = mix_log_probs(lp, w)
        torch.testing.assert_close(mixed.double(), expected, atol=1e-3, rtol=0)
        assert mixed.dtype == torch.float32
        assert expected[0, 1] < -12.0


def test_the_enhanced_gate_trains_on_one_input_as_it_scores_it():
    # one utterance (batch_size 1, an MLDG half) gave the shared norm E rows of that one input, normalised by
    # their own statistics: with two experts every feature was exactly +-1 in training, unlike eval (which
    # uses the running statistics), and its running statistics were updated from that one input's spread
    torch.manual_seed(0)
    dims = [4, 6]
    gate = _gate("enhanced_mlp", dims, dropout=0.0, hidden=8)
    embeddings = [torch.randn(1, d) for d in dims]
    stats = {k: v.clone() for k, v in gate.state_dict().items() if "running" in k}
    w_train = gate.train()(None, embeddings)
    for k, v in stats.items():
        assert torch.equal(gate.state_dict()[k], v), k
    w_eval = gate.eval()(None, embeddings)
    torch.testing.assert_close(w_train, w_eval)
    gate.train()
    gate(None, embeddings)[0, 0].backward()
    assert all(p.grad is not None for p in gate.proj.parameters())


class BadGate(nn.Module):
    """A custom gate that forgets its batch dimension: (E,) weights."""

    num_experts = 2

    def forward(self, waveform: torch.Tensor, embeddings: list[torch.Tensor]) -> torch.Tensor:
        return torch.tensor([0.5, 0.5])


def test_a_gate_returning_weights_of_the_wrong_shape_is_named():
    # (E,) weights broadcast against (B, E, 2) without a word
    mix = DetectorMixture(experts=[_detector(4), _detector(4)], gate=BadGate()).eval()
    with pytest.raises(ValueError, match=r"BadGate returned weights of shape \(2,\), expected .* \(2, 2\)"):
        mix(torch.randn(2, 1600))
