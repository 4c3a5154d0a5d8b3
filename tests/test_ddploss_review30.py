"""What a torchrun (DDP) run logs as its training curves: the mean over every process's steps, not rank 0's alone.

Two processes on CPU (gloo): the ``train/*`` tags of rank 0's TensorBoard log are the means of the values both ranks'
steps returned since the last log, and a tag that only one rank returns at a step (MLDG's ``meta_test/*`` on a rank
whose batch could not be split) neither hangs the ranks nor goes missing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from test_ddp import TESTS, FreePorts, run_ranks


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    sys.path.insert(0, TESTS)
    from test_train_support import SyntheticDataset, register_tiny_for_good

    from sddkit.config import from_dict
    from sddkit.training import STRATEGIES
    from sddkit.training.erm import ERM
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    register_tiny_for_good()

    class RankProbe(ERM):
        """ERM, plus tags that one rank alone returns at some steps; records what every step returned."""

        name = "rank_probe"

        def __init__(self) -> None:
            self.recorded: list[dict[str, float]] = []

        def step(self, batch, ctx):
            result = super().step(batch, ctx)
            n = len(self.recorded) + 1
            if rank == 1 and n % 2 == 1:  # steps 1 and 3 of rank 1 only
                result.metrics["probe/rank1_only"] = torch.tensor(10.0 + n)
            if rank == 0 and n == 2:
                result.metrics["probe/rank0_only"] = torch.tensor(-5.0)
            self.recorded.append({k: float(v) for k, v in result.metrics.items()})
            return result

    probe = RankProbe()

    @STRATEGIES.register("rank_probe")
    def build_probe(**context):
        """ERM with rank-dependent tags (test only)."""
        return probe

    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}},
            "strategy": "rank_probe",
            "optimizer": {"lr": 1e-2},
            "data": {"batch_size": 6},
            "trainer": {
                "epochs": 5,
                "max_steps": 4,
                "log_every": 2,
                "device": "cpu",
                "out_dir": f"{out}/run",
                "progress": False,
            },
        },
    )
    Trainer(recipe, train_data=SyntheticDataset(48)).fit()
    Path(f"{out}/rank{rank}.json").write_text(json.dumps(probe.recorded))


def _logged(tb_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_torchrun_training_curves_are_the_mean_over_every_process(tmp_path):
    # rank 0 logged its own batches' mean: a noisier curve than, and not, the loss the step optimised (the mean over
    # both ranks' batches, whose gradients DDP averages); a tag only rank 1 returned was never logged at all
    run_ranks(_worker, (2, FreePorts(), str(tmp_path)), 300, out=tmp_path)
    steps = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(steps[0]) == len(steps[1]) == 4
    logged = _logged(tmp_path / "run" / "tb")

    def mean_of(tag: str, upto: int) -> float:
        values = [s[tag] for ranks in steps for s in ranks[upto - 2 : upto] if tag in s]
        return sum(values) / len(values)

    for tag in ("loss", "ce", "grad_norm"):
        assert set(logged[f"train/{tag}"]) == {2, 4}
        for step in (2, 4):
            assert logged[f"train/{tag}"][step] == pytest.approx(mean_of(tag, step), rel=1e-5), (tag, step)
    # the two ranks' batches differ, so their losses do: rank 0's alone is not what is logged
    assert steps[0][0]["loss"] != pytest.approx(steps[1][0]["loss"], rel=1e-3)
    rank0_alone = (steps[0][0]["loss"] + steps[0][1]["loss"]) / 2
    assert logged["train/loss"][2] != pytest.approx(rank0_alone, rel=1e-4)
    # a tag one rank returned is the mean over the steps that returned it, whichever rank that was
    assert logged["train/probe/rank1_only"] == pytest.approx({2: 11.0, 4: 13.0})
    assert logged["train/probe/rank0_only"] == pytest.approx({2: -5.0})
    # the lr is the one every rank's step used (the same everywhere)
    assert set(logged["train/lr"]) == {2, 4}
