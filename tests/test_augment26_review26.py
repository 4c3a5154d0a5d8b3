"""Review 26 of the training augmentations (codecs, launder chain, copy-synthesis)."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment.codecs import calibration_signal, codec_roundtrip
from sddkit.augment.pipeline import AugmentationPipeline
from sddkit.augment.vocoder import copy_synthesis
from sddkit.errors import ConfigError, NonFiniteAudioError


@pytest.mark.parametrize("sr", [1000, 1200])
def test_calibration_signal_is_finite_when_no_formant_fits_below_nyquist(sr):
    # before: every resonator lay above Nyquist, the signal was 0 / 0 = NaN, and the mp3 delay measurement fed it
    # to libmp3lame, whose failed assertion killed the whole Python process
    ref = calibration_signal(sr)
    assert np.isfinite(ref).all()
    assert np.max(np.abs(ref)) == pytest.approx(0.5)
    # the fallback must not change the signal (and so the delays measured and cached) at the usual rates
    ref = calibration_signal(16000)
    assert np.isfinite(ref).all() and ref.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(ref))
    freqs = np.fft.rfftfreq(len(ref), 1 / 16000)
    # the formant resonators still shape it: more energy near 600 Hz than near 5 kHz
    near = spectrum[(freqs > 500) & (freqs < 700)].mean()
    far = spectrum[(freqs > 4900) & (freqs < 5100)].mean()
    assert near > 10 * far


def test_codec_roundtrip_at_a_very_low_sample_rate_keeps_length_and_aligns():
    sr = 1000
    x = (0.1 * np.random.default_rng(0).standard_normal(sr)).astype(np.float32)
    for codec in ("aac", "opus", "mulaw"):
        y = codec_roundtrip(x, sr, codec)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        assert np.corrcoef(x, y)[0, 1] > 0.9, codec


def test_codec_bit_rate_out_of_range_names_the_key():
    with pytest.raises(ConfigError, match=r"data\.augment\[0\]\.bitrate_kbps: codec 'mp3': bit rate 200"):
        AugmentationPipeline([{"name": "codec", "codec": "mp3", "bitrate_kbps": [200, 300]}], key="data.augment")
    with pytest.raises(ConfigError, match=r"data\.augment\[0\]\.bitrate_kbps: codec 'g722' has no bit-rate"):
        AugmentationPipeline([{"name": "codec", "codec": "g722", "bitrate_kbps": [64, 64]}], key="data.augment")


def test_launder_chain_bit_rate_out_of_range_names_the_codec_key():
    spec = {"name": "launder_chain", "codecs": ["mp3"], "bitrate_kbps": {"mp3": [300, 400]}}
    with pytest.raises(ConfigError, match=r"data\.augment\[0\]\.bitrate_kbps\.mp3: codec 'mp3': bit rate 300"):
        AugmentationPipeline([spec], key="data.augment")
    spec = {"name": "launder_chain", "codecs": ["mulaw"], "bitrate_kbps": {"mulaw": [64, 64]}}
    with pytest.raises(ConfigError, match=r"data\.augment\[0\]\.bitrate_kbps\.mulaw: codec 'mulaw' has no"):
        AugmentationPipeline([spec], key="data.augment")


def _speechlike(n: int = 4096) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (0.1 * rng.standard_normal(n)).astype(np.float32)


def test_copy_synthesis_refuses_non_finite_samples():
    # before: one NaN made the whole vocoded copy NaN, returned (and written as a spoof) without a word
    x = _speechlike()
    x[100] = np.nan
    with pytest.raises(NonFiniteAudioError, match="1 non-finite"):
        copy_synthesis(x, 16000, n_iter=2)


def test_copy_synthesis_refuses_integer_pcm():
    # before: int16 samples were taken as floats 32768 times too loud; the copy came out peak-normalised to 0.999
    pcm = np.round(_speechlike() * 32767).astype(np.int16)
    with pytest.raises(TypeError, match="divide by 32768"):
        copy_synthesis(pcm, 16000, n_iter=2)
    # float samples (any float width) still go through, at the original's RMS
    x = _speechlike()
    y = copy_synthesis(x.astype(np.float64), 16000, n_iter=2)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)


def test_unavailable_codec_names_the_spec_that_asked_for_it(monkeypatch):
    import sddkit.augment.codecs as codecs

    # an FFmpeg build without libmp3lame, whatever this machine's build has
    monkeypatch.setattr(codecs, "_missing_part", lambda codec: f"codec {codec!r} needs the FFmpeg encoder (test)")
    # before: "codec 'mp3' needs the FFmpeg encoder ...", not saying which of the recipe's specs asked for it
    specs = [{"name": "clean"}, {"name": "one_of", "choices": [{"name": "gain"}, {"name": "codec", "codec": "mp3"}]}]
    with pytest.raises(codecs.CodecUnavailableError, match=r"^data\.augment\[1\]: codec 'mp3' needs the FFmpeg"):
        AugmentationPipeline(specs, key="data.augment")
