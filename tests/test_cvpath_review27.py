"""Review cvpath of ``sdd cv``: a run that fails or is interrupted part-way says which folds are done (kept, read
back by a rerun) and which are not, and ``--bonafide-folds`` warns when the held-out bona fide group shares speakers
with the groups the folds train on (a speaker of several ``pair_id`` values straddles groups)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from test_compare import _labels, _noisy, _protocol, _scores
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.errors import ConfigError
from sddkit.metrics import eer
from sddkit.training import crossval
from sddkit.training.crossval import FOLD_NAME, cross_validate, parse_folds

LOGGER = "sddkit.training.crossval"


class _Trained(Exception):
    """Raised in place of training: the run got past every check made before a fold trains."""


def _first_fold_done_then(monkeypatch, error: BaseException) -> None:
    """run_fold finishes the first fold (its fold.json) and fails the next one with ``error``."""

    def run_fold(recipe, fold, fold_dir, *, workers=2):
        if fold.values != ("s0",):
            raise error
        fold_dir.mkdir(parents=True, exist_ok=True)
        figures = {"held_out": list(fold.values), "column": fold.column, "eer": 0.25}
        (fold_dir / FOLD_NAME).write_text(json.dumps(figures))
        return figures

    monkeypatch.setattr(crossval, "run_fold", run_fold)


@pytest.mark.parametrize("error", [ConfigError("2 held-out files could not be scored"), KeyboardInterrupt()])
def test_a_run_that_stops_part_way_says_which_folds_are_done_and_which_are_not(tmp_path, monkeypatch, caplog, error):
    # before: only the error's own line ("sdd cv: error: 2 held-out files could not be scored" or "interrupted"),
    # which named neither the fold nor that the finished ones are kept and a rerun resumes
    recipe = _recipe(tmp_path)
    folds = parse_folds("source", ["s0", "s1,s2"])
    _first_fold_done_then(monkeypatch, error)
    out = tmp_path / "cv"
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(type(error)):
        cross_validate(recipe, folds, out, workers=0)
    assert f"{out}: fold 2/2 (source=s1+s2) did not finish; 1 of 2 folds done (s0), not done: s1+s2" in caplog.text
    assert "rerun the same command to resume" in caplog.text
    assert not (out / "cv.json").exists()


def _no_training(monkeypatch) -> None:
    def fit(*args, **kwargs):
        raise _Trained

    monkeypatch.setattr("sddkit.training.trainer.Trainer.fit", fit)


def _with_pairs(recipe, pair_of) -> None:
    """Give every row of the recipe's protocols a pair_id (``pair_of(row index, partition)``)."""
    for spec in (recipe.data.train, recipe.data.val):
        df = pd.read_csv(spec.protocol, keep_default_na=False)
        df["pair_id"] = [pair_of(i, p) for i, p in enumerate(df["partition"])]
        df.to_csv(spec.protocol, index=False)


def test_bonafide_folds_warns_when_held_out_speakers_straddle_groups_by_pair_id(tmp_path, monkeypatch, caplog):
    # groups are by pair_id first: a speaker of several pairs (4 speakers, one pair per file here) has files in the
    # held-out group and in the groups every fold trains on; the run said nothing, as if speakers were held out
    recipe = _recipe(tmp_path)
    folds = parse_folds("attack", ["A01", "A02,A03"], 2)
    _no_training(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(_Trained):
        cross_validate(recipe, folds, tmp_path / "by_speaker", workers=0)
    assert "not speaker-disjoint" not in caplog.text  # grouped by speaker: each speaker in one group
    caplog.clear()
    _with_pairs(recipe, lambda i, partition: f"pair{i}")
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(_Trained):
        cross_validate(recipe, folds, tmp_path / "by_pair", workers=0)
    assert "--bonafide-folds 2: " in caplog.text and "held-out bona fide files with a speaker are of" in caplog.text
    assert "the held-out bona fide group is not speaker-disjoint" in caplog.text
    # a pair_id that follows the speaker keeps speakers together again: no warning
    caplog.clear()
    speaker_of = {}
    for spec in (recipe.data.train, recipe.data.val):
        df = pd.read_csv(spec.protocol, keep_default_na=False)
        speaker_of.update({(p, i): s for i, (p, s) in enumerate(zip(df["partition"], df["speaker"]))})
    _with_pairs(recipe, lambda i, partition: f"pair_{speaker_of[(partition, i)]}")
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(_Trained):
        cross_validate(recipe, folds, tmp_path / "by_speaker_pair", workers=0)
    assert "not speaker-disjoint" not in caplog.text


def test_a_multi_seed_run_that_stops_part_way_says_which_seeds_are_done(tmp_path, monkeypatch, caplog):
    recipe = _recipe(tmp_path)
    folds = parse_folds("source", ["s0", "s1,s2"])
    calls = []

    def run_fold(recipe, fold, fold_dir, *, workers=2):
        calls.append(recipe.seed)
        if recipe.seed == 8 and fold.values != ("s0",):
            raise KeyboardInterrupt
        return {"held_out": list(fold.values), "column": fold.column, "eer": 0.25, "val_eer": None}

    monkeypatch.setattr(crossval, "run_fold", run_fold)
    out = tmp_path / "cv"
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(KeyboardInterrupt):
        crossval.cross_validate_seeds(recipe, folds, out, [7, 8, 9], workers=0)
    assert calls == [7, 7, 8, 8]
    assert f"{out}: seed 8 (2/3) did not finish; seeds done: 7, not done: 8, 9" in caplog.text
    assert f"{out / 'seed_8'}: fold 2/2 (source=s1+s2) did not finish" in caplog.text


def test_sdd_compare_of_one_run_against_several_says_how_to_pair_them(tmp_path, capsys):
    # a deterministic baseline (a bundled model: one score file) against a system's three seeds was refused with
    # "got 1 and 3" alone; repeating the file is how they pair, and what the mean difference then is
    protocol = _protocol(tmp_path)
    base = _scores(tmp_path, "base", _noisy(0, 1.0))
    seeds = [_scores(tmp_path, f"seed{s}", _noisy(s, 2.0)) for s in (1, 2, 3)]
    argv = ["compare", "--protocol", str(protocol), "--bootstrap", "50"]
    assert main([*argv, "--baseline", str(base), "--system", *map(str, seeds)]) == 2
    err = capsys.readouterr().err
    assert (
        "got 1 and 3 (a --baseline of one run, e.g. a deterministic model, can be given once per --system run: " in err
    )
    assert f"--baseline {base} {base} {base})" in err
    assert main([*argv, "--baseline", *map(str, seeds[:2]), "--system", str(base)]) == 2
    assert f"once per --baseline run: --system {base} {base})" in capsys.readouterr().err
    # two runs against three: no single side to repeat, the count alone
    assert main([*argv, "--baseline", *map(str, seeds[:2]), "--system", *map(str, seeds)]) == 2
    assert capsys.readouterr().err.rstrip().endswith("got 2 and 3")
    # the hint's command runs, and its difference is the system's mean EER minus the baseline's
    json_out = tmp_path / "c.json"
    assert main([*argv, "--baseline", *[str(base)] * 3, "--system", *map(str, seeds), "--json", str(json_out)]) == 0
    data = json.loads(json_out.read_text())
    y = _labels()
    expected = np.mean([eer(y, _noisy(s, 2.0)).eer for s in (1, 2, 3)]) - eer(y, _noisy(0, 1.0)).eer
    assert data["difference"]["value"] == pytest.approx(expected)
