"""Review 28 (the four encoder families from local Hugging Face folders, LoRA + SSL-AASIST): a model directory that
leaves its frozen encoder to the pretrained folder records the waveform normalisation that folder decided."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.frontends.encoders import PRESETS


def _base_layout_folder(folder, do_normalize: bool | None) -> None:
    """A tiny wav2vec 2.0 folder of the base layout (group-norm feature extractor, post-norm transformer), as
    facebook/wav2vec2-base is published: its preprocessor_config.json says do_normalize: true, which its group-norm
    extractor alone would not imply."""
    import transformers

    torch.manual_seed(0)
    arch = {**PRESETS["wav2vec2_tiny"].arch, "feat_extract_norm": "group", "do_stable_layer_norm": False}
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**arch)).save_pretrained(folder)
    if do_normalize is not None:
        (folder / "preprocessor_config.json").write_text(
            json.dumps({"feature_extractor_type": "Wav2Vec2FeatureExtractor", "do_normalize": do_normalize})
        )


def _model_config(folder) -> dict:
    encoder = {"name": "wav2vec2_tiny", "pretrained": str(folder), "freeze": True}
    return {
        "frontend": {"name": "ssl", "encoder": encoder, "adapter": "lora", "lora": {"rank": 2, "alpha": 2.0}},
        "backend": {"name": "ssl_aasist"},
    }


def _logits(directory, waveform):
    model = load_model_dir(directory).model
    with torch.no_grad():
        return model(waveform).logits, model.frontend.encoder.normalize


@pytest.mark.parametrize("do_normalize", [True, False])
def test_a_trainable_model_directory_scores_as_trained_from_a_folder_copy_without_its_preprocessor_config(
    tmp_path, do_normalize
):
    # the frozen encoder of a LoRA model loads from its folder; `normalize: null` was written as such and decided
    # again at every load: the same folder copied with config.json and the weights only (as the shared Whisper
    # folder is laid out), or with another preprocessor_config.json, gave the model other input than it was
    # trained on (here: unnormalised samples where it learnt normalised ones), and every score changed silently
    from sddkit.detectors.model_dir import _build_detector

    folder = tmp_path / "wav2vec2-base-like"
    flipped = tmp_path / "flipped"
    _base_layout_folder(folder, do_normalize)
    _base_layout_folder(flipped, not do_normalize)
    model = _build_detector(_model_config(folder))
    assert model.frontend.encoder.normalize is do_normalize
    with torch.no_grad():  # a trained adapter, so that the saved weights matter
        for _, module in model.frontend.adapted_modules():
            module.lora_B.normal_(0.0, 0.5)
    out = tmp_path / "model"
    save_model_dir(out, model.eval(), model_config=_model_config(folder), trainable_only=True)

    # a DC offset and a low level: normalised or not, the encoder sees very different samples
    waveform = 0.02 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(3)) + 0.05
    trained, used = _logits(out, waveform)
    assert used is do_normalize

    (folder / "preprocessor_config.json").unlink()  # the folder copied without it
    if do_normalize:  # (without the file, this group-norm model means no normalisation: the other value)
        again, used = _logits(out, waveform)
    else:  # a copy whose file states the other value: same weights, so the pretrained digest still passes
        (folder / "preprocessor_config.json").write_text((flipped / "preprocessor_config.json").read_text())
        again, used = _logits(out, waveform)
    assert used is do_normalize
    torch.testing.assert_close(again, trained)
    recorded = json.loads((out / "config.json").read_text())["model"]["frontend"]["encoder"]
    assert recorded["normalize"] is do_normalize  # the value decided, not null


def test_the_recorded_normalisation_keeps_an_explicit_value_and_follows_an_overridden_extractor_type(tmp_path):
    from sddkit.frontends.encoders import recorded_normalize_spec

    folder = tmp_path / "enc"
    _base_layout_folder(folder, None)  # no preprocessor_config.json: the extractor type decides
    spec = {"name": "wav2vec2_tiny", "pretrained": str(folder)}
    assert recorded_normalize_spec(spec)["normalize"] is False  # group norm
    assert recorded_normalize_spec({**spec, "normalize": True})["normalize"] is True  # the user's value stays
    layer = {**spec, "overrides": {"feat_extract_norm": "layer"}}
    assert recorded_normalize_spec(layer)["normalize"] is True  # as build_encoder decides it on the built config
    whisper = {"name": "whisper_tiny", "pretrained": str(folder)}
    assert recorded_normalize_spec(whisper) is whisper  # Whisper has no waveform normalisation
    gone = {**spec, "pretrained": str(tmp_path / "missing")}
    assert recorded_normalize_spec(gone) is gone  # loading it says what is missing


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_log():
    """What transformers' model loading logs (its handler writes it to stderr)."""
    records = _Records()
    hf_logger = logging.getLogger("transformers.modeling_utils")
    hf_logger.addHandler(records)
    yield records.messages
    hf_logger.removeHandler(records)


