from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sddkit.detectors import model_dir as md
from sddkit.errors import CheckpointError


class Tiny(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.frozen = nn.Linear(3, width)
        self.head = nn.Linear(width, 2)
        self.register_buffer("stat", torch.zeros(width))
        self.frozen.requires_grad_(False)


@pytest.fixture
def tiny_arch(monkeypatch):
    def build(cfg):
        torch.manual_seed(123)  # stands in for "frozen pretrained weights reloaded from their own files"
        return Tiny(cfg["width"])

    monkeypatch.setitem(md.ARCHITECTURES, "tiny_test", build)
    return build


def test_roundtrip_full_and_trainable(tmp_path, tiny_arch):
    torch.manual_seed(0)
    model = tiny_arch({"width": 4})
    with torch.no_grad():
        model.head.weight.add_(1.0)
        model.stat.fill_(3.0)
    for trainable_only in (False, True):
        d = md.save_model_dir(
            tmp_path / str(trainable_only),
            model,
            model_config={"width": 4},
            architecture="tiny_test",
            trainable_only=trainable_only,
            inference={"threshold": 0.5},
            metadata={"seed": 1},
        )
        loaded = md.load_model_dir(d)
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[k], v), k
        assert loaded.inference == {"threshold": 0.5} and loaded.metadata == {"seed": 1}
        assert not loaded.model.training
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_errors(tmp_path, tiny_arch):
    with pytest.raises(CheckpointError, match="not a model directory"):
        md.load_model_dir(tmp_path / "nope")
    model = tiny_arch({"width": 4})
    d = md.save_model_dir(tmp_path / "m", model, model_config={"width": 4}, architecture="tiny_test")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model": {"width": 5}}))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        md.load_model_dir(d)
    (d / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        md.load_model_dir(d)
    (d / "config.json").write_text(json.dumps({**cfg, "architecture": "martian"}))
    with pytest.raises(CheckpointError, match="unknown architecture"):
        md.load_model_dir(d)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable weights"):
        md.load_model_dir(d)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"thresold": 0.3}, r"unknown key\(s\) \['thresold'\]"),  # a hand-edited typo is not ignored
        ({"weights": "partial"}, r"weights must be one of \['full', 'trainable'\]"),
        ({"model": None}, r"missing key\(s\) \['model'\]"),
    ],
)
def test_config_keys_are_checked(tmp_path, tiny_arch, edit, message):
    d = md.save_model_dir(tmp_path / "m", tiny_arch({"width": 4}), model_config={"width": 4}, architecture="tiny_test")
    cfg = {**json.loads((d / "config.json").read_text()), **edit}
    (d / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))
    with pytest.raises(CheckpointError, match=message):
        md.load_model_dir(d)
