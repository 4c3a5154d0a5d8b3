"""Inference-only computations of the convolutional back-ends (LCNN, AASIST, ResNet): the same values as their plain
forward up to float rounding, with less work on the CPU.

Taken only where :func:`inference_fast_path` allows it: eval mode and no autograd (scoring runs under
``torch.inference_mode``). Training, gradients in eval mode (attacks, saliency maps), TorchScript tracing, ONNX export
(both exporters) and anything dynamo traces (``torch.export``; ``torch.compile``, whose graph is then left to the
compiler's own passes) run the plain computation, so a recipe reproduces its trained weights bit for bit and exported
graphs do not change. A mixture's frozen experts, in eval mode without autograd inside a training step, are run
under :func:`plain_computation` by the mixture for the same reason. A path that computes some sub-modules' work without
calling them (a batch norm folded into its convolution), or overwrites their outputs in place, is not taken while one
of those has a forward hook or pre-hook (or a global one is registered): the hook would silently not run, or keep a
tensor changed after it ran. The speed-ups are measured in docs/benchmarks.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

# how many plain_computation blocks are open: a count, not a saved-and-restored flag, as blocks of several threads
# end in any order (a restored flag could be left on, or be turned off under a block still open)
_DISABLED = 0
_DISABLED_LOCK = threading.Lock()


@contextmanager
def plain_computation() -> Iterator[None]:
    """Within it every back-end runs its plain computation, at inference too: for benchmarks
    (benchmarks/bench_fast_path.py), for checking a difference against the fast path, and for a mixture's frozen
    experts in a training step. Process-wide, not per thread: while any block is open, every thread computes
    plainly."""
    global _DISABLED
    with _DISABLED_LOCK:
        _DISABLED += 1
    try:
        yield
    finally:
        with _DISABLED_LOCK:
            _DISABLED -= 1


def inference_fast_path(module: nn.Module, bypassed: Iterable[nn.Module] = ()) -> bool:
    """Whether ``module`` may take its inference-only path (see the module docstring).

    ``bypassed``: the sub-modules that path computes without calling them, or whose outputs it overwrites in place
    (an in-place activation or sum: a hook that keeps the output would hold the overwritten tensor). A forward hook or
    pre-hook on one of them (or below it), or a global one, would not run there: a feature extractor's hook on a batch
    norm saw nothing, and
    torch's hook-based ``weight_norm``, ``spectral_norm`` and pruning recompute a convolution's ``weight`` in a
    pre-hook, so the fold read the weight of the last plain call (after a load_state_dict, not the loaded one).
    """
    return not (
        _DISABLED
        or module.training
        or torch.is_grad_enabled()
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        # torch.export (under no_grad it saw eval mode and no autograd, and put the fast path in its graph) and
        # torch.compile: is_in_onnx_export says nothing of them
        or torch.compiler.is_compiling()
        or _has_forward_hooks(bypassed)
    )


def _has_forward_hooks(modules: Iterable[nn.Module]) -> bool:
    """Whether any of ``modules`` or their sub-modules has a forward hook or pre-hook, or a global one exists (when
    ``modules`` is not empty: a global hook runs at every module call, the bypassed ones included)."""
    modules = list(modules)
    if not modules:
        return False
    if any(_global_forward_hooks()):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for top in modules for m in top.modules())


def _global_forward_hooks() -> tuple[dict, ...]:
    """torch's registries of global forward hooks (``nn.modules.module.register_module_forward_hook``): private
    names, read defensively."""
    registry = torch.nn.modules.module
    return tuple(getattr(registry, name, {}) for name in ("_global_forward_hooks", "_global_forward_pre_hooks"))


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(weight, bias) of one convolution computing the eval-mode ``bn(conv(x))``: a pass over the convolution's
    output saved. Folded in float32 at least (a half-precision model's weights are rounded once, after the product;
    a float64 model's stay float64). ``bn``
    must hold running statistics (an eval-mode norm without them normalises by the batch: nothing to fold)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batch_norm needs a batch norm with running statistics (track_running_stats=True)")
    dtype = torch.promote_types(conv.weight.dtype, torch.float32)  # float32 would round a float64 model's weights
    scale = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    if bn.weight is not None:  # affine=False: scale 1, shift 0
        scale = scale * bn.weight.to(dtype)
    mean = bn.running_mean.to(dtype)
    shift = -mean if conv.bias is None else conv.bias.to(dtype) - mean
    bias = shift * scale if bn.bias is None else shift * scale + bn.bias.to(dtype)
    weight = conv.weight.to(dtype) * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    return weight.to(conv.weight.dtype), bias.to(conv.weight.dtype)


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """Eval-mode ``bn(conv(x))`` as one convolution (``conv`` with zero padding, as every caller builds it); a norm
    without running statistics, or in training mode itself, is applied as it is."""
    # a norm put back in training mode inside an eval-mode model (test-time adaptation of the statistics under
    # no_grad) normalises by the batch and updates its statistics: folding its running ones did neither
    if bn.training or bn.running_mean is None or bn.running_var is None:
        return bn(conv(x))
    weight, bias = fold_batch_norm(conv, bn)
    return torch.nn.functional.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def channels_last_on_cpu(x: Tensor) -> Tensor:
    """``x`` (B, C, H, W) with channels-last (NHWC) strides on the CPU, where oneDNN's convolutions run about twice
    as fast in that layout and keep it for their outputs; other devices keep their layout (not measured there).

    A one-channel tensor counts as both layouts for PyTorch (``contiguous(memory_format=...)`` returns it as it is)
    and the convolutions then choose NCHW, so it is copied into explicitly channels-last strides.
    """
    if x.device.type != "cpu":
        return x
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


def max_pool_over_time(x: Tensor, k: int) -> Tensor:
    """``F.max_pool2d(x, (1, k))``'s values, bit for bit, as a max over groups of k frames of the channels-last view
    (channels-last in, channels-last out). PyTorch's max-pool kernels were the slowest part of AASIST's inference
    (measured on (8, 32, 23, 21490): NCHW 950 ms, channels-last 330 ms, this 120 ms)."""
    w = x.shape[3] // k * k
    return x.permute(0, 2, 3, 1)[:, :, :w].unflatten(2, (w // k, k)).amax(3).permute(0, 3, 1, 2)
