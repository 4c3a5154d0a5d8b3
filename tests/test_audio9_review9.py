"""Fifth review of audio decoding (review 9): whole files must never be refused as truncated, and odd files must
give clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sddkit.audio import audio_info, decode_audio_bytes, load_audio
from sddkit.errors import AudioDecodeError, AudioTooLongError


def _sine(sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    x = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)], axis=1) if channels > 1 else x


def _wav_with_block_align(x: np.ndarray, sr: int, block_align: int, subtype: str = "PCM_16") -> bytes:
    """A plain RIFF/WAVE file of ``x`` whose fmt chunk states ``block_align`` (soundfile writes the right one)."""
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    data = bytearray(buf.getvalue())
    fmt = data.index(b"fmt ")
    data[fmt + 8 + 12 : fmt + 8 + 14] = block_align.to_bytes(2, "little")
    return bytes(data)


@pytest.mark.parametrize(("channels", "block_align"), [(2, 2), (1, 1), (2, 3)])
def test_a_whole_wav_whose_header_states_a_wrong_block_align_is_not_refused_as_truncated(
    tmp_path: Path, channels: int, block_align: int
) -> None:
    # A hand-rolled WAV writer that puts bytes-per-sample where the block align (bytes per frame) belongs writes 2
    # for 16-bit stereo. libsndfile ignores a wrong block align and reads the whole file, but the truncation check
    # divided the data length by it, took the file for one declaring twice its frames, and refused a complete
    # recording as "truncated: the header declares 4.00 s, the audio data ends at 2.00 s".
    x = _sine(16000, 2.0, channels)
    data = _wav_with_block_align(x, 16000, block_align)
    path = tmp_path / "odd_block_align.wav"
    path.write_bytes(data)
    expected = x.mean(axis=1) if channels > 1 else x
    np.testing.assert_allclose(load_audio(path), expected, atol=1e-4)
    assert decode_audio_bytes(data).shape == (32000,)
    # cut off half-way, such a file is still refused, with the lengths it really has
    cut = data[: 44 + (len(data) - 44) // 2]
    with pytest.raises(AudioDecodeError, match=r"truncated: the header declares 2.00 s, the audio data ends at 1.00"):
        decode_audio_bytes(cut, name="cut.wav")


@pytest.mark.parametrize("subtype", ["ULAW", "ALAW", "PCM_32", "DOUBLE"])
def test_truncated_wavs_of_other_sample_formats_are_still_refused(subtype: str) -> None:
    buf = io.BytesIO()
    sf.write(buf, _sine(16000, 2.0, 2), 16000, format="WAV", subtype=subtype)
    data = buf.getvalue()
    assert decode_audio_bytes(data).shape == (32000,)
    with pytest.raises(AudioDecodeError, match=r"truncated: the header declares 2.00 s"):
        decode_audio_bytes(data[: len(data) // 2], name="cut.wav")


def test_audio_info_of_an_mpeg_file_without_a_frame_does_not_say_the_file_does_not_exist(tmp_path: Path) -> None:
    # libsndfile answers "File does not exist or is not a regular file (possibly a pipe?)" for an MPEG file it
    # cannot decode; load_audio said what it means, audio_info passed it on for a file that plainly exists.
    path = tmp_path / "tag_only.mp3"
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00")  # an ID3 tag and no audio frame
    for read in (load_audio, audio_info):
        with pytest.raises(AudioDecodeError) as caught:
            read(path)
        assert "does not exist" not in str(caught.value)
        assert "not a regular file" not in str(caught.value)
        assert "no decodable stream" in str(caught.value)


def _video_with_short_audio(path: Path, fmt: str, video_s: int, audio_s: float) -> None:
    """A 1 fps noise video of ``video_s`` seconds with ``audio_s`` seconds of 48 kHz audio (AAC or Opus)."""
    import fractions

    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream("libvpx" if fmt == "webm" else "mpeg4", rate=1)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = out.add_stream("libopus" if fmt == "webm" else "aac", rate=48000, layout="mono")
        x, pts = _sine(48000, audio_s)[None], 0
        for i in range(0, x.shape[1], 960):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i : i + 960]), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, pts, fractions.Fraction(1, 48000)
            pts += frame.samples
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
        for i in range(video_s):
            picture = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), format="rgb24")
            picture.pts, picture.time_base = i, fractions.Fraction(1, 1)
            for packet in video.encode(picture):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)


@pytest.mark.parametrize(("fmt", "suffix"), [("matroska", ".mkv"), ("webm", ".webm")])
def test_a_matroska_video_longer_than_the_limit_with_short_audio_is_judged_by_its_audio(
    tmp_path: Path, fmt: str, suffix: str
) -> None:
    # FFmpeg gives a Matroska track no duration of its own, only the segment's, which is the video's: a 60 s video
    # with 3 s of audio was refused unread ("header declares 60.0 s, over max_duration 10") and audio_info said the
    # audio lasted 60 s. Each track's DURATION tag holds its own length (the MP4 tracks' were read already).
    path = tmp_path / f"clip{suffix}"
    _video_with_short_audio(path, fmt, video_s=60, audio_s=3.0)
    assert path.stat().st_size > 60 * 500  # big enough for the header's 60 s to be believed
    assert load_audio(path, max_duration=10).shape[0] == pytest.approx(48000, abs=400)
    info = audio_info(path)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.num_frames == pytest.approx(3.0 * 48000, abs=2400)
    # an audio track itself over the limit is still refused from its header, before decoding
    long_audio = tmp_path / f"long{suffix}"
    _video_with_short_audio(long_audio, fmt, video_s=60, audio_s=30.0)
    with pytest.raises(AudioTooLongError, match="header declares 30.0 s"):
        load_audio(long_audio, max_duration=10)


@pytest.mark.parametrize("subtype", ["OPUS", "VORBIS"])
def test_a_chained_ogg_file_is_decoded_whole_not_only_its_first_stream(tmp_path: Path, subtype: str) -> None:
    # Ogg files joined end to end (cat, a recorded radio stream) form one valid chained file that players and
    # FFmpeg play through; libsndfile read only the first stream, and two thirds of this file were dropped
    # without a word (scored as a 2 s file).
    parts = []
    for gain in (0.2, 0.4, 0.3):
        buf = io.BytesIO()
        sf.write(buf, gain * _sine(16000, 2.0), 16000, format="OGG", subtype=subtype)
        parts.append(buf.getvalue())
    data = b"".join(parts)
    path = tmp_path / "chained.ogg"
    path.write_bytes(data)
    y = load_audio(path)
    assert y.shape[0] == pytest.approx(3 * 32000, abs=800)
    assert decode_audio_bytes(data).shape == y.shape
    # the loudness of every part is there: the middle one is twice the first
    first, middle = np.abs(y[4000:28000]).max(), np.abs(y[36000:60000]).max()
    assert middle / first == pytest.approx(2.0, rel=0.1)
    assert audio_info(path).duration_s == pytest.approx(6.0, abs=0.05)
    # a single Ogg file is still read by libsndfile, exactly as before
    single = tmp_path / "single.ogg"
    single.write_bytes(parts[0])
    assert load_audio(single).shape == (32000,)
    assert audio_info(single).duration_s == 2.0
