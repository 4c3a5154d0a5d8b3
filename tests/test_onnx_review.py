"""Review of ONNX export: windows the random-noise parity check never saw, output paths, metadata."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from sddkit.cli.main import main
from sddkit.config import from_dict, to_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import CheckpointError
from sddkit.scoring.api import TorchRunner, load_detector
from sddkit.scoring.onnx_export import OnnxRunner, export_onnx

WINDOW = 4000


def _model_dir(path, detector: dict, metadata: dict | None = None):
    cfg = from_dict(DetectorConfig, detector)
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    inference = {"window_samples": WINDOW, "threshold": 0.2, "calibration": {"a": 1.5, "b": 0.1}}
    return md.save_model_dir(path, model, model_config=to_dict(cfg), inference=inference, metadata=metadata)


def _structured_windows() -> dict[str, np.ndarray]:
    """Windows a long recording really contains: digital silence, a pure tone, a DC offset, near silence."""
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW) / 16000
    return {
        "zeros": np.zeros(WINDOW),
        "half_silent": np.concatenate([np.zeros(WINDOW // 2), 0.1 * rng.standard_normal(WINDOW - WINDOW // 2)]),
        "sine": 0.5 * np.sin(2 * np.pi * 440 * t),
        "tiny": 1e-6 * rng.standard_normal(WINDOW),
        "dc": 0.3 + 0.01 * rng.standard_normal(WINDOW),
    }


@pytest.mark.parametrize(
    ("name", "frontend", "backend"),
    [
        ("lfcc", {"name": "lfcc"}, {"name": "lcnn", "channels": 4}),  # log_floor 1e-10
        ("logspec", {"name": "logspec"}, {"name": "lcnn", "channels": 4}),  # log_floor 1e-10
        ("lfb", {"name": "lfb", "log_floor": 1e-10, "normalize": True}, {"name": "lcnn", "channels": 4}),
    ],
)
def test_spectral_models_match_pytorch_on_silence_tones_and_offsets(tmp_path, name, frontend, backend):
    # The torch.export path ran onnxscript's optimiser, whose "x + 0 -> x" rule matches any constant within
    # 1e-8 of zero: the log floors of 1e-10 were deleted, so digital silence gave log(0) and NaN scores (and
    # quiet or DC-heavy windows differed), while the parity check on random noise passed.
    d = _model_dir(tmp_path / name, {"frontend": frontend, "backend": backend})
    export_onnx(d, tmp_path / f"{name}.onnx")
    windows = _structured_windows()
    x = np.stack(list(windows.values())).astype(np.float32)
    got = OnnxRunner(tmp_path / f"{name}.onnx")(x)[0]
    ref = TorchRunner(md.load_model_dir(d).model)(x)[0]
    assert np.isfinite(ref).all()
    for i, kind in enumerate(windows):
        assert np.isfinite(got[i]).all(), f"{kind}: ONNX gives {got[i]}"
        assert np.abs(got[i] - ref[i]).max() < 1e-4, f"{kind}: ONNX {got[i]} vs torch {ref[i]}"


class Branchy(nn.Module):
    """A model whose traced graph takes a Python branch fixed at export: different on silence or at batch 1."""

    def __init__(self, on: str):
        super().__init__()
        self.on = on
        self.proj = nn.Linear(2, 2)

    def forward(self, x):
        feats = torch.stack([x.mean(1), x.std(1)], dim=1)
        if self.on == "silence" and bool((x.abs().amax(1) == 0).any()):
            feats = feats + 1.0
        if self.on == "batch1" and x.shape[0] == 1:
            feats = feats - 1.0
        logits = self.proj(feats)
        return DetectorOutput(logits=logits, score=logits[:, 1] - logits[:, 0], embedding=feats, stats={})


@pytest.mark.parametrize("on", ["silence", "batch1"])
def test_parity_check_covers_silent_windows_and_batch_one(tmp_path, monkeypatch, on):
    # The check compared torch and ONNX only on 3 windows of random noise: a graph that differs on a
    # silent window or at batch 1 (what `sdd score` runs for one short file) was written as "passing".
    monkeypatch.setitem(md.ARCHITECTURES, "branchy", lambda cfg: Branchy(on))
    torch.manual_seed(0)
    d = md.save_model_dir(
        tmp_path / "b", Branchy(on), model_config={}, architecture="branchy", inference={"window_samples": 400}
    )
    with pytest.raises(CheckpointError, match="differ from PyTorch"):
        export_onnx(d, tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


def test_export_into_a_directory_writes_model_onnx(tmp_path, capsys):
    # `--out DIR` (an existing folder) crashed with IsADirectoryError after the whole export; the
    # scoring side already reads DIR/model.onnx, so that is where the export goes.
    d = _model_dir(tmp_path / "m", {"frontend": "raw", "backend": "aasist_l"})
    out = tmp_path / "exported"
    out.mkdir()
    assert main(["export-onnx", "--model", str(d), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["out"] == str(out / "model.onnx") and (out / "model.onnx").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    det = load_detector(out, backend="onnx")
    assert det.inference.threshold == 0.2 and det.inference.calibration.a == 1.5


def test_provenance_metadata_travels_and_wrong_window_is_a_clear_error(tmp_path):
    # The torch backend reports the model directory's metadata (GET /v1/model shows it); the ONNX
    # file dropped it, so the same model served through onnxruntime showed "metadata": {}.
    meta = {"seed": 3, "val_eer": 0.125, "selection": "lowest val EER"}
    d = _model_dir(tmp_path / "m", {"frontend": "raw", "backend": "aasist_l"}, metadata=meta)
    export_onnx(d, tmp_path / "m.onnx")
    det_o, det_t = load_detector(tmp_path / "m.onnx", backend="onnx"), load_detector(d)
    assert det_t.info["metadata"] == meta
    assert det_o.info["metadata"] == meta
    assert det_o.info["merged_lora_layers"] == det_t.info["merged_lora_layers"] == 0
    # the graph takes windows of the exported length only: say so instead of onnxruntime's message
    runner = OnnxRunner(tmp_path / "m.onnx")
    with pytest.raises(CheckpointError, match=f"windows of {WINDOW} samples.*got 4400"):
        runner(np.zeros((2, WINDOW + 400), dtype=np.float32))
    with pytest.raises(CheckpointError, match=r"\(N, 4000\) windows"):
        runner(np.zeros(WINDOW, dtype=np.float32))


class BakedStat(nn.Module):
    """Right logits, and a statistic the traced graph freezes to the export example's value."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 2)

    def forward(self, x):
        feats = torch.stack([x.mean(1), x.std(1)], dim=1)
        gate = torch.softmax(feats, dim=1)
        level = torch.full((x.shape[0], 1), float(x.abs().mean()))  # a Python float: a constant once traced
        logits = self.proj(feats)
        return DetectorOutput(
            logits=logits,
            score=logits[:, 1] - logits[:, 0],
            embedding=feats,
            stats={"gate_weights": gate, "level": level},
        )


