"""Review tests: ``--resume`` with a changed recipe (what a diverged or early-stopped run is told to do)."""

from __future__ import annotations

import logging

import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(tmp_path, max_steps: int, **sections) -> TrainRecipe:
    data = {
        "seed": 3,
        "model": {"frontend": {"name": "tiny_test", "dropout": 0.2}, "backend": "tiny_test_head"},
        "optimizer": {"lr": 1e-2},
        "data": {"batch_size": 8},
        "trainer": {"epochs": 10, "max_steps": max_steps, "out_dir": str(tmp_path / "run"), "progress": False},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(TrainRecipe, data)


def _fit(recipe: TrainRecipe, resume: bool = False) -> Trainer:
    trainer = Trainer(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9), resume=resume)
    trainer.fit()
    return trainer


@pytest.mark.parametrize(
    "schedule", [{"name": "constant"}, {"name": "cosine", "warmup_steps": 2}, {"name": "cyclic", "step_size": 3}]
)
def test_resuming_with_a_lower_lr_trains_with_it(tmp_path, monkeypatch, schedule):
    # before: the checkpoint's optimizer param_groups (lr included) and the scheduler's base_lrs overwrote the
    # recipe's, so "resume with a lower optimizer.lr" (the advice of TrainingDivergedError) changed nothing
    install_tiny(monkeypatch)
    cyclic = {"base_lr": 1e-3, "max_lr": 1e-2} if schedule["name"] == "cyclic" else {}
    # the cyclic schedule sets the lr itself: optimizer.lr at its default there (another value is refused)
    unread = {"optimizer": {"lr": 1e-5}} if schedule["name"] == "cyclic" else {}
    _fit(_recipe(tmp_path, 4, schedule={**schedule, **cyclic}, **unread))
    low = {"base_lr": 1e-6, "max_lr": 1e-5} if schedule["name"] == "cyclic" else {}
    lowered = _recipe(tmp_path, 8, optimizer={"lr": 1e-5, "weight_decay": 0.5}, schedule={**schedule, **low})
    resumed = Trainer(lowered, train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9), resume=True)
    seen = []
    real_step = resumed.__class__._one_step

    def spy(self, batch):
        seen.append([(g["lr"], g["weight_decay"]) for g in self.optimizer.param_groups])
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "_one_step", spy)
    resumed.fit()
    # the learning rate of every resumed step is the new recipe's schedule at that step
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-5)
    from sddkit.training.schedules import build_scheduler

    sched = build_scheduler(fresh, lowered.schedule, 8)
    expected = []
    for _ in range(8):
        expected.append(fresh.param_groups[0]["lr"])
        fresh.step()
        sched.step()
    assert [s[0][0] for s in seen] == pytest.approx(expected[4:], rel=1e-12)
    assert all(s[0][1] == 0.5 for s in seen)
    # the optimiser's moments still come from the checkpoint: Adam's step count went on from 4
    state = resumed.optimizer.state[resumed.optimizer.param_groups[0]["params"][0]]
    assert int(state["step"]) == 8


