"""Checkpoints, review 8: a --resume whose latest checkpoint is damaged, or whose top-k lost a checkpoint by hand."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.errors import CheckpointError
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _fit(out: Path, max_steps: int = 10, resume: bool = False):
    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 5,
            "model": {
                "frontend": {"name": "tiny_test", "dropout": 0.2},
                "backend": {"name": "tiny_test_head", "batch_norm": True},
            },
            "optimizer": {"lr": 1e-2},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 100,
                "max_steps": max_steps,
                "val_every": 2,
                "save_every": 3,
                "keep_top_k": 3,
                "average_top_k": 2,
                "out_dir": str(out),
                "progress": False,
            },
        },
    )
    trainer = Trainer(
        recipe, train_data=SyntheticDataset(40, n_attacks=4), val_data=SyntheticDataset(18, seed=9), resume=resume
    )
    return trainer.fit()


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(next(model_dir.glob("*.safetensors"))))


def test_a_damaged_latest_checkpoint_names_the_earlier_ones_to_continue_from(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, max_steps=6)
    root = out / "checkpoints"
    latest = ckpt.latest_checkpoint(root)
    earlier = sorted(d.name for d in root.iterdir() if d.is_dir() and d != latest)
    assert earlier
    doc = latest / ckpt.STATE_JSON
    doc.write_bytes(doc.read_bytes()[:500])  # a copy cut short
    with pytest.raises(CheckpointError) as err:
        _fit(out, resume=True)
    message = str(err.value)
    assert "state.json" in message and str(root / ckpt.LATEST) in message and earlier[-1] in message
    # the way out it names works
    (root / ckpt.LATEST).write_text(earlier[-1] + "\n")
    assert _fit(out, resume=True).step == 10


def test_a_pointer_to_a_checkpoint_gone_names_the_others(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, max_steps=6)
    root = out / "checkpoints"
    latest = ckpt.latest_checkpoint(root)
    shutil.rmtree(latest)
    with pytest.raises(CheckpointError, match=r"does not exist; to continue from another checkpoint"):
        _fit(out, resume=True)


def test_a_damaged_lone_checkpoint_says_to_start_afresh(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, max_steps=6)
    root = out / "checkpoints"
    latest = ckpt.latest_checkpoint(root)
    for other in root.iterdir():
        if other.is_dir() and other != latest:
            shutil.rmtree(other)
    (latest / ckpt.STATE_TENSORS).write_bytes(b"\0" * 7)
    with pytest.raises(CheckpointError, match="no other complete checkpoint is there"):
        _fit(out, resume=True)


def test_a_top_k_checkpoint_deleted_by_hand_does_not_block_the_export_forever(tmp_path, monkeypatch, caplog):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    real = Trainer._finish

    def killed_at_the_end(self):
        raise KeyboardInterrupt("killed before the export")

    monkeypatch.setattr(Trainer, "_finish", killed_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        _fit(out)
    monkeypatch.setattr(Trainer, "_finish", real)
    root = out / "checkpoints"
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(root))
    ranked = [e["name"] for e in state["trainer"]["ranked"]]
    latest = ckpt.latest_checkpoint(root).name
    gone = next(n for n in ranked if n != latest)  # a top-k checkpoint that is not the one to resume from
    shutil.rmtree(root / gone)
    with caplog.at_level(logging.WARNING, logger="sddkit"):
        result = _fit(out, resume=True)
    assert gone in caplog.text and "no longer complete" in caplog.text
    left = [n for n in ranked if n != gone]
    best = _weights(result.best_dir)
    expected = ckpt.load_checkpoint_tensors(root / left[0], "model/")
    assert best.keys() == expected.keys() and all(torch.equal(best[k], expected[k]) for k in best)
    meta = json.loads((result.final_dir / "config.json").read_text())["metadata"]
    assert meta["checkpoints"] == left[:2]  # the average of the two best that are left


def _flip_a_data_byte(tensor_file: Path) -> None:
    data = bytearray(tensor_file.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + 3] ^= 0x10  # in the first tensor's bytes: the header still parses
    tensor_file.write_bytes(bytes(data))


def test_tensors_damaged_since_the_save_are_refused_not_resumed_from(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, max_steps=6)
    root = out / "checkpoints"
    latest = ckpt.latest_checkpoint(root)
    _flip_a_data_byte(latest / ckpt.STATE_TENSORS)
    with pytest.raises(CheckpointError, match=r"differ from those saved.*to continue from another checkpoint"):
        _fit(out, resume=True)
    with pytest.raises(CheckpointError, match="differ from those saved"):
        ckpt.load_checkpoint_tensors(latest, "model/")


def test_a_checkpoint_of_an_earlier_sddkit_without_a_digest_still_loads(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "step": 3}
    path = ckpt.save_checkpoint(tmp_path, "step-00000003", state)
    doc = json.loads((path / ckpt.STATE_JSON).read_text())
    doc.pop("tensors_digest", None)
    (path / ckpt.STATE_JSON).write_text(json.dumps(doc))
    assert torch.equal(ckpt.load_checkpoint(path)["model"]["w"], torch.arange(4.0))
    assert torch.equal(ckpt.load_checkpoint_tensors(path, "model/")["w"], torch.arange(4.0))
