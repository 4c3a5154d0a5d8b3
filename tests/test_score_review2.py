"""sdd score review: resumes never mix models or settings, one writer per output, shard markers of
earlier runs, an --out that is a folder, manifests of paths with spaces, rows of files no longer listed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import test_scoring_cli
from scoring_support import save_tiny_lcnn
from test_scoring_cli import SR

from sddkit.cli.main import main
from sddkit.scoring import batch
from sddkit.scoring.inference import read_inference, write_inference

model_dir = test_scoring_cli.model_dir  # the tiny LCNN model directory (seed 0, 0.5 s windows)


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory):
    """The same architecture and settings as ``model_dir``, other (random) weights: same output columns."""
    return save_tiny_lcnn(tmp_path_factory.mktemp("model2") / "lcnn", seed=1)


def _wav(path: Path, seconds: float = 0.5, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    return path


def _score(*inputs, model, out, extra=()) -> int:
    return main(["score", *map(str, inputs), "--model", str(model), "--out", str(out), "--quiet", *extra])


@pytest.mark.parametrize("name", ["s.csv", "s.jsonl"])
def test_resume_with_another_model_is_refused(tmp_path, model_dir, other_model_dir, capsys, name):
    """Resuming an output with another model of the same architecture used to append its scores to the
    first model's rows (same columns, so nothing noticed): one file silently mixed two models."""
    a, b = _wav(tmp_path / "a.wav", seed=1), _wav(tmp_path / "b.wav", seed=2)
    out = tmp_path / name
    assert _score(a, model=model_dir, out=out) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert _score(a, b, model=other_model_dir, out=out) == 2
    assert "another scoring run" in capsys.readouterr().err
    assert out.read_bytes() == before  # nothing written
    # the same model, moved elsewhere, resumes as before
    moved = tmp_path / "moved"
    shutil.copytree(model_dir, moved)
    assert _score(a, b, model=moved, out=out) == 0
    assert [Path(r["path"]).name for r in batch.read_rows(out)[1]] == ["a.wav", "b.wav"]


def test_resume_with_other_settings_is_refused(tmp_path, model_dir, capsys):
    """A recalibrated model (same weights, other scores) or a toggled --windows (per-window scores for
    only some files) used to be resumed silently into the same output."""
    a, b = _wav(tmp_path / "a.wav", seed=1), _wav(tmp_path / "b.wav", seed=2)
    recal = tmp_path / "recal"
    shutil.copytree(model_dir, recal)
    cfg = read_inference(recal)
    cfg.calibration.a, cfg.calibration.b = 2.0, -1.0
    write_inference(recal, cfg)
    out = tmp_path / "s.csv"
    assert _score(a, model=model_dir, out=out) == 0
    capsys.readouterr()
    assert _score(a, b, model=recal, out=out) == 2
    assert "inference" in capsys.readouterr().err
    assert _score(a, b, model=model_dir, out=out, extra=["--windows"]) == 2
    assert "windows" in capsys.readouterr().err
    assert len(batch.read_rows(out)[1]) == 1
    # a deleted output starts over, whatever record of it is left
    out.unlink()
    assert _score(a, b, model=recal, out=out, extra=["--windows"]) == 0
    assert len(batch.read_rows(out)[1]) == 2


def test_merge_refuses_shards_of_different_models(tmp_path, model_dir, other_model_dir, monkeypatch, capsys):
    """Two ranks run with different --model used to merge into one output without a word."""
    a, b = _wav(tmp_path / "a.wav", seed=1), _wav(tmp_path / "b.wav", seed=2)
    out = tmp_path / "m.csv"
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert _score(a, b, model=model_dir, out=out) == 0
    monkeypatch.setenv("RANK", "1")
    capsys.readouterr()
    assert _score(a, b, model=other_model_dir, out=out) == 2
    assert "different runs" in capsys.readouterr().err
    assert not out.exists()


