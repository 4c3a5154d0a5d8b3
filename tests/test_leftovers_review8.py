"""Leftovers of the twenty-sixth session's note mended in the twenty-seventh."""

from __future__ import annotations

import av
import numpy as np
import pytest
from scoring_support import save_tiny_lcnn

from sddkit.audio.files import list_audio_files
from sddkit.audio.io import load_audio
from sddkit.cli.main import main
from sddkit.scoring import batch

SR = 16000


def _tone() -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)


def _write(path, fmt: str, codec: str, rate: int = SR) -> None:
    """``path`` holding one second of a 440 Hz tone in container ``fmt`` with ``codec``, written by FFmpeg."""
    pcm = (_tone() * 32767).astype(np.int16)[None, :]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SR
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for part in resampler.resample(frame):
            for packet in stream.encode(part):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _write_sphere(path) -> None:
    """A NIST SPHERE file (the TIMIT / Switchboard format) of the tone, 16-bit little-endian PCM."""
    pcm = (_tone() * 32767).astype("<i2")
    header = (
        f"NIST_1A\n   1024\nsample_count -i {pcm.size}\nsample_rate -i {SR}\nchannel_count -i 1\n"
        "sample_n_bytes -i 2\nsample_byte_format -s2 01\nsample_coding -s3 pcm\nend_head\n"
    )
    path.write_bytes(header.encode().ljust(1024, b" ") + pcm.tobytes())


FORMATS = [
    ("au_call.au", "au", "pcm_s16be", SR),
    ("caf_call.caf", "caf", "pcm_s16le", SR),
    ("w64_call.w64", "w64", "pcm_s16le", SR),
    ("wv_call.wv", "wv", "wavpack", SR),
    ("amr_call.amr", "amr", "libopencore_amrnb", 8000),
    ("3gp_call.3gp", "3gp", "aac", SR),
    ("oga_call.oga", "ogg", "libopus", 48000),
]


@pytest.fixture
def odd_formats(tmp_path):
    folder = tmp_path / "calls"
    folder.mkdir()
    written = []  # one stem each: a video container beside an audio file of its stem is left out (next test)
    for name, fmt, codec, rate in FORMATS:
        try:
            _write(folder / name, fmt, codec, rate)
        except (av.error.FFmpegError, ValueError) as exc:  # an FFmpeg build without the encoder: not this test's point
            (folder / name).unlink(missing_ok=True)
            print(f"{name}: not written by this FFmpeg build ({exc})")
            continue
        written.append(folder / name)
    _write_sphere(folder / "sph_call.sph")
    written.append(folder / "sph_call.sph")
    assert len(written) >= 5  # PCM containers and WavPack need no optional encoder
    return folder, sorted(written)


def test_folder_listings_take_the_telephony_and_lossless_formats_ffmpeg_reads(odd_formats):
    # `sdd score calls/` of AMR phone recordings or a TIMIT-style folder of .sph files listed nothing
    folder, written = odd_formats
    assert list_audio_files(folder) == written
    assert batch.expand_inputs([str(folder)]) == [str(p) for p in written]
    for path in written:  # and each decodes to the tone's second
        waveform = load_audio(path)
        assert abs(waveform.size - SR) < 0.1 * SR, path
        assert 0.2 < float(np.abs(waveform).max()) < 0.4, path


def test_a_3gp_video_beside_its_extracted_audio_is_not_listed_twice(tmp_path):
    _write(tmp_path / "clip.3gp", "3gp", "aac")
    _write(tmp_path / "clip.caf", "caf", "pcm_s16le")
    assert list_audio_files(tmp_path) == [tmp_path / "clip.caf"]


