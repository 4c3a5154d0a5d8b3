"""Review 26 of one-process ``sdd score``: resuming a ``--windows`` run into a CSV."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main
from sddkit.scoring import batch


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_deleted_windows_sidecar_is_rebuilt_on_resume(tmp_path, monkeypatch, capsys):
    # a --windows run, its sidecar deleted, then resumed with one more file: every scored row has its windows again
    # (before, the rows scored already were skipped, their windows missing from the new sidecar without a word)
    monkeypatch.chdir(tmp_path)
    model = save_tiny_lcnn(tmp_path / "model")
    write_noise_wav(tmp_path / "clips" / "a.wav", 1.2, seed=1)
    write_noise_wav(tmp_path / "clips" / "b.wav", 0.7, seed=2)
    write_noise_wav(tmp_path / "clips" / "bad.wav", 0.0, seed=3)  # an error row: it has no windows, none missing
    out = tmp_path / "scores.csv"
    argv = ["score", "clips", "--model", str(model), "--out", str(out), "--windows", "--quiet"]
    assert main([*argv[:1], "clips/a.wav", "clips/bad.wav", *argv[2:]]) == 0
    first = {r["path"]: r["score"] for r in _rows(out)}
    batch.windows_path(out).unlink()
    capsys.readouterr()

    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "1 file(s) scored by an earlier run have no windows" in err
    rows = _rows(out)
    assert sorted(r["path"] for r in rows) == [
        "clips/a.wav",
        "clips/b.wav",
        "clips/bad.wav",
    ]  # no duplicate row of a.wav
    windows = Counter(r["path"] for r in _rows(batch.windows_path(out)))
    assert {r["path"]: int(r["n_windows"]) for r in rows if not r["error"]} == dict(windows)
    assert float(next(r["score"] for r in rows if r["path"] == "clips/a.wav")) == pytest.approx(
        float(first["clips/a.wav"]), abs=1e-5
    )
    assert '"scored": 2' in err and '"skipped": 1' in err  # the error row is kept


def test_deleted_windows_sidecar_keeps_rows_of_other_files(tmp_path, monkeypatch, capsys):
    # a resume naming only some of the output's files rescores those; the others' rows stay (dropped, no run
    # would score them again), and a note says their windows are missing
    monkeypatch.chdir(tmp_path)
    model = save_tiny_lcnn(tmp_path / "model")
    write_noise_wav(tmp_path / "clips" / "a.wav", 1.2, seed=1)
    write_noise_wav(tmp_path / "clips" / "b.wav", 0.7, seed=2)
    out = tmp_path / "scores.csv"
    assert main(["score", "clips", "--model", str(model), "--out", str(out), "--windows", "--quiet"]) == 0
    batch.windows_path(out).unlink()
    capsys.readouterr()

    argv = ["score", "clips/b.wav", "--model", str(model), "--out", str(out), "--windows", "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "1 file(s) scored by an earlier run have no windows" in err
    assert "1 row(s) of files not among these inputs have no windows" in err
    assert sorted(r["path"] for r in _rows(out)) == ["clips/a.wav", "clips/b.wav"]
    assert {r["path"] for r in _rows(batch.windows_path(out))} == {"clips/b.wav"}
