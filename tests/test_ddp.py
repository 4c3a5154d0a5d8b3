"""DDP on CPU (gloo, 2 processes): replicas stay identical under ERM and MLDG; data sharded; rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

TESTS = str(Path(__file__).resolve().parent)
STRATEGIES = ("erm", "mldg")


def _free_ports(n: int) -> list[int]:
    """n distinct free ports (all held open together while choosing, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _worker(rank: int, world: int, ports: list[int], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    sys.path.insert(0, TESTS)
    from test_train_support import SyntheticDataset, register_tiny_for_good

    from sddkit.config import from_dict
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    register_tiny_for_good()

    class Recording(Trainer):
        """Records this rank's batches, and its weights when the loop ends (before exports reload weights)."""

        seen: list[list[int]] = []

        def _one_step(self, batch):
            self.seen.append(batch["index"].tolist())
            super()._one_step(batch)

        def _finish(self):
            state = {k: v.contiguous().clone() for k, v in self.module.state_dict().items()}
            save_file(state, f"{out}/{self.recipe.strategy.name}-rank{rank}.safetensors")
            return super()._finish()

    for strategy, port in zip(STRATEGIES, ports):
        # one process group per run (as under torchrun), each on a fresh port: re-using a port right
        # after the previous group's store closed can race
        os.environ["MASTER_PORT"] = str(port)
        recipe = from_dict(
            TrainRecipe,
            {
                "seed": 2,
                "model": {"frontend": {"name": "tiny_test", "dropout": 0.1}, "backend": "tiny_test_head"},
                "strategy": strategy,
                "optimizer": {"lr": 1e-2},
                "data": {"batch_size": 6},
                "trainer": {
                    "epochs": 5,
                    "max_steps": 4,
                    "val_every": 2,
                    "grad_clip": 1.0,
                    "device": "cpu",
                    "out_dir": f"{out}/{strategy}",
                    "progress": False,
                },
            },
        )
        trainer = Recording(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(18, seed=9))
        trainer.seen = []
        result = trainer.fit()
        with open(f"{out}/{strategy}-rank{rank}.json", "w") as f:
            json.dump({"seen": trainer.seen, "history": result.history}, f)


def test_two_process_gloo_replicas_stay_identical(tmp_path):
    ports = _free_ports(len(STRATEGIES))
    ctx = mp.spawn(_worker, args=(2, ports, str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 300  # a deadlocked collective must fail the test, not hang the suite
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("the DDP workers did not finish within 300 s")
    for strategy in STRATEGIES:
        w0 = load_file(str(tmp_path / f"{strategy}-rank0.safetensors"))
        w1 = load_file(str(tmp_path / f"{strategy}-rank1.safetensors"))
        fresh = load_file(str(tmp_path / f"{strategy}/final/model.safetensors"))
        for key in w0:
            assert torch.equal(w0[key], w1[key]), (strategy, key)  # bitwise identical replicas
        assert not torch.equal(w0["backend.head.weight"], torch.zeros_like(w0["backend.head.weight"]))
        assert set(fresh) == set(w0)
        r0 = json.loads((tmp_path / f"{strategy}-rank0.json").read_text())
        r1 = json.loads((tmp_path / f"{strategy}-rank1.json").read_text())
        # each rank trained on its own shard: 4 steps of 6 items, no item shared within an epoch's steps
        assert len(r0["seen"]) == len(r1["seen"]) == 4
        assert not set(sum(r0["seen"][:4], [])) & set(sum(r1["seen"][:4], []))
        # validation is gathered over both ranks: the same complete result everywhere
        assert r0["history"] == r1["history"] and [h["n"] for h in r0["history"]] == [18, 18]
        # only rank 0 writes the run files
        lines = (tmp_path / strategy / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [2, 4]
        run = json.loads((tmp_path / strategy / "run.json").read_text())
        assert len(run["sessions"]) == 1 and run["sessions"][0]["world_size"] == 2
