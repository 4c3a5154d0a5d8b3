"""Pretrained-encoder presets: shapes, freezing, layer selection, Whisper features, local loading."""

from __future__ import annotations

import json

import pytest
import torch

from sddkit.errors import AudioTooLongError, AudioTooShortError, ConfigError
from sddkit.frontends.encoders import PRESETS, _min_samples
from sddkit.registry import get_registry

TINY = ["wav2vec2_tiny", "hubert_tiny", "wavlm_tiny", "whisper_tiny"]


def build(name: str, **params):
    return get_registry("encoder").build({"name": name, **params})


def test_registry_lists_every_preset():
    names = set(get_registry("encoder").names())
    assert {"xlsr_300m", "xlsr_1b", "xlsr_2b", "wav2vec2_base", "hubert_base", "wavlm_base", "whisper_base"} <= names
    assert set(TINY) <= names
    xlsr = PRESETS["xlsr_300m"].arch
    assert (xlsr["num_hidden_layers"], xlsr["hidden_size"], xlsr["num_attention_heads"]) == (24, 1024, 16)
    assert xlsr["intermediate_size"] == 4096 and xlsr["feat_extract_norm"] == "layer" and xlsr["do_stable_layer_norm"]


# (samples in, frames out): wav2vec2 tiny convs (10,5),(3,2),(3,2): 4000 -> 799 -> 399 -> 199;
# Whisper: 4000 // 160 = 25 mel frames -> ceil(25 / 2) = 13 positions.
@pytest.mark.parametrize(
    "name, frames", [("wav2vec2_tiny", 199), ("hubert_tiny", 199), ("wavlm_tiny", 199), ("whisper_tiny", 13)]
)
def test_forward_shape_and_freezing(name, frames):
    enc = build(name)
    y = enc(torch.randn(2, 4000))
    assert y.shape == (2, frames, 32) and enc.output_dim == 32
    assert not any(p.requires_grad for p in enc.parameters())
    tuned = build(name, freeze=False)
    frozen_names = {n for n, p in tuned.named_parameters() if not p.requires_grad}
    # only constants stay frozen in full fine-tuning: SpecAugment's mask vector, Whisper's sinusoids
    assert frozen_names <= {"model.masked_spec_embed", "model.embed_positions.weight"}
    with pytest.raises(ValueError, match="batch, samples"):
        enc(torch.randn(4000))


def test_freeze_feature_encoder_only():
    enc = build("wav2vec2_tiny", freeze=False, freeze_feature_encoder=True)
    conv = [p.requires_grad for n, p in enc.named_parameters() if n.startswith("model.feature_extractor.")]
    layers = [p.requires_grad for n, p in enc.named_parameters() if n.startswith("model.encoder.layers.")]
    assert conv and not any(conv) and layers and all(layers)


def test_layerdrop_forced_to_zero_and_overrides_checked():
    assert build("wav2vec2_tiny").model.config.layerdrop == 0.0
    assert build("whisper_tiny").model.config.encoder_layerdrop == 0.0
    enc = build("hubert_tiny", dropout=0.0, overrides={"layer_norm_eps": 1e-6})
    cfg = enc.model.config
    assert (cfg.hidden_dropout, cfg.attention_dropout, cfg.activation_dropout, cfg.layer_norm_eps) == (0, 0, 0, 1e-6)
    assert build("whisper_tiny").model.config.dropout == 0.1  # default: as the preset's model config
    with pytest.raises(ConfigError, match="layerdrop"):
        get_registry("encoder").parse({"name": "wav2vec2_tiny", "overrides": {"layerdrop": 0.1}})
    with pytest.raises(ConfigError, match="not wav2vec2 config keys"):
        build("wav2vec2_tiny", overrides={"hiden_size": 8})
    with pytest.raises(ConfigError):
        get_registry("encoder").parse({"name": "wav2vec2_tiny", "layer": "middle"})


@pytest.mark.parametrize("name", ["wav2vec2_tiny", "hubert_tiny", "whisper_tiny"])  # pre-norm, post-norm, Whisper
@pytest.mark.parametrize("k", [0, 1])
def test_layer_k_is_hidden_state_k_of_the_full_model(name, k):
    full = build(name, dropout=0.0).eval()
    part = build(name, dropout=0.0, layer=k).eval()
    assert len(part.transformer_layers()) == k
    part.load_state_dict(full.state_dict(), strict=False)  # the truncated model holds a subset
    x = torch.randn(2, 4000)
    with torch.no_grad():
        expected = full._run(x, all_states=True)[k]
        torch.testing.assert_close(part(x), expected, atol=1e-5, rtol=1e-5)
        states = full._run(x, all_states=True)
        torch.testing.assert_close(states[-1], full(x))  # last state = last_hidden_state
    with pytest.raises(ConfigError, match="does not exist"):
        build(name, layer=3)


