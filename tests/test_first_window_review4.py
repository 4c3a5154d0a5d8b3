"""inference.aggregation: first: the ASVspoof reference protocol (the first window of each file, repeat-padded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scoring_support import save_tiny_lcnn

from sddkit.audio.crop import repeat_pad
from sddkit.scoring.api import ScoringDetector, load_detector
from sddkit.scoring.inference import InferenceConfig

W = 4000


def _noise(n: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_first_scores_only_the_first_window_of_a_long_input():
    seen: list[np.ndarray] = []

    def runner(windows: np.ndarray):
        seen.append(np.array(windows, copy=True))
        m = windows.mean(axis=1, dtype=np.float64)
        return np.stack([-m, m], axis=1), {}

    det = ScoringDetector(runner, InferenceConfig(window_samples=W, aggregation="first"), batch_size=8)
    det.stat_widths()
    x = _noise(7 * W + 321, 1)
    seen.clear()
    result = det.score(x, 16000)
    assert len(seen) == 1 and seen[0].shape == (1, W)  # the rest of the file is not scored
    assert np.array_equal(seen[0][0], x[:W])
    assert result.n_windows == 1 and result.window_starts_s == [0.0]
    assert result.raw_score == pytest.approx(2 * float(x[:W].mean(dtype=np.float64)))


def test_first_window_model_scores_as_the_reference_protocol(tmp_path):
    # the reference code (AASIST, RawNet2) scores the first window_samples of a file, repeated to fill a shorter one
    torch.set_num_threads(1)
    first = load_detector(save_tiny_lcnn(tmp_path / "first", inference={"window_samples": W, "aggregation": "first"}))
    mean = load_detector(save_tiny_lcnn(tmp_path / "mean", inference={"window_samples": W}))
    long, short = _noise(5 * W + 77, 2), _noise(W // 2, 3)  # W / 2: 125 ms, above the 0.1 s minimum
    assert first.score(long, 16000).score == pytest.approx(mean.score(long[:W], 16000).score, abs=1e-6)
    assert first.score(short, 16000).score == pytest.approx(mean.score(repeat_pad(short, W), 16000).score, abs=1e-6)
    assert first.score(long, 16000).score != pytest.approx(mean.score(long, 16000).score, abs=1e-6)
