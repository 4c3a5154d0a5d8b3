from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile as sf

import sddkit.audio.io as audio_io
from sddkit.audio import MIN_SAMPLE_RATE, AudioInfo, audio_info, decode_audio_bytes, load_audio, validate_waveform
from sddkit.errors import (
    AudioDecodeError,
    AudioError,
    AudioNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    ConfigError,
    EmptyAudioError,
    NonFiniteAudioError,
    SddkitError,
    SilentAudioError,
    UnsupportedSampleRateError,
)


def _sine(sr: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    mid = x[len(x) // 4 : 3 * len(x) // 4]
    spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    return float(np.argmax(spec) * sr / len(mid))


def _write_pyav(path, channels: np.ndarray, sr: int, fmt: str, codec: str, video: str | None = None) -> None:
    """Encode (C, N) float32 audio (and optionally a few black video frames) with PyAV."""
    for name in (codec, video):
        if name is not None and name not in av.codecs_available:
            pytest.skip(f"FFmpeg build has no {name} encoder")
    layout = {1: "mono", 2: "stereo"}[channels.shape[0]]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        if video is not None:
            vstream = container.add_stream(video, rate=25)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
            for _ in range(int(channels.shape[1] / sr * 25)):
                frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
        step = stream.codec_context.frame_size or 1024
        for start in range(0, channels.shape[1], step):
            chunk = np.ascontiguousarray(channels[:, start : start + step], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sr, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --- formats -------------------------------------------------------------------------------------


def _make(kind: str, path, x: np.ndarray, sr: int) -> None:
    stereo = np.stack([x, 0.5 * x])
    if kind in ("wav", "flac", "ogg"):
        sf.write(str(path), stereo.T, sr, format=kind.upper())
    elif kind == "mp3":
        _write_pyav(path, stereo, sr, "mp3", "libmp3lame")
    elif kind == "m4a":
        _write_pyav(path, stereo, sr, "ipod", "aac")
    elif kind == "opus":
        _write_pyav(path, stereo, sr, "opus", "libopus")
    elif kind == "mp4":
        _write_pyav(path, stereo, sr, "mp4", "aac", video="libx264" if "libx264" in av.codecs_available else "mpeg4")
    elif kind == "mkv":
        _write_pyav(path, stereo, sr, "matroska", "libopus", video="mpeg4")
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["wav", "flac", "ogg", "mp3", "m4a", "opus", "mp4", "mkv"])
def test_formats_decode_to_mono_16k(tmp_path, kind):
    sr = 48000
    path = tmp_path / f"tone.{kind}"
    _make(kind, path, _sine(sr, 0.5), sr)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    # lossy codecs add priming/padding samples (AAC: up to ~2 frames): allow 0.05 s
    assert abs(len(y) / 16000 - 0.5) < 0.05
    assert abs(_peak_hz(y) - 440.0) < 16000 / (len(y) // 2)
    assert np.array_equal(decode_audio_bytes(path.read_bytes(), name=path.name), y)
    info = audio_info(path)
    assert isinstance(info, AudioInfo)
    assert (info.sample_rate, info.channels) == (sr, 2)
    assert abs(info.duration_s - 0.5) < 0.05 and abs(info.num_frames / sr - info.duration_s) < 1e-3


def test_wav_int16_scaling_is_exact(tmp_path):
    pcm = np.array([0, 1, -1, 16384, -16384, 32767, -32768] * 100, dtype=np.int16)
    path = tmp_path / "pcm16.wav"
    sf.write(str(path), pcm, 16000, subtype="PCM_16")
    y = load_audio(path)
    np.testing.assert_array_equal(y, pcm.astype(np.float32) / 32768.0)
    assert y.min() == -1.0 and y.max() < 1.0


def test_pyav_integer_pcm_scaling(tmp_path):
    """Packed s16 and offset-binary u8 PCM decoded by FFmpeg are scaled like soundfile does."""
    pcm = np.array([0, 8192, -8192, 32767, -32768] * 400, dtype=np.int16)
    path = tmp_path / "pcm.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    np.testing.assert_array_equal(load_audio(path), pcm.astype(np.float32) / 32768.0)
    u8 = np.array([128, 192, 64, 255, 0] * 400, dtype=np.uint8)
    frame = av.AudioFrame.from_ndarray(u8[None, :], format="u8", layout="mono")
    np.testing.assert_array_equal(audio_io._frame_to_mono(frame), (u8.astype(np.float32) - 128) / 128)
    stereo = av.AudioFrame.from_ndarray(
        np.array([[100, -100, 300, -300]], dtype=np.int16), format="s16", layout="stereo"
    )
    # interleaved L R L R -> mean of each pair
    np.testing.assert_array_equal(audio_io._frame_to_mono(stereo), np.zeros(2, np.float32))


def test_stereo_44k1_to_mono_16k(tmp_path):
    sr = 44100
    left, right = _sine(sr, 1.5, freq=1000.0, amp=0.4), np.zeros(round(sr * 1.5), np.float32)
    path = tmp_path / "stereo.flac"
    sf.write(str(path), np.stack([left, right], axis=1), sr, subtype="PCM_24")
    y = load_audio(path)
    assert abs(len(y) - 24000) <= 1
    assert abs(_peak_hz(y) - 1000.0) < 2.0
    # mono = mean of the channels: a 0.4 sine and silence -> 0.2 amplitude
    assert abs(np.abs(y[1000:-1000]).max() - 0.2) < 2e-3
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.num_frames, info.format) == (sr, 2, len(left), "flac")


def test_resampled_length_and_other_rate(tmp_path):
    path = tmp_path / "8k.wav"
    sf.write(str(path), _sine(8000, 1.0, freq=300.0), 8000)
    assert len(load_audio(path)) == 16000
    assert len(load_audio(path, sample_rate=22050)) == 22050


# --- errors ---------------------------------------------------------------------------------------


def test_missing_and_directory(tmp_path):
    with pytest.raises(AudioNotFoundError, match="no such file") as exc:
        load_audio(tmp_path / "nope.wav")
    assert isinstance(exc.value, FileNotFoundError) and exc.value.path.endswith("nope.wav")
    with pytest.raises(AudioNotFoundError, match="directory"):
        load_audio(tmp_path)
    with pytest.raises(AudioNotFoundError):
        audio_info(tmp_path / "nope.wav")


@pytest.mark.parametrize("content", ["random", "truncated_header", "text"])
def test_undecodable_files(tmp_path, content):
    good = tmp_path / "good.wav"
    sf.write(str(good), _sine(16000, 1.0), 16000, subtype="PCM_16")
    data = {
        "random": np.random.default_rng(0).bytes(4096),
        "truncated_header": good.read_bytes()[:20],
        "text": b"this is not audio at all\n" * 40,
    }[content]
    path = tmp_path / "bad.wav"
    path.write_bytes(data)
    with pytest.raises(AudioDecodeError):
        load_audio(path)
    with pytest.raises(AudioDecodeError):
        decode_audio_bytes(data)
    with pytest.raises(AudioDecodeError):
        audio_info(path)


def test_video_without_audio_stream(tmp_path):
    path = tmp_path / "video_only.mp4"
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        load_audio(path)


def test_empty_file_and_zero_samples(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="0 bytes"):
        load_audio(empty)
    with pytest.raises(EmptyAudioError):
        decode_audio_bytes(b"")
    zero = tmp_path / "zero.wav"
    sf.write(str(zero), np.zeros(0, np.float32), 16000)
    with pytest.raises(EmptyAudioError, match="zero samples"):
        load_audio(zero)


def test_silent(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    with pytest.raises(SilentAudioError):
        load_audio(path)
    y = load_audio(path, allow_silent=True)
    assert len(y) == 16000 and not y.any()
    # a quiet but real signal is not silent
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), _sine(16000, 1.0, amp=1e-3), 16000, subtype="FLOAT")
    assert np.abs(load_audio(quiet)).max() > 9e-4


def test_near_silence_is_silent(tmp_path):
    """Dither of a few 16-bit LSB, and stereo channels that cancel in the mono mix, hold no signal:
    scoring them would give a confident decision about nothing."""
    rng = np.random.default_rng(0)
    dither = tmp_path / "dither.wav"
    sf.write(str(dither), rng.integers(-2, 3, 16000).astype(np.int16), 16000, subtype="PCM_16")
    with pytest.raises(SilentAudioError, match=r"dBFS, below -80 dBFS"):
        load_audio(dither)
    x = _sine(16000, 1.0, amp=0.5)
    cancel = tmp_path / "antiphase.wav"  # the mono mix is zero, or an LSB where rounding differs
    sf.write(str(cancel), np.stack([x, -x], axis=1), 16000, subtype="PCM_16")
    with pytest.raises(SilentAudioError):
        load_audio(cancel)
    # -70 dBFS peak is very quiet but still a signal
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), _sine(16000, 1.0, amp=10 ** (-70 / 20)), 16000, subtype="FLOAT")
    assert load_audio(quiet).shape == (16000,)


