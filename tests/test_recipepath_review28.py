"""Recipes edited and overridden (review recipepath): the recipe a run records, read back, and the overrides of
``sdd cv``."""

from __future__ import annotations

import dataclasses

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.noise import NoiseConfig
from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.training.recipe import TrainRecipe, recipe_changes

MODEL = {"frontend": {"name": "logmel", "n_mels": 20}, "backend": {"name": "lcnn", "channels": 4}}


@dataclasses.dataclass
class _OtherNoiseDefault(NoiseConfig):
    """Noise as another sddkit defines it: its ``low_hz`` default changed (as it did, from 0 to 20 Hz)."""

    low_hz: float = 0.0


def test_the_recorded_augmentation_holds_its_defaults_so_a_default_changed_since_is_a_change(monkeypatch):
    written = {"model": MODEL, "data": {"augment": [{"name": "noise", "p": 0.4}]}}
    recorded = to_dict(from_dict(TrainRecipe, written))  # what run.json, a checkpoint, best/ and final/ hold
    noise = recorded["data"]["augment"][0]
    assert noise == to_dict(AUGMENTATIONS.parse({"name": "noise", "p": 0.4}))  # every default written out
    assert noise["low_hz"] == NoiseConfig().low_hz and "snr_db" in noise
    # a recipe recorded as written by an earlier sddkit reads as the same recipe (no change to warn of)
    as_written = {**recorded, "data": {**recorded["data"], "augment": [{"name": "noise", "p": 0.4}]}}
    assert recipe_changes(as_written, recorded) == []
    # the same recipe under an sddkit whose noise default differs trains another augmentation: a resume names it
    registry = AUGMENTATIONS._entries
    monkeypatch.setitem(registry, "noise", dataclasses.replace(registry["noise"], config_cls=_OtherNoiseDefault))
    now = to_dict(from_dict(TrainRecipe, written))
    assert recipe_changes(recorded, now) == [f"data.augment.0.low_hz: {NoiseConfig().low_hz} -> 0.0"]


def test_a_nested_augmentation_is_recorded_in_full_and_read_back_the_same():
    written = {
        "model": MODEL,
        "data": {"augment": [{"name": "one_of", "p": 0.6, "choices": ["gain", {"name": "noise", "snr_db": [5, 9]}]}]},
    }
    recorded = to_dict(from_dict(TrainRecipe, written))
    choices = recorded["data"]["augment"][0]["choices"]
    assert choices[0] == to_dict(AUGMENTATIONS.parse("gain"))
    assert choices[1]["snr_db"] == [5.0, 9.0] and choices[1]["low_hz"] == NoiseConfig().low_hz
    assert to_dict(from_dict(TrainRecipe, recorded)) == recorded  # the round trip of a resume or --print-config


