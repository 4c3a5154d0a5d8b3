"""Codec round trips: availability, alignment (codec delay removed), band limits, levels."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment.codecs import (
    CODECS,
    CodecUnavailableError,
    check_codec_available,
    codec_delay,
    codec_roundtrip,
    estimate_lag,
    resolve_bitrate,
)
from sddkit.augment.dsp import colored_noise
from sddkit.augment.pipeline import build_augmentation
from sddkit.errors import ConfigError

SR = 16000


def available(codec: str) -> bool:
    try:
        check_codec_available(codec)
    except CodecUnavailableError:
        return False
    return True


AVAILABLE = [c for c in CODECS if available(c)]


def test_expected_codecs_are_available():
    # The PyAV wheels this project pins ship every codec except libvorbis.
    assert {"mp3", "aac", "opus", "vorbis_native", "amrnb", "g722", "mulaw", "alaw"} <= set(AVAILABLE)


def voice(seconds: float = 1.5) -> np.ndarray:
    """Speech-like test signal, unlike the calibration signal: vibrato harmonics + noise bursts."""
    rng = np.random.default_rng(5)
    t = np.arange(int(SR * seconds)) / SR
    f0 = 180 + 40 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) * np.exp(-k / 8) for k in range(1, 20))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 2.1 * t) ** 2
    x += (np.sin(2 * np.pi * 1.7 * t) > 0.9) * rng.standard_normal(len(t)) * 0.5
    return (0.4 * x / np.max(np.abs(x))).astype(np.float32)


def band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return 10 * np.log10(spec[(f >= lo) & (f < hi)].sum() + 1e-30)


ROUND_TRIPS = [
    ("mp3", 64.0, False),
    ("mp3", 16.0, False),
    ("mp3", 32.0, True),
    ("aac", 32.0, False),
    ("aac", 32.0, True),
    ("opus", 16.0, False),
    ("opus", 8.0, False),
    ("opus", 16.0, True),
    ("vorbis_native", None, False),
    ("amrnb", 12.2, False),
    ("amrnb", 4.75, False),
    ("g722", None, False),
    ("mulaw", None, False),
    ("alaw", None, False),
]


@pytest.mark.parametrize("codec, kbps, fast", ROUND_TRIPS)
def test_roundtrip_is_time_aligned(codec, kbps, fast):
    if codec not in AVAILABLE:
        pytest.skip(f"{codec} not in this PyAV build")
    x = voice()
    y = codec_roundtrip(x, SR, codec, kbps, fast=fast)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(estimate_lag(y, x, 400)) <= 2  # codec delay removed
    assert np.corrcoef(x, y)[0, 1] > 0.7  # the noise bursts above 4 kHz are lost by 8 kHz codecs
    assert abs(10 * np.log10(np.mean(y**2) / np.mean(x**2))) < 3.0  # level preserved
    np.testing.assert_array_equal(y, codec_roundtrip(x, SR, codec, kbps, fast=fast))  # deterministic


@pytest.mark.parametrize(
    "codec, kbps, cutoff",
    [("amrnb", 12.2, 4200), ("mulaw", None, 4200), ("alaw", None, 4200), ("mp3", 8.0, 4000), ("mp3", 16.0, 6500)],
)
def test_narrow_codecs_remove_the_upper_band(codec, kbps, cutoff):
    x = colored_noise(SR, 0.0, np.random.default_rng(0)) * 0.1
    y = codec_roundtrip(x, SR, codec, kbps)
    assert band_db(y, cutoff, 8000) - band_db(x, cutoff, 8000) < -30
    assert band_db(y, 300, 3000) - band_db(x, 300, 3000) > -6


def test_higher_bitrate_keeps_more_bandwidth():
    x = colored_noise(SR, 0.0, np.random.default_rng(1)) * 0.1
    hi = codec_roundtrip(x, SR, "mp3", 64.0)
    lo = codec_roundtrip(x, SR, "mp3", 16.0)
    assert abs(band_db(hi, 4000, 6500) - band_db(x, 4000, 6500)) < 3.0
    assert band_db(lo, 6500, 8000) < band_db(hi, 6500, 8000) - 30


def test_known_delays_and_bitrate_snapping():
    assert codec_delay("aac", SR, 32000) == 1024  # AAC-LC priming: one 1024-sample frame
    assert codec_delay("mulaw", SR, None) == 0  # sample-by-sample companding has no delay
    assert resolve_bitrate("amrnb", 7.0) == 6700  # nearest AMR-NB mode
    assert resolve_bitrate("mp3", 31.6) == 32000
    assert resolve_bitrate("mp3", None) == 64000
    assert resolve_bitrate("g722", None) is None
    with pytest.raises(ConfigError, match="outside"):
        resolve_bitrate("opus", 1.0)
    with pytest.raises(ConfigError, match="no bit-rate control"):
        resolve_bitrate("mulaw", 64.0)


def test_loud_input_is_not_clipped_by_integer_encoders():
    x = voice(0.5) * 3.0  # peak 1.2
    y = codec_roundtrip(x, SR, "g722")
    assert np.max(np.abs(y)) > 1.05
    assert np.corrcoef(x, y)[0, 1] > 0.95


def test_vorbis_needs_libvorbis():
    if available("vorbis"):
        y = codec_roundtrip(voice(0.5), SR, "vorbis", 64.0)
        assert np.isfinite(y).all()
        return
    with pytest.raises(CodecUnavailableError, match="libvorbis"):
        build_augmentation({"name": "codec", "codec": "vorbis"})


def test_codec_augmentation_draws_bitrate():
    aug = build_augmentation({"name": "codec", "codec": "opus", "bitrate_kbps": [6, 64]})
    x = voice(0.5)
    outs = {aug(x, SR, np.random.default_rng(s)).tobytes() for s in range(4)}
    assert len(outs) > 1
