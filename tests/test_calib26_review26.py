"""Review 26 of score calibration (sdd calibrate --out, scoring/calibrate.py): runs that write the same new folder."""

from __future__ import annotations

import json
import shutil

import pytest
from calibration_support import noise_protocol, while_scoring

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.scoring.api import load_detector
from sddkit.scoring.calibration import fit_calibration


def test_a_run_that_fails_to_write_keeps_the_model_another_run_finished_in_the_same_new_out(
    tmp_path, tiny_stats, monkeypatch, capsys
):
    # two `sdd calibrate --out X` into the same new X: the second one stopped while copying the weights (a full disk,
    # Ctrl-C) removed X's weights and config, the finished calibrated model of the first, as files of a folder it made
    model = tiny_stats(tmp_path / "model")
    protocol, raw, labels = noise_protocol(tmp_path, model)
    out = tmp_path / "calibrated"
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(out)]

    def first_run_finishes_then_the_disk_fills():
        assert main([*argv, "--threshold", "bayes"]) == 0

        def full(src, dst, *args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(shutil, "copyfileobj", full)

    while_scoring(monkeypatch, first_run_finishes_then_the_disk_fills)
    assert main(argv) == 2
    assert "cannot write the calibrated model (No space left on device)" in capsys.readouterr().err
    # the first run's copy is whole and scores with its own calibration
    config = json.loads((out / md.CONFIG_NAME).read_text())
    assert config["metadata"]["calibrated"]["threshold_rule"] == "bayes"
    assert config["inference"]["calibration"]["a"] == pytest.approx(fit_calibration(raw, labels).a)
    assert md.load_model_dir(out).weights_digest == md.load_model_dir(model).weights_digest
    path = protocol.read_text().splitlines()[1].split(",")[0]
    assert load_detector(out).score_file(path).score == pytest.approx(
        config["inference"]["calibration"]["a"] * load_detector(model).score_file(path).raw_score
        + config["inference"]["calibration"]["b"]
    )


def test_another_model_written_into_out_while_the_files_are_scored_is_not_replaced(
    tmp_path, tiny_stats, monkeypatch, capsys
):
    # --out was new (or empty) when checked, and another model (other weights) was exported there while the files
    # were scored: the calibrated copy replaced its weights, the check before the scoring refuses exactly that
    model = tiny_stats(tmp_path / "model", seed=0)
    protocol, _, _ = noise_protocol(tmp_path, model)
    out = tmp_path / "calibrated"
    while_scoring(monkeypatch, lambda: tiny_stats(out, seed=1))
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(out)]) == 2
    assert f"{out} holds another model" in capsys.readouterr().err
    other = md.load_model_dir(out)
    assert other.weights_digest != md.load_model_dir(model).weights_digest
    assert "calibrated" not in (other.metadata or {})


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_calibrated_copy_calibrated_again_keeps_its_earlier_record_superseded(
    tmp_path, tiny_stats, monkeypatch, capsys, concurrent
):
    # the copy's config was rebuilt from the source's, so the record of the calibration the copy held (an earlier
    # `sdd calibrate --out` into it, or a second run that finished there while this one scored) vanished without a
    # trace, where a model calibrated in place keeps it in superseded_calibrations
    model = tiny_stats(tmp_path / "model")
    protocol, _, _ = noise_protocol(tmp_path, model)
    out = tmp_path / "calibrated"
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(out)]
    if concurrent:
        while_scoring(monkeypatch, lambda: main([*argv, "--threshold", "bayes"]))
    else:
        assert main([*argv, "--threshold", "bayes"]) == 0
    assert main(argv) == 0
    metadata = json.loads((out / md.CONFIG_NAME).read_text())["metadata"]
    assert metadata["calibrated"]["threshold_rule"] == "eer"
    superseded = metadata["superseded_calibrations"]
    assert [(r["key"], r["threshold_rule"]) for r in superseded] == [("calibrated", "bayes")]
    assert superseded[0]["copied_from"] == str(model.resolve())
    # the source, never calibrated itself, has no record of either
    assert "calibrated" not in (md.load_model_dir(model).metadata or {})


def test_a_record_the_copy_took_from_its_source_is_kept_once(tmp_path, tiny_stats, capsys):
    model = tiny_stats(tmp_path / "model")
    protocol, _, _ = noise_protocol(tmp_path, model)
    out = tmp_path / "calibrated"
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol)]
    assert main([*argv, "--threshold", "keep"]) == 0  # the source calibrated in place first
    assert main([*argv, "--out", str(out), "--threshold", "bayes"]) == 0
    assert main([*argv, "--out", str(out)]) == 0
    metadata = json.loads((out / md.CONFIG_NAME).read_text())["metadata"]
    rules = [r["threshold_rule"] for r in metadata["superseded_calibrations"]]
    assert (metadata["calibrated"]["threshold_rule"], rules) == ("eer", ["bayes", "keep"])
