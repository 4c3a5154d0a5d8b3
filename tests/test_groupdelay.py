"""The modified group delay front-end (`mgd`): against an independent numpy computation, exact delays, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch

from sddkit.config import from_dict, to_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.errors import ConfigError
from sddkit.features.groupdelay import ModifiedGroupDelay, ModifiedGroupDelayConfig, dct_smoothing_matrix
from sddkit.features.spectral import LogMel
from sddkit.scoring.api import TorchRunner
from sddkit.scoring.onnx_export import OnnxRunner, export_onnx


def _numpy_mgd(x: np.ndarray, cfg: ModifiedGroupDelayConfig) -> np.ndarray:
    """Every bin's modified group delay, frame by frame, from the textbook formula (float64)."""
    x = np.append(x[0], x[1:] - cfg.pre_emphasis * x[:-1])
    half = cfg.n_fft // 2
    padded = np.pad(x, half, mode="reflect")
    window = scipy.signal.get_window(cfg.window, cfg.win_length, fftbins=True)
    left = (cfg.n_fft - cfg.win_length) // 2
    n = np.arange(cfg.win_length) - (half - left if cfg.delay_origin == "center" else 0)
    frames = 1 + len(x) // cfg.hop_length
    out = []
    for t in range(frames):
        seg = padded[t * cfg.hop_length + left : t * cfg.hop_length + left + cfg.win_length] * window
        X = np.fft.rfft(seg, cfg.n_fft) * np.exp(-2j * np.pi * np.arange(half + 1) * left / cfg.n_fft)
        Y = np.fft.rfft(seg * n, cfg.n_fft) * np.exp(-2j * np.pi * np.arange(half + 1) * left / cfg.n_fft)
        log_mag = 0.5 * np.log(np.abs(X) ** 2 + cfg.log_floor)
        coeffs = scipy.fft.dct(log_mag, norm="ortho")
        coeffs[cfg.smooth_coeffs :] = 0.0
        smooth = scipy.fft.idct(coeffs, norm="ortho")
        tau = (X.real * Y.real + X.imag * Y.imag) / np.exp(smooth) ** (2 * cfg.gamma)
        out.append(np.sign(tau) * np.abs(tau) ** cfg.alpha)
    return np.stack(out, axis=1)


def test_smoothing_is_a_truncated_orthonormal_dct():
    v = np.random.default_rng(0).standard_normal(257)
    coeffs = scipy.fft.dct(v, norm="ortho")
    coeffs[30:] = 0.0
    ref = scipy.fft.idct(coeffs, norm="ortho")
    got = (dct_smoothing_matrix(257, 30) @ torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)
    # keeping every coefficient smooths nothing
    np.testing.assert_allclose(dct_smoothing_matrix(16, 16).numpy(), np.eye(16), atol=1e-6)


@pytest.mark.parametrize("origin", ["center", "start"])
def test_every_bin_matches_an_independent_numpy_computation(origin):
    rng = np.random.default_rng(1)
    x = 0.05 * rng.standard_normal(3200)
    cfg = ModifiedGroupDelayConfig(n_filters=None, delay_origin=origin)
    got = ModifiedGroupDelay(cfg)(torch.from_numpy(x)).numpy()  # float64 in, float64 out
    ref = _numpy_mgd(x, cfg)
    assert got.shape == ref.shape == (257, 21)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("origin", "expected"), [("center", 37.0), ("start", 37.0 + 200)])
def test_an_impulse_has_its_delay_from_the_chosen_origin_in_every_bin(origin, expected):
    # With S = |X| exactly (every DCT coefficient kept, gamma 1) and no compression (alpha 1) the modified group
    # delay is the group delay itself: an impulse 37 samples after the frame's centre is delayed by 37 samples
    # at every frequency (measured from the 400-sample window's first sample: 37 + win_length / 2).
    cfg = ModifiedGroupDelayConfig(
        n_filters=None, smooth_coeffs=257, gamma=1.0, alpha=1.0, pre_emphasis=0.0, delay_origin=origin, log_floor=1e-30
    )
    x = torch.zeros(1600, dtype=torch.float64)
    x[5 * 160 + 37] = 1.0
    got = ModifiedGroupDelay(cfg)(x)[:, 5]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)  # the DCT basis is float32


def test_bands_average_bins_and_frames_match_the_other_features():
    cfg = ModifiedGroupDelayConfig()
    m = ModifiedGroupDelay(cfg)
    fb = m.filterbank
    assert fb.shape == (120, 257) and torch.allclose(fb.sum(dim=1), torch.ones(120))
    for length in (400, 16000, 16161, 64000):
        x = 0.1 * torch.randn(2, length)
        y = m(x)
        assert y.shape == (2, 120, LogMel().num_frames(length)) and y.dtype == torch.float32
        assert torch.isfinite(y).all()
    # the bands are the filterbank's averages of the per-bin values
    x = 0.1 * torch.randn(4000)
    per_bin = ModifiedGroupDelay(ModifiedGroupDelayConfig(n_filters=None))(x)
    assert torch.allclose(m(x), fb @ per_bin, atol=1e-5)


def test_silence_gives_finite_features_and_gradients():
    m = ModifiedGroupDelay()
    x = torch.zeros(1, 8000, requires_grad=True)
    y = m(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("alpha", 0.0, "alpha"),
        ("gamma", 1.5, "gamma"),
        ("smooth_coeffs", 300, "smooth_coeffs"),
        ("n_filters", 0, "n_filters"),
        ("delay_origin", "middle", "delay_origin"),
        ("f_max", 9000.0, "f_max"),
    ],
)
def test_bad_options_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModifiedGroupDelayConfig(**{field: value})
    with pytest.raises(ConfigError, match=message):
        from_dict(DetectorConfig, {"frontend": {"name": "mgd", field: value}, "backend": "lcnn"})


def trains_and_exports_with_parity(folder, frontend: dict, seed: int = 0):
    """A tiny LCNN on ``frontend``: gradients reach every parameter, and its ONNX export scores noise, a tone, digital
    silence and near silence as torch does (1e-4). Returns the model directory."""
    cfg = from_dict(DetectorConfig, {"frontend": frontend, "backend": {"name": "lcnn", "channels": 4}})
    torch.manual_seed(seed)
    model = build_detector(cfg)
    out = model(0.1 * torch.randn(3, 8000))
    out.logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)

    d = md.save_model_dir(
        folder, model.eval(), model_config=to_dict(cfg), inference={"window_samples": 4000, "threshold": 0.0}
    )
    export_onnx(d, folder.with_suffix(".onnx"))
    rng = np.random.default_rng(2)
    t = np.arange(4000) / 16000
    noise, tiny = 0.1 * rng.standard_normal(4000), 1e-6 * rng.standard_normal(4000)
    x = np.stack([noise, 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros(4000), tiny]).astype(np.float32)
    got = OnnxRunner(folder.with_suffix(".onnx"))(x)[0]
    ref = TorchRunner(md.load_model_dir(d).model)(x)[0]
    assert np.isfinite(ref).all() and np.abs(got - ref).max() < 1e-4
    return d


def test_a_detector_on_mgd_trains_and_exports_with_parity(tmp_path):
    trains_and_exports_with_parity(tmp_path / "m", {"name": "mgd", "normalize": True, "level_db": -27})
