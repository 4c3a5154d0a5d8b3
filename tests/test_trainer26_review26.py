"""Review 26 (trainer): what a killed-and-resumed run's checkpoints, best/ and final/ record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.training import provenance
from sddkit.training import trainer as trainer_module
from sddkit.training.recipe import MolexConfig, TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(out: Path, max_steps: int, keep_top_k: int = 1) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}},
            "optimizer": {"lr": 1e-2},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 10,
                "max_steps": max_steps,
                "val_every": 2,
                "keep_top_k": keep_top_k,
                "out_dir": str(out),
                "progress": False,
            },
        },
    )


def _fit(recipe: TrainRecipe, resume: bool = False) -> Trainer:
    trainer = Trainer(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9), resume=resume)
    trainer.fit()
    return trainer


def _session_code(monkeypatch, commit: str, torch_version: str) -> None:
    """The code a session runs: its git commit and torch version (what run.json and the exports record)."""
    real = provenance.package_versions()
    monkeypatch.setattr(trainer_module, "git_commit", lambda: {"commit": commit, "dirty": False})
    monkeypatch.setattr(trainer_module, "package_versions", lambda: {**real, "torch": torch_version})


def _scored(monkeypatch, eer: float) -> None:
    """Every validation from here on measures ``eer``: which checkpoint is best is then known in advance."""
    real = Trainer._evaluate
    monkeypatch.setattr(Trainer, "_evaluate", lambda self, *a, **k: dataclasses.replace(real(self, *a, **k), eer=eer))


def test_best_from_before_a_resume_under_newer_code_names_the_code_that_trained_it(tmp_path, monkeypatch):
    # a long run is killed, the code fixed and committed, the run resumed: best/ stayed a checkpoint of the first
    # session, but named the resume's commit and versions, which never trained those weights (run.json said otherwise)
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _session_code(monkeypatch, "a" * 40, "1.0")
    _scored(monkeypatch, 0.1)
    _fit(_recipe(out, 4))
    _session_code(monkeypatch, "b" * 40, "2.0")
    _scored(monkeypatch, 0.4)  # worse: best/ stays the first session's checkpoint
    _fit(_recipe(out, 8), resume=True)

    sessions = json.loads((out / "run.json").read_text())["sessions"]
    assert [s["git"]["commit"] for s in sessions] == ["a" * 40, "b" * 40]
    best = json.loads((out / "best" / "config.json").read_text())["metadata"]
    assert best["checkpoint"] == "step-00000002" and best["val_eer"] == 0.1
    assert best["git_commit"] == sessions[0]["git"]["commit"] and best["git_dirty"] is False
    assert best["versions"] == sessions[0]["versions"] and best["versions"]["torch"] == "1.0"
    # final/ holds the last weights, trained on by the latest session: its code, as its train_recipe is its recipe
    final = json.loads((out / "final" / "config.json").read_text())["metadata"]
    assert final["git_commit"] == "b" * 40 and final["versions"]["torch"] == "2.0"


def _scored_by_step(monkeypatch, eer_at: dict[int, float]) -> None:
    """Validations measure ``eer_at[step]`` (0.5 at other steps)."""
    real = Trainer._evaluate

    def evaluate(self, *args, **kwargs):
        return dataclasses.replace(real(self, *args, **kwargs), eer=eer_at.get(self.state.step, 0.5))

    monkeypatch.setattr(Trainer, "_evaluate", evaluate)


def test_a_best_checkpoint_deleted_to_free_space_survives_the_resumes_in_best_aside(tmp_path, monkeypatch, caplog):
    # best/ held step 2's weights; its checkpoint was deleted to free space (best/ had it), then the run resumed for
    # more steps: the resume's best/ was written over it from the checkpoints left, and the run's best model was gone
    import shutil

    import pytest
    from safetensors.torch import load_file

    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _scored_by_step(monkeypatch, {2: 0.1, 4: 0.3, 6: 0.4})  # then 0.5: the steps after the resume do worse
    _fit(_recipe(out, 6, keep_top_k=2))
    assert json.loads((out / "best" / "config.json").read_text())["metadata"]["checkpoint"] == "step-00000002"
    weights = load_file(str(out / "best" / "model.safetensors"))
    shutil.rmtree(out / "checkpoints" / "step-00000002")

    # the first resume is killed after it saved step 8 (whose ranking no longer names step 2), the next one ends it
    real_step = Trainer._one_step

    def killed_at_step_9(self, batch):
        if self.state.step == 8:
            raise KeyboardInterrupt
        real_step(self, batch)

    monkeypatch.setattr(Trainer, "_one_step", killed_at_step_9)
    with pytest.raises(KeyboardInterrupt):
        _fit(_recipe(out, 10, keep_top_k=2), resume=True)
    monkeypatch.setattr(Trainer, "_one_step", real_step)
    _fit(_recipe(out, 10, keep_top_k=2), resume=True)

    kept = out / "best.step-00000002"
    assert json.loads((kept / "config.json").read_text())["metadata"]["val_eer"] == 0.1
    moved = load_file(str(kept / "model.safetensors"))
    assert moved.keys() == weights.keys() and all(moved[k].equal(weights[k]) for k in weights)
    assert "moved to" in caplog.text and str(kept) in caplog.text
    # best/ is the best of the checkpoints left, as the first resume's warning said
    assert json.loads((out / "best" / "config.json").read_text())["metadata"]["checkpoint"] == "step-00000004"

    # a best/ superseded by a lower val EER, its checkpoint pruned from the top k since, is replaced as ever
    other = tmp_path / "superseded"
    _scored_by_step(monkeypatch, {2: 0.3, 4: 0.4, 6: 0.1})
    _fit(_recipe(other, 4))
    _fit(_recipe(other, 8), resume=True)
    assert json.loads((other / "best" / "config.json").read_text())["metadata"]["checkpoint"] == "step-00000006"
    assert sorted(p.name for p in other.glob("best*")) == ["best"]


def test_a_full_disk_at_the_molex_report_says_what_is_kept_and_the_resume_writes_it(tmp_path, monkeypatch):
    # the last write of a finished MoLEx run, after best/ and final/: a full disk there was a bare OSError traceback
    import errno

    import pytest

    from sddkit.errors import CheckpointError

    install_tiny(monkeypatch)
    out = tmp_path / "run"
    recipe = _recipe(out, 2)
    recipe.molex = MolexConfig()  # a report of the tiny model's validation (it has no MoLEx layer to grow)
    real = trainer_module.atomic_write_bytes

    def full_disk(path, data):
        if path.name == "molex_report.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(trainer_module, "atomic_write_bytes", full_disk)
    with pytest.raises(CheckpointError, match=r"cannot save .*molex_report\.json .*No space left.*--resume"):
        _fit(recipe)
    assert (out / "best").is_dir() and not (out / "molex_report.json").exists()
    monkeypatch.setattr(trainer_module, "atomic_write_bytes", real)
    _fit(recipe, resume=True)  # the finished run: no step taken, the report written
    assert json.loads((out / "molex_report.json").read_text())["weights"] == "best"