@pytest.mark.parametrize("rate", [1, 100, 3999])
def test_sample_rate_below_the_minimum_is_refused(tmp_path, rate):
    path = tmp_path / "low.wav"
    sf.write(str(path), np.random.default_rng(0).uniform(-0.5, 0.5, 400).astype(np.float32), rate)
    with pytest.raises(UnsupportedSampleRateError, match=f"{rate} Hz"):
        load_audio(path)
    with pytest.raises(UnsupportedSampleRateError):
        decode_audio_bytes(path.read_bytes(), name="low.wav")


def test_lowest_accepted_sample_rate(tmp_path):
    path = tmp_path / "4k.wav"
    sf.write(str(path), _sine(MIN_SAMPLE_RATE, 1.0, freq=440.0), MIN_SAMPLE_RATE)
    assert load_audio(path).shape == (16000,)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(tmp_path, bad):
    x = _sine(22050, 0.5)
    x[100] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(str(path), x, 22050, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="1 NaN/Inf"):
        load_audio(path)


def test_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(str(path), _sine(16000, 0.5), 16000)
    with pytest.raises(AudioTooShortError):
        load_audio(path, min_duration=1.0)
    assert len(load_audio(path, min_duration=0.5)) == 8000


def test_too_long_from_header_is_not_decoded(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(str(path), _sine(16000, 3.0), 16000)
    reads = []
    original = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: reads.append(1) or original(self, *a, **k))
    with pytest.raises(AudioTooLongError, match="header declares 3.0 s"):
        load_audio(path, max_duration=1.0)
    assert reads == []
    assert len(load_audio(path, max_duration=None)) == 48000 and len(reads) == 1


