"""Review cvfuse24: ``sdd cv``, ``sdd fuse`` and ``sdd calibrate`` against results that pass for what they are not.

- a cross-validation rerun read back (or resumed) folds trained on a protocol file edited since, and averaged them
  with folds of the new rows in cv.json;
- ``sdd eval`` of an ``sdd fuse`` output reported the fusion's fit trials (val) as evaluated ones, pooled with the
  held-out ones, without a word;
- ``sdd calibrate`` without ``--partitions`` fitted the calibration and threshold on every partition of a protocol,
  test files included, without a word;
- ``sdd calibrate --out DIR`` over another model's folder replaced that model's weights.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import test_calibrate_cmd as calib_support
import test_crossval as cv_support
import test_fuse22_review22 as fuse_support
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.errors import ConfigError
from sddkit.training import crossval
from sddkit.training.crossval import HeldOut

# --- sdd cv: a fold is of the protocol's rows it trained on -------------------------------------------------------


def test_a_fold_trained_before_its_protocol_was_edited_is_refused_not_read_back(tmp_path, monkeypatch):
    recipe = cv_support._recipe(tmp_path, val_every=1)
    fold = HeldOut("source", ("s1",))
    fold_dir = tmp_path / "cv" / fold.dir_name
    figures = crossval.run_fold(recipe, fold, fold_dir, workers=0)
    # the same protocol read back: the finished fold is reused, not trained again
    monkeypatch.setattr("sddkit.training.trainer.Trainer.fit", lambda *a, **k: pytest.fail("trained again"))
    assert crossval.run_fold(recipe, fold, fold_dir, workers=0) == figures

    train_csv = recipe.data.train.protocol  # type: ignore[union-attr]
    df = pd.read_csv(train_csv, keep_default_na=False)
    df.loc[df["source"] == "s0", "source"] = "s1"  # other rows now hold s1: the fold's EER was of the old ones
    df.to_csv(train_csv, index=False)
    with pytest.raises(ConfigError, match=r"changed since .* trained on it") as err:
        crossval.run_fold(recipe, fold, fold_dir, workers=0)
    assert str(train_csv) in str(err.value) and "new --out" in str(err.value)
    # cross_validate checks every fold before the first trains
    with pytest.raises(ConfigError, match="changed since"):
        crossval.cross_validate(recipe, [fold, HeldOut("source", ("s2",))], tmp_path / "cv", workers=0)


def test_changed_protocols_reads_a_relative_path_from_the_sessions_folder(tmp_path, monkeypatch):
    fold_dir = tmp_path / "fold"
    fold_dir.mkdir()
    (tmp_path / "p.csv").write_text("a\n")
    from sddkit.documents import file_digest
    from sddkit.training.provenance import changed_protocols

    session = {"cwd": str(tmp_path), "protocols": {"p.csv": file_digest(tmp_path / "p.csv"), "gone.csv": "0" * 64}}
    (fold_dir / crossval.RUN_NAME).write_text(json.dumps({"sessions": [session]}))
    monkeypatch.chdir(fold_dir)  # another working directory: p.csv is the session's, unchanged; gone.csv is no edit
    assert changed_protocols(fold_dir / crossval.RUN_NAME) == []
    (tmp_path / "p.csv").write_text("b\n")
    assert changed_protocols(fold_dir / crossval.RUN_NAME) == ["p.csv"]


# --- sdd fuse: its fit trials evaluated ---------------------------------------------------------------------------


def test_eval_of_a_fused_file_on_its_fit_partition_says_the_figures_are_fit_ones(tmp_path, capsys):
    protocol, a, b = fuse_support._files(tmp_path)
    out = tmp_path / "fused.csv"
    fuse = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--column", "score", "raw_score"]
    assert main([*fuse, "--names", "a", "b", "--out", str(out)]) == 0
    capsys.readouterr()

    assert main(["eval", "--scores", str(out), "--protocol", str(protocol), "--out", str(tmp_path / "all")]) == 0
    err = capsys.readouterr().err
    assert "fusion was fitted on the val trials" in err and "fit figures, not held-out" in err
    report = json.loads((tmp_path / "all" / "report.json").read_text())
    fusion = report["inputs"]["fusion"]
    # (review 31: the record's sddkit_version and sddkit_git come too, the code that fused)
    assert {k: fusion[k] for k in ("record", "fit_partitions")} == {
        "record": str(tmp_path / "fused.csv.fusion.json"),
        "fit_partitions": ["val"],
    }
    assert any("fit figures" in w for w in report["warnings"])

    # the held-out partition alone: nothing to say
    argv = ["eval", "--scores", str(out), "--protocol", str(protocol), "--partitions", "test"]
    assert main([*argv, "--out", str(tmp_path / "test")]) == 0
    assert "fit figures" not in capsys.readouterr().err
    # sdd compare says it too, naming the file
    compare = ["compare", "--protocol", str(protocol), "--baseline", str(a), "--system", str(out), "--bootstrap", "50"]
    assert main(compare) == 0
    err = capsys.readouterr().err
    assert f"sdd compare: warning: {out}: these are sdd fuse scores" in err and "val trials" in err
    assert main([*compare, "--partitions", "test"]) == 0
    assert "fit figures" not in capsys.readouterr().err
    # an --apply output was fitted on other files: its record says nothing of these trials
    applied = tmp_path / "applied.csv"
    apply = ["fuse", "--apply", str(tmp_path / "fused.csv.fusion.json"), "--protocol", str(protocol)]
    assert main([*apply, "--scores", str(a), str(b), "--out", str(applied)]) == 0
    capsys.readouterr()
    assert main(["eval", "--scores", str(applied), "--protocol", str(protocol), "--out", str(tmp_path / "ap")]) == 0
    assert "fit figures" not in capsys.readouterr().err
    assert "fusion" not in json.loads((tmp_path / "ap" / "report.json").read_text())["inputs"]


# --- sdd calibrate -------------------------------------------------------------------------------------------------


def test_calibrating_on_every_partition_of_a_protocol_warns_that_test_files_are_in_the_fit(
    tmp_path, tiny_stats, capsys
):
    model, protocol, _, _ = calib_support._files(tmp_path, tiny_stats, n=16)
    lines = protocol.read_text().splitlines()
    parted = tmp_path / "parted.csv"
    rows = [f"{row},{'val' if i < 8 else 'test'}" for i, row in enumerate(lines[1:])]
    parted.write_text("\n".join([lines[0] + ",partition", *rows]) + "\n")
    argv = ["calibrate", "--model", str(model), "--protocol", str(parted)]
    assert main([*argv, "--out", str(tmp_path / "all")]) == 0
    err = capsys.readouterr().err
    assert "sdd calibrate: warning:" in err and "partitions test, val and none was chosen" in err
    assert "--partitions val" in err
    assert main([*argv, "--partitions", "val", "--out", str(tmp_path / "val")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(tmp_path / "one")]) == 0
    assert "warning" not in capsys.readouterr().err  # a protocol without partitions: nothing to choose


def test_calibrate_out_over_another_models_folder_is_refused_before_scoring(tmp_path, tiny_stats, capsys):
    model, protocol, _, _ = calib_support._files(tmp_path, tiny_stats)
    other = tiny_stats(tmp_path / "other", seed=1)
    (other / "MODEL_CARD.md").write_text("the other model\n")
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    assert md.load_model_dir(other).weights_digest != md.load_model_dir(model).weights_digest

    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol)]
    assert main([*argv, "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{other} holds another model" in err and "would replace it" in err
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before  # its weights and card as they were

    # a calibrated copy of the same weights is calibrated again in place of itself
    copy = tmp_path / "copy"
    assert main([*argv, "--out", str(copy)]) == 0
    assert main([*argv, "--out", str(copy), "--threshold", "bayes"]) == 0
    assert md.load_model_dir(copy).weights_digest == md.load_model_dir(model).weights_digest


def test_apply_refuses_a_systems_scores_of_another_model_than_it_was_fitted_on(tmp_path, capsys):
    # the record named each system's file only: scores of a model retrained since (or the files in another order)
    # were fused with weights fitted to another model's scale, without a word
    protocol, a, b = fuse_support._files(tmp_path)
    digests = {a: "a" * 64, b: "b" * 64}
    for path, digest in digests.items():
        columns = ["path", "score"] if path == a else ["path", "score", "raw_score"]
        (tmp_path / f"{path.name}.run.json").write_text(json.dumps({"weights_digest": digest, "columns": columns}))
    out = tmp_path / "fused.csv"
    fuse = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--column", "score", "raw_score"]
    assert main([*fuse, "--names", "a", "b", "--out", str(out)]) == 0
    record = tmp_path / "fused.csv.fusion.json"
    assert [s["weights_digest"] for s in json.loads(record.read_text())["systems"]] == [digests[a], digests[b]]
    capsys.readouterr()

    apply = ["fuse", "--apply", str(record), "--scores", str(a), str(b)]
    assert main([*apply, "--out", str(tmp_path / "same.csv")]) == 0  # the same models: applied
    (tmp_path / "a.csv.run.json").write_text(json.dumps({"weights_digest": "c" * 64, "columns": ["path", "score"]}))
    assert main([*apply, "--out", str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err
    assert f"--scores {a} (system 1, 'a') was scored by a model of weights cccccccccccc" in err
    assert "fit the fusion again" in err and not (tmp_path / "other.csv").exists()
    # a record rewritten over by another tool's file (other columns) says nothing of these scores: applied
    (tmp_path / "a.csv.run.json").write_text(json.dumps({"weights_digest": "c" * 64, "columns": ["path", "llr"]}))
    assert main([*apply, "--out", str(tmp_path / "unknown.csv")]) == 0


def test_calibrate_out_that_a_stopped_copy_left_with_its_weights_only_is_written(tmp_path, tiny_stats, capsys):
    # a copy stopped between its weights and its config.json holds these weights and no digest: not another model
    model, protocol, _, _ = calib_support._files(tmp_path, tiny_stats)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / md.WEIGHTS_NAME).write_bytes((model / md.WEIGHTS_NAME).read_bytes())
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(copy)]) == 0
    assert md.load_model_dir(copy).weights_digest == md.load_model_dir(model).weights_digest
