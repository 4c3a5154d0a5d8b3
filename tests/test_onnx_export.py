from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from torch import nn

from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import CheckpointError, ConfigError
from sddkit.scoring.api import load_detector
from sddkit.scoring.onnx_export import META_INFERENCE, export_onnx

SR = 16000


def _model_dir(path, detector: dict, window: int):
    cfg = from_dict(DetectorConfig, detector)
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    inference = {"window_samples": window, "threshold": 0.1, "calibration": {"a": 0.8, "b": -0.3}}
    return md.save_model_dir(path, model, model_config=to_dict(cfg), inference=inference)


def _audio(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate((0.2, 0.5, 1.3)):  # padded, exactly one window, several windows
        p = tmp_path / "audio" / f"f{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR, subtype="FLOAT")
        paths.append(p)
    return paths


def _scores(path):
    with open(path, newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


@pytest.mark.parametrize(
    ("name", "detector", "exporter"),
    [
        ("aasist_l", {"frontend": "raw", "backend": "aasist_l"}, "torchscript"),
        (
            "logmel_lcnn",
            {
                "frontend": {"name": "logmel", "n_mels": 32, "top_db": 50.0, "level_db": -27.0},  # both export
                "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 1, "head": "cosine"},  # and the cosine head
            },
            "torchscript",  # the STFT traced as a DFT matrix product, the max-feature-maps cut at their channels
        ),
    ],
)
def test_onnx_scores_match_pytorch(tmp_path, capsys, name, detector, exporter):
    d = _model_dir(tmp_path / name, detector, window=8000)
    onnx_path = tmp_path / f"{name}.onnx"
    assert main(["export-onnx", "--model", str(d), "--out", str(onnx_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["exporter"] == exporter and report["max_abs_diff"] < 1e-4 and report["outputs"] == ["logits"]
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(meta[META_INFERENCE])["calibration"]["a"] == 0.8  # inference settings travel inside

    files = _audio(tmp_path)
    out_t, out_o = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    common = [*map(str, files), "--quiet", "--batch-size", "2"]
    assert main(["score", *common, "--model", str(d), "--out", str(out_t)]) == 0
    assert main(["score", *common, "--model", str(onnx_path), "--backend", "onnx", "--out", str(out_o)]) == 0
    st, so = _scores(out_t), _scores(out_o)
    assert set(st) == set(so) == {str(p) for p in files}
    for p in st:
        assert st[p]["error"] == so[p]["error"] == ""
        assert abs(float(st[p]["score"]) - float(so[p]["score"])) < 1e-4
        assert st[p]["n_windows"] == so[p]["n_windows"] and st[p]["decision"] == so[p]["decision"]
    # the Python API on the .onnx file: same windows, same calibration
    det_o, det_t = load_detector(onnx_path, backend="onnx"), load_detector(d)
    x = (0.1 * np.random.default_rng(5).standard_normal(20000)).astype(np.float32)
    ro, rt = det_o.score(x, SR), det_t.score(x, SR)
    assert np.max(np.abs(np.array(ro.window_scores) - np.array(rt.window_scores))) < 1e-4
    backend = detector["backend"]["name"] if isinstance(detector["backend"], dict) else detector["backend"]
    assert det_o.info["backend"] == "onnx" and det_o.info["components"]["backend"] == backend


class GatedMean(nn.Module):
    """Tiny model with per-window gate weights in ``stats`` (as a mixture reports them)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)

    def forward(self, x):
        feats = torch.stack([x.mean(1), x.std(1), x.abs().amax(1)], dim=1)
        gate = torch.softmax(self.proj(feats), dim=1)
        s = (gate * feats).sum(1)
        return DetectorOutput(
            logits=torch.stack([-s, s], 1), score=2 * s, embedding=feats, stats={"gate_weights": gate}
        )


def test_stats_are_exported_as_outputs(tmp_path, monkeypatch):
    monkeypatch.setitem(md.ARCHITECTURES, "gated_test", lambda cfg: GatedMean())
    torch.manual_seed(1)
    d = md.save_model_dir(
        tmp_path / "g", GatedMean(), model_config={}, architecture="gated_test", inference={"window_samples": 400}
    )
    report = export_onnx(d, tmp_path / "g.onnx")
    assert report["outputs"] == ["logits", "stat:gate_weights"]
    det_o, det_t = load_detector(tmp_path / "g.onnx", backend="onnx"), load_detector(d)
    assert det_o.weight_columns() == det_t.weight_columns() == ["gate_w0", "gate_w1", "gate_w2"]
    x = np.sin(np.arange(2000) / 7.0).astype(np.float32)
    ro, rt = det_o.score(x, SR), det_t.score(x, SR)
    assert ro.weights["gate_weights"] == pytest.approx(rt.weights["gate_weights"], abs=1e-5)
    assert sum(ro.weights["gate_weights"]) == pytest.approx(1.0, abs=1e-5)


def test_a_graph_that_fails_the_parity_check_is_never_left_at_out(tmp_path, monkeypatch):
    from sddkit.scoring import onnx_export

    monkeypatch.setitem(md.ARCHITECTURES, "gated_test", lambda cfg: GatedMean())
    d = md.save_model_dir(
        tmp_path / "g", GatedMean(), model_config={}, architecture="gated_test", inference={"window_samples": 400}
    )
    out = tmp_path / "g.onnx"
    out.write_bytes(b"an earlier, good export")
    monkeypatch.setattr(onnx_export, "_output_diffs", lambda *a: {"logits": 0.5})  # as if the graph disagreed
    with pytest.raises(CheckpointError, match="differ from PyTorch by 0.5 .*not written"):
        export_onnx(d, out)
    assert out.read_bytes() == b"an earlier, good export"  # untouched, and no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "g.onnx"]
    with pytest.raises(ConfigError, match="check_atol must be >= 0"):
        export_onnx(d, out, check_atol=float("nan"))
    monkeypatch.undo()
    monkeypatch.setitem(md.ARCHITECTURES, "gated_test", lambda cfg: GatedMean())
    assert export_onnx(d, out)["max_abs_diff"] < 1e-4 and out.read_bytes() != b"an earlier, good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "g.onnx"]


def test_onnx_loading_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such ONNX model"):
        load_detector(tmp_path / "missing.onnx", backend="onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError, match="not a loadable ONNX model"):
        load_detector(tmp_path / "junk.onnx", backend="onnx")
    # a valid ONNX graph that sddkit did not export (no logits output, no metadata)
    x = onnx.helper.make_tensor_value_info("waveform", onnx.TensorProto.FLOAT, ["b", 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["waveform"], ["y"])], "g", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "o.onnx")
    with pytest.raises(CheckpointError, match="no 'logits' output"):
        load_detector(tmp_path / "o.onnx", backend="onnx")
