"""Review 8 of `sdd eval` and the evaluation package (plots at the edges, intervals of few replicates, score
scales, ...)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_support import gaussian_trials, keep_drawn_figures, labelled_table

from sddkit.cli.main import main
from sddkit.evaluation import EvalConfig, evaluate, render_markdown
from sddkit.evaluation import plots as plots_module
from sddkit.metrics import det_curve, eer


def _inside(ax, line) -> bool:
    """Whether every point of ``line`` lies strictly inside the axes' view (not on the frame, where it is hidden)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    return bool(((x > x0) & (x < x1) & (y > y0) & (y < y1)).all())


def test_a_curve_without_errors_is_drawn_inside_the_det_and_roc_frames(tmp_path, monkeypatch):
    # a system with no errors has miss = 0 or fa = 0 at every threshold: its DET curve was clipped onto the axes'
    # lower and left limits and its ROC curve ran along x = 0 and y = 1, all of it under the frame: the legend read
    # "pooled (EER 0.00%)" above an empty plot, and the EER marker was a quarter of a dot in the corner
    drawn = keep_drawn_figures(monkeypatch)
    labels = np.array([1] * 6 + [0] * 6)
    scores = np.where(labels == 1, 3.0, -3.0) + np.linspace(0, 0.1, 12)
    curves = {"pooled": det_curve(labels, scores)}
    plots_module.plot_det(curves, tmp_path / "det.png")
    ax = drawn["fig"].axes[0]
    curve_line = ax.get_lines()[0]
    marker = next(line for line in ax.get_lines() if line.get_marker() == "o")
    assert _inside(ax, curve_line) and _inside(ax, marker)
    # the ticks and the error-rate range shown are as before
    assert ax.get_xticks()[0] == pytest.approx(plots_module.norm.ppf(0.001))
    assert ax.get_xlim()[0] < plots_module.norm.ppf(plots_module._DET_LIMITS[0])
    plots_module.plot_roc(curves, tmp_path / "roc.png", aucs={"pooled": 1.0})
    ax = drawn["fig"].axes[0]
    assert _inside(ax, ax.get_lines()[0])
    # an ordinary curve's ends (fa = 100 % at miss = 0, miss = 100 % at fa = 0) are drawn inside the frame as well
    labels, scores = gaussian_trials(200)
    plots_module.plot_det({"pooled": det_curve(labels, scores)}, tmp_path / "det2.png")
    ax = drawn["fig"].axes[0]
    assert _inside(ax, ax.get_lines()[0])


def test_an_eer_interval_of_too_few_bootstrap_replicates_is_flagged(tmp_path, capsys):
    # `--bootstrap 1` gave a "95% CI" that was one replicate's EER (here 17.5 to 17.5 around an EER of 15 %),
    # labelled 95 % with nothing said; fewer than 2 / alpha replicates leave no replicate in a tail
    labels, scores = gaussian_trials(40)
    report = evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=1))
    low, high = report.pooled["eer_ci"]
    assert low == high != report.pooled["eer"]  # what the interval of one replicate is
    note = report.pooled["eer_ci_note"]
    assert "1 bootstrap replicate(s)" in note and "40" in note and "not a 95% interval" in note
    assert note in report.warnings and note in render_markdown(report)
    # the level's own count: 20 replicates are too few at alpha 0.05, 200 are enough
    assert (
        "fewer than the 40" in evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=20)).pooled["eer_ci_note"]
    )
    enough = evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=40))
    assert enough.pooled["eer_ci_note"] == "" and enough.warnings == []
    assert (
        "fewer than the 200"
        in evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=40, alpha=0.01)).warnings[0]
    )
    # sdd eval prints it and report.json holds it
    protocol = tmp_path / "protocol.txt"
    protocol.write_text(
        "".join(f"S u{i} - {'-' if y else 'A01'} {'bonafide' if y else 'spoof'}\n" for i, y in enumerate(labels))
    )
    score_file = tmp_path / "scores.txt"
    score_file.write_text("".join(f"u{i} {s:.6f}\n" for i, s in enumerate(scores)))
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(score_file), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "5"]
    assert main(argv) == 0
    assert "rests on 5 bootstrap replicate(s)" in capsys.readouterr().err
    data = json.loads((out / "report.json").read_text())
    assert data["pooled"]["eer_ci"] is not None and any("5 bootstrap" in w for w in data["warnings"])


