"""Config review 2: recipes a demanding researcher writes wrongly fail at once, in one line naming the key path."""

from __future__ import annotations

import pytest

from sddkit.config import apply_overrides, from_dict, load_yaml
from sddkit.errors import ConfigError
from sddkit.training.recipe import TrainRecipe

MODEL = {"frontend": "logmel", "backend": "lcnn"}


def _recipe(**sections):
    return from_dict(TrainRecipe, {"model": MODEL, **sections})


def _error(**sections) -> str:
    with pytest.raises(ConfigError) as info:
        _recipe(**sections)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_duplicate_yaml_keys_are_an_error(tmp_path):
    """PyYAML keeps the last of two equal keys without a word: `epochs: 1` ... `epochs: 50` trained 50 epochs."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer:\n  epochs: 1\n  log_every: 5\n  epochs: 50\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'epochs' at line 4.*first at line 2"):
        load_yaml(recipe)
    recipe.write_text("seed: 1\ndata: {batch_size: 8}\nseed: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'seed'"):
        load_yaml(recipe)
    with pytest.raises(ConfigError, match=r"override 'trainer=\{epochs: 1, epochs: 2\}'.*duplicate key 'epochs'"):
        apply_overrides({}, ["trainer={epochs: 1, epochs: 2}"])
    # a key brought in by a `<<:` merge may still be overridden: that is what merging is for
    recipe.write_text("base: &b {epochs: 1, log_every: 5}\ntrainer: {<<: *b, epochs: 3}\n")
    assert load_yaml(recipe)["trainer"] == {"epochs": 3, "log_every": 5}


def test_a_recipe_that_is_not_utf8_is_a_config_error(tmp_path):
    """Bytes that are not UTF-8 raised a UnicodeDecodeError (a traceback from `sdd train`), and the file was read
    in the locale's encoding."""
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"seed: 1\ntrainer: {out_dir: runs/caf\xe9}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: not UTF-8 text \(byte 0xe9 on line 2\)"):
        load_yaml(recipe)
    recipe.write_bytes("trainer: {out_dir: runs/café}\n".encode())
    assert load_yaml(recipe) == {"trainer": {"out_dir": "runs/café"}}


