"""Review 9 of the training loop (trainer9): a resume whose model changed shape, optimiser moments of other shapes,
set_epoch through Subset/ConcatDataset, a resume's strategy seed, a rank stopped by its out_dir check under DDP,
StepContext.loss_fn's type, a resume whose checkpoints were deleted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from sddkit.config import from_dict
from sddkit.errors import CheckpointError
from sddkit.training import checkpoint as ckpt
from sddkit.training.data import epoch_batches
from sddkit.training.distributed import DistInfo
from sddkit.training.recipe import DataConfig, TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(out: Path, max_steps: int, dim: int = 8, **extra: object) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "model": {"frontend": {"name": "tiny_test", "dim": dim}, "backend": {"name": "tiny_test_head"}},
            "data": {"batch_size": 8},
            "trainer": {"max_steps": max_steps, "val_every": 2, "out_dir": str(out), "progress": False},
            **extra,
        },
    )


def _fit(recipe: TrainRecipe, resume: bool = False, train_data: Dataset | None = None):
    data = train_data if train_data is not None else SyntheticDataset(40)
    return Trainer(recipe, train_data=data, val_data=SyntheticDataset(18, seed=9), resume=resume).fit()


# --- a resume under a recipe whose model changed ---------------------------------------------------------------
def test_a_resume_whose_model_changed_shape_names_the_recipe_keys_changed(tmp_path, monkeypatch):
    # `sdd train --resume ... model.frontend.dim=12`: the checkpoint's weights cannot load into the wider model; the
    # error named a tensor only (the recipe change that caused it was a warning logged just before, saying "the new
    # values apply from here")
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(_recipe(out, 2))
    shutil.rmtree(out / "best")
    shutil.rmtree(out / "final")
    with pytest.raises(CheckpointError) as info:
        _fit(_recipe(out, 4, dim=12), resume=True)
    message = str(info.value)
    assert "shape mismatch" in message and "model.frontend.dim: 8 -> 12" in message
    assert "another trainer.out_dir" in message


def test_optimizer_moments_of_other_shapes_are_refused_when_loaded_not_at_the_first_step():
    # as many trainable tensors as the checkpoint's, of other shapes: torch's load_state_dict checks the count only,
    # and the first optimiser step failed with a raw "size of tensor a must match ..."
    old = nn.Linear(2, 3)
    opt = torch.optim.AdamW(old.parameters(), lr=1e-3)
    old(torch.randn(4, 2)).sum().backward()
    opt.step()
    new = nn.Linear(3, 2)
    fresh = torch.optim.AdamW(new.parameters(), lr=1e-3)
    with pytest.raises(CheckpointError, match=r"trainable parameter 0 has shape \(2, 3\), its saved exp_avg \(3, 2\)"):
        ckpt.load_optimizer_state(fresh, opt.state_dict())
    same = torch.optim.AdamW(nn.Linear(2, 3).parameters(), lr=1e-3)
    ckpt.load_optimizer_state(same, opt.state_dict())  # the same shapes load


# --- set_epoch through dataset wrappers ----------------------------------------------------------------------------
class _EpochAware(Dataset):
    def __init__(self, n: int):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def test_an_epoch_reaches_the_datasets_inside_a_subset_or_a_concatenation():
    # a training set given as Subset(dataset, rows) or ConcatDataset([a, b]): set_epoch went to the wrapper only,
    # so the datasets inside stayed at epoch 0 and drew the same random crops and augmentations every epoch
    inner, a, b = _EpochAware(30), _EpochAware(10), _EpochAware(12)
    cfg = DataConfig(batch_size=4)
    epoch_batches(Subset(inner, list(range(20))), cfg, seed=0, epoch=3, info=DistInfo())
    assert inner.epoch == 3
    epoch_batches(Subset(ConcatDataset([a, b]), list(range(16))), cfg, seed=0, epoch=5, info=DistInfo())
    assert a.epoch == b.epoch == 5


def test_a_wrapped_training_set_sees_every_epoch_of_a_run(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    inner = SyntheticDataset(40)
    seen: list[int] = []
    inner.set_epoch = lambda epoch: (seen.append(epoch), setattr(inner, "epoch", epoch))  # type: ignore[method-assign]
    recipe = _recipe(tmp_path / "run", 15)
    _fit(recipe, train_data=Subset(inner, list(range(32))))  # 4 batches per epoch: epochs 0..3
    assert sorted(set(seen)) == [0, 1, 2, 3]


# --- the strategy's own seed on a resume ---------------------------------------------------------------------------
def _split_generator(out: Path, recipe_seed: int, strategy: dict[str, object]) -> torch.Tensor:
    trainer = Trainer(
        _recipe(out, 6, seed=recipe_seed, strategy=strategy), train_data=SyntheticDataset(40), resume=True
    )
    try:
        trainer._setup()
        return trainer.strategy.state_dict()["generator"]
    finally:
        trainer._teardown()


def test_a_resume_with_another_strategy_seed_draws_the_splits_of_that_seed(tmp_path, monkeypatch):
    # `--resume strategy.seed=7`: the saved split generator was restored over the new seed's, while the warning
    # said "strategy.seed: None -> 7 ... the new values apply from here"
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(_recipe(out, 3, seed=3, strategy={"name": "mldg"}))
    saved = ckpt.load_checkpoint(ckpt.latest_checkpoint(out / "checkpoints"))["strategy"]["generator"]
    assert torch.equal(_split_generator(out, 3, {"name": "mldg"}), saved)  # unchanged: continued exactly
    assert torch.equal(_split_generator(out, 3, {"name": "mldg", "seed": 3}), saved)  # the same seed, spelt out
    fresh = torch.Generator().manual_seed(7).get_state()
    assert torch.equal(_split_generator(out, 3, {"name": "mldg", "seed": 7}), fresh)


def test_a_resume_with_another_recipe_seed_keeps_a_split_seed_of_its_own(tmp_path, monkeypatch):
    # strategy.seed fixed, the recipe's seed changed (a diverged run told to try another seed): the split stream,
    # whose seed did not change, went back to its start and replayed the splits of the steps already taken
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(_recipe(out, 3, seed=3, strategy={"name": "mldg", "seed": 11}))
    saved = ckpt.load_checkpoint(ckpt.latest_checkpoint(out / "checkpoints"))["strategy"]["generator"]
    assert torch.equal(_split_generator(out, 4, {"name": "mldg", "seed": 11}), saved)


# --- a process that stops before the others are set up -----------------------------------------------------------
def _locked_out_worker(rank: int, world: int, port: int, out: str) -> None:
    import json
    import os
    import sys

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_ddp import port_taken
    from test_train_support import register_tiny_for_good

    from sddkit.errors import SddkitError

    register_tiny_for_good()
    try:
        _fit(_recipe(Path(out) / "run", 4))
        result = ["trained", ""]
    except Exception as exc:  # noqa: BLE001  (what each rank raised is the result)
        if port_taken(exc):  # not the test's subject: run_ranks starts again on another port
            raise
        result = [type(exc).__name__ if isinstance(exc, SddkitError) else "not sddkit", str(exc)]
    Path(f"{out}/rank{rank}.json").write_text(json.dumps(result))


def test_rank_0_stopped_by_its_out_dir_check_stops_the_other_ranks_at_once(tmp_path):
    # outside torchrun (mp.spawn, a launch of one's own), rank 0 stopped on its out_dir check (here: in use by
    # another run) before the process group existed, and the other ranks waited in init_process_group for it until
    # the group's timeout (30 minutes)
    import json

    from test_ddp import FreePorts, run_ranks

    from sddkit.locks import ExclusiveLock

    (tmp_path / "run").mkdir()
    lock = ExclusiveLock(tmp_path / "run" / ".lock", RuntimeError("held by the test"))
    try:
        run_ranks(_locked_out_worker, (2, FreePorts(), str(tmp_path)), 60, out=tmp_path)
    finally:
        lock.release()
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0[0] == "ConfigError" and "in use by another sdd train run" in r0[1]
    assert r1[0] == "PeerProcessError" and "process 0 of 2 could not start" in r1[1] and "in use by" in r1[1]


def test_step_context_declares_the_loss_it_calls_with_domains():
    # the field was typed Callable[[DetectorOutput, Tensor], LossParts], but pooled_loss and MLDG call it with
    # domains=...: a loss written to the declared type failed with "unexpected keyword argument 'domains'"
    import inspect
    import typing

    from sddkit.training.strategy import StepContext

    loss_type = typing.get_type_hints(StepContext)["loss_fn"]
    assert "domains" in inspect.signature(loss_type.__call__).parameters


def test_a_resume_whose_checkpoints_were_deleted_does_not_retrain_over_the_exported_models(tmp_path, monkeypatch):
    # a finished run whose checkpoints/ was deleted (to save space), resumed for more steps: it said "no checkpoint:
    # starting from scratch" at INFO level, trained afresh, and replaced the earlier run's best/ and final/ (a fresh
    # run into that out_dir is refused for exactly that)
    from sddkit.errors import ConfigError

    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(_recipe(out, 2))
    shutil.rmtree(out / "checkpoints")
    before = (out / "best" / "model.safetensors").read_bytes()
    data = SyntheticDataset(40)
    read: list[int] = []
    data.set_epoch = lambda epoch: read.append(epoch)  # type: ignore[method-assign]
    with pytest.raises(
        ConfigError,
        match=r"holds the exported model\(s\) best/ and final/ .* but no checkpoint .* \(--resume would train afresh",
    ):
        _fit(_recipe(out, 4), resume=True, train_data=data)
    assert not read  # refused before the training data is read
    assert (out / "best" / "model.safetensors").read_bytes() == before
