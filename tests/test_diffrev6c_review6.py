"""Review 6 (diffrev6c) of the trainer's schedule re-planned on resume."""

from __future__ import annotations

import pytest
from test_train_support import (
    TINY_MODEL,
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(out: str, batch_size: int, warmup: int) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "seed": 1,
            "model": TINY_MODEL,
            "optimizer": {"lr": 0.1},
            "schedule": {"name": "cosine", "warmup_steps": warmup, "min_lr_ratio": 0.0},
            "data": {"batch_size": batch_size},
            "trainer": {"out_dir": out, "progress": False, "device": "cpu", "epochs": 3, "save_every": 1},
        },
    )


@pytest.mark.parametrize(("warmup", "warned"), [(6, None), (9, 8)])
def test_a_resume_under_another_batch_size_checks_the_warmup_against_its_own_plan(
    tmp_path, monkeypatch, caplog, warmup, warned
):
    # before: the set-up built the schedule over epochs x today's steps per epoch (3 x 2 = 6 steps of 16) and
    # warned that a warm-up of 6 outlasts it, though the resume then planned 8 steps (5 taken at a batch of 8,
    # 3 left at 16) and the cosine decays over 2 of them; a warm-up that does outlast the 8 steps is named once
    install_tiny(monkeypatch)
    out = str(tmp_path / "run")
    data = SyntheticDataset(32)
    original = Trainer._one_step

    def stop_at_six(self, batch):
        if self.state.step + 1 == 6:
            raise KeyboardInterrupt
        original(self, batch)

    monkeypatch.setattr(Trainer, "_one_step", stop_at_six)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_recipe(out, 8, warmup), train_data=data).fit()  # 12 steps planned, 5 taken
    monkeypatch.undo()
    install_tiny(monkeypatch)
    caplog.clear()
    with caplog.at_level("WARNING", logger="sddkit"):
        trainer = Trainer(_recipe(out, 16, warmup), train_data=data, resume=True)
        trainer.fit()
    assert trainer.total_steps == 8
    lines = [r.getMessage() for r in caplog.records if "but the run plans" in r.getMessage()]
    if warned is None:
        assert lines == []
    else:
        assert len(lines) == 1 and f"warmup_steps={warmup} but the run plans {warned} steps" in lines[0]
