"""A researcher's journey through the README (review 8): what a user sees after plausible mistakes with recipes,
``sdd compare`` and ``sdd cv``.

A recipe run from another folder than the one its relative paths assume names the spec and the working directory
they were read against; a multi-stage recipe (MoLEx expert addition, a mixture of trained experts) run before its
first stage says which stage is missing; ``--by`` / ``--cluster-by`` typos name the flag.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from cli_support import one_line_error
from scoring_support import save_tiny_lcnn
from test_crossval import _recipe
from test_journey_review7 import labelled  # noqa: F401  (fixture: a path,label CSV of noise files + scores)
from test_train_out_dir import _trainer
from test_train_support import one_thread, write_corpus  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.detectors.mixture import MixtureConfig, expert_dir_configs
from sddkit.errors import CheckpointError, ConfigError, ProtocolError
from sddkit.training.crossval import HeldOut, held_out_table

TINY = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}}


def _write_recipe(folder, **top) -> str:
    """A tiny recipe file in ``folder`` whose data paths are relative (to the recipe's folder, as a user might
    assume: they are read against the working directory)."""
    table = write_corpus(folder / "data", n=12, samples=4000)
    spec = {"protocol": f"data/{table.name}", "format": "utterance_table"}
    recipe = {
        "seed": 0,
        **top,
        "data": {"train": spec, "val": spec, "crop_samples": 4000, "batch_size": 4},
        "trainer": {"max_steps": 1, "out_dir": str(folder / "run"), "progress": False},
    }
    if "init_from" not in top:
        recipe["model"] = TINY
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_a_relative_protocol_path_missing_names_the_spec_and_the_working_directory(tmp_path, monkeypatch, capsys):
    # was "data/<table>.csv: no such utterance table": neither which spec nor where it had been looked for, so a
    # recipe run from the repository root instead of its own folder sent the user to the source
    recipe = _write_recipe(tmp_path / "exp")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", recipe]) == 2
    err = one_line_error(capsys, "train")
    assert "data.train: data/" in err and ": no such utterance table" in err
    assert f"read against the working directory {elsewhere}, not the recipe's folder" in err
    # an absolute path needs no hint; from the recipe's folder the same recipe trains
    assert main(["train", recipe, f"data.train.protocol={elsewhere / 'x.csv'}"]) == 2
    err = one_line_error(capsys, "train")
    assert "data.train: " in err and "working directory" not in err
    monkeypatch.chdir(tmp_path / "exp")
    assert main(["train", recipe]) == 0


def test_init_from_a_stage_not_trained_yet_names_init_from(tmp_path, monkeypatch, capsys):
    # was "runs/asvspoof5/xlsr300m_molex/best: no such model directory" for xlsr300m_molex_add_experts.yaml run
    # before xlsr300m_molex.yaml: nothing said it was the recipe's init_from
    monkeypatch.chdir(tmp_path)
    recipe = _write_recipe(tmp_path, init_from="runs/first_stage/best")
    assert main(["train", recipe]) == 2
    err = one_line_error(capsys, "train")
    assert "init_from=runs/first_stage/best: no such model directory (read against the working directory" in err
    assert "train it first" in err


def test_a_mixture_expert_not_trained_yet_names_which(tmp_path, monkeypatch):
    # was "runs/.../bst: no such model directory", without saying it was the second of the experts
    monkeypatch.chdir(tmp_path)
    save_tiny_lcnn(tmp_path / "runs" / "a" / "best")
    cfg = from_dict(MixtureConfig, {"expert_dirs": ["runs/a/best", "runs/b/best"], "gate": {"name": "average"}})
    with pytest.raises(CheckpointError, match=r"^expert_dirs\[1\] runs/b/best: no such model directory \(read "):
        expert_dir_configs(cfg)


@pytest.mark.parametrize("flag", ["--by", "--cluster-by"])
def test_compare_names_the_flag_of_a_misspelt_column(labelled, capsys, flag):  # noqa: F811
    # was "utterance table has no column 'sorce' ...": which option, and which file, was left to guess
    protocol, scores = labelled
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(scores), "--system", str(scores)]
    assert main([*argv, flag, "sorce"]) == 2
    err = one_line_error(capsys, "compare")
    assert f"{flag} sorce: {protocol} has no column 'sorce'" in err and "(did you mean 'source'?)" in err


def test_cv_names_the_by_option_of_a_misspelt_column(tmp_path):
    # was "utterance table has no column 'sorce'", naming neither --by nor the data it was looked for in
    with pytest.raises(ProtocolError, match=r"held-out column \(--by\) 'sorce': data.train \+ data.val .*'source'"):
        held_out_table(_recipe(tmp_path), HeldOut("sorce", ("s1",)))


def test_the_exported_models_in_the_way_are_named_as_folders(tmp_path, monkeypatch):
    # read "holds the exported model(s) best and final/"
    _trainer(tmp_path, monkeypatch).fit()
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    with pytest.raises(ConfigError, match=r"holds the exported model\(s\) best/ and final/ of an earlier run"):
        _trainer(tmp_path, monkeypatch).fit()


def test_a_score_file_given_as_the_protocol_says_so(labelled, tmp_path, capsys):  # noqa: F811
    # `sdd eval --scores meta.csv --protocol scores.csv` (swapped) read "scores.csv:1: cannot tell the protocol
    # format from this line (1 fields): 'path,score'": a comma-separated header counted as one field
    protocol, scores = labelled
    for argv in (
        ["eval", "--scores", str(protocol), "--protocol", str(scores), "--out", str(tmp_path / "report")],
        ["robustness", "--protocol", str(scores), "--out", str(tmp_path / "rob")],
    ):
        assert main(argv) == 2
        err = one_line_error(capsys, argv[0])
        assert f"{scores}: a score file (columns 'path,score'), not a protocol: it has no label column" in err
    assert not (tmp_path / "report").exists() and not (tmp_path / "rob").exists()


@pytest.mark.parametrize(("typed", "meant"), [("export", "export-onnx"), ("evaluate", "eval"), ("scroe", "score")])
def test_a_misspelt_command_names_the_closest(typed, meant, capsys):
    # argparse listed every command after "invalid choice: 'export'", not that `sdd export-onnx` is the one
    with pytest.raises(SystemExit) as stop:
        main([typed, "--out", "x.onnx"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"sdd: error: unknown command {typed!r} (did you mean {meant!r}?)" in err and "Traceback" not in err


def test_a_training_checkpoint_given_as_a_model_says_what_to_load(tmp_path, monkeypatch, capsys):
    # `sdd score --model runs/x/checkpoints/step-00000002` read "missing config.json" and nothing more
    result = _trainer(tmp_path, monkeypatch).fit()
    step = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))[-1]
    assert main(["describe", str(step)]) == 2
    err = one_line_error(capsys, "describe")
    assert "this is a training checkpoint (the state a run resumes from), not a model directory" in err
    assert f"load the model its run exported, {result.best_dir}" in err


def test_a_cv_fold_that_cannot_save_says_to_rerun_sdd_cv_not_resume(tmp_path, monkeypatch):
    # sdd cv has no --resume (a rerun resumes its folds), yet a fold's failed save or Ctrl-C said "continue with
    # --resume", which `sdd cv` refuses as an unrecognized argument
    import errno

    from sddkit.training import checkpoint as ckpt
    from sddkit.training.crossval import cross_validate

    def full_disk(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_checkpoint", full_disk)
    folds = [HeldOut("source", ("s0",)), HeldOut("source", ("s1",))]
    with pytest.raises(CheckpointError, match=r"No space left.*continue with a rerun of the same `sdd cv` command$"):
        cross_validate(_recipe(tmp_path), folds, tmp_path / "cv", workers=0)


def test_a_model_folder_without_model_onnx_says_how_to_export_into_it(tmp_path):
    # `sdd export-onnx --model M --out m.onnx`, then `sdd score --backend onnx --model M` read "M/model.onnx: no
    # such ONNX model (export one with `sdd export-onnx --model DIR --out FILE`)": FILE is what had been done
    from sddkit.scoring.onnx_export import resolve_onnx_path

    model = save_tiny_lcnn(tmp_path / "model")
    with pytest.raises(CheckpointError, match="no such ONNX model") as caught:
        resolve_onnx_path(model)
    assert f"export one there with `sdd export-onnx --model {model} --out {model}`" in str(caught.value)
    assert "or give an exported .onnx file itself" in str(caught.value)
