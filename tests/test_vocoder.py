"""Copy-synthesis (Griffin-Lim vocoder): a vocoded copy keeps the magnitude, loses the waveform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sddkit.augment.vocoder import copy_synthesis, griffin_lim
from sddkit.errors import ConfigError
from sddkit.features.spectral import mel_filterbank

SR = 16000


def _voiced(seconds: float = 1.0) -> np.ndarray:
    """Harmonic tone with a gliding f0 plus a little noise: speech-like enough for phase retrieval."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 40 * t
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    rng = np.random.default_rng(0)
    return (0.2 * x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _mag(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> torch.Tensor:
    w = torch.hann_window(n_fft, dtype=torch.float64)
    return torch.stft(torch.from_numpy(x).double(), n_fft, hop, window=w, return_complex=True).abs()


def _spectral_convergence(x: np.ndarray, y: np.ndarray) -> float:
    a, b = _mag(x), _mag(y)
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(a))


def test_linear_copy_keeps_magnitude_changes_waveform_and_loudness_matches():
    x = _voiced()
    y = copy_synthesis(x, SR, magnitude="linear", n_iter=60, seed=1)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert _spectral_convergence(x, y) < 0.25
    # The waveform itself is not recovered (phase is rebuilt): the pair differs sample by sample.
    assert np.linalg.norm(x - y) / np.linalg.norm(x) > 0.3
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)


def test_more_iterations_give_a_more_consistent_spectrogram():
    x = _voiced()
    one = copy_synthesis(x, SR, magnitude="linear", n_iter=1, seed=3)
    many = copy_synthesis(x, SR, magnitude="linear", n_iter=40, seed=3)
    assert _spectral_convergence(x, many) < 0.7 * _spectral_convergence(x, one)


def test_mel_copy_keeps_the_mel_envelope_but_loses_detail_between_bands():
    x = _voiced()
    y_mel = copy_synthesis(x, SR, magnitude="mel", n_mels=40, n_iter=60, seed=1)
    y_lin = copy_synthesis(x, SR, magnitude="linear", n_iter=60, seed=1)
    fb = mel_filterbank(n_mels=40, n_fft=1024, sample_rate=SR).double()
    mel_x, mel_y = fb @ _mag(x), fb @ _mag(y_mel)
    assert float(torch.linalg.norm(mel_x - mel_y) / torch.linalg.norm(mel_x)) < 0.35
    # Smearing the harmonics through 40 bands moves the linear magnitude further than phase rebuilding alone.
    assert _spectral_convergence(x, y_mel) > _spectral_convergence(x, y_lin)


def test_seeded_and_deterministic():
    x = _voiced(0.5)
    a = copy_synthesis(x, SR, n_iter=5, seed=7)
    b = copy_synthesis(x, SR, n_iter=5, seed=7)
    c = copy_synthesis(x, SR, n_iter=5, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_loud_input_is_kept_below_full_scale():
    x = _voiced() * 4.5  # peaks above 1: the copy's peak is limited, never clipped past full scale
    y = copy_synthesis(x, SR, magnitude="linear", n_iter=10, seed=0)
    assert np.abs(y).max() <= 0.999 + 1e-6


@pytest.mark.parametrize(
    ("kwargs", "wave"),
    [
        ({}, np.zeros(100, np.float32)),  # shorter than one FFT frame
        ({}, np.zeros((2, 4000), np.float32)),  # not mono
        ({"magnitude": "bark"}, np.zeros(4000, np.float32)),
    ],
)
def test_bad_arguments_raise(kwargs, wave):
    with pytest.raises(ConfigError):
        copy_synthesis(wave, SR, **kwargs)


def test_griffin_lim_rejects_bad_settings():
    mag = torch.ones(513, 10, dtype=torch.float64)
    with pytest.raises(ConfigError):
        griffin_lim(mag, n_fft=1024, hop_length=256, length=2560, momentum=1.0)
    with pytest.raises(ConfigError):
        griffin_lim(mag, n_fft=1024, hop_length=256, length=2560, n_iter=0)
