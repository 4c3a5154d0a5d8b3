"""Review audio26: files cut off mid-way (an incomplete download, upload or copy) that decoded up to the cut without
a word, and were scored as whole files: an MP3 whose Xing frame counts its frames, a Matroska/WebM file whose track
declares its length, and a WAV of ADPCM or GSM 6.10 samples. Each is refused as truncated now, as a cut-off FLAC,
PCM WAV or MP4 was already; whole files, and files whose header declares no length, decode as before."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
import soundfile as sf

from sddkit.audio import decode_audio_bytes, load_audio
from sddkit.errors import AudioDecodeError

SR = 16000


def _tone(seconds: float, rate: int = SR) -> np.ndarray:
    """A 440 Hz tone with some noise: (T,) float64, peak about 0.4."""
    t = np.arange(round(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)


def _mp3(seconds: float = 3.0) -> bytes:
    """An MP3 written by libsndfile (LAME): its first frame is a Xing/Info frame counting the frames."""
    buf = io.BytesIO()
    sf.write(buf, _tone(seconds), SR, format="MP3")
    data = buf.getvalue()
    at = data.find(b"Xing") if b"Xing" in data[:200] else data.find(b"Info")
    assert 0 <= at < 200 and struct.unpack(">I", data[at + 4 : at + 8])[0] & 1, "the Xing frame counts the frames"
    return data


def _id3v2(payload: int) -> bytes:
    """An ID3v2.3 tag of one TXXX frame of ``payload`` bytes (cover art is this big): a syncsafe size in its header."""
    frame = b"TXXX" + struct.pack(">I", payload) + b"\x00\x00" + b"\x00" + b"a" * (payload - 1)
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + frame


def _assert_truncated(data: bytes, tmp_path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    for call in (lambda: load_audio(path), lambda: decode_audio_bytes(data, name=name)):
        with pytest.raises(AudioDecodeError, match="truncated: the header declares") as info:
            call()
        assert name in str(info.value)


def test_mp3_cut_off_is_refused_as_truncated(tmp_path):
    """A 3 s MP3 cut at 60 % of its bytes decoded to 1.8 s and was scored as a whole file: FFmpeg's length of it is
    the exact one its Xing frame counts, not a bitrate estimate, yet it was never compared with what decoded."""
    data = _mp3()
    whole = decode_audio_bytes(data)
    assert abs(whole.size - 3 * SR) < 0.01 * SR
    _assert_truncated(data[: int(len(data) * 0.6)], tmp_path, "cut.mp3")
    with pytest.raises(AudioDecodeError, match=r"declares 3\.00 s, the audio data ends at 1\.\d\d s"):
        decode_audio_bytes(data[: int(len(data) * 0.6)])


def test_mp3_behind_a_large_id3_tag_is_judged_by_its_xing_frame(tmp_path):
    """An ID3v2 tag (title, cover art) comes before the first frame: its syncsafe size is stepped over, also past the
    first 64 kB read, to find the Xing frame. The whole file decodes; cut off, it is refused."""
    data = _id3v2(80_000) + _mp3()
    whole = decode_audio_bytes(data)
    assert abs(whole.size - 3 * SR) < 0.01 * SR
    _assert_truncated(data[: 80_000 + int((len(data) - 80_000) * 0.5)], tmp_path, "tagged.mp3")


def _matroska(seconds: float, *, start_s: float = 0.0, fmt: str = "matroska") -> bytes:
    """FLAC in Matroska written by FFmpeg, which gives the track a DURATION tag before the audio; the audio's first
    sample at ``start_s`` on the timeline."""
    buf = io.BytesIO()
    samples = _tone(seconds).astype(np.float32)
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream("flac", rate=SR)
        stream.layout = "mono"
        step = 1024
        for i in range(0, samples.size, step):
            pcm = (samples[None, i : i + step] * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = SR, i + round(start_s * SR)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def test_matroska_cut_off_is_refused_as_truncated(tmp_path):
    """A 3 s FLAC-in-Matroska file cut at 60 % of its bytes decoded to its first 1.8 s without a word; its track's
    DURATION tag (which survives the cut) says 3 s. The tag gives where the track ends on the timeline: audio whose
    first sample is 1 s in (2 s of it, ending at 3 s) is judged by where its packets end, and is not taken for a
    cut-off file."""
    data = _matroska(3.0)
    assert abs(decode_audio_bytes(data).size - 3 * SR) < 0.01 * SR
    _assert_truncated(data[: int(len(data) * 0.6)], tmp_path, "cut.mka")
    late = _matroska(2.0, start_s=1.0)
    assert abs(decode_audio_bytes(late).size - 2 * SR) < 0.01 * SR
    _assert_truncated(late[: int(len(late) * 0.6)], tmp_path, "late.mka")


@pytest.mark.parametrize("subtype", ["IMA_ADPCM", "MS_ADPCM", "GSM610"])
def test_compressed_wav_cut_off_is_refused_as_truncated(tmp_path, subtype):
    """A WAV of ADPCM or GSM 6.10 samples (dictaphones, phone lines) cut in half decoded to half its length without
    a word: the data chunk's declared length was only compared for PCM, float and G.711 samples, whose bytes per
    frame are fixed. These codecs spend the same bytes on every block: the share of the declared bytes present is
    the share of the audio."""
    buf = io.BytesIO()
    sf.write(buf, _tone(3.0, 8000), 8000, format="WAV", subtype=subtype)
    data = buf.getvalue()
    assert abs(decode_audio_bytes(data).size - 3 * SR) < 0.15 * SR  # padded to a whole block
    _assert_truncated(data[: len(data) // 2], tmp_path, "cut.wav")
    # the length declared is the data chunk's bytes in seconds, as far as the bytes present tell (a block or so)
    with pytest.raises(AudioDecodeError, match=r"declares (2\.9|3\.[01])\d s, the audio data ends at 1\.[45]\d s"):
        decode_audio_bytes(data[: len(data) // 2])
