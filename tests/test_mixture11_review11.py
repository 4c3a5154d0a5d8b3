"""Mixtures of whole detectors: how a mixture names the expert directory it cannot use (review 11)."""

from __future__ import annotations

import pytest
import torch
from test_train_support import one_thread  # noqa: F401  (autouse fixture: one intra-op thread)

from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.detectors.model_dir import save_model_dir
from sddkit.errors import CheckpointError, ConfigError

EXPERT = {"frontend": {"name": "logmel", "n_mels": 16}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}}


def _expert(path) -> str:
    torch.manual_seed(0)
    det = build_detector(from_dict(DetectorConfig, EXPERT))
    return str(save_model_dir(path, det, model_config=EXPERT, inference={"sample_rate": 16000}))


def test_an_empty_expert_dir_is_refused_by_its_key():
    """An empty entry (``- ''`` in a recipe) read as the working directory: the error, once the mixture was built,
    was ``.: missing config.json``, naming neither the key nor that the entry was empty."""
    with pytest.raises(ConfigError, match=r"expert_dirs\[1\] is empty"):
        from_dict(MixtureConfig, {"expert_dirs": ["runs/a/best", " "]}, "mixture")


def test_an_expert_dir_that_is_no_model_directory_names_its_key(tmp_path):
    """The run folder given for its ``best/`` export: a missing folder named ``expert_dirs[i]``, but a folder
    without config.json was only ``<path>: missing config.json``, not which expert of the mixture it was."""
    good = _expert(tmp_path / "a" / "best")
    run = tmp_path / "b"
    run.mkdir()
    cfg = from_dict(MixtureConfig, {"expert_dirs": [good, str(run)], "gate": "average"})
    with pytest.raises(CheckpointError, match=r"^expert_dirs\[1\] .*b: missing config\.json"):
        build_mixture(cfg)
