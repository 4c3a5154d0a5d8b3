"""Review 24 of the back-ends (AASIST, LCNN, ResNet) and their inference fast paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

from sddkit.backends import BACKENDS
from sddkit.backends.fastpath import plain_computation

_TINY_AASIST = {"filts": (9, (1, 4), (4, 4), (4, 6), (6, 6)), "gat_dims": (6, 5), "first_conv": 16}


def _tiny(name: str) -> tuple[nn.Module, torch.Tensor]:
    """A tiny eval-mode back-end with non-trivial batch-norm statistics, and an input for it."""
    torch.manual_seed(0)
    if name == "aasist":
        model, x = BACKENDS.build(BACKENDS.parse({"name": "aasist", **_TINY_AASIST})), torch.randn(2, 2400)
    else:
        model = BACKENDS.build(BACKENDS.parse({"name": "resnet18", "width": 2, "blocks": (1, 1, 1, 1)}), in_dim=9)
        x = torch.randn(2, 9, 7)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval(), x


# sub-modules each fast path computes without calling them: conv1 and bn2 folded, pool a reshape (AASIST); every
# convolution and norm of a block, and the stem (ResNet)
_BYPASSED = {
    "aasist": ["encoder.1.conv1", "encoder.1.bn2", "encoder.1.pool"],
    "resnet18": ["stem.0", "stem.1", "stages.1.0.conv1", "stages.1.0.bn2", "stages.1.0.shortcut.1"],
}


@pytest.mark.parametrize("name,path", [(n, p) for n, paths in _BYPASSED.items() for p in paths])
def test_a_forward_hook_runs_at_inference_too(name: str, path: str) -> None:
    # under no_grad/inference_mode the fast path computed these modules' work without calling them: a feature
    # extractor's hook on them never ran (it ran with gradients on)
    model, x = _tiny(name)
    seen: list[torch.Size] = []
    model.get_submodule(path).register_forward_hook(lambda _m, _args, out: seen.append(out.shape))
    with torch.inference_mode():
        fast = model(x).logits
        with plain_computation():
            plain = model(x).logits
    assert len(seen) == 2
    assert seen[0] == seen[1]
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["aasist", "resnet18"])
def test_a_global_forward_hook_sees_every_module_call_at_inference(name: str) -> None:
    model, x = _tiny(name)
    calls: list[type] = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, _args, _out: calls.append(type(m)))
    try:
        with torch.inference_mode():
            model(x)
        inference = list(calls)
        calls.clear()
        with torch.inference_mode(), plain_computation():
            model(x)
    finally:
        handle.remove()
    assert inference == calls


def test_a_pre_hook_that_recomputes_the_weight_is_honoured_at_inference() -> None:
    # torch's pruning (like the hook-based weight_norm and spectral_norm) recomputes ``weight`` in a forward
    # pre-hook: the folded convolution read the weight of the last plain call, so after a load_state_dict the
    # scores were those of the weights before it
    model, x = _tiny("resnet18")
    conv = model.get_submodule("stages.1.0.conv1")
    prune.l1_unstructured(conv, "weight", amount=0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["stages.1.0.conv1.weight_orig"] *= 3.0
    model.load_state_dict(state)
    with torch.inference_mode():
        fast = model(x).logits
    with torch.inference_mode(), plain_computation():
        plain = model(x).logits
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["aasist", "resnet18"])
def test_without_hooks_the_fast_path_is_still_taken(name: str) -> None:
    # the check must not turn the fast path off for a model nobody hooks (nor for a hook on the back-end itself,
    # which runs whatever path its forward takes)
    from sddkit.backends import fastpath

    model, x = _tiny(name)
    model.register_forward_hook(lambda *_: None)
    taken: list[bool] = []
    original = fastpath.conv_bn

    def spy(conv, bn, inp):  # type: ignore[no-untyped-def]
        taken.append(True)
        return original(conv, bn, inp)

    module = __import__(f"sddkit.backends.{'aasist' if name == 'aasist' else 'resnet'}", fromlist=["conv_bn"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "conv_bn", spy)
        with torch.inference_mode():
            model(x)
    assert taken
