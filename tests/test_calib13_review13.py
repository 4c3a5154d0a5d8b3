"""Review 13 of `sdd calibrate` (calib13): no --out folder left by a failed run, one calibration record in force
(the bundled model's metadata.val_calibrated superseded), where a copy's weights came from, and per-window scores
under the file's calibration."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_calibrate_cmd import _files

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.scoring import api as scoring_api
from sddkit.scoring.calibrate import calibrate_on_protocol
from sddkit.scoring.inference import read_inference
from sddkit.service.app import create_app

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "src" / "sddkit" / "assets" / "default_model"


def _with_broken_file(tmp_path: Path, protocol: Path) -> Path:
    broken = tmp_path / "wav" / "broken.wav"
    broken.write_bytes(b"not audio at all" * 8)
    with_broken = tmp_path / "broken.csv"
    with_broken.write_text(protocol.read_text() + f"{broken},bonafide\n")
    return with_broken


def test_a_run_that_fails_leaves_no_out_folder_it_made_and_an_existing_one_as_it_was(
    tmp_path, tiny_stats, capsys, monkeypatch
):
    # the --out check (why_unwritable) made the folders before the files were scored: an unreadable file left
    # them behind, empty
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    broken = _with_broken_file(tmp_path, protocol)
    new = tmp_path / "new" / "deeper"
    argv = ["calibrate", "--model", str(model), "--protocol", str(broken)]
    assert main([*argv, "--out", str(new)]) == 2
    assert "cannot be scored" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main([*argv, "--out", str(existing)]) == 2
    assert existing.is_dir() and not any(existing.iterdir())

    # Ctrl-C while the files are scored
    loaded = scoring_api.load_detector

    def interrupted(*args, **kwargs):
        detector = loaded(*args, **kwargs)

        def stop(path, **kwargs):
            raise KeyboardInterrupt

        detector.score_file = stop
        return detector

    with monkeypatch.context() as m:
        m.setattr(scoring_api, "load_detector", interrupted)
        with pytest.raises(KeyboardInterrupt):
            calibrate_on_protocol(model, protocol, out=new)
    assert not (tmp_path / "new").exists()

    # a write that fails after the weights were copied: the copy goes with the folder made for it
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(md, "atomic_write_bytes", full)
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(new)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def _bundled_val(tmp_path: Path, tiny_stats) -> Path:
    """Six of _files's noise files labelled for the bundled model: by the rank of its raw score, with overlap."""
    _, protocol, _, _ = _files(tmp_path, tiny_stats, n=6)
    paths = [row.split(",")[0] for row in protocol.read_text().splitlines()[1:]]
    detector = scoring_api.load_detector(DEFAULT_MODEL)
    raw = [detector.score_file(p).raw_score for p in paths]
    labels = np.empty(6, dtype=int)
    labels[np.argsort(raw)] = [0, 0, 1, 0, 1, 1]
    rows = [f"{p},{'bonafide' if y else 'spoof'}" for p, y in zip(paths, labels)]
    protocol.write_text("path,label\n" + "\n".join(rows) + "\n")
    return protocol


def test_recalibrating_the_bundled_model_supersedes_its_val_calibrated_record(tmp_path, tiny_stats, capsys):
    protocol = _bundled_val(tmp_path, tiny_stats)
    bundled = {p.name: p.read_bytes() for p in DEFAULT_MODEL.iterdir()}
    original = json.loads(bundled["config.json"])["metadata"]
    out = tmp_path / "recalibrated"
    argv = ["calibrate", "--model", str(DEFAULT_MODEL), "--protocol", str(protocol), "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert {p.name: p.read_bytes() for p in DEFAULT_MODEL.iterdir()} == bundled  # the bundled model as it was

    metadata = md.load_model_dir(out).metadata
    # one calibration in force: the config held two before (val_calibrated stale beside calibrated)
    assert "val_calibrated" not in metadata
    assert metadata["superseded_calibrations"] == [{"key": "val_calibrated", **original["val_calibrated"]}]
    assert metadata["calibrated"] == {k: v for k, v in report.items() if k not in ("model", "calibration", "threshold")}
    assert metadata["seed"] == original["seed"]  # the training provenance stays
    # no card in the copy, but where its weights (and their card) came from, in the metadata and a note
    assert not (out / "MODEL_CARD.md").exists()
    assert metadata["calibrated"]["copied_from"] == report["copied_from"] == str(DEFAULT_MODEL.resolve())
    assert f"note: {DEFAULT_MODEL / 'MODEL_CARD.md'} is not copied to {out}" in captured.err
    # GET /v1/model says the same
    with TestClient(create_app(out)) as client:
        served = client.get("/v1/model").json()
    assert served["metadata"] == json.loads(json.dumps(metadata))
    assert served["calibration"]["a"] == pytest.approx(report["calibration"]["a"])

    # again, in place: the first sdd calibrate record is superseded too, newest first; nothing is copied
    assert main(["calibrate", "--model", str(out), "--protocol", str(protocol), "--threshold", "keep"]) == 0
    report = json.loads(capsys.readouterr().out)
    again = md.load_model_dir(out).metadata
    assert "copied_from" not in again["calibrated"] and "copied_from" not in report
    assert [r["key"] for r in again["superseded_calibrations"]] == ["calibrated", "val_calibrated"]
    assert again["superseded_calibrations"][0] == {"key": "calibrated", **metadata["calibrated"]}


def test_record_calibration_keeps_every_earlier_record_once():
    from sddkit.scoring.calibrate import record_calibration  # new in review 13: imported here, not for the module

    first = record_calibration(None, "calibrated", {"eer": 0.1})
    assert first == {"calibrated": {"eer": 0.1}}  # a model never calibrated: no superseded list
    second = record_calibration(first, "val_calibrated", {"eer": 0.2})
    third = record_calibration(second, "calibrated", {"eer": 0.3})
    assert third == {
        "calibrated": {"eer": 0.3},
        "superseded_calibrations": [{"key": "val_calibrated", "eer": 0.2}, {"key": "calibrated", "eer": 0.1}],
    }
    assert first == {"calibrated": {"eer": 0.1}}  # the metadata given is not changed


def test_window_scores_are_the_file_calibration_applied_to_each_window(tmp_path, tiny_stats, capsys):
    # a guard (the behaviour was right already): README and ScoreResult now say so
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    out = tmp_path / "calibrated"
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(out)]) == 0
    cal = read_inference(out).calibration
    assert read_inference(model).calibration.a == 1.0 and read_inference(model).calibration.b == 0.0
    path = protocol.read_text().splitlines()[1].split(",")[0]
    raw = scoring_api.load_detector(model).score_file(path)  # identity calibration: raw window scores
    calibrated = scoring_api.load_detector(out).score_file(path)
    assert calibrated.n_windows == raw.n_windows > 1
    assert calibrated.window_scores == pytest.approx([cal.a * v + cal.b for v in raw.window_scores])
    assert calibrated.score == pytest.approx(np.mean(calibrated.window_scores))  # mean aggregation
