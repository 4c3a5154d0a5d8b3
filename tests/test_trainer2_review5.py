"""Review 5 of the training loop (trainer2): resume exactness, model selection, schedules, validation."""

from __future__ import annotations

import dataclasses

import pytest
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from test_training_review import assert_resumed_run_equals_straight

from sddkit.training.trainer import Trainer


def test_ddp_mldg_resume_restores_every_ranks_split_generator(tmp_path):
    # before: only rank 0's MLDG split generator was checkpointed and every rank loaded it, so after a resume
    # rank 1 split its batches with rank 0's stream: the resumed run trained differently from the uninterrupted one
    recipe = {
        "seed": 3,
        "model": {"frontend": {"name": "tiny_test"}, "backend": "tiny_test_head"},
        # random batches: each rank's batch has its own number of attack domains and of bona fide rows
        # to deal, so the ranks' split generators draw different amounts and part ways
        "strategy": {"name": "mldg", "share_bonafide": False},
        "optimizer": {"lr": 1e-2},
        "data": {"batch_size": 6},
    }
    assert_resumed_run_equals_straight(recipe, 6, tmp_path)


def test_a_seed_too_large_for_the_generators_is_refused_when_the_recipe_is_read(tmp_path, monkeypatch):
    # before: seed 1733270400123456789 (a nanosecond timestamp) was accepted, and the run died in its first epoch
    # with "Overflow when unpacking long long" (the loader's generator is seeded with seed * 100_003 + epoch)
    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe

    install_tiny(monkeypatch)
    model = {"frontend": {"name": "tiny_test"}, "backend": "tiny_test_head"}
    with pytest.raises(ValueError, match=r"seed must be non-negative and below 2\*\*32, got 1733270400123456789"):
        from_dict(TrainRecipe, {"seed": 1733270400123456789, "model": model})
    recipe = from_dict(TrainRecipe, {"seed": 2**32 - 1, "model": model})  # the largest seed trains
    recipe.data.batch_size = 8
    recipe.trainer = dataclasses.replace(
        recipe.trainer, epochs=1, max_steps=1, device="cpu", out_dir=str(tmp_path / "run"), progress=False
    )
    assert Trainer(recipe, train_data=SyntheticDataset(16)).fit().step == 1


def test_cv_seeds_too_large_for_the_generators_are_refused_before_training(tmp_path):
    from test_crossval import _recipe

    from sddkit.errors import ConfigError
    from sddkit.training.crossval import cross_validate_seeds, parse_folds

    out = tmp_path / "cv"
    with pytest.raises(ConfigError, match=r"below 2\*\*32"):
        cross_validate_seeds(_recipe(tmp_path), parse_folds("source", ["s0", "s1,s2"]), out, [0, 2**40])
    assert not out.exists()
