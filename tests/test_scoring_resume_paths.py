"""Batch scoring edge cases: resume with odd paths, non-UTF-8 names, late shard merges, infinite upload limit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import test_scoring_cli
from test_scoring_cli import COLUMNS, SR

from sddkit.cli import score_cmd
from sddkit.cli.main import main
from sddkit.errors import SddkitError
from sddkit.scoring import batch

model_dir = test_scoring_cli.model_dir  # the same tiny LCNN model directory fixture


def _wav(path: str | Path, seconds: float = 0.5, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR, format="WAV")
    return str(path)


@pytest.mark.parametrize("cut", ['"{p}",0.12', '"{d}/new\n'])
def test_resume_cuts_a_partial_csv_row_whose_path_holds_a_newline(tmp_path, cut):
    """The cut must land at the end of the last whole record, not at a newline inside a quoted path."""
    done_path = str(tmp_path / "x,y.wav")
    nl_path = str(tmp_path / "new\nline.wav")
    out = tmp_path / "scores.csv"
    with batch.ScoreWriter(out, COLUMNS) as w:
        w.write(done_path, None, error="some error")
    complete = out.read_bytes()
    with open(out, "a", newline="", encoding="utf-8") as f:
        f.write(cut.format(p=nl_path, d=tmp_path))  # a crash in the middle of the next row
    with batch.ScoreWriter(out, COLUMNS) as w:
        assert w.done == {done_path}
        assert out.read_bytes() == complete
        w.write(nl_path, None, error="another error")
    _, rows = batch.read_rows(out)
    assert [r["path"] for r in rows] == [done_path, nl_path]
    with batch.ScoreWriter(out, COLUMNS) as w:
        assert w.done == {done_path, nl_path}


def test_csv_output_takes_a_filename_that_is_not_utf8(tmp_path, model_dir):
    """A legal POSIX filename with non-UTF-8 bytes is scored and resumed in CSV as it is in JSONL."""
    folder = tmp_path / "audio"
    folder.mkdir()
    _wav(folder / "ok.wav")
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.wav")  # Latin-1 name
    data = Path(_wav(tmp_path / "src.wav", seed=1)).read_bytes()
    try:
        with open(os.fsencode(odd), "wb") as f:
            f.write(data)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses non-UTF-8 file names")
    for name in ("scores.csv", "scores.jsonl"):
        out = tmp_path / name
        args = ["score", str(folder), "--model", str(model_dir), "--out", str(out), "--quiet", "--windows"]
        assert main(args) == 0
        _, rows = batch.read_rows(out)
        assert sorted(r["path"] for r in rows) == sorted([odd, str(folder / "ok.wav")])
        assert all(r["error"] == "" for r in rows)
        before = out.read_bytes()
        assert main(args) == 0  # resumed: nothing to do, nothing duplicated
        assert out.read_bytes() == before


def test_resume_recognises_a_file_spelled_relative_then_absolute(tmp_path, model_dir, monkeypatch, capsys):
    (tmp_path / "audio").mkdir()
    _wav(tmp_path / "audio" / "a.wav")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "scores.csv"
    for spelling in ("audio/a.wav", str(tmp_path / "audio" / "a.wav"), "./audio/../audio/a.wav", "audio"):
        assert main(["score", spelling, "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    assert len(batch.read_rows(out)[1]) == 1
    assert '"skipped": 1' in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_rank_finishing_after_the_file_based_merge_does_not_fail(tmp_path, model_dir, monkeypatch):
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav", seed=1)
    out = tmp_path / "sharded.csv"
    args = ["score", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--model", str(model_dir), "--out", str(out)]
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert main([*args, "--quiet"]) == 0
    assert len(batch.read_rows(out)[1]) == 2
    # rank 0 saw both markers and merged; rank 1, which also saw them, gets to the lock only now
    score_cmd._merge_after_shards(out, 1, 2, batch.expand_inputs([tmp_path / "a.wav", tmp_path / "b.wav"]))
    assert len(batch.read_rows(out)[1]) == 2


def test_serve_refuses_an_infinite_upload_limit(model_dir, monkeypatch, capsys):
    import uvicorn

    from sddkit.service.app import create_app

    def no_server(*_a, **_k):
        raise AssertionError("the server must not start")

    monkeypatch.setattr(uvicorn.Server, "run", no_server)
    assert main(["serve", "--model", str(model_dir), "--max-upload-mb", "inf"]) == 2
    assert "--max-upload-mb must be finite" in capsys.readouterr().err  # the flag, not the internal argument
    with pytest.raises(SddkitError):
        create_app(model_dir, max_upload_mb=float("inf"))
