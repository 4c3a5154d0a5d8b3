"""Review 26 of typed configs and recipe parsing: overrides into an unset list, case-insensitive suggestions."""

from __future__ import annotations

import re

import pytest

from sddkit.config import apply_overrides, did_you_mean, from_dict
from sddkit.errors import ConfigError
from sddkit.training.recipe import TrainerConfig


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.augment.0.p=0.5", "data.augment"),
        ("loss.class_weights.0=0.2", "loss.class_weights"),
        ("data.augment.-1.p=1", "data.augment"),
    ],
)
def test_integer_part_into_an_unset_list_names_the_list(override: str, key: str) -> None:
    # a recipe without data.augment: the override built {'0': {'p': 0.5}} and the parser said
    # "data.augment: expected a list, got {'0': {'p': 0.5}}", a mapping the user never wrote
    expected = re.escape(f"{key} is not set: no list to index (give the whole list, e.g. {key}=[...])")
    with pytest.raises(ConfigError, match=expected):
        apply_overrides({"data": {"batch_size": 8}, "loss": {}}, [override])


def test_integer_part_into_a_set_mapping_or_list_still_works() -> None:
    out = apply_overrides(
        {"data": {"augment": [{"name": "noise", "p": 0.2}], "where": {"2019": "x"}}},
        ["data.augment.0.p=0.5", "data.where.2019=y"],
    )
    assert out["data"]["augment"][0]["p"] == 0.5
    assert out["data"]["where"]["2019"] == "y"


def test_choice_in_other_case_gets_a_suggestion() -> None:
    # difflib finds nothing in common between 'CPU' and 'cpu': the error had no "did you mean"
    with pytest.raises(ConfigError, match=r"'CPU' is not one of \['auto', 'cpu', 'cuda'\] \(did you mean 'cpu'\?\)"):
        from_dict(TrainerConfig, {"device": "CPU"}, "trainer")
    assert did_you_mean(["Domain_Balanced"], ["random", "class_balanced", "domain_balanced"]) == (
        " (did you mean 'domain_balanced'?)"
    )
    assert did_you_mean(["Epochs"], ["epochs", "patience"]) == " (did you mean 'epochs'?)"
