"""Sixth review of audio decoding (review 10): a long file at a high native rate is resampled block by block as it
is decoded, so its native-rate samples are never held whole (a 590 s FLAC at 192 kHz, a small upload, held 0.45 GB
of them; docs/benchmarks.md, "Decoding memory of a high-rate file"), with the samples of the one-shot path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

import sddkit.audio.io as audio_io
from sddkit.audio import decode_audio_bytes, load_audio
from sddkit.errors import AudioTooLongError, NonFiniteAudioError, SilentAudioError

_HIGH = 192000
# lowered in the tests so that a few seconds of synthetic audio take the streamed path
_SMALL_THRESHOLD = 50_000
# soxr's one-shot resampler, kept for the references: the ``streamed`` fixture bars its use by the module
_ONE_SHOT_RESAMPLE = soxr.resample


def _noisy_tone(sr: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * rng.standard_normal(t.size)
    chans = [x * (1 - 0.3 * c) + 0.01 * rng.standard_normal(t.size) for c in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32) if channels > 1 else x.astype(np.float32)


def _one_shot(path_or_bytes: str | Path | bytes) -> np.ndarray:
    """What the one-shot path computes: the whole file decoded by libsndfile, mixed to mono, resampled by soxr."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    data, sr = sf.read(src, dtype="float32", always_2d=True)
    mono = np.mean(data, axis=1, dtype=np.float32)
    return _ONE_SHOT_RESAMPLE(mono, sr, 16000, quality="HQ") if sr != 16000 else mono


