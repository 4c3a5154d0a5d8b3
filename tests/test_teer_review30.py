"""Review 30 (teer): the SASV min a-DCF of ASVspoof 5 track 2 per attack and per codec condition.

The ASVspoof 5 evaluation package's full evaluation (``asvspoof-challenge/asvspoof5``,
``evaluation-package/calculate_metrics_full.py``, ``calculate_aDCF_tdcf_tEER_full``) gives the min a-DCF of each
attack (every target and non-target trial with that attack's spoof trials) and of each codec condition (the
condition's own target, non-target and spoof trials); ``sdd eval`` gave the pooled figure alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_support import labelled_table

from sddkit.cli.main import main
from sddkit.evaluation.asv import ASVScores
from sddkit.evaluation.report import evaluate, render_markdown

# a-DCF under the package's current costs: P_tar 0.9405, P_non 0.0095, P_spf 0.05, C_miss 1, C_fa 10, C_fa_spoof 10,
# normalised by min(10 * 0.0095 + 10 * 0.05, 0.9405) = 0.595
NORM = 0.595


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _asvspoof5_track2(tmp_path):
    """An ASVspoof 5 eval set of 4 files (bona fide 01 uncoded and 02 C01; spoofs 03 A17 uncoded and 04 A18 C01), the
    package's SASV key (which names no attack or codec: the protocol's lines of the files do) and a track-2
    submission.

    SASV scores: target 01 2.4, 02 2.0; non-target 01 0.0, 02 -1.0; spoof 03 (A17, none) 2.5, 04 (A18, C01) -2.0."""
    protocol = _write(
        tmp_path / "ASVspoof5.eval.track_1.tsv",
        [
            "E_0001 E_0000000001 F - - - - bonafide bonafide -",
            "E_0001 E_0000000002 F C01 1 E_0000000001 - bonafide bonafide -",
            "E_0002 E_0000000003 M - - - AC1 A17 spoof -",
            "E_0002 E_0000000004 M C01 1 E_0000000003 AC1 A18 spoof -",
        ],
    )
    cm = _write(
        tmp_path / "cm.tsv",
        ["filename\tcm-score", "E_0000000001\t2", "E_0000000002\t1", "E_0000000003\t0", "E_0000000004\t-1"],
    )
    trials = [  # (spk, file, cm-label, asv-label, cm-score, asv-score, sasv-score)
        ("E_0001", "E_0000000001", "bonafide", "target", 2, 0.9, 2.4),
        ("E_0001", "E_0000000002", "bonafide", "target", 1, 0.8, 2.0),
        ("E_0003", "E_0000000001", "bonafide", "nontarget", 2, 0.1, 0.0),
        ("E_0003", "E_0000000002", "bonafide", "nontarget", 1, 0.0, -1.0),
        ("E_0002", "E_0000000003", "spoof", "spoof", 0, 0.7, 2.5),
        ("E_0002", "E_0000000004", "spoof", "spoof", -1, 0.2, -2.0),
    ]
    key = _write(
        tmp_path / "sasv_keys.tsv", ["spk\tfilename\tcm-label\tasv-label", *("\t".join(t[:4]) for t in trials)]
    )
    scores = _write(
        tmp_path / "sasv_scores.tsv",
        ["spk\tfilename\tcm-score\tasv-score\tsasv-score", *("\t".join(map(str, t[:2] + t[4:])) for t in trials)],
    )
    return protocol, cm, scores, key


def test_sdd_eval_gives_the_min_a_dcf_per_attack_and_per_codec_as_the_package(tmp_path, capsys):
    protocol, cm, scores, key = _asvspoof5_track2(tmp_path)
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(cm), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]
    assert main([*argv, "--asv-scores", str(scores), "--asv-key", str(key)]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    # pooled, as before: at threshold 2.0 only the spoof 2.5 is let through, 10 * 0.05 * 1/2 = 0.25
    assert report["pooled"]["min_a_dcf"] == pytest.approx(0.25 / NORM)
    attacks = {r["attack"]: r for r in report["per_attack"]}
    # A17: both targets, both non-targets and the spoof 2.5: accepting >= 2.0 lets it through, 10 * 0.05 = 0.5
    # (rejecting it too, >= 2.5, misses a target: 0.9405 / 2 + 0.5); A18: the spoof -2.0, all told apart at >= 2.0
    assert (attacks["A17"]["min_a_dcf"], attacks["A17"]["a_dcf_threshold"]) == (pytest.approx(0.5 / NORM), 2.0)
    assert (attacks["A18"]["min_a_dcf"], attacks["A18"]["a_dcf_threshold"]) == (0.0, 2.0)
    assert attacks["A17"]["min_a_dcf_note"] == attacks["A18"]["min_a_dcf_note"] == ""
    codecs = {r["codec"]: r for r in report["per_codec"]}
    # none: target 2.4, non-target 0.0, spoof 2.5: >= 2.4 lets the spoof through (0.5), >= 2.5 misses the target
    # (0.9405 + 0.5), >= 0.0 accepts the non-target too; C01: target 2.0, non-target -1.0, spoof -2.0 apart at 2.0
    assert (codecs["none"]["min_a_dcf"], codecs["none"]["a_dcf_threshold"]) == (pytest.approx(0.5 / NORM), 2.4)
    assert (codecs["C01"]["min_a_dcf"], codecs["C01"]["a_dcf_threshold"]) == (0.0, 2.0)
    markdown = (out / "report.md").read_text()
    assert "### Per-attack min a-DCF (the sasv-score of sasv_scores.tsv)" in markdown
    assert "| A17 | 0.8403 | 2.0000 |" in markdown and "| none | 0.8403 | 2.4000 |" in markdown
    header = (out / "per_attack.csv").read_text().splitlines()[0].split(",")
    assert {"min_a_dcf", "a_dcf_threshold", "min_a_dcf_note"} <= set(header)
    assert "min_a_dcf" in (out / "per_codec.csv").read_text().splitlines()[0]


def test_a_group_the_sasv_scores_cannot_give_is_null_with_the_reason():
    labels = np.array([1, 1, 0, 0])
    scores = np.array([2.0, 1.0, 0.0, -1.0])
    asv = ASVScores(np.array([2.0, 1.5]), np.array([0.0, -1.0]), np.array([1.0, 0.5]))
    table = labelled_table(labels)  # spoofs of attack A01
    unnamed = ASVScores(np.array([2.0, 1.5]), np.array([0.0, -1.0]), np.array([1.0, 0.5]))
    row = evaluate(table, scores, asv_scores=asv, sasv_scores=unnamed).per_attack[0]
    assert row["min_a_dcf"] is None and row["a_dcf_threshold"] is None
    assert row["min_a_dcf_note"].startswith("the SASV scores name no spoof trials' attacks")
    other = ASVScores(unnamed.target, unnamed.nontarget, unnamed.spoof, spoof_attacks=np.array(["A02", "A02"], object))
    report = evaluate(table, scores, asv_scores=asv, sasv_scores=other)
    assert report.per_attack[0]["min_a_dcf_note"] == "the SASV scores hold no spoof trial of attack A01"
    assert report.pooled["min_a_dcf"] is not None  # the pooled figure takes every spoof trial, as before
    assert "| A01 | - (the SASV scores hold no spoof trial of attack A01) | - |" in render_markdown(report)
    # without SASV scores the rows carry no a-DCF keys, as pooled
    assert "min_a_dcf" not in evaluate(table, scores, asv_scores=asv).per_attack[0]
