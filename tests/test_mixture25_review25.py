"""Review 25 of detector mixtures: a gate weight that is NaN."""

from __future__ import annotations

import torch
from test_mixture_numerics import FixedLogits, PassThrough
from torch import nn

from sddkit.detectors import Detector, DetectorMixture
from sddkit.detectors.mixture import mix_log_probs


class PartlyNaNGate(nn.Module):
    """A gate of one's own whose weight of expert 0 came out NaN (its other weight is 1)."""

    num_experts = 2

    def forward(self, waveform, embeddings):
        return torch.tensor([[float("nan"), 1.0]]).expand(waveform.shape[0], -1)


def test_a_nan_gate_weight_gives_a_nan_score_not_the_other_experts():
    # NaN > 0 is false: the NaN weight was taken for 0, and the mixture scored +6, expert 1's confident view
    log_probs = torch.log_softmax(torch.tensor([[[3.0, -3.0], [-3.0, 3.0]]]), dim=-1)
    assert torch.isnan(mix_log_probs(log_probs, torch.tensor([[float("nan"), 1.0]]))).all()
    experts = [Detector(frontend=PassThrough(), backend=FixedLogits(l)) for l in ([3.0, -3.0], [-3.0, 3.0])]
    out = DetectorMixture(experts=experts, gate=PartlyNaNGate()).eval()(torch.randn(2, 100))
    assert torch.isnan(out.score).all()
    # zero weights still drop their expert exactly, with finite gradients
    weights = torch.tensor([[0.0, 1.0]], requires_grad=True)
    mixed = mix_log_probs(log_probs, weights)
    torch.testing.assert_close(mixed, log_probs[:, 1])
    (mixed[:, 1] - mixed[:, 0]).sum().backward()
    assert torch.isfinite(weights.grad).all()
