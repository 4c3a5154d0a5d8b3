"""Review recipes24 (configuration and model directories): values refused when a recipe is read instead of a
traceback once training starts, options that were silently ignored, and model directories that load from any
working directory."""

from __future__ import annotations

import json

import pytest

from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.errors import ConfigError
from sddkit.registry import get_registry
from sddkit.training.recipe import TrainRecipe


def _tiny_pretrained_dir(path):
    """A local Hugging Face folder of the wav2vec2_tiny preset (random weights), as a user's download."""
    from sddkit.frontends.encoders import PRESETS, _hf_class

    preset = PRESETS["wav2vec2_tiny"]
    model = _hf_class(preset.family, 1)(_hf_class(preset.family, 0)(**preset.arch))
    model.save_pretrained(path)
    return path


# --- strategy.seed -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_an_mldg_seed_outside_the_recipe_seed_range_is_refused_when_the_recipe_is_read(seed):
    # before: -1 was taken modulo 2**64 by torch's generator, 2**64 and above a ValueError traceback at training start
    recipe = {"model": {"frontend": "logmel", "backend": "lcnn"}, "strategy": {"name": "mldg", "seed": seed}}
    with pytest.raises(ConfigError, match=r"strategy.seed must be non-negative and below 2\*\*32"):
        from_dict(TrainRecipe, recipe)


def test_an_mldg_seed_in_range_still_seeds_the_split_generator():
    strategies = get_registry("strategy")
    mldg = strategies.build(strategies.parse({"name": "mldg", "seed": 2**32 - 1}), seed=0)
    assert mldg.generator.initial_seed() == 2**32 - 1


# --- model directories: relative pretrained folders ----------------------------------------------------------


def test_a_trainable_model_directory_saved_with_a_relative_pretrained_folder_loads_from_another_folder(
    tmp_path, monkeypatch
):
    # before: save_model_dir recorded the folder as given ("pre/w2v"), looked up against the loader's working
    # directory: the directory loaded only from the folder it was saved in ("not a local Hugging Face model directory")
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    _tiny_pretrained_dir(work / "pre" / "w2v")
    encoder = {"name": "wav2vec2_tiny", "pretrained": "pre/w2v"}
    frontend = {"name": "ssl", "encoder": encoder, "adapter": "lora", "lora": {"rank": 2}}
    cfg = from_dict(DetectorConfig, {"frontend": frontend, "backend": {"name": "linear"}}, "model")
    model = build_detector(cfg)
    out = save_model_dir(tmp_path / "m", model, model_config=to_dict(cfg), trainable_only=True)
    recorded = json.loads((out / "config.json").read_text())["model"]["frontend"]["encoder"]["pretrained"]
    assert recorded == str(work / "pre" / "w2v")
    monkeypatch.chdir(elsewhere)
    loaded = load_model_dir(out)
    for name, tensor in model.state_dict().items():
        assert loaded.model.state_dict()[name].equal(tensor), name


# --- encoder overrides ---------------------------------------------------------------------------------------


