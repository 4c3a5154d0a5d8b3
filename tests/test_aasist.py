from __future__ import annotations

import numpy as np
import pytest
import torch

from sddkit.backends.aasist import AASIST, AASISTConfig, AASISTLConfig, SincConv, mel_sinc_filters
from sddkit.errors import ConfigError
from sddkit.registry import get_registry

BACKENDS = get_registry("backend")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_batch_norms(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode BNs are not near-identities."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=gen))
            m.bias.data.copy_(0.3 * torch.randn(m.bias.shape, generator=gen))


def test_published_parameter_counts():
    assert n_params(BACKENDS.build("aasist")) == 297_866
    assert n_params(BACKENDS.build("aasist_l")) == 85_306


def test_published_defaults_match_the_configs():
    full, light = AASISTConfig(), AASISTLConfig()
    assert full.filts == (70, (1, 32), (32, 32), (32, 64), (64, 64)) and full.gat_dims == (64, 32)
    assert full.pool_ratios == (0.5, 0.7, 0.5, 0.5) and full.temperatures == (2.0, 2.0, 100.0, 100.0)
    assert light.filts == (70, (1, 32), (32, 32), (32, 24), (24, 24)) and light.gat_dims == (24, 32)
    assert light.pool_ratios == (0.4, 0.5, 0.7, 0.5) and light.first_conv == 128
    assert not full.reference_compat


@torch.no_grad()
def test_forward_shapes_for_several_lengths():
    model = BACKENDS.build("aasist").eval()
    out = model(torch.randn(2, 64600))
    assert out.logits.shape == (2, 2) and out.embedding.shape == (2, 160) == (2, model.embedding_dim)
    light = BACKENDS.build("aasist_l").eval()
    assert light.min_samples == 128 + 3**7  # 128 lost to the 129-tap filters, then 7 poolings by 3
    for length in (light.min_samples, 20_000):
        out = light(torch.randn(3, length))
        assert out.logits.shape == (3, 2) and torch.isfinite(out.logits).all()
    with pytest.raises(ValueError, match="at least 2315 samples"):
        light(torch.randn(1, light.min_samples - 1))
    with pytest.raises(ValueError, match="raw waveform"):
        light(torch.randn(1, 1, 20_000))


def _pair() -> tuple[AASIST, AASIST]:
    """AASIST-L in compat and in fixed mode with the same (random) weights."""
    compat = AASIST(AASISTLConfig(reference_compat=True))
    randomize_batch_norms(compat)
    fixed = AASIST(AASISTLConfig())
    fixed.load_state_dict(compat.state_dict())
    return compat.eval(), fixed.eval()


@torch.no_grad()
def test_compat_mode_ignores_the_discarded_pre_activation():
    compat, fixed = _pair()
    x = torch.randn(2, 8000)
    ref_compat, ref_fixed = compat(x).logits, fixed(x).logits
    assert not torch.allclose(ref_compat, ref_fixed, atol=1e-4)  # the fix changes the function
    for model in (compat, fixed):  # perturb every bn1 (the BN whose output the reference throws away)
        for block in list(model.encoder)[1:]:
            block.bn1.weight.mul_(3.0)
            block.bn1.bias.add_(1.0)
            block.bn1.running_mean.add_(0.5)
    assert torch.equal(compat(x).logits, ref_compat)
    assert not torch.allclose(fixed(x).logits, ref_fixed, atol=1e-4)
    # ... while bn2, which the reference does use, matters in compat mode too
    compat.encoder[1].bn2.bias.add_(1.0)
    assert not torch.allclose(compat(x).logits, ref_compat, atol=1e-4)


def test_gradients_reach_bn1_only_in_fixed_mode():
    compat, fixed = _pair()
    for model in (compat.train(), fixed.train()):
        model(torch.randn(2, 6000)).logits.sum().backward()
    assert compat.encoder[1].bn1.weight.grad is None
    assert fixed.encoder[1].bn1.weight.grad is not None and fixed.encoder[1].bn1.weight.grad.abs().sum() > 0
    unused = [n for n, p in fixed.named_parameters() if p.grad is None]
    assert unused == []  # every parameter of the fixed model is used


def test_sinc_filters_are_symmetric_mel_spaced_band_passes():
    filters = mel_sinc_filters(70, 129).numpy()
    assert filters.shape == (70, 129)
    np.testing.assert_allclose(filters, filters[:, ::-1], atol=1e-7)  # linear-phase (symmetric) filters
    mel_max = 2595 * np.log10(1 + 8000 / 700)
    edges = 700 * (10 ** (np.linspace(0, mel_max, 71) / 2595) - 1)
    freqs = np.fft.rfftfreq(4096, 1 / 16000)
    peaks = freqs[np.abs(np.fft.rfft(filters, 4096, axis=1)).argmax(axis=1)]
    for i in (20, 40, 69):  # the response peaks inside (or within one transition width of) band i
        assert edges[i] - 200 <= peaks[i] <= edges[i + 1] + 200, (i, peaks[i], edges[i], edges[i + 1])
    assert np.all(np.diff(peaks[20:]) > 0)  # centre frequencies increase with the filter index
    conv = SincConv(70, 128)
    assert conv.kernel_size == 129 and "filters" not in conv.state_dict()  # rebuilt, never saved


def test_freq_mask_zeroes_a_contiguous_band_only_in_training():
    conv = SincConv(30, 16, freq_mask=True)
    x = torch.randn(1, 400)
    conv.eval()
    assert torch.equal(conv(x), SincConv(30, 16)(x))
    conv.train()
    widths = []
    for _ in range(30):
        zero = (conv(x).abs().sum(dim=-1) == 0).squeeze(0).nonzero().flatten()
        if len(zero):
            assert torch.equal(zero, torch.arange(zero[0], zero[0] + len(zero)))  # one contiguous band
        widths.append(len(zero))
    assert max(widths) > 0 and max(widths) < 20


def test_config_validation_and_input_kind():
    with pytest.raises(ConfigError, match="do not chain"):
        BACKENDS.parse({"name": "aasist", "filts": [70, [1, 32], [16, 32], [32, 64], [64, 64]]})
    with pytest.raises(ConfigError, match="pool_ratios"):
        BACKENDS.parse({"name": "aasist_l", "pool_ratios": [0.5, 0.5, 1.5, 0.5]})
    with pytest.raises(ConfigError, match="unknown key"):
        BACKENDS.parse({"name": "aasist", "reference_compatible": True})
    with pytest.raises(ConfigError, match="raw"):
        BACKENDS.build("aasist", in_dim=80)
    spec = BACKENDS.parse({"name": "aasist_l", "reference_compat": True})
    assert spec.config.reference_compat and spec.config.gat_dims == (24, 32)
    assert BACKENDS.parse(spec.to_dict()) == spec  # JSON round trip of the resolved config
