"""`sdd calibrate --threshold far=RATE | frr=RATE`: a deployment's own operating point (at most 1 % of spoofs accepted,
at most 5 % of bona fide rejected) on its labelled validation files, recorded with the rates it reaches there."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.errors import ConfigError
from sddkit.scoring.api import load_detector
from sddkit.scoring.calibrate import calibrate_on_protocol, operating_point
from sddkit.scoring.calibration import fit_calibration

# 10 spoofs and 10 bona fide with ties inside each class and across them (3 and 2 are scores of both)
SPOOF = [5.0, 3.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0]
BONA = [3.0, 4.0, 6.0, 2.0, 2.0, 1.5, 7.0, 8.0, 9.0, 10.0]


def _set():
    return np.array(SPOOF + BONA), np.array([0] * len(SPOOF) + [1] * len(BONA))


@pytest.mark.parametrize(
    ("rule", "rate", "threshold", "far", "frr"),
    [
        # far=0.2: 2 spoofs may be accepted, but the 2nd and 3rd highest tie at 3: accepting them accepts 3, so
        # everything at or below 3 is rejected; halfway from 3 to the next score above it (4)
        ("far", 0.2, 3.5, 0.1, 0.4),
        ("far", 0.1, 3.5, 0.1, 0.4),
        # far=0.3: 3 may be (5, 3, 3): the 4th highest spoof (2) and the bona fide 2, 2, 1.5 below are rejected
        ("far", 0.3, 2.5, 0.3, 0.3),
        # frr=0.2: 2 bona fide may be rejected, but the 2nd and 3rd lowest tie at 2: only 1.5 is; halfway to 1.5
        ("frr", 0.2, 1.75, 0.4, 0.1),
        ("frr", 0.1, 1.75, 0.4, 0.1),
        # frr=0.3: 1.5, 2, 2 rejected, the bona fide 3 (and the spoofs tied with it) accepted; halfway to 2
        ("frr", 0.3, 2.5, 0.3, 0.3),
    ],
)
def test_thresholds_and_rates_recomputed_by_hand_with_ties(rule, rate, threshold, far, frr):
    scores, labels = _set()
    op = operating_point(scores, labels, rule, rate)
    assert op.threshold == threshold
    assert (op.far, op.frr) == pytest.approx((far, frr))
    assert (op.n_spoof_accepted, op.n_bonafide_rejected) == (round(far * 10), round(frr * 10))
    assert (op.n_spoof, op.n_bonafide, op.rule, op.target_rate) == (10, 10, rule, rate)
    # no threshold keeping the constrained rate <= rate does better on the other one (every cut of these scores)
    cuts = np.unique(np.concatenate([scores, [scores.max() + 1]]))
    spoof, bona = scores[labels == 0], scores[labels == 1]
    rates = [(np.mean(spoof >= t), np.mean(bona < t)) for t in cuts]
    if rule == "far":
        assert min(r for a, r in rates if a <= rate) == pytest.approx(op.frr)
    else:
        assert min(a for a, r in rates if r <= rate) == pytest.approx(op.far)


def test_the_count_allowed_is_the_rate_as_meant_and_a_tie_at_the_top_rejects_every_file():
    # 0.29 * 100 is 28.999999999999996 in floats: 29 of 100 spoofs may be accepted, not 28
    spoof = np.arange(100.0)
    op = operating_point(np.concatenate([spoof, [200.0]]), [0] * 100 + [1], "far", 0.29)
    assert op.n_spoof_accepted == 29 and op.threshold == 70.5
    # the two highest spoofs tie above every bona fide file: far=0.1 of 10 spoofs accepts none, rejects every file
    scores = np.array([9.0, 9.0, *range(8), 1.0, 2.0])
    op = operating_point(scores, [0] * 10 + [1, 1], "far", 0.1)
    assert op.threshold > 9.0 and (op.far, op.frr) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("threshold", "words"),
    [
        ("far=0.001", ["200 spoof files", "steps of 1/200", "at least 1000 labelled spoof files", "at least 0.005"]),
        ("frr=0.01", ["50 bona fide files", "at least 100 labelled bona fide files", "at least 0.02"]),
        ("far=0", ["fraction in (0, 1)"]),
        ("far=1", ["fraction in (0, 1)", "far=0.01 for 1 %"]),
        ("frr=-0.1", ["fraction in (0, 1)"]),
        ("frr=nan", ["fraction in (0, 1)"]),
        ("far=abc", ["fraction in (0, 1)"]),
        ("far", ["fraction in (0, 1)"]),
        ("fra=0.1", ["far=RATE or frr=RATE", "'fra=0.1'"]),
    ],
)
def test_a_rate_the_files_cannot_resolve_or_outside_0_1_is_refused(threshold, words):
    scores = np.linspace(-3, 3, 250)
    labels = [0] * 200 + [1] * 50
    with pytest.raises(ConfigError) as err:
        calibrated_config_rule(scores, labels, threshold)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert "\n" not in str(err.value)


def calibrated_config_rule(scores, labels, threshold):
    """The API's refusal: the rule parsed as calibrate_on_protocol parses it, its rate checked on these files."""
    from sddkit.scoring.calibrate import check_rule, parse_threshold_rule

    check_rule(threshold, 0.5)
    rule, rate = parse_threshold_rule(threshold)
    return operating_point(scores, labels, rule, rate)


