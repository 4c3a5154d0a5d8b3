"""The tiny scoring model shared by the scoring, service and resume tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import save_model_dir

TINY_LCNN = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0}}


def save_tiny_lcnn(directory: Path, *, seed: int = 0, inference: dict[str, Any] | None = None) -> Path:
    """A random-weight logmel + small LCNN model directory (0.5 s windows unless ``inference`` says otherwise)."""
    cfg = from_dict(DetectorConfig, TINY_LCNN)
    torch.manual_seed(seed)
    settings = {"window_samples": 8000, **(inference or {})}
    save_model_dir(directory, build_detector(cfg).eval(), model_config=to_dict(cfg), inference=settings)
    return directory


def write_noise_wav(path: Path, seconds: float, seed: int, sample_rate: int = 16000) -> Path:
    """A WAV of 0.1-amplitude Gaussian noise (folders created), for scoring tests."""
    import numpy as np
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32), sample_rate)
    return path


def score_post_scope(boundary: str) -> dict[str, Any]:
    """The ASGI scope of a multipart ``POST /v1/score`` (for tests that feed the service's body by hand)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/score",
        "raw_path": b"/v1/score",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def run_interrupted_at_second_batch(monkeypatch, argv: list[str]) -> None:
    """Run the CLI on ``argv`` and Ctrl-C it while the model scores its second batch (the first is written or
    journaled), asserting the interruption's exit status 130."""
    from sddkit.cli.main import main
    from sddkit.scoring.api import ScoringDetector

    real = ScoringDetector.score_prepared
    calls: list[int] = []

    def score_prepared(self, items, on_windows=None):
        if calls:
            raise KeyboardInterrupt
        calls.append(len(items))
        return real(self, items, on_windows=on_windows)

    with monkeypatch.context() as m:
        m.setattr(ScoringDetector, "score_prepared", score_prepared)
        assert main(argv) == 130


class TinyStats(torch.nn.Module):
    """A linear layer on three waveform statistics: exports with the TorchScript exporter in a second (the ONNX
    tests register it as an architecture)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2)

    def forward(self, x):
        from sddkit.detectors.outputs import DetectorOutput

        feats = torch.stack([x.mean(1), x.std(1), x.abs().amax(1)], dim=1)
        logits = self.proj(feats)
        return DetectorOutput(logits=logits, score=logits[:, 1] - logits[:, 0], embedding=feats)


def noise_wav_bytes(seconds: float = 0.5, seed: int = 0, sample_rate: int = 16000) -> bytes:
    """A 16-bit WAV of seeded white noise at 0.1 RMS, as bytes (an upload)."""
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sample_rate))
    sf.write(buf, x.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def assert_error_json(resp, status: int, type_: str) -> dict:
    """The service's JSON error of ``resp``: its status, a body of only ``error`` with this ``type`` and a message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["type"] == type_ and body["error"]["message"]
    return body["error"]
