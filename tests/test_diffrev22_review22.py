"""Review diffrev22 of the last sessions' changes: the inference fast paths against the plain computation over a grid
of configurations, a batch norm in training mode inside an eval-mode model (test-time adaptation of its statistics),
bench_fast_path.py's counts, and universal_line_ends' docstring."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from backend_support import with_batch_norm_statistics
from script_support import load_script
from torch import nn

from sddkit.backends.aasist import AASIST, AASISTConfig
from sddkit.backends.fastpath import plain_computation
from sddkit.backends.lcnn import LCNN, LCNNConfig
from sddkit.backends.resnet import ResNet, ResNetConfig
from sddkit.data.text import universal_line_ends


def _aasist(reference_compat: bool) -> AASIST:
    cfg = AASISTConfig(
        first_conv=31,  # made odd: 31 taps
        filts=(12, (1, 6), (6, 6), (6, 10), (10, 10)),
        gat_dims=(8, 6),
        dropout=0.0,
        reference_compat=reference_compat,
    )
    return AASIST(cfg)


def _model(name: str) -> tuple[nn.Module, list[int]]:
    """A small seeded back-end with batch-norm statistics of its own, and the input lengths to try: the shortest it
    takes and odd ones."""
    torch.manual_seed(0)
    if name == "resnet":
        model, lengths = ResNet(23, ResNetConfig(blocks=(1, 2, 1, 1), width=5)), [1, 2, 7]
    elif name == "lcnn":
        model, lengths = LCNN(33, LCNNConfig(channels=4, lstm_layers=1, dropout=0.0)), [16, 19]
    else:
        model = _aasist(reference_compat=name == "aasist_reference")
        lengths = [model.min_samples, model.min_samples + 100]
    return with_batch_norm_statistics(model), lengths


def _input(model: nn.Module, batch: int, length: int, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(model, AASIST):
        return 0.1 * torch.randn(batch, length, dtype=dtype)
    return torch.randn(batch, model.in_dim, length, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["resnet", "lcnn", "aasist", "aasist_reference"])
def test_fast_path_equals_the_plain_computation_over_a_grid(name, dtype) -> None:
    model, lengths = _model(name)
    model = model.to(dtype).eval()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for batch in (1, 3):
        for length in lengths:
            x = _input(model, batch, length, dtype)
            with torch.inference_mode():
                fast = model(x)
                with plain_computation():
                    plain = model(x)
            assert fast.logits.dtype == dtype
            torch.testing.assert_close(fast.logits, plain.logits, rtol=tol, atol=tol)
            torch.testing.assert_close(fast.embedding, plain.embedding, rtol=tol, atol=tol)


def _adapting(model: nn.Module) -> nn.Module:
    """``model`` in eval mode but for its batch norms: the usual test-time adaptation of their statistics."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    return model


@pytest.mark.parametrize("name", ["resnet", "aasist"])
def test_batch_norms_in_training_mode_in_an_eval_model_normalise_by_the_batch(name) -> None:
    # eval mode and no autograd took the fast path, which folded the running statistics into the convolutions:
    # other logits than the plain computation (by the batch's statistics), and the statistics never updated
    model, lengths = _model(name)
    fast, plain = _adapting(model), _adapting(copy.deepcopy(model))
    x = _input(model, 4, lengths[-1], torch.float32)
    with torch.no_grad():
        got = fast(x).logits
        with plain_computation():
            want = plain(x).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast.modules(), plain.modules(), strict=True):
        if isinstance(a, nn.BatchNorm2d):
            torch.testing.assert_close(a.running_mean, b.running_mean)
            torch.testing.assert_close(a.running_var, b.running_var)
            assert int(a.num_batches_tracked) == 1


@pytest.mark.parametrize(
    ("option", "value"), [("--repeats", "0"), ("--batch", "0"), ("--samples", "-1"), ("--threads", "0")]
)
def test_bench_fast_path_refuses_counts_below_one(monkeypatch, capsys, option, value) -> None:
    # --repeats 0 ran the warm-up, timed nothing and ended in "NameError: name 'a' is not defined"
    script = load_script("benchmarks/bench_fast_path.py")
    monkeypatch.setattr(sys, "argv", ["bench_fast_path.py", "--random", "lcnn_logmel", option, value])
    with pytest.raises(SystemExit) as exc:
        script.main()
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert f"{option} must be positive" in captured.err
    assert captured.out == ""  # no table header before the usage error


def test_universal_line_ends_docstring_names_the_escapes() -> None:
    # written "\r\n" in a plain string: help() printed a carriage return and a line break in their place
    doc = universal_line_ends.__doc__
    assert "\r" not in doc
    assert r"``\r\n``" in doc and r"``\n``" in doc
