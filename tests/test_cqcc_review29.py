"""The constant-Q front-ends ``cqt`` and ``cqcc`` (sddkit.features.cqt): the transform's bins, scale and framing, the
CQCC's resampling, DCT and deltas against an independent scipy computation, config errors, an LCNN detector over
each, and ONNX export parity (the traced matrix-product path)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import scipy.interpolate
import scipy.signal
import torch

from sddkit.config import from_dict, to_dict
from sddkit.detectors import model_dir as md
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.errors import ConfigError
from sddkit.features import CQCC, CQT, CQCCConfig, CQTConfig, LogMel
from sddkit.features.cqt import MATLAB_EPS, baseline_gamma, uniform_frequencies
from sddkit.registry import get_registry
from sddkit.scoring.api import TorchRunner
from sddkit.scoring.onnx_export import OnnxRunner, export_onnx

SR = 16000
CQT_DEFAULT = CQT()  # the plans it caches per input length are reused across tests
CQCC_STATIC = CQCC(CQCCConfig(with_deltas=False))


def _tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (amplitude * torch.sin(2 * math.pi * freq * t))[None]


def test_default_bins_are_the_baselines_96_per_octave_from_15_6_hz_below_nyquist():
    freqs = CQT_DEFAULT.frequencies.numpy()
    k = np.arange(freqs.size)
    np.testing.assert_allclose(freqs, 15.625 * 2.0 ** (k / 96), rtol=1e-12)
    # floor(96 * log2(8000 / 15.625)) + 1 = 865 candidates, less the two whose band (alpha f + gamma wide) passes 8 kHz
    assert CQT_DEFAULT.output_dim == freqs.size == 863
    alpha = 2 ** (1 / 96) - 2 ** (-1 / 96)
    assert freqs[-1] + (alpha * freqs[-1] + baseline_gamma(96)) / 2 <= SR / 2
    above = 15.625 * 2.0 ** (863 / 96)
    assert above + (alpha * above + baseline_gamma(96)) / 2 > SR / 2
    assert baseline_gamma(96) == pytest.approx(228.7 * alpha) and baseline_gamma(96) == pytest.approx(3.3026, abs=1e-4)
    other = CQT(CQTConfig(bins_per_octave=12, f_min=32.7, f_max=4000.0))
    assert other.output_dim == math.floor(12 * math.log2(4000 / 32.7)) + 1
    np.testing.assert_allclose(other.frequencies.numpy(), 32.7 * 2.0 ** (np.arange(other.output_dim) / 12), rtol=1e-12)


@pytest.mark.parametrize("freq", [31.0, 97.0, 440.0, 1234.5, 3000.0, 7000.0])
def test_a_tone_peaks_in_the_bin_whose_centre_is_nearest(freq):
    log_power = CQT_DEFAULT(_tone(freq))[0, :, 20:-20].mean(dim=-1)  # frames away from the reflected ends
    freqs = CQT_DEFAULT.frequencies.numpy()
    assert int(log_power.argmax()) == int(np.abs(freqs - freq).argmin())


def test_a_tone_at_a_bin_centre_has_power_a_squared_over_4_whatever_the_length():
    # 1000 Hz = 15.625 * 2^(576 / 96), bin 576's centre
    for seconds in (1.0, 3.0):  # frames 40 hops from the ends: bin 576's kernel's main lobe reaches 110 ms
        power = CQT_DEFAULT.power(_tone(1000.0, seconds, amplitude=0.5))[0, 576, 40:-40]
        torch.testing.assert_close(power, torch.full_like(power, 0.25**2 / 1), rtol=2e-3, atol=0)
    # and a bin an octave away hardly sees it
    assert float(CQT_DEFAULT.power(_tone(1000.0))[0, 480, 10:-10].max()) < 1e-6


@pytest.mark.parametrize("length", [1, 159, 160, 1601, 16000, 64000])
def test_frames_are_the_stft_features_frames(length):
    x = torch.randn(2, length, generator=torch.Generator().manual_seed(length))
    expected = LogMel()(x).shape[-1]
    assert expected == 1 + length // 160
    assert CQT_DEFAULT(x).shape == (2, 863, expected) and CQT_DEFAULT.num_frames(length) == expected
    assert CQCC_STATIC(x).shape == (2, 20, expected)


def test_frame_t_is_centred_on_sample_t_times_hop_in_every_bin():
    """The kernels are centred (zero-phase envelopes), so a click at sample 8000 peaks at frame 50 from 15 Hz to 8 kHz,
    where the STFT features centre frame 50 too."""
    x = torch.zeros(1, 2 * SR, dtype=torch.float64)
    x[0, 8000] = 1.0
    assert set(CQT_DEFAULT.power(x)[0].argmax(dim=-1).tolist()) == {50}


def test_a_gain_change_shifts_the_log_cqt_by_a_constant():
    x = 0.1 * torch.randn(1, SR, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = CQT_DEFAULT(0.25 * x) - CQT_DEFAULT(x)
    # exactly, but for the log floor (2.2e-16) where the power is tiny: at the reflected ends a bin's coefficient of
    # the even signal is real and can pass close to zero
    above_floor = CQT_DEFAULT.power(0.25 * x) > 1e-9
    assert float(above_floor.double().mean()) > 0.95
    torch.testing.assert_close(
        shift[above_floor], torch.full_like(shift[above_floor], 2 * math.log(0.25)), atol=1e-6, rtol=0
    )
    assert CQT_DEFAULT(x).dtype == torch.float64 and CQT_DEFAULT(x.float()).dtype == torch.float32


def test_cqcc_is_the_spline_resampling_and_dct_of_the_log_cqt():
    """Against scipy, frame by frame: a not-a-knot cubic spline (MATLAB's 'spline') from the bins' frequencies onto
    f_min + j * f_min / d up to the top bin, then the orthonormal DCT-II (MATLAB's dct), first coefficients kept."""
    x = 0.1 * torch.randn(1, 4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    log_cqt = CQT_DEFAULT(x)[0].numpy()  # (863, frames)
    freqs = CQT_DEFAULT.frequencies.numpy()
    grid = 15.625 + (15.625 / 16) * np.arange(int((freqs[-1] - 15.625) / (15.625 / 16)) + 1)
    assert grid.size == 8059 and grid[-1] <= freqs[-1] < grid[-1] + 15.625 / 16
    np.testing.assert_allclose(uniform_frequencies(CQCCConfig()), grid, rtol=1e-12)
    resampled = scipy.interpolate.CubicSpline(freqs, log_cqt, axis=0, bc_type="not-a-knot")(grid)
    ceps = scipy.fft.dct(resampled, type=2, norm="ortho", axis=0)
    np.testing.assert_allclose(CQCC_STATIC(x)[0].numpy(), ceps[:20], rtol=1e-9, atol=1e-7)
    without_c0 = CQCC(CQCCConfig(with_deltas=False, with_c0=False))(x)[0].numpy()
    np.testing.assert_allclose(without_c0, ceps[1:21], rtol=1e-9, atol=1e-7)


def test_cqcc_deltas_are_the_baselines_normalised_regression_over_3_frames():
    x = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    full = CQCC()(x)[0].numpy()
    static = CQCC_STATIC(x)[0].numpy()

    def matlab_deltas(c: np.ndarray, hlen: int = 3) -> np.ndarray:  # CQCC_v1.0's Deltas.m, line for line
        win = np.arange(hlen, -hlen - 1, -1)
        xx = np.concatenate([np.repeat(c[:, :1], hlen, 1), c, np.repeat(c[:, -1:], hlen, 1)], axis=1)
        d = scipy.signal.lfilter(win, 1, xx, axis=1)[:, 2 * hlen :]
        return d / (2 * sum(k * k for k in range(1, hlen + 1)))

    d1 = matlab_deltas(static)
    np.testing.assert_allclose(full, np.concatenate([static, d1, matlab_deltas(d1)]), rtol=1e-9, atol=1e-8)


def test_front_end_shapes_with_and_without_deltas():
    reg = get_registry("frontend")
    x = torch.randn(2, 3200, generator=torch.Generator().manual_seed(3))
    for spec, dim in (
        ({"name": "cqcc"}, 60),
        (
            {"name": "cqcc", "f_min": 7.8125, "n_coeffs": 30},
            90,
        ),  # the ASVspoof 2019 script's cqcc(..., fs/2^10, 16, 29)
        ({"name": "cqt"}, 863),
        ({"name": "cqt", "bins_per_octave": 48, "normalize": True, "level_db": -27}, 431),
    ):
        fe = reg.build(spec)
        assert fe.output_dim == dim
        assert fe(x).features.shape == (2, dim, 21), spec
    assert reg.parse({"name": "cqcc"}).to_dict()["log_floor"] == MATLAB_EPS


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"name": "cqt", "bins_per_octave": 0}, "bins_per_octave must be an integer in"),
        ({"name": "cqt", "f_min": 5000.0, "f_max": 4000.0}, "need 0 < f_min < f_max"),
        ({"name": "cqt", "f_min": 0.0}, "need 0 < f_min < f_max"),
        ({"name": "cqt", "f_max": 9000.0}, "f_max must be in"),
        ({"name": "cqt", "gamma": -1.0}, "gamma must be >= 0"),
        ({"name": "cqt", "f_min": 1.0}, "reaches below 0 Hz: raise f_min or lower gamma"),
        ({"name": "cqt", "f_min": 7990.0}, "no bin's band fits below the Nyquist"),
        ({"name": "cqt", "hop_length": 0}, "hop_length must be > 0"),
        ({"name": "cqt", "sample_rate": 8000}, "sddkit trains and scores 16000 Hz audio"),
        ({"name": "cqcc", "d": 0}, "d \\(uniform samples in the first octave\\)"),
        ({"name": "cqcc", "n_coeffs": 0}, "n_coeffs must be in"),
        ({"name": "cqcc", "delta_width": 4}, "delta_width must be odd"),
        ({"name": "cqcc", "n_mels": 80}, "n_mels"),
    ],
)
def test_config_errors_name_the_field(spec, match):
    with pytest.raises(ConfigError, match=match):
        get_registry("frontend").parse(spec)


