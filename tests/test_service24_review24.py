"""Review 24 of the service and the Python API: what a practitioner meets online."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

import sddkit.audio.io as audio_io
from sddkit.audio import decode_audio_bytes
from sddkit.errors import AudioDecodeError, SilentAudioError

SR = 16000


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(SR * seconds)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _many_track_mka(n_before: int, before: str) -> bytes:
    """A Matroska file of ``n_before`` audio tracks, ``"empty"`` (no packet) or ``"garbage"`` (one AAC packet of random
    bytes each, undecodable), then a track holding a 1 s tone (16-bit PCM)."""
    if before == "garbage" and "aac" not in av.codecs_available:
        pytest.skip("FFmpeg build has no aac encoder")
    buf = io.BytesIO()
    noise = np.random.default_rng(0)
    with av.open(buf, "w", format="matroska") as container:
        codec = "aac" if before == "garbage" else "pcm_s16le"
        others = [container.add_stream(codec, rate=SR, layout="mono") for _ in range(n_before)]
        good = container.add_stream("pcm_s16le", rate=SR, layout="mono")
        if before == "garbage":
            for stream in others:
                bad = av.Packet(noise.integers(0, 256, 300, dtype=np.uint8).tobytes())
                bad.pts = bad.dts = 0
                bad.stream = stream
                container.mux(bad)
        frame = av.AudioFrame.from_ndarray((_tone(1.0) * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = SR
        for packet in good.encode(frame) + good.encode(None):
            container.mux(packet)
    return buf.getvalue()


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the files FFmpeg opens (each a pass over the whole file)."""
    calls: list[int] = []
    real = av.open

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(audio_io.av, "open", counting)
    return calls


# --- decoding time an upload can cost -------------------------------------------------------------------------------


def test_empty_audio_tracks_before_the_audio_cost_one_pass_not_one_each(opens: list[int]) -> None:
    # each audio stream that decoded to nothing was followed by a new open and demux of the whole file: a 10 MB upload
    # of 1000 empty tracks before its real one took over a minute of CPU, holding a scoring slot of `sdd serve`
    data = _many_track_mka(60, "empty")
    opens.clear()  # not the one that wrote it
    y = decode_audio_bytes(data, name="many.mka")
    assert y.shape[0] == SR
    assert np.corrcoef(y, _tone(1.0))[0, 1] > 0.999
    assert len(opens) <= 3  # the first track, the pass that finds the tracks holding packets, the real track


def test_undecodable_tracks_are_tried_a_bounded_number_of_times(opens: list[int]) -> None:
    data = _many_track_mka(2 * audio_io._MAX_STREAMS_TRIED, "garbage")
    opens.clear()
    refused = r"many\.mka: none of the 8 audio streams tried .* 9 more hold data: not tried"
    with pytest.raises(AudioDecodeError, match=refused):
        decode_audio_bytes(data, name="many.mka")
    assert len(opens) <= audio_io._MAX_STREAMS_TRIED + 2


def test_a_few_undecodable_tracks_still_give_way_to_the_audio() -> None:
    data = _many_track_mka(audio_io._MAX_STREAMS_TRIED - 1, "garbage")
    assert decode_audio_bytes(data, name="few.mka").shape[0] == SR


def test_the_service_answers_a_track_flood_with_a_422() -> None:
    from sddkit.service.app import create_app

    data = _many_track_mka(2 * audio_io._MAX_STREAMS_TRIED, "garbage")
    with TestClient(create_app(None)) as client:
        res = client.post("/v1/score", files={"file": ("many.mka", data, "audio/x-matroska")})
    assert res.status_code == 422
    assert res.json()["error"]["type"] == "audio_decode_error"


# --- memory an upload of many channels can take ----------------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (frames, channels) of every block libsndfile hands back."""
    shapes: list[tuple[int, int]] = []
    real = sf.SoundFile.read

    def recording(self, *args, **kwargs):
        data = real(self, *args, **kwargs)
        shapes.append(tuple(data.shape) if data.ndim == 2 else (data.shape[0], 1))
        return data

    monkeypatch.setattr(sf.SoundFile, "read", recording)
    return shapes


def _wav(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_a_many_channel_file_is_read_in_blocks_of_bounded_size(reads: list[tuple[int, int]]) -> None:
    # each read took _READ_BLOCK frames of every channel: 267 MB per block of a 255-channel Ogg Vorbis upload, which
    # holds about 11 kB per second of audio (a 112 kB upload took 470 MB of memory to decode)
    channels = 64
    x = np.repeat(_tone(1.0)[:, None], channels, axis=1) * np.linspace(0.2, 1.0, channels, dtype=np.float32)
    y = decode_audio_bytes(_wav(x), name="array.wav")
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-4)
    assert reads and max(frames * ch for frames, ch in reads) <= audio_io._READ_BLOCK


def test_the_cancelled_channels_note_reads_in_bounded_blocks_too(reads: list[tuple[int, int]]) -> None:
    channels = 64
    x = np.repeat(_tone(1.0)[:, None], channels, axis=1) * np.where(np.arange(channels) % 2, 1.0, -1.0)
    with pytest.raises(SilentAudioError, match="cancel each other"):
        decode_audio_bytes(_wav(x.astype(np.float32)), name="inverted.wav")
    assert reads and max(frames * ch for frames, ch in reads) <= audio_io._READ_BLOCK