def test_a_published_pretraining_folder_loads_without_transformers_load_report(tmp_path, transformers_log):
    # the published XLS-R folders are Wav2Vec2ForPreTraining, with quantizer / project_q / project_hid weights the
    # encoder leaves out on purpose: transformers 5 logged a "LOAD REPORT" table in terminal colours ("not ok if you
    # expect identical arch") at every load, into every training log and onto `sdd score --quiet`'s stderr
    import transformers

    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    folder = tmp_path / "xlsr-like"
    torch.manual_seed(0)
    pretraining = transformers.Wav2Vec2ForPreTraining(transformers.Wav2Vec2Config(**PRESETS["wav2vec2_tiny"].arch))
    pretraining.save_pretrained(folder)
    encoder = build_encoder(EncoderConfig(pretrained=str(folder)), preset="wav2vec2_tiny")
    torch.testing.assert_close(  # the encoder's weights were loaded all the same
        encoder.model.encoder.layers[0].attention.q_proj.weight,
        pretraining.wav2vec2.encoder.layers[0].attention.q_proj.weight,
    )
    assert not [m for m in transformers_log if "LOAD REPORT" in m]


def test_a_folder_of_other_tensor_shapes_names_them_in_the_error(tmp_path, transformers_log):
    # the report is what says which tensors do not fit: transformers' error says "look at the above report", so it is
    # part of the error, not left out with the report of a load that succeeds
    import transformers

    from sddkit.errors import ConfigError
    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    folder = tmp_path / "edited"
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**PRESETS["wav2vec2_tiny"].arch)).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "conv_dim": [16, 16, 16]}))  # hand-edited
    with pytest.raises(ConfigError) as err:
        build_encoder(EncoderConfig(pretrained=str(folder)), preset="wav2vec2_tiny")
    message = str(err.value)
    assert f"cannot load weights from {folder}" in message
    assert "LOAD REPORT" in message and "feature_extractor.conv_layers.{0, 1, 2}.conv.weight" in message
    assert "MISMATCH" in message and "\x1b[" not in message  # without terminal colours


def test_an_x_vector_folders_head_is_left_out_quietly_and_weights_in_its_encoder_are_still_named(tmp_path, caplog):
    # an x-vector model (microsoft/wavlm-base-plus-sv) names a head layer `feature_extractor`, as the encoder names
    # its convolutions: loading its folder warned that "feature_extractor.weight" and ".bias" lie inside the model's
    # own layers and did not load, as if the encoder's convolutions had not been read
    import transformers
    from safetensors.torch import load_file, save_file

    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    folder = tmp_path / "wavlm-sv"
    torch.manual_seed(0)
    arch = {**PRESETS["wavlm_tiny"].arch, "tdnn_dim": (8, 8), "tdnn_kernel": (3, 1), "tdnn_dilation": (1, 1)}
    xvector = transformers.WavLMForXVector(transformers.WavLMConfig(**arch, xvector_output_dim=4))
    xvector.save_pretrained(folder)
    with caplog.at_level(logging.WARNING, logger="sddkit.frontends.encoders"):
        encoder = build_encoder(EncoderConfig(pretrained=str(folder)), preset="wavlm_tiny")
    assert not [r.getMessage() for r in caplog.records if r.name == "sddkit.frontends.encoders"]
    torch.testing.assert_close(  # the encoder's own convolutions were read
        encoder.model.feature_extractor.conv_layers[0].conv.weight,
        xvector.wavlm.feature_extractor.conv_layers[0].conv.weight,
    )

    weights = load_file(folder / "model.safetensors")  # a tensor that really has no place is still named
    weights["wavlm.encoder.layers.0.attention.q_proj.lora_A"] = torch.zeros(2, 32)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sddkit.frontends.encoders"):
        build_encoder(EncoderConfig(pretrained=str(folder)), preset="wavlm_tiny")
    warned = [r.getMessage() for r in caplog.records if r.name == "sddkit.frontends.encoders"]
    assert len(warned) == 1 and "q_proj.lora_A" in warned[0] and "feature_extractor" not in warned[0]
