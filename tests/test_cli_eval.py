from __future__ import annotations

import json

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.metrics import eer

OUTPUTS = ("report.json", "report.md", "per_attack.csv", "per_source.csv", "det.png", "roc.png")


def _write_inputs(tmp_path, seed=0):
    """An ASVspoof 2019 LA protocol (SPEAKER UTT - ATTACK KEY) and a 2-column score file."""
    rng = np.random.default_rng(seed)
    proto, score_lines, labels, scores = [], [], [], []
    for i in range(120):
        attack = ("-", "A07", "A19")[i % 3]
        key = "bonafide" if attack == "-" else "spoof"
        score = rng.normal(1.5 if key == "bonafide" else -1.0, 1.0)
        proto.append(f"LA_00{i % 7 + 10} LA_E_{1000000 + i} - {attack} {key}")
        score_lines.append(f"LA_E_{1000000 + i} {score:.6f}")
        labels.append(int(key == "bonafide"))
        scores.append(float(f"{score:.6f}"))
    protocol = tmp_path / "ASVspoof2019.LA.cm.eval.trl.txt"
    protocol.write_text("\n".join(proto) + "\n")
    score_file = tmp_path / "scores.txt"
    score_file.write_text("\n".join(score_lines[::-1]) + "\n")  # order must not matter
    return protocol, score_file, np.array(labels), np.array(scores)


def test_sdd_eval_writes_every_output(tmp_path, capsys):
    protocol, score_file, labels, scores = _write_inputs(tmp_path)
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(score_file), "--protocol", str(protocol), "--out", str(out)]
    assert main([*argv, "--protocol-format", "asvspoof2019_la", "--bootstrap", "30"]) == 0
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    data = json.loads((out / "report.json").read_text())
    expected = 100 * eer(labels, scores).eer
    assert data["pooled"]["eer"] == pytest.approx(expected)
    assert {r["attack"] for r in data["per_attack"]} == {"A07", "A19"}
    assert data["matching"]["n_matched"] == 120
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"pooled EER {expected:.2f}%" in line and "minDCF" in line and str(out / "report.md") in line
    # the protocol format is detected when not given
    assert main([*argv[:-1], str(tmp_path / "auto"), "--bootstrap", "0"]) == 0
    assert json.loads((tmp_path / "auto" / "report.json").read_text())["pooled"]["eer"] == pytest.approx(expected)


def test_sdd_eval_errors_exit_2(tmp_path, capsys):
    protocol, score_file, _, _ = _write_inputs(tmp_path)
    out = str(tmp_path / "o")
    assert main(["eval", "--scores", str(tmp_path / "none.txt"), "--protocol", str(protocol), "--out", out]) == 2
    assert "no such score file" in capsys.readouterr().err
    unrelated = tmp_path / "other.txt"
    unrelated.write_text("X_1 1.0\nX_2 2.0\n")
    assert main(["eval", "--scores", str(unrelated), "--protocol", str(protocol), "--out", out]) == 2
    assert "matches the protocol" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("LA_E_1000000 0.5\nLA_E_1000001 nan\n")
    assert main(["eval", "--scores", str(bad), "--protocol", str(protocol), "--out", out]) == 2
    assert "bad.txt:2: non-finite score" in capsys.readouterr().err


def test_sdd_eval_partial_scores_warn(tmp_path, capsys):
    protocol, score_file, _, _ = _write_inputs(tmp_path)
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join(score_file.read_text().splitlines()[:60]) + "\n")
    argv = ["eval", "--scores", str(partial), "--protocol", str(protocol), "--out", str(tmp_path / "p")]
    assert main([*argv, "--bootstrap", "0"]) == 0
    assert "60 of 120 protocol utterances have no score" in capsys.readouterr().err
    data = json.loads((tmp_path / "p" / "report.json").read_text())
    assert data["pooled"]["n"] == 60 and data["matching"]["n_unmatched_protocol"] == 60


def test_sdd_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--bootstrap", "10"]) == 0
    for name in OUTPUTS:
        assert (out / "report" / name).is_file(), name
    data = json.loads((out / "report" / "report.json").read_text())
    rows = {r["attack"]: r["eer"] for r in data["per_attack"]}
    # attack-dependent separation: A07 (d' = 4) is far easier than A17 (d' = 1.2)
    assert rows["A07"] < rows["A17"] and 0 < data["pooled"]["eer"] < 50
    assert str(out / "report") in capsys.readouterr().out