def test_a_deeply_nested_recipe_is_a_config_error(tmp_path):
    """PyYAML builds nested collections recursively: a huge nesting raised a RecursionError traceback."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_yaml(recipe)


@pytest.mark.parametrize("override", ["trainer..epochs=3", "trainer.=3", ".seed=1"])
def test_an_override_key_with_an_empty_part_is_refused(override):
    """`a..b=1` created a key named '' (inside an ``options`` mapping, which takes any key, silently)."""
    with pytest.raises(ConfigError, match="empty part"):
        apply_overrides({"trainer": {}}, [override])


def test_errors_inside_augmentation_specs_name_one_key_path():
    """An augmentation error read `data: data.augment[1]: ...`, and one inside `compose` or a range check
    `data.augment[2]: augmentations[1].snr_db: ...`: the key path was split in two."""
    message = _error(data={"augment": ["gain", {"name": "noise", "snr_dbb": [5, 30]}]})
    assert message.startswith("data.augment[1]: unknown key(s) 'snr_dbb'"), message
    message = _error(data={"augment": [{"name": "compose", "augmentations": ["gain", {"name": "noise", "snr_db": 5}]}]})
    assert message.startswith("data.augment[0].augmentations[1].snr_db: expected a list"), message
    message = _error(data={"augment": ["gain", "gain", {"name": "noise", "snr_db": [30, 5]}]})
    assert message.startswith("data.augment[2].snr_db: low 30.0 is above high 5.0"), message
    # a message that does not start with a key path keeps its section in front
    assert _error(data={"augment": [{"name": "gain", "p": 2}]}).startswith("data.augment[0].p must be")


def test_protocol_format_and_reader_options_are_checked_when_the_recipe_is_read():
    """A misspelt `format` or reader option passed parsing and failed only when training began reading the data
    (an option error then named no recipe key)."""
    message = _error(data={"train": {"protocol": "m.csv", "format": "sddbnch"}})
    assert message.startswith("data.train.format: unknown protocol 'sddbnch'") and "'sddbench'?" in message
    spec = {"protocol": "m.csv", "format": "sddbench", "options": {"partitons": ["train"]}}
    message = _error(data={"val": [{"protocol": "v.csv"}, spec]})
    assert message.startswith("data.val[1].options: unknown key(s) 'partitons'"), message
    assert "'partitions'?" in message and message.endswith("valid keys: corpus, partitions")
    spec["options"] = {"partitions": "train"}  # what read_protocol accepts: one partition as a string
    assert _recipe(data={"train": spec}).data.train.options == {"partitions": "train"}
    assert _recipe(data={"train": {"protocol": "m.csv", "options": {"anything": 1}}})  # format detected later


def test_sampler_options_are_checked_when_the_recipe_is_read():
    """`sampler_options` under the default `random` sampler were silently ignored, and a misspelt option of the
    other samplers failed only after the training data had been read."""
    message = _error(data={"sampler_options": {"num_samples": 100}})
    assert message.startswith("data.sampler_options: ['num_samples'] given, but sampler 'random'"), message
    message = _error(data={"sampler": "class_balanced", "sampler_options": {"num_sample": 100}})
    assert message.startswith("data.sampler_options: unknown key(s) 'num_sample' (did you mean 'num_samples'?)")
    message = _error(data={"sampler": "domain_batch", "sampler_options": {"batch_size": 4}})  # the trainer sets it
    assert "unknown key(s) 'batch_size'" in message and "per_domain" in message
    published = {"bonafide_fraction": 0.5, "share_bonafide": False}
    assert _recipe(data={"sampler": "domain_batch", "sampler_options": published}).data.sampler_options == published
    assert _recipe(data={"sampler": "domain_balanced", "sampler_options": {"num_samples": 10}})


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        ({"optimizer": {"eps": 0}}, r"optimizer.eps must be positive"),  # AdamW: 0/0 = NaN weights
        ({"optimizer": {"eps": -1e-8}}, r"optimizer.eps must be positive"),  # torch's ValueError: a traceback
        ({"optimizer": {"lr": float("inf")}}, r"optimizer: lr and weight_decay must be finite"),
        ({"schedule": {"name": "cyclic", "max_lr": float("inf")}}, r"schedule: cyclic needs"),
        ({"schedule": {"name": "cyclic", "cyclic_mode": "exp_range", "gamma": -0.5}}, r"schedule.gamma must be"),
        ({"schedule": {"name": "cyclic", "cyclic_mode": "exp_range", "gamma": 1.5}}, r"schedule.gamma must be"),
    ],
)
def test_optimizer_and_schedule_values_that_break_training_are_config_errors(sections, match):
    """eps 0 turned a parameter with all-zero gradients into NaN, a negative eps was torch's ValueError traceback
    at the first step, an infinite rate gave NaN weights, and exp_range's gamma**step with gamma <= 0 or > 1 gave a
    negative or exploding learning rate: all passed the recipe check."""
    with pytest.raises(ConfigError, match=match):
        _recipe(**sections)


def test_misspelt_names_and_keys_suggest_the_closest():
    """A typo listed every registered name or valid key but did not say which one was meant."""
    assert "(did you mean 'mldg'?)" in _error(strategy="mdlg")
    assert "(did you mean 'beta'?)" in _error(strategy={"name": "mldg", "bta": 1.0})
    assert "(did you mean 'epochs'?)" in _error(trainer={"epohcs": 3})
    assert "did you mean" not in _error(trainer={"zzz": 3})


def test_a_missing_required_key_is_named_plainly():
    """A missing required key read `ProtocolSpec.__init__() missing 1 required positional argument: 'protocol'`."""
    assert _error(data={"train": [{"protocol": "a"}, {"format": "sddbench"}]}) == (
        "data.train[1]: missing required key(s) 'protocol'"
    )
    assert _error(data={"train": {"protocol": "a", "folds": {"keep": [0]}}}) == (
        "data.train.folds: missing required key(s) 'n'"
    )


def test_describe_refuses_a_recipe_with_both_a_model_and_a_mixture():
    """`sdd describe` silently described the mixture of a recipe that also held a model (sdd train refuses it)."""
    from sddkit.cli.describe_cmd import model_config_from

    recipe = {"model": MODEL, "mixture": {"experts": [MODEL], "gate": "average"}}
    with pytest.raises(ConfigError, match=r"exactly one of .*\['model', 'mixture'\]"):
        model_config_from(recipe)
    assert model_config_from({"model": MODEL}) == ("detector", MODEL)


@pytest.mark.parametrize(
    "schedule",
    [
        {"name": "cyclic", "warmup_steps": 100},
        {"name": "cyclic", "min_lr_ratio": 0.01},
        {"name": "constant", "min_lr_ratio": 0.1},
    ],
)
def test_schedule_values_the_schedule_never_reads_are_refused(schedule):
    from sddkit.config import from_dict
    from sddkit.errors import ConfigError
    from sddkit.training.recipe import ScheduleConfig

    key = next(k for k in schedule if k != "name")
    with pytest.raises(ConfigError, match=rf"{key}: .* has no effect with schedule '{schedule['name']}'"):
        from_dict(ScheduleConfig, schedule)
    assert from_dict(ScheduleConfig, {**schedule, key: 0}).name == schedule["name"]


@pytest.mark.parametrize("key, value", [("max_lr", 1e-3), ("base_lr", 1e-6), ("step_size", 10), ("gamma", 0.5)])
@pytest.mark.parametrize("name", ["cosine", "constant"])
def test_a_cyclic_only_schedule_key_under_another_schedule_is_refused(name, key, value):
    # `{name: cosine, max_lr: 1e-3}` trained at optimizer.lr (1e-5 by default) without a word
    from sddkit.training.recipe import ScheduleConfig

    with pytest.raises(ConfigError, match=f"{key}: .* read by schedule 'cyclic' only"):
        from_dict(ScheduleConfig, {"name": name, key: value}, "schedule")
    assert from_dict(ScheduleConfig, {"name": "cyclic", key: value}, "schedule").name == "cyclic"


@pytest.mark.parametrize("weights", [(0.0, 1.0), (1.0, 0.0)])
def test_a_zero_class_weight_is_refused(weights):
    # a batch of only that class had a 0/0 = NaN loss, reported as a divergence
    from sddkit.training.recipe import LossConfig

    with pytest.raises(ConfigError, match="class_weights must both be positive"):
        from_dict(LossConfig, {"class_weights": list(weights)}, "loss")


def test_reader_option_types_are_checked_when_the_recipe_is_read():
    # `options.root=5` was accepted (only the option names were checked) and failed, if at all, when data was read
    from pathlib import Path

    recipe = load_yaml(Path(__file__).resolve().parents[1] / "recipes" / "sddbench" / "default_model.yaml")
    with pytest.raises(ConfigError, match=r"data.train\[0\].options.corpus: expected a string"):
        from_dict(TrainRecipe, apply_overrides(recipe, ["data.train.0.options.corpus=[1]"]))
    spec = {"protocol": "labels.csv", "format": "labels_csv", "options": {"root": 5}}
    with pytest.raises(ConfigError, match=r"options.root: expected a string"):
        from_dict(TrainRecipe, {"model": {"frontend": "logmel", "backend": "lcnn"}, "data": {"train": spec}})
    ok = from_dict(TrainRecipe, apply_overrides(recipe, ["data.train.0.options.partitions=train"]))
    assert ok.data.train[0].options["partitions"] == "train"  # one name for a list, as read_protocol takes it
