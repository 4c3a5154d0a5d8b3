"""The LCNN runs its convolutions channels-last (NHWC) for inference (eval mode, no autograd, not tracing:
sddkit.backends.fastpath.inference_fast_path) and NCHW otherwise.

Inference: the same logits as the NCHW computation up to float rounding (about twice as fast on the CPU, a benchmark's
matter). Training: exactly the NCHW computation, forward and gradients, so a recipe's run reproduces the weights it
trained before the inference layout changed.
"""

from __future__ import annotations

import pytest
import torch
from backend_support import with_batch_norm_statistics

from sddkit.backends.fastpath import plain_computation
from sddkit.backends.lcnn import LCNN, LCNNConfig


def _nchw_reference(model: LCNN, features: torch.Tensor) -> torch.Tensor:
    """LCNN.forward's computation with plain contiguous NCHW activations throughout: (B, F, T) -> logits (B, 2)."""
    x = model.convs(features.transpose(1, 2).unsqueeze(1).contiguous())
    assert x.is_contiguous()
    frames = x.permute(0, 2, 1, 3).flatten(2)
    pooled = (model.lstm(frames) + frames).mean(dim=1) if len(model.lstm) else frames.mean(dim=1)
    return model.classifier(pooled)


class _Logits(torch.nn.Module):
    def __init__(self, model: LCNN):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features).logits


def _model(lstm_layers: int = 2, dropout: float = 0.0) -> LCNN:
    torch.manual_seed(0)
    model = LCNN(48, LCNNConfig(channels=8, lstm_layers=lstm_layers, dropout=dropout))
    return with_batch_norm_statistics(model)  # the LCNN's norms are not affine: statistics only


@pytest.mark.parametrize("lstm_layers", [0, 2])
@pytest.mark.parametrize("frames", [16, 37, 200])
def test_inference_matches_the_nchw_computation(lstm_layers, frames) -> None:
    model = _model(lstm_layers).eval()
    features = torch.randn(3, 48, frames)
    with torch.inference_mode():
        got = model(features).logits
        want = _nchw_reference(model, features)
    assert got.shape == want.shape == (3, 2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # not an identity of zeros: the logits move with the input
    assert got.std() > 1e-3


def test_inference_layout_leaves_a_batch_of_one_and_a_batch_of_many_consistent() -> None:
    model = _model().eval()
    features = torch.randn(4, 48, 64)
    with torch.no_grad():
        together = model(features).logits
        alone = torch.cat([model(features[i : i + 1]).logits for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_training_is_exactly_the_nchw_computation_forward_and_backward() -> None:
    model = _model(dropout=0.0).train()
    features = torch.randn(4, 48, 80)
    got = model(features).logits
    (g_got,) = torch.autograd.grad(got.square().sum(), model.convs[0].weight)
    ref_model = _model(dropout=0.0).train()  # same seed: same weights, fresh batch-norm statistics
    want = _nchw_reference(ref_model, features)
    (g_want,) = torch.autograd.grad(want.square().sum(), ref_model.convs[0].weight)
    assert torch.equal(got, want)
    assert torch.equal(g_got, g_want)
    # the batch norms' running statistics moved identically
    for a, b in zip(model.modules(), ref_model.modules(), strict=True):
        if isinstance(a, torch.nn.BatchNorm2d):
            assert torch.equal(a.running_mean, b.running_mean)
            assert torch.equal(a.running_var, b.running_var)


def test_the_convolutions_see_channels_last_activations_at_inference_only() -> None:
    # the speed-up itself is measured in docs/benchmarks.md; this pins the layout that gives it. The second
    # convolution's input is looked at: a (B, 1, T, F) tensor can be both layouts at once
    model = _model()
    seen: list[bool] = []
    hook = model.convs[3].register_forward_hook(
        lambda _m, inputs, _out: seen.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
    )
    features = torch.randn(2, 48, 40)
    model.eval()
    with torch.no_grad():
        model(features)
    with torch.inference_mode():
        model(features)
    with plain_computation(), torch.inference_mode():  # switched off by hand (benchmarks)
        model(features)
    model(features)  # eval mode with autograd (an attack, a saliency map): the plain computation
    with torch.no_grad():  # an export's trace, without autograd: the plain graph
        torch.jit.trace(_Logits(model), features, check_trace=False)
    model.train()
    model(features)
    hook.remove()
    assert seen == [True, True, False, False, False, False]