def test_scores_that_look_like_probabilities_are_flagged():
    # another tool's bona fide probabilities: EER and minDCF are right, but actDCF and Cllr read every score as a
    # log-likelihood ratio of at least 0 (all accepted at the Bayes threshold): actDCF 1 and a Cllr that says the
    # system is worthless, with no hint why
    labels, scores = gaussian_trials(200)
    probabilities = 1.0 / (1.0 + np.exp(-scores))
    report = evaluate(labelled_table(labels), probabilities, EvalConfig(bootstrap=0))
    assert report.pooled["eer"] == pytest.approx(100 * eer(labels, scores).eer)  # the scale does not matter here
    assert report.pooled["act_dcf"] == pytest.approx(1.0)
    assert report.pooled["score_range"] == [pytest.approx(probabilities.min()), pytest.approx(probabilities.max())]
    (note,) = report.warnings
    assert "[0, 1]" in note and "log-likelihood ratios" in note and "log(p / (1 - p))" in note
    # log-odds scores, and scores in [0, 1] shifted below 0, say nothing
    assert evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=0)).warnings == []
    assert (
        evaluate(labelled_table(labels), probabilities - probabilities.min() - 0.01, EvalConfig(bootstrap=0)).warnings
        == []
    )
    assert "[0, 1]" in render_markdown(report)
    # a constant score (an untrained model's 0) has no scale to tell
    assert evaluate(labelled_table(labels), np.zeros(200), EvalConfig(bootstrap=0)).warnings == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_speakers": 0}, "n_speakers=0"),  # numpy's "high <= 0"
        ({"attacks": {"A 07": 2.0}}, "'A 07'"),  # a protocol line of 6 fields, refused by its reader
        ({"attacks": {"-": 2.0}}, "'-'"),  # spoofs written as bona fide: "all bona fide" from sdd eval
        ({"attacks": {"A07": float("nan")}}, "not a finite number"),  # "nan" scores, refused by the score reader
    ],
)
def test_the_synthetic_example_refuses_what_would_write_unreadable_or_wrong_files(tmp_path, kwargs, match):
    from sddkit.evaluation.synthetic import write_synthetic_example

    with pytest.raises(ValueError, match=match):
        write_synthetic_example(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()  # refused before anything is written
    write_synthetic_example(tmp_path / "ok", n_bonafide=5, n_per_attack=5, attacks={"A07": 2.0}, n_speakers=1)


def test_a_score_array_of_the_wrong_shape_is_named_by_its_shape():
    # a (N, 1) column of N scores (a model's output as it comes) was refused as "got 6 scores for 6 protocol rows"
    labels, scores = gaussian_trials(6)
    from sddkit.errors import ProtocolError

    with pytest.raises(ProtocolError, match=r"shape \(6,\), for 6 protocol rows; got shape \(6, 1\)"):
        evaluate(labelled_table(labels), scores[:, None], EvalConfig(bootstrap=0))
    with pytest.raises(ProtocolError, match=r"got shape \(\)"):
        evaluate(labelled_table(labels), 1.0, EvalConfig(bootstrap=0))
    assert evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=0)).pooled["n"] == 6


def test_a_folder_given_as_the_score_file_is_named_a_folder(tmp_path, capsys):
    # `--scores runs/x/` (the folder, not the file in it) said "no such score file" of a path that exists
    from sddkit.errors import ProtocolError
    from sddkit.evaluation.scores import read_scores

    with pytest.raises(ProtocolError, match="is a folder; give the score file in it"):
        read_scores(tmp_path)
    with pytest.raises(ProtocolError, match="no such score file"):
        read_scores(tmp_path / "missing.csv")
    protocol = tmp_path / "protocol.txt"
    protocol.write_text("S u0 - - bonafide\nS u1 - A01 spoof\n")
    argv = ["eval", "--scores", str(tmp_path), "--protocol", str(protocol), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "is a folder" in capsys.readouterr().err
