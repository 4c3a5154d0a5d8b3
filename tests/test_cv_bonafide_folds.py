"""``sdd cv --bonafide-folds N``: leave-one-attack-out, a held-out attack's spoofs scored against a group of bona fide
files that no fold trains or validates on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.errors import ConfigError
from sddkit.training.crossval import (
    HeldOut,
    cross_validate,
    fold_recipe,
    held_out_bonafide,
    held_out_table,
    parse_folds,
)
from sddkit.training.data import file_keys, read_tables
from sddkit.training.recipe import FoldSpec


def _all_rows(recipe):
    return read_tables(recipe.data.train, "data.train"), read_tables(recipe.data.val, "data.val")


def test_a_held_out_attack_gets_the_last_bona_fide_group_as_its_trials(tmp_path):
    recipe = _recipe(tmp_path)
    fold = HeldOut("attack", ("A01",), 2)
    held = held_out_table(recipe, fold)
    train, val = _all_rows(recipe)
    expected = {u for t in (train, val) for u in t.subset(held_out_bonafide(t, fold)).column("utt_id")}
    assert expected  # the synthetic speakers spk0..spk3 fill both groups
    bona = set(held.subset(held.labels == 1).column("utt_id"))
    assert bona == expected
    assert set(held.subset(held.labels == 0).column("attack")) == {"A01"}
    # without the bona fide group an attack has no EER
    with pytest.raises(ConfigError, match="only spoof"):
        held_out_table(recipe, HeldOut("attack", ("A01",)))


def test_the_fold_recipe_keeps_the_other_groups_and_trains_on_none_of_the_held_out_files(tmp_path):
    recipe = _recipe(tmp_path)
    fold = HeldOut("attack", ("A01",), 2)
    r = fold_recipe(recipe, fold, tmp_path / "f")
    for spec in (r.data.train, r.data.val):
        spec = spec[0] if isinstance(spec, list) else spec
        assert spec.exclude == {"attack": ["A01"]}
        assert spec.folds == FoldSpec(n=2, keep=[0], by=["pair_id", "speaker"])
    held = set(file_keys(held_out_table(recipe, fold)))
    for table in _all_rows(r):
        assert not held & set(file_keys(table))  # neither the attack's spoofs nor the group's bona fide
        assert "A01" not in set(table.column("attack"))


def test_a_spec_with_its_own_folds_and_a_bad_count_are_refused(tmp_path):
    recipe = _recipe(tmp_path)
    recipe.data.train.folds = FoldSpec(n=3, keep=[0, 1])  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"--bonafide-folds: data.train .* already keeps folds \[0, 1\] of 3"):
        fold_recipe(recipe, HeldOut("attack", ("A01",), 2), tmp_path / "f")
    for bad in (1, 0, True):
        with pytest.raises(ConfigError, match="--bonafide-folds must be an integer >= 2"):
            parse_folds("attack", ["A01", "A02"], bad)


def test_leave_one_attack_out_trains_scores_and_refuses_another_group_count(tmp_path):
    recipe = _recipe(tmp_path, val_every=1)
    folds = parse_folds("attack", ["A01", "A02,A03"], 2)
    out = tmp_path / "cv"
    summary = cross_validate(recipe, folds, out, workers=0)
    written = json.loads((out / "cv.json").read_text())
    assert written["bonafide_folds"] == 2 and summary["column"] == "attack"
    for fold, fig in zip(folds, summary["folds"]):
        held = held_out_table(recipe, fold)
        assert fig["bonafide_folds"] == 2 and fig["n_bonafide"] == int(held.labels.sum()) > 0
        rows = pd.read_csv(out / fold.dir_name / "held_out.csv")
        assert sorted(rows["path"]) == sorted(held.column("path"))
        # each attack's EER is its spoofs against the shared bona fide group
        assert all(v is not None and 0.0 <= v <= 1.0 for v in fig["eer_per_value"].values())
    assert np.isclose(summary["folds"][0]["eer"], summary["folds"][0]["eer_per_value"]["A01"])
    # the same folders under another group count are another experiment
    with pytest.raises(ConfigError, match="trained with another recipe"):
        cross_validate(recipe, parse_folds("attack", ["A01", "A02,A03"], 3), out, workers=0)


def test_sdd_cv_refuses_a_bonafide_fold_count_below_2(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {frontend: logmel, backend: lcnn}\n")
    argv = ["cv", str(recipe), "--by", "attack", "--hold-out", "A01", "--hold-out", "A02", "--out", str(tmp_path / "o")]
    assert main([*argv, "--bonafide-folds", "1"]) == 2
    assert "--bonafide-folds must be an integer >= 2" in capsys.readouterr().err


def test_sdd_cv_refuses_an_out_dir_set_through_a_section_override(tmp_path, capsys):
    # `trainer.out_dir=x` was refused by its key's text; `trainer={out_dir: x}` got past and was ignored
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {frontend: logmel, backend: lcnn}\ntrainer: {epochs: 2}\n")
    argv = ["cv", str(recipe), "--hold-out", "a", "--hold-out", "b", "--out", str(tmp_path / "o")]
    assert main([*argv, "trainer={epochs: 2, out_dir: elsewhere}"]) == 2
    assert "an override sets trainer.out_dir" in capsys.readouterr().err
    # another setting of the section is no out_dir: read on, to the recipe's missing data (an AssertionError before)
    assert main([*argv, "trainer={epochs: 3}"]) == 2
    err = capsys.readouterr().err
    assert "the recipe has no data.train" in err and "out_dir" not in err
    assert not (tmp_path / "o").exists()
