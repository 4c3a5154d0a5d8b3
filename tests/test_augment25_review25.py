"""Review augment25: synthetic RIRs decay at the requested RT60 up to 5 s; level ranges that overflow, and resampling
rates written in kHz, are refused when the config is parsed rather than failing (or silencing the audio) in training;
a sample rate that is no positive whole number is refused plainly."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.reverb import ReverbConfig, random_rir
from sddkit.errors import ConfigError

SR = 16000


def _schroeder_t(h: np.ndarray, top_db: float, bottom_db: float) -> float:
    """The reverberation time from a line fitted to the Schroeder backward integral of ``h`` between ``top_db`` and
    ``bottom_db`` (e.g. -5 and -35 for T30), extrapolated to 60 dB."""
    energy = np.cumsum(h[::-1].astype(np.float64) ** 2)[::-1]
    decay = 10.0 * np.log10(energy / energy[0] + 1e-300)
    i0, i1 = int(np.argmax(decay <= top_db)), int(np.argmax(decay <= bottom_db))
    assert i1 > i0, "the response does not decay by the fitted range"
    t = np.arange(len(h)) / SR
    return -60.0 / float(np.polyfit(t[i0:i1], decay[i0:i1], 1)[0])


@pytest.mark.parametrize("method", ["noise_tail", "image_source"])
@pytest.mark.parametrize("rt60", [3.0, 4.0, 5.0])
def test_synthetic_rir_decays_at_the_requested_rt60_beyond_two_seconds(method, rt60):
    # before: every synthetic RIR was cut at 2 s, -24 dB for an RT60 of 5 s: its T30 measured 4.2 s (image source
    # 3.9 s), and 3.7 s for an RT60 of 4 s
    cfg = ReverbConfig(rt60=(rt60, rt60), method=method)
    for seed in range(3):
        h = random_rir(cfg, SR, np.random.default_rng(seed))
        assert len(h) >= int(rt60 * SR)
        assert _schroeder_t(h, -5.0, -35.0) == pytest.approx(rt60, rel=0.03)
        assert _schroeder_t(h, -5.0, -25.0) == pytest.approx(rt60, rel=0.03)


def test_rir_of_an_rt60_up_to_two_seconds_is_unchanged():
    # the fix only lengthens RIRs above 2 s: shorter ones (every condition, the recipes' ranges) keep their draws
    for rt60 in (0.3, 1.0, 2.0):
        h = random_rir(ReverbConfig(rt60=(rt60, rt60), drr_db=(3.0, 3.0)), SR, np.random.default_rng(0))
        assert len(h) == int(rt60 * SR)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "rawboost", "algo": 3, "snr_db": [-1000.0, -1000.0]},
        {"name": "rawboost", "algo": 4, "snr_db": [10.0, 1000.0]},
        {"name": "rawboost", "algo": 1, "gain_db": [8000.0, 8000.0]},
        {"name": "rawboost", "algo": 3, "gain_db": [-8000.0, 0.0]},
        {"name": "car_cabin", "snr_db": [-1000.0, -1000.0]},
        {"name": "car_cabin", "engine_db": [8000.0, 8000.0]},
        {"name": "car_cabin", "drr_db": [-8000.0, -8000.0]},
        {"name": "rerecord", "noise_snr_db": [-1000.0, -1000.0]},
        {"name": "rerecord", "drr_db": [8000.0, 8000.0]},
        {"name": "launder_chain", "codecs": ["mulaw"], "snr_db": [-1000.0, -1000.0]},
        {"name": "launder_chain", "codecs": ["mulaw"], "drr_db": [-8000.0, -8000.0]},
        {"name": "clipping", "threshold_db": [-1000.0, -1000.0]},
    ],
)
def test_levels_beyond_the_limits_are_refused_when_parsed(spec):
    # before: accepted, then the first augmented item failed ("CarCabin produced non-finite samples", an
    # OverflowError from 10 ** (dB / 20), a codec refusing its non-finite input) or, for clipping, became silence
    key = next(k for k in spec if k not in ("name", "algo", "codecs"))
    with pytest.raises(ConfigError, match=key):
        AUGMENTATIONS.build(spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "rawboost", "algo": 4, "snr_db": [-30.0, -30.0], "gain_db": [60.0, 60.0]},
        {"name": "rawboost", "algo": 6, "snr_db": [100.0, 100.0], "gain_db": [-120.0, -120.0]},
        {"name": "car_cabin", "snr_db": [-30.0, -30.0], "engine_db": [60.0, 60.0], "drr_db": [-40.0, -40.0]},
        {"name": "car_cabin", "snr_db": [100.0, 100.0], "engine_db": [-120.0, -120.0], "drr_db": [60.0, 60.0]},
        {"name": "rerecord", "noise_snr_db": [-30.0, -30.0], "drr_db": [-40.0, -40.0]},
        {"name": "launder_chain", "codecs": ["mulaw"], "snr_db": [-30.0, -30.0], "drr_db": [60.0, 60.0]},
        {"name": "clipping", "threshold_db": [-120.0, -120.0]},
    ],
)
def test_levels_at_the_limits_give_finite_audio(spec):
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    y = AUGMENTATIONS.build(spec)(x, SR, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.any(y)


@pytest.mark.parametrize("rates", [[8], [8, 16], [8000, 11]])
def test_resample_rates_written_in_khz_are_refused(rates):
    # before: [8] round-tripped the clip through 8 Hz, a near-silent training input, without a word
    with pytest.raises(ConfigError, match="sample_rates are in Hz"):
        AUGMENTATIONS.build({"name": "resample", "sample_rates": rates})


def test_resample_rates_in_hz_still_work():
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    y = AUGMENTATIONS.build({"name": "resample", "sample_rates": [1000, 8000]})(x, SR, np.random.default_rng(0))
    assert y.shape == x.shape and np.isfinite(y).all() and np.any(y)


@pytest.mark.parametrize("sr", [0, -16000, 16000.5, float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["gain", "reverb", "resample", "band_filter", "rawboost", "noise"])
def test_a_sample_rate_that_is_no_positive_whole_number_is_refused(sr, name):
    # before: 0 failed deep inside ("Sample rate should be over 0", ZeroDivisionError, "Reverb produced non-finite
    # samples") or passed unnoticed (gain), a negative rate gave "could not broadcast input array", and 16000.5 was
    # truncated to 16000 without a word
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    with pytest.raises(ValueError, match="sr must be the sample rate in Hz"):
        AUGMENTATIONS.build(name)(x, sr, np.random.default_rng(0))


@pytest.mark.parametrize("sr", ["16000", None, True])
def test_a_sample_rate_that_is_no_number_is_a_type_error(sr):
    x = np.zeros(100, dtype=np.float32)
    with pytest.raises(TypeError, match="sr must be the sample rate in Hz"):
        AUGMENTATIONS.build("gain")(x, sr, np.random.default_rng(0))


def test_a_whole_float_or_numpy_sample_rate_is_taken():
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    aug = AUGMENTATIONS.build({"name": "band_filter", "kind": "lowpass", "high_hz": [4000.0, 4000.0]})
    expected = aug(x, SR, np.random.default_rng(0))
    for sr in (16000.0, np.int64(SR), np.float32(SR)):
        np.testing.assert_array_equal(aug(x, sr, np.random.default_rng(0)), expected)
