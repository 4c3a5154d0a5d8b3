"""Review 28 (describepath): sizing models before training with `sdd list` and `sdd describe`."""

from __future__ import annotations

import json

import pytest
from cli_support import one_line_error

from sddkit.cli.main import main
from sddkit.registry import get_registry


def _tiny_w2v_folder(path, **changes):
    """A Hugging Face folder of wav2vec2_tiny's family: its config.json only (describe reads nothing else)."""
    from transformers import Wav2Vec2Config

    from sddkit.frontends.encoders import PRESETS

    Wav2Vec2Config(**{**PRESETS["wav2vec2_tiny"].arch, **changes}).save_pretrained(path)
    return path


def test_list_family_name_prints_a_components_options_with_types_and_defaults(capsys):
    """A component's keys were found only in its source, or in the error of a misspelt key (names, no defaults):
    `sdd list backend lcnn` was refused as `unrecognized arguments: lcnn`."""
    assert main(["list", "backend", "lcnn"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("backend lcnn: LCNN")
    assert "  channels: int = 32" in lines and "  head: linear|cosine = linear" in lines
    assert main(["list", "frontend", "ssl"]) == 0
    out = capsys.readouterr().out
    # a component key names its family; a section's keys follow it, with their defaults
    assert "  encoder: encoder (sdd list encoder) = (required)" in out
    assert "  lora.rank: int = 8" in out and "  molex.num_experts: int = 4" in out
    assert main(["list", "frontend", "logmel"]) == 0
    out = capsys.readouterr().out  # a section off by default shows as such before its keys
    assert "  spec_augment: mapping | null = null\n  spec_augment.freq_width: tuple[int, int] = [0, 15]" in out


def test_list_family_name_json_gives_defaults_a_recipe_can_take(capsys):
    assert main(["list", "gate", "attention", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["family"] == "gate" and shown["name"] == "attention"
    defaults = {o["key"]: o["default"] for o in shown["options"]}
    assert defaults == {"d_model": 128, "heads": 4, "layers": 2, "ff_dim": 256, "dropout": 0.1}
    # the defaults shown are the config's own: written back into a spec they give the default config
    gates = get_registry("gate")
    assert gates.parse({"name": "attention", **defaults}) == gates.parse("attention")
    assert main(["list", "gate", "average", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["options"] == []


def test_list_of_an_unknown_component_is_a_one_line_error(capsys):
    assert main(["list", "backend", "lcn"]) == 2
    assert "unknown backend 'lcn'" in one_line_error(capsys, "list")


def test_list_protocol_name_shows_the_options_a_recipe_gives(capsys):
    """The option the protocol path fills (`root` of a folder reader) is not one of them, as in `sdd list protocol`."""
    assert main(["list", "protocol", "mlaad", "--json"]) == 0
    keys = [o["key"] for o in json.loads(capsys.readouterr().out)["options"]]
    assert keys == ["bonafide_root", "bonafide", "languages", "corpus"]


def test_describe_names_the_key_of_a_pretrained_folder_that_fits_no_preset(tmp_path, capsys):
    """On the meta device (the default) the error named no key (`encoder 'wav2vec2_tiny': the pretrained model
    differs ...`), where `--device cpu` and `sdd train` name `model.frontend.encoder`."""
    folder = _tiny_w2v_folder(tmp_path / "hf", intermediate_size=48)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model:\n  frontend: {{name: ssl, encoder: {{name: wav2vec2_tiny, pretrained: {folder}}}}}\n"
        "  backend: linear\n"
    )
    for device in ("meta", "cpu"):
        assert main(["describe", str(recipe), "--device", device]) == 2
        err = one_line_error(capsys, "describe")
        assert "error: model.frontend.encoder: encoder 'wav2vec2_tiny': the pretrained model differs" in err, device
    config = tmp_path / "mixture.yaml"  # a config file without a 'model' key names its keys as the file holds them
    config.write_text(
        "experts:\n  - {frontend: logmel, backend: {name: lcnn, channels: 8}}\n"
        f"  - {{frontend: {{name: ssl, encoder: {{name: wav2vec2_tiny, pretrained: {folder}}}}}, backend: linear}}\n"
        "gate: average\n"
    )
    assert main(["describe", str(config)]) == 2
    assert "error: experts[1].frontend.encoder: encoder 'wav2vec2_tiny'" in one_line_error(capsys, "describe")


def test_describe_says_when_a_missing_pretrained_folder_left_the_counts_to_the_preset(tmp_path, capsys):
    """A folder that is not there was counted silently with the preset's architecture: a model directory whose
    folder had moved, trained from a folder without convolution biases, was reported 96 parameters larger."""
    folder = _tiny_w2v_folder(tmp_path / "hf", conv_bias=False)
    config = tmp_path / "detector.yaml"
    config.write_text(
        f"frontend: {{name: ssl, encoder: {{name: wav2vec2_tiny, pretrained: {folder}}}}}\nbackend: linear\n"
    )
    assert main(["describe", str(config)]) == 0
    captured = capsys.readouterr()
    from_folder = json.loads(captured.out)["total_params"]
    assert captured.err == ""
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert main(["describe", str(config)]) == 0
    captured = capsys.readouterr()
    # three biases of 32 channels: the preset's convolutions have them, the folder's do not
    assert json.loads(captured.out)["total_params"] == from_folder + 3 * 32
    assert captured.err.startswith(f"sdd describe: note: frontend.encoder.pretrained: '{folder}' is not there")
    assert "counted with the architecture of the preset wav2vec2_tiny" in captured.err


@pytest.mark.parametrize("family", ["backend", "frontend", "gate", "router", "strategy", "augmentation", "encoder"])
def test_every_listed_default_is_a_value_the_components_config_takes(family, capsys):
    """The defaults `sdd list FAMILY NAME` shows are what a recipe may write (a required key aside)."""
    registry = get_registry(family)
    for name in registry.names():
        assert main(["list", family, name, "--json"]) == 0
        options = json.loads(capsys.readouterr().out)["options"]
        top = {o["key"]: o["default"] for o in options if "." not in o["key"] and not o["required"]}
        entry = registry.get(name)
        if entry.config_cls is None:
            assert options == []
            continue
        from sddkit.config import from_dict, to_dict

        try:
            default = to_dict(from_dict(entry.config_cls, {}))
        except Exception:  # a config with a key a recipe must give (noise_files' root, one_of's choices)
            continue
        assert to_dict(from_dict(entry.config_cls, top)) == default, name
