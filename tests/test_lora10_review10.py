"""Review 10 of the LoRA / MoLEx layers, the encoders and their export (tiny random models only)."""

from __future__ import annotations

import pytest
import torch

from sddkit.errors import ConfigError
from sddkit.frontends.lora import LoRAConfig, LoRALinear, apply_lora
from sddkit.frontends.molex import MoLExConfig
from sddkit.registry import get_registry


def _encoder(name: str = "wav2vec2_tiny"):
    return get_registry("encoder").build({"name": name, "dropout": 0.0})


def test_adapter_targets_given_as_one_string_are_refused_not_read_letter_by_letter():
    # "qv" was read as {"q", "v"}: both adapted without a word; "out" was refused as the targets o, t, u; and the
    # config recorded the string, which a model directory's config then failed to load ("expected a list")
    for config in (LoRAConfig, MoLExConfig):
        with pytest.raises(ValueError, match="list of projection names.*'qv'"):
            config(targets="qv")
        with pytest.raises(ValueError, match="list of projection names.*'out'"):
            config(targets="out")
    encoder = _encoder()
    with pytest.raises(ConfigError, match="list of projection names.*'qv'"):
        encoder.projection_slots("qv")
    # a repeated target replaced the first adapter by a second one, the first left out of the model
    with pytest.raises(ConfigError, match="repeat a projection"):
        encoder.projection_slots(["q", "q"])
    adapted = apply_lora(encoder, LoRAConfig(rank=2, targets=["q", "v"]))
    assert [name for name, _ in adapted] == ["layers.0.q", "layers.0.v", "layers.1.q", "layers.1.v"]
    assert all(isinstance(m, LoRALinear) for _, m in adapted)


def test_training_refuses_a_whisper_spec_augment_override_the_encoder_never_applies(tmp_path):
    # transformers masks Whisper's features in WhisperModel.forward; the encoder this front-end runs never does, so
    # the override trained without any masking, without a word (spec_augment: true is refused for Whisper already)
    from sddkit.config import from_dict
    from sddkit.frontends.encoders import EncoderConfig, build_encoder
    from sddkit.training.recipe import TrainRecipe

    folder = tmp_path / "whisper_tiny"
    build_encoder(EncoderConfig(), preset="whisper_tiny").model.save_pretrained(folder)

    def recipe(overrides: dict) -> dict:
        encoder = {"name": "whisper_tiny", "pretrained": str(folder), "overrides": overrides}
        return {"model": {"frontend": {"name": "ssl", "encoder": encoder, "adapter": "lora"}, "backend": "linear"}}

    with pytest.raises(ValueError, match="apply_spec_augment.*never applies SpecAugment"):
        from_dict(TrainRecipe, recipe({"apply_spec_augment": True, "mask_time_prob": 0.05}))
    # it still builds (a model trained so loads as trained), and changes nothing: train outputs are eval outputs
    masked = build_encoder(
        EncoderConfig(
            pretrained=str(folder), dropout=0.0, overrides={"apply_spec_augment": True, "mask_time_prob": 0.5}
        ),
        preset="whisper_tiny",
    )
    x = torch.randn(1, 8000)
    with torch.no_grad():
        assert torch.equal(masked.train()(x), masked.eval()(x))
    for fine in ({}, {"apply_spec_augment": False}, {"attention_dropout": 0.0}):
        assert isinstance(from_dict(TrainRecipe, recipe(fine)), TrainRecipe)
