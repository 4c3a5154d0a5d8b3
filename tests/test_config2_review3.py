"""Review of typed configs, overrides and ``sdd describe``: build errors name the recipe key, ``[i]`` indices in
overrides (the form error messages print), the override a registry error suggests works, YAML dates and booleans
in string settings, and ``sdd describe``'s meta-device counts for a pretrained folder that differs from its preset.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sddkit.cli.describe_cmd import describe
from sddkit.config import apply_overrides, from_dict, load_yaml, to_dict
from sddkit.detectors.detector import build_detector
from sddkit.detectors.mixture import build_mixture
from sddkit.errors import ConfigError
from sddkit.frontends.encoders import PRESETS
from sddkit.registry import get_registry
from sddkit.training.recipe import TrainRecipe

SPECTRAL = {"frontend": {"name": "logmel", "n_mels": 20}, "backend": {"name": "lcnn", "channels": 4}}


def _ssl(pretrained: str | None) -> dict[str, Any]:
    return {
        "frontend": {"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "pretrained": pretrained}},
        "backend": {"name": "linear"},
    }


def _tiny_folder(directory: Path, **changes: Any) -> str:
    """A local Hugging Face folder of the wav2vec2_tiny preset's family, with ``changes`` to its architecture."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    Wav2Vec2Model(Wav2Vec2Config(**{**PRESETS["wav2vec2_tiny"].arch, **changes})).save_pretrained(directory)
    return str(directory)


# --- a builder's error names the key the recipe wrote -------------------------------------------------------------


def test_a_missing_pretrained_folder_names_the_expert_it_belongs_to(tmp_path):
    recipe = {"mixture": {"experts": [_ssl(None), _ssl(str(tmp_path / "gone"))], "freeze_experts": False}}
    with pytest.raises(ConfigError, match=r"^mixture\.experts\[1\]\.frontend\.encoder\.pretrained: .*gone"):
        build_mixture(from_dict(TrainRecipe, recipe).mixture)
    with pytest.raises(ConfigError, match=r"^model\.frontend\.encoder\.pretrained: "):
        build_detector(from_dict(TrainRecipe, {"model": _ssl(str(tmp_path / "gone"))}).model)


def test_a_bad_encoder_override_names_the_whole_key():
    model = {"frontend": {"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "overrides": {"hiden_size": 8}}}}
    cfg = from_dict(TrainRecipe, {"model": {**model, "backend": {"name": "linear"}}}).model
    with pytest.raises(ConfigError, match=r"^model\.frontend\.encoder\.overrides: \['hiden_size'\]"):
        build_detector(cfg)


def test_the_key_a_spec_was_read_from_is_not_part_of_its_value():
    registry = get_registry("backend")
    a = registry.parse({"name": "lcnn", "channels": 4}, path="model.backend")
    b = from_dict(TrainRecipe, {"mixture": {"experts": [SPECTRAL], "freeze_experts": False}}).mixture.experts[0].backend
    assert a == b
    assert b.path == "mixture.experts[0].backend"
    assert a.to_dict() == to_dict(b) and "path" not in a.to_dict()


# --- overrides take list indices as errors write them ---------------------------------------------------------------


def _recipe() -> dict[str, Any]:
    train = [{"protocol": "a.csv", "format": "sddbench"}, {"protocol": "b.csv", "format": "sddbench"}]
    return {"model": dict(SPECTRAL), "data": {"train": train, "val": {"protocol": "v.csv", "format": "sddbench"}}}


def test_an_override_indexes_a_list_with_brackets_as_with_an_integer_part():
    dotted = apply_overrides(_recipe(), ["data.train.1.folds={n: 4, keep: [3]}"])
    bracketed = apply_overrides(_recipe(), ["data.train[1].folds={n: 4, keep: [3]}"])
    assert bracketed == dotted
    assert from_dict(TrainRecipe, bracketed).data.train[1].folds.keep == [3]
    nested = apply_overrides({"m": {"x": [[1, 2], [3]]}}, ["m.x[0][-1]=9"])
    assert nested == {"m": {"x": [[1, 9], [3]]}}


@pytest.mark.parametrize(
    "shared",
    [
        "  train: {protocol: m.csv, format: sddbench, options: &o {partitions: [train]}}\n"
        "  val: {protocol: m.csv, format: sddbench, options: *o}\n",
        "  train: &t {protocol: m.csv, format: sddbench, options: {partitions: [train]}}\n  val: {<<: *t}\n",
    ],
)
def test_an_override_changes_only_the_key_it_names_when_yaml_shares_a_value(tmp_path, shared):
    """A YAML alias or merge makes two keys hold one mapping: overriding the validation partitions changed the
    training ones too, silently (training on the validation data)."""
    path = tmp_path / "r.yaml"
    path.write_text("model: {frontend: logmel, backend: lcnn}\ndata:\n" + shared)
    recipe = from_dict(TrainRecipe, apply_overrides(load_yaml(path), ["data.val.options.partitions=[val]"]))
    assert recipe.data.train.options == {"partitions": ["train"]}
    assert recipe.data.val.options == {"partitions": ["val"]}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.val[0].protocol=x", r"\[0\] indexes a list, but data\.val is a mapping"),
        ("data.train[2].protocol=x", "index 2 is out of range for a list of 2"),
        ("molex.old_eval[0].protocol=x", r"molex\.old_eval is not set"),
        ("data.train[x].protocol=x", "is not a name or name\\[index\\]"),
        ("data.[0]=x", "has an empty part"),
    ],
)
def test_a_bracketed_index_that_cannot_apply_is_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(_recipe(), [override])


