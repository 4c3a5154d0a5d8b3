"""Review of the session's diff db27e8b..7c92987 (diffrev10): chained Ogg detection and audio_info, a pipe of
audio given as a list of paths."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sddkit.audio import audio_info, load_audio
from sddkit.errors import ProtocolError
from sddkit.scoring import batch


def _sine(sr: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _vorbis(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def test_audio_info_of_a_chained_ogg_file_ffmpeg_cannot_read_through_describes_what_load_audio_reads(
    tmp_path: Path,
) -> None:
    # Ogg Vorbis files of other sample rates joined end to end: FFmpeg's Ogg demuxer stops at the second stream
    # ("Not yet implemented in FFmpeg, patches welcome"), so load_audio decodes the first stream with libsndfile, as
    # before the chained files were counted. audio_info, which now counted the samples through FFmpeg, refused the
    # very file load_audio reads as "not a readable audio file".
    path = tmp_path / "joined.ogg"
    path.write_bytes(_vorbis(_sine(16000, 2.0), 16000) + _vorbis(_sine(44100, 2.0, 880.0), 44100))
    y = load_audio(path)
    info = audio_info(path)
    assert info.sample_rate == 16000 and info.format == "ogg"
    assert info.duration_s == pytest.approx(y.shape[0] / 16000, abs=0.05)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_audio_piped_in_is_refused_as_binary_not_listed_as_paths(tmp_path: Path) -> None:
    # `sdd score <(ffmpeg -i x.mp3 -f wav -)`: a pipe is read as a list of paths, and the WAV's bytes were split
    # into "lines" refused as "lines like 'RIFF$\udcfa\x00\x00WAVEfmt ...' are not audio paths".
    buf = io.BytesIO()
    sf.write(buf, _sine(16000, 1.0), 16000, format="WAV")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(buf.getvalue())

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with pytest.raises(ProtocolError, match=r"binary data \(audio\?\) piped in") as caught:
        batch.expand_inputs([str(fifo)])
    feeder.join(5)
    assert "RIFF" not in str(caught.value) and "write the audio to a file" in str(caught.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_pipe_given_to_a_sharded_run_is_refused_before_any_rank_reads_it(tmp_path: Path, monkeypatch, capsys) -> None:
    # every torchrun rank lists the inputs itself: /dev/stdin (inherited by every rank) or a named pipe is read by
    # all of them at once, each getting a part of the list (or all, or nothing), and each sharded its own list: files
    # left unscored without a word, paths cut in two
    from sddkit.cli import score_cmd
    from sddkit.cli.main import main

    def no_process_group(rank: int, world: int) -> None:  # (its rendezvous would wait for rank 1)
        raise AssertionError("the run went on to join the process group")

    monkeypatch.setattr(score_cmd, "_init_process_group", no_process_group)
    fifo = tmp_path / "list"
    os.mkfifo(fifo)  # no writer: a rank that opened it would wait forever
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code = main(["score", str(fifo), "--out", str(tmp_path / "scores.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{fifo} is a pipe, which only one of torchrun's 2 ranks can read" in err
    assert "write the list to a file" in err


def test_an_output_saved_again_with_semicolons_is_not_said_to_have_other_columns(tmp_path: Path) -> None:
    # a spreadsheet in a locale whose decimal mark is a comma saves a CSV with ';' between the columns: the resume
    # was refused as "written with other columns (path;score;probability;...)", naming the very columns this model
    # writes
    out = tmp_path / "scores.csv"
    columns = batch.output_columns([])
    out.write_text(";".join(columns) + "\n" + ";".join(["a.wav", "0,5"] + [""] * (len(columns) - 2)) + "\n")
    with pytest.raises(ProtocolError) as caught:
        batch.ScoreWriter(out, columns)
    message = str(caught.value)
    assert "other columns" not in message
    assert "with ';' between its columns" in message and "save it comma-separated to resume it" in message
    # other columns are still called so
    out.write_text("path,score,other\n")
    with pytest.raises(ProtocolError, match="was written with other columns"):
        batch.ScoreWriter(out, columns)
