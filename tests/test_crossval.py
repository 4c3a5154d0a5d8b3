"""Leave-domains-out cross-validation (``sdd cv``): folds, held-out data, resumption."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from test_train_support import one_thread, write_corpus  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.data.protocols import read_protocol
from sddkit.errors import ConfigError
from sddkit.training import crossval
from sddkit.training.crossval import HeldOut, cross_validate, fold_recipe, held_out_table, parse_folds
from sddkit.training.data import read_tables
from sddkit.training.recipe import TrainRecipe

TINY = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}}


def _corpus(tmp_path, partition: str, seed: int):
    """A synthetic protocol whose rows spread over sources s0, s1, s2, each with both classes."""
    csv = write_corpus(tmp_path / partition, n=18, samples=4000, seed=seed, partition=partition)
    df = pd.read_csv(csv, keep_default_na=False)
    df["source"] = [f"s{(i // 3) % 3}" for i in range(len(df))]  # every 3rd row is bona fide: each source has some
    df.to_csv(csv, index=False)
    return csv


def _recipe(tmp_path, **trainer) -> TrainRecipe:
    spec = lambda csv: {"protocol": str(csv), "format": "utterance_table"}  # noqa: E731
    return from_dict(
        TrainRecipe,
        {
            "seed": 0,
            "model": TINY,
            "data": {
                "train": spec(_corpus(tmp_path, "train", 0)),
                "val": spec(_corpus(tmp_path, "val", 1)),
                "crop_samples": 4000,
                "batch_size": 4,
            },
            "optimizer": {"lr": 1e-2},
            "trainer": {"max_steps": 2, "out_dir": str(tmp_path / "unused"), "progress": False, **trainer},
        },
    )


def test_table_exclude_is_the_complement_of_where(tmp_path):
    table = read_protocol(_corpus(tmp_path, "train", 0), "utterance_table")
    kept = table.exclude(source=["s0", "s2"])
    assert set(kept.column("source")) == {"s1"}
    assert len(kept) + len(table.where(source=["s0", "s2"])) == len(table)
    assert len(table.exclude(source="s1")) == len(table) - len(table.where(source="s1"))


def test_parse_folds_rejects_bad_groups():
    folds = parse_folds("source", ["a", " b , c "])
    assert folds == [HeldOut("source", ("a",)), HeldOut("source", ("b", "c"))]
    assert folds[1].dir_name == "fold_b+c"
    with pytest.raises(ConfigError, match="at least 2"):
        parse_folds("source", ["a"])
    with pytest.raises(ConfigError, match="more than one fold"):
        parse_folds("source", ["a,b", "b"])
    with pytest.raises(ConfigError, match="empty"):
        parse_folds("source", ["a", ","])


def test_fold_recipe_holds_the_group_out_of_train_and_val_only(tmp_path):
    recipe = _recipe(tmp_path)
    fold = HeldOut("source", ("s1",))
    r = fold_recipe(recipe, fold, tmp_path / "f")
    train, val = read_tables(r.data.train), read_tables(r.data.val)
    assert set(train.column("source")) == {"s0", "s2"} and set(val.column("source")) == {"s0", "s2"}
    assert r.trainer.out_dir == str(tmp_path / "f")
    # the recipe given is not changed, and exclusions already in a spec are kept
    assert set(read_tables(recipe.data.train).column("source")) == {"s0", "s1", "s2"}
    r2 = fold_recipe(r, HeldOut("source", ("s2",)), tmp_path / "g")
    assert set(read_tables(r2.data.train).column("source")) == {"s0"}

    held = held_out_table(recipe, fold)
    assert set(held.column("source")) == {"s1"}
    assert set(held.column("partition")) == {"train", "val"}  # held-out files of train and val both count
    assert len(held) == len(read_tables(recipe.data.train).where(source="s1")) * 2
    with pytest.raises(ConfigError, match="no utterance"):
        held_out_table(recipe, HeldOut("source", ("nowhere",)))


def test_leave_one_corpus_out_over_a_list_of_corpora_drops_the_held_out_one(tmp_path):
    # data.train = [corpus A, corpus B] held out by corpus: B's spec became empty and the fold failed with
    # "data.train[1]: ... has no utterances" although A still had data
    from sddkit.training.crossval import check_fold_data

    recipe = _recipe(tmp_path)
    train, other = _corpus(tmp_path, "train", 0), _corpus(tmp_path, "other", 2)
    df = pd.read_csv(other, keep_default_na=False)
    df["source"], df["utt_id"] = "corpus_b", "b_" + df["utt_id"].astype(str)
    df.to_csv(other, index=False)
    recipe.data.train = [
        recipe.data.train,
        from_dict(type(recipe.data.train), {"protocol": str(other), "format": "utterance_table"}),
    ]
    fold = HeldOut("source", ("corpus_b",))
    check_fold_data(recipe, fold)
    r = fold_recipe(recipe, fold, tmp_path / "f")
    assert len(r.data.train) == 1 and r.data.train[0].protocol == str(train)
    assert "corpus_b" not in set(read_tables(r.data.train).column("source"))
    assert set(held_out_table(recipe, fold).column("source")) == {"corpus_b"}
    # a fold that would leave no train data at all still fails, naming the spec
    gone = HeldOut("source", ("s0", "s1", "s2", "corpus_b"))
    with pytest.raises(ConfigError, match="has no utterances"):
        check_fold_data(recipe, gone)


def test_a_val_that_repeats_train_utterances_counts_each_once(tmp_path):
    # sdd train accepts a val listing train's files too; sdd cv refused it ("share N utt_id(s)") before the
    # de-duplication meant for exactly this case could run
    recipe = _recipe(tmp_path)
    data = to_dict(recipe)

    def specs(v):
        return v if isinstance(v, list) else [v]

    data["data"]["val"] = specs(data["data"]["val"]) + specs(data["data"]["train"])
    held = held_out_table(from_dict(TrainRecipe, data), HeldOut("source", ("s1",)))
    assert len(held) == len(held_out_table(recipe, HeldOut("source", ("s1",))))  # train's and val's s1 files, once
    assert len(set(held.column("utt_id"))) == len(held)


def test_held_out_group_with_one_class_is_refused_before_training(tmp_path):
    recipe = _recipe(tmp_path)
    # a source of bona fide files only (like sddbench's resemblyzer) has no EER
    for csv in (recipe.data.train.protocol, recipe.data.val.protocol):  # type: ignore[union-attr]
        df = pd.read_csv(csv, keep_default_na=False)
        df.loc[df["label"] == "bonafide", "source"] = "bona_only"
        df.to_csv(csv, index=False)
    with pytest.raises(ConfigError, match="only bona fide"):
        held_out_table(recipe, HeldOut("source", ("bona_only",)))


def test_cross_validate_trains_scores_and_resumes(tmp_path, monkeypatch):
    recipe = _recipe(tmp_path, val_every=1)
    folds = parse_folds("source", ["s0", "s1,s2"])
    out = tmp_path / "cv"
    summary = cross_validate(recipe, folds, out, workers=0)

    assert [f["held_out"] for f in summary["folds"]] == [["s0"], ["s1", "s2"]]
    written = json.loads((out / "cv.json").read_text())
    assert written["mean_eer"] == pytest.approx(np.mean([f["eer"] for f in summary["folds"]]))
    assert written["units"] == {"eer": "fraction"} and 0.0 <= written["mean_eer"] <= 1.0
    for fold, fig in zip(folds, summary["folds"]):
        held = held_out_table(recipe, fold)
        assert fig["n_bonafide"] + fig["n_spoof"] == len(held)
        assert 0.0 <= fig["eer"] <= 1.0 and fig["val_eer"] is not None and fig["steps"] == 2
        rows = pd.read_csv(out / fold.dir_name / "held_out.csv")
        assert sorted(rows["path"]) == sorted(held.column("path"))  # every held-out file scored once
        run = json.loads((out / fold.dir_name / "run.json").read_text())
        for section in ("train", "val"):  # the fold's own run never saw its held-out sources
            specs = run["recipe"]["data"][section]
            specs = specs if isinstance(specs, list) else [specs]
            assert all(s["exclude"] == {"source": list(fold.values)} for s in specs)

    # a rerun reads finished folds back instead of training them again
    def no_training(*a, **k):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr("sddkit.training.trainer.Trainer.fit", no_training)
    again = cross_validate(recipe, folds, out, workers=0)
    assert again["folds"] == summary["folds"]

    # fold.json of another fold under the same name is an error, not a silent reuse
    fig = json.loads((out / folds[0].dir_name / crossval.FOLD_NAME).read_text())
    fig["held_out"] = ["other"]
    (out / folds[0].dir_name / crossval.FOLD_NAME).write_text(json.dumps(fig))
    with pytest.raises(ConfigError, match="another fold"):
        cross_validate(recipe, folds, out, workers=0)


def test_sdd_cv_needs_two_groups(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {frontend: logmel, backend: lcnn}\n")
    assert main(["cv", str(recipe), "--hold-out", "a", "--out", str(tmp_path / "o")]) == 2
    assert "at least 2 held-out groups" in capsys.readouterr().err


def test_sdd_cv_refuses_negative_workers_before_reading_the_recipe(tmp_path, capsys):
    # checked first: otherwise the bad value would surface when the first fold is scored, after its training
    argv = ["cv", str(tmp_path / "missing.yaml"), "--hold-out", "a", "--hold-out", "b", "--out", str(tmp_path / "o")]
    assert main([*argv, "--workers", "-1"]) == 2
    assert "--workers must be >= 0, got -1" in capsys.readouterr().err


def test_cross_validation_refuses_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="without torchrun"):
        cross_validate(_recipe(tmp_path), parse_folds("source", ["s0", "s1"]), tmp_path / "cv")


def test_unreadable_held_out_file_fails_the_fold_and_is_retried(tmp_path):
    recipe = _recipe(tmp_path)
    fold = HeldOut("source", ("s1",))
    held = held_out_table(recipe, fold)
    broken = held.column("path")[0]
    good = open(broken, "rb").read()
    run_dir = tmp_path / "cv" / fold.dir_name
    train_paths = set(read_tables(fold_recipe(recipe, fold, run_dir).data.train).column("path"))
    assert broken not in train_paths  # only the scoring of held-out files reads it
    with open(broken, "wb") as fh:
        fh.write(b"not audio")
    with pytest.raises(ConfigError, match="could not be scored"):
        crossval.run_fold(recipe, fold, run_dir, workers=0)
    assert not (run_dir / crossval.FOLD_NAME).exists()
    assert broken not in set(pd.read_csv(run_dir / crossval.SCORES_NAME)["path"])
    with open(broken, "wb") as fh:  # mended: the rerun resumes training (already done) and scores it
        fh.write(good)
    fig = crossval.run_fold(recipe, fold, run_dir, workers=0)
    assert fig["n_bonafide"] + fig["n_spoof"] == len(held)
    assert broken in set(pd.read_csv(run_dir / crossval.SCORES_NAME)["path"])


def test_several_seeds_average_each_fold_and_refuse_a_mixed_layout(tmp_path, monkeypatch, capsys):
    recipe = _recipe(tmp_path, val_every=1)
    folds = parse_folds("source", ["s0", "s1,s2"])
    out = tmp_path / "cv"
    summary = crossval.cross_validate_seeds(recipe, folds, out, [3, 4], workers=0)

    per_seed = [json.loads((out / f"seed_{s}" / "cv.json").read_text()) for s in (3, 4)]
    for s, run in zip((3, 4), per_seed):
        assert run["recipe"]["seed"] == s and "seeds" not in run
        fold_run = json.loads((out / f"seed_{s}" / folds[0].dir_name / "run.json").read_text())
        assert fold_run["recipe"]["seed"] == s  # each seed really trained with its own seed
    assert summary["seeds"] == [3, 4] and json.loads((out / "cv.json").read_text()) == summary
    for k, fold in enumerate(summary["folds"]):
        eers = [run["folds"][k]["eer"] for run in per_seed]
        assert fold["eer_per_seed"] == eers and fold["eer"] == pytest.approx(np.mean(eers))
    means = [run["mean_eer"] for run in per_seed]
    assert summary["mean_eer_per_seed"] == means
    assert summary["mean_eer"] == pytest.approx(np.mean(means))
    assert summary["std_eer_over_seeds"] == pytest.approx(np.std(means, ddof=1))
    assert summary["recipe"]["seed"] == recipe.seed  # the recipe as given

    # the CLI reads every finished seed back without training
    monkeypatch.setattr("sddkit.training.trainer.Trainer.fit", lambda *a, **k: pytest.fail("trained again"))
    recipe_yaml = tmp_path / "r.yaml"
    recipe_yaml.write_text(yaml.safe_dump(to_dict(recipe)))
    args = ["cv", str(recipe_yaml), "--hold-out", "s0", "--hold-out", "s1,s2", "--out", str(out), "--workers", "0"]
    assert main([*args, "--seeds", "3,4"]) == 0
    assert "per seed:" in capsys.readouterr().out
    assert main(args) == 2  # a single-seed run into the multi-seed folder is refused
    assert "multi-seed" in capsys.readouterr().err
    assert main([*args, "--seeds", "3"]) == 2
    assert "at least 2 distinct seeds" in capsys.readouterr().err
    assert main([*args, "--seeds", "3,x"]) == 2
    with pytest.raises(ConfigError, match="single-seed"):
        crossval.cross_validate_seeds(recipe, folds, out / "seed_3", [5, 6], workers=0)


def test_cross_validation_warns_when_folds_start_from_trained_models(tmp_path, caplog):
    import dataclasses

    recipe = _recipe(tmp_path)
    with caplog.at_level("WARNING", logger="sddkit.training.crossval"):
        crossval._warn_pretrained(recipe)  # trained from scratch: nothing to say
        assert not caplog.records
        crossval._warn_pretrained(dataclasses.replace(recipe, model=None, init_from="runs/pretrained/best"))
    assert "runs/pretrained/best" in caplog.text and "optimistic" in caplog.text
