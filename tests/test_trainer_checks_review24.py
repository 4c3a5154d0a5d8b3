"""Checks of a training recipe against its model and data that said the wrong thing, or nothing."""

from __future__ import annotations

import pytest


def test_a_crop_too_long_for_whisper_says_too_long(tmp_path):
    # Whisper's AudioTooLongError is a ValueError, which the crop check took for a back-end's minimum: a 31 s crop
    # was "too short for this model: Whisper encodes at most 480159 samples"
    from test_detector_review import TINY_SSL_AASIST
    from test_train import _recipe
    from test_train_support import write_corpus

    from sddkit.errors import ConfigError
    from sddkit.training.trainer import Trainer

    spec = {"protocol": str(write_corpus(tmp_path / "corpus")), "format": "utterance_table"}
    model = {
        "frontend": {"name": "ssl", "encoder": {"name": "whisper_tiny", "dropout": 0.0}},
        "backend": TINY_SSL_AASIST,
    }
    data = {"batch_size": 4, "train": [spec], "crop_samples": 31 * 16000}
    with pytest.raises(ConfigError, match=r"data.crop_samples=496000 is too long for this model: Whisper encodes at"):
        Trainer(_recipe(tmp_path, model=model, data=data)).fit()


def test_patience_without_validation_data_says_it_does_nothing(tmp_path, monkeypatch, caplog):
    # trainer.patience counts validations without improvement: without data.val the run trained every epoch while
    # the recipe said it would stop early, without a word
    import logging

    from test_train import _recipe
    from test_train_support import install_tiny, write_corpus

    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)
    spec = {"protocol": str(write_corpus(tmp_path / "corpus")), "format": "utterance_table"}
    recipe = _recipe(tmp_path, data={"batch_size": 8, "train": [spec]}, trainer={"epochs": 1, "patience": 2})
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        Trainer(recipe).fit()
    assert "trainer.patience=2 has no effect: there is no data.val to validate on" in caplog.text
