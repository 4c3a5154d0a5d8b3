"""Review 27 (LoRA on a frozen pretrained encoder, ERM/MLDG, resume): a resume whose encoder folder is gone says
that the checkpoint holds only the trained weights and how to give the folder's new place."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.frontends.encoders import PRESETS
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _save_tiny_wav2vec2(folder) -> None:
    import transformers

    torch.manual_seed(0)
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**PRESETS["wav2vec2_tiny"].arch)).save_pretrained(folder)


def _recipe(tmp_path, folder, max_steps: int) -> TrainRecipe:
    encoder = {"name": "wav2vec2_tiny", "pretrained": str(folder), "freeze": True, "dropout": 0.0}
    return from_dict(
        TrainRecipe,
        {
            "seed": 1,
            "model": {
                "frontend": {"name": "ssl", "encoder": encoder, "adapter": "lora", "lora": {"rank": 2}},
                "backend": {"name": "linear"},
            },
            "data": {"batch_size": 4},
            "trainer": {"epochs": 5, "max_steps": max_steps, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )


def _trainer(recipe: TrainRecipe, resume: bool = False) -> Trainer:
    data, val = SyntheticDataset(8, samples=800), SyntheticDataset(6, samples=800, seed=9)
    return Trainer(recipe, train_data=data, val_data=val, resume=resume)


def test_a_resume_without_the_encoder_folder_says_the_checkpoint_needs_it_and_how_to_give_its_new_place(tmp_path):
    # a LoRA run's checkpoints leave the frozen encoder to its pretrained folder; a resume on another machine (or
    # after the folder moved) said only "not a local Hugging Face model directory; weights are never downloaded",
    # as if the checkpoint were the whole model, and not how to point the resume at the folder's new place
    folder = tmp_path / "enc"
    _save_tiny_wav2vec2(folder)
    _trainer(_recipe(tmp_path, folder, 1)).fit()
    moved = tmp_path / "enc_moved"
    shutil.move(folder, moved)

    with pytest.raises(ConfigError) as err:
        _trainer(_recipe(tmp_path, folder, 2), resume=True).fit()
    message = str(err.value)
    assert "is not a local Hugging Face model directory" in message  # the builder's own words stay first
    assert "holds only the weights training changed" in message and "step-00000001" in message
    assert "(model.frontend.encoder.pretrained=NEW_PATH with --resume;" in message

    # what it says to do resumes the run
    assert _trainer(_recipe(tmp_path, moved, 2), resume=True).fit().step == 2

    # a fresh run has no checkpoint to continue: the builder's message alone
    with pytest.raises(ConfigError) as fresh:
        _trainer(_recipe(tmp_path / "other", folder, 1)).fit()
    assert "--resume" not in str(fresh.value)


def test_a_folder_of_another_family_names_the_preset_that_reads_it(tmp_path):
    # the LoRA recipes are XLS-R's and Whisper-base's: a HuBERT, WavLM or Whisper folder put into an XLS-R recipe was
    # refused as "expects a wav2vec2 model, the pretrained directory holds a 'hubert' model", with no word of which
    # preset reads it, where a folder of the right family but another size is told its preset
    import transformers
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    torch.manual_seed(0)
    hubert, whisper, other = tmp_path / "hubert", tmp_path / "whisper", tmp_path / "other"
    transformers.HubertModel(transformers.HubertConfig(**PRESETS["hubert_tiny"].arch)).save_pretrained(hubert)
    WhisperEncoder(transformers.WhisperConfig(**PRESETS["whisper_tiny"].arch)).save_pretrained(whisper)
    with pytest.raises(
        ConfigError, match=r"expects a wav2vec2 model, .* holds a 'hubert' model; use preset 'hubert_tiny'"
    ):
        build_encoder(EncoderConfig(pretrained=str(hubert)), preset="xlsr_300m")
    with pytest.raises(ConfigError, match=r"holds a 'whisper' model; use preset 'whisper_tiny'"):
        build_encoder(EncoderConfig(pretrained=str(whisper)), preset="wav2vec2_tiny")
    # the preset named reads the folder
    assert build_encoder(EncoderConfig(pretrained=str(hubert)), preset="hubert_tiny").family == "hubert"
    # a family with no preset at all says which families there are
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "data2vec-audio"}')
    with pytest.raises(ConfigError, match=r"'data2vec-audio' model; the encoder presets are of the families wav2vec2"):
        build_encoder(EncoderConfig(pretrained=str(other)), preset="xlsr_300m")
