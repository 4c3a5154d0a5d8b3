"""Recipes and overrides as a researcher writes them (review 29): a key overridden twice, the folder a noise or
impulse-response augmentation requires, and `sdd describe` of a second stage (`init_from`) sized before or after
its first stage is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sddkit.cli.describe_cmd import count_params
from sddkit.cli.main import main
from sddkit.config import apply_overrides, from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import save_model_dir
from sddkit.errors import ConfigError
from sddkit.training.molex import ExpertAddition
from sddkit.training.recipe import load_recipe

RECIPE = {
    "model": {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4}},
    "data": {"train": {"protocol": "train.csv", "format": "utterance_table"}, "augment": [{"name": "noise"}]},
    "trainer": {"epochs": 2, "out_dir": "runs/x", "device": "cpu"},
}
MOLEX = {
    "frontend": {
        "name": "ssl",
        "encoder": {"name": "wav2vec2_tiny"},
        "adapter": "molex",
        "molex": {"num_experts": 2, "rank": 2, "router": {"name": "softmax", "level": "token"}},
    },
    "backend": {"name": "ssl_aasist"},
}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# --- 1. the same key overridden twice ------------------------------------------------------------------------------


def test_a_key_given_twice_with_two_values_is_refused_naming_both():
    # before: the last (epochs 5) was trained, silently
    with pytest.raises(ConfigError) as err:
        apply_overrides(RECIPE, ["trainer.epochs=3", "trainer.epochs=5"])
    assert str(err.value) == (
        "override 'trainer.epochs=5': trainer.epochs is already given, as 'trainer.epochs=3'; only the last would "
        "count: give each key once"
    )
    # a list item named in its two forms is one key; `true` is not the integer 1
    with pytest.raises(ConfigError, match=r"already given, as 'data\.augment\[0\]\.p=0\.3'"):
        apply_overrides(RECIPE, ["data.augment[0].p=0.3", "data.augment.-1.p=0.4"])
    with pytest.raises(ConfigError, match="already given"):
        apply_overrides(RECIPE, ["trainer.epochs=1", "trainer.epochs=true"])


def test_a_dotted_override_dropped_by_a_later_whole_section_is_refused():
    # before: trainer={...} replaced the section, and trainer.epochs=3 was lost without a word
    with pytest.raises(ConfigError) as err:
        apply_overrides(RECIPE, ["trainer.epochs=3", "trainer={epochs: 2, out_dir: runs/y}"])
    assert "replaces the whole of trainer, dropping the earlier 'trainer.epochs=3'" in str(err.value)
    assert "give trainer=... first and the dotted override after it" in str(err.value)
    with pytest.raises(ConfigError, match="dropping the earlier 'model.frontend.n_mels=64'"):
        apply_overrides(RECIPE, ["model.frontend.n_mels=64", "model.frontend=lfb"])
    # still taken: a section then a key inside it (what overriding is for), a value repeated, a section keeping it
    out = apply_overrides(RECIPE, ["trainer={epochs: 2, out_dir: runs/y}", "trainer.epochs=3"])
    assert out["trainer"] == {"epochs": 3, "out_dir": "runs/y"}
    assert apply_overrides(RECIPE, ["trainer.epochs=3", "trainer.epochs=3"])["trainer"]["epochs"] == 3
    # a section that keeps the value a dotted override gave drops nothing
    out = apply_overrides(RECIPE, ["trainer.epochs=2", "trainer={epochs: 2, out_dir: runs/y}"])
    assert out["trainer"] == {"epochs": 2, "out_dir": "runs/y"}


def test_sdd_train_refuses_a_key_given_twice(tmp_path, capsys):
    recipe = _write(tmp_path / "r.yaml", RECIPE)
    assert main(["train", str(recipe), "trainer.epochs=3", "trainer.epochs=5", "--print-config"]) == 2
    assert "trainer.epochs is already given, as 'trainer.epochs=3'" in capsys.readouterr().err


# --- 2. noise_files / rir_files need their folder ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key", "type_"),
    [("noise_files", "root", "str"), ("rir_files", "root", "str"), ("one_of", "choices", "list[any]")],
)
def test_a_key_the_augmentation_cannot_do_without_is_listed_as_required(name, key, type_, capsys):
    # before: `root: str = ` (an empty default), `choices: list[any] = []`, "required": false
    assert main(["list", "augmentation", name, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["options"][0]
    assert first == {"key": key, "type": type_, "default": None, "required": True}
    assert main(["list", "augmentation", name]) == 0
    assert f"  {key}: {type_} = (required)" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("name", ["noise_files", "rir_files"])
def test_a_recipe_without_the_folder_fails_when_read_naming_the_key(name, tmp_path):
    recipe = _write(tmp_path / "r.yaml", {**RECIPE, "data": {**RECIPE["data"], "augment": ["gain", {"name": name}]}})
    with pytest.raises(ConfigError, match=r"^data\.augment\[1\]: missing required key\(s\) 'root'$"):
        load_recipe(recipe)
    # an empty one names the key too (before: "data.augment[1]: root (a folder of ...) is required")
    with pytest.raises(ConfigError, match=r"^data\.augment\[1\]\.root must name a folder of .* files, got ''$"):
        load_recipe(recipe, ["data.augment[1].root=''"])


def test_one_of_errors_name_their_key(tmp_path):
    recipe = _write(tmp_path / "r.yaml", RECIPE)
    # before: "data.augment[0]: one_of needs at least one choice", "data.augment[0]: 2 weights for 1 choices"
    with pytest.raises(ConfigError, match=r"^data\.augment\[0\]: missing required key\(s\) 'choices'$"):
        load_recipe(recipe, ["data.augment=[one_of]"])
    with pytest.raises(ConfigError, match=r"^data\.augment\[0\]\.choices must list at least one augmentation"):
        load_recipe(recipe, ["data.augment=[{name: one_of, choices: []}]"])
    with pytest.raises(ConfigError, match=r"^data\.augment\[0\]\.weights: 2 given for 1 choices"):
        load_recipe(recipe, ["data.augment=[{name: one_of, choices: [gain], weights: [1, 2]}]"])


# --- 3. sdd describe of an init_from recipe ------------------------------------------------------------------------


def _second_stage(folder: Path, init_from: str) -> Path:
    stage2 = {**RECIPE, "init_from": init_from, "molex": {"add_experts": 1}}
    del stage2["model"]
    return _write(folder / "stage2.yaml", stage2)


def _grown_counts() -> dict[str, int]:
    model = build_detector(from_dict(DetectorConfig, MOLEX))
    ExpertAddition(model, 1)
    return count_params(model)


def test_describe_counts_an_init_from_recipe_from_its_model_directory(tmp_path, capsys):
    base = save_model_dir(
        tmp_path / "stage1" / "best", build_detector(from_dict(DetectorConfig, MOLEX)), model_config=MOLEX
    )
    recipe = _second_stage(tmp_path, str(base))
    # before: refused, "describe that directory", whose counts are not this stage's (no added expert)
    assert main(["describe", str(recipe)]) == 0
    captured = capsys.readouterr()
    described = json.loads(captured.out)
    grown = _grown_counts()
    assert {k: described[k] for k in grown} == grown
    assert 0 < described["trainable_params"] < described["total_params"]  # only the added experts train
    assert f"init_from={base}: counted from the model its config.json describes" in captured.err
    assert "grown by molex.add_experts=1" in captured.err


def test_describe_counts_an_init_from_recipe_before_its_first_stage_is_trained(tmp_path, capsys):
    stage1 = {**RECIPE, "model": MOLEX, "trainer": {**RECIPE["trainer"], "out_dir": str(tmp_path / "runs" / "s1")}}
    first = _write(tmp_path / "stage1.yaml", stage1)
    recipe = _second_stage(tmp_path, str(tmp_path / "runs" / "s1" / "best"))
    # before: "describe that directory (sdd describe .../best)", a directory that is not there
    assert main(["describe", str(recipe)]) == 0
    captured = capsys.readouterr()
    described = json.loads(captured.out)
    grown = _grown_counts()
    assert {k: described[k] for k in grown} == grown
    assert f"is not there yet: counted from the model of {first}, the recipe that trains it" in captured.err
    # a first stage sdd train would refuse is not counted under this recipe's name
    _write(first, {**stage1, "model": {**MOLEX, "backend": {"name": "ssl_aasist", "dropout": 2.0}}})
    assert main(["describe", str(recipe)]) == 2
    assert f"the recipe that trains it, {first}: model.backend" in capsys.readouterr().err


def test_describe_says_what_to_do_when_no_first_stage_is_found(tmp_path, capsys):
    recipe = _second_stage(tmp_path, str(tmp_path / "runs" / "s1" / "best"))
    assert main(["describe", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"init_from={tmp_path / 'runs' / 's1' / 'best'}: no such model directory" in err
    assert "Describe the first stage's recipe (sdd describe FIRST_RECIPE.yaml)" in err


def test_describe_refuses_an_init_from_model_that_add_experts_cannot_grow(tmp_path, capsys):
    lcnn = RECIPE["model"]
    base = save_model_dir(tmp_path / "best", build_detector(from_dict(DetectorConfig, lcnn)), model_config=lcnn)
    assert main(["describe", str(_second_stage(tmp_path, str(base)))]) == 2
    assert f"sdd describe: error: init_from={base}: " in capsys.readouterr().err
