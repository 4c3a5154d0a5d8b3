"""Review of the inference fast paths (sddkit.backends.fastpath): where they must stay off (torch.export under no_grad,
torch.compile, a mixture's frozen experts in a training step), float64 models, and plain_computation blocks that end
in any order."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from backend_support import with_batch_norm_statistics
from torch import nn

from sddkit.backends.fastpath import conv_bn, fold_batch_norm, inference_fast_path, plain_computation
from sddkit.backends.resnet import ResNet, ResNetConfig
from sddkit.detectors import Detector, DetectorMixture
from sddkit.detectors.outputs import FrontendOutput
from sddkit.registry import get_registry

BINS = 16


def _resnet() -> ResNet:
    torch.manual_seed(0)
    return with_batch_norm_statistics(ResNet(BINS, ResNetConfig(blocks=(1, 1, 1, 1), width=4)))


class _Logits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


class _Frames(nn.Module):
    """(B, T) -> (B, 16, T // 16): the waveform cut into frames, as spectral features for a ResNet expert."""

    output_dim = BINS
    feature_layout = "spectral"

    def forward(self, waveform: torch.Tensor) -> FrontendOutput:
        b, t = waveform.shape
        return FrontendOutput(features=waveform[:, : t - t % BINS].reshape(b, -1, BINS).transpose(1, 2))


def _has_batch_norm(graph: torch.fx.Graph) -> bool:
    return any("batch_norm" in str(node.target) for node in graph.nodes)


def test_torch_export_under_no_grad_exports_the_plain_computation() -> None:
    # eval mode and no autograd looked like inference: the folded convolutions went into the exported graph
    model = _Logits(_resnet()).eval()
    x = torch.randn(2, BINS, 20)
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        assert _has_batch_norm(program.graph)
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-6)


def test_torch_compile_traces_the_plain_computation() -> None:
    graphs = []

    def backend(gm: torch.fx.GraphModule, _inputs):
        graphs.append(gm.graph)
        return gm.forward

    model = _Logits(_resnet()).eval()
    x = torch.randn(2, BINS, 20)
    torch._dynamo.reset()
    try:
        with torch.no_grad():
            got = torch.compile(model, backend=backend, fullgraph=True)(x)
    finally:
        torch._dynamo.reset()
    assert graphs and all(_has_batch_norm(g) for g in graphs)
    with torch.no_grad(), plain_computation():
        torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-6)


def test_folding_keeps_a_float64_models_precision() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1).double()
    bn = with_batch_norm_statistics(nn.BatchNorm2d(8).double()).eval()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    weight, bias = fold_batch_norm(conv, bn)
    assert weight.dtype == bias.dtype == torch.float64
    with torch.no_grad():
        # folded in float32 the difference was 2e-7, float32's rounding
        torch.testing.assert_close(conv_bn(conv, bn, x), bn(conv(x)), rtol=1e-12, atol=1e-12)


def test_folding_a_float32_model_is_unchanged() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    bn = with_batch_norm_statistics(nn.BatchNorm2d(5)).eval()
    weight, bias = fold_batch_norm(conv, bn)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert weight.dtype == bias.dtype == torch.float32
    torch.testing.assert_close(weight, conv.weight * scale.reshape(-1, 1, 1, 1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(bias, (conv.bias - bn.running_mean) * scale + bn.bias, rtol=1e-6, atol=1e-7)


def test_plain_computation_blocks_ending_out_of_order() -> None:
    # two threads' blocks: entered A, B, ended A, B; a saved-and-restored flag left B's block unprotected, then
    # stayed on for good after B's end
    module = nn.Identity().eval()
    a, b = plain_computation(), plain_computation()
    with torch.no_grad():
        a.__enter__()
        b.__enter__()
        a.__exit__(None, None, None)
        assert not inference_fast_path(module)  # B's block is still open
        b.__exit__(None, None, None)
        assert inference_fast_path(module)
        with plain_computation(), plain_computation():
            assert not inference_fast_path(module)
        assert inference_fast_path(module)


def _mixture() -> tuple[DetectorMixture, Detector]:
    expert = Detector(frontend=_Frames(), backend=_resnet())
    gate = get_registry("gate").build({"name": "classic"}, num_experts=1, embedding_dims=[expert.backend.embedding_dim])
    return DetectorMixture(experts=[expert], gate=gate, freeze_experts=True), expert


def test_a_training_mixtures_frozen_expert_computes_plainly() -> None:
    # the frozen expert is in eval mode without autograd in a training step: its fast path changed what the gate
    # trains on in the last bits, so a gate's recipe no longer reproduced its weights
    mix, expert = _mixture()
    waveform = torch.randn(3, 40 * BINS)
    mix.train()
    assert not expert.training
    scores = mix(waveform).stats["expert_scores"][:, 0]
    with torch.no_grad(), plain_computation():
        plain = expert(waveform).score
    with torch.no_grad():
        fast = expert(waveform).score
    assert not torch.equal(plain, fast)  # otherwise this test would tell nothing
    assert torch.equal(scores.detach(), plain)


def test_a_mixture_at_inference_keeps_its_experts_fast_path() -> None:
    mix, expert = _mixture()
    waveform = torch.randn(3, 40 * BINS)
    with torch.inference_mode():
        scores = mix.eval()(waveform).stats["expert_scores"][:, 0]
        assert torch.equal(scores, expert(waveform).score)
        with plain_computation():
            plain = expert(waveform).score
    torch.testing.assert_close(scores, plain, rtol=1e-5, atol=1e-5)


def test_max_pool_over_time_propagates_nan_and_inf_as_max_pool2d() -> None:
    from sddkit.backends.fastpath import max_pool_over_time

    x = torch.randn(2, 4, 3, 11)
    x[0, 1, 2, 4] = float("nan")
    x[1, 0, 0, 0] = float("inf")
    x[1, 2, 1, 7] = -float("inf")
    x[0, 0, 0, 10] = float("nan")  # in the frames the pool drops (11 = 3 * 3 + 2)
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout)
        torch.testing.assert_close(max_pool_over_time(xl, 3), F.max_pool2d(xl, (1, 3)), rtol=0, atol=0, equal_nan=True)
