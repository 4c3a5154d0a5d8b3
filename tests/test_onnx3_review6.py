"""Review of the ONNX backend: an exported file whose sddkit metadata is damaged, or does not fit its graph."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import Tensor, nn

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import CheckpointError
from sddkit.scoring.api import load_detector
from sddkit.scoring.onnx_export import META_INFERENCE, META_INFO, export_onnx

WINDOW = 400


class Gated(nn.Module):
    """A toy detector with per-window gate weights (as a mixture reports them); exports in a second."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> DetectorOutput:
        feats = torch.stack([x.mean(1), x.std(1), x.abs().amax(1)], dim=1)
        gate = torch.softmax(self.proj(feats), dim=1)
        s = (gate * feats).sum(1)
        logits = torch.stack([-s, s], 1)
        return DetectorOutput(logits=logits, score=2 * s, embedding=feats, stats={"gate_weights": gate})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    md.ARCHITECTURES["onnx3_gated"] = lambda cfg: Gated()
    tmp = tmp_path_factory.mktemp("onnx3")
    torch.manual_seed(0)
    inference = {"window_samples": WINDOW, "calibration": {"a": 2.0, "b": 0.5}}
    d = md.save_model_dir(tmp / "m", Gated(), model_config={}, architecture="onnx3_gated", inference=inference)
    export_onnx(d, tmp / "g.onnx")
    yield tmp / "g.onnx"
    md.ARCHITECTURES.pop("onnx3_gated", None)


def _edited(src, dst, key: str, edit) -> str:
    """A copy of the .onnx file ``src`` at ``dst`` with metadata entry ``key`` replaced by ``edit(value)``."""
    proto = onnx.load(str(src))
    for entry in proto.metadata_props:
        if entry.key == key:
            entry.value = edit(entry.value)
    onnx.save(proto, str(dst))
    return str(dst)


def _with(**changes):
    return lambda value: json.dumps({**json.loads(value), **changes})


@pytest.mark.parametrize(
    ("key", "edit", "says"),
    [
        (META_INFERENCE, lambda v: v[:-3], f"'{META_INFERENCE}' is not valid JSON"),
        (META_INFO, lambda v: "[1, 2]", f"'{META_INFO}' must be a JSON object, got list"),
    ],
)
def test_damaged_metadata_is_a_clear_error_not_a_traceback(exported, tmp_path, capsys, key, edit, says):
    # json.loads raised its JSONDecodeError (a traceback from `sdd score`), and dict([1, 2]) a TypeError
    bad = _edited(exported, tmp_path / "bad.onnx", key, edit)
    with pytest.raises(CheckpointError, match=says):
        load_detector(bad, backend="onnx")
    wav = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(3000)).astype(np.float32), 16000)
    out = tmp_path / "s.csv"
    assert main(["score", str(wav), "--model", bad, "--backend", "onnx", "--out", str(out), "--quiet"]) != 0
    assert says in capsys.readouterr().err


def test_metadata_windows_that_do_not_fit_the_graph_are_refused_at_load(exported, tmp_path):
    # Loaded without a word, then every score failed in the runner, advising to "score through
    # load_detector(..., backend='onnx')", which is what the caller was doing
    bad = _edited(exported, tmp_path / "w.onnx", META_INFERENCE, _with(window_samples=WINDOW + 100))
    with pytest.raises(
        CheckpointError, match=f"window_samples {WINDOW + 100}, but the graph takes windows of {WINDOW}"
    ):
        load_detector(bad, backend="onnx")


def test_a_sample_rate_the_front_end_does_not_take_is_refused_as_for_a_model_directory(exported, tmp_path):
    # load_detector refuses a model directory whose inference.sample_rate is not the front-end's 16 kHz (it
    # would score every file resampled to that rate as if it were 16 kHz audio); the ONNX backend scored so
    bad = _edited(exported, tmp_path / "r.onnx", META_INFERENCE, _with(sample_rate=8000))
    with pytest.raises(CheckpointError, match="inference.sample_rate is 8000 Hz"):
        load_detector(bad, backend="onnx")


def test_the_unedited_export_still_loads_and_scores_like_pytorch(exported):
    det_o, det_t = load_detector(exported, backend="onnx"), load_detector(exported.parent / "m")
    x = 0.1 * np.random.default_rng(1).standard_normal(2345)  # float64, a length the graph never saw
    ro, rt = det_o.score(x, 16000), det_t.score(x, 16000)
    assert ro.score == pytest.approx(rt.score, abs=1e-5) and ro.n_windows == rt.n_windows == 11
    assert ro.weights["gate_weights"] == pytest.approx(rt.weights["gate_weights"], abs=1e-6)


class StftWithUsage(nn.Module):
    """Needs the torch.export exporter (a complex STFT), and reports a batch-level (2,) expert usage beside its
    per-window gate weights: a plug-in mixture's statistics."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 2)

    def forward(self, x: Tensor) -> DetectorOutput:
        spec = torch.stft(x, 64, window=torch.hann_window(64), return_complex=True).abs()
        feats = torch.stack([spec.mean((1, 2)), spec.std((1, 2))], 1)
        logits = self.proj(feats)
        gate = torch.softmax(logits, 1)
        stats = {"gate_weights": gate, "usage": gate.mean(0)}
        return DetectorOutput(logits=logits, score=logits[:, 1] - logits[:, 0], embedding=feats, stats=stats)


def test_a_batch_level_statistic_does_not_fix_the_batch_of_a_torch_export_graph(tmp_path, monkeypatch):
    # The graph computed per_window_stats on every statistic, exported or not: comparing the (2,) usage's length
    # with the symbolic batch made torch.export take the example's batch of 2 as the only one, and the export
    # failed ("the exported graph fails on random noise (3 windows)") though the model exports fine
    pytest.importorskip("onnxscript")
    monkeypatch.setitem(md.ARCHITECTURES, "stft_usage", lambda cfg: StftWithUsage())
    torch.manual_seed(0)
    d = md.save_model_dir(
        tmp_path / "m", StftWithUsage(), model_config={}, architecture="stft_usage", inference={"window_samples": 400}
    )
    report = export_onnx(d, tmp_path / "m.onnx")
    assert report["exporter"] == "dynamo" and report["outputs"] == ["logits", "stat:gate_weights"]
    det_o, det_t = load_detector(tmp_path / "m.onnx", backend="onnx", batch_size=5), load_detector(d)
    x = 0.1 * np.random.default_rng(2).standard_normal(3000)
    ro, rt = det_o.score(x, 16000), det_t.score(x, 16000)
    assert ro.score == pytest.approx(rt.score, abs=1e-5)
    assert ro.weights["gate_weights"] == pytest.approx(rt.weights["gate_weights"], abs=1e-6)
