"""Review 25 of the pretrained-encoder front-ends, LoRA and MoLEx routers."""

from __future__ import annotations

import json

import pytest
import torch

from sddkit.errors import ConfigError
from sddkit.frontends.encoders import EncoderConfig, WhisperLogMel, build_encoder
from sddkit.frontends.routers import SoftmaxRouterConfig, TopKRouterConfig, build_topk_router
from sddkit.frontends.ssl import SSLFrontendConfig, build_ssl_frontend
from sddkit.registry import get_registry

# --- samples that are no [-1, 1] floats ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hubert_tiny", "whisper_tiny"])
@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.complex64, torch.bool])
def test_an_encoder_refuses_samples_that_are_no_floats(name, dtype):
    # before: int16 PCM went in 32768 times too loud (an encoder without normalize; Whisper's log-Mel ~9 log10 units
    # off), complex samples lost their imaginary part, booleans became 0/1: features without a word
    encoder = build_encoder(EncoderConfig(), preset=name).eval()
    pcm = (0.1 * torch.randn(1, 4000) * 32768).to(torch.int16)
    with pytest.raises(ValueError, match=rf"floating-point waveform .*got {dtype}"):
        encoder(pcm.to(dtype))
    assert encoder((pcm / 32768.0).float()).shape[0] == 1  # the same audio in [-1, 1] is encoded


def test_the_ssl_frontend_and_whisper_log_mel_refuse_integer_pcm():
    spec = get_registry("frontend").parse({"name": "ssl", "encoder": {"name": "wav2vec2_tiny"}, "adapter": "lora"})
    frontend = build_ssl_frontend(spec.config).eval()
    assert isinstance(spec.config, SSLFrontendConfig)
    pcm = (0.1 * torch.randn(1, 4000) * 32768).to(torch.int16)
    with pytest.raises(ValueError, match="divide 16-bit PCM by 32768"):
        frontend(pcm)
    with pytest.raises(ValueError, match="floating-point waveform"):
        WhisperLogMel()(pcm)


# --- encoder overrides of dropout probabilities, and values of the wrong type --------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("wav2vec2_tiny", "attention_dropout"),
        ("wavlm_tiny", "attention_dropout"),
        ("whisper_tiny", "attention_dropout"),
        ("whisper_tiny", "dropout"),
        ("whisper_tiny", "activation_dropout"),
        ("hubert_tiny", "hidden_dropout"),
    ],
)
@pytest.mark.parametrize("value", [2.0, -0.5, 1.0, None, "0.1", True])
def test_a_dropout_override_outside_zero_to_one_is_a_config_error_at_build(name, key, value):
    # before: attention dropout (and all of Whisper's) is applied functionally: 2.0 built, and the first training step
    # failed with torch's "dropout probability has to be between 0 and 1" traceback (WavLM took -0.5 as none);
    # None or a string was huggingface_hub's StrictDataclassFieldValidationError traceback
    with pytest.raises(ConfigError, match=rf"encoder\.overrides: {key} is a dropout probability, between 0 and 1"):
        build_encoder(EncoderConfig(overrides={key: value}), preset=name)


def test_a_dropout_override_inside_zero_to_one_trains():
    config = EncoderConfig(freeze=False, overrides={"attention_dropout": 0.2, "dropout": 0})
    encoder = build_encoder(config, preset="whisper_tiny")
    assert encoder.model.config.attention_dropout == 0.2
    encoder.train()(torch.randn(2, 4000)).sum().backward()


def test_an_override_of_the_wrong_type_is_a_config_error_naming_the_key():
    # before: huggingface_hub's StrictDataclassFieldValidationError (no ConfigError: a traceback from sdd)
    with pytest.raises(ConfigError, match=r"encoder\.overrides\.layer_norm_eps: None is no valid wav2vec2 value"):
        build_encoder(EncoderConfig(overrides={"layer_norm_eps": None}), preset="wav2vec2_tiny")


@pytest.mark.parametrize("name", ["wav2vec2_tiny", "whisper_tiny"])
def test_a_pretrained_config_json_with_a_value_of_the_wrong_type_is_a_config_error(tmp_path, name):
    folder = tmp_path / name
    build_encoder(EncoderConfig(), preset=name).model.save_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw["attention_dropout"] = "high"
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"config\.json holds an invalid value: .*attention_dropout"):
        build_encoder(EncoderConfig(pretrained=str(folder)), preset=name)


# --- router configs built directly -------------------------------------------------------------------------------


def test_a_topk_router_config_refuses_an_unknown_mode_when_built_directly():
    # before: TopKRouterConfig(mode="straight-through") built a *weighted* router without a word (a recipe refused it)
    with pytest.raises(ValueError, match="mode must be 'weighted' or 'straight_through', got 'straight-through'"):
        TopKRouterConfig(k=2, mode="straight-through")  # type: ignore[arg-type]
    router = build_topk_router(TopKRouterConfig(k=2, mode="straight_through"), in_features=4, num_experts=3)
    assert router.straight_through


def test_a_router_config_refuses_an_unknown_level_when_built_directly():
    with pytest.raises(ValueError, match="level must be 'token' or 'utterance', got 'frame'"):
        SoftmaxRouterConfig(level="frame")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level must be 'token' or 'utterance'"):
        TopKRouterConfig(level="utt")  # type: ignore[arg-type]
