"""RawBoost against the reference code's design (review rawboost17): guards for what the module docstring states."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal
from test_augment_signal import speechlike

from sddkit.augment import rawboost as rb
from sddkit.augment.rawboost import RawBoostConfig, lnl_convolutive_noise, notch_cascade

SR = 16000


def _firwin_cascade(cfg: RawBoostConfig, gain_db: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """genNotchCoeffs' design (scipy's firwin, peak of freqz's default 512-point grid) from the draws
    notch_cascade takes, in its order: per band centre, bandwidth, taps; then the gain."""
    b = np.ones(1)
    for _ in range(cfg.n_bands):
        fc = cfg.center_hz[0] + (cfg.center_hz[1] - cfg.center_hz[0]) * rng.random()
        bw = cfg.bandwidth_hz[0] + (cfg.bandwidth_hz[1] - cfg.bandwidth_hz[0]) * rng.random()
        taps = int(rng.integers(cfg.fir_taps[0], cfg.fir_taps[1] + 1))
        taps += 1 - taps % 2
        f1, f2 = fc - bw / 2, fc + bw / 2
        f1 = 1e-3 if f1 <= 0 else f1
        f2 = SR / 2 - 1e-3 if f2 >= SR / 2 else f2
        b = np.convolve(signal.firwin(taps, [f1, f2], window="hamming", fs=SR), b)
    g = gain_db[0] + (gain_db[1] - gain_db[0]) * rng.random()
    _, h = signal.freqz(b, 1, fs=SR)
    return 10 ** (g / 20) * b / np.max(np.abs(h))


@pytest.mark.parametrize("gain_db", [(0.0, 0.0), (-20.0, -5.0)])
def test_notch_cascade_is_the_firwin_cascade_within_a_hundredth_of_a_db(gain_db):
    cfg = RawBoostConfig()
    worst = 0.0
    for seed in range(40):
        got = notch_cascade(cfg, gain_db, SR, np.random.default_rng(seed))
        expected = _firwin_cascade(cfg, gain_db, np.random.default_rng(seed))
        assert got.shape == expected.shape and len(got) % 2 == 1
        ratio = float(np.dot(got, expected) / np.dot(expected, expected))
        np.testing.assert_allclose(got, ratio * expected, rtol=0, atol=1e-9 * np.abs(expected).max())
        worst = max(worst, abs(20 * np.log10(ratio)))  # only the peak's grid differs (Nyquist included here)
    assert worst < 0.01


def test_lnl_gains_at_the_published_defaults_are_the_reference_ranges(monkeypatch):
    # The reference subtracts minBias from minG and maxBias from maxG; with minG = maxG = 0 that is -20..-5 dB,
    # the range this implementation's formula gives too.
    seen: list[tuple[float, float]] = []
    real = rb.notch_cascade

    def spy(cfg, gain_db, sr, rng):
        seen.append(tuple(gain_db))
        return real(cfg, gain_db, sr, rng)

    monkeypatch.setattr(rb, "notch_cascade", spy)
    lnl_convolutive_noise(speechlike(0.1), SR, RawBoostConfig(), np.random.default_rng(0))
    assert seen == [(0.0, 0.0)] + [(-20.0, -5.0)] * 4


def test_lnl_is_the_sum_of_exactly_aligned_fir_outputs():
    # The reference's filterFIR returns its output one sample early (it starts at tap (L + 1) / 2 of an odd FIR
    # whose delay is (L - 1) / 2); here each order is aligned to its filter's centre tap.
    cfg = RawBoostConfig(n_orders=3)
    x = speechlike(0.5)
    y = lnl_convolutive_noise(x, SR, cfg, np.random.default_rng(3))
    twin = np.random.default_rng(3)
    gains = [(0.0, 0.0), (-20.0, -5.0), (-20.0, -5.0)]
    expected = np.zeros(len(x))
    for k, gain_db in enumerate(gains, start=1):
        b = notch_cascade(cfg, gain_db, SR, twin)
        expected += np.convolve(x.astype(np.float64) ** k, b)[(len(b) - 1) // 2 :][: len(x)]
    expected -= expected.mean()
    expected /= max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(y, expected, atol=2e-5)
    assert np.max(np.abs(y[1:] - expected[:-1])) > 100 * 2e-5  # a one-sample shift would be seen
