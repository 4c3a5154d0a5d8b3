"""The numbers ``sdd score`` writes, checked against their documented definitions.

Windows and their spans, aggregation then calibration, probability, the decision at the threshold,
a mixture's gate columns, CSV = JSONL, ONNX = torch, other sample rates and stereo, and the Python
API equal to the CLI row. Tiny random models and generated WAVs only.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scoring_support import TINY_LCNN, save_tiny_lcnn

from sddkit.audio.io import load_audio
from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.detectors.model_dir import save_model_dir
from sddkit.errors import SilentAudioError
from sddkit.scoring.api import load_detector
from sddkit.scoring.inference import read_inference, write_inference

SR = 16000
WINDOW, HOP = 8000, 3000  # a hop that does not divide the window: the last window is end-aligned
CAL = {"a": 1.7, "b": -0.3}
LENGTHS = {"one_window": WINDOW, "one_more": WINDOW + 1, "one_less": WINDOW - 1, "half": WINDOW // 2, "long": 61_234}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    inference = {"window_samples": WINDOW, "hop_samples": HOP, "calibration": CAL, "threshold": 0.05}
    return save_tiny_lcnn(tmp_path_factory.mktemp("numbers") / "lcnn", inference=inference)


def _noise(n: int, seed: int, channels: int = 0) -> np.ndarray:
    shape = (n, channels) if channels else (n,)
    return (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _write(path: Path, x: np.ndarray, sr: int = SR) -> str:
    sf.write(path, x, sr, subtype="FLOAT")  # float samples: the file holds exactly x
    return str(path)


def _score(args: list[str], out: Path) -> dict[str, dict]:
    """Run ``sdd score`` (one thread: the same float rounding as the API here) -> rows by path."""
    assert main(["score", *args, "--out", str(out), "--quiet", "--workers", "0", "--threads", "1"]) == 0
    if out.suffix == ".jsonl":
        return {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    with open(out, newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def _expected_starts(n: int) -> list[int]:
    if n <= WINDOW:
        return [0]
    starts = list(range(0, n - WINDOW + 1, HOP))
    return starts if starts[-1] == n - WINDOW else [*starts, n - WINDOW]


def test_windows_spans_aggregation_calibration_and_probability(tmp_path, model_dir):
    torch.set_num_threads(1)
    files = {name: _write(tmp_path / f"{name}.wav", _noise(n, i)) for i, (name, n) in enumerate(LENGTHS.items())}
    rows = _score([*files.values(), "--model", str(model_dir), "--windows"], tmp_path / "s.jsonl")
    det = load_detector(model_dir)
    for name, path in files.items():
        n, row = LENGTHS[name], rows[path]
        starts = _expected_starts(n)
        assert row["error"] == "" and row["n_windows"] == len(starts) == len(row["windows"]), name
        assert row["duration_s"] == n / SR
        # every window spans [start, start + window), the last one ends at the last sample; a short file's
        # only window (repeat-padded) spans the file
        assert [w["start_s"] for w in row["windows"]] == [s / SR for s in starts]
        assert [w["end_s"] for w in row["windows"]] == [min(s + WINDOW, n) / SR for s in starts]
        assert row["windows"][-1]["end_s"] == n / SR
        # mean of raw window scores, then the stored calibration; window scores are calibrated too
        raw_windows = [(w["score"] - CAL["b"]) / CAL["a"] for w in row["windows"]]
        assert row["raw_score"] == pytest.approx(np.mean(raw_windows), abs=1e-9)
        assert row["score"] == pytest.approx(CAL["a"] * row["raw_score"] + CAL["b"], abs=1e-12)
        assert row["score"] == pytest.approx(np.mean([w["score"] for w in row["windows"]]), abs=1e-9)
        assert row["probability"] == pytest.approx(1 / (1 + math.exp(-row["score"])), abs=1e-15)
        assert row["decision"] == ("bonafide" if row["score"] >= 0.05 else "spoof")
        # the Python API on the waveform and on the file gives the CLI's row
        x = sf.read(path, dtype="float32")[0]
        for res in (det.score(x, SR), det.score_file(path)):
            assert res.score == pytest.approx(row["score"], abs=1e-6)
            assert res.window_starts_s == [w["start_s"] for w in row["windows"]]


def test_csv_and_its_windows_sidecar_hold_the_jsonl_numbers(tmp_path, model_dir):
    files = [_write(tmp_path / f"{k}.wav", _noise(n, k)) for k, n in enumerate((WINDOW - 1, 30_001))]
    common = [*files, "--model", str(model_dir), "--windows"]
    j, c = _score(common, tmp_path / "s.jsonl"), _score(common, tmp_path / "s.csv")
    with open(tmp_path / "s.windows.csv", newline="") as f:
        sidecar = list(csv.DictReader(f))
    for path in files:
        for col in ("score", "probability", "duration_s", "raw_score"):
            assert float(c[path][col]) == pytest.approx(j[path][col], rel=1e-6)  # 7 significant digits
        assert int(c[path]["n_windows"]) == j[path]["n_windows"] and c[path]["decision"] == j[path]["decision"]
        mine = [r for r in sidecar if r["path"] == path]
        assert [int(r["window"]) for r in mine] == list(range(j[path]["n_windows"]))
        for r, w in zip(mine, j[path]["windows"]):
            for col in ("start_s", "end_s", "score"):
                assert float(r[col]) == pytest.approx(w[col], rel=1e-6)


def test_a_score_equal_to_the_threshold_is_bonafide(tmp_path, model_dir):
    torch.set_num_threads(1)
    local = tmp_path / "m"
    local.mkdir()
    for f in model_dir.iterdir():
        (local / f.name).write_bytes(f.read_bytes())
    path = _write(tmp_path / "a.wav", _noise(12_345, 7))
    cfg = read_inference(local)
    cfg.threshold = load_detector(local).score_file(path).score
    write_inference(local, cfg)
    row = _score([path, "--model", str(local)], tmp_path / "s.jsonl")[path]
    assert row["score"] == cfg.threshold and row["decision"] == "bonafide"
    cfg.threshold = math.nextafter(cfg.threshold, math.inf)  # one ulp above: spoof
    write_inference(local, cfg)
    assert _score([path, "--model", str(local)], tmp_path / "t.jsonl")[path]["decision"] == "spoof"


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [0, 2])
def test_other_rates_and_stereo_are_mixed_and_resampled_like_the_api(tmp_path, model_dir, sr, channels):
    torch.set_num_threads(1)
    x = _noise(int(1.3 * sr) + 1, sr + channels, channels)
    path = _write(tmp_path / "a.wav", x, sr)
    row = _score([path, "--model", str(model_dir)], tmp_path / "s.jsonl")[path]
    res = load_detector(model_dir).score(x, sr)
    assert row["error"] == "" and row["score"] == pytest.approx(res.score, abs=1e-6)
    assert row["n_windows"] == res.n_windows and row["duration_s"] == pytest.approx(1.3, abs=2e-4)


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_integer_pcm_stereo_in_the_api_is_mixed_like_a_decoded_file(tmp_path, model_dir, dtype):
    # the API rounded the channel mean back to integer PCM, adding half an LSB of noise the decoder never
    # adds: on quiet audio the bundled model then scored the array 0.2 away from the same data in a WAV
    rng = np.random.default_rng(3)
    scale = 30 * (1 if dtype == np.int16 else 65536)
    x = (np.round(rng.standard_normal((20_000, 2)) * 30) * (scale // 30)).astype(dtype)
    x[:, 1] |= 1  # odd sums: the mean falls between two PCM values
    path = tmp_path / "pcm.wav"
    sf.write(path, x, SR, subtype="PCM_16" if dtype == np.int16 else "PCM_32")
    det = load_detector(model_dir)
    decoded = load_audio(path, sample_rate=SR)
    np.testing.assert_array_equal(det.to_model_rate(x, SR), decoded)
    np.testing.assert_array_equal(det.to_model_rate(torch.from_numpy(x.T.copy()), SR), decoded)
    assert det.score(x, SR).score == det.score_file(path).score


def test_the_api_refuses_audio_that_resampling_leaves_silent_as_score_file_does(tmp_path, model_dir):
    # a quiet 12 kHz tone at 48 kHz: nothing of it passes below 8 kHz, and load_audio calls the result silent
    t = np.arange(48_000) / 48_000
    x = (3e-4 * np.sin(2 * np.pi * 12_000 * t)).astype(np.float32)
    path = _write(tmp_path / "hf.wav", x, 48_000)
    det = load_detector(model_dir)
    with pytest.raises(SilentAudioError):
        det.score_file(path)
    with pytest.raises(SilentAudioError):
        det.score(x, 48_000)


# --- a mixture, and ONNX ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory) -> Path:
    from sddkit.detectors.mixture import MixtureConfig, build_mixture

    torch.manual_seed(0)
    cfg = from_dict(MixtureConfig, {"experts": [TINY_LCNN] * 3, "gate": {"name": "classic"}}, "model")
    inference = {"window_samples": WINDOW, "hop_samples": HOP, "calibration": CAL}
    directory = tmp_path_factory.mktemp("mixture") / "mix"
    return save_model_dir(
        directory, build_mixture(cfg).eval(), model_config=to_dict(cfg), architecture="mixture", inference=inference
    )


def test_mixture_columns_are_window_means_and_onnx_gives_the_torch_row(tmp_path, mixture_dir):
    torch.set_num_threads(1)
    files = [_write(tmp_path / f"{k}.wav", _noise(n, 10 + k)) for k, n in enumerate((3_000, WINDOW, 20_001))]
    rows = _score([*files, "--model", str(mixture_dir), "--windows"], tmp_path / "t.jsonl")
    det = load_detector(mixture_dir)
    for path in files:
        row = rows[path]
        gates = [row[f"gate_w{k}"] for k in range(3)]
        assert sum(gates) == pytest.approx(1.0, abs=1e-6) and all(0 <= g <= 1 for g in gates)
        # the columns are the per-window statistics averaged over the file's windows
        prepared = det.prepare(load_audio(path, sample_rate=SR))
        _, stats = det.runner(prepared.windows)
        assert gates == pytest.approx(stats["gate_weights"].mean(axis=0).tolist(), abs=1e-6)
        assert [row[f"expert_score{k}"] for k in range(3)] == pytest.approx(
            stats["expert_scores"].mean(axis=0).tolist(), abs=1e-6
        )

    onnx_path = tmp_path / "mix.onnx"
    assert main(["export-onnx", "--model", str(mixture_dir), "--out", str(onnx_path)]) == 0
    onnx_rows = _score([*files, "--model", str(onnx_path), "--backend", "onnx", "--windows"], tmp_path / "o.jsonl")
    for path in files:
        t, o = rows[path], onnx_rows[path]
        assert set(t) == set(o) and t["n_windows"] == o["n_windows"] and t["decision"] == o["decision"]
        for col, value in t.items():
            if isinstance(value, float):
                assert o[col] == pytest.approx(value, abs=1e-4), col
        for wt, wo in zip(t["windows"], o["windows"]):
            assert (wt["start_s"], wt["end_s"]) == (wo["start_s"], wo["end_s"])
            assert wo["score"] == pytest.approx(wt["score"], abs=1e-4)
