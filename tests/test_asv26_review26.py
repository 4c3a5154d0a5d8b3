"""`sdd eval --asv-scores FILE [--asv-key KEY]` without `--scores` and `--protocol`: an SASV system's scores evaluated
alone, their min a-DCF (the ASVspoof 5 package's `t2_single` mode), e.g. an end-to-end SASV system's track-2
submission, whose `cm-score` and `asv-score` are `-` and which no other `sdd eval` path could score."""

from __future__ import annotations

import json

import pytest

from sddkit.cli.main import main
from sddkit.metrics import a_dcf

# SASV trials (speaker, file, kind, sasv-score): target 1, 3; nontarget 0; spoof 2.
# By hand, with ASVspoof 5's costs (p_tar 0.9405, p_non 0.0095, p_spf 0.05; C_miss 1, C_fa_asv 10, C_fa_spoof 10;
# normaliser min(10 * 0.0095 + 10 * 0.05, 0.9405) = 0.595), accepting score >= t costs:
# t <= 0: 0.595 / 0.595 = 1; t = 1: 0.5 / 0.595 = 0.8403; t = 2: (0.47025 + 0.5) / 0.595 = 1.6307;
# t = 3: 0.47025 / 0.595 = 0.7903 (one target of two missed, nothing else accepted), the lowest; reject all: 1.5807
_TRIALS = [("S1", "E_1", "target", 1.0), ("S1", "E_2", "target", 3.0), ("S2", "E_1", "nontarget", 0.0)]
_TRIALS += [("S1", "E_3", "spoof", 2.0)]
_MIN_ADCF, _THRESHOLD = 0.9405 * 0.5 / 0.595, 3.0


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _key(tmp_path):
    rows = [f"{spk} {u} {'spoof' if k == 'spoof' else 'bonafide'} {k}" for spk, u, k, _ in _TRIALS]
    return _write(tmp_path / "sasv_keys.txt", ["spk filename cm-label asv-label", *rows])


def _end_to_end(tmp_path, cell=str):
    rows = [f"{spk}\t{u}\t-\t-\t{cell(s)}" for spk, u, _, s in _TRIALS]
    return _write(tmp_path / "score.tsv", ["spk\tfilename\tcm-score\tasv-score\tsasv-score", *rows])


def _sasv_alone(tmp_path, *args):
    out = tmp_path / "report"
    code = main(["eval", *map(str, args), "--out", str(out)])
    return code, out


def test_an_end_to_end_sasv_submission_is_scored_alone_with_the_a_dcf(tmp_path, capsys):
    code, out = _sasv_alone(tmp_path, "--asv-scores", _end_to_end(tmp_path), "--asv-key", _key(tmp_path))
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "sddkit.sasv_report/1"  # told apart from a countermeasure's sddkit.report/1
    pooled = report["pooled"]
    assert pooled["min_a_dcf"] == pytest.approx(_MIN_ADCF)
    assert pooled["a_dcf_threshold"] == _THRESHOLD
    assert (pooled["n_target"], pooled["n_nontarget"], pooled["n_spoof"]) == (2, 1, 1)
    assert report["config"]["adcf"]["c_fa_spoof"] == 10.0 and report["inputs"]["asv_key"].endswith("sasv_keys.txt")
    assert f"{_MIN_ADCF:.4f}" in (out / "report.md").read_text()
    assert f"min a-DCF {_MIN_ADCF:.4f}" in capsys.readouterr().out
    # the same value as the metric itself
    tar, non, spf = ([s for *_, k, s in _TRIALS if k == kind] for kind in ("target", "nontarget", "spoof"))
    assert a_dcf(tar, non, spf).a_dcf == pytest.approx(pooled["min_a_dcf"])


def test_the_package_readmes_sasv_score_file_is_scored_alone(tmp_path, capsys):
    # SPEAKER UTT SCORE KIND: the ASVspoof 5 package README's "SASV score file (for a-DCF)", no key needed
    lines = _write(tmp_path / "sasv.txt", [f"{spk} {u} {s} {k}" for spk, u, k, s in _TRIALS])
    code, out = _sasv_alone(tmp_path, "--asv-scores", lines)
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["pooled"]["min_a_dcf"] == pytest.approx(_MIN_ADCF)


def test_an_earlier_countermeasure_reports_files_are_not_left_beside_the_sasv_report(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    for name in ("det.png", "per_attack.csv", "per_codec.csv"):
        (out / name).write_text("an earlier run's")
    code, out = _sasv_alone(tmp_path, "--asv-scores", _end_to_end(tmp_path), "--asv-key", _key(tmp_path))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]


def test_a_sasv_score_column_of_dashes_alone_is_refused(tmp_path, capsys):
    # the organisers' ASV scores: '-' as their sasv-score, no SASV system's scores to take an a-DCF of
    code, out = _sasv_alone(
        tmp_path, "--asv-scores", _end_to_end(tmp_path, cell=lambda s: "-"), "--asv-key", _key(tmp_path)
    )
    assert code == 2 and not out.exists()
    assert "sasv-score column holds '-' in every row" in capsys.readouterr().err


def test_missing_scores_or_protocol_and_countermeasure_options_are_refused_saying_what_to_give(tmp_path, capsys):
    sasv, key = _end_to_end(tmp_path), _key(tmp_path)
    assert main(["eval", "--scores", str(sasv), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "give --protocol" in err and "without --scores and --protocol" in err
    assert main(["eval", "--out", str(tmp_path / "r")]) == 2
    assert "give --scores and --protocol" in capsys.readouterr().err
    code, _ = _sasv_alone(tmp_path, "--asv-scores", sasv, "--asv-key", key, "--partitions", "eval")
    assert code == 2 and "--partitions" in capsys.readouterr().err


def test_an_end_to_end_submission_given_with_cm_scores_points_to_the_sasv_path(tmp_path, capsys):
    cm = _write(tmp_path / "cm.tsv", ["filename\tcm-score", "E_1\t1", "E_2\t2", "E_3\t-1"])
    cm_key = _write(tmp_path / "cm_key.tsv", ["filename\tcm-label", "E_1\tbonafide", "E_2\tbonafide", "E_3\tspoof"])
    argv = ["eval", "--scores", str(cm), "--protocol", str(cm_key), "--out", str(tmp_path / "r"), "--bootstrap", "0"]
    assert main([*argv, "--asv-scores", str(_end_to_end(tmp_path)), "--asv-key", str(_key(tmp_path))]) == 2
    assert "sdd eval --asv-scores FILE [--asv-key KEY] without --scores and --protocol" in capsys.readouterr().err