def test_sdd_cv_takes_a_whole_trainer_override_that_leaves_out_dir_out(tmp_path, capsys):
    # the recipe's out_dir dropped by `trainer={...}` (each fold's is OUT/fold_<values>/ anyway) was refused as "an
    # override sets trainer.out_dir; drop it", with no out_dir in the override to drop
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {frontend: logmel, backend: lcnn}\ntrainer: {epochs: 2, out_dir: runs/x}\n")
    argv = ["cv", str(recipe), "--hold-out", "a", "--hold-out", "b", "--out", str(tmp_path / "o")]
    assert main([*argv, "trainer={epochs: 1, device: cpu}"]) == 2
    err = capsys.readouterr().err
    assert "the recipe has no data.train" in err and "out_dir" not in err  # read on, to the recipe's missing data
    # an out_dir the override does set is still refused
    assert main([*argv, "trainer={epochs: 1, out_dir: elsewhere}"]) == 2
    assert "an override sets trainer.out_dir" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_fold_started_under_another_validation_batch_size_resumes(tmp_path):
    # lowered after running out of memory in validation, data.val_batch_size was a recipe change: the rerun of
    # `sdd cv` refused every fold started before it (and a resume warned of, and recorded, a change of no effect)
    import json

    import pytest
    from test_crossval import _recipe

    from sddkit.errors import ConfigError
    from sddkit.training.crossval import HeldOut, check_fold_recipe, fold_recipe
    from sddkit.training.trainer import RESUME_SETTINGS

    recipe, fold = _recipe(tmp_path), HeldOut("source", ("s0",))
    fold_dir = tmp_path / "cv" / fold.dir_name
    fold_dir.mkdir(parents=True)
    (fold_dir / "run.json").write_text(json.dumps({"recipe": to_dict(fold_recipe(recipe, fold, fold_dir))}))
    (fold_dir / "fold.json").write_text("{}")  # a finished fold, read back by a rerun
    smaller = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, val_batch_size=2))
    check_fold_recipe(smaller, fold, fold_dir)  # no refusal
    assert recipe_changes(to_dict(recipe), to_dict(smaller), ignore=RESUME_SETTINGS) == []  # no resume warning
    # a change of what trains is still refused
    other = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, batch_size=2))
    with pytest.raises(ConfigError, match=r"trained with another recipe \(data.batch_size: 4 -> 2\)"):
        check_fold_recipe(other, fold, fold_dir)


def test_python_none_for_a_key_that_may_be_null_says_how_yaml_writes_null(tmp_path, capsys):
    # `trainer.patience=None` read "expected an integer, got 'None'", as if patience could not be switched off
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {frontend: logmel, backend: lcnn}\n")
    assert main(["train", str(recipe), "--print-config", "trainer.patience=None"]) == 2
    err = capsys.readouterr().err
    assert "trainer.patience: expected an integer or null, got 'None' (YAML's none is null or ~" in err
    assert main(["train", str(recipe), "--print-config", "trainer.patience=null"]) == 0
    capsys.readouterr()
    # where text is a value of its own, 'None' is that text
    data = {"model": MODEL, "trainer": {"out_dir": "None"}, "data": {"train": {"protocol": "x.csv", "format": None}}}
    assert from_dict(TrainRecipe, data).trainer.out_dir == "None"


def _run_record(folder):
    """A run's run.json as the trainer writes it (its keys), and a checkpoint's state.json beside."""
    import json

    recipe = to_dict(from_dict(TrainRecipe, {"model": MODEL, "trainer": {"out_dir": str(folder)}}))
    record = {"seed": 0, "recipe": recipe, "model_config": MODEL, "versions": {}, "git": {}, "sessions": []}
    (folder / "checkpoints" / "step-00000002").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(record))
    state = {"format": "sddkit-checkpoint", "format_version": 1, "tensors_digest": "0", "state": {"recipe": recipe}}
    (folder / "checkpoints" / "step-00000002" / "state.json").write_text(json.dumps(state))
    return folder / "run.json", folder / "checkpoints" / "step-00000002" / "state.json"


def test_a_runs_record_given_as_a_config_or_a_recipe_is_named(tmp_path, capsys):
    # `sdd describe runs/x/run.json` said "this looks like a published AASIST .conf: turn its weights into a model
    # directory with `sdd import-aasist`" (its model_config key); `sdd train runs/x/run.json` listed its keys as unknown
    run_json, state_json = _run_record(tmp_path / "run")
    assert main(["describe", str(run_json)]) == 2
    err = capsys.readouterr().err
    assert "the record of a training run (run.json), not a config" in err and "import-aasist" not in err
    assert main(["train", str(run_json), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "the record of a training run (run.json), not a training recipe" in err and "'recipe' entry" in err
    assert "unknown key" not in err
    assert main(["train", str(state_json), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "the state of a training checkpoint, not a training recipe" in err and "'state.recipe' entry" in err
    assert main(["describe", str(state_json)]) == 2
    assert "the state of a training checkpoint, not a config" in capsys.readouterr().err