def test_a_statistic_the_graph_gets_wrong_is_dropped_not_exported(tmp_path, monkeypatch):
    # Only the logits were compared: a per-window statistic the graph computed wrongly (the MoLEx routing
    # statistics of a model exported through torch.export came out as zeros) went into `sdd score
    # --backend onnx` columns silently. Now it is left out of the graph and named in the report.
    monkeypatch.setitem(md.ARCHITECTURES, "baked", lambda cfg: BakedStat())
    torch.manual_seed(0)
    d = md.save_model_dir(
        tmp_path / "b", BakedStat(), model_config={}, architecture="baked", inference={"window_samples": 400}
    )
    report = export_onnx(d, tmp_path / "b.onnx")
    assert report["outputs"] == ["logits", "stat:gate_weights"]
    assert set(report["dropped_stats"]) == {"level"} and report["dropped_stats"]["level"] > 1e-4
    det_o, det_t = load_detector(tmp_path / "b.onnx", backend="onnx"), load_detector(d)
    assert det_o.weight_columns() == ["gate_w0", "gate_w1"]
    assert det_t.weight_columns() == ["gate_w0", "gate_w1", "level_0"]
    x = np.sin(np.arange(2000) / 7.0).astype(np.float32)
    assert det_o.score(x, 16000).weights["gate_weights"] == pytest.approx(
        det_t.score(x, 16000).weights["gate_weights"], abs=1e-5
    )


def test_an_export_inside_its_model_directory_must_still_be_that_model(tiny_stats, tmp_path):
    # `sdd export-onnx --out DIR` writes DIR/model.onnx beside config.json; a later recalibration or retraining
    # in DIR was then scored by the stale graph and settings without a word
    import json

    from sddkit.detectors import model_dir as md
    from sddkit.errors import CheckpointError
    from sddkit.scoring.onnx_export import export_onnx, load_onnx_detector

    model = tiny_stats(tmp_path / "m")
    export_onnx(model, model / "model.onnx")
    assert load_onnx_detector(model).info["weights_digest"] == md.load_model_dir(model).weights_digest
    config = json.loads((model / md.CONFIG_NAME).read_text())
    config.setdefault("inference", {})["threshold"] = 5.0
    (model / md.CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="inference settings .* changed: export it again"):
        load_onnx_detector(model)
    tiny_stats(model, seed=1)  # retrained in place
    with pytest.raises(CheckpointError, match="exported before its weights"):
        load_onnx_detector(model)
    (tmp_path / "elsewhere").mkdir()
    (model / "model.onnx").rename(tmp_path / "elsewhere" / "model.onnx")  # away from any config: taken as it is
    assert load_onnx_detector(tmp_path / "elsewhere").info["backend"] == "onnx"


def test_an_onnx_model_is_named_like_its_model_directory(tiny_stats, tmp_path):
    # GET /v1/model said "name": "model" (the file's stem) for DIR/model.onnx, where torch says DIR's name
    from sddkit.scoring.api import load_detector
    from sddkit.scoring.onnx_export import export_onnx

    model = tiny_stats(tmp_path / "lcnn")
    export_onnx(model, model)
    assert load_detector(model, backend="onnx").info["name"] == load_detector(model).info["name"] == "lcnn"
    shutil.copyfile(model / "model.onnx", tmp_path / "exported.onnx")  # the same graph away from its folder
    assert load_detector(tmp_path / "exported.onnx", backend="onnx").info["name"] == "exported"
