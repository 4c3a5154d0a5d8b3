"""Bad output paths and reruns of the secondary commands (import-aasist, export-onnx, robustness, cv).

Each command must answer a bad ``--out`` with one line and exit status 2 (not a traceback, and not after
an hour of work), and a rerun must not mix or misreport the results of an earlier run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_support import one_line_error
from scoring_support import save_tiny_lcnn
from test_crossval import _recipe
from test_import_aasist import published_layout
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.errors import ConfigError
from sddkit.training import crossval
from sddkit.training.crossval import cross_validate, parse_folds

SR = 16000


@pytest.fixture
def labelled_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for label in ("bonafide", "spoof"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            sf.write(root / label / f"u{i}.wav", (0.1 * rng.standard_normal(6000)).astype(np.float32), SR)
    return root


def test_import_aasist_refuses_an_out_that_is_a_file(tmp_path, capsys):
    weights = tmp_path / "AASIST-L.pth"
    torch.save(published_layout("aasist_l"), weights)
    taken = tmp_path / "taken.txt"
    taken.write_text("not a folder")
    assert main(["import-aasist", str(weights), "--out", str(taken)]) == 2
    assert "not a directory" in one_line_error(capsys, "import-aasist")
    assert taken.read_text() == "not a folder"
    assert main(["import-aasist", str(weights), "--out", str(taken / "sub")]) == 2  # a file above it
    one_line_error(capsys, "import-aasist")


def test_export_onnx_refuses_an_out_below_a_file(tmp_path, capsys):
    model = save_tiny_lcnn(tmp_path / "model")
    taken = tmp_path / "taken.txt"
    taken.write_text("not a folder")
    assert main(["export-onnx", "--model", str(model), "--out", str(taken / "model.onnx")]) == 2
    assert "not a directory" in one_line_error(capsys, "export-onnx")


def test_export_onnx_refuses_an_out_that_is_neither_onnx_nor_a_folder(tiny_stats, tmp_path, capsys):
    # `--out FILE.onnx|DIR`: any other name was written as the ONNX file, replacing whatever was there
    # (a protocol, a CSV), and `--out new_folder/` became a file named new_folder
    model = tiny_stats(tmp_path / "model")
    notes = tmp_path / "protocol.csv"
    notes.write_text("path,label\n")
    assert main(["export-onnx", "--model", str(model), "--out", str(notes)]) == 2
    assert ".onnx" in one_line_error(capsys, "export-onnx")
    assert notes.read_text() == "path,label\n"
    assert main(["export-onnx", "--model", str(model), "--out", str(tmp_path / "exported") + "/"]) == 2
    one_line_error(capsys, "export-onnx")
    assert not (tmp_path / "exported").exists()
    assert main(["export-onnx", "--model", str(model), "--out", str(tmp_path / "M.ONNX")]) == 0
    assert (tmp_path / "M.ONNX").is_file()


def test_export_onnx_replaces_an_earlier_export_only_with_force(tiny_stats, tmp_path, capsys):
    # an existing graph (perhaps the one a service scores with) was overwritten without a word;
    # import-aasist already asked for --force
    model = tiny_stats(tmp_path / "model")
    out = tmp_path / "m.onnx"
    assert main(["export-onnx", "--model", str(model), "--out", str(out)]) == 0
    capsys.readouterr()
    before = out.read_bytes()
    other = tiny_stats(tmp_path / "other", seed=1)
    assert main(["export-onnx", "--model", str(other), "--out", str(out)]) == 2
    assert "--force" in one_line_error(capsys, "export-onnx")
    assert out.read_bytes() == before
    assert main(["export-onnx", "--model", str(other), "--out", str(out), "--force"]) == 0
    assert out.read_bytes() != before
    # --out DIR names DIR/model.onnx: the same rule
    assert main(["export-onnx", "--model", str(model), "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["export-onnx", "--model", str(model), "--out", str(model)]) == 2
    assert "model.onnx already exists" in one_line_error(capsys, "export-onnx")


def test_export_onnx_names_its_own_atol_flag(tmp_path, capsys):
    model = save_tiny_lcnn(tmp_path / "model")
    for bad in ("-1", "nan"):
        assert main(["export-onnx", "--model", str(model), "--out", str(tmp_path / "m.onnx"), "--atol", bad]) == 2
        assert "--atol must be >= 0" in one_line_error(capsys, "export-onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_robustness_refuses_an_out_that_is_a_file_before_scoring(tmp_path, labelled_folder, capsys, monkeypatch):
    model = save_tiny_lcnn(tmp_path / "model")
    taken = tmp_path / "taken.txt"
    taken.write_text("not a folder")

    def no_scoring(*a, **k):
        raise AssertionError("scored although the results could not be written")

    monkeypatch.setattr("sddkit.evaluation.robustness.run_robustness", no_scoring)
    argv = ["robustness", "--model", str(model), "--protocol", str(labelled_folder), "--conditions", "clean"]
    assert main([*argv, "--out", str(taken), "--quiet"]) == 2
    assert "not a directory" in one_line_error(capsys, "robustness")
    assert taken.read_text() == "not a folder"


def test_robustness_rerun_with_one_mode_leaves_no_scores_of_the_other(tmp_path, labelled_folder, capsys):
    model = save_tiny_lcnn(tmp_path / "model")
    out = tmp_path / "rob"
    argv = ["robustness", "--model", str(model), "--protocol", str(labelled_folder), "--conditions", "clean"]
    assert main([*argv, "--out", str(out), "--quiet", "--workers", "0"]) == 0
    assert (out / "scores_spoof_only.csv").is_file()
    assert main([*argv, "--out", str(out), "--quiet", "--workers", "0", "--mode", "all"]) == 0
    assert json.loads((out / "robustness.json").read_text())["modes"] == ["all"]
    # a scores_spoof_only.csv left from the first run would pass for this run's
    assert sorted(p.name for p in out.glob("scores_*.csv")) == ["scores_all.csv"]


def test_cv_rerun_with_another_recipe_is_refused_not_reported_as_its_result(tmp_path):
    recipe = _recipe(tmp_path)
    folds = parse_folds("source", ["s0", "s1,s2"])
    out = tmp_path / "cv"
    first = cross_validate(recipe, folds, out, workers=0)

    changed = _recipe(tmp_path)
    changed.seed = 7
    changed.optimizer.lr = 0.5
    with pytest.raises(ConfigError, match="another recipe") as refused:
        cross_validate(changed, folds, out, workers=0)
    assert "seed: 0 -> 7" in str(refused.value) and "optimizer.lr: 0.01 -> 0.5" in str(refused.value)
    assert json.loads((out / crossval.CV_NAME).read_text())["folds"] == first["folds"]

    # settings of how a run goes, not what it computes, may change on a resume
    quiet = _recipe(tmp_path, log_every=3, device="cpu")
    assert cross_validate(quiet, folds, out, workers=0)["folds"] == first["folds"]


def test_cv_seeds_check_every_seeds_folds_before_the_first_trains(tmp_path, monkeypatch):
    recipe = _recipe(tmp_path)
    folds = parse_folds("source", ["s0", "s1,s2"])
    out = tmp_path / "cv"
    crossval.cross_validate(recipe, folds, out / "seed_4", workers=0)  # seed 4's folds, by another recipe
    recipe.optimizer.lr = 0.5
    monkeypatch.setattr("sddkit.training.trainer.Trainer.fit", lambda *a, **k: pytest.fail("seed 3 trained"))
    with pytest.raises(ConfigError, match=r"seed_4.*optimizer\.lr: 0\.01 -> 0\.5"):
        crossval.cross_validate_seeds(recipe, folds, out, [3, 4], workers=0)


def test_cv_resume_of_an_unfinished_fold_with_another_recipe_is_refused(tmp_path, monkeypatch):
    recipe = _recipe(tmp_path, val_every=1)
    fold = parse_folds("source", ["s0", "s1"])[0]
    fold_dir = tmp_path / "cv" / fold.dir_name
    from sddkit.training import checkpoint

    real_save = checkpoint.save_checkpoint

    def crash_after_the_first(*a, **k):  # the run stops after its first checkpoint, as if killed
        real_save(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_checkpoint", crash_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        crossval.run_fold(recipe, fold, fold_dir, workers=0)
    monkeypatch.setattr(checkpoint, "save_checkpoint", real_save)

    changed = _recipe(tmp_path, val_every=1, max_steps=3)
    with pytest.raises(ConfigError, match=r"trainer\.max_steps: 2 -> 3"):
        crossval.run_fold(changed, fold, fold_dir, workers=0)
    figures = crossval.run_fold(recipe, fold, fold_dir, workers=0)  # the same recipe resumes
    assert figures["steps"] == 2


def test_sdd_cv_rerun_with_other_overrides_is_aone_line_error(tmp_path, capsys):
    import yaml

    from sddkit.config import to_dict

    recipe_yaml = tmp_path / "r.yaml"
    recipe_yaml.write_text(yaml.safe_dump(to_dict(_recipe(tmp_path))))
    argv = ["cv", str(recipe_yaml), "--hold-out", "s0", "--hold-out", "s1,s2", "--out", str(tmp_path / "cv")]
    assert main([*argv, "--workers", "0"]) == 0
    capsys.readouterr()
    assert main([*argv, "--workers", "0", "seed=3"]) == 2
    assert "seed: 0 -> 3" in one_line_error(capsys, "cv")
