"""Third review of sdd robustness: a single-class protocol, the trials ΔEER and n_failed are counted on, the note of
a condition that scored nothing, and the units of the report's columns."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scoring_support import save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.evaluation import robustness
from sddkit.evaluation.robustness import JOURNAL_NAME, RobustnessConfig, RobustnessResult, summarize

SR = 16000


def test_a_single_class_protocol_is_refused_before_any_file_is_scored(tmp_path, monkeypatch, capsys):
    """A folder of spoofs only was decoded, degraded and scored under every condition (hours with 41 conditions)
    before the run said it needs both classes, and left a journal behind; it is refused up front now."""
    model = save_tiny_lcnn(tmp_path / "model")
    data = tmp_path / "data" / "spoof"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(data / f"u{i}.wav", (0.05 * rng.standard_normal(9000)).astype(np.float32), SR)
    processed = []
    real = robustness._process
    monkeypatch.setattr(robustness, "_process", lambda *a, **k: processed.append(a[2]) or real(*a, **k))
    out = tmp_path / "out"
    argv = ["robustness", "--model", str(model), "--protocol", str(tmp_path / "data"), "--out", str(out)]
    assert main([*argv, "--conditions", "mulaw", "--workers", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "only spoof utterances (3)" in err and "needs both bona fide and spoof" in err
    assert processed == [] and not (out / JOURNAL_NAME).exists()


def _result(scores: dict[str, np.ndarray], labels: np.ndarray, failures: list[str]) -> RobustnessResult:
    conditions = [c for c in scores if c != "clean"] or ["clean"]
    return RobustnessResult(
        config=RobustnessConfig(conditions=conditions, mode="all", workers=0),
        threshold=0.0,
        utt_ids=[f"u{i}" for i in range(len(labels))],
        labels=labels,
        scores=scores,
        failures=failures,
        condition_errors={},
        rows=[],
    )


def test_eer_delta_and_n_failed_when_the_clean_scoring_of_a_file_failed():
    """The model gave a non-finite score on the clean audio of u2 (a condition error of ``clean``) but scored its
    noisy version. n_failed was measured against "files with a clean score", so the clean row said 0 failed; and
    ΔEER compared the noise EER over all 6 trials with the clean EER over 5: +33 points for a condition that
    scores every file the clean audio scored exactly as clean. Both now count on the trials both scored."""
    labels = np.array([1, 1, 1, 0, 0, 0, 1])
    clean = np.array([3.0, 2.0, np.nan, 1.0, 0.0, -2.0, np.nan])  # u6 could not be decoded at all
    noise = np.array([3.0, 2.0, -5.0, 1.0, 0.0, -2.0, np.nan])
    rows = {r["condition"]: r for r in summarize(_result({"clean": clean, "noise_white_10db": noise}, labels, ["u6"]))}
    assert rows["clean"]["n"] == 5 and rows["clean"]["n_failed"] == 1  # was 0: u2's clean trial failed
    assert rows["noise_white_10db"]["n"] == 6 and rows["noise_white_10db"]["n_failed"] == 0
    assert rows["noise_white_10db"]["eer"] > 0.0  # its own trials, u2 included
    assert rows["noise_white_10db"]["eer_delta"] == pytest.approx(0.0)  # was +33.3


def test_a_condition_that_scored_no_file_says_so():
    labels = np.array([1, 1, 0, 0])
    clean = np.array([2.0, 1.0, -1.0, -2.0])
    row = summarize(_result({"clean": clean, "mulaw": np.full(4, np.nan)}, labels, []))[1]
    assert row["n"] == 0 and row["n_failed"] == 4 and row["eer"] is None and row["eer_delta"] is None
    assert row["note"] == "no trial could be scored"  # was "needs both bona fide and spoof trials"


def test_the_report_names_the_unit_of_every_metric_column():
    labels = np.array([1, 1, 0, 0])
    result = _result({"clean": np.array([2.0, 1.0, -1.0, -2.0])}, labels, [])
    result.rows = summarize(result)
    units = result.to_dict()["units"]
    assert units["eer"] == "percent" and units["eer_delta"] == "percentage points"
    assert units["balanced_accuracy"] == units["tpr"] == units["tnr"] == "fraction"
