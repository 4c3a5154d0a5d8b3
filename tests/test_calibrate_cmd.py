"""`sdd calibrate`: a model fresh from training (identity calibration) fitted on labelled files, as the bundled
model was on sddbench val (scripts/finalize_default_model.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.metrics.det import eer
from sddkit.scoring.api import load_detector
from sddkit.scoring.calibrate import margin_threshold
from sddkit.scoring.calibration import fit_calibration
from sddkit.scoring.inference import read_inference


def _files(tmp_path, tiny_stats, n: int = 12) -> tuple:
    """A TinyStats model and a labelled CSV of noise files at several levels; the label goes to the level whose
    raw score is higher on average (what a trained model learnt), with overlap, so the fit has a positive slope."""
    model = tiny_stats(tmp_path / "model")
    det = load_detector(model)
    rng = np.random.default_rng(0)
    paths, levels = [], []
    for i in range(n):
        level = (0.1, 0.2)[i % 2] * (0.5 + rng.random())  # the two levels overlap
        path = tmp_path / "wav" / f"f{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (level * rng.standard_normal(2400)).astype(np.float32), 16000)  # 150 ms
        paths.append(path)
        levels.append(i % 2)
    raw = np.array([det.score_file(p).raw_score for p in paths])
    loud_higher = raw[1::2].mean() > raw[0::2].mean()
    labels = [int(lv == 1) if loud_higher else int(lv == 0) for lv in levels]
    protocol = tmp_path / "val.csv"
    rows = [f"{p},{'bonafide' if y else 'spoof'}" for p, y in zip(paths, labels)]
    protocol.write_text("path,label\n" + "\n".join(rows) + "\n")
    return model, protocol, raw, np.array(labels)


def test_a_model_is_calibrated_in_place_and_scores_llrs_after(tmp_path, tiny_stats, capsys):
    model, protocol, raw, labels = _files(tmp_path, tiny_stats)
    digest = md.load_model_dir(model).weights_digest
    assert read_inference(model).calibration.a == 1.0  # the identity, as sdd train leaves it

    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol)]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = fit_calibration(raw, labels, prior=0.5)
    cal = read_inference(model).calibration
    assert (cal.a, cal.b) == pytest.approx((expected.a, expected.b)) and cal.a > 0
    assert report["calibration"] == pytest.approx({"a": cal.a, "b": cal.b})
    assert (report["n_bonafide"], report["n_spoof"], report["threshold_rule"]) == (6, 6, "eer")
    llr = expected.apply(raw)
    # the threshold is where the two error rates meet on these files, kept off any file's own score
    threshold = read_inference(model).threshold
    point = eer(labels, llr)
    assert threshold == report["threshold"] == margin_threshold(llr, point.threshold)
    assert np.array_equal(llr >= threshold, llr >= point.threshold) and not np.any(llr == threshold)
    assert report["eer"] == pytest.approx(point.eer)
    # the weights are untouched; the model's scores are now a * raw + b, its metadata says on what
    loaded = md.load_model_dir(model)
    assert loaded.weights_digest == digest
    assert loaded.metadata["calibrated"]["protocol"] == str(protocol.resolve())
    path = protocol.read_text().splitlines()[1].split(",")[0]
    result = load_detector(model).score_file(path)
    assert result.score == pytest.approx(cal.a * result.raw_score + cal.b)


def test_out_writes_a_calibrated_copy_and_leaves_the_model_as_it_was(tmp_path, tiny_stats, capsys):
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    before = (model / md.CONFIG_NAME).read_bytes()
    out = tmp_path / "calibrated"
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(out)]
    assert main([*argv, "--threshold", "bayes", "--prior", "0.2"]) == 0
    assert (model / md.CONFIG_NAME).read_bytes() == before
    assert md.load_model_dir(out).weights_digest == md.load_model_dir(model).weights_digest
    assert read_inference(out).threshold == pytest.approx(-math.log(0.2 / 0.8))  # the Bayes decision at 0.2
    assert main([*argv, "--threshold", "keep"]) == 0
    assert read_inference(out).threshold == read_inference(model).threshold


def test_files_of_one_class_or_an_unreadable_file_are_refused_and_nothing_is_written(tmp_path, tiny_stats, capsys):
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    before = (model / md.CONFIG_NAME).read_bytes()
    lines = protocol.read_text().splitlines()
    spoof_only = tmp_path / "spoof.csv"
    spoof_only.write_text("\n".join([lines[0], *[row for row in lines[1:] if row.endswith("spoof")]]) + "\n")
    assert main(["calibrate", "--model", str(model), "--protocol", str(spoof_only)]) == 2
    assert "0 bona fide and 6 spoof files; a calibration needs both classes" in capsys.readouterr().err
    broken = tmp_path / "wav" / "broken.wav"
    broken.write_bytes(b"not audio at all" * 8)
    with_broken = tmp_path / "broken.csv"
    with_broken.write_text(protocol.read_text() + f"{broken},bonafide\n")
    assert main(["calibrate", "--model", str(model), "--protocol", str(with_broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sdd calibrate: error: {broken} cannot be scored") and "leave it out" in err
    assert (model / md.CONFIG_NAME).read_bytes() == before


def test_max_duration_s_refuses_a_longer_file_naming_the_option_and_0_lifts_the_limit(tmp_path, tiny_stats, capsys):
    model, protocol, raw, labels = _files(tmp_path, tiny_stats)  # 150 ms files
    config = (model / "config.json").read_text()
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--max-duration-s", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "f00.wav" in err and "--max-duration-s sets the limit" in err
    assert (model / "config.json").read_text() == config  # nothing written
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--max-duration-s", "0"]) == 0
    expected = fit_calibration(raw, labels, prior=0.5)
    assert json.loads(capsys.readouterr().out)["calibration"] == pytest.approx({"a": expected.a, "b": expected.b})
    # a negative limit is a usage error, not "no limit"
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--max-duration-s", "-1"]) == 2
    assert "--max-duration-s" in capsys.readouterr().err
