"""Real-world inputs met when scoring: DC offsets, crashed-recorder WAV headers, odd array types."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import sddkit
from sddkit.audio import audio_info, decode_audio_bytes, load_audio, validate_waveform
from sddkit.detectors import model_dir as md
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import (
    AudioDecodeError,
    AudioError,
    AudioTooLongError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
)
from sddkit.scoring import batch

SR = 16000


def _speechlike(seconds: float = 1.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """An amplitude-modulated harmonic signal: zero mean, speech-like crest factor."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(SR * seconds)) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t)) ** 2
    x = x * env + 0.01 * rng.standard_normal(t.size)
    return (amp * x / np.abs(x).max()).astype(np.float32)


class _Energy(nn.Module):
    """score = log RMS of the window (after removing its mean): finite for any audible window."""

    def __init__(self, bad: bool = False):
        super().__init__()
        self.bad = bad
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        s = torch.log((x - x.mean(1, keepdim=True)).pow(2).mean(1).sqrt() + 1e-9) + self.dummy
        if self.bad:
            s = torch.where(x.abs().amax(1) > 0.35, torch.full_like(s, math.nan), s)
        return DetectorOutput(logits=torch.stack([torch.zeros_like(s), s], 1), score=s, embedding=None, stats={})


@pytest.fixture
def energy_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(md.ARCHITECTURES, "energy_review", lambda cfg: _Energy(**cfg))
    return md.save_model_dir(
        tmp_path / "energy",
        _Energy(),
        model_config={},
        architecture="energy_review",
        inference={"window_samples": 4000},
    )


# --- DC offsets ------------------------------------------------------------------------------


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "PCM_U8"])
@pytest.mark.parametrize("level", [0.2, -0.5])
def test_dc_only_file_is_refused_like_silence(tmp_path, subtype, level):
    """A constant offset carries no speech: it was scored (a confident-looking score about nothing)."""
    path = tmp_path / "dc.wav"
    sf.write(str(path), np.full(SR * 2, level, np.float32), SR, subtype=subtype)
    with pytest.raises(SilentAudioError, match="DC offset"):
        load_audio(path)
    assert load_audio(path, allow_silent=True).shape == (SR * 2,)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_dc_only_is_refused_at_any_native_rate(tmp_path, rate):
    """Resampling a constant rings at both ends; the check must look at the native-rate signal."""
    path = tmp_path / "dc.flac"
    sf.write(str(path), np.full(rate * 2, 0.25, np.float32), rate, subtype="PCM_16")
    with pytest.raises(SilentAudioError, match="DC offset"):
        load_audio(path)
    with pytest.raises(SilentAudioError, match="DC offset"):
        decode_audio_bytes(path.read_bytes(), name="dc.flac")


def test_one_sample_file_is_too_short_not_a_dc_offset(tmp_path, energy_dir):
    path = tmp_path / "one.wav"
    sf.write(str(path), np.array([0.3], np.float32), SR, subtype="PCM_16")
    assert load_audio(path).shape == (1,)
    with pytest.raises(AudioError, match="too short"):
        sddkit.load_detector(energy_dir).score_file(path)


def test_dc_with_dither_is_refused_but_quiet_speech_on_dc_is_scored(tmp_path):
    rng = np.random.default_rng(1)
    dithered = 0.1 + rng.integers(-2, 3, SR).astype(np.float32) / 32768  # +-2 LSB of 16-bit around 0.1
    with pytest.raises(SilentAudioError, match="DC offset"):
        validate_waveform(dithered, SR)
    # near-silent speech (peak -60 dBFS, RMS about -75 dBFS) riding on a large offset is still speech
    quiet = 1e-3 * _speechlike() / np.abs(_speechlike()).max()
    assert validate_waveform(quiet + 0.4, SR).shape == (SR,)
    assert validate_waveform(quiet, SR).shape == (SR,)
    # the level rule is unchanged for zero-mean signals: -80 dBFS peak still decides
    assert validate_waveform(1.2e-4 * np.sign(_speechlike()), SR).shape == (SR,)


