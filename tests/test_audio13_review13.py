"""Review 13 of audio decoding: AIFF, AU, W64, NIST SPHERE and CAF files cut off mid-way are refused as truncated,
as FLAC, WAV and MP4 ones are (they were decoded up to the cut without a word); Ogg declares no length and stays
decoded up to the cut; and the FFmpeg path stops at the duration limit at a high sample rate, as libsndfile's does."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

import sddkit.audio.io as audio_io
from sddkit.audio import decode_audio_bytes, load_audio
from sddkit.errors import AudioDecodeError, AudioTooLongError

SR = 16000


def _stereo(seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    tone = 0.4 * np.sin(2 * np.pi * 440.0 * t)
    noise = 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([tone + noise, 0.5 * tone - noise], axis=1).astype(np.float32)


def _encode(x: np.ndarray, sr: int, fmt: str, subtype: str, endian: str = "FILE") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype, endian=endian)
    return buf.getvalue()


# libsndfile reads a cut-off AIFF, AU, W64 or NIST file up to the cut and reports the frames present; it refuses to
# open a cut-off CAF, which FFmpeg then decodes up to the cut (an ALAC one from its packet table).
_DECLARING = [
    ("AIFF", "PCM_16", "FILE"),
    ("AIFF", "FLOAT", "FILE"),
    ("AIFF", "PCM_16", "LITTLE"),  # AIFC "sowt"
    ("AIFF", "ULAW", "FILE"),
    ("AU", "PCM_16", "FILE"),
    ("AU", "PCM_24", "LITTLE"),  # "dns.", the little-endian AU libsndfile writes
    ("AU", "ALAW", "FILE"),
    ("W64", "PCM_16", "FILE"),
    ("W64", "PCM_U8", "FILE"),
    ("NIST", "PCM_16", "FILE"),
    ("NIST", "PCM_24", "FILE"),
    ("CAF", "PCM_16", "FILE"),
    ("CAF", "ALAC_16", "FILE"),
]


@pytest.mark.parametrize(("fmt", "subtype", "endian"), _DECLARING)
def test_a_file_cut_off_before_the_length_its_header_declares_is_refused_as_truncated(
    tmp_path: Path, fmt: str, subtype: str, endian: str
) -> None:
    x = _stereo()
    data = _encode(x, SR, fmt, subtype, endian)
    whole = tmp_path / f"whole.{fmt.lower()}"
    whole.write_bytes(data)
    expected = len(load_audio(whole))
    assert expected == 32000  # a whole file still reads, all of it
    assert len(decode_audio_bytes(data)) == expected
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) // 2])
    # (a NIST header takes 1 kB, libsndfile's CAF one 4 kB: half the bytes hold less than half the audio)
    with pytest.raises(
        AudioDecodeError, match=r"truncated: the header declares 2.00 s, the audio data ends at [01]\.\d"
    ):
        load_audio(cut)
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_audio_bytes(data[: len(data) // 2], name="upload")  # the service's path
    # a tenth lost is no rounding either; FFmpeg, which decodes a cut-off CAF, may decode an ALAC one's last packet
    # (4096 frames, an eighth of this file) short, so that much is let through there
    kept = 3 / 4 if subtype.startswith("ALAC") else 9 / 10
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_audio_bytes(data[: int(len(data) * kept)])


@pytest.mark.parametrize("fmt", ["AIFF", "AU", "NIST"])
def test_a_cut_off_file_stopped_at_the_limit_before_the_cut_is_too_long_as_before(fmt: str) -> None:
    data = _encode(_stereo(3.0), SR, fmt, "PCM_16")
    with pytest.raises(AudioTooLongError):
        decode_audio_bytes(data[: len(data) // 2], max_duration=1.0)


def _set(data: bytes, at: int, value: bytes) -> bytes:
    out = bytearray(data)
    out[at : at + len(value)] = value
    return bytes(out)


def test_lengths_a_writer_puts_in_the_header_when_it_does_not_know_it_are_not_believed() -> None:
    x = _stereo()
    aiff = _encode(x, SR, "AIFF", "PCM_16")
    frames_at = aiff.index(b"COMM") + 10  # chunk header (8 bytes), numChannels (2 bytes), numSampleFrames
    au = _encode(x, SR, "AU", "PCM_16")
    caf = _encode(x, SR, "CAF", "PCM_16")
    data_at = caf.index(b"data") + 4
    unknown = {
        "aiff, FFmpeg to a pipe": _set(aiff, frames_at, (0).to_bytes(4, "big")),
        "aiff, SoX to a pipe": _set(aiff, frames_at, (0x7F000000 // 4).to_bytes(4, "big")),
        "aiff, all ones": _set(aiff, frames_at, b"\xff\xff\xff\xff"),
        "au, a stream's unknown size": _set(au, 8, b"\xff\xff\xff\xff"),
        "caf, data up to the end of the file": _set(caf, data_at, (-1).to_bytes(8, "big", signed=True)),
    }
    for name, data in unknown.items():
        assert len(decode_audio_bytes(data, name=name)) == 32000, name
        # cut off, such a file is decoded up to the cut: nothing says where it should end
        assert 14000 < len(decode_audio_bytes(data[: len(data) // 2], name=name)) < 17000, name


def test_aiff_and_nist_files_of_other_writers_whose_header_is_right_are_read_whole() -> None:
    x = _stereo()
    pcm = (x * 32767).astype("<i2")
    head = (
        f"NIST_1A\n   1024\nsample_count -i {len(pcm)}\nsample_rate -i {SR}\nchannel_count -i 2\n"
        "sample_n_bytes -i 2\nsample_byte_format -s2 01\nsample_coding -s3 pcm\nend_head\n"
    ).encode()
    sphere = head.ljust(1024, b" ") + pcm.tobytes()
    assert len(decode_audio_bytes(sphere)) == 32000
    with pytest.raises(AudioDecodeError, match="truncated: the header declares 2.00 s"):
        decode_audio_bytes(sphere[: len(sphere) // 2])
    # an AIFF with a chunk of odd length (padded) before COMM, as hand-written by some tools
    aiff = _encode(x, SR, "AIFF", "PCM_16")
    odd = aiff[:12] + b"NAME\x00\x00\x00\x03abc\x00" + aiff[12:]
    odd = odd[:4] + (len(odd) - 8).to_bytes(4, "big") + odd[8:]
    assert len(decode_audio_bytes(odd)) == 32000
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_audio_bytes(odd[: len(odd) // 2])


@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_an_ogg_file_declares_no_length_and_is_decoded_up_to_the_cut(subtype: str) -> None:
    if subtype not in sf.available_subtypes("OGG"):
        pytest.skip(f"this libsndfile has no {subtype} encoder")
    x = _stereo(4.0, 48000)[:, 0].copy()
    data = _encode(x, 48000, "OGG", subtype)
    assert len(decode_audio_bytes(data)) == 64000
    # the last page's granule position is the only length an Ogg file has, and a cut-off file lost it
    cut = decode_audio_bytes(data[: len(data) // 2])
    assert 0 < len(cut) < 64000


class _Pipe(io.RawIOBase):
    """A write-only, unseekable sink: the muxer cannot go back to write the length in the header."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


