"""`sdd eval --asv-scores` with an ASVspoof 5 track-2 submission's `sasv-score` column reports the min a-DCF of
those SASV scores (ASVspoof 5 track 2's metric), computed by hand here."""

from __future__ import annotations

import json

import pytest

from sddkit.cli.main import main
from sddkit.evaluation.asv import read_sasv_scores

# the CM's trials: bona fide 3, 2, 1; spoof 1.5, -1, -2
_CM = [("E_1", "bonafide", 3.0), ("E_2", "bonafide", 2.0), ("E_3", "bonafide", 1.0)]
_CM += [("E_4", "spoof", 1.5), ("E_5", "spoof", -1.0), ("E_6", "spoof", -2.0)]
# SASV trials (speaker, file, kind, asv-score, sasv-score): sasv target 3, 1; nontarget 0, 2.5; spoof -1, 2
_SASV = [
    ("S1", "E_1", "target", 3.0, 3.0),
    ("S1", "E_2", "target", 2.0, 1.0),
    ("S2", "E_1", "nontarget", 0.0, 0.0),
    ("S2", "E_3", "nontarget", -1.0, 2.5),
    ("S1", "E_4", "spoof", 2.5, -1.0),
    ("S1", "E_5", "spoof", 1.0, 2.0),
]
# By hand, with ASVspoof 5's costs (p_tar 0.9405, p_non 0.0095, p_spf 0.05; C_miss 1, C_fa_asv 10, C_fa_spoof 10;
# normaliser min(10 * 0.0095 + 10 * 0.05, 0.9405) = 0.595): accepting sasv >= 1 misses no target and accepts one of
# two non-targets and one of two spoofs: (10 * 0.0095 * 0.5 + 10 * 0.05 * 0.5) / 0.595 = 0.5, the lowest over every
# threshold (>= 0: 0.5798; >= 2: 1.2903; >= 2.5: 0.8702; >= 3: 0.7903; accept all 1, reject all 1.5807)
_MIN_ADCF, _THRESHOLD = 0.5, 1.0


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _files(tmp_path, sasv_cell=lambda v: str(v)):
    cm_key = _write(tmp_path / "cm_keys.tsv", ["filename\tcm-label", *(f"{u}\t{k}" for u, k, _ in _CM)])
    cm = _write(tmp_path / "cm_scores.tsv", ["filename\tcm-score", *(f"{u}\t{s}" for u, _, s in _CM)])
    key = ["spk filename cm-label asv-label"]
    key += [f"{spk} {u} {'spoof' if k == 'spoof' else 'bonafide'} {k}" for spk, u, k, _, _ in _SASV]
    sasv = ["spk\tfilename\tcm-score\tasv-score\tsasv-score"]
    sasv += [f"{spk}\t{u}\t0.5\t{a}\t{sasv_cell(v)}" for spk, u, _, a, v in _SASV]
    return cm, cm_key, _write(tmp_path / "score.tsv", sasv), _write(tmp_path / "sasv_keys.txt", key)


def _eval(tmp_path, cm, cm_key, *extra):
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(cm), "--protocol", str(cm_key), "--out", str(out), "--bootstrap", "0", *extra]
    assert main(argv) == 0
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_sdd_eval_reports_the_min_a_dcf_of_a_track2_submissions_sasv_scores(tmp_path, capsys):
    cm, cm_key, submission, key = _files(tmp_path)
    report, md = _eval(tmp_path, cm, cm_key, "--asv-scores", str(submission), "--asv-key", str(key))
    assert report["pooled"]["min_a_dcf"] == pytest.approx(_MIN_ADCF)
    assert report["pooled"]["a_dcf_threshold"] == pytest.approx(_THRESHOLD)
    assert report["pooled"]["t_eer"] is not None  # the asv-score column still weighs the t-DCF and t-EER
    assert "| min a-DCF (the sasv-score of score.tsv); threshold 1.0000 | 0.5000 |" in md


def test_a_table_holding_its_kinds_reads_the_sasv_column_too(tmp_path):
    rows = ["spk filename asv-label asv-score sasv-score"]
    rows += [f"{spk} {u} {k} {a} {v}" for spk, u, k, a, v in _SASV]
    sasv = read_sasv_scores(_write(tmp_path / "table.txt", rows))
    assert (sasv.target.tolist(), sasv.nontarget.tolist(), sasv.spoof.tolist()) == ([3, 1], [0, 2.5], [-1, 2])


def test_no_a_dcf_without_sasv_scores(tmp_path):
    # the organisers' ASV scores carry '-' as sasv-score, and the 2019 layout has no such column: no a-DCF, which
    # would be a figure of the ASV system alone
    cm, cm_key, organisers, key = _files(tmp_path, sasv_cell=lambda v: "-")
    assert read_sasv_scores(organisers, key) is None
    report, md = _eval(tmp_path, cm, cm_key, "--asv-scores", str(organisers), "--asv-key", str(key))
    assert "min_a_dcf" not in report["pooled"] and "a-DCF" not in md
    asv2019 = _write(tmp_path / "asv2019.txt", [f"x {k} {a}" for _, _, k, a, _ in _SASV])
    assert read_sasv_scores(asv2019) is None