def test_dc_only_waveform_refused_by_score_and_score_many(energy_dir):
    det = sddkit.load_detector(energy_dir)
    with pytest.raises(SilentAudioError, match="DC offset"):
        det.score(np.full(SR, 0.3, np.float32), SR)
    with pytest.raises(SilentAudioError, match="DC offset"):
        det.score(np.full((2, 44100), -0.3, np.float32), 44100)
    with pytest.raises(SilentAudioError, match=r"waveforms\[1\]"):  # which of the list
        det.score_many([_speechlike(), np.full(SR, 0.3, np.float32)])


def test_dc_only_rows_in_sdd_score_and_service(tmp_path, energy_dir):
    from fastapi.testclient import TestClient

    from sddkit.cli.main import main
    from sddkit.service.app import create_app

    sf.write(str(tmp_path / "a_speech.wav"), _speechlike(), SR, subtype="PCM_16")
    sf.write(str(tmp_path / "b_dc.wav"), np.full(SR, 0.3, np.float32), SR, subtype="PCM_16")
    out = tmp_path / "s.jsonl"
    files = [str(tmp_path / "a_speech.wav"), str(tmp_path / "b_dc.wav")]
    assert main(["score", *files, "--model", str(energy_dir), "--out", str(out), "--quiet"]) == 0
    _, rows = batch.read_rows(out)
    assert rows[0]["error"] == "" and math.isfinite(rows[0]["score"])
    assert rows[1]["score"] is None and "DC offset" in rows[1]["error"]
    with TestClient(create_app(energy_dir)) as client:
        r = client.post("/v1/score", files={"file": ("b_dc.wav", (tmp_path / "b_dc.wav").read_bytes(), "audio/wav")})
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "silent_audio_error" and "DC offset" in r.json()["error"]["message"]


# --- WAV written by a recorder that never finalised its header --------------------------------


def _wav_with_sizes(x: np.ndarray, riff: int, data: int) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, x, SR, format="WAV", subtype="PCM_16")
    raw = bytearray(buf.getvalue())
    assert raw[36:40] == b"data"
    raw[4:8] = struct.pack("<I", riff)
    raw[40:44] = struct.pack("<I", data)
    return bytes(raw)


def test_wav_with_zero_data_size_is_decoded_to_the_end(tmp_path):
    """A recording cut off before its header was finalised declares 0 data bytes; FFmpeg (and players)
    read such a file to its end. It was refused as "decodes to zero samples"."""
    x = _speechlike(1.5)
    path = tmp_path / "crashed.wav"
    path.write_bytes(_wav_with_sizes(x, 36, 0))
    y = load_audio(path)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1 / 32768)
    assert decode_audio_bytes(path.read_bytes()).shape == x.shape
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.num_frames) == (SR, 1, x.size)
    # the duration limit still holds (decoding stops there)
    with pytest.raises(AudioTooLongError):
        load_audio(path, max_duration=1.0)


# --- odd array types --------------------------------------------------------------------------


def test_int64_array_gets_a_clear_reason_not_silence():
    """np.array of int16-range values is int64: scaled by 2**63 it read as "silent (-292 dBFS)"."""
    pcm = np.round(_speechlike() * 32767).astype(np.int64)
    with pytest.raises(AudioError, match="64-bit integer"):
        validate_waveform(pcm, SR)
    with pytest.raises(AudioError, match="64-bit integer"):
        validate_waveform(pcm.astype(np.uint64), SR)


def test_bfloat16_tensor_is_scored(energy_dir):
    det = sddkit.load_detector(energy_dir)
    x = _speechlike()
    r = det.score(torch.from_numpy(x).to(torch.bfloat16), SR)
    # bf16 rounding moves this log-RMS score by ~1e-5; a 5 % level error would move it by 0.049
    assert r.score == pytest.approx(det.score(x, SR).score, abs=1e-3)


def test_a_whole_float_sample_rate_is_a_rate(energy_dir):
    # 16000.0 or np.float64(44100) (what some readers return) was refused as "not a positive integer"
    det = sddkit.load_detector(energy_dir)
    x = _speechlike()
    expected = det.score(x, SR).score
    assert det.score(x, float(SR)).score == expected and det.score(x, np.float64(SR)).score == expected
    for bad in (16000.5, float("nan"), float("inf"), True, -16000.0, 0.0, "16000"):
        with pytest.raises(AudioError, match="sample_rate must be a positive integer"):
            det.score(x, bad)


