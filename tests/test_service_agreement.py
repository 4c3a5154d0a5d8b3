"""The service's numbers and metadata agree with ``sdd score``, the model directory and the Python API.

Each file is scored by ``sdd score`` on its own: windows of several files share a forward pass there,
which moves float32 scores in the last bits, while the service scores one upload per pass.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.detectors.model_dir import save_model_dir
from sddkit.scoring.api import load_detector, stat_columns
from sddkit.scoring.inference import read_inference
from sddkit.service.app import create_app

CALIBRATED = {"threshold": 0.25, "calibration": {"a": 1.5, "b": 0.2, "prior": 0.5}, "min_duration_s": 0.2}
MIXTURE = {
    "experts": [
        {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0}},
        {"frontend": {"name": "lfcc"}, "backend": {"name": "linear"}},
    ],
    "gate": {"name": "enhanced_mlp"},
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("agree")
    cfg = from_dict(MixtureConfig, MIXTURE)
    torch.manual_seed(0)
    mixture = root / "mixture"
    save_model_dir(
        mixture,
        build_mixture(cfg).eval(),
        model_config=to_dict(cfg),
        architecture="mixture",
        inference={"window_samples": 8000},
    )
    return {"lcnn": save_tiny_lcnn(root / "lcnn", inference=CALIBRATED), "mixture": mixture}


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    """WAV, FLAC, MP3, stereo, 8 and 44.1 kHz, int16 and a file of many windows (0.5 s windows)."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)

    def noise(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
        x = (0.1 * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)
        return x[:, 0] if channels == 1 else x

    sf.write(folder / "a.wav", noise(1.2, 16000), 16000)
    sf.write(folder / "b.flac", noise(1.2, 16000), 16000)
    sf.write(folder / "c.mp3", noise(1.5, 16000), 16000, format="MP3")
    sf.write(folder / "d_stereo.wav", noise(1.0, 16000, 2), 16000)
    sf.write(folder / "e_8k.wav", noise(1.0, 8000), 8000)
    sf.write(folder / "f_44k_stereo.flac", noise(1.1, 44100, 2), 44100)
    sf.write(folder / "g_int16.wav", (noise(1.0, 16000) * 20000).astype(np.int16), 16000, subtype="PCM_16")
    sf.write(folder / "h_long.wav", noise(3.7, 16000), 16000)
    return folder


def _sdd_score(model: Path, path: Path, out: Path) -> dict:
    """``sdd score --threads 1 --windows`` of one file -> its JSONL row."""
    threads = torch.get_num_threads()
    try:
        argv = ["score", str(path), "--model", str(model), "--out", str(out), "--threads", "1", "--windows", "--quiet"]
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    return row


def _upload(client: TestClient, path: Path):
    return client.post("/v1/score", files={"file": (path.name, path.read_bytes(), "application/octet-stream")})


@pytest.mark.parametrize("kind", ["lcnn", "mixture"])
def test_every_number_of_an_upload_is_the_sdd_score_row(kind, models, audio, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with TestClient(create_app(models[kind])) as client:
            for path in sorted(audio.iterdir()):
                row = _sdd_score(models[kind], path, tmp_path / f"{path.name}.jsonl")
                resp = _upload(client, path)
                assert resp.status_code == 200, resp.text
                got = resp.json()
                for key in ("score", "probability", "decision", "duration_s", "n_windows", "raw_score", "windows"):
                    assert got[key] == row[key], (path.name, key)
                flat = {c: v for name, vs in got["weights"].items() for c, v in zip(stat_columns(name, len(vs)), vs)}
                stat_cols = [c for c in row if c.startswith(("gate_w", "expert_score"))]
                assert flat == {c: row[c] for c in stat_cols}, path.name
                if kind == "mixture":
                    assert len(stat_cols) == 4  # gate_w0, gate_w1, expert_score0, expert_score1
    finally:
        torch.set_num_threads(threads)
    assert row["n_windows"] == 14  # h_long.wav: 3.7 s in 0.5 s windows every 0.25 s


def _flac_cut_short() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.random.default_rng(1).standard_normal(32000)).astype(np.float32), 16000, format="FLAC")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def _wav(x: np.ndarray, subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, np.float32), 16000, format="WAV", subtype=subtype)
    return buf.getvalue()


BAD_FILES = {
    "silent.wav": (lambda: _wav(np.zeros(16000)), "silent_audio_error"),
    "dc.wav": (lambda: _wav(np.full(16000, 0.3)), "silent_audio_error"),
    "short.wav": (lambda: _wav(0.1 * np.ones(320) * np.resize([1, -1], 320)), "audio_too_short_error"),
    "click.wav": (lambda: _wav(np.r_[np.zeros(8000), [0.5], np.zeros(8000)]), "audio_too_short_error"),
    "long.wav": (lambda: _wav(0.1 * np.resize([1.0, -1.0], 16000 * 3)), "audio_too_long_error"),
    "nan.wav": (lambda: _wav(np.r_[0.1 * np.resize([1.0, -1.0], 8000), [np.nan]]), "non_finite_audio_error"),
    "junk.wav": (lambda: b"not audio at all" * 20, "audio_decode_error"),
    "cut.flac": (_flac_cut_short, "audio_decode_error"),
    "empty.wav": (lambda: b"", "empty_audio_error"),
}


def test_files_sdd_score_refuses_are_422s_of_the_same_error(models, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name, (make, _) in BAD_FILES.items():
        (folder / name).write_bytes(make())
    out = tmp_path / "bad.jsonl"
    argv = ["score", str(folder), "--model", str(models["lcnn"]), "--out", str(out), "--max-duration-s", "2", "--quiet"]
    assert main(argv) == 1  # every file failed: their error rows are written, and the exit status says so
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    with TestClient(create_app(models["lcnn"], max_duration_s=2.0)) as client:
        for name, (_, type_) in BAD_FILES.items():
            assert rows[name]["error"] and rows[name]["score"] is None, name
            resp = _upload(client, folder / name)
            assert resp.status_code == 422 and resp.json()["error"]["type"] == type_, (name, resp.text)


def test_the_model_endpoint_reports_every_inference_setting_of_the_model_directory(models):
    """config.json's ``inference`` section (with its defaults filled in) is what GET /v1/model says.

    ``min_duration_s`` was missing: a client could not learn why a 150 ms upload is refused.
    """
    model_dir = models["lcnn"]
    stored = json.loads((model_dir / "config.json").read_text())
    with TestClient(create_app(model_dir)) as client:
        described = client.get("/v1/model").json()
    settings = read_inference(model_dir).to_dict()
    assert {k: described.get(k) for k in settings} == settings
    assert described["min_duration_s"] == 0.2 and described["calibration"]["a"] == 1.5
    info = load_detector(model_dir).info
    for key in ("name", "path", "architecture", "components", "num_parameters", "metadata"):
        assert described[key] == info[key], key
    assert described["model"] == stored["model"] and described["architecture"] == stored["architecture"]


def test_the_schema_says_weights_are_averaged_over_the_windows(models):
    """``weights`` holds one value per expert, the mean over the windows (sdd score's gate_w*/expert_score*
    columns); the schema called them per-window statistics, which ``windows`` would hold."""
    with TestClient(create_app(models["mixture"])) as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["ScoreResponse"]
    assert "averaged over the windows" in schema["properties"]["weights"]["description"]
