"""Review calibpath27: a practitioner calibrates a trained model (sdd calibrate), scores new files, fuses several
systems' scores (sdd fuse, fitted on val, applied later with --apply), and calibrates the model again.

- ``sdd fuse --apply`` checked that a system's new scores came from the weights it was fitted on, not that they came
  from the same calibration: the same model calibrated again since scores the same file otherwise, and its
  ``score`` column was fused with the weight of the earlier calibration's scores, silently (the fused scores of the
  same files moved, where the docs promise the same float as at the fit).
- Raw scores that differ only by float rounding (a model trained to a constant) were fitted as if they ranked the
  files: a slope that came out positive mapped rounding noise to whole LLR units, and one that came out negative was
  refused as "a few extreme scores on the wrong side outweigh the rest", of scores that all read the same.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from calibration_support import noise_protocol
from cli_support import one_line_error

from sddkit.cli.main import main
from sddkit.errors import ProtocolError
from sddkit.scoring.calibration import fit_calibration


def _fused(path) -> dict[str, float]:
    lines = path.read_text().splitlines()
    return {row.split(",")[0]: float(row.split(",")[1]) for row in lines[1:]}


def test_apply_refuses_scores_of_the_same_model_calibrated_again_since_the_fit(tmp_path, tiny_stats, capsys):
    model = tiny_stats(tmp_path / "model", seed=0)
    other = tiny_stats(tmp_path / "other", seed=1)
    protocol, _, _ = noise_protocol(tmp_path, model)
    # the fusion's protocol: the same files, as val trials
    rows = protocol.read_text().splitlines()
    fit_protocol = tmp_path / "fit.csv"
    fit_protocol.write_text("path,label,partition\n" + "".join(f"{r},val\n" for r in rows[1:]))
    audio = str(tmp_path / "wav")
    calibrate = ["calibrate", "--model", str(model), "--protocol", str(protocol)]
    assert main([*calibrate, "--threshold", "bayes"]) == 0
    assert main(["score", audio, "--model", str(model), "--out", str(tmp_path / "a.csv")]) == 0
    assert main(["score", audio, "--model", str(other), "--out", str(tmp_path / "b.csv")]) == 0
    fused = tmp_path / "fused.csv"
    scores = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    assert main(["fuse", "--protocol", str(fit_protocol), "--scores", *scores, "--out", str(fused)]) == 0
    record = json.loads((tmp_path / "fused.csv.fusion.json").read_text())
    config = json.loads((model / "config.json").read_text())
    calibration = config["inference"]["calibration"]
    # each system's record says which calibration its scores were of
    assert record["systems"][0]["calibration"] == {"a": calibration["a"], "b": calibration["b"]}
    assert record["systems"][1]["calibration"] == {"a": 1.0, "b": 0.0}  # a model never calibrated
    # the same files, scored with the same calibration: applied, the fit's scores
    again = tmp_path / "again.csv"
    applied = ["fuse", "--apply", str(tmp_path / "fused.csv.fusion.json")]
    assert main([*applied, "--scores", *scores, "--out", str(again)]) == 0
    assert _fused(again) == _fused(fused)
    # the model calibrated again (another prior): the same weights score the same files otherwise
    capsys.readouterr()
    assert main([*calibrate, "--prior", "0.2"]) == 0
    assert json.loads((model / "config.json").read_text())["inference"]["calibration"]["a"] != calibration["a"]
    assert main(["score", audio, "--model", str(model), "--out", str(tmp_path / "a2.csv")]) == 0
    capsys.readouterr()
    new = [str(tmp_path / "a2.csv"), str(tmp_path / "b.csv")]
    assert main([*applied, "--scores", *new, "--out", str(tmp_path / "new.csv")]) == 2
    err = one_line_error(capsys, "fuse")
    assert "(system 1, 'a'): its score column is of its model calibrated as" in err
    assert f"a={calibration['a']:.6g}" in err and "--column raw_score" in err
    assert not (tmp_path / "new.csv").exists()
    # a raw column is before any calibration: a fusion fitted on raw_score applies to the recalibrated model's
    raw_fused = tmp_path / "raw.csv"
    raw_fit = ["fuse", "--protocol", str(fit_protocol), "--scores", *scores, "--column", "raw_score"]
    assert main([*raw_fit, "--out", str(raw_fused)]) == 0
    raw_applied = ["fuse", "--apply", str(tmp_path / "raw.csv.fusion.json"), "--scores", *new]
    assert main([*raw_applied, "--out", str(tmp_path / "raw_new.csv")]) == 0
    assert _fused(tmp_path / "raw_new.csv") == _fused(raw_fused)


def _rounding_scores(shift: float) -> tuple[np.ndarray, np.ndarray]:
    # a model trained to a constant: every raw score -0.0141872 but for float32 rounding in the 6th-7th digit
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 20)
    noise = rng.standard_normal(40) + shift * labels
    return -0.0141872 + 1e-7 * noise, labels


@pytest.mark.parametrize("shift", [0.5, -0.5])
def test_scores_that_differ_only_by_float_rounding_are_refused_as_such(shift):
    # shift 0.5: bona fide a hair higher, the slope came out positive, ~1e7, and the stored calibration turned the
    # rounding of another machine or of the ONNX export (1e-6) into ~10 LLR units; -0.5: refused as outliers
    raw, labels = _rounding_scores(shift)
    with pytest.raises(ProtocolError, match="all the same but for float rounding") as info:
        fit_calibration(raw, labels)
    assert "outweigh" not in str(info.value) and "trained to a constant" in str(info.value)


def test_a_narrow_but_real_spread_is_still_calibrated():
    # 1e-3 of their size: a ranking, not rounding; the fit is the one of the same scores moved to 0
    labels = np.repeat([1, 0], 20)
    rng = np.random.default_rng(1)
    raw = 5.0 + 0.005 * (rng.standard_normal(40) + labels)
    cal = fit_calibration(raw, labels)
    moved = fit_calibration(raw - 5.0, labels)
    assert cal.a == pytest.approx(moved.a, rel=1e-6) and cal.a > 0


def test_calibrated_in_place_a_model_card_is_said_to_describe_the_calibration_replaced(tmp_path, tiny_stats, capsys):
    # a copy of the bundled model calibrated in place: its MODEL_CARD.md still gives the old llr = a * raw + b and
    # threshold, and its figures at that threshold; the --out copy is given no card for that reason, with a note
    model = tiny_stats(tmp_path / "model")
    card = model / "MODEL_CARD.md"
    card.write_text("llr = 1.3824 * raw + 0.0892; the threshold 0.7315\n")
    protocol, _, _ = noise_protocol(tmp_path, model)
    capsys.readouterr()
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol)]) == 0
    err = capsys.readouterr().err
    assert f"note: {card} describes the calibration and threshold {model} held before this one" in err
    assert card.read_text() == "llr = 1.3824 * raw + 0.0892; the threshold 0.7315\n"  # left as it was
    # a model without a card: no note
    bare = tiny_stats(tmp_path / "bare")
    assert main(["calibrate", "--model", str(bare), "--protocol", str(protocol)]) == 0
    assert "MODEL_CARD" not in capsys.readouterr().err
