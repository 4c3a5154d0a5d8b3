"""Fifth review of detector mixtures (mixture5): gates over experts of another precision than their own."""

from __future__ import annotations

import pytest
import torch
from test_mixture import gate, toy_detector

from sddkit.detectors import DetectorMixture


@pytest.mark.parametrize("name", ["enhanced_mlp", "attention"])
def test_an_embedding_gate_takes_experts_of_another_precision(name):
    """A bfloat16 expert (a large one halved to save memory) beside a float32 one: the classic gate casts its
    float32 log-Mel statistics to its own dtype, but the embedding gates fed the bfloat16 embedding to their
    float32 projection ("mat1 and mat2 must have the same dtype")."""
    torch.manual_seed(0)
    dims = [6, 10]
    experts = [toy_detector(d) for d in dims]
    g = gate(name, dims)
    mix = DetectorMixture(experts=experts, gate=g).eval()
    x = torch.randn(3, 1600)
    with torch.no_grad():
        experts[0].to(torch.bfloat16)
        out = mix(x)
        halved = [e(x).embedding for e in experts]
    assert halved[0].dtype == torch.bfloat16
    torch.testing.assert_close(out.stats["gate_weights"], g(x, [h.float() for h in halved]))
    torch.testing.assert_close(out.stats["gate_weights"].sum(-1), torch.ones(3))
    assert torch.isfinite(out.score).all() and out.score.dtype == torch.float32