def test_score_many_names_the_failing_waveform(energy_dir):
    det = sddkit.load_detector(energy_dir)
    with pytest.raises(SilentAudioError, match=r"waveforms\[2\]"):
        det.score_many([_speechlike(), _speechlike(seed=1), np.zeros(SR, np.float32)])
    with pytest.raises(AudioError, match=r"waveforms\[1\].*too short"):
        det.score_many([_speechlike(), _speechlike(0.01)])


# --- a model that returns NaN for some input ------------------------------------------------------


@pytest.fixture
def nan_dir(tmp_path, monkeypatch):
    """A model whose score is NaN for loud windows (as an fp16 overflow would make it)."""
    monkeypatch.setitem(md.ARCHITECTURES, "energy_review", lambda cfg: _Energy(**cfg))
    return md.save_model_dir(
        tmp_path / "nan",
        _Energy(bad=True),
        model_config={"bad": True},
        architecture="energy_review",
        inference={"window_samples": 4000},
    )


def _signed(sign: float) -> np.ndarray:
    """Loud (NaN windows in ``nan_dir``'s model) for sign > 0, else quiet enough."""
    return _speechlike(amp=0.45 if sign > 0 else 0.3)


def test_non_finite_model_score_is_an_error_not_a_spoof_decision(nan_dir):
    """NaN >= threshold is False: a NaN score silently became decision "spoof" (and NaN in JSON lines)."""
    from sddkit.errors import CheckpointError

    det = sddkit.load_detector(nan_dir)
    assert math.isfinite(det.score(_signed(-1), SR).score)
    with pytest.raises(CheckpointError, match="non-finite"):
        det.score(_signed(1), SR)
    with pytest.raises(CheckpointError, match=r"waveforms\[1\].*non-finite"):
        det.score_many([_signed(-1), _signed(1)])


def test_non_finite_model_score_is_an_error_row_and_the_batch_goes_on(tmp_path, nan_dir):
    import json

    from fastapi.testclient import TestClient

    from sddkit.cli.main import main
    from sddkit.service.app import create_app

    for i, sign in enumerate([1, -1, 1]):
        sf.write(str(tmp_path / f"{i}.wav"), _signed(sign), SR, subtype="FLOAT")
    files = [str(tmp_path / f"{i}.wav") for i in range(3)]
    out = tmp_path / "s.jsonl"
    assert main(["score", *files, "--model", str(nan_dir), "--out", str(out), "--quiet", "--workers", "0"]) == 0
    lines = out.read_text().splitlines()
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON output")) for line in lines]
    assert [r["error"] != "" for r in rows] == [True, False, True]
    assert "non-finite" in rows[0]["error"] and rows[0]["score"] is None and rows[0]["decision"] is None
    assert math.isfinite(rows[1]["score"])
    with TestClient(create_app(nan_dir)) as client:
        r = client.post("/v1/score", files={"file": ("0.wav", (tmp_path / "0.wav").read_bytes(), "audio/wav")})
    assert r.status_code == 500 and r.json()["error"]["type"] == "non_finite_score"
    assert "non-finite" in r.json()["error"]["message"]


# --- messages ---------------------------------------------------------------------------------


def test_broken_mp3_message_does_not_claim_the_file_is_missing(tmp_path):
    """libsndfile answers "File does not exist or is not a regular file (possibly a pipe?)" for an MPEG
    stream it cannot decode: about an upload or a file that exists, that reads as a lost file."""
    import io

    buf = io.BytesIO()
    sf.write(buf, _speechlike(), SR, format="MP3")
    head = buf.getvalue()[:300]
    path = tmp_path / "cut.mp3"
    path.write_bytes(head)
    for call in (lambda: load_audio(path), lambda: decode_audio_bytes(head, name="cut.mp3")):
        with pytest.raises(AudioError) as info:
            call()
        message = str(info.value)
        assert "does not exist" not in message and "pipe" not in message, message
        assert "not a readable audio file" in message


# --- a header that lies about the duration ------------------------------------------------------


