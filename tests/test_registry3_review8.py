"""Review of recipe reading and ``sdd describe``/``sdd train`` inputs: YAML scalars that crashed the reader, choice
errors without a suggestion, a folder or a model's ``config.json`` given as a recipe, a gate recipe described before
its experts exist."""

from __future__ import annotations

import json
import re

import pytest
from cli_support import one_line_error

from sddkit.cli.main import main
from sddkit.config import apply_overrides, from_dict, load_yaml
from sddkit.errors import ConfigError
from sddkit.training.recipe import TrainRecipe, load_recipe

DETECTOR = {"model": {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}}}


@pytest.mark.parametrize("text", ["._", "-._", "._e5", ".__"])
def test_a_dot_and_underscores_are_text_not_a_crash(tmp_path, text):
    """The float pattern took `._` (a dot and underscores, no digit): float('.') raised a ValueError traceback."""
    assert apply_overrides({}, [f"a={text}"]) == {"a": text}
    path = tmp_path / "r.yaml"
    path.write_text(f"a: {text}\n")
    assert load_yaml(path) == {"a": text}
    assert apply_overrides({}, ["a=.5_", "b=-._5"]) == {"a": 0.5, "b": -0.5}  # a digit after the dot: a number


def test_an_integer_too_long_to_read_is_a_config_error(tmp_path):
    """Python refuses a decimal string over 4300 digits: a ValueError traceback out of the YAML reader."""
    path = tmp_path / "r.yaml"
    path.write_text("seed: 1" + "0" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"r.yaml: invalid YAML: an integer of 5001 digits is too long at line 1"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="an integer of 5001 digits is too long"):
        apply_overrides({}, ["seed=1" + "0" * 5000])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("!!int abc", "'abc' is not an integer"),
        ("!!int -0x_", "'-0x_' is not an integer"),
        ("!!float abc", "'abc' is not a number"),
        ("!!float ._", "'._' is not a number"),
        ("!!bool maybe", "'maybe' is not true or false"),
        ("!!timestamp 2001-13-45", "could not determine a constructor for the tag 'tag:yaml.org,2002:timestamp'"),
    ],
)
def test_a_value_an_explicit_tag_cannot_read_is_a_config_error(tmp_path, value, problem):
    """An explicit tag forces its constructor on the text: a ValueError, KeyError or AttributeError traceback."""
    with pytest.raises(ConfigError, match=f"invalid value: {re.escape(problem)} at line 1, column 1"):
        apply_overrides({}, [f"a={value}"])
    path = tmp_path / "r.yaml"
    path.write_text(f"a: {value}\n")
    with pytest.raises(ConfigError, match=f"invalid YAML: {re.escape(problem)} at line 1, column 4"):
        load_yaml(path)
    assert apply_overrides({}, ["a=!!int 0100", "b=!!float 1", "c=!!bool yes"]) == {"a": 100, "b": 1.0, "c": True}


def test_a_misspelt_choice_suggests_the_closest():
    """A Literal setting listed its choices but, unlike every other name, did not say which one was meant."""
    with pytest.raises(ConfigError, match=r"data.sampler: 'class_balance' is not one of .* \(did you mean 'class_bal"):
        from_dict(TrainRecipe, apply_overrides(DETECTOR, ["data.sampler=class_balance"]))
    with pytest.raises(ConfigError, match=r"schedule.name: 'cosin' .* \(did you mean 'cosine'\?\)"):
        from_dict(TrainRecipe, apply_overrides(DETECTOR, ["schedule.name=cosin"]))


def test_a_yaml_boolean_given_for_a_choice_says_so():
    """`decode_cache: no` read `False is not one of [...]`: a Python value, with no word of YAML's booleans."""
    with pytest.raises(ConfigError) as info:
        from_dict(TrainRecipe, apply_overrides(DETECTOR, ["data.decode_cache=no"]))
    assert str(info.value) == (
        "data.decode_cache: expected one of ['none', 'lazy', 'preload'], got false (YAML reads an unquoted "
        "yes/no/on/off/true/false as true or false)"
    )


