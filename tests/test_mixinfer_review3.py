"""Mixtures at inference and in model directories (review 3)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.detectors.model_dir import CONFIG_NAME, load_model_dir, save_model_dir
from sddkit.errors import CheckpointError
from sddkit.scoring.api import load_detector

EXPERT = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}}
INFERENCE = {"sample_rate": 16000, "window_samples": 8000}


def _expert(path, seed: int) -> str:
    torch.manual_seed(seed)
    det = build_detector(from_dict(DetectorConfig, EXPERT))
    return str(save_model_dir(path, det, model_config=EXPERT, inference=INFERENCE))


def test_a_mixture_saved_with_its_expert_dirs_loads_without_them(tmp_path):
    dirs = [_expert(tmp_path / "tortoise" / "best", 0), _expert(tmp_path / "yourtts" / "best", 1)]
    cfg = from_dict(MixtureConfig, {"expert_dirs": dirs, "gate": "classic"})
    mixture = build_mixture(cfg).eval()
    # the config as given (expert_dirs, no expert configs), as a Python user saves it
    d = save_model_dir(
        tmp_path / "mix", mixture, model_config=to_dict(cfg), architecture="mixture", inference=INFERENCE
    )
    stored = json.loads((d / CONFIG_NAME).read_text())
    assert stored["metadata"]["expert_dirs"] == dirs
    for expert in dirs:  # before: the mixture read its experts' configs from there at every load
        shutil.rmtree(expert)
    x = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        torch.testing.assert_close(load_model_dir(d).model(x).score, mixture(x).score)
    # before: its experts were reported as an empty list (/v1/model, and no expert_names in sdd score's record)
    experts = load_detector(d).info["components"]["experts"]
    assert [e["name"] for e in experts] == ["tortoise", "yourtts"]
    assert [e["backend"] for e in experts] == ["lcnn", "lcnn"]


def test_a_mixture_config_naming_a_moved_expert_dir_names_the_mixture(tmp_path):
    dirs = [_expert(tmp_path / "a", 0), _expert(tmp_path / "b", 1)]
    cfg = from_dict(MixtureConfig, {"expert_dirs": dirs, "gate": "average"})
    d = save_model_dir(tmp_path / "mix", build_mixture(cfg), model_config=to_dict(cfg), architecture="mixture")
    # a directory written before mixtures were saved self-contained: its config still names the expert dirs
    config = json.loads((d / CONFIG_NAME).read_text())
    config["model"] = to_dict(cfg)
    (d / CONFIG_NAME).write_text(json.dumps(config))
    shutil.move(dirs[1], tmp_path / "moved")
    # before: "<tmp>/b: no such model directory", not a word of the mixture being loaded
    with pytest.raises(CheckpointError, match=r"mix/config\.json: .*expert_dirs.*b: no such model directory"):
        load_model_dir(d)
