"""Review compatpath (session 45): artefacts written by an older sddkit, used by this one.

The 'old' artefacts are written here by hand in the layout the older sddkit wrote: an ``sdd score`` run record
without ``silent_windows`` (sddkit before 2026-12-06 averaged windows of digital silence into a file's score), and
an ``sdd fuse`` record without each system's ``weights_digest`` and ``calibration``.
"""

from __future__ import annotations

import json

import pytest
from cli_support import one_line_error

from sddkit.cli.main import main
from sddkit.errors import ProtocolError
from sddkit.scoring import batch

_INFERENCE = {
    "sample_rate": 16000,
    "window_samples": 64000,
    "hop_samples": 32000,
    "aggregation": "mean",
    "threshold": 0.0,
    "calibration": {"a": 1.0, "b": 0.0, "prior": None, "n_bonafide": 0, "n_spoof": 0},
    "min_duration_s": 0.1,
}
_COLUMNS = ["path", "score", "probability", "decision", "duration_s", "n_windows", "raw_score", "error"]


def _record(**changes) -> dict:
    """A run record as sdd score writes it today; the older layout is this less ``silent_windows``."""
    record = {
        "model": "runs/x/best",
        "weights_digest": "ab" * 32,
        "inference": json.loads(json.dumps(_INFERENCE)),
        "windows": False,
        "probe": [0.25, -0.5],
        "columns": _COLUMNS,
        "silent_windows": batch.SILENT_WINDOWS,
    }
    record.update(changes)
    return record


def _old_output(tmp_path, record: dict):
    out = tmp_path / "scores.csv"
    out.write_text(",".join(_COLUMNS) + "\na.wav,1.5,0.8,bonafide,9.0,4,1.5,\n")
    old = {k: v for k, v in record.items() if k != "silent_windows"}  # what sddkit before 2026-12-06 recorded
    (tmp_path / "scores.csv.run.json").write_text(json.dumps(old))
    return out


def test_resume_of_rows_scored_before_silent_windows_were_left_out_is_refused(tmp_path):
    # the same model and settings: before the fix the resume went on, and a file padded with silence scored in the
    # earlier run (silence averaged in) and one scored now (left out) got two scores in one output
    out = _old_output(tmp_path, _record())
    with pytest.raises(ProtocolError) as err:
        batch.check_run_info(out, _record())
    message = str(err.value)
    assert "averaged windows of digital silence" in message and "before 2026-12-06" in message
    assert "score every file again" in message and "delete scores.csv and scores.csv.run.json" in message


