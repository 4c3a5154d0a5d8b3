"""Review 30 (an encoder + LoRA detector trained from a local Hugging Face folder, stopped and resumed, then scored):
the settings the folder's config.json decides where the recipe leaves them to it (dropout probabilities, SpecAugment's
masking with spec_augment: true, layer_norm_eps) are recorded with the waveform normalisation; a resume whose folder
now decides another value refuses, and a model directory scores as trained from an edited folder."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from test_encoderpath_review28 import _base_layout_folder, _model_config
from test_resumeenc_review29 import _latest_state, _trainer
from test_resumeenc_review29 import _recipe as resume29_recipe
from test_train_support import SyntheticDataset, one_thread  # noqa: F401  (autouse fixture)

from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.errors import CheckpointError
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe


def _recipe(tmp_path, max_steps: int, **encoder_settings) -> TrainRecipe:
    """Review 29's run with SpecAugment on, so that its masking is among what the folder decides."""
    return resume29_recipe(tmp_path, max_steps, spec_augment=True, **encoder_settings)


def _edit_config(folder, **values) -> None:
    file = folder / "config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), **values}))


def test_a_resume_refuses_an_encoder_folder_whose_config_json_now_decides_another_dropout_or_masking(tmp_path, caplog):
    # the dropout probabilities and SpecAugment's mask_time_prob the recipe leaves to the folder were read from its
    # config.json again at every resume: a file edited since (its weights, and so the pretrained digest, unchanged)
    # went on training the checkpoint's adapters under other dropout and masking, without a word
    _base_layout_folder(tmp_path / "enc", True)
    _trainer(_recipe(tmp_path, 1)).fit()
    recorded = _latest_state(tmp_path)["model_config"]["frontend"]["encoder"]["overrides"]
    assert recorded["hidden_dropout"] == 0.1 and recorded["mask_time_prob"] == 0.05  # what the folder decided
    assert recorded["layer_norm_eps"] == 1e-5
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["model_config"]["frontend"]["encoder"]["overrides"]["hidden_dropout"] == 0.1
    assert _trainer(_recipe(tmp_path, 2), resume=True).fit().step == 2  # the same folder: resumes

    _edit_config(tmp_path / "enc", hidden_dropout=0.3, mask_time_prob=0.2)
    with pytest.raises(CheckpointError) as caught:
        _trainer(_recipe(tmp_path, 3), resume=True).fit()
    message = str(caught.value)
    assert str(tmp_path / "enc") in message
    assert "model.frontend.encoder.overrides.hidden_dropout: 0.1 then, 0.3 now" in message
    assert "model.frontend.encoder.overrides.mask_time_prob: 0.05 then, 0.2 now" in message
    # how to go on as trained
    keep = "model.frontend.encoder.overrides.hidden_dropout=0.1 model.frontend.encoder.overrides.mask_time_prob=0.05"
    assert f"{keep} with --resume" in message
    assert _latest_state(tmp_path)["trainer"]["step"] == 2  # nothing trained, nothing saved

    # the way out the error names: the run's values set in the recipe, a recipe change warned of as such
    with caplog.at_level(logging.WARNING, logger="sddkit"):
        trainer = _trainer(_recipe(tmp_path, 3, overrides={"hidden_dropout": 0.1, "mask_time_prob": 0.05}), True)
        assert trainer.fit().step == 3
    config = trainer.module.frontend.encoder.model.config
    assert (config.hidden_dropout, config.mask_time_prob) == (0.1, 0.05)
    assert "model.frontend.encoder.overrides" in caplog.text
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert best["model"]["frontend"]["encoder"]["overrides"]["hidden_dropout"] == 0.1  # trained so


def test_a_resume_that_sets_the_changed_setting_itself_or_of_an_older_checkpoint_goes_on(tmp_path):
    # `dropout` sets every dropout probability: the folder's no longer matter, and the change is the recipe's own
    _base_layout_folder(tmp_path / "enc", True)
    _trainer(_recipe(tmp_path, 1)).fit()
    _edit_config(tmp_path / "enc", hidden_dropout=0.3)
    trainer = _trainer(_recipe(tmp_path, 2, dropout=0.0), resume=True)
    assert trainer.fit().step == 2
    assert trainer.module.frontend.encoder.model.config.hidden_dropout == 0.0

    # a checkpoint of an older sddkit recorded none of them: nothing to compare, it resumes under the folder's values,
    # which the checkpoints saved from there on record
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    old = ckpt.load_checkpoint(latest)
    old["model_config"]["frontend"]["encoder"]["overrides"] = {}
    old["model_config"]["frontend"]["encoder"]["dropout"] = None
    old["recipe"]["model"]["frontend"]["encoder"]["dropout"] = None
    ckpt.save_checkpoint(tmp_path / "run" / "checkpoints", latest.name, old)
    trainer = _trainer(_recipe(tmp_path, 3), resume=True)
    assert trainer.fit().step == 3
    assert _latest_state(tmp_path)["model_config"]["frontend"]["encoder"]["overrides"]["hidden_dropout"] == 0.3


def test_a_trainable_model_directory_scores_as_trained_from_a_folder_whose_config_json_was_edited(tmp_path):
    # a `weights: trainable` directory leaves its frozen encoder to the folder, whose config.json was read again at
    # every load: one edited since (another layer_norm_eps, which every layer norm of the encoder uses) scored every
    # file differently, without a word, its weights and their digest unchanged
    _base_layout_folder(tmp_path / "enc", True)
    cfg = _model_config(tmp_path / "enc")
    torch.manual_seed(1)
    det = build_detector(from_dict(DetectorConfig, cfg, "model")).eval()
    save_model_dir(tmp_path / "m", det, model_config=cfg, trainable_only=True)
    stored = json.loads((tmp_path / "m" / "config.json").read_text())["model"]["frontend"]["encoder"]
    assert stored["overrides"]["layer_norm_eps"] == 1e-5 and stored["overrides"]["attention_dropout"] == 0.1
    waveform = torch.randn(1, 4000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = load_model_dir(tmp_path / "m").model.eval()(waveform).logits

    _edit_config(tmp_path / "enc", layer_norm_eps=0.5)
    model = load_model_dir(tmp_path / "m").model.eval()
    assert model.frontend.encoder.model.config.layer_norm_eps == 1e-5
    with torch.no_grad():
        assert torch.equal(model(waveform).logits, before)