def test_a_folder_given_as_a_recipe_is_not_called_missing(tmp_path, capsys):
    """`sdd train runs/x` said `runs/x: no such recipe file` of a path that is there."""
    with pytest.raises(ConfigError, match="a folder, not a recipe file"):
        load_yaml(tmp_path)
    assert main(["train", str(tmp_path)]) == 2
    assert f"{tmp_path}: a folder, not a recipe file (YAML)" in one_line_error(capsys, "train")


def test_describe_of_a_missing_path_does_not_call_it_a_recipe(tmp_path, capsys):
    """`sdd describe runs/x/bset` (a model directory misspelt) said `no such recipe file`."""
    assert main(["describe", str(tmp_path / "bset")]) == 2
    assert f"{tmp_path / 'bset'}: no such config file or model directory" in one_line_error(capsys, "describe")


def test_a_utf16_recipe_is_named_as_such(tmp_path):
    """Windows PowerShell 5's `>` writes UTF-16: the error named a byte 0xff, not the encoding to save it in."""
    path = tmp_path / "r.yaml"
    path.write_bytes("seed: 1\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xff on line 1\) \(UTF-16 text: save it as UTF-8\)"):
        load_yaml(path)


@pytest.fixture
def model_dir(tmp_path):
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir

    cfg = from_dict(DetectorConfig, DETECTOR["model"])
    return save_model_dir(tmp_path / "model", build_detector(cfg), model_config=DETECTOR["model"])


def test_describe_reads_a_model_directorys_config_json_as_the_directory(model_dir, capsys):
    """A model's config.json (JSON is YAML) was checked as a recipe: `TrainRecipe: unknown key(s) 'architecture',
    'format', ... (did you mean 'data'?)`."""
    assert main(["describe", str(model_dir)]) == 0
    of_dir = json.loads(capsys.readouterr().out)
    assert main(["describe", str(model_dir / "config.json"), "model.backend.channels=8"]) == 0
    of_file = json.loads(capsys.readouterr().out)
    assert of_file["architecture"] == "detector" and of_file["total_params"] > of_dir["total_params"]
    assert main(["describe", str(model_dir / "config.json")]) == 0
    assert json.loads(capsys.readouterr().out) == of_dir


def test_train_on_a_model_directorys_config_json_says_what_it_is(model_dir, capsys):
    with pytest.raises(
        ConfigError, match=r"the config.json of a model directory, not a training recipe; .*init_from: "
    ):
        load_recipe(model_dir / "config.json")
    assert main(["train", str(model_dir / "config.json")]) == 2
    assert f"init_from: {model_dir}" in one_line_error(capsys, "train")


def test_describe_of_a_gate_recipe_before_its_experts_names_the_key(tmp_path, model_dir, capsys):
    """It said `runs/.../best: no such model directory`, not which entry of the recipe named it."""
    recipe = tmp_path / "gate.yaml"
    missing = tmp_path / "runs" / "expert_b" / "best"
    recipe.write_text(
        f"mixture: {{expert_dirs: [{model_dir}, {missing}], gate: {{name: classic}}, freeze_experts: true}}\n"
    )
    assert main(["describe", str(recipe)]) == 2
    err = one_line_error(capsys, "describe")
    assert f"mixture.expert_dirs[1]: {missing}: no such model directory" in err
    recipe.write_text(f"mixture: {{expert_dirs: [{model_dir}, {model_dir}], gate: classic, freeze_experts: true}}\n")
    assert main(["describe", str(recipe)]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "mixture"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.epochs=null", "trainer.epochs: expected an integer, got null (a value left empty is null)"),
        ("trainer.out_dir=~", "trainer.out_dir: expected a string, got null"),
        ("loss.class_weights=[0.1, null]", "loss.class_weights[1]: expected a number, got null"),
        ("data.sampler=null", "data.sampler: expected one of ['random', 'class_balanced', 'domain_balanced', "),
        ("data.augment=[null]", "data.augment[0]: expected an augmentation name or mapping, got null"),
        ("strategy=null", "strategy: a strategy is required here, got null"),
    ],
)
def test_a_value_left_empty_is_called_null(override, message):
    """`epochs:` with its value left out read `expected an integer, got None`: Python's word for YAML's null (and
    `a augmentation`)."""
    with pytest.raises(ConfigError) as info:
        from_dict(TrainRecipe, apply_overrides(DETECTOR, [override]))
    assert str(info.value).startswith(message)


