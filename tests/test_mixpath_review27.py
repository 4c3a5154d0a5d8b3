"""Review mixpath27: a mixture's expert_dirs (and a recipe's init_from) naming a file that is there (a model
directory's config.json, a run's checkpoints/latest pointer, an ONNX export) said "no such model directory; train
that expert first", sending the user to retrain a model that exists; now the error says what the file is and which
model directory to give instead."""

from __future__ import annotations

import pytest
from cli_support import one_line_error
from scoring_support import save_tiny_lcnn
from test_journey8_review8 import _write_recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.errors import CheckpointError


def _mixture(*dirs: str) -> MixtureConfig:
    return from_dict(MixtureConfig, {"expert_dirs": list(dirs), "gate": {"name": "average"}})


def test_an_expert_given_as_its_config_json_names_the_model_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_tiny_lcnn(tmp_path / "runs" / "a" / "best")
    save_tiny_lcnn(tmp_path / "runs" / "b" / "best", seed=1)
    with pytest.raises(CheckpointError) as err:
        build_mixture(_mixture("runs/a/best", "runs/b/best/config.json"))
    message = str(err.value)
    assert message.startswith("expert_dirs[1] runs/b/best/config.json: not a model directory (a file)")
    assert "load the model directory that holds it, runs/b/best" in message
    assert "train that expert first" not in message and "no such model directory" not in message
    # an expert that is not there at all is still one to train first
    with pytest.raises(CheckpointError, match=r"expert_dirs\[1\] runs/c/best: no such model directory .*train that"):
        build_mixture(_mixture("runs/a/best", "runs/c/best"))


def test_an_expert_given_as_a_runs_checkpoint_pointer_names_its_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_tiny_lcnn(tmp_path / "runs" / "a" / "best")
    save_tiny_lcnn(tmp_path / "runs" / "b" / "best", seed=1)
    (tmp_path / "runs" / "b" / "checkpoints").mkdir()
    (tmp_path / "runs" / "b" / "checkpoints" / "latest").write_text("step-00000040\n")
    with pytest.raises(CheckpointError) as err:
        build_mixture(_mixture("runs/a/best", "runs/b/checkpoints/latest"))
    message = str(err.value)
    assert "latest checkpoint: load the model its run exported, runs/b/best" in message
    assert "train that expert first" not in message


def test_an_expert_given_as_an_onnx_export_says_to_give_the_model_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_tiny_lcnn(tmp_path / "a")
    (tmp_path / "b.onnx").write_bytes(b"\x08\x07")  # not a model directory, whatever its bytes
    with pytest.raises(CheckpointError) as err:
        build_mixture(_mixture("a", "b.onnx"))
    message = str(err.value)
    assert "expert_dirs[1] b.onnx: not a model directory (a file); an ONNX export" in message
    assert "give the model directory it was exported from" in message
    assert "train that expert first" not in message


def test_init_from_a_config_json_names_the_model_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_tiny_lcnn(tmp_path / "first" / "best")
    recipe = _write_recipe(tmp_path, init_from="first/best/config.json")
    assert main(["train", recipe]) == 2
    err = one_line_error(capsys, "train")
    assert "first/best/config.json: not a model directory (a file); load the model directory that holds it" in err
    assert "train it first" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_resume_given_expert_names_renames_best_as_well_as_final(tmp_path):
    from test_mixjourney23_review23 import _expert_dirs
    from test_mixjourney23_review23 import _recipe as _gate_recipe

    from sddkit.config import to_dict
    from sddkit.detectors.model_dir import load_model_dir
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    dirs = _expert_dirs(tmp_path / "runs", ["expert_asv", "expert_add"])
    Trainer(_gate_recipe(tmp_path, dirs, steps=1)).fit()
    renamed = to_dict(_gate_recipe(tmp_path, dirs, steps=1))
    renamed["mixture"]["expert_names"] = ["asv", "add"]
    # the finished run resumed to be exported again under the names given (as docs/architecture.md says a resume
    # names them): best/ came from its checkpoint's record, under the old names, while final/ took the new ones
    Trainer(from_dict(TrainRecipe, renamed), resume=True).fit()
    for name in ("best", "final"):
        assert load_model_dir(tmp_path / "run" / name).model_config["expert_names"] == ["asv", "add"], name
