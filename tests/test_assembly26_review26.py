"""Review 26 of single-detector model directories: damaged files and a directory moved to another machine say
what to do."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import sddkit.detectors.model_dir as md
from sddkit.config import from_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.errors import CheckpointError, ConfigError

SPECTRAL = {"frontend": {"name": "lfcc"}, "backend": {"name": "lcnn"}}


def _saved(tmp_path):
    model = build_detector(from_dict(DetectorConfig, SPECTRAL, "model"))
    return md.save_model_dir(tmp_path / "m", model, model_config=SPECTRAL)


def test_a_truncated_weights_file_names_the_file_and_what_to_do(tmp_path):
    # a copy cut short said only the parser's "incomplete metadata, file not fully covered"
    d = _saved(tmp_path)
    weights = d / md.WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        md.load_model_dir(d)
    message = str(err.value)
    assert message.startswith(f"{weights}: unreadable weights")
    assert "copy the model directory again from its source" in message


@pytest.mark.parametrize("damage", [lambda b: b[:40], lambda b: b"", lambda b: b"\xff\xfe" + b])
def test_a_damaged_config_json_names_the_file_and_what_to_do(tmp_path, damage):
    d = _saved(tmp_path)
    config = d / md.CONFIG_NAME
    config.write_bytes(damage(config.read_bytes()))
    with pytest.raises(CheckpointError) as err:
        md.load_model_dir(d)
    message = str(err.value)
    assert message.startswith(f"{config}: ")
    assert "copy the model directory again from its source" in message


def test_a_trainable_directory_whose_pretrained_folder_moved_says_how_to_load_it(tmp_path):
    # copied to another machine (or the encoder folder moved), a "trainable" directory failed with the encoder
    # builder's "not a local Hugging Face model directory" only: nothing said that the directory needs that folder,
    # nor that its config may name the folder's new place
    from sddkit.frontends.encoders import EncoderConfig, build_encoder

    hf_dir = tmp_path / "encoder_hf"
    build_encoder(EncoderConfig(), preset="wav2vec2_tiny").model.save_pretrained(hf_dir)
    lora = {"adapter": "lora", "lora": {"rank": 2, "targets": ["q", "v"]}}
    config = {
        "frontend": {"name": "ssl", "encoder": {"name": "wav2vec2_tiny", "pretrained": str(hf_dir)}, **lora},
        "backend": {"name": "linear"},
    }
    model = build_detector(from_dict(DetectorConfig, config, "model")).eval()
    d = md.save_model_dir(tmp_path / "m", model, model_config=config, trainable_only=True)
    moved = tmp_path / "elsewhere"
    shutil.move(str(hf_dir), str(moved))
    with pytest.raises(ConfigError) as err:
        md.load_model_dir(d)
    assert f"load from {hf_dir}" in str(err.value) and "its place on this machine" in str(err.value)
    # the advice works: the config names the new place, and the model loads as saved
    cfg = json.loads((d / md.CONFIG_NAME).read_text())
    cfg["model"]["frontend"]["encoder"]["pretrained"] = str(moved)
    (d / md.CONFIG_NAME).write_text(json.dumps(cfg))
    x = torch.randn(1, 4000) * 0.1
    with torch.no_grad():
        assert torch.equal(md.load_model_dir(d).model(x).logits, model(x).logits)