def _flac_bytes(x: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="FLAC", subtype=subtype)
    return buf.getvalue()


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lowers the streaming threshold and the read block (several blocks per file); forbids the one-shot resampler
    (whose use would mean the native-rate audio was held whole); returns the frames fed to the stream."""
    # raising=False: on code without the stream, the tests fail on the one-shot resampler, not on a missing name
    monkeypatch.setattr(audio_io, "_STREAM_RESAMPLE_FRAMES", _SMALL_THRESHOLD, raising=False)
    monkeypatch.setattr(audio_io, "_READ_BLOCK", 4096)
    fed: list[int] = []
    resampler = getattr(audio_io, "_StreamResampler", None)
    feed = resampler.feed if resampler is not None else None

    def counting_feed(self, block: np.ndarray) -> None:
        fed.append(block.shape[0])
        feed(self, block)

    def no_one_shot(*args, **kwargs):
        raise AssertionError("the one-shot resampler was used on a long high-rate file")

    if resampler is not None:
        monkeypatch.setattr(resampler, "feed", counting_feed)
    monkeypatch.setattr(audio_io.soxr, "resample", no_one_shot)
    return fed


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sr", [_HIGH, 96000, 44100, 8000])
def test_a_long_file_is_resampled_as_it_is_decoded_with_the_samples_of_the_one_shot_path(
    tmp_path: Path, streamed: list[int], sr: int, channels: int
) -> None:
    seconds = 8.3 if sr < 16000 else 2.3  # over the threshold (upsampled from 8 kHz too)
    data = _flac_bytes(_noisy_tone(sr, seconds, channels), sr)
    path = tmp_path / "long.flac"
    path.write_bytes(data)
    expected = _one_shot(data)
    for y in (load_audio(path), decode_audio_bytes(data, name="long.flac")):
        assert y.dtype == np.float32 and y.shape == expected.shape
        assert float(np.abs(y - expected).max()) < 1e-5
    assert sum(streamed) == 2 * round(sr * seconds)  # every native frame went through the stream, twice
    assert max(streamed) <= 4096  # block by block: never the whole file at once


def test_a_file_whose_length_is_not_believed_switches_to_the_stream_once_it_grows_long(
    monkeypatch: pytest.MonkeyPatch, streamed: list[int]
) -> None:
    # A declared length is believed only as far as the file's bytes could hold it; with none believed (here: no
    # frame per byte), the blocks are gathered first, then fed to the stream once they pass the threshold.
    monkeypatch.setattr(audio_io, "_MAX_FRAMES_PER_BYTE", 0)
    data = _flac_bytes(_noisy_tone(_HIGH, 1.7, 2), _HIGH)
    y = decode_audio_bytes(data, max_duration=None)
    expected = _one_shot(data)
    assert y.shape == expected.shape and float(np.abs(y - expected).max()) < 1e-5
    assert sum(streamed) == round(_HIGH * 1.7)
    assert max(streamed) <= _SMALL_THRESHOLD  # what was gathered before the switch, then block by block


def test_the_duration_limit_still_stops_decoding_early_on_the_streamed_path(streamed: list[int]) -> None:
    # 2.4 s against a 2 s limit is within the header's margin: decoding counts and stops one sample past the limit
    data = _flac_bytes(_noisy_tone(_HIGH, 2.4), _HIGH)
    with pytest.raises(AudioTooLongError, match="longer than max_duration 2.0 s"):
        decode_audio_bytes(data, max_duration=2.0)
    assert sum(streamed) <= 2 * _HIGH + 1
    # a header clearly over the limit is refused before any decoding
    streamed.clear()
    with pytest.raises(AudioTooLongError, match="not decoded"):
        decode_audio_bytes(data, max_duration=1.0)
    assert streamed == []
    # within the limit it is accepted
    assert decode_audio_bytes(data, max_duration=3.0).shape == (round(16000 * 2.4),)


def _messages(data: bytes, monkeypatch: pytest.MonkeyPatch, **kwargs) -> tuple[str, str]:
    """The error message of the one-shot path and of the streamed path for ``data``."""
    found = []
    for threshold in (1 << 40, _SMALL_THRESHOLD):
        monkeypatch.setattr(audio_io, "_STREAM_RESAMPLE_FRAMES", threshold, raising=False)
        with pytest.raises((NonFiniteAudioError, SilentAudioError)) as info:
            decode_audio_bytes(data, name="x.flac", **kwargs)
        found.append(f"{type(info.value).__name__}: {info.value}")
    return found[0], found[1]


def test_non_finite_samples_are_counted_and_refused_as_on_the_one_shot_path(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _noisy_tone(_HIGH, 1.5)
    x[[10, 100_000, 200_000]] = [np.nan, np.inf, -np.inf]
    buf = io.BytesIO()
    sf.write(buf, x, _HIGH, format="WAV", subtype="FLOAT")
    one_shot, streamed_msg = _messages(buf.getvalue(), monkeypatch)
    assert one_shot == streamed_msg == "NonFiniteAudioError: x.flac: 3 NaN/Inf sample(s)"


@pytest.mark.parametrize("offset", [0.0, 0.25])
def test_silence_and_a_bare_dc_offset_are_judged_at_the_native_rate_as_on_the_one_shot_path(
    monkeypatch: pytest.MonkeyPatch, offset: float
) -> None:
    x = np.full(round(_HIGH * 1.5), offset, dtype=np.float32)
    x[::7] += 3e-5  # dither of one LSB
    buf = io.BytesIO()
    sf.write(buf, x, _HIGH, format="WAV", subtype="FLOAT")
    one_shot, streamed_msg = _messages(buf.getvalue(), monkeypatch)
    assert one_shot == streamed_msg
    assert ("DC offset" in one_shot) == (offset != 0.0)
    monkeypatch.setattr(audio_io, "_STREAM_RESAMPLE_FRAMES", _SMALL_THRESHOLD)
    assert decode_audio_bytes(buf.getvalue(), allow_silent=True).shape == (24000,)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("fmt", ["FLAC", "WAV"])
def test_ordinary_files_keep_their_exact_samples(tmp_path: Path, fmt: str, sr: int, channels: int) -> None:
    # The bundled default model was measured on these: bit for bit what the one-shot path gives.
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, _noisy_tone(sr, 3.1, channels, seed=sr), sr, format=fmt, subtype="PCM_16")
    y = load_audio(path)
    expected = _one_shot(path)
    assert y.dtype == np.float32 and y.shape == expected.shape
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("channels", [1, 2])
def test_mp3_and_native_rate_files_are_not_affected_by_the_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: int
) -> None:
    mp3 = tmp_path / "x.mp3"
    sf.write(mp3, _noisy_tone(44100, 3.0, channels), 44100, format="MP3")
    native = tmp_path / "x16k.flac"
    sf.write(native, _noisy_tone(16000, 5.0, channels), 16000, format="FLAC")
    before = [load_audio(mp3), load_audio(native)]
    monkeypatch.setattr(audio_io, "_STREAM_RESAMPLE_FRAMES", 1000, raising=False)
    after = [load_audio(mp3), load_audio(native)]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