def test_sdd_score_scores_a_folder_of_sphere_files(tmp_path, capsys):
    folder = tmp_path / "timit"
    folder.mkdir()
    _write_sphere(folder / "sa1.sph")
    model = save_tiny_lcnn(tmp_path / "model")
    out = tmp_path / "scores.csv"
    assert main(["score", str(folder), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    (row,) = batch.read_rows(out)[1]
    assert row["path"] == str(folder / "sa1.sph") and row["error"] == "" and row["score"] != ""
    assert "holds no audio file" not in capsys.readouterr().err


def test_a_flac_with_corrupt_frames_is_not_called_only_truncated(tmp_path):
    import soundfile as sf

    from sddkit.errors import AudioDecodeError

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "clip.flac", (0.1 * rng.standard_normal(4 * SR)).astype(np.float32), SR)
    data = bytearray((tmp_path / "clip.flac").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = bytes(4000)  # the whole file is there; frames in the middle are zeroed
    (tmp_path / "bad.flac").write_bytes(bytes(data))
    with pytest.raises(AudioDecodeError, match=r"the header declares 4.00 s.*frames lost to corruption"):
        load_audio(tmp_path / "bad.flac")


def _write_m4a(path, seconds: float, options: dict[str, str]) -> None:
    pcm = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR)) * 32767).astype(np.int16)[None, :]
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("aac", rate=SR)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SR
        for part in av.AudioResampler(format=stream.format.name, layout="mono", rate=SR).resample(frame):
            for packet in stream.encode(part):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_an_mp4_cut_off_after_its_index_is_refused_not_scored_as_a_shorter_file(tmp_path):
    # faststart (the index first: phones, browsers, web uploads): half the file decoded to 1.98 s of a 4 s clip
    from sddkit.errors import AudioDecodeError

    _write_m4a(tmp_path / "memo.m4a", 4.0, {"movflags": "faststart"})
    assert abs(load_audio(tmp_path / "memo.m4a").size - 4 * SR) <= 2048  # whole, it decodes to its length
    data = (tmp_path / "memo.m4a").read_bytes()
    (tmp_path / "cut.m4a").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match=r"truncated: the header declares 4.06 s, the audio data ends at 1\.9"):
        load_audio(tmp_path / "cut.m4a")


@pytest.mark.parametrize("seconds", [0.07, 0.3, 1.0])
def test_short_whole_mp4s_are_not_taken_for_truncated_ones(tmp_path, seconds):
    # the encoder's priming and padding frames make decoded and declared lengths differ by up to a frame or two
    _write_m4a(tmp_path / "a.m4a", seconds, {"movflags": "faststart"})
    assert abs(load_audio(tmp_path / "a.m4a").size - seconds * SR) <= 2048


def test_a_labels_csv_reads_genuine_as_bona_fide(tmp_path):
    # ASVspoof 2017 and ADD call bona fide speech "genuine"; a hand-written CSV using the word was refused
    from sddkit.data.protocols import read_protocol

    (tmp_path / "labels.csv").write_text("path,label\na.wav,genuine\nb.wav,spoof\nc.wav,Genuine\n")
    table = read_protocol(tmp_path / "labels.csv", format="labels_csv")
    assert list(table.column("label")) == ["bonafide", "spoof", "bonafide"]


def test_a_nan_grad_clip_given_through_the_api_is_refused():
    # recipes refused it when parsed; TrainerConfig(grad_clip=nan) clipped every gradient to NaN
    from sddkit.training.recipe import TrainerConfig

    with pytest.raises(ValueError, match="grad_clip must be positive"):
        TrainerConfig(grad_clip=float("nan"))
    assert TrainerConfig(grad_clip=1.0).grad_clip == 1.0


def test_a_folder_holding_a_file_name_that_is_not_utf8_is_refused_naming_it(tmp_path):
    # a Latin-1 "café.wav": pandas' Arrow strings failed with a bare UnicodeEncodeError traceback
    import os

    import pandas as pd

    from sddkit.data.protocols import read_protocol
    from sddkit.errors import ProtocolError

    for label in ("bonafide", "spoof"):
        (tmp_path / label).mkdir()
    (tmp_path / "bonafide" / "a.wav").write_bytes(b"RIFF")
    with open(os.path.join(os.fsencode(tmp_path), b"spoof", b"caf\xe9.wav"), "wb") as f:
        f.write(b"RIFF")
    try:
        pd.DataFrame({"name": ["caf\udce9"]})
    except UnicodeEncodeError:
        with pytest.raises(ProtocolError, match=r"the name 'spoof/caf\\xe9' is not UTF-8.*rename"):
            read_protocol(tmp_path)
    else:  # pandas without Arrow strings holds the name as it is
        assert "caf\udce9" in "".join(read_protocol(tmp_path).column("path"))