def test_an_encoder_override_transformers_cannot_build_is_a_config_error_naming_the_overrides():
    # before: `overrides: {hidden_dropout: 2.0}` was torch's ValueError traceback ("dropout probability has to be ...")
    frontends = get_registry("frontend")
    spec = frontends.parse(
        {"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "overrides": {"hidden_dropout": 2.0}}},
        path="model.frontend",
    )
    with pytest.raises(ConfigError, match=r"model\.frontend\.encoder\.overrides: .*hidden_dropout.*between 0 and 1"):
        frontends.build(spec)


def _ssl_recipe(encoder: dict) -> dict:
    return {"model": {"frontend": {"name": "ssl", "encoder": encoder}, "backend": "linear"}}


def test_a_dropout_override_beside_dropout_is_refused_by_a_training_recipe():
    # before: dropout set every dropout probability after the overrides, so attention_dropout 0.1 trained as 0.0
    encoder = {"name": "wav2vec2_tiny", "dropout": 0.0, "overrides": {"attention_dropout": 0.1}}
    with pytest.raises(ConfigError, match=r"encoder\.overrides \['attention_dropout'\]: dropout: 0\.0 .*ignored"):
        from_dict(TrainRecipe, _ssl_recipe(encoder))
    # either alone is taken; a model directory holding both (a folder's own values, written out) still builds
    from_dict(TrainRecipe, _ssl_recipe({"name": "wav2vec2_tiny", "dropout": 0.0}))
    from_dict(TrainRecipe, _ssl_recipe({"name": "wav2vec2_tiny", "overrides": {"attention_dropout": 0.1}}))
    build_detector(from_dict(DetectorConfig, _ssl_recipe(encoder)["model"], "model"))


# --- protocol readers: options of a detected format ----------------------------------------------------------


def _labels_csv(tmp_path):
    protocol = tmp_path / "labels.csv"
    protocol.write_text("path,label\na.wav,bonafide\nb.wav,spoof\n")
    return protocol


def test_an_unknown_option_of_a_detected_reader_lists_the_options_it_takes(tmp_path):
    # before: the reader's own error, "unknown key(s) 'rot' for protocol 'labels_csv'; valid keys: corpus, protocol,
    # root": protocol is no option (a spec's options refuse it)
    from sddkit.data.protocols import read_protocol

    protocol = _labels_csv(tmp_path)
    with pytest.raises(ConfigError) as err:
        read_protocol(protocol, rot=str(tmp_path))
    message = str(err.value)
    assert message.startswith("options: unknown key(s) 'rot' (did you mean 'root'?) for format 'labels_csv'")
    assert f"(detected from {protocol})" in message
    assert message.endswith("valid keys: root, corpus (sdd list protocol)")


def test_a_protocol_option_no_longer_replaces_the_path_read(tmp_path):
    # before: read_protocol(path, protocol=other) read `other` without a word (a spec's options refuse it)
    from sddkit.data.protocols import read_protocol

    protocol = _labels_csv(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("path,label\nc.wav,bonafide\nd.wav,spoof\ne.wav,spoof\n")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) 'protocol' for format 'labels_csv'"):
        read_protocol(protocol, format="labels_csv", protocol=str(other))
    assert len(read_protocol(protocol, root=str(tmp_path))) == 2


def test_a_recipe_with_a_detected_format_names_the_spec_and_its_options(tmp_path, capsys):
    protocol = _labels_csv(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model: {frontend: logmel, backend: lcnn}\n"
        f"data: {{train: {{protocol: {protocol}, options: {{corpuss: x}}}}}}\n"
        f"trainer: {{out_dir: {tmp_path / 'run'}, device: cpu, progress: false}}\n"
    )
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "data.train: options: unknown key(s) 'corpuss' (did you mean 'corpus'?) for format 'labels_csv'" in err
    assert "protocol" not in err.split("valid keys: ")[1].replace("sdd list protocol", "")


# --- sdd describe of a model directory -----------------------------------------------------------------------


def test_describe_of_a_model_directory_names_its_config_file(tmp_path, capsys):
    # before: "model.backend: unknown backend 'lcnnx'" named no file, where sdd score names the config.json
    cfg = from_dict(DetectorConfig, {"frontend": {"name": "logmel", "n_mels": 20}, "backend": "lcnn"}, "model")
    out = save_model_dir(tmp_path / "m", build_detector(cfg), model_config=to_dict(cfg))
    config = json.loads((out / "config.json").read_text())
    config["model"]["backend"]["name"] = "lcnnx"
    (out / "config.json").write_text(json.dumps(config))
    assert main(["describe", str(out)]) == 2
    assert f"{out / 'config.json'}: model.backend: unknown backend 'lcnnx'" in capsys.readouterr().err
    config["model"]["backend"]["name"] = "lcnn"
    (out / "config.json").write_text(json.dumps(config))
    assert main(["describe", str(out), "model.backend.channels=3"]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'config.json'} with the overrides given: model.backend.channels must be" in err
