"""Review mixture17: mixtures over expert directories that record a calibration, and the refusal of experts recorded
at different sample rates."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from test_train_support import one_thread, write_corpus  # noqa: F401  (autouse fixture)

from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.errors import ConfigError
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

EXPERT = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}}


def _experts(tmp_path, calibrations):
    dirs = []
    for i, cal in enumerate(calibrations):
        torch.manual_seed(i)
        det = build_detector(from_dict(DetectorConfig, EXPERT))
        inference = {"sample_rate": 16000, "window_samples": 4000}
        if cal is not None:
            inference["calibration"] = {"a": cal[0], "b": cal[1], "prior": 0.5, "n_bonafide": 4, "n_spoof": 8}
        dirs.append(str(save_model_dir(tmp_path / f"expert{i}", det, model_config=EXPERT, inference=inference)))
    return dirs


def _recipe(tmp_path, dirs) -> TrainRecipe:
    csv = write_corpus(tmp_path / "audio", n=6, samples=4000)
    spec = {"protocol": str(csv), "format": "utterance_table"}
    return from_dict(
        TrainRecipe,
        {
            "seed": 0,
            "mixture": {"expert_dirs": dirs, "gate": "average"},
            "data": {"val": spec, "crop_samples": 4000, "batch_size": 4},
            "trainer": {"out_dir": str(tmp_path / "run"), "progress": False, "device": "cpu"},
        },
    )


def test_a_calibrated_expert_is_named_in_a_warning_and_mixed_uncalibrated(tmp_path, caplog):
    """The mixture mixes its experts' raw probabilities (as documented); an expert directory that records a
    calibration, e.g. after sdd calibrate, was used so without a word, so the user took the calibrated scores the
    expert gives alone to be what the average ensemble averaged."""
    dirs = _experts(tmp_path, [(2.5, -1.25), None])
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        Trainer(_recipe(tmp_path, dirs)).fit()
    notes = [r.getMessage() for r in caplog.records if "calibration" in r.getMessage()]
    assert len(notes) == 1, [r.getMessage() for r in caplog.records]
    assert f"mixture.expert_dirs[0] {dirs[0]} (llr = 2.5 * raw - 1.25)" in notes[0]
    assert "does not apply" in notes[0] and "sdd calibrate" in notes[0] and "expert_dirs[1]" not in notes[0]
    # what the warning says: the exported average is the mean of the experts' raw probabilities
    x = torch.randn(3, 4000, generator=torch.Generator().manual_seed(1))
    experts = [load_model_dir(d).model.eval() for d in dirs]
    with torch.no_grad():
        raw = torch.stack([e(x).logits.log_softmax(-1).exp() for e in experts]).mean(0)
        got = load_model_dir(tmp_path / "run" / "best").model.eval()(x).logits.exp()
    torch.testing.assert_close(got, raw, atol=1e-6, rtol=1e-5)
    # the mixture is a model of its own: no expert's calibration is carried over to it
    inference = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["inference"]
    assert "calibration" not in inference


def test_uncalibrated_experts_give_no_calibration_warning(tmp_path, caplog):
    dirs = _experts(tmp_path, [None, None])
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        Trainer(_recipe(tmp_path, dirs)).fit()
    assert not [r for r in caplog.records if "calibration" in r.getMessage()]


def test_experts_of_different_sample_rates_are_refused_saying_what_to_do(tmp_path):
    dirs = _experts(tmp_path, [None, None])
    cfg_path = tmp_path / "expert1" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["inference"]["sample_rate"] = 8000
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as info:
        build_mixture(MixtureConfig(expert_dirs=dirs, gate="average"))
    message = str(info.value)
    assert "\n" not in message and f"{dirs[1]} (8000 Hz)" in message
    assert "give experts trained and recorded at 16000 Hz" in message
