"""MGDCC: the `mgd` front-end's cepstrum option (`n_coeffs`), against scipy's DCT and a port of covarep's function."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from test_groupdelay import trains_and_exports_with_parity
from test_newfeatures_review29 import _covarep_mgd

from sddkit.detectors import model_dir as md
from sddkit.errors import ConfigError
from sddkit.features.groupdelay import ModifiedGroupDelay, ModifiedGroupDelayConfig
from sddkit.registry import get_registry


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    """Noise plus two harmonic tones: a gram with structure, float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return 0.05 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1330 * t)


@pytest.mark.parametrize(("n_filters", "with_c0"), [(120, False), (None, False), (60, True)])
def test_mgdcc_is_the_orthonormal_dct_of_the_gram_over_its_bands(n_filters, with_c0):
    x = torch.from_numpy(np.stack([_speechlike(6000, 0), _speechlike(6000, 1)]))  # float64 in, float64 out
    gram = ModifiedGroupDelay(ModifiedGroupDelayConfig(n_filters=n_filters))(x).numpy()
    cfg = ModifiedGroupDelayConfig(n_filters=n_filters, n_coeffs=20, with_c0=with_c0)
    got = ModifiedGroupDelay(cfg)(x).numpy()
    first = 0 if with_c0 else 1  # covarep's cep(2:num_coeff+1, :) drops c0
    ref = scipy.fft.dct(gram, type=2, norm="ortho", axis=-2)[:, first : first + 20]
    assert got.shape == ref.shape == (2, 20, gram.shape[-1])
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_output_shapes_and_deltas_as_lfcc_computes_them():
    x = 0.1 * torch.randn(3, 8000)
    front = get_registry("frontend")
    static = front.build({"name": "mgd", "n_coeffs": 20})
    full = front.build({"name": "mgd", "n_coeffs": 20, "with_deltas": True})
    covarep = front.build({"name": "mgd", "n_filters": None, "n_coeffs": 12})
    assert (static.output_dim, full.output_dim, covarep.output_dim) == (20, 60, 12)
    s, f = static(x).features, full(x).features
    assert s.shape == (3, 20, 51) and f.shape == (3, 60, 51) and covarep(x).features.shape == (3, 12, 51)
    assert s.dtype == f.dtype == torch.float32
    # [static, delta, double delta], d[t] = x[t+1] - x[t-1] with the edge frames replicated (lfcc's width 3)
    torch.testing.assert_close(f[:, :20], s)
    c = torch.nn.functional.pad(s.double(), (1, 1), mode="replicate")
    d1 = c[..., 2:] - c[..., :-2]
    p = torch.nn.functional.pad(d1, (1, 1), mode="replicate")
    torch.testing.assert_close(f[:, 20:40].double(), d1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f[:, 40:].double(), p[..., 2:] - p[..., :-2], rtol=1e-5, atol=1e-5)
    # the default, which a training run uses, is the gram as before
    assert front.build({"name": "mgd"}).output_dim == 120


def test_covareps_mgdcc_set_up_matches_a_port_of_its_function():
    """covarep's ``[~, cep] = modified_group_delay_feature(f, 0.4, 0.9, 12)``: the gram over every bin divided by its
    utterance maximum, ``cep = dct(grp_phase); cep(2:13, :)`` (MATLAB's dct: orthonormal DCT-II), framed as the
    ported gram's test (no centring, no pre-emphasis, so the port reads the same samples)."""
    x = _speechlike(4000)
    cfg = ModifiedGroupDelayConfig(
        alpha=0.9,
        gamma=0.4,
        delay_origin="start",
        n_filters=None,
        n_coeffs=12,
        max_normalize=True,
        center=False,
        pre_emphasis=0.0,
        log_floor=1e-30,
    )
    got = ModifiedGroupDelay(cfg)(torch.from_numpy(x)).numpy()
    left = (cfg.n_fft - cfg.win_length) // 2
    window = torch.hamming_window(cfg.win_length, periodic=True, dtype=torch.float64).numpy()
    frames = got.shape[1]
    grp = _covarep_mgd(x[left:], rho=0.4, gamma=0.9, hop=cfg.hop_length, win=window, nfft=cfg.n_fft)[:, :frames]
    grp = grp / np.abs(grp).max()  # grp_phase ./ (max(max(abs(grp_phase))))
    cep = scipy.fft.dct(grp, norm="ortho", axis=0)[1:13]
    assert got.shape == cep.shape == (12, frames)
    np.testing.assert_allclose(got, cep, rtol=1e-5, atol=1e-6)  # the smoothing's DCT basis is float32


def test_max_normalize_divides_each_item_by_its_own_peak():
    x = torch.from_numpy(np.stack([_speechlike(6000, 0), 0.01 * _speechlike(6000, 1)]))
    gram = ModifiedGroupDelay(ModifiedGroupDelayConfig())(x)
    got = ModifiedGroupDelay(ModifiedGroupDelayConfig(max_normalize=True))(x)
    peak = gram.abs().amax(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(got, gram / peak)
    assert torch.allclose(got.abs().amax(dim=(-2, -1)), torch.ones(2, dtype=torch.float64))
    # digital silence: a zero gram stays zero, not NaN (covarep sets its NaNs to 0)
    silent = ModifiedGroupDelay(ModifiedGroupDelayConfig(max_normalize=True, n_coeffs=12))(torch.zeros(1, 4000))
    assert torch.equal(silent, torch.zeros_like(silent))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_coeffs": 120}, r"n_coeffs must be in \[1, 119\].*120 bands.*c0 dropped"),
        ({"n_coeffs": 0}, r"n_coeffs must be in \[1, 119\]"),
        ({"n_filters": None, "n_coeffs": 257}, r"n_coeffs must be in \[1, 256\].*257 bands"),
        ({"n_coeffs": 12, "delta_width": 4}, "delta_width must be odd"),
        ({"with_deltas": True}, "with_deltas: true applies to the MGD cepstrum.*n_coeffs is null"),
        ({"with_c0": True, "with_deltas": True}, "with_c0: true and with_deltas: true apply.*set n_coeffs"),
    ],
)
def test_bad_cepstrum_options_are_refused_with_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        ModifiedGroupDelayConfig(**options)
    with pytest.raises(ConfigError, match="frontend." + message):
        get_registry("frontend").parse({"name": "mgd", **options})
    # with c0 kept, every coefficient of the DCT may be kept
    assert ModifiedGroupDelay(ModifiedGroupDelayConfig(n_coeffs=120, with_c0=True)).output_dim == 120


def test_a_detector_on_mgdcc_trains_and_exports_with_parity(tmp_path):
    frontend = {"name": "mgd", "n_coeffs": 20, "with_deltas": True, "normalize": True, "level_db": -27}
    d = trains_and_exports_with_parity(tmp_path / "m", frontend)
    assert md.load_model_dir(d).model.frontend.output_dim == 60  # the recorded config rebuilds the cepstrum


def test_max_normalized_mgdcc_exports_with_parity(tmp_path):
    """The per-item peak (a reduction over bins and frames) traces into the ONNX graph as in torch (an LCNN wants 16
    bins or more: covarep's 12 coefficients with their deltas, 36)."""
    frontend = {"name": "mgd", "n_filters": None, "n_coeffs": 12, "with_deltas": True, "max_normalize": True}
    trains_and_exports_with_parity(tmp_path / "m", frontend, seed=1)
