"""Review cv26 of ``sdd cv``: an interrupted run's layout (single- or multi-seed) is kept by a rerun, a held-out group
of one class says what to do (``--bonafide-folds`` for spoofs only), a rerun that drops or changes
``--bonafide-folds`` is told the N it was started with, and a bona fide group that cannot keep speakers together is
warned of."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.errors import ConfigError
from sddkit.training import crossval
from sddkit.training.crossval import HeldOut, cross_validate, cross_validate_seeds, held_out_table, parse_folds


class _Trained(Exception):
    """Raised in place of training: the run got past every check made before a fold trains."""


def _no_training(monkeypatch):
    def fit(*args, **kwargs):
        raise _Trained

    monkeypatch.setattr("sddkit.training.trainer.Trainer.fit", fit)


def test_a_rerun_keeps_the_layout_of_an_interrupted_run(tmp_path, monkeypatch):
    # cv.json is written once every fold is done: an interrupted --seeds run rerun without --seeds started a new
    # single-seed run beside it, whose cv.json then refused the --seeds rerun that would have resumed it
    recipe = _recipe(tmp_path)
    folds = parse_folds("source", ["s0", "s1,s2"])
    _no_training(monkeypatch)
    multi = tmp_path / "multi"
    (multi / "seed_3" / folds[0].dir_name).mkdir(parents=True)
    (multi / "seed_3" / folds[0].dir_name / "run.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a multi-seed cross-validation \(seed_3/\): rerun with its --seeds"):
        cross_validate(recipe, folds, multi, workers=0)
    single = tmp_path / "single"
    (single / folds[1].dir_name).mkdir(parents=True)
    (single / folds[1].dir_name / "run.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a single-seed cross-validation \(fold_s1\+s2/\): rerun without"):
        cross_validate_seeds(recipe, folds, single, [3, 4], workers=0)
    # the layout's own rerun goes on (to training), and an empty folder of the other layout blocks nothing
    (single / "seed_9").mkdir()
    with pytest.raises(_Trained):
        cross_validate(recipe, folds, single, workers=0)
    with pytest.raises(_Trained):
        cross_validate_seeds(recipe, folds, multi, [3, 4], workers=0)


def test_a_held_out_group_of_one_class_says_what_to_do(tmp_path):
    recipe = _recipe(tmp_path)
    # leave-one-attack-out without --bonafide-folds: the fix is --bonafide-folds (the value with bona fide files that
    # the message offered to hold out with it is `bonafide`: every bona fide file, none left to train on)
    with pytest.raises(ConfigError, match="has only spoof files") as spoofs:
        held_out_table(recipe, HeldOut("attack", ("A01",)))
    assert "add --bonafide-folds N" in str(spoofs.value)
    # with --bonafide-folds, a group of bona fide files only lacks spoofs: not "too few groups"
    with pytest.raises(ConfigError, match="hold only bona fide files") as bona:
        held_out_table(recipe, HeldOut("attack", ("bonafide",), 2))
    assert "too few groups" not in str(bona.value) and "values that have spoof files" in str(bona.value)
    with pytest.raises(ConfigError, match=r"hold only spoof files.*too few groups.*try a smaller N"):
        held_out_table(recipe, HeldOut("attack", ("A01",), 10_000))


def test_a_rerun_with_another_or_no_bonafide_folds_names_the_one_it_was_started_with(tmp_path):
    recipe = _recipe(tmp_path)
    fold = HeldOut("attack", ("A01",), 2)
    fold_dir = tmp_path / "cv" / fold.dir_name
    crossval.run_fold(recipe, fold, fold_dir, workers=0)
    crossval.check_fold_recipe(recipe, fold, fold_dir)  # the same: resumed, read back
    # it listed every data spec's folds keys (data.train.0.folds.by.0: pair_id -> null, ... and 6 more)
    with pytest.raises(ConfigError, match=r"recipe: started with --bonafide-folds 2, this run is without it"):
        crossval.check_fold_recipe(recipe, HeldOut("attack", ("A01",)), fold_dir)
    with pytest.raises(ConfigError, match=r"started with --bonafide-folds 2, this run is with --bonafide-folds 3"):
        crossval.check_fold_recipe(recipe, HeldOut("attack", ("A01",), 3), fold_dir)
    # another setting is still shown as the change it is
    recipe.optimizer.lr = 0.5
    with pytest.raises(ConfigError, match=r"trained with another recipe \(optimizer.lr: 0.01 -> 0.5\)"):
        crossval.check_fold_recipe(recipe, fold, fold_dir)


def test_bonafide_folds_without_speakers_warns_that_the_group_is_not_speaker_disjoint(tmp_path, monkeypatch, caplog):
    recipe = _recipe(tmp_path)
    folds = parse_folds("attack", ["A01", "A02,A03"], 2)
    _no_training(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="sddkit.training.crossval"), pytest.raises(_Trained):
        cross_validate(recipe, folds, tmp_path / "with_speakers", workers=0)
    assert "neither pair_id nor speaker" not in caplog.text  # the synthetic corpus has speakers
    for spec in (recipe.data.train, recipe.data.val):
        df = pd.read_csv(spec.protocol, keep_default_na=False)  # type: ignore[union-attr]
        df["speaker"] = ""  # a labels CSV, a folder of files: no speaker
        df.to_csv(spec.protocol, index=False)  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING, logger="sddkit.training.crossval"), pytest.raises(_Trained):
        cross_validate(recipe, folds, tmp_path / "without", workers=0)
    assert "--bonafide-folds 2: 12 of the 12 bona fide files have neither pair_id nor speaker" in caplog.text
