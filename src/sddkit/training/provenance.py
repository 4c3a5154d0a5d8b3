"""Run provenance and reproducibility switches: seeds, determinism, package versions, git commit."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import random
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sddkit


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int, restart_step: int | None = None) -> int:
    """The seed of ``rank``'s dropout/augmentation streams: ``seed`` itself for rank 0 of a fresh run.

    Other ranks, and a rank whose saved streams cannot be restored (``restart_step``: the step it
    resumes at), get a value mixed from all three numbers. ``seed + rank`` would make rank 1 of
    seed 1 draw exactly what rank 0 of seed 2 draws, so two "independent" seeds would share streams.
    """
    if rank == 0 and restart_step is None:
        return int(seed)
    key = [int(seed), int(rank), 0 if restart_step is None else int(restart_step) + 1]
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> np.uint64(1))


def configure_determinism(enabled: bool) -> None:
    """Deterministic kernels (and no cuDNN autotuning) when ``enabled``; off restores the defaults.

    On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first use for deterministic GEMMs.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without moving the python, numpy and torch generators (a validation has no side effects; a
    training run called from Python gives the caller's back, :func:`callers_global_state`).

    CUDA's are saved only when CUDA is in use already: saving them starts it (seconds, and GPU memory, for a run on
    the CPU). A block that started it leaves them seeded as a first use would have (``torch.initial_seed()``)."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    initial_seed = torch.initial_seed()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        try:
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)
            elif torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.manual_seed_all(initial_seed)
        except RuntimeError:  # a CUDA context the block broke (a device-side assert): its own error is the one raised
            pass


@contextlib.contextmanager
def callers_global_state() -> Iterator[None]:
    """Give back, when the block ends (returned or raised), the process-wide state a training run sets for itself:
    the python, numpy and torch generators (:func:`seed_everything`, given back by :func:`preserved_rng`) and the
    determinism switches and ``CUBLAS_WORKSPACE_CONFIG`` (:func:`configure_determinism`).

    ``Trainer.fit`` from Python (a notebook, a sweep) left them as the run did: every later ``np.random`` draw of
    the caller's replayed the recipe seed's stream (a random search drew the same learning rate after every run),
    and a ``torch.use_deterministic_algorithms(True)`` of the caller's was switched off by a recipe without
    ``trainer.deterministic``.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        with preserved_rng():
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


# what a result depends on: the model and its maths, and the audio it is trained on (decoding: soundfile for
# WAV/FLAC, av for compressed formats; soxr resamples; scipy filters in the augmentations)
RESULT_PACKAGES = ("torch", "transformers", "numpy", "safetensors", "scipy", "soundfile", "soxr", "av")


def package_versions() -> dict[str, str | None]:
    """Versions of the packages a result depends on (``None`` when one is not installed), CUDA and cuDNN."""
    out: dict[str, str | None] = {"python": platform.python_version(), "sddkit": sddkit.__version__}
    for name in RESULT_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["cuda"] = torch.version.cuda
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    out["cudnn"] = None if cudnn is None else str(cudnn)
    return out


def device_name(device: torch.device) -> str:
    """What ``device`` is beyond its index: the GPU's model for CUDA (its kernels, hence a result's last bits, differ
    from one model to another), the processor's architecture for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.machine() or "unknown"


# the folders of a checkout (from its top) whose untracked, not ignored files make it dirty: what runs
CODE_FOLDERS = ("src", "recipes", "scripts")