def _mp3_declaring_frames(frames: int) -> bytes:
    """A 1.5 s MP3 whose Xing header claims ``frames`` MPEG frames (a broken or truncated VBR file)."""
    import io

    buf = io.BytesIO()
    sf.write(buf, _speechlike(1.5), SR, format="MP3")
    raw = bytearray(buf.getvalue())
    at = raw.find(b"Xing")
    if at < 0 or not struct.unpack(">I", raw[at + 4 : at + 8])[0] & 1:
        pytest.skip("this libsndfile writes no Xing frame count")
    raw[at + 8 : at + 12] = struct.pack(">I", frames)
    return bytes(raw)


def test_header_claiming_hours_for_a_small_file_is_not_trusted(tmp_path):
    """A 1.5 s MP3 (a few kB) whose Xing header claims 100 hours was refused as "too long (not
    decoded)"; a few kB cannot hold that much audio at any real bitrate, so the header is a lie and the
    file is decoded (which still stops at max_duration). Decoded to its end, it falls short of the frames its
    Xing frame counts: refused as truncated, as a WAV or FLAC whose header declares more than it holds is
    (review audio26: it was scored as a whole file)."""
    data = _mp3_declaring_frames(600_000)  # 576-sample frames at 16 kHz: 6 h
    path = tmp_path / "lying.mp3"
    path.write_bytes(data)
    assert audio_info(path).duration_s > 3600  # what the header says
    for call in (lambda: load_audio(path), lambda: decode_audio_bytes(data, name="lying.mp3")):
        with pytest.raises(AudioDecodeError, match=r"truncated: .* the audio data ends at 1\.[45]\d s"):
            call()
    with pytest.raises(AudioTooLongError, match="decoding stopped"):
        load_audio(path, max_duration=1.0)


def test_plausible_long_header_is_still_rejected_without_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(str(path), _speechlike(3.0), SR, subtype="PCM_16")
    reads = []
    original = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: reads.append(1) or original(self, *a, **k))
    with pytest.raises(AudioTooLongError, match="header declares 3.0 s"):
        load_audio(path, max_duration=1.0)
    assert reads == []


# --- a click in silence -------------------------------------------------------------------------


def test_a_click_in_silence_is_too_little_sound_to_score(tmp_path, energy_dir):
    """One click in 3 s of digital zero passed the silence check (its peak is loud) and got a
    confident-looking score; like a file shorter than the model's minimum, it holds 10 ms of sound."""
    det = sddkit.load_detector(energy_dir)
    click = np.zeros(3 * SR, np.float32)
    click[SR] = 0.9
    with pytest.raises(AudioError, match=r"only 10 ms of sound"):
        det.score(click, SR)
    path = tmp_path / "click.wav"
    sf.write(str(path), click, SR, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"only 10 ms of sound"):
        det.score_file(path)
    # a short word in a long silence is scored: 150 ms of sound is over the 100 ms minimum
    word = np.zeros(3 * SR, np.float32)
    word[SR : SR + 2400] = _speechlike(0.15)
    assert math.isfinite(det.score(word, SR).score)
    # and so is quiet speech, even at the edge of the silence check (peak -79 dBFS): the level of a
    # recording does not decide what is sound
    for peak in (1e-3, 1.1e-4):
        quiet = peak * word / np.abs(word).max()
        assert math.isfinite(det.score(quiet, SR).score)
    # a click in dither is no more sound than a click in digital zero
    dithered = click + np.random.default_rng(0).integers(-2, 3, click.size).astype(np.float32) / 32768
    with pytest.raises(AudioError, match=r"only 10 ms of sound"):
        det.score(dithered, SR)


# --- not a regular file -------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_not_a_regular_file_rather_than_empty(tmp_path):
    """A FIFO (or a link to /dev/zero) named .wav was reported as "file is empty (0 bytes)"."""
    import os

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioError, match="not a regular file") as info:
        load_audio(fifo)  # must not block opening the pipe
    assert "0 bytes" not in str(info.value)
    if os.path.exists("/dev/zero"):
        link = tmp_path / "zero.wav"
        link.symlink_to("/dev/zero")
        with pytest.raises(AudioError, match="not a regular file"):
            load_audio(link)


