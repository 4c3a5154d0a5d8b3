"""Review 13 of audio decoding: a long file FFmpeg decodes (an MP4/ALAC, a Matroska/FLAC, an M4A, an MP3) at another
rate than the model's is resampled block by block as it is decoded, as libsndfile's were since review 10: it held its
native-rate audio whole (a 10-minute 192 kHz track, 0.46 GB of it), with the samples of the one-shot path; a stream
whose rate changes once it streams is decoded again whole, as before."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr

import sddkit.audio.io as audio_io
from sddkit.audio import decode_audio_bytes, load_audio
from sddkit.errors import AudioDecodeError, AudioTooLongError, NonFiniteAudioError

# lowered in the tests so that a few seconds of synthetic audio take the streamed path
_SMALL_THRESHOLD = 50_000
_ONE_SHOT_RESAMPLE = soxr.resample


def _noisy_tone(sr: int, seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    """(channels, N) float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([x * (1 - 0.3 * c) + 0.01 * rng.standard_normal(t.size) for c in range(channels)]).astype(
        np.float32
    )


def _mux(x: np.ndarray, sr: int, fmt: str, codec: str, sample_format: str) -> bytes:
    """(C, N) float32 ``x`` encoded by FFmpeg's ``codec`` into an in-memory ``fmt`` file."""
    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg build has no {codec} encoder")
    layout = {1: "mono", 2: "stereo"}[x.shape[0]]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        step = stream.codec_context.frame_size or 4096
        for start in range(0, x.shape[1], step):
            part = x[:, start : start + step]
            if sample_format == "s16":  # packed
                arr = np.ascontiguousarray((part * 32767).astype(np.int16).T.reshape(1, -1))
            elif sample_format == "s16p":
                arr = np.ascontiguousarray((part * 32767).astype(np.int16))
            else:
                arr = np.ascontiguousarray(part, dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(arr, format=sample_format, layout=layout)
            frame.sample_rate, frame.pts = sr, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _mp3(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x.T, sr, format="MP3")
    return buf.getvalue()


# (name, rate, file maker): what libsndfile cannot open (or, for MP3, leaves to FFmpeg), all with 2.3 s of stereo
_FFMPEG_FILES: list[tuple[str, int, Callable[[np.ndarray, int], bytes]]] = [
    ("flac.mka", 192000, lambda x, sr: _mux(x, sr, "matroska", "flac", "s16")),
    ("alac.m4a", 96000, lambda x, sr: _mux(x, sr, "mp4", "alac", "s16p")),
    ("aac.m4a", 48000, lambda x, sr: _mux(x, sr, "ipod", "aac", "fltp")),  # its edit list trims the last frame
    ("x.mp3", 44100, _mp3),
]


def _one_shot(data: bytes, monkeypatch: pytest.MonkeyPatch, **kwargs) -> np.ndarray:
    """What the one-shot path gives: the threshold out of reach."""
    monkeypatch.setattr(audio_io, "_STREAM_RESAMPLE_FRAMES", 1 << 40)
    return decode_audio_bytes(data, **kwargs)


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[int]]:
    """Call it to lower the threshold and the block size and forbid soxr's one-shot resampler (its use would mean
    the native-rate audio was held whole); it returns the sizes of the blocks fed to the stream."""
    fed: list[int] = []
    feed = audio_io._StreamResampler.feed

    def counting_feed(self, block: np.ndarray) -> None:
        fed.append(block.shape[0])
        feed(self, block)

    def no_one_shot(*args, **kwargs):
        raise AssertionError("the one-shot resampler was used on a long file at another rate")

    def start() -> list[int]:
        monkeypatch.setattr(audio_io, "_STREAM_RESAMPLE_FRAMES", _SMALL_THRESHOLD)
        monkeypatch.setattr(audio_io, "_READ_BLOCK", 4096)
        monkeypatch.setattr(audio_io._StreamResampler, "feed", counting_feed)
        monkeypatch.setattr(audio_io.soxr, "resample", no_one_shot)
        return fed

    return start


@pytest.mark.parametrize("believed", [True, False])
@pytest.mark.parametrize(("name", "sr", "make"), _FFMPEG_FILES, ids=[f[0] for f in _FFMPEG_FILES])
def test_a_long_file_ffmpeg_decodes_is_resampled_as_it_is_decoded_with_the_one_shot_samples(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    streamed: Callable[[], list[int]],
    name: str,
    sr: int,
    make,
    believed: bool,
) -> None:
    data = make(_noisy_tone(sr, 2.3), sr)
    path = tmp_path / name
    path.write_bytes(data)
    if not name.endswith(".mp3"):  # libsndfile opens an MP3, but leaves its decoding to FFmpeg (_decode_soundfile)
        with pytest.raises(RuntimeError):
            sf.info(str(path))
    expected = _one_shot(data, monkeypatch)
    native = audio_io._decode_pyav(str(path), label=None, max_duration=None)[0].size
    fed = streamed()
    if not believed:  # a header's length is believed as far as the file could hold it: here not at all
        monkeypatch.setattr(audio_io, "_MAX_FRAMES_PER_BYTE", 0)
    for y in (load_audio(path), decode_audio_bytes(data, name=name)):
        assert y.dtype == np.float32 and y.shape == expected.shape
        assert float(np.abs(y - expected).max()) < 1e-5
    assert sum(fed) == 2 * native  # every native frame (trimmed to an MP4's edit list) went through the stream
    assert native > 2 * _SMALL_THRESHOLD and len(fed) > 4  # block by block: never the whole file at once
    if believed:  # streamed from the start, as libsndfile's decoding is when the header declares a long file
        assert max(fed) <= 4096 + 16384  # a block and a frame (FFmpeg's FLAC frames at 192 kHz hold 16384)
    else:  # gathered up to the threshold (and the frame that passed it, less an MP4's last 2048), then by blocks
        assert _SMALL_THRESHOLD - 2048 < max(fed) <= _SMALL_THRESHOLD + 16384


