from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch

from sddkit.config import from_dict, to_dict
from sddkit.errors import ConfigError
from sddkit.features import (
    LFCC,
    LFCCConfig,
    LinearSpectrogram,
    LinearSpectrogramConfig,
    LogLinearFilterbank,
    LogLinearFilterbankConfig,
    LogMel,
    LogMelConfig,
    dct_matrix,
    deltas,
    hz_to_mel,
    linear_filterbank,
    mel_filterbank,
    mel_to_hz,
    pre_emphasis,
    stft,
    window_function,
)
from sddkit.registry import get_registry

SR = 16000


def _sine(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(round(SR * seconds), dtype=torch.float64) / SR
    return amp * torch.sin(2 * torch.pi * freq * t)


# --- filterbanks ------------------------------------------------------------------------------------


def test_mel_scale_reference_values_and_inverse():
    assert abs(float(hz_to_mel(torch.tensor(1000.0), "htk")) - 1000.0) < 0.05  # HTK: 1 kHz ~ 1000 mel
    assert abs(float(hz_to_mel(torch.tensor(1000.0), "slaney")) - 15.0) < 1e-9  # 1 kHz / (200/3 Hz)
    assert abs(float(hz_to_mel(torch.tensor(6400.0), "slaney")) - 42.0) < 1e-9  # 27 log-steps of 6.4^(1/27)
    freqs = torch.tensor([0.0, 20.0, 500.0, 1000.0, 3000.0, 7600.0], dtype=torch.float64)
    for scale in ("htk", "slaney"):
        back = mel_to_hz(hz_to_mel(freqs, scale), scale)
        assert torch.allclose(back, freqs, atol=1e-6)
        assert bool((hz_to_mel(freqs, scale).diff() > 0).all())


@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_mel_filterbank_hand_checks(scale):
    n_fft, f_min, f_max, n_mels = 512, 20.0, 7600.0, 80
    fb = mel_filterbank(n_mels=n_mels, n_fft=n_fft, sample_rate=SR, f_min=f_min, f_max=f_max, scale=scale)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == torch.float32
    assert bool((fb >= 0).all()) and bool((fb <= 1.0 + 1e-6).all())
    assert bool((fb.max(dim=1).values > 0).all())  # no empty filter
    bins = np.linspace(0, SR / 2, n_fft // 2 + 1)
    spacing = bins[1]
    edges = mel_to_hz(torch.linspace(*hz_to_mel(torch.tensor([f_min, f_max]), scale).tolist(), n_mels + 2), scale)
    edges = edges.numpy()
    for i, row in enumerate(fb.numpy()):
        lower, centre, upper = edges[i], edges[i + 1], edges[i + 2]
        assert abs(bins[row.argmax()] - centre) < spacing  # peaks at one of the two bins around its centre
        outside = (bins <= lower) | (bins >= upper)
        assert not row[outside].any()  # zero outside its band edges
    # nothing below f_min or above f_max
    assert not fb[:, bins < f_min].any() and not fb[:, bins > f_max].any()
    # centres increase with the filter index
    assert np.all(np.diff(fb.argmax(dim=1).numpy()) >= 0)


def test_slaney_area_norm():
    fb = mel_filterbank(n_mels=40, n_fft=2048, sample_rate=SR, scale="slaney", norm="slaney")
    spacing = SR / 2048
    areas = fb.sum(dim=1) * spacing
    # wide (high-frequency) triangles of height 2 / width integrate to ~1
    assert torch.allclose(areas[10:], torch.ones(30), atol=0.03)


def test_linear_filterbank_hand_values():
    # bins at 0,1,2,3,4 Hz; edges 0, 4/3, 8/3, 4
    fb = linear_filterbank(n_filters=2, n_fft=8, sample_rate=8)
    expected = torch.tensor([[0.0, 0.75, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.75, 0.0]])
    assert torch.allclose(fb, expected, atol=1e-6)
    fb20 = linear_filterbank(n_filters=20, n_fft=512, sample_rate=SR)
    centres = fb20.argmax(dim=1).float()
    assert torch.allclose(centres.diff(), torch.full((19,), centres.diff().mean().item()), atol=1.0)


def test_dct_matches_scipy_and_is_orthonormal():
    d = dct_matrix(20, 20).double()
    assert torch.allclose(d @ d.T, torch.eye(20, dtype=torch.float64), atol=1e-6)
    x = np.random.default_rng(0).standard_normal(20)
    np.testing.assert_allclose(dct_matrix(20, 12).double().numpy() @ x, scipy.fft.dct(x, norm="ortho")[:12], atol=1e-5)


# --- STFT -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("center", [False, True])
def test_stft_matches_numpy_fft(center):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000)
    n_fft, win_length, hop = 512, 400, 160
    window = window_function("hann", win_length, dtype=torch.float64)
    out = stft(torch.from_numpy(x), n_fft=n_fft, hop_length=hop, window=window, center=center).numpy()
    padded = np.pad(x, n_fft // 2, mode="reflect") if center else x
    left = (n_fft - win_length) // 2
    full_window = np.zeros(n_fft)
    full_window[left : left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    n_frames = 1 + (len(padded) - n_fft) // hop
    assert out.shape == (n_fft // 2 + 1, n_frames)
    assert n_frames == (1 + len(x) // hop if center else 1 + (len(x) - n_fft) // hop)
    for t in range(n_frames):
        ref = np.fft.rfft(padded[t * hop : t * hop + n_fft] * full_window)
        np.testing.assert_allclose(out[:, t], ref, atol=1e-8)


def test_stft_matches_scipy_signal_on_sine():
    x = _sine(1000.0, 0.5)
    n_fft, hop = 256, 64
    out = stft(x, n_fft=n_fft, hop_length=hop, window=window_function("hann", n_fft, dtype=torch.float64), center=False)
    _, _, zxx = scipy.signal.stft(
        x.numpy(), fs=SR, window="hann", nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False
    )
    win_sum = scipy.signal.get_window("hann", n_fft).sum()  # scipy scales by 1 / sum(window)
    assert out.shape == zxx.shape
    np.testing.assert_allclose(out.abs().numpy(), np.abs(zxx) * win_sum, atol=1e-8)


def test_sine_peaks_in_the_right_bin():
    x = _sine(1000.0).float()[None]
    spec = LinearSpectrogram()(x)[0]
    # 1 kHz at 16 kHz with n_fft 512: bin 1000 / 31.25 = 32, in every frame away from the padded edges
    assert bool((spec[:, 2:-2].argmax(dim=0) == 32).all())
    mel = LogMel()(x)[0]
    cfg = LogMelConfig()
    lo, hi = hz_to_mel(torch.tensor([cfg.f_min, cfg.f_max])).tolist()
    centres = mel_to_hz(torch.linspace(lo, hi, cfg.n_mels + 2))[1:-1]
    expected_band = int((centres - 1000.0).abs().argmin())
    peak_bands = mel[:, 5:-5].argmax(dim=0)
    assert bool(((peak_bands - expected_band).abs() <= 1).all())


# --- feature modules --------------------------------------------------------------------------------


def test_shapes_for_4s_batch_and_unbatched():
    x = torch.randn(3, 4 * SR)
    for module, dim in ((LogMel(), 80), (LogLinearFilterbank(), 120), (LinearSpectrogram(), 257), (LFCC(), 60)):
        out = module(x)
        assert out.shape == (3, dim, 401) and out.dtype == torch.float32 and module.output_dim == dim
        assert module.num_frames(4 * SR) == 401
        single = module(x[1])
        assert single.shape == (dim, 401)
        assert torch.allclose(single, out[1], atol=1e-4)  # batching does not mix items
    assert LogMel(LogMelConfig(center=False)).num_frames(4 * SR) == 1 + (4 * SR - 512) // 160
    assert LogMel(LogMelConfig(center=False))(x).shape == (3, 80, 1 + (4 * SR - 512) // 160)


def test_short_input_still_works():
    assert LogMel()(torch.randn(2, 100)).shape == (2, 80, 1)  # shorter than n_fft // 2: constant padding


@pytest.mark.parametrize("module_cls", [LogMel, LogLinearFilterbank, LinearSpectrogram, LFCC])
def test_gradient_flows(module_cls):
    x = (0.1 * torch.randn(2, 8000)).requires_grad_()
    module_cls()(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_pre_emphasis_and_deltas_hand_values():
    assert torch.allclose(pre_emphasis(torch.tensor([1.0, 2.0, 3.0]), 0.5), torch.tensor([1.0, 1.5, 2.0]))
    ramp = torch.arange(6, dtype=torch.float32).expand(2, 6)  # (F=2, frames=6), x[t] = t
    d = deltas(ramp, 3)
    assert torch.equal(d[0], torch.tensor([1.0, 2.0, 2.0, 2.0, 2.0, 1.0]))  # edges replicated
    assert torch.equal(deltas(d, 3)[0], torch.tensor([1.0, 1.0, 0.0, 0.0, -1.0, -1.0]))
    d5 = deltas(ramp, 5)  # 1 * 2 + 2 * 4 = 10 in the interior
    assert torch.equal(d5[0, 2:4], torch.tensor([10.0, 10.0]))


def test_lfcc_matches_numpy_reference_pipeline():
    """LFCC recomputed step by step in numpy (pre-emphasis, Hamming 320/512, linear fbank, log10, DCT)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(SR // 2) * 0.1
    cfg = LFCCConfig()
    feats = LFCC(cfg)(torch.from_numpy(x)).numpy()
    assert feats.shape == (60, 1 + len(x) // 160)
    y = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    y = np.pad(y, 256, mode="reflect")
    win = np.zeros(512)
    win[96:416] = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(320) / 320)
    frames = np.stack([y[t * 160 : t * 160 + 512] * win for t in range(feats.shape[1])])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, 257)
    bins = np.linspace(0, SR / 2, 257)
    edges = np.linspace(0, SR / 2, 22)
    fb = np.stack(
        [
            np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
            for lo, c, hi in zip(edges[:-2], edges[1:-1], edges[2:])
        ]
    )
    static = scipy.fft.dct(np.log10(power @ fb.T + 1e-10), norm="ortho", axis=1)[:, :20].T
    np.testing.assert_allclose(feats[:20], static, atol=1e-6)
    padded = np.pad(static, ((0, 0), (1, 1)), mode="edge")
    np.testing.assert_allclose(feats[20:40], padded[:, 2:] - padded[:, :-2], atol=1e-6)


def test_float64_input_keeps_precision_and_autocast_is_disabled():
    x = torch.randn(1, 4000, dtype=torch.float64)
    assert LogMel()(x).dtype == torch.float64
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = LogMel()(x.float())
    assert out.dtype == torch.float32


def test_feature_configs_validate():
    with pytest.raises(ConfigError, match="win_length"):
        from_dict(LogMelConfig, {"win_length": 1024})
    with pytest.raises(ConfigError, match="f_max"):
        from_dict(LogMelConfig, {"f_max": 9000.0})
    with pytest.raises(ConfigError, match="n_coeffs"):
        from_dict(LFCCConfig, {"n_coeffs": 30})
    with pytest.raises(ConfigError, match="delta_width"):
        from_dict(LFCCConfig, {"delta_width": 4})
    with pytest.raises(ConfigError):
        from_dict(LinearSpectrogramConfig, {"window": "blackman"})
    assert LFCC(from_dict(LFCCConfig, {"with_deltas": False})).output_dim == 20
    assert LinearSpectrogram(from_dict(LinearSpectrogramConfig, {"n_fft": 1024, "win_length": 1024})).output_dim == 513


def test_filterbanks_are_not_in_state_dict():
    # derived from the config, so checkpoints of front-ends without parameters stay empty
    assert LogMel().state_dict() == {} and LFCC().state_dict() == {} and LogLinearFilterbank().state_dict() == {}


# --- front-ends -------------------------------------------------------------------------------------


def test_frontends_registered_and_shapes():
    reg = get_registry("frontend")
    assert {"logmel", "lfb", "logspec", "lfcc", "raw"} <= set(reg.names())
    x = torch.randn(2, 4 * SR)
    for name, dim in (("logmel", 80), ("lfb", 120), ("logspec", 257), ("lfcc", 60)):
        fe = reg.build({"name": name})
        assert fe.output_dim == dim
        out = fe(x)
        assert out.features.shape == (2, dim, 401) and out.aux_losses == {} and out.stats == {}
    raw = reg.build({"name": "raw"})
    assert raw.output_dim is None
    assert raw(x).features is x


def test_frontend_params_context_and_normalize():
    reg = get_registry("frontend")
    fe = reg.build({"name": "logmel", "n_mels": 40, "f_max": 8000.0}, sample_rate=16000, unused_context_key=1)
    assert fe.output_dim == 40 and fe(torch.randn(1, SR)).features.shape == (1, 40, 101)
    x = torch.randn(2, SR) * torch.tensor([[0.01], [1.0]])
    feats = reg.build({"name": "lfcc", "normalize": True})(x).features
    assert torch.allclose(feats.mean(dim=-1), torch.zeros(2, 60), atol=1e-4)
    # biased variance, as documented: max |std - 1| is ~5e-4 (the eps); the unbiased one is off by ~5e-3 over 101 frames
    assert torch.allclose(feats.std(dim=-1, unbiased=False), torch.ones(2, 60), atol=2e-3)
    plain = reg.build("logspec")(x).features
    assert plain.mean(dim=-1).abs().max() > 1.0  # off by default: raw log powers
    raw = reg.build({"name": "raw", "normalize": True})(x).features
    assert torch.allclose(raw.std(dim=-1, unbiased=False), torch.ones(2), atol=1e-3)
    with pytest.raises(ConfigError, match="unknown key"):
        reg.parse({"name": "logmel", "nmels": 40})
    spec = reg.parse({"name": "lfcc"})
    assert to_dict(spec.config)["normalize"] is False and spec.to_dict()["n_filters"] == 20
    assert reg.build(spec.to_dict()).output_dim == 60


@pytest.mark.parametrize(
    ("feature_cls", "cfg_cls", "db_per_unit"),
    [(LogMel, LogMelConfig, 10 / np.log(10)), (LinearSpectrogram, LinearSpectrogramConfig, 10 / np.log(10))],
)
def test_top_db_floors_each_item_below_its_own_maximum(feature_cls, cfg_cls, db_per_unit):
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 16000, generator=g) * torch.tensor([[0.1], [0.001]])  # two levels, 40 dB apart
    speech[:, 6000:10000] = 0.0  # digital silence in the middle
    plain = feature_cls(cfg_cls())(speech)
    clamped = feature_cls(cfg_cls(top_db=30.0))(speech)
    for p, c in zip(plain, clamped):
        floor = p.max() - 30.0 / db_per_unit
        torch.testing.assert_close(c, torch.maximum(p, floor))  # per item, relative to its own loudest bin
        assert c.min() >= floor - 1e-5 and (p < floor).any()  # the silence was below it, now it is not
        assert torch.equal(c[p >= floor], p[p >= floor])  # what lies above the floor is untouched
    # a quiet noise floor instead of digital silence reads the same once both are under top_db
    hissy = speech.clone()
    hissy[:, 6000:10000] = torch.randn(2, 4000, generator=g) * torch.tensor([[1e-4], [1e-6]])  # 60 dB down
    away = torch.ones(clamped.shape[-1], dtype=torch.bool)  # frames whose window straddles an edge differ
    for edge in (6000, 10000):
        away[max(0, (edge - 512) // 160) : (edge + 512) // 160 + 1] = False
    torch.testing.assert_close(feature_cls(cfg_cls(top_db=30.0))(hissy)[..., away], clamped[..., away])
    assert (feature_cls(cfg_cls())(hissy) - plain).abs().max() > 1.0


def test_top_db_in_lfcc_and_frontends_and_validation():
    x = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1)) * 0.05
    x[:, 4000:12000] = 0.0
    assert not torch.allclose(LFCC(LFCCConfig(top_db=20.0))(x), LFCC(LFCCConfig())(x))
    front = get_registry("frontend").build({"name": "logmel", "normalize": False, "top_db": 25.0})
    torch.testing.assert_close(front(x).features, LogMel(LogMelConfig(top_db=25.0))(x))
    for cfg_cls in (LogMelConfig, LinearSpectrogramConfig, LFCCConfig):
        with pytest.raises(ValueError, match="top_db"):
            cfg_cls(top_db=0.0)


@pytest.mark.parametrize("name", ["logmel", "lfb", "logspec", "lfcc"])
def test_spec_augment_masks_in_training_only(name):
    frontends = get_registry("frontend")
    plain = frontends.build({"name": name, "normalize": True})
    masked = frontends.build(
        {
            "name": name,
            "normalize": True,
            "spec_augment": {"freq_width": [4, 4], "num_freq_masks": 1, "num_time_masks": 0},
        }
    )
    wave = torch.randn(3, SR)
    reference = plain(wave).features
    masked.eval()  # scoring, validation and export never mask
    assert torch.equal(masked(wave).features, reference)

    masked.train()
    torch.manual_seed(0)
    first = masked(wave).features
    torch.manual_seed(0)
    assert torch.equal(masked(wave).features, first)  # the trainer's seed makes the masks reproducible
    changed = (first != reference).any(dim=-1)  # (B, F): bins touched anywhere in time
    zeroed = (first == 0).all(dim=-1)
    # exactly one band of 4 bins per item, zeroed over all frames; every other bin is untouched
    assert changed.sum(dim=1).tolist() == [4, 4, 4]
    assert torch.equal(changed, zeroed)
    bins = changed.nonzero()[:, 1].view(3, 4)
    assert torch.equal(bins - bins[:, :1], torch.arange(4).expand(3, 4))


def test_spec_augment_config_is_recorded_and_validated():
    spec = {"name": "logmel", "spec_augment": {"freq_width": [0, 20], "num_time_masks": 0}}
    frontend = get_registry("frontend").build(spec)
    assert frontend.spec_augment.cfg.freq_width == (0, 20)
    recorded = get_registry("frontend").parse({"name": "logmel", "spec_augment": {"num_time_masks": 0}}).to_dict()
    recorded = recorded["spec_augment"]
    assert recorded["num_time_masks"] == 0 and recorded["freq_width"] == [0, 15]
    assert get_registry("frontend").build({"name": "logmel"}).spec_augment is None  # off by default
    with pytest.raises(ConfigError, match="freq_width"):
        get_registry("frontend").build({"name": "logmel", "spec_augment": {"freq_width": [9, 2]}})
    with pytest.raises(ConfigError):
        get_registry("frontend").build({"name": "lfcc", "spec_augment": {"frequency_width": [0, 9]}})


@pytest.mark.parametrize("cfg_cls", [LogMelConfig, LogLinearFilterbankConfig, LinearSpectrogramConfig, LFCCConfig])
def test_log_options_are_validated_alike(cfg_cls):
    for bad, match in (({"log_floor": 0.0}, "log_floor"), ({"top_db": 0.0}, "top_db"), ({"top_db": -3.0}, "top_db")):
        with pytest.raises(ConfigError, match=match):
            from_dict(cfg_cls, bad)


def test_level_normalize_sets_the_rms_and_leaves_silence_quiet():
    from sddkit.frontends.spectral import LEVEL_FLOOR_DB, level_normalize

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, SR, generator=g) * torch.tensor([[0.3], [0.003], [0.0]])
    y = level_normalize(x, -27.0)
    rms_db = 10 * torch.log10(y.pow(2).mean(dim=-1))
    torch.testing.assert_close(rms_db[:2], torch.full((2,), -27.0), atol=1e-3, rtol=0)
    assert torch.equal(y[2], x[2])  # digital silence stays silence
    dither = torch.randn(1, SR, generator=g) * 10 ** ((LEVEL_FLOOR_DB - 20) / 20)  # 20 dB under the floor
    raised = 10 * torch.log10(level_normalize(dither, -27.0).pow(2).mean())
    assert raised.item() == pytest.approx(-27.0 - 20.0, abs=0.1)  # raised like the floor, not to -27 dBFS
    huge = x[:1] * 1e20  # finite float32, but its squares overflow float32: before, scaled to all zeros
    torch.testing.assert_close(level_normalize(huge, -27.0), y[:1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["logmel", "lfb", "logspec", "lfcc"])
def test_level_db_makes_features_gain_invariant(name):
    """log(power + floor) is not gain-invariant, even after CMVN; scaling each input to one RMS first is."""
    reg = get_registry("frontend")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, SR, generator=g) * torch.linspace(0.0, 0.2, SR)  # quiet start: bins near the floor
    gains = torch.tensor([[1.0], [0.1], [0.003]])
    plain = reg.build({"name": name, "normalize": True})(x * gains).features
    assert (plain[0] - plain[2]).abs().max() > 0.1  # the motivation: without it, the gain shows
    levelled = reg.build({"name": name, "normalize": True, "level_db": -27.0})(x * gains).features
    torch.testing.assert_close(levelled[1], levelled[0], atol=2e-3, rtol=1e-4)
    torch.testing.assert_close(levelled[2], levelled[0], atol=2e-3, rtol=1e-4)
    with pytest.raises(ConfigError, match="level_db must be in"):
        reg.parse({"name": name, "level_db": 3.0})
    assert to_dict(reg.parse({"name": name, "level_db": -20}).config)["level_db"] == -20.0


@pytest.mark.parametrize("name", ["logmel", "lfb", "logspec", "lfcc"])
def test_level_db_removes_a_dc_offset(name):
    """An offset carries no speech: before, it counted in the RMS and scaled the speech on it down."""
    reg = get_registry("frontend")
    x = torch.randn(1, SR, generator=torch.Generator().manual_seed(3)) * 0.01
    offsets = torch.tensor([[0.0], [0.3], [-0.5]])
    levelled = reg.build({"name": name, "normalize": True, "level_db": -27.0})(x + offsets).features
    torch.testing.assert_close(levelled[1], levelled[0], atol=5e-3, rtol=1e-4)
    torch.testing.assert_close(levelled[2], levelled[0], atol=5e-3, rtol=1e-4)


def test_a_detector_with_level_db_scores_any_gain_alike():
    from sddkit.detectors.detector import DetectorConfig, build_detector

    cfg = {"frontend": {"name": "logmel", "n_mels": 32, "normalize": True}, "backend": {"name": "lcnn", "channels": 8}}
    x = torch.randn(1, SR, generator=torch.Generator().manual_seed(2)) * torch.linspace(0.0, 0.2, SR)
    batch = torch.cat([x, 0.01 * x, 3.0 * x])
    spread = {}
    for level_db in (None, -27.0):
        torch.manual_seed(0)  # the same weights for both
        front = {**cfg["frontend"], "level_db": level_db}
        model = build_detector(from_dict(DetectorConfig, {**cfg, "frontend": front})).eval()
        with torch.no_grad():
            logits = model(batch).logits
        spread[level_db] = (logits - logits[:1]).abs().max().item()
    assert spread[-27.0] < 1e-5 and spread[None] > 30 * spread[-27.0], spread


@pytest.mark.parametrize("n_fft", [511, 401, 512])
def test_filterbank_triangles_sit_on_the_real_bin_frequencies_for_any_n_fft(n_fft):
    # bins were spread evenly over 0..sr/2, which for an odd n_fft is half a bin off at the top
    from sddkit.features.spectral import triangular_filterbank

    fb = triangular_filterbank(torch.tensor([0.0, 1000.0, 3000.0]), n_fft=n_fft, sample_rate=16000).double()
    freqs = np.arange(n_fft // 2 + 1) * 16000 / n_fft  # numpy.fft.rfftfreq(n_fft, 1 / 16000)
    np.testing.assert_allclose(freqs, np.fft.rfftfreq(n_fft, 1 / 16000))
    expected = np.clip(np.minimum(freqs / 1000.0, (3000.0 - freqs) / 2000.0), 0.0, None)
    np.testing.assert_allclose(fb[0].numpy(), expected, atol=1e-6)
