"""Review tests (session 24, checkpoints): what a run leaves on disk survives a full disk and a hand-edited
``state.json``."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.detectors import model_dir as md
from sddkit.errors import CheckpointError
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(tmp_path, max_steps: int) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": {"frontend": {"name": "tiny_test"}, "backend": "tiny_test_head"},
            "optimizer": {"lr": 1e-2},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 10,
                "max_steps": max_steps,
                "val_every": 2,
                "out_dir": str(tmp_path / "run"),
                "progress": False,
            },
        },
    )


def _fit(recipe: TrainRecipe, resume: bool = False):
    trainer = Trainer(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9), resume=resume)
    return trainer.fit()


def _digests(run):
    return {name: md.load_model_dir(run / name).weights_digest for name in ("best", "final")}


def test_a_full_disk_while_exporting_keeps_the_earlier_export_loadable(tmp_path, monkeypatch):
    # before: the weights were renamed into final/ before its config.json was written, so a disk that filled up
    # on the config left final/ with new weights under the old config: the earlier (good) export no longer loaded
    install_tiny(monkeypatch)
    run = tmp_path / "run"
    _fit(_recipe(tmp_path, 4))
    before = _digests(run)
    write = md.atomic_write_bytes

    def full(path, data):
        if path.name == md.CONFIG_NAME:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(md, "atomic_write_bytes", full)
        with pytest.raises(CheckpointError, match=r"cannot save the model directory .*final.*--resume") as info:
            _fit(_recipe(tmp_path, 6), resume=True)
    assert "\n" not in str(info.value)
    # the earlier exports load as they were, and no temporary file is left beside them
    assert _digests(run) == before
    assert sorted(p.name for p in (run / "final").iterdir()) == [md.CONFIG_NAME, md.WEIGHTS_NAME]
    # the resume the error advises exports the newer model
    _fit(_recipe(tmp_path, 6), resume=True)
    after = _digests(run)
    assert after["final"] != before["final"]


def test_a_full_disk_on_a_config_leaves_the_model_directory_as_it_was(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 1)
    directory = md.save_model_dir(tmp_path / "m", model, model_config={"w": 1}, architecture="detector")
    old = {p.name: p.read_bytes() for p in directory.iterdir()}
    with torch.no_grad():
        model.weight.add_(1.0)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(md, "atomic_write_bytes", full)
    with pytest.raises(OSError):
        md.save_model_dir(directory, model, model_config={"w": 1}, architecture="detector")
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == old


def _edit_trainer_step(state):
    state["trainer"]["step"] = "4"


def _drop_optimizer(state):
    del state["optimizer"]


def _drop_trainer(state):
    del state["trainer"]


def _bad_rng(state):
    state["rng"] = {"python": 1}


def _bad_history(state):
    state["history"] = "cleared"


def _bad_ranked(state):
    state["trainer"]["ranked"] = [{"name": "step-00000002"}]


EDITS = {
    "trainer.step": (_edit_trainer_step, "state.trainer.step must be an integer"),
    "optimizer": (_drop_optimizer, "state.optimizer must be a dict, got nothing"),
    "trainer": (_drop_trainer, "state.trainer must be a dict, got nothing"),
    "rng": (_bad_rng, "state.rng holds no usable generator states"),
    "history": (_bad_history, "state.history must be a list"),
    "ranked": (_bad_ranked, "state.trainer.ranked must be a list"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run (4 steps, checkpoints at steps 2 and 4), copied by each test that damages it."""
    base = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        install_tiny(patch)
        _fit(_recipe(base, 4))
    return base / "run"


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_hand_edited_state_json_is_one_clear_error_naming_it(tmp_path, monkeypatch, trained, edit):
    # before: a KeyError, a TypeError ("can only concatenate str (not "int") to str") part-way through the
    # resume, or (history) a resume that wrote the edited value into metrics.jsonl: the tensors' digest covers
    # state.safetensors only
    install_tiny(monkeypatch)
    shutil.copytree(trained, tmp_path / "run")
    doc = tmp_path / "run" / "checkpoints" / "step-00000004" / ckpt.STATE_JSON
    document = json.loads(doc.read_text())
    change, message = EDITS[edit]
    change(document["state"])
    doc.write_text(json.dumps(document))
    with pytest.raises(CheckpointError) as info:
        _fit(_recipe(tmp_path, 6), resume=True)
    text = str(info.value)
    assert str(doc) in text and message in text and "\n" not in text
    assert "write its name (step-00000002)" in text  # the other checkpoint to go on from


def test_an_unedited_checkpoint_passes_the_check_and_resumes(tmp_path, monkeypatch, trained):
    install_tiny(monkeypatch)
    shutil.copytree(trained, tmp_path / "run")
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    ckpt.check_resumable(latest, ckpt.load_checkpoint(latest))
    assert _fit(_recipe(tmp_path, 6), resume=True).step == 6


def test_a_config_json_edited_to_another_model_names_the_config_and_what_to_do(tmp_path, monkeypatch):
    # before: "model.safetensors: shape mismatch for weight: (1, 4) vs (1, 6)", which said neither which shape was
    # stored nor that config.json (whose digest matched the weights) was what had changed
    monkeypatch.setitem(md.ARCHITECTURES, "tiny24", lambda cfg: torch.nn.Linear(cfg["width"], 1))
    directory = md.save_model_dir(
        tmp_path / "m", torch.nn.Linear(4, 1), model_config={"width": 4}, architecture="tiny24"
    )
    config = json.loads((directory / md.CONFIG_NAME).read_text())
    config["model"]["width"] = 6
    (directory / md.CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        md.load_model_dir(directory)
    text = str(info.value)
    assert "stored (1, 4), the model has (1, 6)" in text
    assert "config.json describes another model than model.safetensors holds" in text and "restore it" in text


def test_a_damaged_top_k_checkpoint_says_how_to_finish_the_run(tmp_path, monkeypatch, trained):
    # before: "<...>/state.safetensors: the tensors differ from those saved" at the end of every resume, with no
    # way on; the checkpoint best/ is made from (step 2, the lowest EER) is not the one the resume goes on from
    install_tiny(monkeypatch)
    shutil.copytree(trained, tmp_path / "run")
    ckpts = tmp_path / "run" / "checkpoints"
    assert ckpt.latest_checkpoint(ckpts).name == "step-00000004"
    tensors = ckpts / "step-00000002" / ckpt.STATE_TENSORS
    damaged = bytearray(tensors.read_bytes())
    damaged[-5] ^= 0xFF
    tensors.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError) as info:
        _fit(_recipe(tmp_path, 4), resume=True)
    text = str(info.value)
    assert f"move {ckpts / 'step-00000002'} away and continue with --resume" in text and "\n" not in text
    # what it says works: the run finishes, best/ chosen without the checkpoint moved away (the only one ranked
    # under the default trainer.keep_top_k=1: the last step's weights)
    shutil.move(ckpts / "step-00000002", tmp_path / "aside")
    assert _fit(_recipe(tmp_path, 4), resume=True).step == 4
    best = md.load_model_dir(tmp_path / "run" / "best").metadata
    assert best["selection"] == "last step (no validation EER)" and "checkpoint" not in best
