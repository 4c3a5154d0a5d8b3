"""Seventh review of the spectral features and front-ends: gradients through level normalisation of silence,
the sample-rate refusal, empty linear filters, and SpecAugment's count checks."""

from __future__ import annotations

import warnings

import pytest
import torch

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.features import linear_filterbank
from sddkit.features.specaugment import SpecAugmentConfig
from sddkit.frontends.spectral import LEVEL_FLOOR_DB, level_normalize
from sddkit.registry import get_registry


def _reference_level(waveform: torch.Tensor, level_db: float) -> torch.Tensor:
    """The documented formula: DC removed, scaled to ``level_db`` dBFS RMS, the RMS floored at LEVEL_FLOOR_DB."""
    centred = waveform.double() - waveform.double().mean(dim=-1, keepdim=True)
    rms = centred.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(10.0 ** (LEVEL_FLOOR_DB / 20.0))
    return (centred * (10.0 ** (level_db / 20.0) / rms)).to(waveform.dtype)


@pytest.mark.parametrize("name", ["logmel", "logspec", "lfcc"])
def test_level_normalisation_of_silence_has_a_finite_gradient(name):
    # sqrt's slope is infinite at 0: flooring the RMS after the square root gave digital silence and a DC-only
    # input a NaN gradient (0 * inf), which poisons any gradient taken with respect to the waveform
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.zeros(1, 4000), torch.full((1, 4000), 0.25), 0.1 * torch.randn(1, 4000, generator=g)])
    x.requires_grad_(True)
    level_normalize(x, -27.0).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    x.grad = None
    frontend = get_registry("frontend").build({"name": name, "normalize": True, "level_db": -27.0})
    frontend(x).features.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[2].abs().sum() > 0


def test_level_normalisation_values_are_unchanged_by_the_gradient_fix():
    g = torch.Generator().manual_seed(1)
    quiet = torch.randn(1, 8000, generator=g) * 10 ** ((LEVEL_FLOOR_DB - 10) / 20)  # below the floor
    x = torch.cat([torch.zeros(1, 8000), quiet, 0.2 * torch.randn(1, 8000, generator=g), torch.full((1, 8000), 0.5)])
    for level_db in (-27.0, -3.0):
        assert torch.equal(level_normalize(x, level_db), _reference_level(x, level_db))
        assert torch.equal(level_normalize(x.double(), level_db), _reference_level(x.double(), level_db))


@pytest.mark.parametrize("name", ["logmel", "logspec", "lfcc"])
def test_another_sample_rate_is_refused_for_what_it_is(name):
    # at 8 kHz the band check came first and advised lowering f_max ("need ... f_max <= sample_rate/2 = 4000");
    # once f_max was lowered, building refused the rate itself. Parsing now names the rate at once.
    frontends = get_registry("frontend")
    with pytest.raises(ConfigError, match=r"frontend\.sample_rate: 8000, but sddkit trains and scores 16000 Hz"):
        frontends.parse({"name": name, "sample_rate": 8000})
    with pytest.raises(ConfigError, match="16000 Hz audio"):
        frontends.parse({"name": name, "sample_rate": 44100})
    assert frontends.build({"name": name, "sample_rate": 16000}).output_dim > 0


def test_linear_filters_that_cover_no_fft_bin_are_warned_about_like_mel_ones():
    # 20 filters over 3.9-4 kHz are 4.8 Hz apart, the FFT bins 31.25 Hz: most filters were all zeros, so their
    # LFCC log energies sat at the log floor in every frame, without a word (the mel filterbank warns)
    with pytest.warns(UserWarning, match=r"of the 20 linear filters cover no FFT bin .* a wider f_min\.\.f_max"):
        fb = linear_filterbank(n_filters=20, n_fft=512, sample_rate=16000, f_min=3900.0, f_max=4000.0)
    assert (fb.sum(dim=1) == 0).any()
    with pytest.warns(UserWarning, match="linear filters cover no FFT bin"):
        get_registry("frontend").build({"name": "lfcc", "f_min": 3900.0, "f_max": 4000.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_registry("frontend").build({"name": "lfcc"})  # the baseline's 20 filters over 0-8 kHz: no warning
        get_registry("frontend").build({"name": "lfcc", "f_min": 4000.0})


@pytest.mark.parametrize("field", ["num_freq_masks", "num_time_masks"])
def test_a_negative_spec_augment_mask_count_names_its_field(field):
    # was "mask counts must be >= 0", naming neither the key nor the value
    with pytest.raises(ConfigError, match=rf"spec_augment\.{field}: must be >= 0, got -1"):
        get_registry("frontend").build({"name": "logmel", "spec_augment": {field: -1}})
    with pytest.raises(ConfigError, match=rf"{field}: must be >= 0, got -2"):
        from_dict(SpecAugmentConfig, {field: -2})
