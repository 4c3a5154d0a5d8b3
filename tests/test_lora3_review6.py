"""LoRA / encoders, third look (review 6): defects found, pinned by tests (tiny configs, no real weights)."""

from __future__ import annotations

import pytest

from sddkit.errors import ConfigError
from sddkit.registry import get_registry


def test_a_pretrained_folder_that_no_preset_fits_says_it_cannot_be_loaded(tmp_path):
    """A folder of a size no preset has was refused as "differs from the preset: hidden_size=48 (preset: 768),
    ..." with no hint: no preset fits it, and ``overrides`` cannot help (the check reads the folder's own values),
    which the error did not say."""
    from transformers import WavLMConfig

    WavLMConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96).save_pretrained(
        tmp_path
    )
    with pytest.raises(
        ConfigError,
        match=r"hidden_size=48 .*; no wavlm preset has this architecture \(wavlm_base, wavlm_large, wavlm_tiny\), "
        r"so this folder cannot be loaded",
    ):
        get_registry("encoder").build({"name": "wavlm_base", "pretrained": str(tmp_path)})


def test_a_spec_augment_override_that_would_be_ignored_is_refused():
    """``overrides: {apply_spec_augment: true}`` was accepted and then overwritten by ``spec_augment`` (false by
    default): the recipe asked for SpecAugment masking and trained without it, without a word."""
    encoders = get_registry("encoder")
    with pytest.raises(ConfigError, match="apply_spec_augment: SpecAugment masking is switched by spec_augment"):
        encoders.build({"name": "wav2vec2_tiny", "overrides": {"apply_spec_augment": True, "mask_time_prob": 0.5}})
    on = encoders.build({"name": "wav2vec2_tiny", "spec_augment": True, "overrides": {"apply_spec_augment": True}})
    assert on.model.config.apply_spec_augment is True
    # false agrees with the default (self_contained_spec writes it for a folder that turned masking off)
    off = encoders.build({"name": "hubert_tiny", "overrides": {"apply_spec_augment": False}})
    assert off.model.config.apply_spec_augment is False
