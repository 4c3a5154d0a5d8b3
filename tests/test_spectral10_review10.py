"""Tenth review of the spectral features and front-ends (see the patch report for what each test guards)."""

from __future__ import annotations

import pytest
import torch

from sddkit.features import LFCC, LinearSpectrogram, LogMel
from sddkit.frontends.spectral import level_normalize
from sddkit.registry import get_registry


@pytest.mark.parametrize("module_cls", [LogMel, LFCC, LinearSpectrogram])
@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.complex64, torch.bool])
def test_features_refuse_samples_that_are_not_floats(module_cls: type, dtype: torch.dtype) -> None:
    # int16 PCM was cast to float as it stood: features 90 dB above those of the same audio in [-1, 1], no warning
    x = (torch.randn(2, 4000) * 3000).to(dtype)
    with pytest.raises(ValueError, match=str(dtype).replace("torch.", "")):
        module_cls()(x)


def test_the_error_for_integer_pcm_says_how_to_scale_it() -> None:
    with pytest.raises(ValueError, match="divide 16-bit PCM by 32768"):
        LogMel()(torch.zeros(1, 4000, dtype=torch.int16))


@pytest.mark.parametrize("name", ["logmel", "lfcc", "logspec"])
def test_level_normalisation_refuses_integer_pcm_instead_of_zeroing_it(name: str) -> None:
    # level_normalize cast its float64 result back to int16: every sample of a -27 dBFS signal became 0
    x = (torch.randn(1, 4000) * 3000).to(torch.int16)
    with pytest.raises(ValueError, match="int16"):
        level_normalize(x, -27.0)
    frontend = get_registry("frontend").build({"name": name, "level_db": -27.0})
    with pytest.raises(ValueError, match="int16"):
        frontend(x)


def test_float_inputs_of_every_precision_are_still_taken() -> None:
    x = torch.randn(1, 4000) * 0.1
    ref = LogMel()(x)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        out = LogMel()(x.to(dtype))
        assert torch.isfinite(out).all()
        assert out.shape == ref.shape
    assert torch.equal(level_normalize(x, -27.0), level_normalize(x.clone(), -27.0))


@pytest.mark.parametrize("normalize", [False, True])
def test_the_raw_frontend_refuses_integer_pcm(normalize: bool) -> None:
    # unnormalised it handed int16 samples on as they stood; normalised it cast the standardised float64 result back
    # to int16, which truncated every sample with |z| < 1 (about two thirds of them) to 0 and the rest to +-1, +-2, ...
    frontend = get_registry("frontend").build({"name": "raw", "normalize": normalize})
    x = (torch.randn(2, 4000) * 3000).to(torch.int16)
    with pytest.raises(ValueError, match="int16"):
        frontend(x)
    out = frontend(x.float() / 32768).features
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("module_cls", [LogMel, LFCC, LinearSpectrogram])
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_constants_stay_float32_when_a_float64_module_is_cast_to_half(module_cls: type, half: torch.dtype) -> None:
    # .double() made the window and filterbanks float64; .half() then rounded them to half precision, which only
    # float32 constants were kept from: a log-Mel of white noise moved by up to 0.14
    x = torch.randn(2, 8000) * 0.1
    ref = module_cls()(x)
    module = module_cls().double().to(half)
    for name, buffer in module.named_buffers():
        assert buffer.dtype == torch.float32, name
    torch.testing.assert_close(module(x), ref, rtol=0, atol=0)


def test_float64_modules_keep_their_float64_constants() -> None:
    module = LogMel().double()
    assert module.window.dtype == torch.float64 and module.filterbank.dtype == torch.float64
    x = torch.randn(1, 4000, dtype=torch.float64)
    torch.testing.assert_close(module(x), LogMel()(x), rtol=0, atol=0)
