"""Review of the spectral features: empty inputs, frame counts and option checks."""

from __future__ import annotations

import math

import pytest
import torch

from sddkit.features.specaugment import SpecAugmentConfig
from sddkit.features.spectral import (
    LFCC,
    LFCCConfig,
    LinearSpectrogram,
    LinearSpectrogramConfig,
    LogMel,
    LogMelConfig,
)

_MODULES = [LogMel, LinearSpectrogram, LFCC]


@pytest.mark.parametrize("module_cls", _MODULES)
def test_an_empty_batch_gives_empty_features_of_the_right_shape(module_cls: type) -> None:
    module = module_cls()
    full = module(torch.randn(2, 1000))
    empty = module(torch.zeros(0, 1000))
    assert empty.shape == (0, *full.shape[1:])
    assert empty.dtype == full.dtype


@pytest.mark.parametrize("module_cls", _MODULES)
def test_a_signal_without_samples_is_a_clear_error(module_cls: type) -> None:
    with pytest.raises(ValueError, match="no samples"):
        module_cls()(torch.zeros(2, 0))


def test_num_frames_agrees_with_the_features_or_refuses_like_them() -> None:
    centred = LogMel()
    for length in (1, 159, 160, 511, 16000):
        assert centred.num_frames(length) == centred(torch.randn(length)).shape[-1]
    framed = LogMel(LogMelConfig(center=False))
    for length in (512, 671, 672, 16000):
        assert framed.num_frames(length) == framed(torch.randn(length)).shape[-1]
    with pytest.raises(ValueError, match="shorter than n_fft"):
        framed(torch.randn(300))
    with pytest.raises(ValueError, match="shorter than n_fft"):
        framed.num_frames(300)  # was -1
    with pytest.raises(ValueError, match="no samples"):
        centred.num_frames(0)  # was 1


@pytest.mark.parametrize("cfg_cls", [LogMelConfig, LinearSpectrogramConfig, LFCCConfig])
@pytest.mark.parametrize("floor", [math.nan, math.inf])
def test_a_nan_or_infinite_log_floor_is_refused(cfg_cls: type, floor: float) -> None:
    with pytest.raises(ValueError, match="log_floor"):
        cfg_cls(log_floor=floor)  # NaN made every feature NaN


@pytest.mark.parametrize("value", ["Mean", "average", "0"])
def test_an_unknown_spec_augment_mask_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="mask_value"):
        SpecAugmentConfig(mask_value=value)  # type: ignore[arg-type]  # silently filled with zeros
