"""Review 26 of the pretrained speech encoders: one train/eval mode for a whole built encoder, and a preset that
loads Whisper large / large-v2 folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sddkit.errors import AudioTooShortError, ConfigError
from sddkit.frontends.encoders import PRESETS, EncoderConfig, build_encoder


def _save_tiny_folder(tmp_path, preset: str):
    """A local folder of a randomly initialised tiny encoder, as a user's pretrained folder."""
    model = build_encoder(EncoderConfig(freeze=False), preset=preset).model
    model.save_pretrained(tmp_path)
    return str(tmp_path)


@pytest.mark.parametrize("preset", ["wav2vec2_tiny", "whisper_tiny"])
def test_a_pretrained_encoder_is_built_in_one_mode_throughout(tmp_path, preset):
    """from_pretrained returns its model in eval mode: a freshly built pretrained encoder said `training` while its
    transformer ran without dropout (Whisper dropped its input embeddings, no layer's activations), unlike the same
    encoder built without a folder. It is now in training mode throughout, as any new torch module."""
    enc = build_encoder(EncoderConfig(pretrained=_save_tiny_folder(tmp_path, preset), dropout=0.5), preset=preset)
    assert {m.training for m in enc.modules()} == {True}
    x = torch.randn(1, 8000) * 0.1
    assert not torch.equal(enc(x), enc(x))  # dropout 0.5 acts, as the mode says
    enc.eval()
    assert {m.training for m in enc.modules()} == {False}
    assert torch.equal(enc(x), enc(x))


def test_spec_augments_length_check_agrees_with_the_models_mode(tmp_path):
    """The training-mode length check of spec_augment read the wrapper's mode: a freshly built pretrained encoder
    refused a short input that its (eval-mode) transformer would never have masked. Now the two agree: the check
    applies when masking does."""
    folder = _save_tiny_folder(tmp_path, "wav2vec2_tiny")
    enc = build_encoder(
        EncoderConfig(pretrained=folder, spec_augment=True, overrides={"mask_time_prob": 0.5}), preset="wav2vec2_tiny"
    )
    assert enc.training and enc.model.training
    short = torch.randn(1, enc.min_samples) * 0.1
    with pytest.raises(AudioTooShortError, match="spec_augment"):
        enc(short)
    long = torch.randn(1, 16000) * 0.1
    np.random.seed(0)  # SpecAugment draws its masks from numpy
    masked = enc(long)
    enc.eval()
    assert not torch.allclose(masked, enc(long))  # the training forward did mask (and drop)


def _large_v2_folder(tmp_path) -> str:
    """config.json of openai/whisper-large-v2 (its architecture values), without weights."""
    from transformers import WhisperConfig

    cfg = WhisperConfig(
        d_model=1280,
        encoder_layers=32,
        encoder_attention_heads=20,
        encoder_ffn_dim=5120,
        decoder_layers=32,
        decoder_attention_heads=20,
        decoder_ffn_dim=5120,
        num_mel_bins=80,
    )
    cfg.architectures = ["WhisperForConditionalGeneration"]
    cfg.save_pretrained(tmp_path)
    return str(tmp_path)


def test_a_whisper_large_v2_folder_fits_the_whisper_large_preset(tmp_path):
    """Whisper large-v2 (80 mel bins) fitted no preset (large-v3 has 128): its folder 'could not be loaded' at all.
    The whisper_large preset takes it; large-v3's preset names it."""
    folder = _large_v2_folder(tmp_path)
    arch = PRESETS["whisper_large"].arch
    assert (arch["d_model"], arch["encoder_layers"], arch["num_mel_bins"]) == (1280, 32, 80)
    with pytest.raises(ConfigError, match="use preset 'whisper_large'"):
        build_encoder(EncoderConfig(pretrained=folder), preset="whisper_large_v3")
    # past the architecture check: only the (absent) weights are missing
    with pytest.raises(ConfigError, match="cannot load weights"):
        build_encoder(EncoderConfig(pretrained=folder), preset="whisper_large")


def test_a_hugging_face_cache_folder_names_its_snapshot(tmp_path):
    """A hub cache folder (models--org--name, as huggingface-cli download leaves it) was refused as 'not a local
    Hugging Face model directory' with no word of the snapshots/<revision>/ folder that holds the model."""
    cache = tmp_path / "models--openai--whisper-base"
    snapshot = cache / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    _save_tiny_folder(snapshot, "whisper_tiny")
    with pytest.raises(ConfigError, match=r"Hugging Face cache folder: name a snapshot in it, e.g. '.*abc123'"):
        build_encoder(EncoderConfig(pretrained=str(cache)), preset="whisper_tiny")
    # the named snapshot loads
    assert build_encoder(EncoderConfig(pretrained=str(snapshot)), preset="whisper_tiny").output_dim == 32
