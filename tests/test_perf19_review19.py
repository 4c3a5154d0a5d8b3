"""AASIST and ResNet score through an inference-only path (sddkit.backends.fastpath): channels-last activations on the
CPU, batch norms folded into the convolutions, in-place activations, AASIST's (1, 3) max-pools as a max over groups of
frames.

Inference: the same logits and embeddings as the plain computation (written out below) up to float rounding.
Training, gradients in eval mode and tracing: exactly the plain computation, so recipes reproduce their weights bit for
bit and exported graphs are unchanged. The speed-ups are a benchmark's matter; these tests pin the path that gives them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from backend_support import with_batch_norm_statistics
from torch import nn

from sddkit.backends.aasist import AASIST, AASISTConfig
from sddkit.backends.fastpath import fold_batch_norm, inference_fast_path, max_pool_over_time
from sddkit.backends.resnet import ResNet, ResNetConfig
from sddkit.backends.ssl_aasist import SSLAASISTConfig, SSLAASISTHead

CL = torch.channels_last


def _aasist(reference_compat: bool = True) -> AASIST:
    torch.manual_seed(0)
    cfg = AASISTConfig(
        first_conv=32,
        filts=(12, (1, 8), (8, 8), (8, 16), (16, 16)),
        gat_dims=(16, 8),
        dropout=0.0,
        reference_compat=reference_compat,
    )
    return with_batch_norm_statistics(AASIST(cfg))


def _aasist_reference(model: AASIST, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AASIST.forward's computation as it was: NCHW throughout, batch norms and max-pools as modules of their own."""
    x = F.conv1d(waveform.unsqueeze(1), model.sinc.filters).unsqueeze(1)
    x = F.selu(model.input_bn(F.max_pool2d(x.abs(), (3, 3))))
    for blk in model.encoder:
        out = x if (blk.first or blk.reference_compat) else F.selu(blk.bn1(x))
        out = blk.conv2(F.selu(blk.bn2(blk.conv1(out))))
        x = F.max_pool2d(out + (x if blk.downsample is None else blk.downsample(x)), (1, 3))
        assert x.is_contiguous()
    e = x.abs()
    hidden = model.graph(e.amax(dim=3).transpose(1, 2), e.amax(dim=2).transpose(1, 2))
    return model.classifier(model.dropout(hidden)), hidden


def _resnet() -> ResNet:
    torch.manual_seed(0)
    return with_batch_norm_statistics(ResNet(24, ResNetConfig(blocks=(1, 2, 1, 1), width=8)))


def _resnet_reference(model: ResNet, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ResNet.forward's computation as it was: NCHW throughout, batch norms as modules of their own."""
    x = model.stem(features.unsqueeze(1))
    for stage in model.stages:
        for blk in stage:
            out = blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x)))))
            x = F.relu(out + blk.shortcut(x))
            assert x.is_contiguous()
    pooled = model.pool(x).flatten(1)
    return model.classifier(model.dropout(pooled)), pooled


# AASIST's shortest input, lengths whose frame counts are not multiples of 3 at several pools, and a longer one
@pytest.mark.parametrize("samples", ["min", 2500, 4444, 9000])
@pytest.mark.parametrize("reference_compat", [True, False])
def test_aasist_inference_matches_the_plain_computation(samples, reference_compat) -> None:
    model = _aasist(reference_compat).eval()
    samples = model.min_samples if samples == "min" else samples
    waveform = 0.1 * torch.randn(3, samples)
    with torch.inference_mode():
        got = model(waveform)
        want_logits, want_hidden = _aasist_reference(model, waveform)
    torch.testing.assert_close(got.logits, want_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.embedding, want_hidden, rtol=1e-5, atol=1e-5)
    assert got.logits.std() > 1e-3  # the logits move with the input


