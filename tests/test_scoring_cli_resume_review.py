"""sdd score outputs across runs: retried errors of other files, another working folder, foreign files,
unwritable outputs, audio under unlisted names, malformed manifests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main
from sddkit.errors import ProtocolError
from sddkit.scoring import batch

SR = 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


_wav = write_noise_wav


def _score(*args: str) -> int:
    return main(["score", *args, "--quiet", "--workers", "0"])


def _paths(out: Path) -> list[str]:
    return [r["path"] for r in batch.read_rows(out)[1]]


def test_retry_errors_keeps_the_error_rows_of_files_not_among_the_inputs(tmp_path, model_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    _wav(a / "good.wav", 0.6, 1)
    (a / "bad.wav").write_bytes(b"RIFF not a wave")
    b.mkdir()
    (b / "other.wav").write_bytes(b"RIFF not a wave either")
    out = tmp_path / "s.csv"
    assert _score(str(a), str(b), "--model", str(model_dir), "--out", str(out)) == 0
    _wav(a / "bad.wav", 0.6, 2)  # mended; other.wav is not
    assert _score(str(a / "bad.wav"), "--model", str(model_dir), "--out", str(out), "--retry-errors") == 0
    rows = {Path(r["path"]).name: r for r in batch.read_rows(out)[1]}
    assert set(rows) == {"good.wav", "bad.wav", "other.wav"}  # other.wav's error row used to be deleted
    assert rows["bad.wav"]["error"] == "" and rows["other.wav"]["error"]


def test_a_resume_from_another_folder_skips_what_is_written(tmp_path, model_dir, monkeypatch):
    audio = tmp_path / "work" / "audio"
    _wav(audio / "x.wav", 0.6, 1)
    _wav(audio / "y.wav", 0.6, 2)
    out = tmp_path / "work" / "s.csv"
    monkeypatch.chdir(tmp_path / "work")
    assert _score("audio/x.wav", "--model", str(model_dir), "--out", "s.csv") == 0
    monkeypatch.chdir(tmp_path)  # the job is restarted one folder up, with the inputs spelled from there
    assert _score("work/audio/x.wav", "work/audio/y.wav", "--model", str(model_dir), "--out", "work/s.csv") == 0
    # x.wav was not scored twice, and y.wav's row is relative to the first run's folder like x.wav's
    assert _paths(out) == ["audio/x.wav", "audio/y.wav"]
    assert json.loads(batch.run_record_path(out).read_text())["cwd"] == str(tmp_path / "work")


def test_an_unrelated_jsonl_file_is_not_appended_to(tmp_path, model_dir):
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"text": "my notes", "id": 1}\n')
    assert _score(str(_wav(tmp_path / "x.wav", 0.6, 1)), "--model", str(model_dir), "--out", str(notes)) == 2
    assert notes.read_text() == '{"text": "my notes", "id": 1}\n'


@pytest.mark.parametrize("make", ["parent_is_a_file", "name_too_long"])
def test_an_unwritable_output_is_a_one_line_error_before_the_model_loads(tmp_path, capsys, make):
    wav = _wav(tmp_path / "x.wav", 0.6, 1)
    out = wav / "s.csv" if make == "parent_is_a_file" else tmp_path / ("a" * 300 + ".csv")
    # --model names nothing: the output is refused first, so no model is needed to see the error
    assert _score(str(wav), "--model", str(tmp_path / "no_model"), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}" in err and "Traceback" not in err


def test_check_writable_leaves_nothing_behind(tmp_path):
    out = tmp_path / "new" / "s.csv"
    batch.check_writable(out)
    assert not out.exists()
    out.write_text("kept\n")
    batch.check_writable(out)
    assert out.read_text() == "kept\n"


def test_audio_named_directly_under_an_unlisted_suffix_is_scored(tmp_path, model_dir):
    clip = tmp_path / "clip.dat"
    clip.write_bytes(_wav(tmp_path / "src.wav", 0.6, 1).read_bytes())
    out = tmp_path / "s.csv"
    assert _score(str(clip), "--model", str(model_dir), "--out", str(out)) == 0  # used to be read as a manifest
    (row,) = batch.read_rows(out)[1]
    assert row["path"] == str(clip) and row["error"] == "" and row["score"] != ""


def test_a_text_file_under_an_unlisted_suffix_is_still_a_manifest(tmp_path):
    wav = _wav(tmp_path / "x.wav", 0.6, 1)
    (tmp_path / "list.lst").write_text("x.wav\n")
    assert batch.expand_inputs([tmp_path / "list.lst"]) == [str(wav)]


@pytest.mark.parametrize(
    ("text", "match"),
    [("path\n", "lists no paths"), ("label,path,path\nspoof,a.wav,b.wav\n", "'path' 2 times")],
)
def test_malformed_path_manifests_are_refused(tmp_path, text, match):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(ProtocolError, match=match):
        batch.expand_inputs([manifest])


def test_a_model_that_answers_nan_on_the_probe_is_told_apart_from_one_that_does_not():
    nan_model = {"probe": [None, None]}
    assert batch.run_differences(nan_model, {"probe": [0.5, -0.2]}) == ["model weights"]
    assert batch.run_differences(nan_model, {"probe": [None, None]}) == []
    assert batch.run_differences({"probe": [0.5, -0.2]}, {"probe": [0.5, -0.2]}) == []


def test_outputs_without_a_recorded_folder_resolve_against_the_current_one(tmp_path, model_dir, monkeypatch):
    # outputs of earlier versions (no "cwd" in their run record) resume as before
    monkeypatch.chdir(tmp_path)
    _wav(tmp_path / "x.wav", 0.6, 1)
    assert _score("x.wav", "--model", str(model_dir), "--out", "s.csv") == 0
    record = batch.run_record_path(tmp_path / "s.csv")
    run = json.loads(record.read_text())
    del run["cwd"]
    record.write_text(json.dumps(run))
    assert _score(os.path.abspath("x.wav"), "--model", str(model_dir), "--out", "s.csv") == 0
    assert _paths(tmp_path / "s.csv") == ["x.wav"]


def test_a_resume_with_other_weights_is_refused_however_alike_their_probe_scores(tmp_path, model_dir, capsys):
    # two checkpoints of one run (best/ and final/) scored the probe within its tolerance: the second model's
    # rows were appended to the first's and the run record renamed the model, so who scored what was lost
    import json as _json

    import torch

    from sddkit.detectors.model_dir import load_model_dir, save_model_dir

    loaded = load_model_dir(model_dir)
    with torch.no_grad():
        next(loaded.model.parameters()).add_(1e-6)
    config = _json.loads((model_dir / "config.json").read_text())
    near = save_model_dir(
        tmp_path / "near", loaded.model, model_config=loaded.model_config, inference=config["inference"]
    )
    _wav(tmp_path / "a.wav", 0.6, 1)
    _wav(tmp_path / "b.wav", 0.6, 2)
    out = tmp_path / "s.csv"
    assert _score(str(tmp_path / "a.wav"), "--model", str(model_dir), "--out", str(out)) == 0
    record = batch.run_record_path(out).read_text()
    capsys.readouterr()
    assert _score(str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--model", str(near), "--out", str(out)) == 2
    assert "the model differs" in capsys.readouterr().err
    assert _paths(out) == [str(tmp_path / "a.wav")] and batch.run_record_path(out).read_text() == record
    # the same weights under another name resume as before
    assert _score(str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--model", str(model_dir), "--out", str(out)) == 0
    assert _paths(out) == [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]


def test_odd_file_names_round_trip_through_the_csv_output_and_its_readers(tmp_path, model_dir):
    # a "\r" in a name was written unquoted (the row split in two, every restart scored the file again); sdd eval
    # read the CSV line by line (a quoted "\n" broke it), took a path starting with "#" for a comment, and a
    # non-UTF-8 name (written back as its bytes) crashed it with a UnicodeDecodeError traceback
    from sddkit.evaluation.scores import read_scores

    folder = tmp_path / "aud"
    names = ["cr\rname.wav", "new\nline.wav", "#hash.wav", "plain.wav", os.fsdecode(b"latin\xe9.wav")]
    for i, name in enumerate(names):
        made = _wav(folder / f"made{i}.wav", 0.6, i)  # soundfile cannot open a non-UTF-8 name itself
        os.rename(os.fsencode(made), os.fsencode(folder / name))
    out = tmp_path / "s.csv"
    assert _score(str(folder), "--model", str(model_dir), "--out", str(out)) == 0
    written = sorted(_paths(out))
    assert written == sorted(str(folder / n) for n in names)
    assert _score(str(folder), "--model", str(model_dir), "--out", str(out)) == 0  # nothing left to score
    assert sorted(_paths(out)) == written
    scores = read_scores(out)
    assert sorted(scores.ids) == written and not scores.failed


def test_one_process_refuses_an_output_beside_unfinished_shards(tmp_path, model_dir, capsys):
    # a single-process run ignored them: it scored every file again and left the shards for a later --merge
    _wav(tmp_path / "a.wav", 0.6, 1)
    out = tmp_path / "s.csv"
    batch.shard_path(out, 0).write_text("path,score\n")
    capsys.readouterr()
    assert _score(str(tmp_path / "a.wav"), "--model", str(model_dir), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "shards of an unfinished torchrun run" in err and "s.csv.rank0" in err and not out.exists()
    batch.shard_path(out, 0).unlink()
    Path(f"{out}.rank0.lock").write_text("")  # a lock left behind is not a shard
    assert _score(str(tmp_path / "a.wav"), "--model", str(model_dir), "--out", str(out)) == 0
