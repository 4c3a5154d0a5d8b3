"""Review 24 of the metrics and what reports them (metrics24): expected values computed by hand."""

from __future__ import annotations

import json

import pytest

from sddkit.cli.main import main
from sddkit.documents import run_record_path

# --- sdd eval's thresholded rates are those of the decisions the scoring model made ------------------------------

_ROWS = (("a.wav", "bonafide", 2.0), ("b.wav", "bonafide", 1.0), ("c.wav", "spoof", -1.0), ("d.wav", "spoof", 1.6))


def _scored(tmp_path, threshold):
    """labels.csv and an sdd score output whose run record names a model deciding at ``threshold`` (None: a record
    without inference settings)."""
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"{p},{k}\n" for p, k, _ in _ROWS))
    columns = ["path", "score", "decision"]
    lines = [",".join(columns)]
    for path, _, score in _ROWS:
        decision = "bonafide" if threshold is not None and score >= threshold else "spoof"
        lines.append(f"{path},{score},{decision}")
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n")
    record = {"model": "m", "weights_digest": "ab" * 32, "cwd": str(tmp_path), "columns": columns}
    if threshold is not None:
        calibration = {"a": 1.3, "b": 0.1, "prior": 0.5, "n_bonafide": 10, "n_spoof": 10}
        record["inference"] = {"threshold": threshold, "calibration": calibration}
    run_record_path(tmp_path / "scores.csv").write_text(json.dumps(record))


def _eval(tmp_path):
    argv = ["eval", "--scores", "scores.csv", "--protocol", "labels.csv", "--out", "out", "--bootstrap", "0"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    return report, (tmp_path / "out" / "report.md").read_text()


def test_sdd_eval_takes_the_thresholded_rates_at_the_threshold_of_the_model_that_scored(tmp_path, monkeypatch):
    # sdd score decides `bonafide` iff score >= the model's threshold (the bundled model's is 0.73), but sdd eval
    # reported accuracy/TPR/TNR at 0 whatever the model: rates of decisions nobody made (here balanced accuracy
    # 0.75 where the model's own decisions have 0.5), and unlike sdd robustness, which takes the model's threshold
    monkeypatch.chdir(tmp_path)
    _scored(tmp_path, 1.5)
    report, markdown = _eval(tmp_path)
    at = report["pooled"]["at_threshold"]
    # at 1.5: bona fide 2.0 accepted, 1.0 rejected (TPR 1/2); spoof -1.0 rejected, 1.6 accepted (TNR 1/2)
    assert at == {"threshold": 1.5, "accuracy": 0.5, "tpr": 0.5, "tnr": 0.5, "balanced_accuracy": 0.5}
    assert report["inputs"]["model"]["threshold"] == 1.5
    assert "| balanced accuracy at 1.5 (the threshold of the model that scored) | 0.5000 |" in markdown
    # the actDCF stays at the Bayes threshold of its costs, -ln(1 * 0.95 / (10 * 0.05)) = -ln 1.9, as ASVspoof 5's
    assert report["pooled"]["act_dcf_threshold"] == pytest.approx(-0.6418538861723947, abs=1e-15)
    # there every trial but the spoof at -1.0 is accepted: Pmiss 0, Pfa 1/2, actDCF = 10 * 0.05 * 0.5 / 0.5 = 0.5
    assert report["pooled"]["act_dcf"] == pytest.approx(0.5)


def test_sdd_eval_keeps_0_without_a_recorded_threshold(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _scored(tmp_path, None)
    report, markdown = _eval(tmp_path)
    # at 0: both bona fide accepted (TPR 1), spoof -1.0 rejected and 1.6 accepted (TNR 1/2)
    assert report["pooled"]["at_threshold"] == {
        "threshold": 0.0,
        "accuracy": 0.75,
        "tpr": 1.0,
        "tnr": 0.5,
        "balanced_accuracy": 0.75,
    }
    assert "threshold" not in report["inputs"]["model"]
    assert "| balanced accuracy at 0 | 0.7500 |" in markdown
