"""Review of the spectral features and front-ends (round 25): log floors float32 cannot hold, filterbank sizes."""

from __future__ import annotations

import pytest
import torch

from sddkit.errors import ConfigError
from sddkit.features.spectral import (
    LFCC,
    LFCCConfig,
    LinearSpectrogram,
    LinearSpectrogramConfig,
    LogLinearFilterbank,
    LogLinearFilterbankConfig,
    LogMel,
    LogMelConfig,
    linear_filterbank,
    mel_filterbank,
    triangular_filterbank,
)
from sddkit.frontends import FRONTENDS

_FEATURES = [
    (LogMel, LogMelConfig),
    (LogLinearFilterbank, LogLinearFilterbankConfig),
    (LinearSpectrogram, LinearSpectrogramConfig),
    (LFCC, LFCCConfig),
]
_TINY = float(torch.finfo(torch.float32).tiny)


@pytest.mark.parametrize("cfg_cls", [cfg for _, cfg in _FEATURES])
@pytest.mark.parametrize("floor", [1e-46, 1e-300, 5e-39])
def test_a_log_floor_float32_cannot_hold_is_refused(cfg_cls: type, floor: float) -> None:
    # the features are float32: 1e-46 added to a silent bin's energy rounded to 0, its log was -inf and the
    # normalised features NaN, with no word
    with pytest.raises(ValueError, match="log_floor must be finite and >= 1.175e-38"):
        cfg_cls(log_floor=floor)


@pytest.mark.parametrize("name", ["logmel", "lfb", "logspec", "lfcc"])
def test_a_front_end_with_a_log_floor_float32_cannot_hold_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="log_floor"):
        FRONTENDS.build({"name": name, "log_floor": 1e-50, "normalize": True})


@pytest.mark.parametrize(("module_cls", "cfg_cls"), _FEATURES)
def test_the_smallest_log_floor_allowed_keeps_silence_finite(module_cls: type, cfg_cls: type) -> None:
    x = torch.zeros(2, 4000)
    x[1, 2000:] = 0.1 * torch.randn(2000, generator=torch.Generator().manual_seed(0))
    feats = module_cls(cfg_cls(log_floor=_TINY))(x)
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: mel_filterbank(n_mels=0, n_fft=512, sample_rate=16000), "n_mels must be > 0, got 0"),
        (lambda: mel_filterbank(n_mels=-2, n_fft=512, sample_rate=16000), "n_mels must be > 0, got -2"),
        (lambda: linear_filterbank(n_filters=0, n_fft=512, sample_rate=16000), "n_filters must be > 0, got 0"),
        (lambda: mel_filterbank(n_mels=10, n_fft=0, sample_rate=16000), "n_fft must be >= 2, got 0"),
        (lambda: linear_filterbank(n_filters=10, n_fft=-4, sample_rate=16000), "n_fft must be >= 2, got -4"),
        (
            lambda: triangular_filterbank(torch.tensor([0.0, 100.0, 200.0]), n_fft=0, sample_rate=16000),
            "n_fft must be >= 2, got 0",
        ),
        (
            lambda: triangular_filterbank(torch.tensor([0.0, 100.0, 200.0]), n_fft=512, sample_rate=0),
            "sample_rate must be > 0, got 0",
        ),
    ],
)
def test_filterbank_functions_name_the_size_they_refuse(build, match: str) -> None:
    # n_mels 0 was an error about ``edges_hz`` (never passed), n_fft 0 a ZeroDivisionError
    with pytest.raises(ValueError, match=match):
        build()


def test_valid_filterbanks_are_unchanged() -> None:
    fb = mel_filterbank(n_mels=80, n_fft=512, sample_rate=16000, f_min=20.0, f_max=7600.0)
    assert fb.shape == (80, 257)
    assert linear_filterbank(n_filters=1, n_fft=16, sample_rate=16000).shape == (1, 9)


def test_a_band_error_names_f_min_and_f_max() -> None:
    with pytest.raises(ValueError, match=r"f_max <= sample_rate/2 = 8000 Hz, got f_min=20.0, f_max=9000"):
        LogMelConfig(f_max=9000.0)
    with pytest.raises(ConfigError, match=r"got f_min=8000.0, f_max=8000.0"):
        FRONTENDS.build({"name": "lfb", "f_min": 8000.0})