def git_commit(path: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (default: sddkit's source); None
    when ``path`` is not tracked by one (no git, no checkout, or a copy git ignores: sddkit installed into a
    virtualenv inside another project's checkout must not be recorded as that project's commit).

    ``dirty``: a tracked file of the checkout is modified (staged or not), or an untracked file that
    ``.gitignore`` does not exclude lies under ``src/``, ``recipes/`` or ``scripts/`` of the project (beside the
    ``src/`` folder holding ``path``, else at the checkout's top: code
    or a recipe the commit does not hold); untracked files elsewhere (run outputs) and ignored ones never count."""
    where = Path(path) if path is not None else Path(sddkit.__file__).resolve().parent
    return _git_commit(str(where))


@functools.lru_cache(maxsize=8)
def _git_commit(where: str) -> dict[str, Any] | None:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        # the checkout holds (tracks) files of this folder: not merely a folder inside an unrelated checkout
        subprocess.run(
            ["git", "ls-files", "--error-unmatch", "--", "."],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        # dirty: a tracked file changed anywhere in the checkout, or a file git does not track (and does not
        # ignore) lies where it changes what runs: the package source, recipes or scripts (a new module or
        # recipe a run imports or reads); untracked run outputs elsewhere, and .gitignored files, never count
        dirty = bool(
            _git_status(where, "--untracked-files=no")
            or _git_status(where, "--untracked-files=normal", "--", *_code_pathspecs(where))
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": dirty} if sha else None


def _code_pathspecs(where: str) -> list[str]:
    """``CODE_FOLDERS`` of the project holding ``where``: beside the ``src/`` folder ``where`` lies in (sddkit's
    source is ``<project>/src/sddkit``), so a project kept inside a larger checkout checks its own folders, not
    the larger checkout's; else at the checkout's top."""
    package = Path(where).resolve()
    if package.parent.name == "src":
        return [
            os.path.relpath(package.parent.parent / d, package)
            for d in CODE_FOLDERS
            if (package.parent.parent / d).is_dir()
        ]
    return [f":(top){d}" for d in CODE_FOLDERS]


def _git_status(where: str, *args: str) -> str:
    """``git status --porcelain ARGS`` run in ``where``, stripped (empty: nothing to report)."""
    return subprocess.run(
        ["git", "status", "--porcelain", *args], cwd=where, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def changed_versions(earlier: Any, now: dict[str, Any]) -> list[str]:
    """``"torch 2.4.0 -> 2.5.1"`` for each package whose version differs between two ``versions`` blocks
    (none when the earlier record has no block: written by an sddkit that did not record them)."""
    if not isinstance(earlier, dict):
        return []
    return [f"{k} {earlier.get(k)} -> {now.get(k)}" for k in now if k in earlier and earlier.get(k) != now.get(k)]


def earlier_blocks(earlier: dict[str, Any], key: str, now: Any) -> dict[str, Any]:
    """``{"earlier_<key>": [...]}``: the distinct ``key`` blocks (``versions``, or ``git``: ``{"commit", "dirty"}``,
    None for code outside a checkout) of the earlier runs a record describes (its own ``key`` and its
    ``earlier_<key>`` list) that differ from ``now``, oldest first; ``{}`` when there are none.

    Neither package versions nor the commit refuse a resume of an output (an upgrade, or new code, between an
    interruption and its resume is normal; the model and settings are what a resume compares), but the record keeps
    what the earlier rows were made with. A record without ``key`` (an sddkit that did not record it) adds nothing."""
    earlier_key = f"earlier_{key}"
    blocks = [b for b in (earlier.get(earlier_key) or []) if b is None or isinstance(b, dict)]
    if key in earlier and (earlier[key] is None or isinstance(earlier[key], dict)):
        blocks.append(earlier[key])
    kept: list[dict[str, Any] | None] = []
    for b in blocks:
        if b != now and b not in kept:
            kept.append(b)
    return {earlier_key: kept} if kept else {}


def changed_git(earlier: dict[str, Any], now: dict[str, Any] | None) -> str | None:
    """``"<earlier> -> <now>"`` (each :func:`git_text`) when the earlier run's recorded ``git`` differs from ``now``;
    None when it is the same or the earlier record has none (an sddkit that did not record it)."""
    if "git" not in earlier or earlier["git"] == now:
        return None
    return f"{git_text(earlier['git'])} -> {git_text(now)}"


def git_text(block: Any) -> str:
    """A ``git`` block in words: ``commit 1a2b3c4d5e6f`` (``, dirty``), or ``no git checkout`` for None."""
    if not isinstance(block, dict) or not block.get("commit"):
        return "no git checkout"
    return f"commit {str(block['commit'])[:12]}" + (", dirty" if block.get("dirty") else "")


def changed_protocols(run_record: Path) -> list[str]:
    """The protocol files the latest session of a run read (its ``run.json``'s last ``sessions`` entry:
    ``protocols``, path: SHA-256) whose bytes differ now; a relative path is the one that session's working directory
    read. [] when unknown (no run.json, a record from before it kept digests, a protocol folder, which has none, a
    file no longer there)."""
    from sddkit.documents import file_digest

    try:
        session = json.loads(Path(run_record).read_text())["sessions"][-1]
        recorded, cwd = session["protocols"], session.get("cwd")
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return []
    if not isinstance(recorded, dict):
        return []
    edited = []
    for path, digest in recorded.items():
        if not isinstance(digest, str):
            continue
        where = path if os.path.isabs(path) or not isinstance(cwd, str) else os.path.join(cwd, path)
        now = file_digest(where)
        if now is not None and now != digest:  # a file gone is no other rows: a run reading it fails on it itself
            edited.append(path)
    return edited
