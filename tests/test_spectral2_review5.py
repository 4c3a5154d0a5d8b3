"""Second review of the spectral features: float64 precision of the window, LFCC-LCNN's log energy as c0."""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.signal
import torch

from sddkit.config import from_dict
from sddkit.features import LFCC, LFCCConfig, LinearSpectrogram, LogMel, LogMelConfig, mel_filterbank
from sddkit.registry import get_registry

SR = 16000


def _power_reference(x: np.ndarray, *, n_fft: int, hop: int, win_length: int, window: str) -> np.ndarray:
    """Pre-emphasis 0.97, reflect-padded centred frames, periodic window centred in n_fft: (bins, frames)."""
    y = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    w = scipy.signal.get_window(window, win_length, fftbins=True)
    left = (n_fft - win_length) // 2
    w = np.pad(w, (left, n_fft - win_length - left))
    y = np.pad(y, n_fft // 2, mode="reflect")
    frames = np.stack([y[t * hop : t * hop + n_fft] for t in range(1 + len(x) // hop)], axis=1)
    return np.abs(np.fft.rfft(frames * w[:, None], axis=0)) ** 2


def test_float64_input_gives_float64_accurate_features() -> None:
    # The float32 window buffer (torch computes the Hann window in float32: errors of ~2e-7) leaked into every
    # bin: a float64 log spectrogram of a tone was 0.017 off in its quiet bins, and a float64 log-Mel of speech
    # 3e-5 off in its quiet bands, where float64 arithmetic is good to ~1e-9.
    t = np.arange(SR) / SR
    tone = 0.9 * np.sin(2 * np.pi * 1000 * t)
    ref = np.log(_power_reference(tone, n_fft=512, hop=160, win_length=400, window="hann") + 1e-10)
    out = LinearSpectrogram()(torch.from_numpy(tone)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)

    rng = np.random.default_rng(0)
    noise = np.cumsum(rng.standard_normal(SR // 2)) * 1e-3  # brown noise: high bands far below low ones
    cfg = LogMelConfig()
    fb = mel_filterbank(n_mels=80, n_fft=512, sample_rate=SR, f_min=20.0, f_max=7600.0).double().numpy()
    ref = np.log(fb @ _power_reference(noise, n_fft=512, hop=160, win_length=400, window="hann") + 1e-6)
    out = LogMel(cfg)(torch.from_numpy(noise)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)


def test_float32_features_still_use_the_float32_window_buffer() -> None:
    # the float64 window is for float64 work only: float32 LogMel/LFCC (and their exported graphs) are unchanged
    x = torch.randn(2, 4000)
    mel = LogMel()
    assert mel.window.dtype == torch.float32
    power = mel.power(x)
    y = torch.cat([x[..., :1], x[..., 1:] - 0.97 * x[..., :-1]], dim=-1)
    spec = torch.stft(y, 512, 160, 400, window=mel.window, center=True, pad_mode="reflect", return_complex=True)
    torch.testing.assert_close(power, spec.abs().square(), rtol=1e-5, atol=1e-6)


def _lfcc_reference(x: np.ndarray, *, with_energy: bool) -> np.ndarray:
    power = _power_reference(x, n_fft=512, hop=160, win_length=320, window="hamming")  # (257, frames)
    bins = np.arange(257) * SR / 512
    edges = np.linspace(0, SR / 2, 22)
    fb = np.stack(
        [
            np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
            for lo, c, hi in zip(edges[:-2], edges[1:-1], edges[2:])
        ]
    )
    static = scipy.fft.dct(np.log10(fb @ power + 1e-10), norm="ortho", axis=0)[:20]
    if with_energy:  # ASVspoof 2021 LFCC-LCNN: log10 of the frame's power over n_fft replaces c0
        static[0] = np.log10(power.sum(axis=0) / 512 + 1e-10)
    padded = np.pad(static, ((0, 0), (1, 1)), mode="edge")
    d1 = padded[:, 2:] - padded[:, :-2]
    padded = np.pad(d1, ((0, 0), (1, 1)), mode="edge")
    d2 = padded[:, 2:] - padded[:, :-2]
    return np.concatenate([static, d1, d2])


def test_lfcc_can_replace_c0_by_the_frame_log_energy_as_the_lfcc_lcnn_baseline() -> None:
    # The LCNN back-end and the recipes call `frontend: lfcc` the LFCC-LCNN baseline, whose front-end replaces c0
    # by the frame's log energy (with_energy=True); there was no way to ask for it.
    rng = np.random.default_rng(1)
    x = rng.standard_normal(SR // 2) * 0.1
    x[2000:4000] = 0.0  # a silent stretch: the energy sits at its floor there
    with_energy = LFCC(from_dict(LFCCConfig, {"with_energy": True}))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(with_energy, _lfcc_reference(x, with_energy=True), atol=1e-6, rtol=0)
    default = LFCC()(torch.from_numpy(x)).numpy()  # c0 kept by default (the LFCC-GMM baseline)
    np.testing.assert_allclose(default, _lfcc_reference(x, with_energy=False), atol=1e-6, rtol=0)
    assert with_energy.shape == default.shape == (60, 1 + len(x) // 160)

    fe = get_registry("frontend").build({"name": "lfcc", "with_energy": True, "top_db": 30.0})
    feats = fe(torch.from_numpy(x).float()[None]).features[0]
    energy = feats[0]
    assert float(energy.max() - energy.min()) <= 3.0 + 1e-5  # top_db 30 floors it too (log10 units: 3)


def test_lfcc_with_energy_exports_to_onnx_with_parity(tmp_path) -> None:
    from sddkit.config import to_dict
    from sddkit.detectors import model_dir as md
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.scoring.api import TorchRunner
    from sddkit.scoring.onnx_export import OnnxRunner, export_onnx

    window = 4000
    cfg = from_dict(
        DetectorConfig, {"frontend": {"name": "lfcc", "with_energy": True}, "backend": {"name": "lcnn", "channels": 4}}
    )
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    inference = {"window_samples": window, "threshold": 0.2, "calibration": {"a": 1.5, "b": 0.1}}
    d = md.save_model_dir(tmp_path / "m", model, model_config=to_dict(cfg), inference=inference)
    export_onnx(d, tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    t = np.arange(window) / SR
    x = np.stack([np.zeros(window), 0.5 * np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(window)]).astype(
        np.float32
    )
    got = OnnxRunner(tmp_path / "m.onnx")(x)[0]
    ref = TorchRunner(md.load_model_dir(d).model)(x)[0]
    assert np.isfinite(got).all() and np.abs(got - ref).max() < 1e-4
