"""Review 14 of ONNX export: the traced STFT is a matrix product with a windowed DFT basis, not an ONNX STFT node.

ONNX Runtime's STFT operator computes an n_fft that is not a power of two (400, 401) as a naive DFT with float32
twiddle factors of angles up to n_fft^2 / 2 steps, off by up to ~1e-4 rad: a tone leaked into every bin, and a
cosine-head LCNN's logits moved by 6e-4 (n_fft 401 failed the export's parity check; n_fft 400 passed it, on an
on-bin 440 Hz tone, and then scored a 1234.5 Hz tone 6e-4 away from PyTorch). The traced STFT also called
torch.stft with the deprecated ``return_complex=False``.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from sddkit.config import from_dict, to_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.features.spectral import (
    LogMel,
    LogMelConfig,
    _real_stft,
    power_spectrogram,
    pre_emphasis,
    stft,
    window_function,
)
from sddkit.scoring.api import TorchRunner
from sddkit.scoring.onnx_export import OnnxRunner, _ExportWrapper, export_onnx

WINDOW = 2720  # 18 frames: enough for the LCNN's four 2x2 pools
INFERENCE = {"window_samples": WINDOW, "threshold": 0.2, "calibration": {"a": 1.5, "b": 0.1}}
FRONTENDS = {"logmel": {"n_mels": 32}, "lfcc": {}, "logspec": {}}


def _export_tiny(tmp_path, frontend: str, n_fft: int):
    cfg = from_dict(
        DetectorConfig,
        {
            "frontend": {"name": frontend, "n_fft": n_fft, **FRONTENDS[frontend]},
            # the cosine head normalises a small embedding and scales it by 20: it magnifies feature differences
            "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 0, "head": "cosine"},
        },
    )
    torch.manual_seed(0)
    d = md.save_model_dir(tmp_path / "m", build_detector(cfg).eval(), model_config=to_dict(cfg), inference=INFERENCE)
    report = export_onnx(d, tmp_path / "m.onnx")  # raises when its own parity check fails
    return d, report


def _tone_and_noise() -> np.ndarray:
    t = np.arange(WINDOW) / 16000
    noise = 0.2 * np.random.default_rng(3).standard_normal(WINDOW)
    # off-bin tones: their leakage reaches every bin, where a DFT's rounding shows against a log floor
    return np.stack([0.7 * np.sin(2 * np.pi * 1234.5 * t), 0.5 * np.sin(2 * np.pi * 3001.3 * t), noise]).astype(
        np.float32
    )


@pytest.mark.parametrize(
    ("frontend", "n_fft"),
    [
        ("logmel", 401),
        ("logmel", 400),
        ("logmel", 512),
        ("lfcc", 401),
        ("lfcc", 512),
        ("logspec", 401),
        ("logspec", 512),
    ],
)
def test_spectral_models_match_pytorch_on_tones_and_noise_for_any_n_fft(tmp_path, frontend, n_fft):
    d, report = _export_tiny(tmp_path, frontend, n_fft)
    assert report["exporter"] == "torchscript" and report["opset"] == 17 and report["max_abs_diff"] < 1e-4
    x = _tone_and_noise()
    got = OnnxRunner(tmp_path / "m.onnx")(x)[0]
    ref = TorchRunner(md.load_model_dir(d).model)(x)[0]
    # before: up to 6e-4 on the tones with n_fft 400 and 401 (ONNX Runtime's naive DFT)
    assert np.isfinite(got).all() and np.abs(got - ref).max() < 1e-4


@pytest.mark.parametrize(("n_fft", "win_length", "hop_length"), [(401, 401, 160), (400, 320, 160), (512, 400, 160)])
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_traced_stft_is_torch_stft_to_float_rounding(n_fft, win_length, hop_length, center, dtype):
    window = window_function("hann", win_length)
    x = torch.randn(2, 3, 2000, dtype=dtype)

    def real(y: torch.Tensor) -> torch.Tensor:
        return _real_stft(y, n_fft=n_fft, hop_length=hop_length, window=window, center=center)

    traced = torch.jit.trace(real, x, check_trace=False)
    assert "aten::stft" not in {n.kind() for n in traced.graph.nodes()}
    ref = torch.view_as_real(stft(x, n_fft=n_fft, hop_length=hop_length, window=window, center=center))
    ref = ref.movedim(-1, -3)  # (..., 2, bins, frames)
    scale = ref.abs().max()
    for got in (real(x), traced(x)):
        assert got.shape == ref.shape and got.dtype == dtype
        assert (got - ref).abs().max() / scale < (1e-5 if dtype == torch.float32 else 1e-12)
    y = torch.randn(4, 3, 2000, dtype=dtype)  # another batch through the traced graph
    ref_y = torch.view_as_real(stft(y, n_fft=n_fft, hop_length=hop_length, window=window, center=center))
    assert (traced(y) - ref_y.movedim(-1, -3)).abs().max() / ref_y.abs().max() < 1e-5


@pytest.mark.parametrize(
    ("n_fft", "win_length", "hop_length", "length"),
    [(17, 12, 5, 4), (16, 16, 7, 8), (16, 16, 20, 50), (9, 9, 3, 9)],  # zero padding, hop > window, one frame
)
def test_the_traced_stft_frames_short_signals_and_long_hops_as_torch_stft(n_fft, win_length, hop_length, length):
    window = window_function("hamming", win_length)
    x = torch.randn(2, length)
    for center in (True, False) if length >= n_fft else (True,):
        ref = torch.view_as_real(stft(x, n_fft=n_fft, hop_length=hop_length, window=window, center=center))
        got = _real_stft(x, n_fft=n_fft, hop_length=hop_length, window=window, center=center)
        assert got.shape == ref.movedim(-1, -3).shape
        assert torch.allclose(got, ref.movedim(-1, -3), atol=1e-5)


def test_export_calls_torch_stft_only_complex_and_warns_of_no_return_complex(tmp_path, monkeypatch):
    calls = []
    real_stft = torch.stft

    def spy(*args, **kwargs):
        calls.append(kwargs.get("return_complex"))
        return real_stft(*args, **kwargs)

    monkeypatch.setattr(torch, "stft", spy)
    _export_tiny(tmp_path, "logmel", 512)
    # the export's parity check runs the eager model (complex STFT); the traced graph used return_complex=False
    assert calls and set(calls) == {True}

    model = _ExportWrapper(md.load_model_dir(tmp_path / "m").model, []).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            model, (torch.randn(2, WINDOW),), str(tmp_path / "direct.onnx"), dynamo=False, opset_version=17
        )
    assert not [w for w in caught if "return_complex" in str(w.message)]


def test_eager_features_are_still_torch_stft_bit_for_bit():
    # the matrix product is for traced graphs only: eager (training, torch scoring) features are unchanged
    x = 0.1 * torch.randn(2, 4000)
    window = window_function("hann", 400)
    spec = torch.stft(x, 512, 160, 400, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    assert torch.equal(power_spectrogram(x, n_fft=512, hop_length=160, window=window), power)
    mel = LogMel(LogMelConfig(n_fft=401))
    y = pre_emphasis(x, mel.cfg.pre_emphasis)
    spec = torch.stft(y, 401, 160, 400, window=mel.window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    want = torch.log(torch.matmul(mel.filterbank, power) + mel.cfg.log_floor)
    assert torch.equal(mel(x), want)


def test_every_bin_and_frame_of_a_traced_log_mel_matches_eager_for_odd_and_even_n_fft():
    x = 0.3 * torch.randn(3, 4000)
    for n_fft, win in itertools.product((401, 512), (320, 400)):
        mel = LogMel(LogMelConfig(n_fft=n_fft, win_length=win, n_mels=40)).eval()
        traced = torch.jit.trace(mel, x, check_trace=False)
        assert "aten::stft" not in {n.kind() for n in traced.inlined_graph.nodes()}
        assert (traced(x) - mel(x)).abs().max() < 1e-4


def test_export_check_has_a_tone_between_the_bins_of_usual_n_fft():
    # the check's 440 Hz tone falls on a bin at n_fft 400, where an imprecise DFT leaks nothing it could show;
    # the export check carries a second tone away from every bin of the usual sizes
    from sddkit.scoring.onnx_export import _check_windows

    labels, batch = _check_windows(64000)[-1]
    i = labels.index("a 1111.1 Hz tone")
    spectrum = np.abs(np.fft.rfft(batch[i].double().numpy()))
    freq = np.fft.rfftfreq(64000, 1 / 16000)[spectrum.argmax()]
    assert abs(freq - 1111.1) < 0.5
    for n_fft in (320, 400, 401, 512, 1024, 2048):
        position = freq / (16000 / n_fft)
        assert abs(position - round(position)) > 0.1, n_fft
