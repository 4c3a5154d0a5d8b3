"""Review of ONNX export: models the tracer gets wrong must give one clear error, or an export that scores right."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from torch import Tensor, nn

from sddkit.detectors import model_dir as md
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import CheckpointError, ConfigError
from sddkit.scoring.api import load_detector
from sddkit.scoring.onnx_export import OnnxRunner, export_onnx

WINDOW = 400


def _features(x: Tensor) -> Tensor:
    return torch.stack([x.mean(1), x.std(1)], dim=1)


def _output(logits: Tensor, feats: Tensor, stats: dict[str, Tensor] | None = None) -> DetectorOutput:
    return DetectorOutput(logits=logits, score=logits[:, 1] - logits[:, 0], embedding=feats, stats=stats or {})


class _TwoFeatureModel(nn.Module):
    """A toy detector: two features of each window (mean, std) through one linear layer, in ``forward``."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 2)


class BatchLevelStat(_TwoFeatureModel):
    """Logits per window, and a batch-level (2,) usage vector: per window only when the batch is 2."""

    def forward(self, x: Tensor) -> DetectorOutput:
        feats = _features(x)
        logits = self.proj(feats)
        return _output(logits, feats, {"usage": torch.softmax(logits, 1).mean(0), "gate_weights": feats.softmax(1)})


class BakedBatch(_TwoFeatureModel):
    """``int(x.shape[0])`` freezes the export example's batch of 2 into the traced graph."""

    def forward(self, x: Tensor) -> DetectorOutput:
        feats = _features(x)
        return _output(self.proj(feats) + torch.zeros(int(x.shape[0]), 2), feats)


class ThroughNumpy(_TwoFeatureModel):
    """A forward that leaves torch: traced, it becomes a constant that ignores the waveform."""

    def forward(self, x: Tensor) -> DetectorOutput:
        feats = torch.from_numpy(np.tanh(_features(x).detach().numpy()))
        return _output(self.proj(feats), feats)


class OffsetBranch(_TwoFeatureModel):
    """A Python branch the tracer fixes at export: only windows with a DC offset take it in torch."""

    def forward(self, x: Tensor) -> DetectorOutput:
        feats = _features(x)
        if bool((x.mean(1).abs() > 0.2).any()):
            feats = feats + (x.mean(1, keepdim=True).abs() > 0.2).float()
        return _output(self.proj(feats), feats)


def _save(tmp_path, monkeypatch, cls: type[nn.Module]):
    monkeypatch.setitem(md.ARCHITECTURES, cls.__name__, lambda cfg: cls())
    torch.manual_seed(0)
    inference = {"window_samples": WINDOW}
    return md.save_model_dir(tmp_path / "m", cls(), model_config={}, architecture=cls.__name__, inference=inference)


def test_a_batch_level_statistic_is_not_taken_for_a_per_window_one(tmp_path, monkeypatch):
    # The exporter chose the per-window statistics on its batch-2 example only: a (2,) batch-level vector
    # passed as per-window, and the parity check at batch 3 crashed with KeyError: 'usage'. Scoring probes
    # batches of 2 and 3 and leaves it out; the export now does the same.
    d = _save(tmp_path, monkeypatch, BatchLevelStat)
    report = export_onnx(d, tmp_path / "m.onnx")
    assert report["outputs"] == ["logits", "stat:gate_weights"]
    det_o, det_t = load_detector(tmp_path / "m.onnx", backend="onnx"), load_detector(d)
    assert det_o.weight_columns() == det_t.weight_columns() == ["gate_w0", "gate_w1"]


def test_a_graph_that_cannot_run_at_another_batch_size_is_a_clear_error(tmp_path, monkeypatch):
    # onnxruntime's own exception (with a C++ source path) escaped export_onnx, and `sdd export-onnx`
    # crashed with a traceback; scoring with such a graph raised it too.
    d = _save(tmp_path, monkeypatch, BakedBatch)
    with pytest.raises(CheckpointError, match=r"graph fails on random noise \(3 windows\): onnxruntime failed"):
        export_onnx(d, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    # such a graph made elsewhere: scoring names the failure too
    x = onnx.helper.make_tensor_value_info("waveform", onnx.TensorProto.FLOAT, ["b", 4])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["b", 4])
    two = onnx.numpy_helper.from_array(np.zeros((2, 4), dtype=np.float32), "two")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["waveform", "two"], ["logits"])], "g", [x], [y], [two]
    )
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8),
        tmp_path / "o.onnx",
    )
    runner = OnnxRunner(tmp_path / "o.onnx")
    assert runner(np.zeros((2, 4), dtype=np.float32))[0].shape == (2, 4)
    with pytest.raises(CheckpointError, match=r"onnxruntime failed on a batch of 3 window\(s\): \[ONNXRuntimeError\]"):
        runner(np.zeros((3, 4), dtype=np.float32))