def test_aasist_batch_of_one_and_of_many_agree_in_inference() -> None:
    model = _aasist().eval()
    waveform = 0.1 * torch.randn(4, 5000)
    with torch.no_grad():
        together = model(waveform).logits
        alone = torch.cat([model(waveform[i : i + 1]).logits for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reference_compat", [True, False])
def test_aasist_training_is_exactly_the_plain_computation_forward_and_backward(reference_compat) -> None:
    waveform = 0.1 * torch.randn(4, 5000)
    model, ref_model = _aasist(reference_compat).train(), _aasist(reference_compat).train()
    torch.manual_seed(1)  # the graph's dropouts draw the same masks in both
    got = model(waveform).logits
    torch.manual_seed(1)
    want, _ = _aasist_reference(ref_model, waveform)
    assert torch.equal(got, want)
    (g_got,) = torch.autograd.grad(got.square().sum(), model.encoder[0].conv1.weight)
    (g_want,) = torch.autograd.grad(want.square().sum(), ref_model.encoder[0].conv1.weight)
    assert torch.equal(g_got, g_want)
    for a, b in zip(model.modules(), ref_model.modules(), strict=True):
        if isinstance(a, nn.BatchNorm2d):
            assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)


def test_aasist_eval_with_gradients_is_exactly_the_plain_computation() -> None:
    # an attack or a saliency map differentiates the eval-mode model: the max-pools' gradients are max_pool2d's
    model = _aasist().eval()
    waveform = (0.1 * torch.randn(2, 5000)).requires_grad_()
    got = model(waveform).logits
    want, _ = _aasist_reference(model, waveform)
    assert torch.equal(got, want)
    (g_got,) = torch.autograd.grad(got.sum(), waveform)
    (g_want,) = torch.autograd.grad(want.sum(), waveform)
    assert torch.equal(g_got, g_want)


class _Logits(nn.Module):
    """The back-end's logits alone: what a tracer takes (it refuses the BackendOutput dataclass), as the ONNX export's
    wrapper does."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def _folding_spy(folded: list[nn.Module]):  # type: ignore[no-untyped-def]
    """A stand-in for ``module.conv_bn`` that records the batch norms it folds. (A forward hook on the batch norm
    would itself turn the fast path off: a path that skips a module's call is not taken while the module is hooked.)"""
    from sddkit.backends.fastpath import conv_bn

    def spy(conv, bn, x):  # type: ignore[no-untyped-def]
        folded.append(bn)
        return conv_bn(conv, bn, x)

    return spy


def _record_aasist_path(model: AASIST, waveform: torch.Tensor, run) -> tuple[bool, bool]:
    """(the second block's convolution saw channels-last input, the batch norm after its first one ran)."""
    import sddkit.backends.aasist as aasist_module

    seen: dict[str, bool] = {}
    folded: list[nn.Module] = []
    blk = model.encoder[1]
    conv2 = blk.conv2.forward

    def spy(x: torch.Tensor) -> torch.Tensor:
        # not a forward hook: a hook on conv2, whose output the inference path overwrites, makes it compute plainly
        seen.update(cl=x.is_contiguous(memory_format=CL))
        return conv2(x)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aasist_module, "conv_bn", _folding_spy(folded))
        mp.setattr(blk.conv2, "forward", spy)
        run(model, waveform)
    return seen["cl"], not any(bn is blk.bn2 for bn in folded)


def test_aasist_takes_the_fast_path_in_inference_only() -> None:
    model = _aasist()
    waveform = 0.1 * torch.randn(2, 5000)

    def infer(m, x):
        with torch.inference_mode():
            m(x)

    def traced(m, x):
        with torch.no_grad():
            torch.jit.trace(_Logits(m), x, check_trace=False)

    model.eval()
    assert _record_aasist_path(model, waveform, infer) == (True, False)  # channels-last, bn2 folded
    assert _record_aasist_path(model, waveform, lambda m, x: m(x)) == (False, True)  # eval, gradients recorded
    assert _record_aasist_path(model, waveform, traced) == (False, True)  # exported graphs unchanged
    model.train()
    assert _record_aasist_path(model, waveform, infer) == (False, True)
    assert _record_aasist_path(model, waveform, lambda m, x: m(x)) == (False, True)


def test_a_traced_aasist_gives_the_eager_inference_logits() -> None:
    model = _aasist().eval()
    waveform = 0.1 * torch.randn(2, 5000)
    with torch.no_grad():
        traced = torch.jit.trace(_Logits(model), waveform)
        got = traced(0.5 * waveform)
        want = model(0.5 * waveform).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_ssl_aasist_head_inference_matches_its_plain_computation() -> None:
    # the head's residual blocks are AASIST's: they fold and run in place too (its activations stay NCHW)
    torch.manual_seed(0)
    cfg = SSLAASISTConfig(proj_dim=24, filts=((1, 8), (8, 8), (8, 16), (16, 16)), attention_dim=8, gat_dims=(16, 8))
    model = with_batch_norm_statistics(SSLAASISTHead(32, cfg)).eval()
    frames = torch.randn(3, 50, 32)
    with torch.inference_mode():
        got = model(frames)
    want = model(frames)  # gradients recorded: the plain computation
    assert want.logits.requires_grad
    torch.testing.assert_close(got.logits, want.logits.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.embedding, want.embedding.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 7, 64])
