"""sdd robustness and sdd cv as users drive them: bad seeds are refused before any work."""

from __future__ import annotations

import pytest
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.errors import ConfigError
from sddkit.training.crossval import cross_validate_seeds, parse_folds


def test_cv_seeds_refuses_a_negative_seed_before_training(tmp_path):
    # a negative seed used to fail with a numpy ValueError (exit 1) after the earlier seeds' folds had trained
    recipe = _recipe(tmp_path)
    out = tmp_path / "cv"
    with pytest.raises(ConfigError, match="non-negative"):
        cross_validate_seeds(recipe, parse_folds("source", ["s0", "s1,s2"]), out, [0, -1])
    assert not out.exists()


def test_a_recipe_with_a_negative_seed_is_refused(tmp_path):
    from dataclasses import replace

    # `sdd train R seed=-1` used to end in a numpy ValueError traceback once data loading started
    with pytest.raises(ValueError, match="seed must be non-negative"):
        replace(_recipe(tmp_path), seed=-1)