def test_feature_configs_raise_value_errors_too():
    with pytest.raises(ValueError, match="bins_per_octave"):
        CQTConfig(bins_per_octave=-3)
    with pytest.raises(ValueError, match="f_min"):
        CQCCConfig(f_min=8000.0)
    with pytest.raises(ValueError, match="n_coeffs must be in \\[1, 8058\\]"):
        CQCCConfig(n_coeffs=8059, with_c0=False)


def _detector(frontend: dict) -> DetectorConfig:
    return from_dict(
        DetectorConfig, {"frontend": frontend, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 0}}
    )


@pytest.mark.parametrize("name", ["cqt", "cqcc"])
def test_an_lcnn_detector_builds_runs_and_backpropagates_to_the_waveform(name):
    torch.manual_seed(0)
    model = build_detector(_detector({"name": name, "normalize": True})).train()
    x = (0.1 * torch.randn(2, 8000)).requires_grad_(True)
    out = model(x)
    assert out.logits.shape == (2, 2) and torch.isfinite(out.logits).all()
    out.logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().max()) > 0


# a bfloat16 detector computes the CQT from float32 samples (its float32 constant centre_hz keeps them so):
# tests/test_detector_review.py::test_a_half_precision_model_computes_its_spectral_features_as_the_float32_one


