"""Scoring's glibc malloc settings: fewer page faults for repeated large activations, opt-out honoured."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from sddkit.scoring import allocator
from sddkit.scoring.allocator import tune_malloc

GLIBC = allocator._glibc() is not None

# Allocates, touches and frees blocks of 4-24 MB as a forward pass does with its activations; prints the
# minor page faults of the loop after the first (warm-up) round.
PROBE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from sddkit.scoring.allocator import tune_malloc
    applied = tune_malloc(sys.argv[1])
    def round_():
        for _ in range(10):
            # 4 and 24 MB blocks alive together, written: every page faulted in again unless reused
            live = [np.ones(n) for n in (500_000, 3_000_000, 500_000, 3_000_000)]
            del live
    round_()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    round_()
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt exists only in glibc; elsewhere tune_malloc is a no-op")
def test_tuned_malloc_reuses_freed_blocks_instead_of_faulting_them_in_again():
    applied, tuned = _faults("tuned")
    system_applied, system = _faults("system")
    assert applied == "True" and system_applied == "False"
    # system: large blocks are fresh mmaps (or trimmed heap) faulted in again each time (about 10-25
    # thousand faults here, fewer with transparent huge pages); tuned: freed heap blocks are reused.
    assert system > 1_000
    assert tuned < system / 10


def test_system_choice_and_user_environment_leave_malloc_alone(monkeypatch):
    assert tune_malloc("system") is False
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    assert tune_malloc("tuned") is False


def test_non_glibc_platform_is_a_no_op(monkeypatch):
    for name in allocator.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert tune_malloc("tuned") is False


def test_unknown_allocator_raises():
    with pytest.raises(ValueError, match="allocator must be one of"):
        tune_malloc("jemalloc")  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["score", "serve"])
def test_cli_offers_the_allocator_flag(command):
    from sddkit.cli.main import build_parser

    parser = build_parser()
    extra = ["x.wav", "--out", "o.csv"] if command == "score" else []
    args = parser.parse_args([command, *extra, "--allocator", "system"])
    assert args.allocator == "system"
    assert parser.parse_args([command, *extra]).allocator == "tuned"
