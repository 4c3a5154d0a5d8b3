"""Data-parallel helpers: process-group set-up from torchrun's environment, device choice, collectives.

``torchrun --standalone --nproc_per_node=N -m sddkit.cli.main train RECIPE.yaml`` sets RANK,
WORLD_SIZE and LOCAL_RANK; the trainer then joins a process group (NCCL on GPU, gloo on CPU),
wraps the detector in ``DistributedDataParallel``, shards the training batches by rank, and lets
only rank 0 log (its training curves are means over every rank's steps: :func:`mean_over_ranks`) and write
checkpoints. Without those variables everything runs in one process.
A process that stops on an error (a bad audio file in its share) stops the others at their next collective:
under gloo they raise :class:`PeerProcessError`, one line pointing at that process's own error (torchrun
also ends the job as soon as one process has failed). A process stopped by the trainer's checks of its out_dir
(in use by another run, an earlier run's checkpoints) stops the others as it starts, with
:class:`PeerProcessError` naming its error, also in a launch without torchrun (``torch.multiprocessing.spawn``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from sddkit.errors import ConfigError, SddkitError

# what gloo says when a peer process exited (its sockets closed) while this one waited for it in a collective
PEER_LOST = ("Connection closed by peer", "Connection reset by peer")


class PeerProcessError(SddkitError, RuntimeError):
    """Another process of a multi-process job stopped, so this one cannot go on (its own error says why)."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env() -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (defaults: a single process).

    A ``WORLD_SIZE`` above 1 without ``RANK`` (a launcher of one's own that sets only the first, a SLURM script
    exporting ``WORLD_SIZE=$SLURM_NTASKS``) is refused: every process took rank 0, so ``sdd score`` scored rank 0's
    share in each (the other shares in none, no merge ever) and ``sdd train``'s processes met in no group."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", None)
    if world < 1:
        raise ConfigError(f"WORLD_SIZE={world}: the number of processes must be at least 1 (unset it for one)")
    if rank is None:
        if world > 1:
            raise ConfigError(
                f"WORLD_SIZE={world} is set but RANK is not: start the processes with torchrun (it sets RANK, "
                f"LOCAL_RANK and WORLD_SIZE), or set RANK (0 to {world - 1}) in each; unset WORLD_SIZE to run one"
            )
        rank = 0
    if not 0 <= rank < world:
        raise ConfigError(
            f"RANK={rank} with WORLD_SIZE={world}: a rank is 0 to {world - 1} (the number of processes less one)"
        )
    local = _env_int("LOCAL_RANK", rank)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def _env_int(name: str, default: int | None) -> int | None:
    """The whole number in environment variable ``name``; ``default`` when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is not a whole number (torchrun sets RANK, LOCAL_RANK and WORLD_SIZE to numbers; "
            "unset them to run one process)"
        ) from None


def select_device(preference: str, info: DistInfo) -> torch.device:
    """``trainer.device`` as this process's device: ``auto`` -> CUDA when available; ``cuda`` -> GPU ``local_rank``
    (0 in one process); ``cuda:N`` -> GPU N (one process only). A ConfigError, before anything is read: CUDA where
    there is none, a GPU this machine lacks, ``cuda:N`` under torchrun, and more torchrun processes on this machine
    than it has GPUs, which NCCL cannot share (two ranks took one GPU and NCCL failed in DDP's first broadcast, a
    traceback after the data had been read)."""
    wants_cuda = preference == "cuda" or preference.startswith("cuda:")
    if wants_cuda and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device is {preference!r} but no CUDA device is available; use cpu (or auto: CUDA where there "
            "is one)"
        )
    if not (wants_cuda or (preference == "auto" and torch.cuda.is_available())):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if preference.startswith("cuda:"):
        index = int(preference.split(":", 1)[1])
        if info.enabled:  # every rank on GPU N: NCCL refuses two ranks on one GPU
            raise ConfigError(
                f"trainer.device={preference} names one GPU, but torchrun started {info.world_size} processes, each "
                "of which takes a GPU of its own (LOCAL_RANK): use trainer.device=cuda (or auto), and choose the GPUs "
                "with CUDA_VISIBLE_DEVICES"
            )
        if index >= count:
            raise ConfigError(
                f"trainer.device={preference}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
    elif info.enabled:
        # torchrun sets LOCAL_WORLD_SIZE; without it (a launcher of one's own) each rank checks its own LOCAL_RANK
        local = max(_env_int("LOCAL_WORLD_SIZE", 0) or 0, info.local_rank + 1)
        if local > count:
            raise ConfigError(
                f"{local} processes on this machine but it has {count} CUDA device(s): under torchrun each process "
                f"trains on a GPU of its own (NCCL cannot share one); start at most {count} (torchrun "
                f"--nproc_per_node={count}), or train on the CPU with trainer.device=cpu"
            )
        index = info.local_rank
    else:
        index = info.local_rank % max(1, count)
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def is_main_process() -> bool:
    """Whether this process is the job's rank 0, or the only process: where a note said once per job is logged by
    code that is given no :class:`DistInfo` (a training strategy's step), read from the joined process group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def rank_device(device: str, info: DistInfo) -> str:
    """``sdd score``'s ``--device`` for this process of a torchrun job: a bare ``cuda`` is GPU ``local_rank`` (modulo
    the GPUs this process sees), as ``sdd train`` takes it; ``cuda:N``, ``cpu`` and ``mps`` stay as given. (Every
    rank of ``torchrun --nproc_per_node=8 ... score --device cuda`` ran on GPU 0, the seven others idle.)"""
    if not info.enabled or device.strip().lower() != "cuda" or not torch.cuda.is_available():
        return device
    count = torch.cuda.device_count()
    return f"cuda:{info.local_rank % count}" if count else device


def init_process_group(info: DistInfo, device: torch.device) -> bool:
    """Join the job's process group if needed; returns True when this call created it."""
    if not info.enabled or dist.is_initialized():
        return False
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v, "").strip()]
    if missing:  # torch's "environment variable MASTER_ADDR expected, but not set", a traceback
        raise ConfigError(
            f"WORLD_SIZE={info.world_size} but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
            f"set: start the processes with torchrun (torchrun --standalone --nproc_per_node={info.world_size} "
            "-m sddkit.cli.main ...), which sets them, or set MASTER_ADDR and MASTER_PORT to rank 0's address and a "
            "free port in each; unset WORLD_SIZE to run one process"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return True


def peer_lost(exc: BaseException, info: DistInfo) -> PeerProcessError | None:
    """The clear error for ``exc`` when it is gloo's report of a peer that exited mid-collective (a rank that met
    a bad audio file, a full disk), else None. Raised as it is, it was a traceback on every other rank, printed
    around the one line that says what went wrong."""
    if not info.enabled or not isinstance(exc, RuntimeError) or isinstance(exc, SddkitError):
        return None
    text = str(exc)
    what = next((s for s in PEER_LOST if s in text), None)
    if what is None:
        return None
    return PeerProcessError(
        f"rank {info.rank}: another of the {info.world_size} processes stopped (gloo: {what.lower()}), so this "
        "one stops too; that process's own error, printed by it, says why"
    )


def all_started(failure: Exception | None, info: DistInfo) -> None:
    """Raise ``failure`` (this process's error while starting), or another process's as a
    :class:`PeerProcessError`, on every rank alike (a collective: every rank calls it, failed or not). A process
    that stopped before the others' first collective left them waiting there until the group's timeout (hours
    for ``sdd score``'s) wherever no torchrun ends them."""
    if info.enabled and dist.is_available() and dist.is_initialized():
        every = all_gather_objects(None if failure is None else f"{type(failure).__name__}: {failure}")
        other = next(((rank, e) for rank, e in enumerate(every) if e is not None), None)
        if failure is None and other is not None:
            raise PeerProcessError(
                f"rank {info.rank}: process {other[0]} of {info.world_size} could not start ({other[1]}), so this "
                "one stops too"
            )
    if failure is not None:
        raise failure


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(window: dict[str, tuple[float, float]]) -> dict[str, float]:
    """``{tag: total / weight}`` summed over every rank's ``{tag: (total, weight)}``, each tag over the ranks that
    have it (a collective: every rank calls it at the same points, whatever tags it holds; ``window`` itself when
    not distributed).

    The tags travel as one object per rank, not as an all-reduced tensor: the ranks may hold different tags (MLDG's
    ``meta_test/*`` are missing on a rank whose batch could not be split), and tensors of other lengths or orders
    would hang the all-reduce or add one rank's tag to another's."""
    totals: dict[str, list[float]] = {}
    for theirs in all_gather_objects(window):
        for tag, (total, weight) in theirs.items():
            acc = totals.setdefault(tag, [0.0, 0.0])
            acc[0] += total
            acc[1] += weight
    return {tag: total / weight for tag, (total, weight) in totals.items() if weight > 0}


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Rank ``src``'s buffers (batch-norm running statistics) on every rank, in place; nothing when not
    distributed. A strategy that calls the bare module (MLDG's inner and meta-test passes bypass DDP, which
    broadcasts buffers only in its own forward) leaves each rank with its own statistics: evaluated with them,
    rank 1's half of the validation set was scored by a model that is never saved."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)


def all_reduce_gradients(params: Sequence[nn.Parameter], world_size: int) -> None:
    """Average ``.grad`` over ranks in one flat collective (used where DDP's own hooks are bypassed).

    A parameter without a gradient on any rank keeps ``grad = None`` so the optimiser skips it,
    exactly as it would in a single process; one with a gradient on some ranks only is averaged
    with zeros from the others, as DDP does.
    """
    if world_size <= 1 or not params:
        return
    device = params[0].device
    present = torch.tensor([float(p.grad is not None) for p in params], device=device)
    pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).float().reshape(-1) for p in params]
    flat = torch.cat([*pieces, present])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    counts = flat[-len(params) :].tolist()
    for p, count in zip(params, counts):
        n = p.numel()
        if count > 0:
            p.grad = (flat[offset : offset + n] / world_size).view_as(p).to(p.dtype)
        offset += n
