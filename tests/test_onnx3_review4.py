"""Review of ONNX parity on windows where float32 rounding, not the model, decided the features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sddkit.config import from_dict, to_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.features.spectral import LinearSpectrogram, LinearSpectrogramConfig
from sddkit.frontends.spectral import utterance_normalize
from sddkit.scoring.api import TorchRunner
from sddkit.scoring.onnx_export import OnnxRunner, export_onnx

WINDOW = 4000


def _tone(freq: float, amplitude: float, n: int = WINDOW) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(n) / 16000)


def test_quiet_bins_of_a_tone_are_its_leakage_not_fft_rounding_noise():
    # A float32 FFT's rounding error is ~1e-7 of the frame's energy in every bin, so most bins of a loud tone
    # (true power below 1e-10) held rounding noise: log(power + 1e-10) was off by up to 0.06 from the exact
    # value, and by other amounts in every FFT (ONNX Runtime: 0.16), which is what moved the logspec model's
    # ONNX score by 1e-3. The power spectrum is now computed in float64 and rounded at the end.
    spec = LinearSpectrogram(LinearSpectrogramConfig())
    x = torch.from_numpy(np.stack([_tone(1000, 0.9), _tone(440, 0.5)]).astype(np.float32))
    got = torch.log(spec.power(x).double() + 1e-10)
    exact = torch.log(spec.power(x.double()) + 1e-10)
    assert spec.power(x).dtype == torch.float32 and spec.power(x.double()).dtype == torch.float64
    assert (got - exact).abs().max().item() < 1e-5


def test_normalising_a_constant_row_gives_exactly_zero():
    # A bin at the log floor all along (digital silence) has variance 0, so CMVN divides by sqrt(1e-5): the
    # float32 rounding error of its mean (~1e-6 near log(1e-10) = -23) became features of ~1e-3 that differ
    # between torch and ONNX Runtime (and, over the 401 frames of a 4 s window, +-6e-4 in torch itself); a
    # logspec model with normalize: true failed its export on silence.
    x = torch.full((2, 257, 401), math.log(1e-10), dtype=torch.float32)
    x[1, :, 200:] = 0.5  # a row that does vary keeps its ordinary normalisation
    out = utterance_normalize(x)
    assert out.dtype == torch.float32
    assert out[0].abs().max().item() == 0.0
    ref = (x[1] - x[1].double().mean(-1, keepdim=True)) / (
        x[1].double().var(-1, keepdim=True, unbiased=False) + 1e-5
    ).sqrt()
    assert torch.allclose(out[1].double(), ref, atol=1e-6)


def _model_dir(path, frontend: dict, backend: dict):
    cfg = from_dict(DetectorConfig, {"frontend": frontend, "backend": backend})
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    return md.save_model_dir(path, model, model_config=to_dict(cfg), inference={"window_samples": WINDOW})


@pytest.mark.parametrize(
    ("frontend", "backend"),
    [
        ({"name": "logspec"}, {"name": "linear"}),
        # linear over CMVN features is refused (it can only learn a constant): CMVN's export is checked under an LCNN
        ({"name": "logspec", "normalize": True}, {"name": "lcnn", "channels": 4}),
    ],
    ids=["logspec", "logspec-cmvn"],
)
def test_logspec_linear_export_matches_pytorch_on_tones_and_silence(tmp_path, frontend, backend):
    # logspec + linear (mean/std pooling of every bin) differed by 8e-4 on the export check's 440 Hz tone and
    # 3e-3 on a loud 1 kHz tone (float32 FFT noise in the quiet bins), and with normalize: true by 7e-4 on
    # digital silence (CMVN of constant rows): the export refused these models.
    d = _model_dir(tmp_path / "m", frontend, backend)
    report = export_onnx(d, tmp_path / "m.onnx")
    assert report["max_abs_diff"] < 1e-4
    rng = np.random.default_rng(0)
    windows = {
        "1 kHz at 0.9": _tone(1000, 0.9),
        "440 Hz at 0.5": _tone(440, 0.5),
        "3 kHz at 0.01": _tone(3000, 0.01),
        "7 kHz at 1.0": _tone(7000, 1.0),
        "zeros": np.zeros(WINDOW),
        "near silence": 1e-6 * rng.standard_normal(WINDOW),
        "dc": 0.3 + 0.01 * rng.standard_normal(WINDOW),
    }
    x = np.stack(list(windows.values())).astype(np.float32)
    got = OnnxRunner(tmp_path / "m.onnx")(x)[0]
    ref = TorchRunner(md.load_model_dir(d).model)(x)[0]
    for i, kind in enumerate(windows):
        assert np.abs(got[i] - ref[i]).max() < 1e-4, f"{kind}: ONNX {got[i]} vs torch {ref[i]}"
