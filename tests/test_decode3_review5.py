"""Third review of decoding: several audio streams, float samples far over full scale, AAC priming, 5.1 mixes."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

import sddkit.audio.io as audio_io
from sddkit.audio import audio_info, decode_audio_bytes, load_audio, validate_waveform
from sddkit.errors import AudioDecodeError, AudioError

SR = 16000


def _tone(sr: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _encode(stream, x: np.ndarray, layout: str) -> list:
    """(C, N) float32 through ``stream``'s encoder -> its packets."""
    step = stream.codec_context.frame_size or 1024
    packets = []
    for start in range(0, x.shape[1], step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(x[:, start : start + step]), format="fltp", layout=layout
        )
        frame.sample_rate, frame.pts = stream.codec_context.sample_rate, start
        packets += stream.encode(frame)
    return packets + list(stream.encode())


def _two_track_mka(path: Path, first: str) -> np.ndarray:
    """A Matroska file of two AAC tracks: the first ``"empty"`` (no packet) or ``"garbage"`` (packets of random
    bytes, none decodable), the second a 1 s tone, which is returned."""
    if "aac" not in av.codecs_available:
        pytest.skip("FFmpeg build has no aac encoder")
    x = _tone(SR, 1.0)
    with av.open(str(path), "w", format="matroska") as container:
        broken = container.add_stream("aac", rate=SR, layout="mono")
        good = container.add_stream("aac", rate=SR, layout="mono")
        if first == "garbage":
            noise = np.random.default_rng(0)
            for packet in _encode(broken, x[None], "mono"):
                bad = av.Packet(noise.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                bad.pts, bad.dts, bad.time_base, bad.stream = packet.pts, packet.dts, packet.time_base, broken
                container.mux(bad)
        for packet in _encode(good, x[None], "mono"):
            container.mux(packet)
    return x


# --- several audio streams -------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["empty", "garbage"])
def test_a_broken_or_empty_first_audio_track_gives_way_to_the_next(tmp_path: Path, first: str) -> None:
    # only the first audio stream was decoded: an empty first track made the file "decode to zero samples"
    # (EmptyAudioError), an undecodable one "not a readable audio file", while the second track held the audio
    path = tmp_path / f"{first}_then_tone.mka"
    x = _two_track_mka(path, first)
    y = load_audio(path)
    assert abs(len(y) - len(x)) <= 1024  # AAC padding at the end
    assert np.corrcoef(y[: len(x)], x)[0, 1] > 0.99
    np.testing.assert_array_equal(decode_audio_bytes(path.read_bytes(), name=path.name), y)


def test_a_single_undecodable_audio_track_is_still_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mka"
    _two_track_mka(path, "garbage")
    with av.open(str(path)) as src, av.open(str(tmp_path / "only.mka"), "w", format="matroska") as dst:
        in_stream = src.streams.audio[0]
        out = dst.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.size:
                packet.stream = out
                dst.mux(packet)
    with pytest.raises(AudioDecodeError, match="not a readable audio file"):
        load_audio(tmp_path / "only.mka")


# --- float samples far over full scale --------------------------------------------------------------


@pytest.mark.parametrize("scale", [400.0, 32767.0])
def test_float_audio_far_over_full_scale_is_refused(tmp_path: Path, scale: float) -> None:
    # a float WAV holding 16-bit values unscaled was scored on a scale hundreds to thousands of times too loud
    path = tmp_path / "unscaled.wav"
    sf.write(str(path), _tone(SR, 1.0, amp=1.0) * scale, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"float samples belong in \[-1, 1\].*32768") as info:
        load_audio(path)
    assert str(path) in str(info.value)
    with pytest.raises(AudioError, match="integer PCM stored without scaling"):
        validate_waveform(_tone(SR, 1.0, amp=1.0) * scale, SR, path="x")


def test_float_audio_somewhat_over_full_scale_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "hot.wav"
    sf.write(str(path), _tone(SR, 1.0, amp=4.0), SR, subtype="FLOAT")  # +12 dBFS of headroom: not clipped
    assert np.abs(load_audio(path)).max() == pytest.approx(4.0, rel=1e-3)
    noise = np.random.default_rng(0).standard_normal(10 * SR).astype(np.float32)  # peaks near 5
    np.testing.assert_array_equal(validate_waveform(noise, SR), noise)


# --- AAC priming and padding ------------------------------------------------------------------------


@pytest.mark.parametrize("sr", [16000, 48000])
def test_an_m4a_decodes_to_the_length_its_edit_list_declares(tmp_path: Path, sr: int) -> None:
    # FFmpeg's mov muxer writes an edit list that skips the AAC encoder's 1024 priming samples and ends at the
    # input's length. The priming was skipped already (a burst at 0.25 s decodes at 0.25 s, not 1024 samples
    # late), but the last frame's padding was decoded past the end: up to 1023 samples (64 ms at 16 kHz)
    if "aac" not in av.codecs_available:
        pytest.skip("FFmpeg build has no aac encoder")
    x = np.zeros(sr + 333, np.float32)  # not a whole number of 1024-sample frames
    x[sr // 4 : sr // 4 + sr // 10] = _tone(sr, 0.1, freq=1000.0)
    path = tmp_path / "burst.m4a"
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sr, layout="mono")
        for packet in _encode(stream, x[None], "mono"):
            container.mux(packet)
    assert b"elst" in path.read_bytes()
    y, rate = audio_io._decode_pyav(str(path), label=None, max_duration=None)
    # the edit list counts in the movie's time scale (FFmpeg's: 1 ms): within 1 ms of the input's length
    assert rate == sr and abs(len(y) - len(x)) <= sr // 1000 and len(y) == audio_info(path).num_frames
    assert int(np.argmax(np.abs(y) > 0.1)) == int(np.argmax(np.abs(x) > 0.1))
    assert len(load_audio(path, sample_rate=sr)) == len(y)


# --- behaviour checked and kept (this passed before this review too) ---------------------------------


def test_a_5_1_mix_is_the_same_from_both_decoders(tmp_path: Path) -> None:
    # every channel, LFE included, weighs 1/6: the same samples give the same mono whatever the decoder and
    # whatever channel order the format uses
    ch = np.zeros((6, SR), np.float32)
    ch[2], ch[3] = _tone(SR, 1.0), _tone(SR, 1.0, freq=50.0)  # FC speech-band tone, LFE rumble
    sf.write(str(tmp_path / "s51.flac"), ch.T, SR)
    with av.open(str(tmp_path / "s51.mka"), "w", format="matroska") as container:
        stream = container.add_stream("flac", rate=SR, layout="5.1")
        for packet in _encode(stream, ch, "5.1"):
            container.mux(packet)
    by_soundfile, _ = audio_io._decode_soundfile(str(tmp_path / "s51.flac"), label=None, max_duration=None)
    by_ffmpeg, _ = audio_io._decode_pyav(str(tmp_path / "s51.mka"), label=None, max_duration=None)
    np.testing.assert_allclose(by_ffmpeg, by_soundfile, atol=1e-6)
    np.testing.assert_allclose(by_soundfile, ch.mean(axis=0), atol=1e-4)