def test_an_empty_value_in_a_recipe_file_names_its_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {frontend: logmel, backend: lcnn}\ntrainer:\n  epochs:\n  patience: 3\n")
    with pytest.raises(ConfigError, match=r"^trainer.epochs: expected an integer, got null"):
        load_recipe(path)
    from sddkit.registry import get_registry

    with pytest.raises(ConfigError, match="^encoder: an encoder needs a 'name'"):
        get_registry("encoder").parse({"layer": 3})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "frontend: logmel\nbackend: lcnn\n",
            "'frontend', 'backend' at top level: a recipe holds its detector config ",
        ),
        ("model: {frontend: logmel}\nbackend: lcnn\n", "'backend' at top level: a recipe holds its detector config "),
        ("experts: [{frontend: logmel, backend: lcnn}]\ngate: classic\n", "'experts', 'gate' at top level: a recipe "),
    ],
)
def test_model_keys_at_the_top_of_a_recipe_name_their_section(tmp_path, capsys, text, message):
    """A detector config file (which `sdd describe` reads) given to `sdd train`, or a mis-indented `backend:`, read
    `TrainRecipe: unknown key(s) 'backend', 'frontend'; valid keys: ...`, not where they belong."""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load_recipe(path)
    assert main(["train", str(path)]) == 2
    section = "mixture" if text.startswith("experts") else "model"
    assert f"under '{section}:'" in one_line_error(capsys, "train")
    if text.startswith("model"):  # a recipe to sdd describe: checked whole, as sdd train checks it
        assert main(["describe", str(path)]) == 2
        assert message in one_line_error(capsys, "describe")


@pytest.mark.parametrize(
    ("argv", "status", "stream", "text"),
    [
        (["--version", "list"], 0, "out", "sddkit "),
        (["-h", "list"], 0, "out", "usage: sdd [-h] [--version] COMMAND"),
        (["--bogus", "list"], 2, "err", "unrecognized arguments: --bogus"),
    ],
)
def test_an_option_before_the_command_is_not_dropped(capsys, argv, status, stream, text):
    """Anything before the command was dropped and the command ran: `sdd --version train r.yaml` trained,
    `sdd -h list` listed, `sdd --bogus list` exited 0."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == status
    captured = capsys.readouterr()
    assert text in getattr(captured, stream)
    assert "augmentation:" not in captured.out  # the list did not run


@pytest.mark.parametrize("fmt", ["sddbench", None])
def test_a_reader_option_cannot_replace_the_specs_protocol(fmt):
    """`{protocol: a.csv, format: sddbench, options: {protocol: b.csv}}` read b.csv (read_protocol let the option win)
    while the recipe, and every record of the run, named a.csv; the valid options listed `protocol` as one."""
    spec = {"protocol": "a.csv", "format": fmt, "options": {"protocol": "b.csv", "partitions": ["train"]}}
    with pytest.raises(ConfigError) as info:
        from_dict(TrainRecipe, {**DETECTOR, "data": {"train": spec}})
    assert str(info.value) == (
        "data.train.options.protocol: b.csv would replace this spec's protocol (a.csv); give the file once, as protocol"
    )
    with pytest.raises(ConfigError, match=r"for format 'sddbench'; valid keys: corpus, partitions$"):
        from_dict(TrainRecipe, {**DETECTOR, "data": {"train": {**spec, "format": "sddbench", "options": {"x": 1}}}})
    ok = {"protocol": "a.csv", "format": fmt, "options": {"partitions": ["train"]} if fmt else {}}
    assert from_dict(TrainRecipe, {**DETECTOR, "data": {"train": ok}}).data.train.protocol == "a.csv"
