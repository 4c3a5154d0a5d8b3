"""The ``lfb`` front-end: log energies of linearly spaced triangular filters (LFCC before its DCT)."""

from __future__ import annotations

import math

import pytest
import torch

from sddkit.errors import ConfigError
from sddkit.features import (
    LFCC,
    LFCCConfig,
    LogLinearFilterbank,
    LogLinearFilterbankConfig,
    LogMel,
    LogMelConfig,
    dct_matrix,
    linear_filterbank,
)
from sddkit.registry import get_registry

SR = 16000


def test_defaults_are_120_filters_evenly_over_0_to_8_khz_none_empty():
    fe = LogLinearFilterbank()
    fb = fe.filterbank
    assert fe.output_dim == 120 and fb.shape == (120, 257)
    assert bool((fb > 0).sum(dim=1).min() >= 3)  # every filter spans several bins: no constant rows
    bins = torch.arange(257, dtype=torch.float64) * SR / 512
    centres = (fb.double() * bins).sum(dim=1) / fb.double().sum(dim=1)
    spacing = torch.diff(centres)
    # evenly spaced, 8000 / 121 Hz apart, where a Mel filterbank's spacing grows tenfold over the band
    assert float(spacing.min()) == pytest.approx(8000 / 121, rel=0.06)
    assert float(spacing.max()) == pytest.approx(8000 / 121, rel=0.06)
    mel = LogMel(LogMelConfig(n_mels=120, f_max=None)).filterbank.double()
    mel_centres = (mel * bins).sum(dim=1) / mel.sum(dim=1)
    assert float(mel_centres[-1] - mel_centres[-2]) > 2 * float(spacing[-1])


def test_values_are_the_log_of_the_linear_filterbank_over_the_power_spectrum():
    x = torch.randn(2, SR, generator=torch.Generator().manual_seed(0)) * 0.1
    fe = LogLinearFilterbank(LogLinearFilterbankConfig(n_filters=40, f_min=100.0, f_max=7000.0))
    power = fe.power(x)
    fb = linear_filterbank(n_filters=40, n_fft=512, sample_rate=SR, f_min=100.0, f_max=7000.0)
    torch.testing.assert_close(fe(x), torch.log(fb @ power + 1e-6))


def test_lfcc_is_the_dct_of_these_energies():
    """Same framing and floor, no deltas, as many coefficients as filters: LFCC = DCT(log10 energies), and the
    orthonormal DCT inverts, so the two features carry the same information."""
    x = torch.randn(1, SR, generator=torch.Generator().manual_seed(1)) * 0.1
    framing = {"win_length": 400, "window": "hann"}
    lfcc = LFCC(LFCCConfig(n_filters=30, n_coeffs=30, with_deltas=False, **framing))(x)
    lfb = LogLinearFilterbank(LogLinearFilterbankConfig(n_filters=30, log_floor=1e-10, **framing))(x)
    back = dct_matrix(30, 30).T @ lfcc  # log10 energies
    torch.testing.assert_close(back * math.log(10.0), lfb, atol=1e-4, rtol=1e-5)


def test_a_tone_peaks_in_its_own_band_and_high_bands_stay_distinct():
    t = torch.arange(SR, dtype=torch.float32) / SR
    for freq in (300.0, 6500.0, 7400.0):
        feats = LogLinearFilterbank()(0.3 * torch.sin(2 * math.pi * freq * t))
        expected = round(freq / (8000 / 121)) - 1  # filter i peaks at (i + 1) * 8000 / 121 Hz
        assert abs(int(feats[:, 5:-5].mean(dim=1).argmax()) - expected) <= 1
    # two tones 150 Hz apart near 7 kHz land in different bands (a 120-band Mel filterbank merges them)
    a = LogLinearFilterbank()(0.3 * torch.sin(2 * math.pi * 6900.0 * t))[:, 5:-5].mean(dim=1).argmax()
    b = LogLinearFilterbank()(0.3 * torch.sin(2 * math.pi * 7050.0 * t))[:, 5:-5].mean(dim=1).argmax()
    assert int(b) - int(a) >= 2


def test_front_end_config_is_validated_and_recorded():
    reg = get_registry("frontend")
    spec = reg.parse({"name": "lfb", "normalize": True, "level_db": -27})
    assert spec.to_dict()["n_filters"] == 120 and spec.to_dict()["f_max"] is None
    fe = reg.build(spec.to_dict())
    assert fe.output_dim == 120 and fe(torch.randn(2, 2 * SR)).features.shape == (2, 120, 201)
    for bad, match in (({"n_filters": 0}, "n_filters"), ({"f_max": 9000.0}, "f_max"), ({"n_mels": 80}, "n_mels")):
        with pytest.raises(ConfigError, match=match):
            reg.parse({"name": "lfb", **bad})


def test_a_detector_on_lfb_builds_and_scores():
    from sddkit.detectors.detector import build_detector
    from sddkit.training.recipe import load_recipe

    recipe = load_recipe(
        "recipes/sddbench/default_model.yaml", ["model.frontend={name: lfb, normalize: true, level_db: -27}"]
    )
    model = build_detector(recipe.model).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 4 * SR) * 0.05)
    assert out.logits.shape == (3, 2) and torch.isfinite(out.logits).all()
