"""Review 11 of calibration and decisions (calib11)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import sddkit
from sddkit.cli.eval_cmd import evaluated_inputs
from sddkit.cli.main import build_parser
from sddkit.data.table import UtteranceTable
from sddkit.documents import run_record_path
from sddkit.errors import ProtocolError
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.scoring.calibration import fit_calibration


def _commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_every_sdd_command_the_package_docs_name_exists():
    # the mixture docstring sent the reader to `sdd calibrate`, a command that did not exist then
    commands = _commands()
    named = {}
    for path in Path(sddkit.__file__).parent.rglob("*.py"):
        for name in re.findall(r"``sdd ([a-z][a-z-]*)``", path.read_text(encoding="utf-8")):
            named.setdefault(name, path.name)
    missing = {name: where for name, where in named.items() if name not in commands}
    assert not missing, f"docs name sdd commands that do not exist: {missing}"


def _inputs_and_warnings(tmp_path, calibration):

    labels = ["bonafide", "bonafide", "spoof", "spoof"]
    table = UtteranceTable.from_records([{"utt_id": f"u{i}", "label": k} for i, k in enumerate(labels)])
    (tmp_path / "scores.csv").write_text("path,score\n")
    (tmp_path / "labels.csv").write_text("path,label\n")
    record = {"model": "m", "weights_digest": "ab" * 32, "inference": {"threshold": 0.0, "calibration": calibration}}
    run_record_path(tmp_path / "scores.csv").write_text(json.dumps(record))
    report = evaluate(table, np.array([9.2, 4.3, -7.8, 5.1]), EvalConfig(bootstrap=0))
    report.inputs = evaluated_inputs(str(tmp_path / "scores.csv"), str(tmp_path / "labels.csv"), None, None)
    return report.inputs, report.warnings


def test_eval_warns_that_an_uncalibrated_models_scores_are_no_llrs(tmp_path):
    # a model fresh from `sdd train` scores raw logit differences; sdd eval reported their actDCF and Cllr as
    # if they were LLRs, without a word
    identity = {"a": 1.0, "b": 0.0, "prior": None, "n_bonafide": 0, "n_spoof": 0}
    inputs, notes = _inputs_and_warnings(tmp_path, identity)
    assert inputs["model"]["calibration"] == identity
    assert any("carries no calibration" in note and "actDCF" in note for note in notes)


def test_eval_does_not_warn_for_a_calibrated_or_unrecorded_model(tmp_path):
    fitted = {"a": 0.7, "b": -0.2, "prior": 0.5, "n_bonafide": 10, "n_spoof": 30}
    assert not any("calibration" in note for note in _inputs_and_warnings(tmp_path, fitted)[1])
    hand_set = {"a": 1.0, "b": -0.5, "prior": None, "n_bonafide": 0, "n_spoof": 0}
    assert not any("calibration" in note for note in _inputs_and_warnings(tmp_path, hand_set)[1])


def test_non_finite_calibration_scores_are_counted_and_located():
    # was "calibration scores must be finite (found NaN or inf)": which of thousands of val scores, and how many?
    scores = [0.5, float("nan"), 1.0, -1.0, float("inf"), 2.0]
    with pytest.raises(ProtocolError, match=r"finite: 2 of 6 are NaN or inf \(at index 1, 4\)"):
        fit_calibration(scores, [1, 1, 1, 0, 0, 0])