def test_the_traced_matrix_product_path_equals_the_fft_path():
    """What the ONNX graph computes (the FFTs as matrix products), checked without ONNX at a few lengths."""
    for length in (1, 4000):
        x = torch.randn(2, length, generator=torch.Generator().manual_seed(length), dtype=torch.float64)
        fft, matmul = CQT_DEFAULT.power(x), CQT_DEFAULT.power(x, matmul=True)
        torch.testing.assert_close(matmul, fft, rtol=1e-9, atol=1e-12 * float(fft.max()))


@pytest.mark.parametrize("name", ["cqt", "cqcc"])
def test_onnx_export_matches_pytorch(tmp_path, name):
    cfg = _detector({"name": name, "normalize": True})
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    inference = {"window_samples": 4000, "threshold": 0.0}
    folder = md.save_model_dir(tmp_path / name, model, model_config=to_dict(cfg), inference=inference)
    report = export_onnx(folder, tmp_path / f"{name}.onnx")  # its own check: silence, a tone, DC, noise
    assert report["exporter"] == "torchscript" and report["max_abs_diff"] <= 1e-4
    t = np.arange(4000) / SR
    rng = np.random.default_rng(0)
    x = np.stack([0.3 * np.sin(2 * np.pi * 187.0 * t), 0.05 * rng.standard_normal(4000), np.zeros(4000)])
    x = x.astype(np.float32)
    got = OnnxRunner(tmp_path / f"{name}.onnx")(x)[0]
    ref = TorchRunner(md.load_model_dir(folder).model)(x)[0]
    assert np.isfinite(ref).all() and np.abs(got - ref).max() < 1e-4


def test_an_empty_batch_gives_empty_features():
    assert CQT_DEFAULT(torch.zeros(0, 1600)).shape == (0, 863, 11)
    assert CQCC()(torch.zeros(0, 1600)).shape == (0, 60, 11)
