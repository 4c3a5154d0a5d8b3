"""Review 29 (an encoder + LoRA detector trained from a local Hugging Face folder, stopped and resumed): the run
records the waveform normalisation its encoder's folder decided at the start, and a resume whose folder now decides
another refuses instead of training on other input."""

from __future__ import annotations

import json
import logging

import pytest
from test_encoderpath_review28 import _base_layout_folder
from test_train_support import SyntheticDataset, one_thread  # noqa: F401  (autouse fixture)

from sddkit.config import from_dict
from sddkit.errors import CheckpointError
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(tmp_path, max_steps: int, **encoder_settings) -> TrainRecipe:
    """A tiny wav2vec2 + LoRA run on the encoder folder ``tmp_path/enc`` (``encoder_settings``: the encoder spec's
    other keys); also the recipe of tests/test_resumeencoder_review30.py."""
    encoder = {"name": "wav2vec2_tiny", "pretrained": str(tmp_path / "enc"), "freeze": True, **encoder_settings}
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": {
                "frontend": {"name": "ssl", "encoder": encoder, "adapter": "lora", "lora": {"rank": 2, "alpha": 2.0}},
                "backend": {"name": "linear"},
            },
            "optimizer": {"lr": 1e-2},
            "data": {"batch_size": 4},
            "trainer": {"epochs": 10, "max_steps": max_steps, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )


def _trainer(recipe: TrainRecipe, resume: bool = False) -> Trainer:
    return Trainer(
        recipe,
        train_data=SyntheticDataset(8, samples=1600),
        val_data=SyntheticDataset(4, samples=1600, seed=9),
        resume=resume,
    )


def _latest_state(tmp_path) -> dict:
    return ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))


def test_a_resume_refuses_an_encoder_folder_that_now_decides_another_normalisation(tmp_path, caplog):
    # `normalize: null` is decided by the folder (do_normalize of its preprocessor_config.json, else the extractor
    # type): the checkpoints recorded null, so every resume decided it again from the folder as found then, and a
    # folder whose file was edited, replaced or left out of a copy went on training the checkpoint's adapters on
    # unnormalised samples where they had learnt normalised ones, without a word (its weights, and so the pretrained
    # digest, unchanged); best/ exported from an earlier checkpoint recorded the new value too
    _base_layout_folder(tmp_path / "enc", True)
    _trainer(_recipe(tmp_path, 1)).fit()
    state = _latest_state(tmp_path)
    assert state["model_config"]["frontend"]["encoder"]["normalize"] is True  # what the folder decided, recorded
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["model_config"]["frontend"]["encoder"]["normalize"] is True
    assert _trainer(_recipe(tmp_path, 2), resume=True).fit().step == 2  # the same folder: resumes

    (tmp_path / "enc" / "preprocessor_config.json").unlink()  # copied without it: the group-norm type says false
    trainer = _trainer(_recipe(tmp_path, 3), resume=True)
    with pytest.raises(CheckpointError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert str(tmp_path / "enc") in message
    assert "model.frontend.encoder.normalize: null gave true" in message and "now decides false" in message
    assert "model.frontend.encoder.normalize=true with --resume" in message  # how to go on as trained
    assert _latest_state(tmp_path)["trainer"]["step"] == 2  # nothing trained, nothing saved

    # the way out the error names: the run's value set in the recipe, a recipe change warned of as such
    with caplog.at_level(logging.WARNING, logger="sddkit"):
        trainer = _trainer(_recipe(tmp_path, 3, normalize=True), resume=True)
        assert trainer.fit().step == 3
    assert trainer.module.frontend.encoder.normalize is True
    assert "model.frontend.encoder.normalize: null -> true" in caplog.text
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert best["model"]["frontend"]["encoder"]["normalize"] is True  # trained so; not the folder's value now


def test_a_resume_under_an_explicit_normalize_change_or_of_an_older_checkpoint_goes_on(tmp_path, caplog):
    # a normalize the recipe changes is the user's own change: warned of, as any other recipe change, not refused
    _base_layout_folder(tmp_path / "enc", True)
    _trainer(_recipe(tmp_path, 1)).fit()
    with caplog.at_level(logging.WARNING, logger="sddkit"):
        trainer = _trainer(_recipe(tmp_path, 2, normalize=False), resume=True)
        assert trainer.fit().step == 2
    assert trainer.module.frontend.encoder.normalize is False
    assert "model.frontend.encoder.normalize: null -> false" in caplog.text
    assert _latest_state(tmp_path)["model_config"]["frontend"]["encoder"]["normalize"] is False

    # a checkpoint of an older sddkit recorded null: nothing to compare, it resumes under the folder's value, which
    # the checkpoints saved from there on record
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    old = ckpt.load_checkpoint(latest)
    old["model_config"]["frontend"]["encoder"]["normalize"] = None
    old["recipe"]["model"]["frontend"]["encoder"]["normalize"] = None
    ckpt.save_checkpoint(tmp_path / "run" / "checkpoints", latest.name, old)
    (tmp_path / "enc" / "preprocessor_config.json").unlink()
    trainer = _trainer(_recipe(tmp_path, 3), resume=True)
    assert trainer.fit().step == 3
    assert trainer.module.frontend.encoder.normalize is False
    assert _latest_state(tmp_path)["model_config"]["frontend"]["encoder"]["normalize"] is False
