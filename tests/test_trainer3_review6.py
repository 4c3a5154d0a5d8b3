"""Review 6 of the training loop (trainer3): schedule horizon on resume, last-step validation, Ctrl-C, one-class val."""

from __future__ import annotations

import json
import math

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


def _recipe(out: str, batch_size: int, **trainer: object) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "seed": 1,
            "model": TINY_MODEL,
            "optimizer": {"lr": 0.1},
            "schedule": {"name": "cosine", "min_lr_ratio": 0.0},
            "data": {"batch_size": batch_size},
            "trainer": {"out_dir": out, "progress": False, "device": "cpu", **trainer},
        },
    )


def test_a_resume_with_another_batch_size_plans_the_schedule_over_the_steps_left(tmp_path, monkeypatch):
    # before: the resumed run planned epochs x today's steps per epoch (2 x 2 = 4 steps of 16), as if the
    # whole run had been at today's batch size; the 4 steps of 8 already taken used that horizon up, so
    # the whole second epoch trained at the cosine's floor (lr 0) instead of decaying over its 2 steps
    install_tiny(monkeypatch)
    out = str(tmp_path / "run")
    data = SyntheticDataset(32)
    first = Trainer(_recipe(out, 8, epochs=1), train_data=data).fit()  # one epoch of 4 steps, then a resume
    assert first.step == 4
    used: list[float] = []
    original = Trainer._one_step

    def spy(self, batch):
        used.append(self.optimizer.param_groups[0]["lr"])
        original(self, batch)

    monkeypatch.setattr(Trainer, "_one_step", spy)
    trainer = Trainer(_recipe(out, 16, epochs=2), train_data=data, resume=True)
    result = trainer.fit()
    assert result.step == 6 and trainer.total_steps == 6  # 4 steps taken + 1 epoch of 2 steps of 16
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * step / 6)) for step in (4, 5)]
    assert used == pytest.approx(expected, rel=1e-6)
    assert used[0] > 0.0


def _interrupt_at(monkeypatch, step: int) -> None:
    """Ctrl-C as step ``step`` begins."""
    original = Trainer._one_step

    def one_step(self, batch):
        if self.state.step + 1 == step:
            raise KeyboardInterrupt
        original(self, batch)

    monkeypatch.setattr(Trainer, "_one_step", one_step)


def test_a_resume_that_ends_the_run_where_it_stands_validates_its_last_step(tmp_path, monkeypatch):
    # before: a run interrupted after a periodic (unvalidated) checkpoint and resumed with max_steps at that
    # step took no step and validated nothing: the last step, documented as always validated so that the
    # end of a run can be selected as best, was left out of model selection and of metrics.jsonl
    install_tiny(monkeypatch)
    out = str(tmp_path / "run")
    data, val = SyntheticDataset(64), SyntheticDataset(12, seed=5)
    _interrupt_at(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        Trainer(_recipe(out, 8, epochs=1, val_every=4, save_every=2), train_data=data, val_data=val).fit()
    monkeypatch.undo()
    install_tiny(monkeypatch)
    recipe = _recipe(out, 8, epochs=1, val_every=4, save_every=2, max_steps=6)
    result = Trainer(recipe, train_data=data, val_data=val, resume=True).fit()
    assert result.step == 6
    assert [h["step"] for h in result.history] == [4, 6]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [4, 6]


def test_a_ctrl_c_names_the_checkpoint_kept_and_how_to_go_on(tmp_path, monkeypatch, caplog):
    # before: a KeyboardInterrupt went through the trainer without a word; `sdd train` printed "interrupted"
    # and nothing said which step was kept or that --resume continues
    install_tiny(monkeypatch)
    out = str(tmp_path / "run")
    _interrupt_at(monkeypatch, 4)
    with caplog.at_level("WARNING", logger="sddkit.training"), pytest.raises(KeyboardInterrupt):
        Trainer(_recipe(out, 8, epochs=1, save_every=2), train_data=SyntheticDataset(64)).fit()
    assert "interrupted at step 3: the last checkpoint" in caplog.text
    assert "step-00000002" in caplog.text and "--resume" in caplog.text


def test_validation_data_of_one_class_is_refused_at_the_first_validation(tmp_path, monkeypatch):
    # before: injected val data of one class gave val_eer None at every validation: the run trained on without
    # model selection or early stopping and exported its last weights as best/ without a word
    from torch.utils.data import Subset

    from sddkit.errors import ConfigError

    install_tiny(monkeypatch)
    val = SyntheticDataset(12, seed=5)
    spoofs = Subset(val, [i for i in range(12) if val.labels[i] == 0])
    trainer = Trainer(_recipe(str(tmp_path / "run"), 8, epochs=1), train_data=SyntheticDataset(16), val_data=spoofs)
    with pytest.raises(ConfigError, match="0 bona fide and 8 spoof utterances: model selection by val EER needs both"):
        trainer.fit()
