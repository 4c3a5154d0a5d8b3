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


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_an_encoder_of_no_layer_is_refused(count):
    # transformers builds range(num_hidden_layers) layers: -1 gave an encoder without any, scored without a word
    from test_encoders import build

    from sddkit.errors import ConfigError

    for name, key in (("wav2vec2_tiny", "num_hidden_layers"), ("whisper_tiny", "encoder_layers")):
        with pytest.raises(ConfigError, match=rf"encoder.overrides.{key} must be a whole number of layers"):
            build(name, overrides={key: count})
    assert len(build("wav2vec2_tiny", overrides={"num_hidden_layers": 1}).model.encoder.layers) == 1


def test_a_dotted_override_into_a_list_names_the_indexed_key(tmp_path):
    from sddkit.config import apply_overrides
    from sddkit.errors import ConfigError

    recipe = {"data": {"train": [{"protocol": "a.csv"}]}}
    with pytest.raises(ConfigError, match=r"data.train is a list of 1: e.g. data.train\[0\].protocol=\.\.\."):
        apply_overrides(recipe, ["data.train.protocol=b.csv"])
    assert apply_overrides(recipe, ["data.train[0].protocol=b.csv"])["data"]["train"][0]["protocol"] == "b.csv"


def test_a_resume_after_a_protocol_was_edited_says_so(tmp_path, monkeypatch, caplog):
    # run.json kept each session's protocol digests, but a resume over an edited protocol went on without a word
    import logging

    from test_train import _recipe
    from test_train_support import install_tiny, write_corpus

    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)
    csv = write_corpus(tmp_path / "corpus")
    spec = {"protocol": str(csv), "format": "utterance_table"}
    data = {"batch_size": 8, "train": [spec], "val": [spec]}
    Trainer(_recipe(tmp_path, data=data, trainer={"epochs": 1})).fit()
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        Trainer(_recipe(tmp_path, data=data, trainer={"epochs": 2}), resume=True).fit()
    assert "changed since the last session" not in caplog.text  # the same bytes: nothing said
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-1]) + "\n")  # one utterance fewer
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        Trainer(_recipe(tmp_path, data=data, trainer={"epochs": 3}), resume=True).fit()
    assert f"protocol file(s) {csv} changed since the last session of this run" in caplog.text


def test_a_recipes_home_paths_are_expanded_as_a_shell_would(tmp_path, monkeypatch):
    # YAML values pass through no shell: ~/data/x.csv was looked for under a folder named ~, and trainer.out_dir
    # ~/runs/x made one in the working directory
    from sddkit.config import from_dict
    from sddkit.detectors.mixture import MixtureConfig
    from sddkit.training.recipe import TrainRecipe

    monkeypatch.setenv("HOME", str(tmp_path))
    recipe = from_dict(
        TrainRecipe,
        {
            "model": {"frontend": "logmel", "backend": "lcnn"},
            "data": {"train": [{"protocol": "~/data/train.csv", "options": {"root": "~/audio"}}]},
            "trainer": {"out_dir": "~/runs/x"},
        },
    )
    spec = recipe.data.train[0]
    assert spec.protocol == f"{tmp_path}/data/train.csv" and spec.options["root"] == f"{tmp_path}/audio"
    assert recipe.trainer.out_dir == f"{tmp_path}/runs/x"
    grown = from_dict(TrainRecipe, {"init_from": "~/runs/x/best", "molex": {"add_experts": 1}})
    assert grown.init_from == f"{tmp_path}/runs/x/best"
    assert from_dict(MixtureConfig, {"expert_dirs": ["~/a", "b"]}).expert_dirs == [f"{tmp_path}/a", "b"]
    # a path without a leading ~ is kept as written
    kept = from_dict(TrainRecipe, {"model": {"frontend": "logmel", "backend": "lcnn"}, "trainer": {"out_dir": "r/~x"}})
    assert kept.trainer.out_dir == "r/~x"


def test_ema_bn_batches_without_a_re_estimation_says_it_does_nothing(tmp_path, monkeypatch, caplog):
    import logging

    from test_train import _recipe
    from test_train_support import install_tiny, write_corpus

    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)
    spec = {"protocol": str(write_corpus(tmp_path / "corpus")), "format": "utterance_table"}
    data = {"batch_size": 8, "train": [spec], "val": [spec]}
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        Trainer(_recipe(tmp_path, data=data, trainer={"epochs": 1, "ema_bn_batches": 3})).fit()
    assert "trainer.ema_bn_batches=3 has no effect without trainer.ema_decay" in caplog.text
