"""Review 3 of the training loop's correctness (trainer2): DDP against a single process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_ddp import FreePorts, run_ranks
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

TESTS = str(Path(__file__).resolve().parent)
STRATEGIES = ("erm", "sam")


def _weighted_run(out: str, strategy: str, batch_size: int) -> None:
    """Four steps of a class-weighted run (no dropout, no batch norm: nothing differs between the ranks but the
    items); rank 0 saves the weights the loop ended with and the classification loss it logged at each step."""
    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    class Recording(Trainer):
        logged: list[float] = []

        def _flush_log(self):
            self.logged += [float(v) for v in self._window.get("ce", [])]
            super()._flush_log()

        def _finish(self):
            if self.info.is_main:
                state = {k: v.contiguous().clone() for k, v in self.module.state_dict().items()}
                save_file({**state, "logged_ce": torch.tensor(self.logged, dtype=torch.float64)}, f"{out}.st")
            return super()._finish()

    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 4,
            "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}},
            "strategy": strategy,
            "optimizer": {"lr": 5e-2},
            "loss": {"class_weights": [0.1, 0.9]},
            "data": {"batch_size": batch_size},
            "trainer": {
                "epochs": 1,
                "max_steps": 4,
                "device": "cpu",
                "out_dir": out,
                "progress": False,
                "log_every": 1,
            },
        },
    )
    Recording(recipe, train_data=SyntheticDataset(48)).fit()


def _ddp_worker(rank: int, world: int, ports: list[int], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    sys.path.insert(0, TESTS)
    from test_train_support import register_tiny_for_good

    register_tiny_for_good()
    for strategy, port in zip(STRATEGIES, ports):
        os.environ["MASTER_PORT"] = str(port)
        _weighted_run(f"{out}/ddp-{strategy}", strategy, 4)


def test_ddp_with_class_weights_trains_like_one_process_with_the_pooled_batch(tmp_path, monkeypatch):
    # two ranks of 4 items take, step by step, the 8 items of the one-process batch (the sampler's shared order);
    # each rank's weighted mean, averaged by DDP, weighted a rank's items by its own class mix instead; the logged
    # classification loss is the pooled batch's too, not rank 0's share
    run_ranks(_ddp_worker, (2, FreePorts(2), str(tmp_path)), 240, out=tmp_path)
    install_tiny(monkeypatch)
    for strategy in STRATEGIES:
        _weighted_run(f"{tmp_path}/one-{strategy}", strategy, 8)
        one, ddp = load_file(f"{tmp_path}/one-{strategy}.st"), load_file(f"{tmp_path}/ddp-{strategy}.st")
        assert one["logged_ce"].shape == (4,)
        for key in one:
            torch.testing.assert_close(ddp[key], one[key], rtol=0, atol=2e-6, msg=f"{strategy}: {key}")


def test_pooled_loss_is_the_plain_loss_in_one_process():
    from sddkit.detectors.outputs import DetectorOutput
    from sddkit.training.losses import DetectionLoss, pooled_over_ranks
    from sddkit.training.recipe import LossConfig

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 1, 1])
    loss = DetectionLoss(LossConfig(class_weights=(0.1, 0.9)))
    parts = loss(DetectorOutput(logits=logits, score=logits[:, 1] - logits[:, 0], embedding=logits), labels)
    assert pooled_over_ranks(parts, loss, labels, world_size=1) is parts  # no process group: nothing to pool


def test_non_finite_validation_scores_stop_the_run_instead_of_dropping_out_of_model_selection(tmp_path, monkeypatch):
    # batch-norm running statistics gone NaN: training (on batch statistics) goes on with a finite loss, but every
    # validation scored NaN, its EER was None as for a set lacking a class, and the run went on without selection,
    # early stopping or a word, exporting final/ with the NaN statistics
    from sddkit.config import from_dict
    from sddkit.errors import TrainingDivergedError
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)

    class Poisoned(Trainer):
        def _one_step(self, batch):
            super()._one_step(batch)
            if self.state.step == 4:
                with torch.no_grad():
                    self.module.backend.norm.running_var.fill_(float("nan"))

    recipe = from_dict(
        TrainRecipe,
        {
            "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head", "batch_norm": True}},
            "data": {"batch_size": 8},
            "trainer": {"max_steps": 8, "val_every": 2, "patience": 2, "out_dir": str(tmp_path), "progress": False},
        },
    )
    trainer = Poisoned(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(18, seed=9))
    with pytest.raises(TrainingDivergedError, match=r"step 4: evaluation: the model gave 18 non-finite score\(s\)"):
        trainer.fit()
    assert "step-00000002" in str(trainer._diverged("x"))  # the last good checkpoint is named and kept
    assert not (tmp_path / "final").exists()