def test_too_long_pyav_header_is_not_decoded(tmp_path, monkeypatch):
    path = tmp_path / "long.m4a"
    _write_pyav(path, _sine(16000, 4.0)[None], 16000, "ipod", "aac")
    decoded = []
    original = audio_io._iter_pyav_mono
    monkeypatch.setattr(audio_io, "_iter_pyav_mono", lambda *a: decoded.append(1) or original(*a))
    with pytest.raises(AudioTooLongError, match="header declares"):
        load_audio(path, max_duration=2.0)
    assert decoded == []


def test_too_long_counted_while_decoding(tmp_path):
    """Just over the limit: the header is not trusted to reject, decoding stops at the limit."""
    wav = tmp_path / "slightly_long.wav"
    sf.write(str(wav), _sine(16000, 1.2), 16000)
    with pytest.raises(AudioTooLongError, match="decoding stopped"):
        load_audio(wav, max_duration=1.0)
    mkv = tmp_path / "slightly_long.mkv"
    _write_pyav(mkv, _sine(48000, 1.2)[None], 48000, "matroska", "libopus")
    with pytest.raises(AudioTooLongError, match="decoding stopped"):
        load_audio(mkv, max_duration=1.0)
    assert len(load_audio(wav, max_duration=1.2)) == 19200