def test_a_second_run_on_the_same_output_is_refused(tmp_path, model_dir, capsys):
    """Two runs appending to one output used to both score the same files and interleave their rows."""
    a = _wav(tmp_path / "a.wav")
    out = tmp_path / "s.csv"
    with batch.ScoreWriter(out, test_scoring_cli.COLUMNS):  # another run holds the output
        assert _score(a, model=model_dir, out=out) == 2
        assert "another sdd score run" in capsys.readouterr().err
    assert batch.read_rows(out)[1] == []
    assert _score(a, model=model_dir, out=out) == 0  # released when that run ended
    assert len(batch.read_rows(out)[1]) == 1
    assert not Path(f"{out}.lock").exists()


def test_out_naming_a_folder_is_a_clean_error(tmp_path, model_dir, capsys):
    """``--out x.csv`` where x.csv is a folder used to end in an IsADirectoryError traceback."""
    a = _wav(tmp_path / "a.wav")
    (tmp_path / "x.csv").mkdir()
    assert _score(a, model=model_dir, out=tmp_path / "x.csv") == 2
    assert "is a folder" in capsys.readouterr().err


def test_a_list_manifest_of_paths_with_spaces(tmp_path, model_dir):
    """A one-path-per-line manifest whose paths hold spaces ("My Recordings/a.wav") used to be refused as
    "not a manifest": only the text before the first space was checked for an audio extension."""
    a, b = _wav(tmp_path / "My Recordings" / "a.wav", seed=1), _wav(tmp_path / "My Recordings" / "b 2.wav", seed=2)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{a}\nMy Recordings/b 2.wav\n")  # absolute, and relative to the manifest's folder
    assert batch.read_manifest(lst) == [str(a), str(b)]
    out = tmp_path / "s.csv"
    assert _score(lst, model=model_dir, out=out) == 0
    assert [r["error"] for r in batch.read_rows(out)[1]] == ["", ""]


def test_a_rank_scoring_again_clears_its_marker_first(tmp_path, model_dir, monkeypatch):
    """A rank's ``.done`` marker from an earlier run stayed while it scored again, so (without a process
    group) another rank finishing meanwhile saw every marker and merged, deleting the shard still written."""
    a, b = _wav(tmp_path / "a.wav", seed=1), _wav(tmp_path / "b.wav", seed=2)
    out = tmp_path / "m.csv"
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert _score(a, model=model_dir, out=out) == 0  # rank 1 had nothing to do; rank 0 never ran
    marker = Path(f"{out}.rank1.done")
    assert marker.is_file()
    seen = []
    real = batch.score_files

    def spy(*args, **kwargs):
        seen.append(marker.exists())
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, "score_files", spy)
    assert _score(a, b, model=model_dir, out=out) == 0  # now rank 1 has b.wav to score
    assert seen == [False]
    assert marker.is_file()  # done again once it finished


def test_markers_of_another_world_size_are_refused_before_scoring(tmp_path, model_dir, monkeypatch, capsys):
    """Markers left by an earlier run with another WORLD_SIZE were only noticed by the merge, after every
    rank had scored its whole shard."""
    a = _wav(tmp_path / "a.wav")
    out = tmp_path / "m.csv"
    batch.mark_shard_done(out, 2, 3, 0)  # rank 2 of an earlier run with 3 ranks
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert _score(a, model=model_dir, out=out) == 2
    assert "WORLD_SIZE=3" in capsys.readouterr().err
    assert not batch.shard_path(out, 0).exists()  # refused before any scoring


def test_rows_of_files_no_longer_listed_are_reported(tmp_path, model_dir, capsys):
    """A resume whose inputs no longer list some files already in the output kept their rows without a word."""
    a, b = _wav(tmp_path / "a.wav", seed=1), _wav(tmp_path / "b.wav", seed=2)
    out = tmp_path / "s.jsonl"
    assert _score(a, b, model=model_dir, out=out) == 0
    capsys.readouterr()
    assert _score(a, model=model_dir, out=out) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "keeps 1 row(s) of files not among these inputs" in err[-2]
    assert json.loads(err[-1])["other_rows"] == 1
    assert len(batch.read_rows(out)[1]) == 2  # kept, not deleted
