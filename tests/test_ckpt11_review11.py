"""Review 11 (persistence and configuration): the resolved recipe printed as JSON reads back, a recipe may be a pipe,
unreadable documents are CheckpointErrors, and a resume refuses frozen pretrained weights replaced since its
checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict, to_dict
from sddkit.errors import CheckpointError, ConfigError
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe, load_recipe
from sddkit.training.trainer import Trainer


def test_a_recipe_printed_as_json_reads_back_with_non_finite_values_and_any_character(tmp_path):
    # `sdd train R --print-config > r.yaml` prints json.dumps of the recipe: `trainer.grad_clip: .inf` became
    # `Infinity`, which the YAML reader took for a string ("trainer.grad_clip: expected a number, got 'Infinity'"),
    # and a character beyond the BMP (an emoji, a rare CJK character) in a path, escaped as a surrogate pair, came
    # back as two lone surrogates (a folder name that cannot even be encoded)
    data = {
        "model": {"frontend": {"name": "logmel"}, "backend": {"name": "lcnn"}},
        "data": {"max_duration_s": math.inf},
        "trainer": {"grad_clip": math.inf, "out_dir": str(tmp_path / "runs \U0001f600 \U00020000 ü")},
    }
    recipe = from_dict(TrainRecipe, data)
    printed = tmp_path / "printed.yaml"
    printed.write_text(json.dumps(to_dict(recipe), indent=2))
    assert "Infinity" in printed.read_text()
    again = load_recipe(printed)
    assert to_dict(again) == to_dict(recipe)
    assert again.trainer.grad_clip == math.inf and again.data.max_duration_s == math.inf
    assert again.trainer.out_dir == data["trainer"]["out_dir"]
    assert "\\ud83d\\ude00" in printed.read_text()  # what JSON writes: the pair, read back as the one character
    # NaN, as JSON writes it, is refused as NaN (not as the text 'NaN'); the YAML spellings are unchanged
    with pytest.raises(ConfigError, match="optimizer.lr: expected a number, got NaN"):
        load_recipe(printed, ["optimizer.lr=NaN"])
    with pytest.raises(ConfigError, match="grad_clip must be positive"):
        load_recipe(printed, ["trainer.grad_clip=-Infinity"])
    assert load_recipe(printed, ["trainer.grad_clip=.inf"]).trainer.grad_clip == math.inf
    assert load_recipe(printed, ["trainer.out_dir=Infinity"]).trainer.out_dir == "Infinity"  # text stays text


def test_an_unreadable_model_config_or_checkpoint_document_is_a_checkpoint_error(tmp_path, tiny_stats, monkeypatch):
    # a config.json of another user (model directories were written 0600 before) or a state.json gone: a raw
    # PermissionError / FileNotFoundError traceback out of `sdd score` or the end of a run
    from sddkit.detectors import model_dir as md

    d = tiny_stats(tmp_path / "m")
    ckpt.save_checkpoint(tmp_path / "ck", "step-00000001", {"model": {"w": torch.ones(2)}})
    (tmp_path / "ck" / "step-00000001" / ckpt.STATE_JSON).unlink()
    with pytest.raises(CheckpointError, match=r"step-00000001/state.json: cannot read the checkpoint: No such file"):
        ckpt.load_checkpoint_tensors(tmp_path / "ck" / "step-00000001", "model/")

    real = Path.read_text

    def refuse(self, *args, **kwargs):
        if self.name == md.CONFIG_NAME:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(CheckpointError, match=r"config.json: cannot read the model config: Permission denied"):
        md.load_model_dir(d)


def _recipe(tmp_path, max_steps: int) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": {"frontend": {"name": "tiny_test", "pretrained": "folder"}, "backend": "tiny_test_head"},
            "optimizer": {"lr": 1e-2},
            "data": {"batch_size": 8},
            "trainer": {"epochs": 10, "max_steps": max_steps, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )


def _trainer(recipe: TrainRecipe, resume: bool = False) -> Trainer:
    return Trainer(recipe, train_data=SyntheticDataset(24), val_data=SyntheticDataset(12, seed=9), resume=resume)


def test_a_resume_refuses_frozen_pretrained_weights_replaced_since(tmp_path, monkeypatch):
    # checkpoints leave the frozen encoder weights to the pretrained folder: another encoder saved there since was
    # resumed over without a word (the trained weights went on under other features), and the exports then recorded
    # the new folder's digest as the one the model was trained on
    install_tiny(monkeypatch)
    _trainer(_recipe(tmp_path, 2)).fit()
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert isinstance(state["pretrained_digest"], str) and len(state["pretrained_digest"]) == 64
    assert not any(k.startswith("frontend.encoder.") for k in state["model"])  # left to the folder
    _trainer(_recipe(tmp_path, 3), resume=True).fit()  # the same folder: resumes

    from test_train_support import TinyFrontend

    real_init = TinyFrontend.__init__

    def other_encoder(self, cfg):  # what the folder now holds: other frozen weights of the same shapes
        real_init(self, cfg)
        with torch.no_grad():
            self.encoder.weight.add_(0.01)

    monkeypatch.setattr(TinyFrontend, "__init__", other_encoder)
    with pytest.raises(CheckpointError, match=r"frozen pretrained weights read from \S*folder are not those this run"):
        _trainer(_recipe(tmp_path, 4), resume=True).fit()
    # a checkpoint written before the digest was recorded resumes as before
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    old = ckpt.load_checkpoint(latest)
    del old["pretrained_digest"]
    ckpt.save_checkpoint(tmp_path / "run" / "checkpoints", latest.name, old)
    assert _trainer(_recipe(tmp_path, 4), resume=True).fit().step == 4


def test_a_recipe_read_from_a_pipe_is_not_called_missing(tmp_path):
    # `sdd train <(envsubst < recipe.yaml)`: the path is a pipe, which exists but is no regular file; it was
    # refused as "no such recipe file"
    import os
    import threading

    from sddkit.config import load_yaml

    fifo = tmp_path / "recipe.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("seed: 7\ntrainer: {max_steps: 1e3}\n"), daemon=True)
    writer.start()
    try:
        assert load_yaml(fifo) == {"seed": 7, "trainer": {"max_steps": 1000.0}}
    finally:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a writer never read from can open and end
        writer.join()
        os.close(reader)
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_yaml(tmp_path / "missing.yaml")