def test_truncated_files(tmp_path):
    flac = tmp_path / "full.flac"
    x = _sine(16000, 2.0)
    sf.write(str(flac), x, 16000)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    # the frames before the cut decode, but the header's sample count shows the file is incomplete: an error,
    # not half a file scored as a whole one (it was, until 2026-12-02)
    with pytest.raises(AudioDecodeError, match="truncated"):
        load_audio(cut)
    m4a = tmp_path / "full.m4a"
    _write_pyav(m4a, x[None], 16000, "ipod", "aac")
    cut_m4a = tmp_path / "cut.m4a"
    cut_m4a.write_bytes(m4a.read_bytes()[: m4a.stat().st_size // 2])  # index (moov) lost
    with pytest.raises(AudioDecodeError):
        load_audio(cut_m4a)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "PCM_U8"])
def test_a_wav_cut_off_before_its_declared_data_length_is_refused(tmp_path, subtype):
    # libsndfile reports the frames present, not those the data chunk declares: half a download was scored
    full = tmp_path / "full.wav"
    sf.write(str(full), np.stack([_sine(16000, 3.0)] * 2, axis=1), 16000, subtype=subtype)
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match=r"truncated: the header declares 3.00 s, the audio data ends at 1.50"):
        load_audio(cut)
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_audio_bytes(data[: len(data) // 2])  # the service's path
    assert len(load_audio(full)) == 48000
    assert len(decode_audio_bytes(data + b"LIST\x04\x00\x00\x00abcd")) == 48000  # a chunk after the data is fine
    with pytest.raises(AudioTooLongError):  # decoding stopped at the limit before the cut: too long, as before
        load_audio(cut, max_duration=1.0)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        load_audio(tmp_path / "x.wav", sample_rate=0)
    with pytest.raises(ConfigError):
        decode_audio_bytes(b"abc", min_duration=2.0, max_duration=1.0)


def test_every_error_is_an_sddkit_error(tmp_path):
    for data in (b"\x00" * 3, b"RIFF\xff\xff\xff\xffWAVEfmt ", b"fLaC" + b"\xff" * 60, b"ID3" + b"\x00" * 100):
        with pytest.raises(SddkitError):
            decode_audio_bytes(data)


# --- validate_waveform -----------------------------------------------------------------------------


def test_validate_waveform():
    x = validate_waveform(np.array([0.1, -0.2, 0.3], dtype=np.float64), 16000)
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(validate_waveform(np.array([16384, -32768], np.int16), 16000), [0.5, -1.0])
    with pytest.raises(AudioError, match="1-D"):
        validate_waveform(np.zeros((2, 10)), 16000)
    with pytest.raises(EmptyAudioError):
        validate_waveform(np.zeros(0), 16000)
    with pytest.raises(NonFiniteAudioError):
        validate_waveform(np.array([0.1, np.nan]), 16000)
    with pytest.raises(SilentAudioError):
        validate_waveform(np.full(100, 1e-7), 16000)
    assert validate_waveform(np.full(100, 1e-7), 16000, allow_silent=True).shape == (100,)
    with pytest.raises(AudioTooShortError):
        validate_waveform(np.ones(800), 8000, min_duration=0.2)
    with pytest.raises(AudioTooLongError):
        validate_waveform(np.ones(2400), 8000, max_duration=0.2)
    # one sample of slack absorbs resampling rounding (a ramp: a constant offset alone is no signal)
    assert validate_waveform(np.linspace(-1, 1, 1601), 8000, max_duration=0.2).shape == (1601,)
    with pytest.raises(UnsupportedSampleRateError, match="1000 Hz is below the minimum 4000 Hz"):
        validate_waveform(np.ones(300), 1000)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("max_duration", [None, 10.0, 0.5])
def test_block_decoding_into_one_buffer_gives_the_whole_mono_mix(tmp_path, monkeypatch, channels, max_duration):
    # blocks are written into one buffer of the declared length (no second copy when they were joined)
    monkeypatch.setattr(audio_io, "_READ_BLOCK", 1000)  # many blocks, the last one partial
    x = np.random.default_rng(channels).uniform(-0.5, 0.5, (16_123, channels)).astype(np.float32)
    path = tmp_path / "x.flac"
    sf.write(str(path), x, 16000, subtype="PCM_24")
    expected = sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    if max_duration == 0.5:
        with pytest.raises(AudioTooLongError):
            load_audio(path, max_duration=max_duration)
        return
    np.testing.assert_array_equal(load_audio(path, max_duration=max_duration), expected)
