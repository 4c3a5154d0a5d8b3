"""Review 13 of ONNX export: the spectral models go through the TorchScript exporter (opset 17), not torch.export.

The TorchScript exporter refused them twice: the complex STFT ("STFT does not currently support complex types"),
then, past it, the batch norm after a max-feature-map ("batch_norm for unknown channel size": ``chunk`` became a
Split of unknown sizes). Every spectral model, the bundled one included, took the torch.export path (5-6 s, or
15-20 s on a loaded machine, per export, and opset 18).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from sddkit.backends.lcnn import MaxFeatureMap
from sddkit.config import from_dict, to_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.features.spectral import power_spectrogram, window_function
from sddkit.scoring.api import TorchRunner, load_detector, resolve_model_path
from sddkit.scoring.onnx_export import OnnxRunner, export_onnx

WINDOW = 2720  # 18 frames: enough for the LCNN's four 2x2 pools
INFERENCE = {"window_samples": WINDOW, "threshold": 0.2, "calibration": {"a": 1.5, "b": 0.1}}


@pytest.mark.parametrize(
    ("frontend", "backend"),
    [
        ({"name": "logmel", "n_mels": 32, "normalize": True, "level_db": -27.0}, {"name": "lcnn", "channels": 4}),
        ({"name": "lfcc", "with_energy": True, "top_db": 60.0}, {"name": "resnet18", "width": 2}),
        ({"name": "logspec", "normalize": True}, {"name": "lcnn", "channels": 6, "lstm_layers": 0, "head": "cosine"}),
        ({"name": "lfb", "n_filters": 48, "normalize": True, "level_db": -27.0}, {"name": "lcnn", "channels": 4}),
    ],
    ids=["logmel-lcnn", "lfcc-resnet", "logspec-lcnn", "lfb-lcnn"],
)
def test_spectral_models_export_through_torchscript_and_match_pytorch(tmp_path, frontend, backend):
    cfg = from_dict(DetectorConfig, {"frontend": frontend, "backend": backend})
    torch.manual_seed(0)
    d = md.save_model_dir(tmp_path / "m", build_detector(cfg).eval(), model_config=to_dict(cfg), inference=INFERENCE)
    report = export_onnx(d, tmp_path / "m.onnx")
    assert report["exporter"] == "torchscript" and report["opset"] == 17
    assert report["max_abs_diff"] < 1e-4  # the export's own check: noise at batch 1 and 3, silence, tones, DC
    rng = np.random.default_rng(3)
    t = np.arange(WINDOW) / 16000
    x = np.stack([0.2 * rng.standard_normal(WINDOW), 0.7 * np.sin(2 * np.pi * 1234.5 * t), np.zeros(WINDOW)])
    got = OnnxRunner(tmp_path / "m.onnx")(x.astype(np.float32))[0]
    ref = TorchRunner(md.load_model_dir(d).model)(x.astype(np.float32))[0]
    assert np.isfinite(got).all() and np.abs(got - ref).max() < 1e-4


def test_the_bundled_model_exports_through_torchscript_and_scores_as_in_pytorch(tmp_path):
    # its own weights and architecture, on shorter windows than its 4 s (the test's time is the 4 s forwards)
    bundled = md.load_model_dir(resolve_model_path(None))
    d = md.save_model_dir(
        tmp_path / "m",
        bundled.model.eval(),
        model_config=bundled.model_config,
        architecture=bundled.architecture,
        inference=INFERENCE,
    )
    report = export_onnx(d, tmp_path / "m.onnx")
    assert report["exporter"] == "torchscript" and report["max_abs_diff"] < 1e-4
    x = (0.1 * np.random.default_rng(0).standard_normal(3 * WINDOW + 123)).astype(np.float32)
    ro = load_detector(tmp_path / "m.onnx", backend="onnx").score(x, 16000)
    rt = load_detector(d).score(x, 16000)
    assert ro.n_windows == rt.n_windows > 1 and ro.score == pytest.approx(rt.score, abs=1e-4)


def test_max_feature_map_with_known_channels_gives_the_same_values_and_exports_before_a_batch_norm(tmp_path):
    x = torch.randn(3, 8, 5, 7)
    assert torch.equal(MaxFeatureMap(4)(x), MaxFeatureMap()(x))  # bit for bit: the same halves, the same max
    # chunk's halves lost their channel count in the traced graph, and the batch norm after them was refused
    block = torch.nn.Sequential(MaxFeatureMap(4), torch.nn.BatchNorm2d(4, affine=False)).eval()
    out = tmp_path / "mfm.onnx"
    torch.onnx.export(
        block,
        (x,),
        str(out),
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        opset_version=17,
    )
    y = torch.randn(2, 8, 5, 7)
    with torch.inference_mode():
        ref = block(y).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": y.numpy()})[0]
    assert np.abs(got - ref).max() < 1e-5


def test_the_traced_power_spectrum_is_real_valued_and_the_eager_one_bit_for_bit():
    # traced, the STFT is a real matrix product with a DFT basis (the TorchScript exporter refuses complex tensors;
    # review 14: ONNX Runtime's STFT node was imprecise for n_fft not a power of two): the same numbers to float
    # rounding, while the eager power spectrum is the complex STFT's, bit for bit
    window = window_function("hann", 400)
    x = 0.1 * torch.randn(2, 4000)

    def power(w: torch.Tensor) -> torch.Tensor:
        return power_spectrogram(w, n_fft=512, hop_length=160, window=window)

    traced = torch.jit.trace(power, x, check_trace=False)
    kinds = {n.kind() for n in traced.graph.nodes()}
    assert "aten::matmul" in kinds
    assert not kinds & {"aten::stft", "aten::real", "aten::imag", "aten::view_as_real", "aten::abs"}
    spec = torch.stft(x, 512, 160, 400, window=window, center=True, pad_mode="reflect", return_complex=True)
    assert torch.equal(power(x), spec.real.square() + spec.imag.square())
    assert (traced(x) - power(x)).abs().max() < 1e-5 * power(x).max()
    y = 0.1 * torch.randn(3, 4000)  # another batch through the traced graph
    assert (traced(y) - power(y)).abs().max() < 1e-5 * power(y).max()