def test_resnet_inference_matches_the_plain_computation(frames) -> None:
    model = _resnet().eval()
    features = torch.randn(3, 24, frames)
    with torch.inference_mode():
        got = model(features)
        want_logits, want_pooled = _resnet_reference(model, features)
    torch.testing.assert_close(got.logits, want_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.embedding, want_pooled, rtol=1e-5, atol=1e-5)
    assert got.embedding.std() > 1e-3


def test_resnet_training_is_exactly_the_plain_computation_forward_and_backward() -> None:
    features = torch.randn(4, 24, 40)
    model, ref_model = _resnet().train(), _resnet().train()
    got = model(features).logits
    want, _ = _resnet_reference(ref_model, features)
    assert torch.equal(got, want)
    (g_got,) = torch.autograd.grad(got.square().sum(), model.stem[0].weight)
    (g_want,) = torch.autograd.grad(want.square().sum(), ref_model.stem[0].weight)
    assert torch.equal(g_got, g_want)
    for a, b in zip(model.modules(), ref_model.modules(), strict=True):
        if isinstance(a, nn.BatchNorm2d):
            assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)


def test_resnet_takes_the_fast_path_in_inference_only() -> None:
    model = _resnet()
    features = torch.randn(2, 24, 30)
    blk = model.stages[1][0]
    seen: list[tuple[bool, bool]] = []
    folded: list[nn.Module] = []
    blk.register_forward_pre_hook(lambda _m, i: seen.append(i[0].is_contiguous(memory_format=CL)))
    import sddkit.backends.resnet as resnet_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(resnet_module, "conv_bn", _folding_spy(folded))
        model.eval()
        with torch.inference_mode():
            model(features)
        assert (seen, sum(bn is blk.bn2 for bn in folded)) == ([True], 1)
        model(features)  # eval with gradients recorded
        model.train()
        model(features)
    assert (seen, sum(bn is blk.bn2 for bn in folded)) == ([True, False, False], 1)


@pytest.mark.parametrize("width", [3, 4, 5, 9, 10, 11])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_max_pool_over_time_is_max_pool2d_bit_for_bit(width, layout) -> None:
    x = torch.randn(2, 5, 3, width)
    x[0, 1, 2, 0] = float("nan")
    x[1, 2, 0, -1] = float("-inf")
    x[1, 3, 1, :2] = float("inf")
    x = x.contiguous(memory_format=layout)
    got = max_pool_over_time(x, 3)
    want = F.max_pool2d(x, (1, 3))
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    if layout is CL:
        assert got.is_contiguous(memory_format=CL)


@pytest.mark.parametrize("bias", [True, False])
def test_fold_batch_norm_computes_the_eval_mode_batch_norm_of_the_convolution(bias) -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 6, (2, 3), padding=(1, 1), bias=bias), with_batch_norm_statistics(nn.BatchNorm2d(6)).eval()
    x = torch.randn(2, 3, 5, 7)
    weight, b = fold_batch_norm(conv, bn)
    with torch.no_grad():
        torch.testing.assert_close(F.conv2d(x, weight, b, padding=(1, 1)), bn(conv(x)), rtol=1e-5, atol=1e-5)
    half_weight, half_bias = fold_batch_norm(conv.half(), bn.half())
    assert half_weight.dtype == half_bias.dtype == torch.float16


def test_the_fast_path_needs_eval_mode_and_no_autograd() -> None:
    module = nn.Linear(2, 2)
    with torch.no_grad():
        assert not inference_fast_path(module.train())
        assert inference_fast_path(module.eval())
    with torch.inference_mode():
        assert inference_fast_path(module)
    assert not inference_fast_path(module)  # gradients recorded


def test_folding_a_norm_without_affine_parameters_or_statistics() -> None:
    from sddkit.backends.fastpath import conv_bn

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 5, 7)
    plain = nn.BatchNorm2d(4, affine=False).eval()
    with torch.no_grad():
        plain.running_mean.uniform_(-0.5, 0.5)
        plain.running_var.uniform_(0.5, 2.0)
        torch.testing.assert_close(conv_bn(conv, plain, x), plain(conv(x)), rtol=1e-5, atol=1e-5)
        # without running statistics an eval-mode norm uses the batch's: applied as it is, not folded
        batch_stats = nn.BatchNorm2d(4, track_running_stats=False).eval()
        torch.testing.assert_close(conv_bn(conv, batch_stats, x), batch_stats(conv(x)))
        with pytest.raises(ValueError, match="running statistics"):
            fold_batch_norm(conv, batch_stats)