def test_weighted_layer_sum():
    enc = build("wavlm_tiny", layer="weighted", dropout=0.0).eval()
    assert enc.layer_weights.shape == (3,) and enc.layer_weights.requires_grad
    assert [n for n, p in enc.named_parameters() if p.requires_grad] == ["layer_weights"]
    x = torch.randn(2, 4000)
    y = enc(x)
    states = enc._run(x, all_states=True)
    torch.testing.assert_close(y, sum(states) / 3, atol=1e-5, rtol=1e-5)  # zeros -> uniform weights
    (y * torch.randn_like(y)).sum().backward()
    assert enc.layer_weights.grad.abs().sum() > 0


def test_normalization_follows_the_feature_extractor_type():
    enc = build("wav2vec2_tiny", dropout=0.0).eval()  # layer-norm extractor (XLS-R layout): normalised
    assert enc.normalize and not build("hubert_tiny").normalize
    x = torch.randn(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(enc(3.0 * x + 0.25), enc(x), atol=1e-4, rtol=1e-4)
    raw = build("wav2vec2_tiny", dropout=0.0, normalize=False).eval()
    raw.load_state_dict(enc.state_dict())
    with torch.no_grad():
        assert (raw(3.0 * x + 0.25) - raw(x)).abs().max() > 1e-3


def test_minimum_input_length():
    assert _min_samples((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)) == 400  # wav2vec 2.0's receptive field
    enc = build("wav2vec2_tiny")
    assert enc.min_samples == 40  # (10,5),(3,2),(3,2): 1 -> 3 -> 7 -> 40
    assert enc(torch.randn(1, 40)).shape == (1, 1, 32)
    with pytest.raises(AudioTooShortError):
        enc(torch.randn(1, 39))


def test_whisper_log_mel_matches_the_feature_extractor():
    from transformers import WhisperFeatureExtractor

    enc = build("whisper_tiny")
    wav = 0.1 * torch.randn(1, 16000 + 123)
    ours = enc.log_mel(wav)
    ref = WhisperFeatureExtractor()(wav[0].numpy(), sampling_rate=16000, return_tensors="pt").input_features
    assert ours.shape == (1, 80, (16000 + 123) // 160)
    torch.testing.assert_close(ours, ref[..., : ours.shape[-1]], atol=1e-4, rtol=1e-4)


def test_whisper_matches_transformers_on_30_s_and_bounds_the_length():
    enc = build("whisper_tiny", dropout=0.0).eval()
    wav = 0.1 * torch.randn(1, 30 * 16000)
    with torch.no_grad():
        ours = enc(wav)
        ref = enc.model(enc.log_mel(wav)).last_hidden_state  # the stock forward, 3000 frames
    assert ours.shape == (1, 1500, 32)
    torch.testing.assert_close(ours, ref)
    with pytest.raises(AudioTooLongError):
        enc(torch.zeros(1, 31 * 16000))
    with pytest.raises(AudioTooShortError):
        enc(torch.zeros(1, 100))


@pytest.mark.parametrize("name", ["wav2vec2_tiny", "whisper_tiny"])
def test_load_from_a_local_directory(tmp_path, name):
    src = build(name, dropout=0.0).eval()
    key = "encoder_layerdrop" if name == "whisper_tiny" else "layerdrop"
    setattr(src.model.config, key, 0.1)  # as published configs: must be forced back to 0 on loading
    src.model.save_pretrained(tmp_path)
    loaded = build(name, pretrained=str(tmp_path), dropout=0.0).eval()
    x = torch.randn(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))
    assert getattr(loaded.model.config, key) == 0.0
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_local_directory_errors(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        build("wav2vec2_tiny", pretrained=str(tmp_path / "missing"))
    build("wav2vec2_tiny").model.save_pretrained(tmp_path / "w2v")
    with pytest.raises(ConfigError, match="expects a hubert model"):
        build("hubert_tiny", pretrained=str(tmp_path / "w2v"))
    with pytest.raises(ConfigError, match="differs from the preset"):
        build("xlsr_300m", pretrained=str(tmp_path / "w2v"))
    only_config = tmp_path / "only_config"
    only_config.mkdir()
    (only_config / "config.json").write_text((tmp_path / "w2v" / "config.json").read_text())
    with pytest.raises(ConfigError):
        build("wav2vec2_tiny", pretrained=str(only_config))
    partial = tmp_path / "partial"
    build("wav2vec2_tiny").model.save_pretrained(partial)
    from safetensors.torch import load_file, save_file

    weights = load_file(partial / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layers.1." not in k}, partial / "model.safetensors")
    with pytest.raises(ConfigError, match="refusing to fill them with random values"):
        build("wav2vec2_tiny", pretrained=str(partial))
    assert json.loads((tmp_path / "w2v" / "config.json").read_text())["model_type"] == "wav2vec2"
