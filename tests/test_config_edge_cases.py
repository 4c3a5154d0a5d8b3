"""Edge cases of strict config parsing, overrides, registries and ``sdd cv`` fold checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from sddkit.config import apply_overrides, from_dict, load_yaml
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.recipe import TrainRecipe

MODEL = {"frontend": "logmel", "backend": "lcnn"}


def test_exponent_without_a_dot_is_a_float_in_recipes_and_overrides(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-5 as the string '1e-5'; the documented `lr: 1e-5` must still work
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optimizer: {lr: 1e-5, weight_decay: 2E-4, eps: 1.0e8}\n")
    assert load_yaml(recipe)["optimizer"] == {"lr": 1e-5, "weight_decay": 2e-4, "eps": 1e8}
    # (optimizer.lr is not read with the cyclic schedule: weight_decay carries the exponent here)
    overrides = ["optimizer.weight_decay=1e-3", "schedule.name=cyclic", "schedule.max_lr=+3e-4", "optimizer.eps=.5e-8"]
    out = apply_overrides({"model": MODEL}, overrides)
    cfg = from_dict(TrainRecipe, out)
    assert (cfg.optimizer.weight_decay, cfg.schedule.max_lr, cfg.optimizer.eps) == (1e-3, 3e-4, 0.5e-8)
    out = apply_overrides({}, ["a=1e3", "b='1e3'", "c=12", "d=v1e3"])
    assert out == {"a": 1000.0, "b": "1e3", "c": 12, "d": "v1e3"}


@pytest.mark.parametrize("override", ["strategy=null", "model.frontend=null", "model.backend=~"])
def test_a_component_field_is_not_silently_none(override):
    with pytest.raises(ConfigError, match="null"):
        from_dict(TrainRecipe, apply_overrides({"model": MODEL}, [override]))


def test_a_mixture_gate_is_not_silently_none():
    with pytest.raises(ConfigError, match="mixture.gate"):
        from_dict(TrainRecipe, {"mixture": {"experts": [MODEL], "gate": None}})


@pytest.mark.parametrize("name", [["average"], {"a": 1}])
def test_a_component_name_that_is_not_a_string_is_a_config_error(name):
    with pytest.raises(ConfigError, match="name"):
        get_registry("gate").parse({"name": name}, path="mixture.gate")


@dataclass
class _Small:
    a: int = 1
    options: dict[str, Any] = field(default_factory=dict)


def test_unknown_keys_of_mixed_types_are_a_config_error():
    # YAML reads `on:` / `1:` keys as True / 1; next to a misspelt string key sorting them must not crash
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(_Small, {"a": 1, True: 2, "typo": 3, 1.5: 4})


def test_mapping_keys_are_type_checked():
    # `options: {on: x}` is {True: 'x'} in YAML 1.1; readers take options as keyword arguments
    with pytest.raises(ConfigError, match="options"):
        from_dict(_Small, {"options": {True: "x"}})
    with pytest.raises(ConfigError, match=r"data.train.where"):
        from_dict(TrainRecipe, {"model": MODEL, "data": {"train": {"protocol": "p", "where": {1: "a"}}}})
    assert from_dict(_Small, {"options": {"root": "x"}}).options == {"root": "x"}


# --- sdd cv: held-out groups are checked before any fold trains ---------------------------------------
def test_held_out_value_absent_from_the_data_is_refused_before_training(tmp_path, monkeypatch):
    from test_crossval import _recipe

    from sddkit.training.crossval import cross_validate, parse_folds

    def no_training(*a, **k):
        raise AssertionError("a fold trained although a held-out group names a value not in the data")

    monkeypatch.setattr("sddkit.training.trainer.Trainer.fit", no_training)
    recipe = _recipe(tmp_path)
    for groups in (["s0", "s1,typo"], ["s0,s1", "typo"]):
        with pytest.raises(ConfigError, match=r"'typo'.*s0, s1, s2"):
            cross_validate(recipe, parse_folds("source", groups), tmp_path / "cv", workers=0)
    assert not list((tmp_path / "cv").glob("fold_*"))


def test_groups_whose_folders_would_collide_are_refused():
    from sddkit.training.crossval import parse_folds

    # "a b" and "a_b" share fold_a_b/: the second fold would resume the first one's checkpoints
    with pytest.raises(ConfigError, match="fold_a_b"):
        parse_folds("source", ["a b", "a_b"])
    with pytest.raises(ConfigError, match=r"fold_a\+b"):
        parse_folds("source", ["a+b", "a,b"])


def test_yaml_syntax_errors_are_one_line_with_the_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  frontend: {name: logmel\ntrainer: {epochs: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(bad)
    message = str(info.value)
    assert "\n" not in message and "line 3" in message and str(bad) in message, message
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, ["a=[1, 2"])
    assert "\n" not in str(info.value) and "override 'a=[1, 2'" in str(info.value)


def test_numbers_read_as_yaml_1_2_reads_them(tmp_path):
    # YAML 1.1 read a leading zero as octal and colons as base 60: max_steps=0100 trained 64 steps, n_mels: 1:20 was 80
    out = apply_overrides({}, ["a=0100", "b=020", "c=1:20", "d=0x10", "e=1_000", "f=.inf", "g=-5", "h=1.", "i=0o17"])
    assert out == {"a": 100, "b": 20, "c": "1:20", "d": 16, "e": 1000, "f": float("inf"), "g": -5, "h": 1.0, "i": 15}
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer: {max_steps: 0100}\nmodel: {frontend: {name: logmel, n_mels: 1:20}}\n")
    assert load_yaml(recipe) == {
        "trainer": {"max_steps": 100},
        "model": {"frontend": {"name": "logmel", "n_mels": "1:20"}},
    }
    with pytest.raises(ConfigError, match="n_mels"):
        from_dict(TrainRecipe, {**load_yaml(recipe), "model": {**load_yaml(recipe)["model"], "backend": "lcnn"}})


@pytest.mark.parametrize("override", ["trainer.out_dir=", "data.domain_column= "])
def test_an_override_without_a_value_is_refused(override):
    # `trainer.out_dir=` (an empty shell variable) became '' and was accepted
    with pytest.raises(ConfigError, match="has no value: write .*=null for none"):
        apply_overrides({"model": MODEL}, [override])
    assert apply_overrides({}, ["a=''"]) == {"a": ""}