def _streamed_flac(x: np.ndarray, rate: int, container: str) -> bytes:
    """FLAC of int16 mono ``x`` in ``container`` as FFmpeg writes it to a pipe: no length anywhere in its header."""
    pipe = _Pipe()
    with av.open(pipe, "w", format=container) as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        for start in range(0, len(x), 4608):
            frame = av.AudioFrame.from_ndarray(x[None, start : start + 4608], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return bytes(pipe.data)


@pytest.mark.parametrize("rate", [192000, 384000])
def test_ffmpeg_stops_decoding_a_high_rate_file_at_the_limit_and_refuses_it_as_libsndfile_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int
) -> None:
    x = (np.random.default_rng(1).standard_normal(3 * rate) * 3000).astype(np.int16)
    mka = tmp_path / "long.mka"
    mka.write_bytes(_streamed_flac(x, rate, "matroska"))
    with av.open(str(mka)) as probe:  # what makes the header guard pass: no length declared
        assert probe.duration is None and not probe.streams.audio[0].duration
    decoded = []
    iterate = audio_io._iter_pyav_mono

    def counting(*args, **kwargs):
        for chunk, chunk_rate in iterate(*args, **kwargs):
            decoded.append(chunk.shape[0])
            yield chunk, chunk_rate

    monkeypatch.setattr(audio_io, "_iter_pyav_mono", counting)
    with pytest.raises(AudioTooLongError, match=r"longer than max_duration 1.0 s \(decoding stopped"):
        load_audio(mka, max_duration=1.0)
    assert rate <= sum(decoded) <= rate + 2 * 4608  # the limit and a frame past it, not the 3 s of the file
    # libsndfile's path refuses the same audio the same way (a FLAC whose STREAMINFO has no length)
    flac = tmp_path / "long.flac"
    flac.write_bytes(_streamed_flac(x, rate, "flac"))
    assert sf.info(str(flac)).frames >= 2**62 or sf.info(str(flac)).frames == 0  # no length for the header guard
    decoded.clear()
    with pytest.raises(AudioTooLongError, match=r"longer than max_duration 1.0 s \(decoding stopped"):
        load_audio(flac, max_duration=1.0)
    assert not decoded  # read by libsndfile, not FFmpeg
    # within the limit, the high-rate file decodes whole, resampled to 16 kHz
    decoded.clear()
    assert len(load_audio(mka, max_duration=None)) == 48000
    assert sum(decoded) == 3 * rate
