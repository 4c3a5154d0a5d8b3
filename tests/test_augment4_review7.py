"""Review 7 of the augmentations: input dtypes and finiteness, output aliasing, the codec delay cache, and errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sddkit.augment.conditions import apply_condition
from sddkit.augment.pipeline import AugmentationPipeline, build_augmentation
from sddkit.errors import ConfigError

SR = 16000


def test_integer_pcm_is_refused_not_taken_as_loud_floats():
    # scipy.io.wavfile.read returns int16: it was augmented as floats up to 32767 (a 90 dB too loud "waveform")
    pcm = (np.random.default_rng(0).standard_normal(1600) * 3000).astype(np.int16)
    with pytest.raises(TypeError, match=r"int16.*divide by 32768"):
        apply_condition("noise_white_20db", pcm, SR)
    with pytest.raises(TypeError, match="float samples"):
        build_augmentation("gain")(np.zeros(100, dtype=complex), SR, 0)
    # floats of any width are still taken (and returned as float32)
    y = build_augmentation("gain")(np.zeros(100, dtype=np.float64), SR, 0)
    assert y.dtype == np.float32


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "band_filter", "kind": "lowpass", "high_hz": [9000.0, 9000.0]},  # edge above Nyquist: left open
        {"name": "band_filter", "kind": "highpass", "low_hz": [0.0, 0.0]},
        {"name": "compose", "augmentations": []},
    ],
)
def test_output_never_aliases_the_input(spec):
    x = np.full(400, 0.1, dtype=np.float32)
    y = build_augmentation(spec)(x, SR, np.random.default_rng(0))
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(x, y)
    y *= 2.0  # the caller owns its output
    assert np.all(x == np.float32(0.1))


def test_pipeline_parse_errors_name_the_given_key():
    with pytest.raises(ConfigError, match=r"data\.augment\[1\]: unknown key\(s\) 'snr'"):
        AugmentationPipeline(["gain", {"name": "noise", "snr": [5, 10]}], key="data.augment")


def test_launder_chain_unknown_bitrate_codec_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown codec 'mp4' \(did you mean 'mp3'\?\); codecs: mp3, aac"):
        build_augmentation({"name": "launder_chain", "bitrate_kbps": {"mp4": [16, 32]}})


def test_codec_delay_cache_holds_every_bit_rate_a_config_can_draw(monkeypatch):
    # a wide bit-rate range draws hundreds of whole-kb/s rates: with 256 entries, delays were measured again and again
    from sddkit.augment import codecs

    calls = []

    def fake_roundtrip(x, sr, codec, bit_rate, fast):
        calls.append((codec, bit_rate))
        return x

    monkeypatch.setattr(codecs, "_raw_roundtrip", fake_roundtrip)
    monkeypatch.setattr(codecs, "calibration_signal", lambda sr: np.zeros(16, dtype=np.float32))  # quick to correlate
    codecs.codec_delay.cache_clear()
    try:
        keys = [("mp3", k * 1000) for k in range(8, 161)] + [("opus", k * 1000) for k in range(6, 257)]
        for codec, rate in keys:  # 404 bit rates, as {mp3: [8, 160], opus: [6, 256]} draws them
            codecs.codec_delay(codec, SR, rate, True)
        for codec, rate in keys:
            codecs.codec_delay(codec, SR, rate, True)
        assert len(calls) == len(keys)  # each measured once
    finally:
        codecs.codec_delay.cache_clear()  # no fake delay may outlive the test


@pytest.mark.parametrize("codec", ["mulaw", "g722", "mp3"])
def test_non_finite_input_is_refused_before_any_codec_sees_it(codec):
    # mulaw/g722 (integer PCM) coded a NaN as finite noise, so the output check never saw it; libmp3lame aborted the
    # Python process on it (a C assertion), which no try/except in a DataLoader worker or `sdd robustness` survives
    from sddkit.augment.codecs import codec_roundtrip

    x = np.full(4000, 0.1, dtype=np.float32)
    x[100] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        build_augmentation({"name": "codec", "codec": codec})(x, SR, 0)
    with pytest.raises(ValueError, match="1 non-finite"):
        codec_roundtrip(x, SR, codec)


def test_sdd_list_description_of_codec_names_every_codec():
    # `sdd list augmentation` shows the first docstring line; it left out vorbis_native
    from sddkit.augment import AUGMENTATIONS
    from sddkit.augment.codecs import CODECS

    text = AUGMENTATIONS.get("codec").description
    assert set(CODECS) <= set(re.findall(r"\w+", text)), text
