"""Review of band-limited spectral front-ends (sub-band experts): LFCC's frame energy within its band, the advice of
the empty mel filter warning for a high band, and a mixture of experts differing in band and pre-emphasis scoring
each expert as it scores alone (their shared front-end steps keyed on every setting they depend on)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import DetectorMixture, MixtureConfig
from sddkit.detectors.model_dir import load_model_dir, read_model_config, save_model_dir
from sddkit.features.spectral import LFCC, LFCCConfig, mel_filterbank
from sddkit.registry import get_registry


def _tone_over_noise() -> torch.Tensor:
    """(2, 16000): weak white noise, and the same noise under a loud 300 Hz tone (all of it below 4 kHz)."""
    g = torch.Generator().manual_seed(0)
    noise = 0.01 * torch.randn(16000, generator=g)
    tone = 0.5 * torch.sin(2 * math.pi * 300.0 * torch.arange(16000) / 16000)
    return torch.stack([noise, noise + tone])


def test_band_limited_lfcc_energy_ignores_what_lies_outside_its_band():
    # with_energy replaced c0 by the log energy of every FFT bin, whatever f_min/f_max: a 4-8 kHz LFCC's c0 was the
    # full band's energy, here a 300 Hz tone's (1.1 in log10 units above the noise), where X. Wang's LFCC sums the
    # spectrum cut to its band. Only the window's leakage of the tone above 4 kHz remains (0.07)
    x = _tone_over_noise()
    band = LFCC(LFCCConfig(f_min=4000.0, with_energy=True, with_deltas=False))(x)
    assert (band[0, 0] - band[1, 0]).abs().max() < 0.2
    # the full band's energy is read as before (the default band: every bin)
    full = LFCC(LFCCConfig(with_energy=True, with_deltas=False))(x)
    assert (full[0, 0] - full[1, 0]).abs().max() > 1.0


def test_band_limited_lfcc_energy_is_the_log_of_its_bins_power():
    x = _tone_over_noise()[1:]
    cfg = LFCCConfig(f_min=1000.0, f_max=3000.0, with_energy=True, with_deltas=False)
    c0 = LFCC(cfg)(x)[0, 0]
    spec = torch.stft(
        torch.cat([x[:, :1], x[:, 1:] - 0.97 * x[:, :-1]], dim=-1),
        n_fft=512,
        hop_length=160,
        win_length=320,
        window=torch.hamming_window(320, periodic=True),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spec.abs().square()[0]  # (257, frames); bins 1000 / 31.25 = 32 .. 3000 / 31.25 = 96, both ends included
    expected = torch.log10(power[32:97].sum(dim=0) / 512 + cfg.log_floor)
    torch.testing.assert_close(c0, expected, atol=1e-4, rtol=0)


def test_empty_mel_filters_of_a_high_band_are_not_told_to_raise_f_min():
    # 120 mels (the default recipe's) over 6-8 kHz leave 2 filters without an FFT bin: the warning advised "a higher
    # f_min", which empties more of them (24 at 6.5 kHz, 57 at 7 kHz); a lower one empties none (0 at 5 kHz)
    with pytest.warns(UserWarning, match="cover no FFT bin") as caught:
        mel_filterbank(n_mels=120, n_fft=512, sample_rate=16000, f_min=6000.0)
    message = str(caught[0].message)
    assert "a lower f_min" in message and "a higher f_min" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mel_filterbank(n_mels=120, n_fft=512, sample_rate=16000, f_min=5000.0)
    # over the whole band the lowest filters widen with a higher f_min: that advice stays
    with pytest.warns(UserWarning, match="a higher f_min"):
        mel_filterbank(n_mels=200, n_fft=512, sample_rate=16000, f_min=20.0, f_max=None)


_EXPERT_FRONTENDS = [
    {"name": "lfb", "normalize": True, "level_db": -27, "n_filters": 60},
    {"name": "lfb", "normalize": True, "level_db": -27, "n_filters": 60, "f_min": 4000},
    {"name": "lfb", "normalize": True, "level_db": -27, "n_filters": 60, "pre_emphasis": 0.0},
    {"name": "logmel", "normalize": True, "level_db": -27, "n_mels": 60, "f_min": 4000, "f_max": None},
    {"name": "lfb", "normalize": False, "level_db": -20, "n_filters": 60, "f_max": 4000},
    {"name": "lfcc", "normalize": True, "f_min": 2000, "with_energy": True},
]


def _expert(frontend: dict, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_detector(_cfg(frontend)).eval()


def test_mixture_of_experts_differing_in_band_and_pre_emphasis_scores_each_as_alone(tmp_path):
    # the experts share one framing, so the mixture computes their level normalisation and power spectrum once for
    # those of equal settings: each expert's score in the mixture must be the one it gives alone, bit for bit
    experts = [_expert(fe, seed) for seed, fe in enumerate(_EXPERT_FRONTENDS)]
    gate = get_registry("gate").build("average", num_experts=len(experts), embedding_dims=[1] * len(experts))
    mixture = DetectorMixture(experts=experts, gate=gate).eval()
    x = 0.1 * torch.randn(3, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mixed = mixture(x).stats["expert_scores"]
        alone = torch.stack([e(x).score for e in experts], dim=1)
    assert torch.equal(mixed, alone)
    # the bands differ, so do the scores: a step shared across bands would have made the experts' features alike
    assert len({tuple(c.tolist()) for c in alone.T}) == len(experts)

    # saved and loaded, the mixture records every expert's band and scores as before
    model_config = to_dict(MixtureConfig(experts=[to_dict(_cfg(fe)) for fe in _EXPERT_FRONTENDS], gate="average"))
    save_model_dir(
        tmp_path / "m", mixture, model_config=model_config, architecture="mixture", inference={"window_samples": 16000}
    )
    recorded = [e["frontend"] for e in read_model_config(tmp_path / "m")["model"]["experts"]]
    assert [(fe.get("f_min"), fe.get("f_max")) for fe in recorded] == [
        (0.0, None),
        (4000.0, None),
        (0.0, None),
        (4000.0, None),
        (0.0, 4000.0),
        (2000.0, None),
    ]
    loaded = load_model_dir(tmp_path / "m").model.eval()
    with torch.no_grad():
        again = loaded(x)
    assert torch.equal(again.stats["expert_scores"], mixed)


def _cfg(frontend: dict) -> DetectorConfig:
    return from_dict(DetectorConfig, {"frontend": frontend, "backend": {"name": "lcnn", "channels": 4}})