def _tied_files(tmp_path, tiny_stats):
    """A TinyStats model and a labelled CSV of 16 noise files; some files are byte copies of others under another
    name and label, so bona fide and spoof scores tie -> (model, protocol, paths, labels)."""
    model = tiny_stats(tmp_path / "model")
    det = load_detector(model)
    rng = np.random.default_rng(1)
    wav = tmp_path / "wav"
    wav.mkdir()
    paths, levels = [], []
    for i in range(12):
        path = wav / f"f{i:02d}.wav"
        sf.write(path, ((0.1, 0.2)[i % 2] * (0.5 + rng.random()) * rng.standard_normal(2400)).astype(np.float32), 16000)
        paths.append(path)
        levels.append(i % 2)
    raw = np.array([det.score_file(p).raw_score for p in paths])
    loud_higher = raw[1::2].mean() > raw[0::2].mean()
    labels = [int(lv == 1) if loud_higher else int(lv == 0) for lv in levels]
    for i in range(4):  # each class gets a copy of a file of the other class: a tie across the classes
        copy = wav / f"copy{i}.wav"
        shutil.copyfile(paths[i], copy)
        paths.append(copy)
        labels.append(1 - labels[i])
    protocol = tmp_path / "val.csv"
    protocol.write_text(
        "path,label\n" + "".join(f"{p},{'bonafide' if y else 'spoof'}\n" for p, y in zip(paths, labels))
    )
    return model, protocol, paths, np.array(labels)


@pytest.mark.parametrize("threshold", ["far=0.25", "frr=0.125"])
def test_sdd_score_of_the_calibrated_model_gives_the_recorded_rates(tmp_path, tiny_stats, capsys, threshold):
    model, protocol, paths, labels = _tied_files(tmp_path, tiny_stats)
    out = tmp_path / "calibrated"
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(out)]
    assert main([*argv, "--threshold", threshold]) == 0
    report = json.loads(capsys.readouterr().out)
    rule, rate = threshold.split("=")
    recorded = md.load_model_dir(out).metadata["calibrated"]
    assert recorded["threshold_rule"] == report["threshold_rule"] == rule
    assert recorded["operating_point"] == report["operating_point"]
    op = report["operating_point"]
    assert (op["rule"], op["target_rate"], op["n_spoof"], op["n_bonafide"]) == (rule, float(rate), 8, 8)

    # the threshold is the one the rule gives on the calibrated scores of these files, recomputed here
    det = load_detector(model)
    raw = np.array([det.score_file(p).raw_score for p in paths])
    llr = fit_calibration(raw, labels).apply(raw)
    expected = operating_point(llr, labels, rule, float(rate))
    assert report["threshold"] == pytest.approx(expected.threshold)
    assert (op["far"], op["frr"]) == pytest.approx((expected.far, expected.frr))
    assert op["far" if rule == "far" else "frr"] <= float(rate)

    # sdd score of the calibrated model decides these files with exactly the recorded rates
    scores_csv = tmp_path / "scores.csv"
    assert main(["score", "--model", str(out), "--out", str(scores_csv), "--quiet", str(protocol)]) == 0
    capsys.readouterr()
    decisions = {row["path"]: row["decision"] for row in csv.DictReader(scores_csv.open())}
    accepted = np.array([decisions[str(p)] == "bonafide" for p in paths])
    assert np.mean(accepted[labels == 0]) == op["far"]
    assert np.mean(~accepted[labels == 1]) == op["frr"]
    assert (int(accepted[labels == 0].sum()), int((~accepted[labels == 1]).sum())) == (
        op["n_spoof_accepted"],
        op["n_bonafide_rejected"],
    )


