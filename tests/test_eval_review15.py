"""`sdd eval`'s "scores look like probabilities" warning and where the scores came from."""

from __future__ import annotations

import json

from eval_support import gaussian_trials, labelled_table

from sddkit.cli.eval_cmd import evaluated_inputs
from sddkit.evaluation import EvalConfig, evaluate


def _scores_in_unit_interval(n: int = 200):
    labels, scores = gaussian_trials(n)
    # log-odds of a weak, uncalibrated model: a few tenths, all of them in [0, 1] by chance
    return labels, 0.5 + 0.05 * (scores - scores.mean()) / scores.std()


def test_scores_sdd_score_wrote_are_log_odds_whatever_their_range(tmp_path):
    # the `score` column of an sdd score output is the model's (calibrated or raw) log-odds: a weak model's scores
    # can all lie in [0, 1], and the report told the user they looked like probabilities, to be given as log(p/(1-p))
    labels, scores = _scores_in_unit_interval()
    assert 0.0 <= scores.min() < scores.max() <= 1.0
    scores_csv, protocol = tmp_path / "scores.csv", tmp_path / "protocol.csv"
    scores_csv.write_text("path,score\n")
    protocol.write_text("path,label\n")
    (tmp_path / "scores.csv.run.json").write_text(
        json.dumps({"model": "model", "cwd": str(tmp_path), "weights_digest": "0" * 64})
    )
    report = evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=0))
    report.inputs = evaluated_inputs(str(scores_csv), str(protocol), None, None)
    assert report.inputs["model"] is not None
    assert not any("[0, 1]" in w for w in report.warnings)


def test_scores_of_unknown_origin_in_the_unit_interval_still_warn(tmp_path):
    labels, scores = _scores_in_unit_interval()
    scores_csv, protocol = tmp_path / "scores.csv", tmp_path / "protocol.csv"
    scores_csv.write_text("path,score\n")
    protocol.write_text("path,label\n")
    report = evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=0))
    report.inputs = evaluated_inputs(str(scores_csv), str(protocol), None, None)  # no run record: another tool's
    assert report.inputs["model"] is None
    assert any("[0, 1]" in w and "log(p / (1 - p))" in w for w in report.warnings)
