"""Review 7 of the pretrained-encoder front-ends: overrides that would reshape a pretrained folder's network."""

from __future__ import annotations

import pytest

from sddkit.config import from_dict
from sddkit.frontends.encoders import EncoderConfig, build_encoder
from sddkit.training.recipe import TrainRecipe


def _recipe(encoder: dict) -> dict:
    return {"model": {"frontend": {"name": "ssl", "encoder": encoder}, "backend": "linear"}}


@pytest.mark.parametrize(
    ("name", "override", "value"),
    [
        ("wav2vec2_tiny", "num_hidden_layers", 1),
        ("wav2vec2_tiny", "num_attention_heads", 1),
        ("wavlm_tiny", "conv_stride", [5, 2, 1]),
        ("whisper_tiny", "encoder_layers", 1),
    ],
)
def test_training_refuses_an_override_that_reshapes_the_pretrained_network(tmp_path, name, override, value):
    folder = tmp_path / name
    build_encoder(EncoderConfig(), preset=name).model.save_pretrained(folder)
    encoder = {"name": name, "pretrained": str(folder), "overrides": {override: value}}
    # the weights fit the overridden network's shapes: it loads, a network other than the folder's, without an error
    built = build_encoder(EncoderConfig(pretrained=str(folder), overrides={override: value}), preset=name)
    got = getattr(built.model.config, override)
    assert (list(got) if isinstance(value, list) else got) == value
    with pytest.raises(ValueError, match=rf"encoder.overrides \['{override}'\].*comes from its pretrained folder"):
        from_dict(TrainRecipe, _recipe(encoder))
    # the same override on a randomly initialised encoder defines its architecture; dropout overrides stay fine
    assert isinstance(from_dict(TrainRecipe, _recipe({"name": name, "overrides": {override: value}})), TrainRecipe)
    fine = {"name": name, "pretrained": str(folder), "overrides": {"attention_dropout": 0.0}}
    assert isinstance(from_dict(TrainRecipe, _recipe(fine)), TrainRecipe)


def test_the_layer_count_override_points_to_layer_k(tmp_path):
    encoder = {"name": "xlsr_300m", "pretrained": str(tmp_path), "overrides": {"num_hidden_layers": 12}}
    with pytest.raises(ValueError, match="use layer: k to keep the first k layers"):
        from_dict(TrainRecipe, _recipe(encoder))