def test_resuming_with_a_changed_recipe_names_what_changed(tmp_path, monkeypatch, caplog):
    # before: only a changed model said anything ("a different model config", not which key), a changed
    # seed, batch size or learning rate was taken silently
    install_tiny(monkeypatch)
    _fit(_recipe(tmp_path, 3))
    changed = _recipe(
        tmp_path, 6, seed=4, optimizer={"lr": 1e-3}, model={"frontend": {"name": "tiny_test", "dropout": 0.1}}
    )
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        _fit(changed, resume=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    report = [w for w in warnings if "changed recipe" in w]
    assert len(report) == 1, warnings
    for part in ("seed: 3 -> 4", "optimizer.lr: 0.01 -> 0.001", "model.frontend.dropout: 0.2 -> 0.1"):
        assert part in report[0], report[0]
    # what a resume is for (more steps) or what only changes how it runs is not a recipe change
    assert "max_steps" not in report[0] and "out_dir" not in report[0]


def test_an_unchanged_resume_reports_nothing(tmp_path, monkeypatch, caplog):
    install_tiny(monkeypatch)
    _fit(_recipe(tmp_path, 3))
    with caplog.at_level(logging.WARNING, logger="sddkit.training"):
        _fit(_recipe(tmp_path, 6, trainer={"progress": False, "log_every": 1}), resume=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_resuming_with_another_seed_draws_new_random_streams(tmp_path, monkeypatch):
    # before: the checkpoint's generator states were restored whatever the seed, so "resume with another
    # seed" (TrainingDivergedError's advice) drew the same dropout masks and MLDG splits as before
    install_tiny(monkeypatch)
    _fit(_recipe(tmp_path, 3, strategy="mldg"))
    saved = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))

    def streams(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        trainer = Trainer(_recipe(tmp_path, 6, seed=seed, strategy="mldg"), train_data=SyntheticDataset(48))
        trainer.resume = True
        try:
            trainer._setup()
            return torch.get_rng_state(), trainer.strategy.state_dict()["generator"]
        finally:
            trainer._teardown()

    same_rng, same_split = streams(3)
    assert torch.equal(same_rng, saved["rng"]["torch"]) and torch.equal(same_split, saved["strategy"]["generator"])
    other_rng, other_split = streams(4)
    assert not torch.equal(other_rng, saved["rng"]["torch"])
    assert not torch.equal(other_split, saved["strategy"]["generator"])
    assert torch.equal(streams(4)[0], other_rng)  # still reproducible


def test_resuming_an_early_stopped_run_with_more_patience_trains_on(tmp_path, monkeypatch):
    # before: the saved stopped_early flag ended the resumed run at once, whatever the new trainer.patience
    install_tiny(monkeypatch)
    trainer = {"epochs": 50, "max_steps": 40, "val_every": 2, "patience": 2}
    stopped = _fit(_recipe(tmp_path, 40, optimizer={"lr": 1e-12}, trainer=trainer))
    assert stopped.state.stopped_early and stopped.state.step == 6
    again = _fit(_recipe(tmp_path, 40, optimizer={"lr": 1e-12}, trainer=trainer), resume=True)
    assert again.state.stopped_early and again.state.step == 6  # the same recipe: nothing more to do
    more = _fit(_recipe(tmp_path, 40, optimizer={"lr": 1e-12}, trainer={**trainer, "patience": 4}), resume=True)
    assert more.state.stopped_early and more.state.step == 10
    straight = _fit(_recipe(tmp_path / "straight", 40, optimizer={"lr": 1e-12}, trainer={**trainer, "patience": 4}))
    assert [h["step"] for h in more.history] == [h["step"] for h in straight.history] == [2, 4, 6, 8, 10]


def _record_first_epoch(monkeypatch) -> list[list[int]]:
    """The dataset indices of every step of epoch 0, as the trainer takes them (a list filled as it trains)."""
    seen: list[list[int]] = []
    real_step = Trainer._one_step

    def spy(self, batch):
        if self.state.epoch == 0:
            seen.append([int(i) for i in batch["index"]])
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "_one_step", spy)
    return seen


@pytest.mark.parametrize("new_batch_size", [4, 16])
def test_resuming_mid_epoch_with_another_batch_size_continues_after_the_items_seen(
    tmp_path, monkeypatch, new_batch_size
):
    # before: the checkpoint's position (2 batches of 8 into the epoch) was replayed as 2 batches of the new
    # size, so 4 items of the epoch were seen twice (size 4) or 16 were never seen (size 16)
    install_tiny(monkeypatch)
    seen = _record_first_epoch(monkeypatch)
    _fit(_recipe(tmp_path, 2))
    assert [len(b) for b in seen] == [8, 8]
    rest = (48 - 16) // new_batch_size
    _fit(_recipe(tmp_path, 2 + rest, data={"batch_size": new_batch_size}), resume=True)
    items = [i for b in seen for i in b]
    assert [len(b) for b in seen[2:]] == [new_batch_size] * rest
    assert sorted(items) == list(range(48))  # every item of the epoch once


def test_resuming_mid_epoch_on_another_number_of_processes_continues_after_the_items_seen(tmp_path, monkeypatch):
    # the position counts each rank's batches: 2 batches of 8 on each of 2 ranks (32 items) resumed in one
    # process replayed 2 batches of 8, repeating 16 items of the epoch
    from sddkit.training import checkpoint as ckpt

    install_tiny(monkeypatch)
    seen = _record_first_epoch(monkeypatch)
    _fit(_recipe(tmp_path / "whole", 6))  # one uninterrupted epoch: 6 batches of 8
    whole, seen[:] = list(seen), []
    _fit(_recipe(tmp_path, 2))
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    state = ckpt.load_checkpoint(latest)
    ckpt.save_checkpoint(latest.parent, latest.name, {**state, "world_size": 2})  # as if saved by 2 ranks
    seen[:] = []
    _fit(_recipe(tmp_path, 4), resume=True)
    assert seen == whole[4:]  # the 2-rank run had taken the epoch's first 32 items


def test_the_logged_learning_rate_is_the_one_each_step_used(tmp_path, monkeypatch):
    # train/lr was read after scheduler.step(): one step ahead (the cosine floor, never used, at the last step)
    import torch.utils.tensorboard as tb

    install_tiny(monkeypatch)
    logged: dict[int, float] = {}

    class Recorder:
        def __init__(self, *args, **kwargs):
            pass

        def add_scalar(self, tag, value, step):
            if tag == "train/lr":
                logged[step] = float(value)

        def close(self):
            pass

    monkeypatch.setattr(tb, "SummaryWriter", Recorder)
    used: dict[int, float] = {}
    real_step = Trainer._one_step

    def spy(self, batch):
        used[self.state.step + 1] = self.optimizer.param_groups[0]["lr"]
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "_one_step", spy)
    schedule = {"name": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.1}
    _fit(_recipe(tmp_path, 7, schedule=schedule, trainer={"log_every": 1}))
    assert logged == pytest.approx(used) and len(logged) == 7
