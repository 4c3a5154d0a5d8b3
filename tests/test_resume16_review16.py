"""Review 16: what best/, final/ and the checkpoints record of a ``--resume`` under a changed recipe."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from test_train_support import (
    SyntheticDataset,
    crash_on_save,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(out: Path, max_steps: int, lr: float = 1e-2, batch_norm: bool = False, **trainer: object) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": {
                "frontend": {"name": "tiny_test", "dropout": 0.2},
                "backend": {"name": "tiny_test_head", "batch_norm": batch_norm},
            },
            "optimizer": {"lr": lr},
            "schedule": {"name": "constant"},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 10,
                "max_steps": max_steps,
                "val_every": 2,
                "keep_top_k": 3,
                "average_top_k": 3,
                "out_dir": str(out),
                "progress": False,
                **trainer,
            },
        },
    )


def _fit(recipe: TrainRecipe, resume: bool = False) -> Trainer:
    trainer = Trainer(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9), resume=resume)
    trainer.fit()
    return trainer


def _scored(monkeypatch, eer: float) -> None:
    """Every validation from here on measures ``eer``: which checkpoint is best is then known in advance."""
    real = Trainer._evaluate
    monkeypatch.setattr(Trainer, "_evaluate", lambda self, *a, **k: dataclasses.replace(real(self, *a, **k), eer=eer))


def _metadata(out: Path, name: str) -> dict:
    return json.loads((out / name / "config.json").read_text())["metadata"]


def _state(out: Path, step: int) -> dict:
    return ckpt.load_checkpoint_record(out / "checkpoints" / f"step-{step:08d}", ("recipe", "trainer"))


def test_best_from_before_a_resume_with_another_lr_reports_the_lr_it_was_trained_with(tmp_path, monkeypatch):
    # before: best/ and final/ recorded the recipe of the last session whatever checkpoint their weights came from,
    # so best/ saved at step 2 under lr 0.01 claimed lr 0.001, and nothing said the run had been resumed with changes
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(_recipe(out, 4))  # validates and saves at steps 2 and 4
    _scored(monkeypatch, 0.9)  # worse than any validation before the resume: best/ stays a checkpoint from before
    _fit(_recipe(out, 8, lr=1e-3), resume=True)
    resume = {
        "step": 4,
        "checkpoint": "step-00000004",
        "changes": ["optimizer.lr: 0.01 -> 0.001", "trainer.max_steps: 4 -> 8"],
    }
    best = _metadata(out, "best")
    assert best["best_step"] in (2, 4) and best["train_recipe"]["optimizer"]["lr"] == 0.01
    assert best["train_recipe"]["trainer"]["max_steps"] == 4 and best["seed"] == 3
    assert "resumes" not in best  # its weights were trained before any resume
    # final/: the last session's recipe, the resume, and which averaged checkpoints were saved under other values
    final = _metadata(out, "final")
    assert final["train_recipe"]["optimizer"]["lr"] == 0.001 and final["resumes"] == [resume]
    assert set(final["checkpoints"][:2]) == {"step-00000002", "step-00000004"}
    assert final["checkpoints"][2] == "step-00000006"  # the first of the equal EERs after the resume
    assert final["checkpoint_recipe_changes"] == {
        name: ["optimizer.lr: 0.01 -> 0.001", "trainer.max_steps: 4 -> 8"]
        for name in ("step-00000002", "step-00000004")
    }
    # every checkpoint keeps the recipe it was saved under, and those after the resume list it
    assert _state(out, 2)["recipe"]["optimizer"]["lr"] == 0.01 and _state(out, 2)["trainer"]["resumes"] == []
    assert _state(out, 8)["recipe"]["optimizer"]["lr"] == 0.001 and _state(out, 8)["trainer"]["resumes"] == [resume]
    # a second resume under yet another lr: a best/ saved after both lists both; one with the recipe unchanged adds none
    _scored(monkeypatch, 0.0)
    _fit(_recipe(out, 10, lr=1e-4), resume=True)
    _fit(_recipe(out, 12, lr=1e-4), resume=True)  # only more steps: recorded (the schedule is planned anew)
    best = _metadata(out, "best")
    assert best["best_step"] == 10 and best["train_recipe"]["optimizer"]["lr"] == 1e-4
    assert [(r["step"], r["changes"][0]) for r in best["resumes"]] == [
        (4, "optimizer.lr: 0.01 -> 0.001"),
        (8, "optimizer.lr: 0.001 -> 0.0001"),
    ]
    assert [r["changes"] for r in _metadata(out, "final")["resumes"]][2:] == [["trainer.max_steps: 10 -> 12"]]


def test_best_from_before_a_resume_with_another_ema_decay_reports_the_decay_it_was_averaged_with(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(_recipe(out, 4, batch_norm=True, ema_decay=0.9, ema_bn_batches=3))
    _scored(monkeypatch, 0.9)
    _fit(_recipe(out, 6, batch_norm=True, ema_decay=0.5, ema_bn_batches=2), resume=True)
    best, final = _metadata(out, "best"), _metadata(out, "final")
    assert best["best_step"] <= 4 and best["train_recipe"]["trainer"]["ema_decay"] == 0.9
    assert (best["ema_decay"], best["ema_bn_batches"]) == (0.9, 3)  # its statistics were estimated on 3 batches
    assert (final["ema_decay"], final["ema_bn_batches"]) == (0.5, 2)
    assert final["resumes"][0]["changes"][:2] == ["trainer.ema_bn_batches: 3 -> 2", "trainer.ema_decay: 0.9 -> 0.5"]


def test_a_resume_under_the_same_recipe_writes_what_the_uninterrupted_run_writes(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"  # both runs in one out_dir, which their recipes record
    _fit(_recipe(out, 8))
    out.rename(tmp_path / "straight")
    with crash_on_save(monkeypatch, 3):
        _fit(_recipe(out, 8))  # saves at steps 2 and 4, then dies saving step 6
    _fit(_recipe(out, 8), resume=True)
    for name in ("best", "final"):
        for file in ("config.json", "model.safetensors"):
            assert (out / name / file).read_bytes() == (tmp_path / "straight" / name / file).read_bytes(), (name, file)
        assert not {"resumes", "checkpoint_recipe_changes"} & set(_metadata(out, name))
    assert _state(out, 8)["trainer"]["resumes"] == []


def test_a_checkpoint_written_before_resumes_were_recorded_still_resumes(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(_recipe(out, 2))
    doc_path = out / "checkpoints" / "step-00000002" / ckpt.STATE_JSON
    document = json.loads(doc_path.read_text())
    del document["state"]["trainer"]["resumes"]
    doc_path.write_text(json.dumps(document))
    assert _fit(_recipe(out, 4, lr=1e-3), resume=True).state.resumes[0]["step"] == 2
    assert _metadata(out, "final")["resumes"][0]["changes"][0] == "optimizer.lr: 0.01 -> 0.001"
