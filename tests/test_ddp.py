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
# run name -> (strategy, batch norm in the back-end): MLDG calls the bare module, bypassing DDP's buffer
# broadcast, so each rank kept its own running statistics (validated with them, saved only rank 0's)
# (domain blocks of 2 for the latter: batch norm needs 2 items in a meta-test block)
DOMAIN_BLOCKS = {"batch_size": 8, "sampler": "domain_batch"}
RUNS = {"erm": ("erm", False, {}), "mldg": ("mldg", False, {}), "mldg_bn": ("mldg", True, DOMAIN_BLOCKS)}
STRATEGIES = tuple(RUNS)


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


class FreePorts:
    """A placeholder in the arguments of :func:`run_ranks`: ``n`` distinct free ports (a list), or one (an int) when
    ``n`` is None, chosen anew for each start."""

    def __init__(self, n: int | None = None):
        self.n = n

    def choose(self) -> int | list[int]:
        ports = _free_ports(1 if self.n is None else self.n)
        return ports[0] if self.n is None else ports


def port_taken(exc: BaseException) -> bool:
    """Whether ``exc`` (a rank's error, or the spawn error quoting it) is rank 0 failing to listen on its port."""
    text = str(exc)
    return "EADDRINUSE" in text or "address already in use" in text.lower()


def run_ranks(fn, args: tuple, seconds: float, *, out: str | Path, nprocs: int = 2, attempts: int = 4) -> None:
    """Run ``fn(rank, *args)`` on ``nprocs`` processes until they finish (:func:`join_or_fail`), each
    :class:`FreePorts` of ``args`` replaced by free ports.

    A port is free when chosen but closed before rank 0 listens on it, seconds later (minutes for the last run of a
    worker that trains several): a rank of another xdist worker, or any outgoing connection, may take it in between.
    Rank 0 then fails with EADDRINUSE (a worker that records its errors must re-raise that one: :func:`port_taken`),
    and the ranks start again on other ports, up to ``attempts`` times, after what the failed start wrote in ``out``
    (the entries that were not there before) is removed."""
    import shutil

    out = Path(out)
    before = set(os.listdir(out))
    for attempt in range(attempts):
        chosen = tuple(a.choose() if isinstance(a, FreePorts) else a for a in args)
        try:
            join_or_fail(start_ranks(fn, chosen, nprocs), seconds)
            return
        except mp.ProcessRaisedException as exc:
            if attempt == attempts - 1 or not port_taken(exc):
                raise
        for name in set(os.listdir(out)) - before:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def start_ranks(fn, args: tuple, nprocs: int = 2):
    """Start ``fn(rank, *args)`` in ``nprocs`` processes, as ``mp.spawn(..., join=False)`` does, but forked from a
    forkserver that has imported torch and the trainer once: a spawned rank imported them again (about 4 s a rank on
    2 cores, most of each DDP test). The forkserver is a clean single-threaded process, not this one."""
    mp.set_forkserver_preload(["torch", "sddkit.training.trainer"])
    return mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="forkserver")


def join_or_fail(ctx, seconds: float) -> None:
    """Wait for spawned workers; a deadlocked collective fails the test (workers killed), not the whole suite."""
    deadline = time.monotonic() + seconds
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail(f"the DDP workers did not finish within {seconds:g} s")


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
        run = ""

        def _one_step(self, batch):
            self.seen.append(batch["index"].tolist())
            super()._one_step(batch)

        def _finish(self):
            state = {k: v.contiguous().clone() for k, v in self.module.state_dict().items()}
            save_file(state, f"{out}/{self.run}-rank{rank}.safetensors")
            return super()._finish()

    for run, port in zip(STRATEGIES, ports):
        strategy, batch_norm, data = RUNS[run]
        # one process group per run (as under torchrun), each on a fresh port: re-using a port right
        # after the previous group's store closed can race
        os.environ["MASTER_PORT"] = str(port)
        recipe = from_dict(
            TrainRecipe,
            {
                "seed": 2,
                "model": {
                    "frontend": {"name": "tiny_test", "dropout": 0.1},
                    "backend": {"name": "tiny_test_head", "batch_norm": batch_norm},
                },
                "strategy": strategy,
                "optimizer": {"lr": 1e-2},
                "data": {"batch_size": 6, **data},
                "trainer": {
                    "epochs": 5,
                    "max_steps": 4,
                    "val_every": 2,
                    "grad_clip": 1.0,
                    "device": "cpu",
                    "out_dir": f"{out}/{run}",
                    "progress": False,
                },
            },
        )
        trainer = Recording(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(18, seed=9))
        trainer.seen, trainer.run = [], run
        result = trainer.fit()
        with open(f"{out}/{run}-rank{rank}.json", "w") as f:
            json.dump({"seen": trainer.seen, "history": result.history}, f)


def test_two_process_gloo_replicas_stay_identical(tmp_path):
    run_ranks(_worker, (2, FreePorts(len(STRATEGIES)), str(tmp_path)), 300, out=tmp_path)
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
        if not RUNS[strategy][2]:  # (domain blocks draw bona fide again within an epoch)
            assert not set(sum(r0["seen"][:4], [])) & set(sum(r1["seen"][:4], []))
        if RUNS[strategy][1]:
            assert any("running_mean" in key for key in w0)  # compared above: one set of statistics
        # validation is gathered over both ranks: the same complete result everywhere
        assert r0["history"] == r1["history"] and [h["n"] for h in r0["history"]] == [18, 18]
        # only rank 0 writes the run files
        lines = (tmp_path / strategy / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [2, 4]
        run = json.loads((tmp_path / strategy / "run.json").read_text())
        assert len(run["sessions"]) == 1 and run["sessions"][0]["world_size"] == 2


def _disagreeing_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    sys.path.insert(0, TESTS)
    from test_train_support import SyntheticDataset, register_tiny_for_good

    from sddkit.config import from_dict
    from sddkit.errors import ConfigError
    from sddkit.training.recipe import TrainRecipe
    from sddkit.training.trainer import Trainer

    register_tiny_for_good()
    recipe = from_dict(
        TrainRecipe,
        {
            "model": {"frontend": {"name": "tiny_test"}, "backend": "tiny_test_head"},
            "data": {"batch_size": 6},
            # an override given to one rank only
            "trainer": {"max_steps": 4 + 2 * rank, "device": "cpu", "out_dir": f"{out}/run", "progress": False},
        },
    )
    try:
        Trainer(recipe, train_data=SyntheticDataset(48), val_data=SyntheticDataset(18, seed=9)).fit()
        message = "trained"
    except ConfigError as exc:
        message = str(exc)
    Path(f"{out}/rank{rank}.txt").write_text(message)


def test_processes_started_with_different_settings_are_refused_instead_of_hanging(tmp_path):
    # rank 1 with trainer.max_steps=6, rank 0 with 4: rank 1 waited for a collective rank 0 never made, silently
    run_ranks(_disagreeing_worker, (2, FreePorts(), str(tmp_path)), 120, out=tmp_path)
    for rank in (0, 1):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert "would not train alike: rank 1 differs from rank 0 (trainer.max_steps: 4 -> 6)" in message
    assert not (tmp_path / "run" / "checkpoints").exists()
