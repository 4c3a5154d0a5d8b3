"""Research-correctness checks of the augmentations found in review: each one failed on the previous code."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment.codecs import CODECS, CodecUnavailableError, check_codec_available, codec_roundtrip, resolve_bitrate
from sddkit.augment.pipeline import build_augmentation
from sddkit.augment.reverb import image_source_rir
from sddkit.errors import ConfigError

SR = 16000


def voice(seconds: float = 1.0) -> np.ndarray:
    """Vibrato harmonics with a syllable-rate envelope and noise bursts, peak 0.4."""
    rng = np.random.default_rng(5)
    t = np.arange(int(SR * seconds)) / SR
    phase = 2 * np.pi * np.cumsum(180 + 40 * np.sin(2 * np.pi * 1.3 * t)) / SR
    x = sum(np.sin(k * phase) * np.exp(-k / 8) for k in range(1, 20))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 2.1 * t) ** 2
    x += (np.sin(2 * np.pi * 1.7 * t) > 0.9) * rng.standard_normal(len(t)) * 0.5
    return (0.4 * x / np.max(np.abs(x))).astype(np.float32)


def t20(h: np.ndarray) -> float:
    """RT60 extrapolated from the -5..-25 dB span of the Schroeder energy decay curve, in s."""
    edc = np.cumsum((h**2)[::-1])[::-1]
    edc = 10 * np.log10(edc / edc[0])
    return 3 * (np.argmax(edc < -25) - np.argmax(edc < -5)) / SR


# --- codecs -----------------------------------------------------------------------------------


def _available(codec: str) -> bool:
    try:
        check_codec_available(codec)
    except CodecUnavailableError:
        return False
    return True


@pytest.mark.parametrize("codec", ["mp3", "aac", "amrnb", "vorbis"])
def test_top_of_the_bitrate_range_is_really_applied(codec):
    # FFmpeg's AAC encoder clamps a 16 kHz mono stream to 96 kb/s (6144 bits per 1024-sample frame):
    # 96, 112 and 128 kb/s gave bit-identical output although the range allowed up to 128.
    # (Opus is left out: libopus pads rather than clamps, and its decoded speech stops changing
    # around 150 kb/s at 16 kHz, a soft, signal-dependent ceiling noted in the codecs docstring.)
    if not _available(codec):
        pytest.skip(f"{codec} not in this PyAV build")
    lo, hi = CODECS[codec].bitrate_kbps
    below = max(lo, 0.85 * hi)
    x = voice(0.5)
    assert not np.array_equal(codec_roundtrip(x, SR, codec, hi), codec_roundtrip(x, SR, codec, below))


def test_aac_refuses_rates_its_encoder_cannot_deliver():
    assert resolve_bitrate("aac", 96.0) == 96000
    with pytest.raises(ConfigError, match="outside"):
        resolve_bitrate("aac", 128.0)


# --- reverberation ----------------------------------------------------------------------------


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_image_source_order_zero_still_reverberates(rt60):
    # max_order 0 keeps the direct path only; the tail was continued "at the energy density of the
    # last 10 ms" before the first reflection, which is zero: no tail at all, Reverb was a no-op.
    room, src, mic = np.array([6.0, 4.0, 3.0]), np.array([1.0, 1.5, 1.6]), np.array([4.0, 2.5, 1.2])
    h0 = image_source_rir(SR, room, src, mic, rt60, 0, np.random.default_rng(0))
    h1 = image_source_rir(SR, room, src, mic, rt60, 1, np.random.default_rng(0))
    assert h0[0] == 1.0
    e0, e1 = np.sum(h0[1:] ** 2), np.sum(h1[1:] ** 2)
    assert e0 > 0.25 * e1 and e0 < 4.0 * e1  # a diffuse tail of about the level order 1 gives
    assert abs(t20(h0[1:]) - rt60) < 0.1 * rt60
    aug = build_augmentation({"name": "reverb", "method": "image_source", "max_order": 0, "rt60": [rt60, rt60]})
    x = voice(0.5)
    y = aug(x, SR, np.random.default_rng(0))
    assert np.sum((y - x) ** 2) > 0.1 * np.sum(x**2)


# --- band filters ------------------------------------------------------------------------------


def _tone_gain_db(aug_or_fn, freq: float, sr: int = SR) -> float:
    t = np.arange(2 * sr) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    y = aug_or_fn(x)
    core = slice(sr // 4, -sr // 4)  # away from the edge transients
    return float(10 * np.log10(np.mean(y[core].astype(np.float64) ** 2) / np.mean(x[core].astype(np.float64) ** 2)))


@pytest.mark.parametrize(
    "spec, edges",
    [
        ({"kind": "lowpass", "high_hz": [4000, 4000]}, [4000]),
        ({"kind": "highpass", "low_hz": [300, 300]}, [300]),
        ({"kind": "bandpass", "low_hz": [300, 300], "high_hz": [3400, 3400]}, [300, 3400]),
        ({"kind": "bandstop", "low_hz": [800, 800], "high_hz": [1600, 1600]}, [800, 1600]),
        ({"kind": "lowpass", "high_hz": [1000, 1000], "order": 1}, [1000]),
        ({"kind": "bandpass", "low_hz": [100, 100], "high_hz": [7500, 7500], "order": 2}, [100, 7500]),
    ],
)
def test_band_filter_cutoffs_are_the_minus_3db_points(spec, edges):
    # A Butterworth is -3 dB at its cut-off per pass; run forward and backward (zero phase) it was
    # -6 dB there, so e.g. the telephone band's -3 dB edges sat at about 335 and 3050 Hz.
    aug = build_augmentation({"name": "band_filter", **spec})
    for f in edges:
        assert _tone_gain_db(lambda x: aug(x, SR, np.random.default_rng(0)), f) == pytest.approx(-3.01, abs=0.15)


# --- RawBoost parity with the official implementation (verified, kept as a guard) ---------------


@pytest.mark.parametrize("taps, f1, f2", [(11, 100.0, 500.0), (51, 3000.0, 4000.0), (101, 7500.0, 7999.999)])
def test_rawboost_notch_is_scipy_firwin_bandstop(taps, f1, f2):
    from scipy import signal

    from sddkit.augment.rawboost import bandstop_fir

    expected = signal.firwin(taps, [f1, f2], window="hamming", fs=SR)  # genNotchCoeffs in SSL_Anti-spoofing
    np.testing.assert_allclose(bandstop_fir(taps, f1, f2, SR), expected, atol=1e-12)


def test_image_source_rir_has_no_dc_boost():
    # With positive wall reflections every early arrival adds in phase at 0 Hz, so the image set's
    # DC gain grew with its size: +15-20 dB below 20 Hz over the speech band, and reverb multiplied
    # a 0.005 DC offset by about 9 (noise_tail RIRs do not). Allen & Berkley high-pass the response.
    from sddkit.augment.reverb import ReverbConfig, random_rir

    cfg = ReverbConfig(rt60=(0.5, 0.5), method="image_source")
    for seed in range(5):
        h = random_rir(cfg, SR, np.random.default_rng(seed))
        assert h[0] == 1.0  # direct path still at tap 0, unit amplitude
        spec = np.abs(np.fft.rfft(h, 1 << 16)) ** 2
        f = np.fft.rfftfreq(1 << 16, 1 / SR)
        speech_band = spec[(f > 300) & (f < 4000)].mean()
        assert 10 * np.log10(spec[f < 20].mean() / speech_band) < 3.0
        assert 10 * np.log10(spec[(f > 80) & (f < 300)].mean() / speech_band) > -3.0  # voice band kept
    x = voice(1.0) * 0.5 + 0.005
    y = build_augmentation({"name": "reverb", "method": "image_source", "rt60": [0.5, 0.5]})(
        x, SR, np.random.default_rng(0)
    )
    assert abs(float(np.mean(y[SR // 2 :]))) < 0.01


def test_noise_folder_follows_linked_subfolders_once(tmp_path):
    import soundfile as sf

    from sddkit.augment.files import AudioFolder

    shared = tmp_path / "shared_noises"
    shared.mkdir()
    sf.write(shared / "hum.wav", np.zeros(160, dtype=np.float32) + 0.1, 16000)
    root = tmp_path / "noise"
    root.mkdir()
    sf.write(root / "fan.wav", np.zeros(160, dtype=np.float32) + 0.1, 16000)
    (root / "more").symlink_to(shared, target_is_directory=True)
    (shared / "up").symlink_to(root, target_is_directory=True)  # a loop must not list files again
    (root / "gone.wav").symlink_to(tmp_path / "missing.wav")  # dangling: not a noise file
    assert [p.relative_to(root).as_posix() for p in AudioFolder(root).files] == ["fan.wav", "more/hum.wav"]
