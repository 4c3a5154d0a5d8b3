"""Typed configs and registries, sixth review: closest names for every unknown registry name, infinite loss
weights, the error of a value no scalar alternative of a union takes."""

from __future__ import annotations

import json
import math

import pytest

from sddkit.cli.main import main
from sddkit.config import apply_overrides, from_dict, load_yaml
from sddkit.errors import ConfigError, UnknownNameError
from sddkit.registry import get_registry
from sddkit.training.recipe import LossConfig, TrainRecipe

MODEL = {"frontend": "logmel", "backend": "lcnn"}


def test_an_unknown_name_suggests_the_closest_wherever_it_is_looked_up(capsys):
    # `sdd list enocder` and `--protocol-format asvspoof2019` (Registry.get) listed the names but suggested none,
    # as a recipe's `encoder: xlsr300m` (Registry.parse) did
    assert main(["list", "enocder"]) == 2
    assert "unknown registry family 'enocder'" in (err := capsys.readouterr().err)
    assert err.rstrip().endswith("(did you mean 'encoder'?)")
    with pytest.raises(UnknownNameError, match=r"\(did you mean 'asvspoof2019_la'\?\)$"):
        get_registry("protocol").get("asvspoof2019")
    with pytest.raises(UnknownNameError) as err_info:  # nothing close: no suggestion
        get_registry("backend").get("zzzz")
    assert "did you mean" not in str(err_info.value)
    # a recipe's misspelt name is suggested once, not twice
    for recipe in (
        {"model": {**MODEL, "backend": "lcn"}},
        {"model": MODEL, "data": {"train": {"protocol": "p.txt", "format": "asvspoof2019"}}},
    ):
        with pytest.raises(ConfigError) as err_info:
            from_dict(TrainRecipe, recipe)
        assert str(err_info.value).count("did you mean") == 1, err_info.value


@pytest.mark.parametrize(
    "loss, message",
    [
        ({"class_weights": [math.inf, 1.0]}, "class_weights must both be positive and finite"),
        ({"domain_alignment": math.inf}, "domain_alignment must be >= 0 and finite"),
    ],
)
def test_infinite_loss_weights_are_refused(loss, message):
    # `.inf` passed the positivity checks: an infinite weight makes the loss inf/inf or inf * 0, NaN from step one
    with pytest.raises(ConfigError, match=f"^loss.{message}"):
        from_dict(TrainRecipe, {"model": MODEL, "loss": loss})
    assert from_dict(LossConfig, {"class_weights": [0.1, 0.9], "domain_alignment": 0.5}).domain_alignment == 0.5


def test_a_value_no_scalar_alternative_takes_is_named_plainly():
    # was: "...layer: 'lst' matches none of typing.Union[int, typing.Literal['last', 'weighted']]: ...layer:
    # expected an integer, got 'lst'; ...layer: 'lst' is not one of ['last', 'weighted']"
    def error(layer):
        encoder = {"name": "wav2vec2_tiny", "layer": layer}
        with pytest.raises(ConfigError) as err_info:
            from_dict(TrainRecipe, {"model": {"frontend": {"name": "ssl", "encoder": encoder}, "backend": "linear"}})
        return str(err_info.value)

    expected = "model.frontend.encoder.layer: expected an integer or one of ['last', 'weighted'], got"
    assert error("lst") == f"{expected} 'lst' (did you mean 'last'?)"
    assert error(2.5) == f"{expected} 2.5"
    assert error(True) == f"{expected} true (YAML reads an unquoted yes/no/on/off/true/false as true or false)"


def test_a_prefix_without_digits_is_text_not_a_crash(tmp_path):
    # `0x_` matched the integer pattern and int() refused it: a bare ValueError out of load_yaml and overrides
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer: {epochs: 0x_, patience: 0x_a}\n")
    assert load_yaml(recipe) == {"trainer": {"epochs": "0x_", "patience": 10}}
    assert apply_overrides({}, ["trainer.epochs=0b_"]) == {"trainer": {"epochs": "0b_"}}
    with pytest.raises(ConfigError, match=r"^trainer.epochs: expected an integer, got '0x_'$"):
        from_dict(TrainRecipe, {"model": MODEL, **load_yaml(recipe)})


def test_an_integer_beyond_float_range_is_a_config_error():
    # float(10**400) raised OverflowError: a traceback instead of the key's name
    with pytest.raises(ConfigError, match=r"^optimizer.lr: 1000\d+ is beyond the range of a float$"):
        from_dict(TrainRecipe, {"model": MODEL, "optimizer": {"lr": 10**400}})


# the names recipes and model directories record (a guard, not a fix): a rename would make them unreadable
RECORDED_NAMES = {
    "backend": {"aasist", "aasist_l", "lcnn", "linear", "resnet18", "resnet34", "ssl_aasist"},
    "encoder": {"hubert_base", "wav2vec2_base", "wavlm_base", "whisper_base", "whisper_large_v3", "xlsr_300m"},
    "frontend": {"lfcc", "logmel", "logspec", "raw", "ssl"},
    "gate": {"attention", "average", "classic", "enhanced_mlp"},
    "router": {"softmax", "topk"},
    "strategy": {"erm", "mldg", "sam"},
    "protocol": {"asvspoof2019_la", "asvspoof2021_df", "asvspoof2021_la", "asvspoof5", "sddbench", "utterance_table"},
}


def test_recorded_registry_names_stay_registered_and_listed(capsys):
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    for family, names in RECORDED_NAMES.items():
        assert names <= set(listed[family]), (family, names - set(listed[family]))


def test_sampler_option_values_are_typed_when_the_recipe_is_read():
    # names were checked when the recipe was read, values only by the sampler once the data had been read; a quoted
    # 'false' was a non-empty string, so `share_bonafide: 'false'` shared the bona fide items
    def error(sampler, options):
        with pytest.raises(ConfigError) as err_info:
            from_dict(TrainRecipe, {"model": MODEL, "data": {"sampler": sampler, "sampler_options": options}})
        return str(err_info.value)

    assert error("domain_batch", {"share_bonafide": "false"}) == (
        "data.sampler_options.share_bonafide: expected true/false, got 'false'"
    )
    assert error("class_balanced", {"num_samples": "100"}) == (
        "data.sampler_options.num_samples: expected an integer, got '100'"
    )
    assert error("domain_balanced", {"num_samples": 1.5}).endswith("expected an integer, got 1.5")
    published = {"bonafide_fraction": 0.5, "share_bonafide": False, "per_domain": 4, "steps_per_epoch": None}
    data = {"sampler": "domain_batch", "sampler_options": published}
    assert from_dict(TrainRecipe, {"model": MODEL, "data": data}).data.sampler_options == published
    data = {"sampler": "class_balanced", "sampler_options": {"num_samples": 1e4}}  # a whole count, as the sampler
    assert from_dict(TrainRecipe, {"model": MODEL, "data": data}).data.sampler_options == {"num_samples": 1e4}
