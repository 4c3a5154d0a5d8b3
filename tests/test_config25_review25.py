"""Recipe errors name the whole key of a value out of range; a whole number written as a float is an integer; a
boolean in the wrong place is shown as YAML writes it (review config25)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sddkit.config import apply_overrides, from_dict, to_dict
from sddkit.errors import ConfigError
from sddkit.training.recipe import TrainRecipe, load_recipe

MODEL = {"frontend": {"name": "logmel"}, "backend": {"name": "lcnn"}}
YAML_BOOLS = "(YAML reads an unquoted yes/no/on/off/true/false as true or false)"


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "model: {frontend: logmel, backend: lcnn}\n"
        "data:\n"
        "  train: [{protocol: train.csv, format: sddbench}]\n"
        "  augment: [{name: one_of, choices: [{name: gain}, {name: noise}]}, {name: gain}]\n"
    )
    return path


def _error(recipe, *overrides: str) -> str:
    with pytest.raises(ConfigError) as err_info:
        load_recipe(recipe, list(overrides))
    return str(err_info.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # were "trainer: epochs must be >= 1, got 0", "data: crop_samples must ...": the key in two pieces
        ("trainer.epochs=0", "trainer.epochs must be >= 1, got 0"),
        ("data.crop_samples=0", "data.crop_samples must be positive, got 0"),
        ("molex.add_experts=-1", "molex.add_experts must be >= 0, got -1"),
        ("model.frontend.n_mels=0", "model.frontend.n_mels must be > 0, got 0"),
        ("strategy={name: mldg, beta: .inf}", "strategy.beta must be >= 0 and finite, got inf"),
        # inside a list of specs, and inside a component nested in one ("data.augment[1]: p must be ...")
        ("data.augment[1].p=2", "data.augment[1].p must be in [0, 1], got 2.0"),
        ("data.augment[0].choices[1].p=2", "data.augment[0].choices[1].p must be in [0, 1], got 2.0"),
        # was "data.train[0].folds: folds.n must be >= 2, got 1": the section named twice
        ("data.train[0].folds={n: 1, keep: [0]}", "data.train[0].folds.n must be >= 2, got 1"),
        ("data.train[0].folds={n: 3, keep: [3]}", "data.train[0].folds.keep must list fold indices in [0, 3), got [3]"),
        # a top-level key is its own path (was "recipe: seed must ...")
        ("seed=-1", "seed must be non-negative and below 2**32, got -1"),
        # a message about more than one key keeps the section in front
        ("optimizer.weight_decay=.inf", "optimizer: lr and weight_decay must be finite, got 1e-05, inf"),
    ],
)
def test_a_value_out_of_range_is_named_by_its_whole_key(recipe, override, message):
    assert _error(recipe, override) == message


def test_a_whole_number_written_as_a_float_is_an_integer(recipe):
    """`trainer.val_every=1e2` was refused ("expected an integer, got 100.0") where `data.sampler_options.num_samples`
    took 1e4: YAML 1.2 reads 1e2 as a float, a natural way to write a step count."""
    parsed = load_recipe(
        recipe,
        [
            "trainer.val_every=1e2",
            "trainer.max_steps=1.5e3",
            "data.batch_size=8.0",
            "model.frontend.n_mels=6.4e1",
            "data.sampler=class_balanced",
            "data.sampler_options.num_samples=1e4",
        ],
    )
    values = (parsed.trainer.val_every, parsed.trainer.max_steps, parsed.data.batch_size)
    assert values == (100, 1500, 8) and all(type(v) is int for v in values)
    assert type(parsed.model.frontend.config.n_mels) is int
    # the sampler gets, and the run records, the count as an integer too (it was kept as 10000.0)
    assert parsed.data.sampler_options == {"num_samples": 10000}
    assert type(parsed.data.sampler_options["num_samples"]) is int
    recorded = json.loads(json.dumps(to_dict(parsed)))
    assert recorded["trainer"]["val_every"] == 100 and "100.0" not in json.dumps(recorded["trainer"])
    assert from_dict(TrainRecipe, recorded) == parsed  # load(save(cfg)) == cfg
    # a fraction, infinity or a boolean is still no integer
    assert _error(recipe, "trainer.val_every=1.5") == "trainer.val_every: expected an integer, got 1.5"
    assert _error(recipe, "trainer.epochs=.inf") == "trainer.epochs: expected an integer, got inf"
    assert _error(recipe, "trainer.epochs=yes") == f"trainer.epochs: expected an integer, got true {YAML_BOOLS}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # were "got False", "got True": Python's words, for a value written `off` or `yes`
        ("data.max_duration_s=off", f"data.max_duration_s: expected a number, got false {YAML_BOOLS}"),
        ("loss.class_weights=[1, yes]", f"loss.class_weights[1]: expected a number, got true {YAML_BOOLS}"),
        ("optimizer.betas=on", f"optimizer.betas: expected a list, got true {YAML_BOOLS}"),
        ("data.sampler_options=no", f"data.sampler_options: expected a mapping, got false {YAML_BOOLS}"),
        ("data.augment[1]=yes", f"data.augment[1]: expected an augmentation name or mapping, got true {YAML_BOOLS}"),
        # were "expected a mapping, got bool" and "got int": the type's name, not the value written
        ("trainer=off", f"trainer: expected a mapping, got false {YAML_BOOLS}"),
        (
            "strategy={name: yes}",
            f"strategy: a strategy 'name' must be a string (one of ['erm', 'mldg', 'sam']), got true {YAML_BOOLS}",
        ),
        ("data.train=[1]", "data.train[0]: expected a mapping, got 1"),
        ("data.train[0].folds=[2]", "data.train[0].folds: expected a mapping or null, got [2]"),
    ],
)
def test_a_value_of_the_wrong_type_is_shown_as_written(recipe, override, message):
    assert _error(recipe, override) == message


def test_the_cli_names_the_whole_key(recipe, capsys):
    from sddkit.cli.main import main

    assert main(["train", str(recipe), "trainer.patience=0", "--print-config"]) == 2
    assert capsys.readouterr().err == "sdd train: error: trainer.patience must be >= 1 (or null), got 0\n"
    assert main(["train", str(recipe), "trainer.patience=5e0", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["trainer"]["patience"] == 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # an empty path is the working directory: the run's checkpoints and models were written there unasked
        (
            "trainer.out_dir=''",
            "trainer.out_dir must name the run's folder, got '' (write '.' for the working directory)",
        ),
        # was "data.train: .: no such utterance table", once training started
        ("data.train[0].protocol=' '", "data.train[0].protocol must name a protocol file or corpus folder, got ' '"),
        ("init_from=''", "init_from must name a model directory (or be left out), got ''"),
    ],
)
def test_an_empty_path_is_refused_by_its_key(recipe, override, message):
    assert _error(recipe, override) == message
    assert load_recipe(recipe, ["trainer.out_dir=."]).trainer.out_dir == "."


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_every_shipped_recipe_parses_and_its_recorded_form_reads_back_the_same():
    """What a run records (run.json, checkpoints: the recipe as JSON) parses to the recipe it was (load(save(cfg)) ==
    cfg), for every file under recipes/, none of which is left out of tests/test_recipes*.py's builds by its name."""
    files = sorted(p for p in RECIPES.rglob("*") if p.is_file())
    assert files and all(p.suffix == ".yaml" for p in files), [p.name for p in files if p.suffix != ".yaml"]
    for path in files:
        parsed = load_recipe(path)
        recorded = json.loads(json.dumps(to_dict(parsed)))
        assert from_dict(TrainRecipe, recorded) == parsed, path
        assert to_dict(from_dict(TrainRecipe, recorded)) == recorded, path


def test_a_value_yaml_cannot_read_is_answered_with_the_quoted_form():
    # was only PyYAML's "found character '@' that cannot start any token": the override names a folder `@runs`
    with pytest.raises(ConfigError) as err_info:
        apply_overrides({}, ["trainer.out_dir=@runs"])
    assert str(err_info.value).endswith("; a value is read as YAML: quote text, e.g. trainer.out_dir=\"'@runs'\"")
    assert apply_overrides({}, ["trainer.out_dir='@runs'"]) == {"trainer": {"out_dir": "@runs"}}
    with pytest.raises(ConfigError, match=r"quote text, e\.g\. a=\"'\.\.\.'\"$"):  # no example the shell would mangle
        apply_overrides({}, ["a=`$x`"])