def test_a_forward_that_leaves_torch_is_not_frozen_into_a_constant(tmp_path, monkeypatch):
    # The TorchScript tracer folded the numpy detour into constants: a graph without the waveform input,
    # refused with "<out>.partial: the ONNX model's inputs are not ['waveform'] (not exported by sddkit?)".
    # Now that graph counts as a failed export, and torch.export (which traces numpy) is tried.
    pytest.importorskip("onnxscript")  # the torch.export exporter needs it
    d = _save(tmp_path, monkeypatch, ThroughNumpy)
    report = export_onnx(d, tmp_path / "m.onnx")
    assert report["exporter"] == "dynamo" and report["max_abs_diff"] < 1e-4
    det_o, det_t = load_detector(tmp_path / "m.onnx", backend="onnx"), load_detector(d)
    rng = np.random.default_rng(0)
    scores = []
    for scale in (0.05, 0.5):
        x = (scale * rng.standard_normal(2000)).astype(np.float32)
        ro, rt = det_o.score(x, 16000), det_t.score(x, 16000)
        assert ro.score == pytest.approx(rt.score, abs=1e-4)
        scores.append(ro.score)
    assert scores[0] != pytest.approx(scores[1], abs=1e-3)  # it reads the waveform


def test_a_parity_failure_names_the_window_that_differs(tmp_path, monkeypatch):
    # The message named the whole batch ("silence, half silence, a tone, a DC offset, near silence,
    # clipped noise"), leaving the user to guess which kind of audio the graph gets wrong.
    d = _save(tmp_path, monkeypatch, OffsetBranch)
    with pytest.raises(CheckpointError, match=r"differ from PyTorch by .* on a DC offset; not written"):
        export_onnx(d, tmp_path / "m.onnx")


def test_the_onnx_backend_refuses_a_device_it_would_not_use(tmp_path, capsys):
    # load_detector(..., device="cuda", backend="onnx") ran on the CPU without a word where torch sees a GPU,
    # and where it sees none failed with "this torch sees no CUDA device", a reason that has nothing to do
    # with onnxruntime; `sdd score --backend onnx` skipped its own device check on purpose, then hit that one.
    from scoring_support import write_noise_wav

    from sddkit.cli.main import main

    with pytest.raises(ConfigError, match=r"device 'cuda': the onnx backend runs on the CPU"):
        load_detector(tmp_path / "m.onnx", device="cuda", backend="onnx")
    wav = write_noise_wav(tmp_path / "a.wav", 0.6, seed=0)
    args = ["score", str(wav), "--model", str(tmp_path / "m.onnx"), "--backend", "onnx", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "s.csv"), "--device", "cuda:0"]) == 2
    assert "device 'cuda:0': the onnx backend runs on the CPU" in capsys.readouterr().err


def test_a_window_too_short_for_the_model_is_one_clear_error(tmp_path, capsys):
    # The model's own ValueError on the export example ("LCNN needs at least 16 frames") escaped as a
    # traceback through the exporter's probe forward.
    from scoring_support import save_tiny_lcnn

    from sddkit.cli.main import main

    model = save_tiny_lcnn(tmp_path / "m", inference={"window_samples": 200})
    assert main(["export-onnx", "--model", str(model), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "fails on windows of 200 samples" in err and "LCNN needs at least 16 frames" in err
    assert "Traceback" not in err and not (tmp_path / "m.onnx").exists()


def test_the_python_export_refuses_an_out_that_is_not_an_onnx_file(tmp_path):
    # the CLI refused it, export_onnx(...) wrote the graph over whatever file `out` named (a model's config.json)
    from scoring_support import save_tiny_lcnn

    model = save_tiny_lcnn(tmp_path / "m")
    config = model / "config.json"
    before = config.read_bytes()
    with pytest.raises(ConfigError, match=r"\.onnx file or an existing folder"):
        export_onnx(model, config)
    assert config.read_bytes() == before


def test_an_opset_raised_by_the_torch_export_exporter_is_reported_against_the_one_asked(tmp_path, monkeypatch, capsys):
    # --opset 17 on a model only torch.export handles wrote opset 18 with nothing but the report's opset to say so
    pytest.importorskip("onnxscript")
    from sddkit.cli.main import main

    d = _save(tmp_path, monkeypatch, ThroughNumpy)
    default = export_onnx(d, tmp_path / "a.onnx")
    assert default["opset"] == 18 and "requested_opset" not in default  # the default asks for nothing in particular
    assert main(["export-onnx", "--model", str(d), "--out", str(tmp_path / "b.onnx"), "--opset", "17"]) == 0
    out = capsys.readouterr()
    assert '"requested_opset": 17' in out.out and '"opset": 18' in out.out
    assert "wrote opset 18, not --opset 17" in out.err