def test_a_record_of_today_and_a_first_window_run_still_resume(tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text(",".join(_COLUMNS) + "\n")
    batch.run_record_path(out).write_text(json.dumps(_record()))
    batch.check_run_info(out, _record())  # same run: goes on
    # under "first" aggregation no window is left out, in either version: an older record of it still resumes
    first = _record(inference={**_INFERENCE, "aggregation": "first"})
    out = _old_output(tmp_path, first)
    batch.check_run_info(out, first)
    assert batch.run_differences({k: v for k, v in _record().items() if k != "silent_windows"}, _record()) == [
        "silent_windows"
    ]


def _score_file(path, digest: str, a: float) -> None:
    path.write_text("path,score\n" + "".join(f"/data/f{i}.wav,{(-1) ** i * (i + 1) * 0.5}\n" for i in range(6)))
    record = {"weights_digest": digest, "inference": {"calibration": {"a": a, "b": 0.0}}, "columns": ["path", "score"]}
    batch.run_record_path(path).write_text(json.dumps(record))


def _old_fusion_record(tmp_path) -> str:
    """An OUT.fusion.json of sddkit before 2026-12-06: its systems name their fit file but not their model."""
    systems = [
        {"name": "a", "file": "fit_a.csv", "column": "score", "weight": 2.0, "fit_eer": 0.1},
        {"name": "b", "file": "fit_b.csv", "column": "score", "weight": 0.5, "fit_eer": 0.2},
    ]
    record = {"systems": systems, "bias": 0.1, "prior": 0.5, "column": "score", "fit_partitions": ["val"]}
    path = tmp_path / "fused.csv.fusion.json"
    path.write_text(json.dumps(record))
    return str(path)


def test_an_older_fusion_record_checks_the_models_its_fit_files_were_scored_by(tmp_path, capsys):
    for name, digest, a in (("a", "aa" * 32, 1.0), ("b", "bb" * 32, 3.0)):
        _score_file(tmp_path / f"fit_{name}.csv", digest, a)
        _score_file(tmp_path / f"new_{name}.csv", digest, a)
    record = _old_fusion_record(tmp_path)
    applied = ["fuse", "--apply", record, "--out"]
    assert main([*applied, str(tmp_path / "ok.csv"), "--scores", *(str(tmp_path / f"new_{n}.csv") for n in "ab")]) == 0
    capsys.readouterr()
    # the systems given in swapped order: before the fix, fused with no word (each weight on the other's scores)
    swapped = [str(tmp_path / f"new_{n}.csv") for n in "ba"]
    assert main([*applied, str(tmp_path / "swapped.csv"), "--scores", *swapped]) == 2
    error = one_line_error(capsys, "fuse")
    assert "was scored by a model of weights bbbbbbbbbbbb" in error and "'a'" in error


def test_an_older_fusion_record_without_its_fit_files_is_applied_with_a_warning(tmp_path, capsys):
    for name, digest in (("a", "aa" * 32), ("b", "bb" * 32)):
        _score_file(tmp_path / f"new_{name}.csv", digest, 1.0)
    record = _old_fusion_record(tmp_path)  # fit_a.csv and fit_b.csv are gone
    scores = [str(tmp_path / f"new_{n}.csv") for n in "ba"]
    assert main(["fuse", "--apply", record, "--out", str(tmp_path / "f.csv"), "--scores", *scores]) == 0
    err = capsys.readouterr().err
    assert "does not record which model" in err and "before 2026-12-06" in err and "fit the fusion again" in err


def test_a_robustness_journal_of_an_older_sddkit_is_refused_naming_the_silence_rule():
    from sddkit.evaluation.robustness import JOURNAL_SCHEMA, header_differences

    now = {
        "schema": JOURNAL_SCHEMA,
        "model": _record(),
        "settings": {"conditions": ["clean"], "seed": 0},
        "utterances": {"n": 2, "digest": "0" * 64},
    }
    earlier = {**now, "model": {k: v for k, v in _record().items() if k != "silent_windows"}}
    assert header_differences(now, now) == []
    (difference,) = header_differences(earlier, now)
    assert "averaged windows of digital silence" in difference and "before 2026-12-06" in difference


def _old_recipe(sampler: str) -> dict:
    """A recipe as an sddkit before 2026-12-02 recorded it in its checkpoints: no ``data.distinct_draws``."""
    return {
        "seed": 1,
        "model": {"frontend": {"name": "logmel"}, "backend": {"name": "lcnn", "channels": 4}},
        "data": {"train": [{"protocol": "train.csv"}], "sampler": sampler, "crop_samples": 16000},
        "trainer": {"epochs": 2},
    }


def test_an_older_checkpoint_recipe_of_a_repeating_sampler_reads_as_the_draws_it_made():
    from sddkit.config import from_dict, to_dict
    from sddkit.training.recipe import TrainRecipe, recipe_changes

    # resumed under today's code (default distinct_draws: true): before the fix the change was neither warned of
    # nor recorded in best/ and final/'s resumes, the old recipe being read with today's default
    old = _old_recipe("class_balanced")
    now = to_dict(from_dict(TrainRecipe, old))
    assert recipe_changes(old, now) == ["data.distinct_draws: false -> true"]
    pinned = to_dict(from_dict(TrainRecipe, {**old, "data": {**old["data"], "distinct_draws": False}}))
    assert recipe_changes(old, pinned) == []
    # a random sampler never repeats an item in an epoch: the key changes nothing there, and nothing is said
    random = _old_recipe("random")
    assert recipe_changes(random, to_dict(from_dict(TrainRecipe, random))) == []
