"""Shared test set-up: offline, deterministic, small."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def tiny_stats(monkeypatch):
    """``save(path, seed=0, threshold=0.0)``: a model directory of ``scoring_support.TinyStats`` (0.025 s windows),
    registered as an architecture for the test. Its graph exports with the TorchScript exporter in a fraction of a
    second, where a spectral model's export and parity check take a second or more: for tests of what an export
    does around the graph (file names, --force, partial files), not of the graph itself."""
    from scoring_support import TinyStats

    from sddkit.detectors import model_dir as md

    monkeypatch.setitem(md.ARCHITECTURES, "tiny_stats", lambda cfg: TinyStats())

    def save(path, seed: int = 0, threshold: float = 0.0):
        torch.manual_seed(seed)
        inference = {"window_samples": 400, "threshold": threshold}
        return md.save_model_dir(path, TinyStats(), model_config={}, architecture="tiny_stats", inference=inference)

    return save
