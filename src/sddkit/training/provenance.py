"""Run provenance and reproducibility switches: seeds, determinism, package versions, git commit."""

from __future__ import annotations

import functools
import os
import platform
import random
import subprocess
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


def git_commit(path: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (default: sddkit's source); None
    when ``path`` is not tracked by one (no git, no checkout, or a copy git ignores: sddkit installed into a
    virtualenv inside another project's checkout must not be recorded as that project's commit)."""
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
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(status.strip())} if sha else None
