"""Review 25 of the metrics and sdd eval's use of them: each test is checked against a reference written here
from the published formulas, or pins a defect found in this review."""

from __future__ import annotations

import numpy as np
import pytest
from eval_support import labelled_table

from sddkit.errors import ProtocolError
from sddkit.evaluation.asv import ASVScores, read_asv_and_sasv_scores, read_asv_scores
from sddkit.evaluation.report import EvalConfig, evaluate, render_markdown


@pytest.mark.parametrize(
    "text",
    [
        # ASVspoof 2019's SOURCE KEY SCORE, space- and tab-separated: '1,53' was split at the comma, read as 53
        "bonafide target 1,53\nbonafide nontarget -2.0\nA07 spoof 0.5\n",
        "bonafide\ttarget\t1.5\nbonafide\tnontarget\t-2,25\nA07\tspoof\t0.5\n",
        # ASVspoof 5's SPEAKER UTT SCORE KIND: '-0,5' was read as 5
        "E_0001 E_000001 2.5 target\nE_0001 E_000002 -1.5 nontarget\nE_0001 E_000003 -0,5 spoof\n",
        # a whitespace table with a header: the score column's cell was '1' of '1,5'
        "spk filename asv-label asv-score\nA B target 1,5\nA C nontarget 0\nA D spoof 0.25\n",
        # a comma-separated table with a header: the row's fields shifted, its score column read '1'
        "spk,filename,asv-label,asv-score\nA,B,target,1,5\nA,C,nontarget,0\nA,D,spoof,0.25\n",
    ],
)
def test_an_asv_score_with_a_decimal_comma_is_refused_not_misread(tmp_path, text):
    path = tmp_path / "asv.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"asv\.txt, line \d: .*decimal comma"):
        read_asv_scores(path)


def test_comma_separated_asv_scores_with_decimal_points_still_read(tmp_path):
    path = tmp_path / "asv.csv"
    path.write_text(
        "source,key,score\nbonafide,target,1.5\nbonafide, nontarget, -2\nA07,spoof,0.25\n", encoding="utf-8"
    )
    asv = read_asv_scores(path)
    assert asv.target.tolist() == [1.5] and asv.nontarget.tolist() == [-2.0] and asv.spoof.tolist() == [0.25]


def test_a_keyed_asv_score_with_a_decimal_comma_says_so(tmp_path):
    scores = tmp_path / "scores.tsv"
    scores.write_text("spk\tfilename\tasv-score\nA\tB\t1,5\n", encoding="utf-8")
    key = tmp_path / "key.txt"
    key.write_text("spk filename cm-label asv-label\nA B bonafide target\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"decimal comma: write '1\.5'"):
        read_asv_scores(scores, key)


_KEY = (
    "spk filename cm-label asv-label\n"
    "A B bonafide target\nA C bonafide nontarget\nA D spoof spoof\nA E bonafide target\n"
)
_HEADER = "spk\tfilename\tcm-score\tasv-score\tsasv-score\n"


def test_a_trial_scored_twice_in_a_keyed_table_is_refused_not_counted_twice(tmp_path):
    key = tmp_path / "key.txt"
    key.write_text(_KEY, encoding="utf-8")
    scores = tmp_path / "scores.tsv"
    scores.write_text(
        _HEADER + "A\tB\t1\t2\t3\nA\tC\t1\t0\t0\nA\tD\t-1\t1\t-1\nA\tE\t1\t1.5\t2\nA\tD\t-1\t1\t-1\n", encoding="utf-8"
    )
    with pytest.raises(ProtocolError, match=r"line 6: the trial \(A, D\) is scored a second time \(first on line 4\)"):
        read_asv_scores(scores, key)


def test_the_key_trials_a_keyed_table_leaves_unscored_are_counted_and_reported(tmp_path):
    key = tmp_path / "key.txt"
    key.write_text(_KEY, encoding="utf-8")
    scores = tmp_path / "scores.tsv"
    scores.write_text(_HEADER + "A\tB\t1\t2\t3\nA\tC\t1\t0\t0\nA\tD\t-1\t1\t-1\n", encoding="utf-8")  # no E
    asv, sasv = read_asv_and_sasv_scores(scores, key)
    assert (asv.target.tolist(), asv.nontarget.tolist(), asv.spoof.tolist()) == ([2.0], [0.0], [1.0])
    assert asv.n_unscored == 1 and sasv is not None and sasv.n_unscored == 1
    full = tmp_path / "scores_full.tsv"
    full.write_text(_HEADER + "A\tB\t1\t2\t3\nA\tC\t1\t0\t0\nA\tD\t-1\t1\t-1\nA\tE\t1\t1.5\t2\n", encoding="utf-8")
    assert read_asv_scores(full, key).n_unscored == 0
    assert read_asv_scores(tmp_path / "scores.tsv", key).n_unscored == 1
    labels = np.array([1, 0, 1, 0])
    report = evaluate(
        labelled_table(labels),
        np.array([1.0, -1.0, 0.5, 0.2]),
        EvalConfig(bootstrap=0),
        asv_scores=asv,
        sasv_scores=sasv,
    )
    (note,) = [w for w in report.warnings if "without a score" in w]
    assert "scores 3 of the 4 trials of its key (1 without a score)" in note and "a-DCF" in note
    assert note in report.to_dict()["warnings"] and note in render_markdown(report)
    complete = evaluate(
        labelled_table(labels),
        np.array([1.0, -1.0, 0.5, 0.2]),
        EvalConfig(bootstrap=0),
        asv_scores=read_asv_scores(full, key),
    )
    assert not [w for w in complete.warnings if "without a score" in w]


def test_asv_and_sasv_scores_that_look_inverted_are_warned_of():
    # a distance-scored ASV system (lower = the claimed speaker) gave t-DCFs and a t-EER of a system reversing its
    # decisions, without a word; the CM side warns of an AUC below 0.5 already
    labels = np.array([1, 0, 1, 0])
    scores = np.array([1.0, -1.0, 0.5, 0.2])
    tar, non, spf = np.array([3.0, 2.0, 1.5]), np.array([0.0, -1.0, 1.6]), np.array([2.5, 0.2, -2.0])
    fine = ASVScores(tar, non, spf)
    inverted = ASVScores(-tar, -non, -spf)
    table = labelled_table(labels)
    assert not [w for w in evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=fine).warnings if "ASV" in w]
    (note,) = [w for w in evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=inverted).warnings if "ASV" in w]
    assert note.startswith("the ASV scores rank non-target trials above target trials") and "ROC AUC 0.1111" in note
    report = evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=fine, sasv_scores=inverted)
    (note,) = [w for w in report.warnings if "SASV" in w]
    assert "non-target and spoof trials above target trials" in note and "a-DCF" in note
    assert note in report.to_dict()["warnings"]
