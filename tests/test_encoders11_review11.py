"""Review 11 of the pretrained-encoder front-ends: frozen running statistics, the folder's feature-extractor rates,
Whisper folders without ``architectures``."""

from __future__ import annotations

import json

import pytest
import torch

from sddkit.frontends.encoders import EncoderConfig, build_encoder


def _build(name: str, **kwargs):
    return build_encoder(EncoderConfig(**kwargs), preset=name)


def test_a_frozen_encoders_batchnorm_keeps_its_published_statistics_in_training():
    """A HuBERT with ``conv_pos_batch_norm: true`` (an option of transformers' HubertConfig) has a BatchNorm in its
    positional convolution. Frozen, it was still put in training mode by ``detector.train()``: it normalised each
    input by its batch's statistics and moved the running ones towards the training data, so the "frozen" encoder
    scored with other features after training than the pretrained folder gives."""
    torch.manual_seed(0)
    enc = _build("hubert_tiny", overrides={"conv_pos_batch_norm": True}, dropout=0.0)
    bn = enc.model.encoder.pos_conv_embed.batch_norm
    with torch.no_grad():
        bn.running_mean.fill_(0.3)
        bn.running_var.fill_(2.0)
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    x = 0.1 * torch.randn(3, 4000)
    enc.eval()
    with torch.no_grad():
        reference = enc(x)
    enc.train()
    assert enc.training and not bn.training
    with torch.no_grad():
        trained_mode = enc(x)
        alone = enc(x[:1])
    torch.testing.assert_close(bn.running_mean, stats[0])
    torch.testing.assert_close(bn.running_var, stats[1])
    torch.testing.assert_close(trained_mode, reference)  # dropout 0: training mode computes the eval function
    torch.testing.assert_close(alone, reference[:1])  # an input's features do not depend on its batch
    # fine-tuned (freeze: false), the layer trains as usual
    tuned = _build("hubert_tiny", overrides={"conv_pos_batch_norm": True}, freeze=False).train()
    assert tuned.model.encoder.pos_conv_embed.batch_norm.training


def _recipe(encoder: dict) -> dict:
    return {"model": {"frontend": {"name": "ssl", "encoder": encoder}, "backend": "linear"}}


@pytest.mark.parametrize(
    ("name", "file", "settings", "bad"),
    [
        ("wav2vec2_tiny", "preprocessor_config.json", {"sampling_rate": 8000, "do_normalize": True}, "sampling_rate"),
        ("hubert_tiny", "processor_config.json", {"feature_extractor": {"sampling_rate": 22050}}, "sampling_rate"),
        ("whisper_tiny", "preprocessor_config.json", {"sampling_rate": 16000, "hop_length": 320}, "hop_length"),
    ],
)
def test_training_refuses_a_folder_whose_feature_extractor_takes_other_input(tmp_path, name, file, settings, bad):
    """The folder's feature extractor states the rate (and Whisper's STFT) the model was trained on; sddkit feeds
    16 kHz samples (and a 400/160 log-Mel) whatever it says, so an 8 kHz model trained on, without a word."""
    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe

    _build(name).model.save_pretrained(tmp_path)
    encoder = {"name": name, "pretrained": str(tmp_path)}
    assert isinstance(from_dict(TrainRecipe, _recipe(encoder)), TrainRecipe)  # no feature extractor: nothing said
    (tmp_path / file).write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=rf"{file}\) states {bad}: .*sddkit gives"):
        from_dict(TrainRecipe, _recipe(encoder))
    # the published values pass, as the model still builds (and a model trained so still loads)
    _build(name, pretrained=str(tmp_path))
    fine = {"sampling_rate": 16000, "n_fft": 400, "hop_length": 160, "feature_size": 80}
    (tmp_path / file).write_text(json.dumps({"feature_extractor": fine} if file == "processor_config.json" else fine))
    assert isinstance(from_dict(TrainRecipe, _recipe(encoder)), TrainRecipe)


@pytest.mark.parametrize("whole", ["WhisperModel", "WhisperForConditionalGeneration", "WhisperEncoder"])
def test_a_whisper_folder_without_architectures_loads_by_its_weights_prefixes(tmp_path, whole):
    """A config.json without ``architectures`` (hand-written or converted) over a whole model's weights was loaded
    as an encoder: every weight (``model.encoder.conv1.weight``, ...) reported missing, the folder refused as one
    that "lacks 37 weight(s)" while it held them all."""
    import transformers

    from sddkit.frontends.encoders import PRESETS

    arch = {**PRESETS["whisper_tiny"].arch, "decoder_attention_heads": 2, "decoder_ffn_dim": 64}
    if whole == "WhisperEncoder":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder as cls
    else:
        cls = getattr(transformers, whole)
    torch.manual_seed(0)
    source = cls(transformers.WhisperConfig(**arch)).eval()
    source.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = _build("whisper_tiny", pretrained=str(tmp_path))
    reference = source if whole == "WhisperEncoder" else source.get_encoder()
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, msg=name)


def test_an_empty_pretrained_path_is_refused_not_read_as_the_working_directory():
    # Path("") is ".": `pretrained: ""` (an unset variable substituted into a recipe) read the working directory
    from sddkit.config import from_dict
    from sddkit.errors import ConfigError
    from sddkit.frontends.encoders import EncoderConfig

    for empty in ("", "  "):
        with pytest.raises((ConfigError, ValueError), match="pretrained is an empty string"):
            from_dict(EncoderConfig, {"pretrained": empty})
