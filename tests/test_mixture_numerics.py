"""Numerics of the mixture and its gates at the edges (confident gates, inputs shorter than one hop)."""

from __future__ import annotations

import torch
from torch import nn

from sddkit.detectors import Detector, DetectorMixture
from sddkit.detectors.mixture import mix_log_probs
from sddkit.detectors.outputs import BackendOutput, FrontendOutput
from sddkit.registry import get_registry


class FixedLogits(nn.Module):
    """A detector part whose logits are fixed (B copies of ``logits``) and whose embedding is them too."""

    output_dim = 2

    def __init__(self, logits: list[float]):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x):
        return BackendOutput(logits=self.logits.expand(x.shape[0], -1), embedding=self.logits.expand(x.shape[0], -1))


class PassThrough(nn.Module):
    output_dim = None

    def forward(self, waveform):
        return FrontendOutput(features=waveform)


class OneHotGate(nn.Module):
    """Puts every weight on one expert, as a confident gate does once its softmax saturates."""

    def __init__(self, num_experts: int, chosen: int):
        super().__init__()
        self.num_experts, self.chosen = num_experts, chosen
        self.logit_gap = nn.Parameter(torch.tensor(200.0))

    def forward(self, waveform, embeddings):
        logits = torch.zeros(waveform.shape[0], self.num_experts)
        logits[:, self.chosen] = 1.0
        return torch.softmax(logits * self.logit_gap, dim=-1)  # the others underflow to exactly 0


def test_mixture_with_one_hot_weights_is_the_chosen_expert_beyond_27_nats():
    # expert 0 is sure it is spoof (log-odds -60), expert 1 sure it is bona fide (+60); the gate picks expert 0
    experts = [Detector(frontend=PassThrough(), backend=FixedLogits(l)) for l in ([30.0, -30.0], [-30.0, 30.0])]
    mix = DetectorMixture(experts=experts, gate=OneHotGate(2, chosen=0)).eval()
    out = mix(torch.randn(3, 100))
    assert torch.equal(out.stats["gate_weights"][:, 1], torch.zeros(3))
    torch.testing.assert_close(out.score, torch.full((3,), -60.0))
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(3))


def test_mix_log_probs_zero_weights_keep_gradients_finite():
    log_probs = torch.log_softmax(torch.tensor([[[40.0, -40.0], [-40.0, 40.0], [0.0, 1.0]]]), dim=-1)
    weights = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    mixed = mix_log_probs(log_probs, weights)
    torch.testing.assert_close(mixed, log_probs[:, 0])
    (mixed[:, 1] - mixed[:, 0]).sum().backward()
    assert torch.isfinite(weights.grad).all()


def test_classic_gate_weights_on_simplex_for_inputs_shorter_than_one_hop():
    gate = get_registry("gate").build({"name": "classic"}, num_experts=3, embedding_dims=[4, 4, 4]).eval()
    for samples in (1, 100, 159):  # one log-Mel frame: its std over time must be 0, not NaN
        w = gate(torch.randn(2, samples), [])
        assert torch.isfinite(w).all(), samples
        torch.testing.assert_close(w.sum(-1), torch.ones(2))