def test_lying_header_does_not_make_the_decoder_allocate_the_whole_limit(tmp_path):
    """Reading "up to max_duration" in one call allocated max_duration of audio at the native rate
    and channel count up front (230 MB for a few-kB 48 kHz stereo MP3 claiming hours): per HTTP
    request, a memory amplifier. Decoding goes block by block, mixed to mono as it goes."""
    import io
    import tracemalloc

    x = _speechlike(1.0)
    x48 = np.repeat(x, 3)  # 48 kHz, crude but fine
    buf = io.BytesIO()
    sf.write(buf, np.stack([x48, -0.5 * x48], axis=1), 48000, format="MP3")
    raw = bytearray(buf.getvalue())
    at = raw.find(b"Xing")
    if at < 0 or not struct.unpack(">I", raw[at + 4 : at + 8])[0] & 1:
        pytest.skip("this libsndfile writes no Xing frame count")
    raw[at + 8 : at + 12] = struct.pack(">I", 10_000_000)
    tracemalloc.start()
    try:
        # decoded to its end (1 s), then refused: its Xing frame counts hours (review audio26)
        with pytest.raises(AudioDecodeError, match=r"truncated: .* the audio data ends at 1\.[0-2]\d s"):
            decode_audio_bytes(bytes(raw), max_duration=600.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"


def test_empty_wav_with_metadata_after_its_data_chunk_stays_empty(tmp_path):
    """The 0-byte data chunk of a genuinely empty WAV may be followed by other chunks (LIST, id3):
    FFmpeg would read those bytes as samples; they are metadata, not audio."""
    import io

    buf = io.BytesIO()
    sf.write(buf, np.zeros(0, np.float32), SR, format="WAV", subtype="PCM_16")
    head = bytearray(buf.getvalue())
    assert head[36:40] == b"data" and len(head) == 44
    text = b"INFOISFT" + struct.pack("<I", 20000) + b"x" * 20000
    raw = head + b"LIST" + struct.pack("<I", len(text)) + text
    raw[4:8] = struct.pack("<I", len(raw) - 8)
    path = tmp_path / "empty_with_list.wav"
    path.write_bytes(bytes(raw))
    with pytest.raises(EmptyAudioError):
        load_audio(path)
    with pytest.raises(EmptyAudioError):
        decode_audio_bytes(bytes(raw))


def test_too_short_message_never_shows_the_minimum_itself(energy_dir):
    """1599 samples (99.94 ms) were refused as "100 ms of audio is too short (minimum: 100 ms)"."""
    det = sddkit.load_detector(energy_dir)
    with pytest.raises(AudioError, match=r"99 ms of audio is too short.*minimum: 100 ms"):
        det.score(_speechlike(1599 / SR), SR)
    assert math.isfinite(det.score(_speechlike(0.1), SR).score)


def _vbr_mp3_without_xing(x: np.ndarray) -> bytes:
    """``x`` at 16 kHz as a VBR MP3 whose first (Xing/Info) frame is removed, as stream recorders and
    cutting tools leave it: its length can then only be estimated from the first frames' bitrate."""
    import io

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", SR, 1, format="MP3", bitrate_mode="VARIABLE", compression_level=0.0) as f:
        f.write(x)
    raw = buf.getvalue()
    if b"Xing" not in raw[:2000] or raw[0] != 0xFF:
        pytest.skip("this libsndfile writes no leading Xing frame")
    h = int.from_bytes(raw[:4], "big")
    version, bitrate_index, rate_index, padding = (h >> 19) & 3, (h >> 12) & 15, (h >> 10) & 3, (h >> 9) & 1
    assert version == 2  # MPEG-2 at 16 kHz: Layer III, 72 * bitrate / rate bytes per frame
    bitrate = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160][bitrate_index] * 1000
    rate = [22050, 24000, 16000][rate_index]
    length = 72 * bitrate // rate + padding
    return raw[length:]


