"""Whisper encoder review (fifth round): loading the encoder out of whole-model checkpoints (tiny random models,
folders written in tmp_path)."""

from __future__ import annotations

import inspect

import pytest
import torch

from sddkit.frontends.encoders import PRESETS
from sddkit.registry import get_registry


def build(name: str, **params):
    return get_registry("encoder").build({"name": name, **params})


def tiny_whisper_config():
    from transformers import WhisperConfig

    # the decoder of a whole model needs heads that divide d_model (WhisperConfig's default 6 does not divide 32)
    return WhisperConfig(**PRESETS["whisper_tiny"].arch, decoder_attention_heads=2, decoder_ffn_dim=64)


@pytest.mark.parametrize("whole", ["WhisperForAudioClassification", "WhisperForConditionalGeneration", "WhisperModel"])
def test_whisper_encoder_loads_from_a_whole_model_checkpoint(tmp_path, whole):
    """A Whisper audio classifier (how Whisper-based detectors are fine-tuned with transformers) holds the encoder and
    its head but no decoder: it was loaded as a WhisperModel and refused for the decoder's "missing" weights."""
    import transformers

    torch.manual_seed(0)
    model = getattr(transformers, whole)(tiny_whisper_config()).eval()
    model.save_pretrained(tmp_path)
    source = model.get_encoder() if whole != "WhisperForAudioClassification" else model.encoder
    enc = build("whisper_tiny", pretrained=str(tmp_path), dropout=0.0).eval()
    for name, param in source.state_dict().items():
        assert torch.equal(enc.model.state_dict()[name], param), name
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        feats = enc.log_mel(wav)
        x = torch.nn.functional.gelu(source.conv2(torch.nn.functional.gelu(source.conv1(feats)))).transpose(1, 2)
        x = x + source.embed_positions.weight[: x.shape[1]]
        for layer in source.layers:
            # transformers 4's layers take a head mask and return a tuple
            head_mask = (None,) if "layer_head_mask" in inspect.signature(layer.forward).parameters else ()
            out = layer(x, None, *head_mask)
            x = out[0] if isinstance(out, tuple) else out
        torch.testing.assert_close(enc(wav), source.layer_norm(x))


def test_whisper_presets_beyond_base_include_large_v3_with_128_mel_bins():
    """Only whisper_base was published as a preset, and a folder must match its preset's architecture: a local
    Whisper small, medium or large-v3 (the 128-bin log-Mel model) could not be loaded under any preset name."""
    expected = {"whisper_small": (12, 768, 80), "whisper_medium": (24, 1024, 80), "whisper_large_v3": (32, 1280, 128)}
    for name, (layers, dim, mels) in expected.items():
        with torch.device("meta"):
            enc = build(name)
        assert (enc.total_layers, enc.output_dim, enc.model.conv1.in_channels) == (layers, dim, mels)
        assert tuple(enc.log_mel.mel_filters.shape) == (mels, 201)
        assert enc.model.embed_positions.num_embeddings == 1500
    with torch.device("meta"):
        base = build("whisper_base")
    # the real openai/whisper-base encoder's size (../shared/models/README.md)
    assert sum(p.numel() for p in base.parameters()) == 20_590_592


def test_a_folder_of_another_whisper_size_names_the_preset_that_fits(tmp_path):
    from sddkit.errors import ConfigError

    build("whisper_tiny").model.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"differs from the preset: d_model=32 .*; use preset 'whisper_tiny'"):
        build("whisper_base", pretrained=str(tmp_path))