@pytest.mark.parametrize(
    ("section", "bad"),
    [
        ("data", {"augment": [{"name": "noise", "snr": [5, 30]}]}),
        ("data", {"augment": [{"name": "one_of", "choices": [{"name": "gain"}, {"name": "noise", "snr": 3}]}]}),
        (
            "mixture",
            {"experts": [SPECTRAL, {**SPECTRAL, "backend": {"name": "lcnn", "chanels": 4}}], "freeze_experts": False},
        ),
    ],
)
def test_the_override_a_registry_error_suggests_repairs_the_recipe(section, bad):
    recipe = {"mixture": bad} if section == "mixture" else {"model": dict(SPECTRAL), section: bad}
    with pytest.raises(ConfigError) as err:
        from_dict(TrainRecipe, recipe)
    suggested = re.search(r"the override '([^']+)'", str(err.value))
    assert suggested is not None, err.value
    assert str(err.value).startswith(suggested.group(1).split("=")[0] + ":")  # the key the message is about
    from_dict(TrainRecipe, apply_overrides(recipe, [suggested.group(1)]))  # parses: the override did what it said


def test_a_spec_read_outside_a_recipe_suggests_no_override():
    """A protocol reader's options (``read_protocol``) or a spec built in code has no key an override could name."""
    with pytest.raises(ConfigError) as err:
        get_registry("protocol").parse({"name": "sddbench", "protocol": "m.csv", "partitons": ["train"]})
    assert "(did you mean 'partitions'?)" in str(err.value)
    assert "override" not in str(err.value)


# --- YAML values read as the recipe writer meant them ---------------------------------------------------------------


def test_a_date_like_folder_name_is_a_string(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {frontend: logmel, backend: lcnn}\ntrainer: {out_dir: 2026-12-03}\n")
    assert from_dict(TrainRecipe, load_yaml(path)).trainer.out_dir == "2026-12-03"
    recipe = apply_overrides(load_yaml(path), ["trainer.out_dir=2026-12-04"])
    assert from_dict(TrainRecipe, recipe).trainer.out_dir == "2026-12-04"


def test_a_yaml_boolean_where_text_belongs_says_to_quote_it():
    recipe = apply_overrides({"model": dict(SPECTRAL)}, ["trainer.out_dir=off"])
    with pytest.raises(ConfigError, match=r"^trainer\.out_dir: expected a string, got false .*quote it"):
        from_dict(TrainRecipe, recipe)
    assert from_dict(TrainRecipe, apply_overrides(recipe, ["trainer.out_dir='off'"])).trainer.out_dir == "off"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # `data.train.protocol=...` meant: the error printed the typing expression and each alternative's complaint
        ("data.train=/data/LA/p.txt", "data.train: expected a mapping or a list or null, got '/data/LA/p.txt'"),
        ("loss.class_weights=0.5", "loss.class_weights: expected a list of 2 numbers or null, got 0.5"),
        ("data.val_batch_size=[8]", "data.val_batch_size: expected an integer or null, got [8]"),
    ],
)
def test_a_value_of_no_accepted_shape_names_the_shapes_in_words(override, message):
    with pytest.raises(ConfigError) as err:
        from_dict(TrainRecipe, apply_overrides({"model": dict(SPECTRAL)}, [override]))
    assert str(err.value) == message


# --- sdd describe counts what a pretrained folder builds -----------------------------------------------------------


def test_describe_on_meta_counts_the_pretrained_folders_architecture(tmp_path):
    folder = _tiny_folder(tmp_path / "w2v", conv_bias=False)  # the preset has biases: the folder's model has fewer
    config = _ssl(folder)
    on_meta, on_cpu = describe(config, "meta"), describe(config, "cpu")
    assert on_meta == on_cpu
    assert on_meta["total_params"] < describe(_ssl(None), "meta")["total_params"]


def test_describe_on_meta_refuses_a_folder_of_another_size_as_building_it_does(tmp_path):
    folder = _tiny_folder(tmp_path / "w2v", hidden_size=48)
    with pytest.raises(ConfigError, match="differs from the preset"):
        describe(_ssl(folder), "cpu")
    with pytest.raises(ConfigError, match="differs from the preset"):
        describe(_ssl(folder), "meta")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # a detector config at the top level of its file: no `model` key the error could name
        ("frontend: logmel\nbackend: lcnn\nseed: 3\n", "{file}: unknown key(s) 'seed'; valid keys: backend, frontend"),
        ("frontend: {name: logmel, n_mels: 0}\nbackend: lcnn\n", "frontend.n_mels must be > 0"),
        ("experts: [{frontend: logmel, backend: lcnn}]\ngate: {name: classic, x: 1}\n", "gate: unknown key(s) 'x'"),
        # a mixture recipe: its experts are under `mixture`, and a builder's error says so
        (
            "mixture: {experts: [{frontend: {name: ssl, encoder: {name: wav2vec2_tiny, pretrained: /gone}}, "
            "backend: linear}], freeze_experts: false}\n",
            "mixture.experts[0].frontend.encoder.pretrained: '/gone'",
        ),
    ],
)
def test_describe_names_keys_as_the_file_writes_them(tmp_path, capsys, text, error):
    from sddkit.cli.main import main

    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert main(["describe", str(path), "--device", "cpu"]) == 2
    assert f"sdd describe: error: {error.format(file=path)}" in capsys.readouterr().err
