"""Mixtures of whole detectors (review 23): what a resume with changed ``mixture.expert_dirs`` or gate continues
or replaces."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_train_support import one_thread, write_corpus  # noqa: F401  (autouse fixture)

from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.model_dir import load_model_dir, save_model_dir
from sddkit.errors import CheckpointError, ConfigError
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

# MELE: one architecture, one expert per dataset, so the experts' weights fit any expert's slot
EXPERT = {"frontend": {"name": "logmel", "n_mels": 16}, "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 1}}


def _expert_dirs(root, names) -> list[str]:
    dirs = []
    for seed, name in enumerate(names):  # stage 1 stands in: "trained" experts, each its own weights
        torch.manual_seed(seed)
        det = build_detector(from_dict(DetectorConfig, EXPERT))
        dirs.append(str(save_model_dir(root / name / "best", det, model_config=EXPERT)))
    return dirs


def _recipe(tmp_path, dirs: list[str], steps: int, *, freeze: bool = True) -> TrainRecipe:
    csv = write_corpus(tmp_path / "audio", n=8, samples=4000)
    spec = {"protocol": str(csv), "format": "utterance_table"}
    return from_dict(
        TrainRecipe,
        {
            "seed": 0,
            "mixture": {"expert_dirs": dirs, "gate": {"name": "enhanced_mlp", "hidden": 8}, "freeze_experts": freeze},
            "data": {"train": spec, "val": spec, "crop_samples": 4000, "batch_size": 4},
            "optimizer": {"lr": 1e-2},
            "trainer": {"max_steps": steps, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )


def test_a_resume_with_reordered_or_replaced_frozen_experts_is_refused(tmp_path):
    dirs = _expert_dirs(tmp_path / "runs", ["expert_asv", "expert_add"])
    Trainer(_recipe(tmp_path, dirs, steps=1)).fit()
    # before: resumed without a word; the gate went on over the checkpoint's experts (asv, add) while best/ and
    # final/ named them after the recipe's new order (add, asv), so sdd eval's gate-weight tables swapped them
    with pytest.raises(CheckpointError) as err:
        Trainer(_recipe(tmp_path, dirs[::-1], steps=2), resume=True).fit()
    message = str(err.value)
    assert "mixture.expert_dirs[0]" in message and dirs[1] in message and dirs[0] in message
    assert "another trainer.out_dir" in message and "\n" not in message
    # an expert retrained (other weights) under another folder: the resume would go on with the old one
    retrained = _expert_dirs(tmp_path / "retrained", ["expert_asv", "expert_add", "expert_add_v2"])[2]
    with pytest.raises(CheckpointError, match=r"mixture\.expert_dirs\[1\]"):
        Trainer(_recipe(tmp_path, [dirs[0], retrained], steps=2), resume=True).fit()
    # the recipe as it was resumes
    assert Trainer(_recipe(tmp_path, dirs, steps=2), resume=True).fit().step == 2


def test_a_resume_over_an_expert_retrained_in_place_is_refused(tmp_path):
    dirs = _expert_dirs(tmp_path / "runs", ["expert_asv", "expert_add"])
    Trainer(_recipe(tmp_path, dirs, steps=1)).fit()
    shutil.rmtree(tmp_path / "runs" / "expert_add")  # the expert trained again into its old out_dir
    torch.manual_seed(7)
    save_model_dir(dirs[1], build_detector(from_dict(DetectorConfig, EXPERT)), model_config=EXPERT)
    # before: the resume went on with the old expert (the checkpoint's), the recipe's directory unread
    with pytest.raises(CheckpointError, match=r"mixture\.expert_dirs\[1\] .* holds other weights"):
        Trainer(_recipe(tmp_path, dirs, steps=2), resume=True).fit()


def test_a_resume_with_moved_experts_keeps_their_weights_and_names(tmp_path):
    dirs = _expert_dirs(tmp_path / "runs", ["expert_asv", "expert_add"])
    trained = [load_model_dir(d).model.state_dict() for d in dirs]
    Trainer(_recipe(tmp_path, dirs, steps=1)).fit()
    moved = []
    for d, name in zip(dirs, ["asv_archived", "add_archived"], strict=True):
        shutil.copytree(d, tmp_path / "archive" / name)
        moved.append(str(tmp_path / "archive" / name))
    shutil.rmtree(tmp_path / "runs")

    assert Trainer(_recipe(tmp_path, moved, steps=2), resume=True).fit().step == 2

    for name in ("best", "final"):
        loaded = load_model_dir(tmp_path / "run" / name)
        # before: renamed after the new folders (asv_archived, ...), best/ (trained before the move) too
        assert loaded.model_config["expert_names"] == ["expert_asv", "expert_add"], name
        for expert, weights in zip(loaded.model.experts, trained, strict=True):
            assert all(torch.equal(expert.state_dict()[k], v) for k, v in weights.items()), name


def test_a_resume_of_fine_tuned_experts_names_them_in_the_checkpoints_order(tmp_path):
    dirs = _expert_dirs(tmp_path / "runs", ["expert_asv", "expert_add"])
    Trainer(_recipe(tmp_path, dirs, steps=1, freeze=False)).fit()
    # fine-tuned experts differ from their directories by design, so a new order is not refused: the resume goes on
    # with the checkpoint's experts, which keep their names (before: named after the recipe's new order)
    assert Trainer(_recipe(tmp_path, dirs[::-1], steps=2, freeze=False), resume=True).fit().step == 2
    loaded = load_model_dir(tmp_path / "run" / "final")
    assert loaded.model_config["expert_names"] == ["expert_asv", "expert_add"]


def _average(tmp_path, dirs: list[str]) -> TrainRecipe:
    recipe = _recipe(tmp_path, dirs, steps=1)
    return from_dict(TrainRecipe, {**to_dict(recipe), "mixture": {"expert_dirs": dirs, "gate": "average"}})


def test_a_resume_with_the_gate_made_average_keeps_the_trained_gates_exports(tmp_path):
    dirs = _expert_dirs(tmp_path / "runs", ["expert_asv", "expert_add"])
    Trainer(_recipe(tmp_path, dirs, steps=1)).fit()
    trained = {name: load_model_dir(tmp_path / "run" / name).weights_digest for name in ("best", "final")}
    # before: nothing to learn, so the average ensemble was exported over the trained gate's best/ and final/
    with pytest.raises(ConfigError) as err:
        Trainer(_average(tmp_path, dirs), resume=True).fit()
    assert "nothing to learn" in str(err.value) and "another trainer.out_dir" in str(err.value)
    assert {name: load_model_dir(tmp_path / "run" / name).weights_digest for name in trained} == trained


def test_a_resume_of_an_average_ensemble_over_other_experts_is_refused(tmp_path):
    dirs = _expert_dirs(tmp_path / "runs", ["expert_asv", "expert_add"])
    Trainer(_average(tmp_path, dirs)).fit()
    exported = load_model_dir(tmp_path / "run" / "best").weights_digest
    # before: the ensemble of the experts in another order (or of other experts) replaced the one exported there
    with pytest.raises(ConfigError, match="best/ of other weights than this mixture's"):
        Trainer(_average(tmp_path, dirs[::-1]), resume=True).fit()
    assert load_model_dir(tmp_path / "run" / "best").weights_digest == exported
    # the same experts, moved since, export again what was exported
    moved = [shutil.copytree(d, tmp_path / "archive" / f"e{i}") for i, d in enumerate(dirs)]
    Trainer(_average(tmp_path, [str(m) for m in moved]), resume=True).fit()
    assert load_model_dir(tmp_path / "run" / "best").weights_digest == exported
