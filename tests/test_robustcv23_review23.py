"""Review 23 of ``sdd cv``: a fold interrupted while scoring its held-out files resumes to the same figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.metrics import eer
from sddkit.training import crossval
from sddkit.training.crossval import cross_validate, held_out_table, parse_folds


def test_a_fold_cut_off_while_scoring_resumes_to_the_figures_of_an_uninterrupted_run(tmp_path):
    recipe = _recipe(tmp_path, val_every=1)
    folds = parse_folds("source", ["s0", "s1,s2"])
    out = tmp_path / "cv"
    whole = cross_validate(recipe, folds, out, workers=0)

    # fold 2 as a kill during its scoring leaves it: trained, some held-out rows written, no fold.json
    fold_dir = out / folds[1].dir_name
    (fold_dir / crossval.FOLD_NAME).unlink()
    scores = fold_dir / crossval.SCORES_NAME
    lines = scores.read_text().splitlines(keepends=True)
    scores.write_text("".join(lines[: len(lines) // 2]))
    again = cross_validate(recipe, folds, out, workers=0)

    assert again["folds"] == whole["folds"] and again["mean_eer"] == whole["mean_eer"]
    for fold, fig in zip(folds, again["folds"]):  # cv.json's figures are those of the fold's own score file
        held = held_out_table(recipe, fold)
        rows = pd.read_csv(out / fold.dir_name / crossval.SCORES_NAME).set_index("path")
        assert len(rows) == len(held)  # each held-out file scored once, the resumed ones not twice
        s = rows.loc[list(held.column("path")), "score"].to_numpy()
        assert fig["eer"] == pytest.approx(float(eer(held.labels, s)))
    written = json.loads((out / crossval.CV_NAME).read_text())
    assert written["mean_eer"] == pytest.approx(np.mean([f["eer"] for f in again["folds"]]))


def test_bench_robustness_refuses_an_out_holding_an_interrupted_runs_journal(tmp_path, monkeypatch, capsys):
    # resumed files would be read back, not scored, yet counted in files and file_conditions_per_s
    from script_support import load_script

    from sddkit.evaluation.robustness import JOURNAL_NAME

    bench = load_script("benchmarks/bench_robustness.py")
    out = tmp_path / "report"
    out.mkdir()
    (out / JOURNAL_NAME).write_text('{"schema": "sddkit.robustness-journal/1"}\n')
    ran = []
    monkeypatch.setattr("sddkit.cli.main.main", lambda argv: ran.append(argv) or 0)
    argv = ["bench_robustness.py", "--demo-model", "lcnn", "--manifest", str(tmp_path / "m.csv"), "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    assert bench.main() == 2
    assert not ran  # refused before any scoring
    err = capsys.readouterr().err
    assert JOURNAL_NAME in err and "--out" in err and "delete it" in err
