"""Session 26 review of the training strategies: ASAM's bias exclusion by parameter name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sddkit.frontends.routers import Router
from sddkit.training.sam import SAM, SAMConfig


class _Named(nn.Module):
    """Parameters named as sddkit's router (``biases.0``) and a gate transformer (``in_proj_bias``) name theirs."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(3, 4, generator=g))])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(3))])  # zero-initialised, as the router's
        self.in_proj_weight = nn.Parameter(torch.randn(6, 2, generator=g))
        self.in_proj_bias = nn.Parameter(torch.full((6,), 0.5))
        self.lstm_bias = nn.Parameter(torch.full((2,), -2.0))


def test_asam_keeps_sam_scale_for_biases_held_in_lists_and_attention_in_proj():
    model = _Named()
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)
    named = list(model.named_parameters())
    rho, eta = 0.5, 0.01
    perturb, norm = SAM(SAMConfig(rho=rho, adaptive=True, eta=eta))._perturbation(named)
    # by hand (Kwon et al. 2021 and their code): T = |w| + eta for weights, T = 1 for every bias
    scales = {n: (torch.ones_like(p) if "bias" in n else p.detach().abs() + eta) for n, p in named}
    hand_norm = torch.sqrt(sum(((scales[n] * p.grad) ** 2).sum() for n, p in named))
    assert float(norm) == pytest.approx(float(hand_norm), rel=1e-6)
    for (n, p), e in zip(named, perturb):
        torch.testing.assert_close(e, rho * scales[n] ** 2 * p.grad / hand_norm, msg=n)
    # the zero-initialised bias is perturbed as under SAM, not eta**2 (1e-4) times that
    e_bias = dict(zip([n for n, _ in named], perturb))["biases.0"]
    assert float(e_bias.abs().max()) > 1e-2


def test_router_biases_count_as_biases_under_asam():
    router = Router(4, 3)
    named = list(router.named_parameters())
    for p in router.parameters():
        p.grad = torch.ones_like(p)
    perturb, norm = SAM(SAMConfig(rho=1.0, adaptive=True, eta=0.01))._perturbation(named)
    by_name = dict(zip([n for n, _ in named], perturb))
    assert set(by_name) == {"weights.0", "biases.0"}
    # T = 1 on the (zero) biases: each coordinate moves by 1 / norm, not 0.01**2 / norm
    torch.testing.assert_close(by_name["biases.0"], torch.full((3,), 1.0) / norm)
