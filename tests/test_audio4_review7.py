"""Review 7 of audio reading and preparation (sddkit.audio, the crops of sddkit.data.dataset)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sddkit.audio import decode_audio_bytes, fixed_windows, load_audio, validate_waveform, window_starts
from sddkit.errors import AudioDecodeError, ConfigError


def _speech_like(n: int, sr: int = 16000) -> np.ndarray:
    t = np.arange(n) / sr
    return 0.3 * np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))


def _wav_bytes(samples: np.ndarray, sr: int, data_length: int) -> bytes:
    """A 16-bit mono RIFF/WAVE file of ``samples`` whose data chunk header declares ``data_length`` bytes."""
    pcm = np.round(samples * 32767).astype("<i2").tobytes()
    fmt = b"".join(v.to_bytes(k, "little") for v, k in ((1, 2), (1, 2), (sr, 4), (2 * sr, 4), (2, 2), (16, 2)))
    body = b"WAVE" + b"fmt " + (16).to_bytes(4, "little") + fmt + b"data" + data_length.to_bytes(4, "little") + pcm
    return b"RIFF" + ((data_length + 36) & 0xFFFFFFFF).to_bytes(4, "little") + body


@pytest.mark.parametrize("placeholder", [0x7FFFF000, 0x80000000, 0x7FFFFF00, 0x7FFFFFFF])
def test_a_wav_written_to_a_pipe_is_read_whole_not_refused_as_truncated(tmp_path: Path, placeholder: int) -> None:
    """SoX (``rec -t wav - | ...``: 0x7FFFF000) and arecord (to a pipe, or killed before it rewrote its header:
    0x80000000) leave a placeholder for the data length they do not know. Every player reads such a file to its
    end; it was refused as "truncated: the header declares 67108.86 s, the audio data ends at 3.00 s"."""
    x = _speech_like(48000)
    data = _wav_bytes(x, 16000, placeholder)
    path = tmp_path / "rec.wav"
    path.write_bytes(data)
    for y in (load_audio(path), decode_audio_bytes(data)):
        assert y.shape == (48000,)
        np.testing.assert_allclose(y, x, atol=1e-4)


def test_a_wav_cut_off_before_its_declared_length_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    path.write_bytes(_wav_bytes(_speech_like(48000), 16000, 200000))  # declares 6.25 s, holds 3 s
    with pytest.raises(AudioDecodeError, match="truncated"):
        load_audio(path)


@pytest.mark.parametrize("hop", [1.5, 2.0, True])
def test_window_hop_must_be_an_integer_like_the_length(hop) -> None:
    """``window_starts(10, 4, 1.5)`` gave starts [0 1 2 3 4 6] (np.arange's int64 steps of 1, then the end-aligned
    window): neither a hop of 1.5 nor of 1. The length is refused unless an integer; so is the hop now."""
    with pytest.raises(ValueError, match=r"hop must be in \[1, length=4\] \(an integer\).*got"):
        window_starts(10, 4, hop)
    with pytest.raises(ValueError, match="hop must be"):
        fixed_windows(np.zeros(10, np.float32), 4, hop)
    np.testing.assert_array_equal(window_starts(10, 4, np.int64(3)), [0, 3, 6])


@pytest.mark.parametrize("rate", [np.int64(16000), np.int32(16000)])
def test_a_numpy_integer_sample_rate_is_a_sample_rate(tmp_path: Path, rate) -> None:
    """A rate read from a pandas column or a numpy array is a numpy integer: it was refused as
    "sample_rate must be a positive integer, got np.int64(16000)", where the Detector accepts it."""
    x = _speech_like(16000).astype(np.float32)
    y = validate_waveform(x, rate)
    assert y.shape == (16000,)
    path = tmp_path / "a.wav"
    path.write_bytes(_wav_bytes(x, 22050, 2 * x.size))
    assert load_audio(path, sample_rate=rate).shape == load_audio(path).shape
    assert decode_audio_bytes(path.read_bytes(), sample_rate=rate).shape == load_audio(path).shape
    with pytest.raises(ConfigError, match="sample_rate must be a positive integer"):
        validate_waveform(x, np.int64(0))


def _mp3(x: np.ndarray, sr: int) -> bytes:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="MP3")
    return buf.getvalue()


def _tone(hz: float, seconds: float, sr: int) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(round(seconds * sr)) / sr)).astype(np.float32)


def _band_rms(x: np.ndarray, lo: float, hi: float, sr: int = 16000) -> float:
    spec = np.fft.rfft(x * np.hanning(x.size))
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    return float(np.sqrt(np.mean(np.abs(spec[(freqs >= lo) & (freqs < hi)]) ** 2)))


def test_a_stream_whose_rate_rises_mid_way_keeps_the_band_of_its_later_part(tmp_path: Path) -> None:
    """Two MP3 files joined with ``cat`` (1 s at 8 kHz, then 2 s at 44.1 kHz): FFmpeg decodes each part at its own
    rate, and all of it was brought to the first part's 8 kHz: the 6 kHz tone of the 44.1 kHz part was gone
    (everything above 4 kHz taken from it before the resampling to 16 kHz)."""
    data = _mp3(_tone(1000, 1.0, 8000), 8000) + _mp3(_tone(6000, 2.0, 44100), 44100)
    path = tmp_path / "joined.mp3"
    path.write_bytes(data)
    for y in (load_audio(path), decode_audio_bytes(data)):
        assert 2.9 * 16000 < y.size < 3.3 * 16000
        second = y[int(1.5 * 16000) : int(2.7 * 16000)]
        assert _band_rms(second, 5500, 6500) > 100 * _band_rms(second, 500, 1500)  # the 6 kHz tone is there
        first = y[int(0.2 * 16000) : int(0.8 * 16000)]
        assert _band_rms(first, 500, 1500) > 100 * _band_rms(first, 5500, 6500)  # and the 1 kHz one before it
