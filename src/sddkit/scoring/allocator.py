"""glibc malloc settings for long scoring runs on the CPU.

A forward pass of a raw-waveform model (AASIST) allocates activations of tens of MB. glibc serves
every block above its mmap threshold with a fresh ``mmap`` and returns it with ``munmap`` when freed,
so each batch page-faults its activations in again: on 2 cores, scoring the published AASIST spent
more system time than compute (docs/benchmarks.md, "glibc allocator"). Keeping freed memory in the
heap instead (no mmap for large blocks, trimming only above 1 GiB of free memory) removes most of those
faults. The cost is that the process keeps its peak memory until it exits, which a scoring process
or service would reach again on the next batch anyway.

Only glibc has ``mallopt``; elsewhere (musl, macOS, Windows) :func:`tune_malloc` does nothing. The
environment variables glibc reads at start-up (``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``) and their ``GLIBC_TUNABLES`` forms (``glibc.malloc.mmap_max=...``) take precedence:
when any is set, the user has chosen, and nothing changes.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
from typing import Literal

# mallopt parameters from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

Allocator = Literal["tuned", "system"]
ALLOCATORS: tuple[str, ...] = ("tuned", "system")
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
# the same settings as glibc tunables (GLIBC_TUNABLES=glibc.malloc.trim_threshold=...:...), the form glibc documents
# now; mallopt overrode them without a word
USER_TUNABLES = ("glibc.malloc.mmap_max", "glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold")


def _user_has_chosen() -> bool:
    """Whether the environment sets any of the malloc settings :func:`tune_malloc` would change."""
    if any(name in os.environ for name in USER_SETTINGS):
        return True
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    set_names = {entry.split("=", 1)[0].strip() for entry in tunables.split(":") if "=" in entry}
    return any(name in set_names for name in USER_TUNABLES)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl has no mallopt and no gnu_get_libc_version; both identify glibc.
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None
    return libc


def tune_malloc(allocator: Allocator = "tuned", *, trim_threshold: int = 1 << 30) -> bool:
    """Apply the scoring allocator settings; True when glibc accepted them.

    ``allocator="system"`` leaves malloc as it is (and returns False), as does a non-glibc platform or
    a ``MALLOC_*_`` variable (or its ``GLIBC_TUNABLES`` form) in the environment.
    """
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {allocator!r}")
    if allocator == "system" or _user_has_chosen():
        return False
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


def add_allocator_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--allocator`` option of the scoring commands (``sdd score``, ``sdd serve``)."""
    parser.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="tuned",
        help="glibc malloc: 'tuned' (the default) keeps freed memory for the next batch (fewer page faults), "
        "'system' leaves it",
    )