def test_mp3_duration_estimated_from_the_bitrate_does_not_reject_the_file(tmp_path):
    """20 s of VBR MP3 that opens with 10 s of silence (encoded at the lowest bitrate), without a Xing
    frame: libsndfile and FFmpeg estimate 70 s from the first frames' bitrate. That estimate was taken
    for a header declaration and the file refused as "header declares 70.4 s ... (not decoded)"."""
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(10 * SR), 0.5 * rng.standard_normal(10 * SR).clip(-2, 2)]).astype(np.float32)
    data = _vbr_mp3_without_xing(x)
    path = tmp_path / "vbr.mp3"
    path.write_bytes(data)
    assert audio_info(path).duration_s > 40  # the estimate
    y = load_audio(path, max_duration=30.0)
    assert 19.5 * SR < y.size < 20.5 * SR
    assert 19.5 * SR < decode_audio_bytes(data, max_duration=30.0).size < 20.5 * SR
    with pytest.raises(AudioTooLongError, match="decoding stopped"):  # really too long: decoding says so
        load_audio(path, max_duration=15.0)


def test_a_few_samples_at_a_high_rate_are_too_short_not_zero_samples(tmp_path):
    """1 sample at 48 kHz resamples to none at 16 kHz: it was refused as "zero samples" (EmptyAudioError),
    about a file that holds a sample."""
    from sddkit.errors import AudioTooShortError

    path = tmp_path / "tiny.wav"
    sf.write(str(path), np.array([0.3], np.float32), 48000)
    with pytest.raises(AudioTooShortError, match="too short"):
        load_audio(path)


def test_mp3_longer_than_its_estimated_length_is_decoded_to_the_end(tmp_path):
    """The mirror case: a VBR MP3 without a Xing frame that opens loud (high bitrate) is estimated
    short, and libsndfile stopped reading there: 20 s of audio silently scored as its first 15 s."""
    rng = np.random.default_rng(0)
    x = np.concatenate([0.5 * rng.standard_normal(10 * SR).clip(-2, 2), 0.01 * _speechlike(10.0)]).astype(np.float32)
    data = _vbr_mp3_without_xing(x)
    path = tmp_path / "vbr.mp3"
    path.write_bytes(data)
    assert audio_info(path).duration_s < 18  # the estimate
    assert 19.5 * SR < load_audio(path).size < 20.5 * SR
    assert 19.5 * SR < decode_audio_bytes(data).size < 20.5 * SR


def test_mp3_with_exact_length_decodes_as_before(tmp_path):
    import io

    x = _speechlike(2.0)
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="MP3")
    path = tmp_path / "a.mp3"
    path.write_bytes(buf.getvalue())
    y = load_audio(path)
    assert y.shape == x.shape  # gapless: encoder delay and padding removed
    ref, _ = sf.read(str(path), dtype="float32")
    np.testing.assert_allclose(y, ref, atol=1e-4)


def test_a_truncated_flac_is_an_error_not_half_a_file(tmp_path):
    """libsndfile decodes a FLAC cut off mid-way up to the cut, silently; its header says how long it was."""
    import soundfile as sf

    from sddkit.audio import decode_audio_bytes, load_audio
    from sddkit.errors import AudioDecodeError

    x = (0.1 * np.random.default_rng(0).standard_normal(4 * 16000)).astype(np.float32)
    whole = tmp_path / "whole.flac"
    sf.write(whole, x, 16000)
    data = whole.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    assert load_audio(whole).shape == (4 * 16000,)
    with pytest.raises(AudioDecodeError, match=r"truncated: the header declares 4.00 s, the audio data ends at"):
        load_audio(cut)
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_audio_bytes(data[: len(data) // 2])  # an upload cut off on the way to the service


def test_an_empty_multichannel_array_is_empty_audio(energy_dir):
    # the mean over its zero-length axis used to make NaN samples, reported as "2 NaN/Inf sample(s)"
    det = sddkit.load_detector(energy_dir)
    with pytest.raises(EmptyAudioError, match="zero samples"):
        det.score(np.zeros((2, 0), np.float32), SR)


@pytest.mark.parametrize("shape", [(SR,), (2, SR)])
def test_float64_samples_beyond_float32_are_named_as_such(energy_dir, shape):
    # the cast to float32 overflowed and the error blamed NaN/Inf samples the input did not hold
    det = sddkit.load_detector(energy_dir)
    with pytest.raises(AudioError, match=r"up to 1e\+300 do not fit in float32"):
        det.score(np.full(shape, 1e300), SR)
    x = np.full(shape, 0.1)
    x[..., 5] = np.nan
    with pytest.raises(NonFiniteAudioError, match="1 NaN/Inf|2 NaN/Inf"):
        det.score(x, SR)
