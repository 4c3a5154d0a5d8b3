"""Review 3 of calibration and the Python scoring API: batch_size, channel and threshold checks, named inputs."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from sddkit.errors import AudioError, AudioTooShortError, CheckpointError, ConfigError, SddkitError
from sddkit.scoring.api import ScoringDetector
from sddkit.scoring.inference import InferenceConfig, parse_inference

REPO = Path(__file__).resolve().parents[1]


def _runner(windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits whose score is the mean of each window: no model needed."""
    mean = windows.mean(axis=1, dtype=np.float64)
    return np.stack([np.zeros_like(mean), mean], axis=1), {}


def _detector(**kwargs) -> ScoringDetector:
    return ScoringDetector(_runner, InferenceConfig(window_samples=1600), **kwargs)


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("batch_size", [2.5, "8", True])
def test_a_batch_size_that_is_not_an_integer_is_refused_at_load(batch_size):
    # a float or a string was accepted, then failed at the first call with range()'s TypeError
    with pytest.raises(ConfigError, match=r"batch_size must be an integer >= 1, got"):
        _detector(batch_size=batch_size)
    assert _detector(batch_size=np.int64(3)).batch_size == 3


@pytest.mark.parametrize("transpose", [False, True])
def test_more_than_eight_channels_is_refused_saying_so(transpose):
    # (10, T) is (channels, samples), yet the error told the caller to pass (channels, samples)
    x = np.stack([_noise(16000, seed) for seed in range(10)])
    with pytest.raises(AudioError, match=r"more than 8 channels.*score_many") as info:
        _detector().score(x.T if transpose else x, 16000)
    assert "pass (channels, samples)" not in str(info.value)
    assert _detector().score(x[:8], 16000).score == pytest.approx(_detector().score(x[:8].T, 16000).score)


@pytest.mark.parametrize(
    ("key", "value"), [("threshold", math.inf), ("threshold", -math.inf), ("min_duration_s", math.inf)]
)
def test_non_finite_threshold_or_minimum_is_refused(key, value):
    # an infinite threshold decided every input alike and broke the service's strict JSON; an infinite
    # minimum refused every input as "too short"
    with pytest.raises(CheckpointError, match=rf"{key} must be finite"):
        parse_inference({key: value})


def test_score_many_errors_name_the_inputs_when_given_names():
    detector = _detector()
    with pytest.raises(AudioTooShortError, match=r"^b\.wav: 50 ms"):
        detector.score_many([_noise(16000), _noise(800)], names=["a.wav", "b.wav"])
    with pytest.raises(AudioTooShortError, match=r"^waveforms\[1\]: "):
        detector.score_many([_noise(16000), _noise(800)])
    with pytest.raises(ConfigError, match=r"2 waveforms but 1 names"):
        detector.score_many([_noise(16000), _noise(16000)], names=["a.wav"])
    named = detector.score_many([_noise(16000, 1), _noise(20000, 2)], names=["a.wav", "b.wav"])
    assert [r.score for r in named] == [r.score for r in detector.score_many([_noise(16000, 1), _noise(20000, 2)])]


def test_finalize_names_the_val_file_it_cannot_score(tmp_path):
    import soundfile as sf
    from script_support import load_script

    rows = ["path,label,partition,system,attack_type,source,speaker,duration_s"]
    (tmp_path / "audio").mkdir()
    for i in range(4):
        label = "bonafide" if i % 2 else "spoof"
        rel = f"audio/{label}_{i}.wav"
        sf.write(tmp_path / rel, _noise(800 if i == 3 else 16000, i), 16000)  # file 3: 50 ms, under the minimum
        rows.append(f"{rel},{label},val,{'-' if label == 'bonafide' else 'A01'},tts,src,spk{i},1.0")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    model = tmp_path / "model"
    shutil.copytree(REPO / "src" / "sddkit" / "assets" / "default_model", model)
    args = [str(model), "--out", str(tmp_path / "out"), "--manifest", str(manifest), "--threads", "1"]
    # it was "waveforms[3]: 50 ms of audio is too short to score", which named no file
    with pytest.raises(SddkitError, match=r"bonafide_3\.wav: 50 ms of audio is too short"):
        load_script("scripts/finalize_default_model.py").main(args)


def test_an_onnx_file_loaded_with_the_torch_backend_says_which_backend_to_use(tmp_path):
    from sddkit.scoring.api import load_detector

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read")
    # it was "model.onnx: not a model directory (a file)"
    with pytest.raises(CheckpointError, match=r"model\.onnx is an ONNX file: load it with backend='onnx'"):
        load_detector(onnx)