def _peak_bytes(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, int]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_native_rate_audio_of_a_long_ffmpeg_file_is_never_held_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: Callable[[], list[int]]
) -> None:
    sr, seconds = 192000, 3.0
    path = tmp_path / "x.mka"
    path.write_bytes(_mux(_noisy_tone(sr, seconds), sr, "matroska", "flac", "s16"))
    native_bytes = round(sr * seconds) * 4  # the float32 mono mix
    monkeypatch.setattr(audio_io, "_READ_BLOCK", 4096)
    expected, whole = _peak_bytes(lambda: load_audio(path, max_duration=None))
    streamed()
    y, peak = _peak_bytes(lambda: load_audio(path, max_duration=None))
    np.testing.assert_array_equal(y, expected)
    # (about 0.45 of it here: the frames up to the threshold, the output, the decoder's frames; one-shot: 2)
    assert peak < 0.75 * native_bytes and peak < whole / 2, f"{peak} and {whole} bytes for {native_bytes}"


def test_a_stream_whose_rate_changes_after_it_began_to_stream_is_decoded_whole_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: Callable[[], list[int]]
) -> None:
    # MP3 files joined with cat: all parts are brought to the highest rate, which is known only at the end; the
    # first part (over the threshold) was resampled to 16 kHz already when the second began
    data = _mp3(_noisy_tone(22050, 3.0), 22050) + _mp3(_noisy_tone(44100, 1.0, seed=1), 44100)
    path = tmp_path / "joined.mp3"
    path.write_bytes(data)
    expected = _one_shot(data, monkeypatch)
    fed = streamed()
    monkeypatch.setattr(audio_io.soxr, "resample", _ONE_SHOT_RESAMPLE)  # the whole decoding's, as before
    for y in (load_audio(path), decode_audio_bytes(data)):
        np.testing.assert_array_equal(y, expected)
    assert fed  # the stream had begun, then the file was decoded again


def test_a_truncated_caf_and_the_duration_limit_are_refused_on_the_streamed_path(
    tmp_path: Path, streamed: Callable[[], list[int]]
) -> None:
    # libsndfile refuses to open a CAF cut off mid-way, FFmpeg decodes it: its native frames are counted, not the
    # resampled ones (48 kHz -> 16 kHz would read as two thirds missing)
    buf = io.BytesIO()
    sf.write(buf, _noisy_tone(48000, 3.0).T, 48000, format="CAF", subtype="PCM_16")
    data = buf.getvalue()
    fed = streamed()
    assert decode_audio_bytes(data).shape == (48000,)
    fed.clear()
    with pytest.raises(AudioDecodeError, match=r"truncated: the header declares 3.00 s, the audio data ends at 1\.\d"):
        decode_audio_bytes(data[: len(data) // 2])
    assert sum(fed) > _SMALL_THRESHOLD
    # 2.3 s against a 2 s limit is within the header's margin: decoding counts and stops one frame past the limit
    mka = _mux(_noisy_tone(192000, 2.3, channels=1), 192000, "matroska", "flac", "s16")
    fed.clear()
    with pytest.raises(AudioTooLongError, match=r"longer than max_duration 2.0 s \(decoding stopped"):
        decode_audio_bytes(mka, max_duration=2.0)
    assert 0 < sum(fed) <= 2 * 192000 + 16384


def test_non_finite_samples_of_a_long_ffmpeg_file_are_counted_as_on_the_one_shot_path(
    monkeypatch: pytest.MonkeyPatch, streamed: Callable[[], list[int]]
) -> None:
    x = _noisy_tone(96000, 1.5, channels=1)
    x[0, [10, 100_000, 140_000]] = [np.nan, np.inf, -np.inf]
    data = _mux(x, 96000, "matroska", "pcm_f32le", "flt")
    with pytest.raises(NonFiniteAudioError) as one_shot:
        _one_shot(data, monkeypatch, name="x.mka")
    fed = streamed()
    with pytest.raises(NonFiniteAudioError) as streamed_error:
        decode_audio_bytes(data, name="x.mka")
    assert str(streamed_error.value) == str(one_shot.value) == "x.mka: 3 NaN/Inf sample(s)"
    assert fed


def test_the_size_of_an_in_memory_file_is_read_without_copying_its_bytes():
    # a BytesIO made from bytes shares them until a buffer is exported: getbuffer() copied a whole upload
    from sddkit.audio.io import _source_size

    data = bytes(1 << 20)
    bio = io.BytesIO(data)
    assert _source_size(bio) == len(data)
    assert bio.getvalue() is data