def test_an_unresolvable_rate_is_refused_before_any_file_is_scored(tmp_path, tiny_stats, capsys, monkeypatch):
    model, protocol, _, _ = _tied_files(tmp_path, tiny_stats)
    before = (model / md.CONFIG_NAME).read_bytes()
    scored = []
    original = type(load_detector(model)).score_file
    monkeypatch.setattr(type(load_detector(model)), "score_file", lambda *a, **k: scored.append(1) or original(*a, **k))
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol)]
    assert main([*argv, "--threshold", "far=0.1"]) == 2
    err = capsys.readouterr().err
    assert "8 spoof files" in err and "at least 10 labelled spoof files" in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--threshold", "frr=1.5"]) == 2
    assert "fraction in (0, 1)" in capsys.readouterr().err
    assert not scored and (model / md.CONFIG_NAME).read_bytes() == before
    # the Python API refuses it alike
    with pytest.raises(ConfigError, match="at least 10 labelled spoof files"):
        calibrate_on_protocol(model, protocol, threshold="far=0.1")
    assert not scored


def test_help_names_the_operating_point_forms(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "far=RATE" in text and "frr=RATE" in text and "operating_point" in text


def test_calibrate_model_dir_sets_and_records_the_operating_point(tmp_path, tiny_stats):
    from sddkit.scoring.inference import calibrate_model_dir, read_inference

    model = tiny_stats(tmp_path / "model", threshold=0.25)
    raw = np.array([0.1, 0.4, 0.4, 0.2, 0.5, 0.6, 0.4, 0.9, 0.3, 0.7])
    words = ["spoof"] * 5 + ["bonafide"] * 5
    cfg = calibrate_model_dir(model, raw, words, threshold="frr=0.2")
    llr = fit_calibration(raw, words).apply(raw)
    expected = operating_point(llr, words, "frr", 0.2)
    assert cfg.threshold == read_inference(model).threshold == expected.threshold
    record = md.load_model_dir(model).metadata["calibrated"]
    assert record["threshold_rule"] == "frr" and record["operating_point"] == expected.record()
    # bona fide 0.6, 0.4, 0.9, 0.3, 0.7: 1 of 5 may be rejected (0.3), so 0.4 and the spoofs tied with it accepted
    assert (expected.frr, expected.far) == (0.2, 0.6)
    # the default keeps the stored threshold, as before
    assert calibrate_model_dir(model, raw, words).threshold == expected.threshold
    assert md.load_model_dir(model).metadata["calibrated"]["threshold_rule"] == "keep"
    with pytest.raises(ConfigError, match="at least 10 labelled bona fide files"):
        calibrate_model_dir(model, raw, words, threshold="frr=0.1")


def test_an_operating_point_that_rejects_every_bona_fide_file_is_stored_with_a_warning(tmp_path, tiny_stats):
    model, _, paths, labels = _tied_files(tmp_path, tiny_stats)
    det = load_detector(model)
    paths, labels = paths[:12], list(labels[:12])
    top = paths[int(np.argmax([det.score_file(p).raw_score for p in paths]))]
    for i in range(2):  # two spoofs scored as the highest file: far=1/8 may accept one, and they tie
        copy = tmp_path / "wav" / f"top{i}.wav"
        shutil.copyfile(top, copy)
        paths.append(copy)
        labels.append(0)
    protocol = tmp_path / "top.csv"
    protocol.write_text(
        "path,label\n" + "".join(f"{p},{'bonafide' if y else 'spoof'}\n" for p, y in zip(paths, labels))
    )
    warned: list[str] = []
    report = calibrate_on_protocol(model, protocol, threshold="far=0.125", out=tmp_path / "out", warn=warned.append)
    op = report["operating_point"]
    assert (op["far"], op["frr"], op["n_spoof"]) == (0.0, 1.0, 8)
    assert any("rejects every bona fide file (FRR 1)" in w for w in warned), warned
