"""Review 5 (third look) of the Python scoring API: load errors that say what to load instead, torch tensors in
score_many, and the minimum duration counted in whole samples."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scoring_support import save_tiny_lcnn

from sddkit.errors import AudioTooShortError, CheckpointError
from sddkit.scoring.api import ScoringDetector, load_detector
from sddkit.scoring.inference import InferenceConfig


def _mean_runner(windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    m = windows.mean(axis=1, dtype=np.float64)
    return np.stack([-m, m], axis=1), {}


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_load_detector_of_a_training_run_folder_names_the_model_it_exported(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="training run folder that exported no model yet"):
        load_detector(run)
    save_tiny_lcnn(run / "best")
    with pytest.raises(CheckpointError, match="training run folder: load the model it exported") as info:
        load_detector(run)
    assert str(run / "best") in str(info.value)
    assert load_detector(run / "best").score(_noise(16000), 16000).n_windows == 3


def test_load_detector_of_other_files_and_folders_says_what_to_load(tmp_path):
    model = save_tiny_lcnn(tmp_path / "m")
    # the config file itself: load its folder
    with pytest.raises(CheckpointError, match="load the model directory that holds it") as info:
        load_detector(model / "config.json")
    assert str(model) in str(info.value)
    # a folder with an exported model.onnx (no config.json): the onnx backend reads it
    onnx_dir = tmp_path / "exported"
    onnx_dir.mkdir()
    (onnx_dir / "model.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(CheckpointError, match="missing config.json; it holds an exported model.onnx.*backend='onnx'"):
        load_detector(onnx_dir)
    # published PyTorch weights: never unpickled, imported
    pth = tmp_path / "AASIST.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="sdd import-aasist"):
        load_detector(pth)
    # a folder of no known kind: what a model directory holds and what writes one (review 14: the bare
    # "missing config.json" left a new user to guess)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(model / "model.safetensors", other)
    with pytest.raises(CheckpointError, match=r"missing config.json; a model directory holds config.json and model"):
        load_detector(other)
    # config.json without its weights: the whole directory is what travels
    (other / "model.safetensors").unlink()
    shutil.copy(model / "config.json", other)
    with pytest.raises(CheckpointError, match=r"missing model.safetensors, .*copy the whole model directory"):
        load_detector(other)


def test_score_many_takes_torch_tensors_as_score_does():
    """score takes bfloat16 tensors and tensors that require grad; score_many failed on both with torch's
    TypeError/RuntimeError from np.asarray."""
    det = ScoringDetector(_mean_runner, InferenceConfig(window_samples=4000))
    x = _noise(9000, 1)
    t = torch.from_numpy(x)
    expected = [det.score(t.bfloat16(), 16000).score, det.score(t, 16000).score]
    results = det.score_many([t.bfloat16(), t.clone().requires_grad_()])
    assert [r.score for r in results] == pytest.approx(expected, abs=1e-12)
    assert det.score_many([t])[0].score == det.score_many([x])[0].score


def test_an_input_of_exactly_the_minimum_duration_is_scored():
    """2.007 s * 16 kHz is 32112.000000000004 in floats: an input of exactly 32112 samples read as too short
    ("2007 ms of audio is too short to score (this model's minimum: 2007 ms)")."""
    det = ScoringDetector(_mean_runner, InferenceConfig(window_samples=4000, min_duration_s=2.007))
    assert det.score(_noise(32112, 2), 16000).n_windows > 1
    with pytest.raises(AudioTooShortError, match="2006 ms of audio is too short"):
        det.score(_noise(32111, 2), 16000)
    # the default minimum, 100 ms: 1600 samples are enough, 1599 are not
    det = ScoringDetector(_mean_runner, InferenceConfig(window_samples=4000))
    assert det.score(_noise(1600, 3), 16000).n_windows == 1
    with pytest.raises(AudioTooShortError):
        det.score(_noise(1599, 3), 16000)
