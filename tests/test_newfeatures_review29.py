"""Review of the new spectral front-ends (`mgd`, `cqt`, `cqcc`) against the reference code's conventions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from sddkit.errors import ConfigError
from sddkit.features.cqt import CQCC, CQT
from sddkit.features.groupdelay import ModifiedGroupDelay, ModifiedGroupDelayConfig
from sddkit.registry import get_registry


def _covarep_mgd(x: np.ndarray, *, rho: float, gamma: float, hop: int, win: np.ndarray, nfft: int) -> np.ndarray:
    """covarep's modified_group_delay_feature.m (Wu et al.), line for line on pre-emphasised samples, but for its
    5-point median filter and its division by the utterance's maximum; its delays 1..N counted 0..N-1 here."""
    n_win = win.size
    frames = np.stack([x[t : t + n_win] * win for t in range(0, x.size - n_win + 1, hop)])
    delayed = frames * np.arange(n_win)
    X = np.fft.fft(frames, nfft, axis=1)[:, : nfft // 2 + 1]
    Y = np.fft.fft(delayed, nfft, axis=1)[:, : nfft // 2 + 1]
    coeffs = scipy.fft.dct(np.log(np.abs(X)), norm="ortho", axis=1)
    smooth = scipy.fft.idct(coeffs[:, :30], n=nfft // 2 + 1, norm="ortho", axis=1)
    tau = (X.real * Y.real + X.imag * Y.imag) / np.exp(smooth) ** (2 * rho)
    return (np.sign(tau) * np.abs(tau) ** gamma).T  # (bins, frames)


def test_mgd_delay_origin_start_is_covareps_convention():
    """``delay_origin: start`` measures delays from the analysis window's first sample, as covarep's function (its
    rho 0.4 is ``gamma``, its gamma 0.9 ``alpha``). They were measured from the 512-point frame's first sample, 56
    samples before the 400-sample window: every bin gained 56 |X|^2 / S^(2 gamma), a magnitude term."""
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal(4000)
    cfg = ModifiedGroupDelayConfig(
        n_filters=None, alpha=0.9, gamma=0.4, delay_origin="start", center=False, pre_emphasis=0.0, log_floor=1e-30
    )
    got = ModifiedGroupDelay(cfg)(torch.from_numpy(x)).numpy()  # float64 in, float64 out
    # without centring, frame t is samples t * 160 .. + 511 with the window on the 400 in its middle: 56 .. 455
    left = (cfg.n_fft - cfg.win_length) // 2
    window = torch.hamming_window(cfg.win_length, periodic=True, dtype=torch.float64).numpy()
    ref = _covarep_mgd(x[left:], rho=0.4, gamma=0.9, hop=cfg.hop_length, win=window, nfft=cfg.n_fft)
    frames = got.shape[1]
    assert frames == 1 + (4000 - 512) // 160 and ref.shape[1] >= frames
    np.testing.assert_allclose(got, ref[:, :frames], rtol=1e-5, atol=1e-9)  # the DCT basis is float32


def test_mgd_band_without_filters_is_refused_not_ignored():
    """f_min/f_max only place the n_filters bands: with ``n_filters: null`` a band of 0-4 kHz gave all 257 bins up
    to 8 kHz, without a word."""
    with pytest.raises(ValueError, match="n_filters is null"):
        ModifiedGroupDelayConfig(n_filters=None, f_max=4000.0)
    with pytest.raises(ConfigError, match="frontend: f_min/f_max .* n_filters is null"):
        get_registry("frontend").parse({"name": "mgd", "n_filters": None, "f_min": 300.0})
    # the whole band is what null keeps, so saying so is fine; with filters the band places them
    assert ModifiedGroupDelay(ModifiedGroupDelayConfig(n_filters=None, f_max=8000.0)).output_dim == 257
    assert get_registry("frontend").build({"name": "mgd", "n_filters": 60, "f_max": 4000.0}).output_dim == 60


@pytest.mark.parametrize("feature", [CQT, CQCC])
def test_cqt_plan_cached_while_scoring_serves_a_later_gradient(feature):
    """Scoring runs under torch.inference_mode; the CQT caches its per-length plan (band indices, windows). Made there,
    the plan was inference tensors, and a later forward at that length whose waveform needs a gradient (an attack, a
    saliency map) failed: 'Inference tensors cannot be saved for backward'."""
    module = feature()
    x = 0.1 * torch.randn(2, 3200, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        scored = module(x)
    wave = x.clone().requires_grad_(True)
    features = module(wave)
    features.sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all() and float(wave.grad.abs().max()) > 0
    torch.testing.assert_close(features.detach(), scored.clone(), rtol=0, atol=0)
