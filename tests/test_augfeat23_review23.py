"""Review 23 (augmentation and spectral features): coloured noise at its requested SNR in the audible band; WSOLA
keeps onsets in place."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from sddkit.augment.chains import car_noise
from sddkit.augment.dsp import colored_noise
from sddkit.augment.pipeline import build_augmentation
from sddkit.augment.timescale import wsola
from sddkit.errors import ConfigError

SR = 16000


def _power_share_below(x: np.ndarray, hz: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    return float(spec[np.fft.rfftfreq(len(x), 1 / SR) < hz].sum() / spec.sum())


def _tone(seconds: float) -> np.ndarray:
    return (0.1 * np.sin(2 * np.pi * 300.0 * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


@pytest.mark.parametrize("seconds", [2.0, 10.0])
@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_coloured_noise_snr_holds_in_the_audible_band(seconds, exponent):
    # the 1/f^a law ran down to the clip's lowest FFT bin (0.1 Hz for 10 s): a brown noise "at 5 dB SNR" held ~99 % of
    # its power below 20 Hz, an audible SNR of 20-30 dB (more the longer the clip); a pink one's was 2-3 dB high
    x = _tone(seconds)
    aug = build_augmentation({"name": "noise", "exponent": [exponent, exponent], "snr_db": [5.0, 5.0]})
    noise = aug(x, SR, np.random.default_rng(0)).astype(np.float64) - x
    assert 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2)) == pytest.approx(5.0, abs=0.01)
    assert _power_share_below(noise, 20.0) < 1e-3


def test_noise_keeps_its_1_over_f_law_above_20_hz():
    # brown: 6.02 dB less density per octave, here between 100-200 Hz and 1.6-3.2 kHz (4 octaves)
    n = colored_noise(SR * 8, 2.0, np.random.default_rng(0), SR, 20.0).astype(np.float64)
    spec = np.abs(np.fft.rfft(n)) ** 2
    f = np.fft.rfftfreq(len(n), 1 / SR)
    low, high = spec[(f >= 100) & (f < 200)].mean(), spec[(f >= 1600) & (f < 3200)].mean()
    assert 10 * np.log10(low / high) == pytest.approx(4 * 6.02, abs=1.0)
    assert np.std(n) == pytest.approx(1.0, abs=1e-3)


def test_noise_low_hz_zero_is_the_former_law():
    # low_hz 0 reproduces what the bundled model's recipes trained with (they pin it), draw for draw
    x = _tone(2.0)
    aug = build_augmentation({"name": "noise", "exponent": [2.0, 2.0], "snr_db": [5.0, 5.0], "low_hz": 0})
    noise = aug(x, SR, np.random.default_rng(0)).astype(np.float64) - x
    assert _power_share_below(noise, 20.0) > 0.9
    assert np.array_equal(
        colored_noise(1000, 1.0, np.random.default_rng(1)),
        colored_noise(1000, 1.0, np.random.default_rng(1), SR, 0.0),
    )


def test_white_noise_is_not_changed_by_low_hz():
    # white noise holds 0.25 % of its power below 20 Hz: drawn as is, so the noise_white_* conditions do not move
    a = colored_noise(SR, 0.0, np.random.default_rng(2))
    assert np.array_equal(a, colored_noise(SR, 0.0, np.random.default_rng(2), SR, 20.0))


@pytest.mark.parametrize("low_hz", [-1.0, 5000.0])
def test_noise_low_hz_out_of_range_is_refused(low_hz):
    with pytest.raises(ConfigError, match="low_hz"):
        build_augmentation({"name": "noise", "low_hz": low_hz})


def test_car_noise_rumble_lies_in_the_audible_band():
    # its brown rumble, low-passed at rumble_hz, had ~80 % of the car noise's power below 20 Hz: car_cabin's SNR
    # (speech over car noise) was ~7 dB above what it said where anything can hear it
    noise = car_noise(SR * 4, SR, 300.0, 50.0, -6.0, np.random.default_rng(0))
    assert _power_share_below(noise, 20.0) < 0.01


@pytest.mark.parametrize(("name", "key"), [("rerecord", "noise_exponent"), ("launder_chain", "noise_exponent")])
def test_chain_noise_lies_in_the_audible_band(name, key):
    # the chains' coloured noise starts at 20 Hz too; compared without the noise (snr 200 dB) on the same draws
    x = _tone(4.0)
    spec = {"name": name, key: [2.0, 2.0], "snr_db" if name == "launder_chain" else "noise_snr_db": [0.0, 0.0]}
    quiet = {**spec, "snr_db" if name == "launder_chain" else "noise_snr_db": [100.0, 100.0]}
    if name == "launder_chain":
        spec |= {"codecs": ["mulaw"], "rt60": [0.1, 0.1]}
        quiet |= {"codecs": ["mulaw"], "rt60": [0.1, 0.1]}
    noisy = build_augmentation(spec)(x, SR, np.random.default_rng(0)).astype(np.float64)
    clean = build_augmentation(quiet)(x, SR, np.random.default_rng(0)).astype(np.float64)
    assert _power_share_below(noisy - clean, 20.0) < 0.01


def _onsets(y: np.ndarray) -> np.ndarray:
    envelope = np.abs(signal.hilbert(y))
    return np.flatnonzero((envelope[1:] > 0.3) & (envelope[:-1] <= 0.3))


@pytest.mark.parametrize("rate", [0.97, 0.99, 1.01, 1.03])
def test_wsola_keeps_onsets_after_a_pause_in_place(rate):
    # tone bursts after silence: the unnormalised correlation picked the louder (later) candidate at each onset, so
    # every burst came out 120-160 samples (~10 ms, the search tolerance) early even at rates near 1
    x = np.zeros(3 * SR, dtype=np.float32)
    burst = np.sin(2 * np.pi * 300.0 * np.arange(800) / SR) * np.hanning(800)
    for k in range(6):
        x[k * 8000 + 1000 : k * 8000 + 1800] = burst
    expected = _onsets(x)[:6] / rate
    found = _onsets(wsola(x, SR, rate))[:6]
    assert np.abs(found - expected).max() < 40
