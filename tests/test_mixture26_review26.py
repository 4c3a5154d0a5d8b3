"""Review 26 of mixtures of whole detectors: the log of a float32 gate's subnormal weights."""

from __future__ import annotations

import torch
from test_mixture_numerics import FixedLogits, PassThrough
from torch import nn

from sddkit.detectors import Detector, DetectorMixture
from sddkit.detectors.mixture import mix_log_probs


class _ConfidentGate(nn.Module):
    """A float32 softmax over learnt logits 95 nats apart: the second weight, e^-95 = 5.5e-42, is subnormal."""

    def __init__(self):
        super().__init__()
        self.num_experts = 2
        self.logits = nn.Parameter(torch.tensor([0.0, -95.0]))

    def forward(self, waveform, embeddings):
        return torch.softmax(self.logits, dim=-1).expand(waveform.shape[0], -1)


def _reference_score(weights: torch.Tensor, logits: list[list[float]]) -> torch.Tensor:
    """The bona fide log-odds of the weighted mean of the experts' probabilities, in float64."""
    log_w = weights.double().log().unsqueeze(-1)  # (B, E, 1)
    log_p = torch.log_softmax(torch.tensor(logits, dtype=torch.float64), dim=-1)  # (E, 2)
    mixed = torch.logsumexp(log_w + log_p, dim=1)
    return mixed[:, 1] - mixed[:, 0]


def test_a_subnormal_gate_weight_counts_at_its_own_size_not_the_clamp():
    # expert 0 (weight ~1) is sure of bona fide, expert 1 (weight 5.5e-42) sure of spoof: the mixture's spoof
    # probability is expert 1's share, e^-95, so its log-odds is 95; the weight's log taken at float32's smallest
    # normal (e^-87.3) gave 87.3
    logits = [[-60.0, 60.0], [60.0, -60.0]]
    experts = [Detector(frontend=PassThrough(), backend=FixedLogits(lo)) for lo in logits]
    mix = DetectorMixture(experts=experts, gate=_ConfidentGate()).eval()
    out = mix(torch.randn(3, 100))
    weights = out.stats["gate_weights"]
    assert 0 < float(weights.detach()[0, 1]) < torch.finfo(torch.float32).tiny  # the case: a subnormal weight
    expected = _reference_score(weights.detach(), logits)
    torch.testing.assert_close(out.score.double(), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.score, torch.full((3,), 95.0), atol=1e-3, rtol=0)
    out.score.sum().backward()  # the clamp still guards the gradient
    assert torch.isfinite(mix.gate.logits.grad).all()


def test_mix_log_probs_matches_float64_for_weights_across_the_subnormal_range():
    # one confident expert per class; the minority weight sweeps from normal down to the smallest subnormal
    log_probs = torch.log_softmax(torch.tensor([[-70.0, 70.0], [70.0, -70.0]]), dim=-1)
    minority = torch.tensor([1e-30, 1e-37, 1e-39, 1e-41, 1e-43, 1e-45])
    weights = torch.stack([1 - minority, minority], dim=-1).requires_grad_(True)
    out = mix_log_probs(log_probs.expand(len(minority), -1, -1), weights)
    reference = torch.logsumexp(weights.detach().double().log().unsqueeze(-1) + log_probs.double(), dim=1)
    torch.testing.assert_close(out.double(), reference, atol=1e-4, rtol=1e-6)
    out.sum().backward()
    assert torch.isfinite(weights.grad).all()
