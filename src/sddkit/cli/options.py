"""Checks of numeric options shared by several commands (``--batch-size``, ``--threads``, ``--workers``...).

Each command calls :func:`check_minimums` first thing, so a bad value is one clean line (exit status 2)
before a model loads, a manifest is read or a fold trains for an hour, and every command words it alike.
"""

from __future__ import annotations

import argparse

from sddkit.errors import ConfigError


def check_minimums(args: argparse.Namespace, **minimums: float) -> None:
    """Refuse any option ``dest`` of ``args`` whose value is below ``minimums[dest]``.

    Keys are argparse destinations (``batch_size`` checks ``--batch-size``); a value of ``None``
    (an option left at "automatic") passes, NaN does not. Raises ``ConfigError`` naming the first bad
    option.
    """
    for dest, low in minimums.items():
        value = getattr(args, dest)
        if value is not None and not value >= low:  # `not >=` also refuses NaN, which compares false
            raise ConfigError(f"{_flag(dest)} must be >= {low:g}, got {value:g}")


def check_positive(args: argparse.Namespace, *dests: str) -> None:
    """Refuse any option ``dest`` of ``args`` that is not strictly positive (NaN included)."""
    for dest in dests:
        value = getattr(args, dest)
        if not value > 0:
            raise ConfigError(f"{_flag(dest)} must be > 0, got {value:g}")


def set_torch_threads(threads: int | None) -> None:
    """Use ``threads`` torch CPU threads (already checked >= 1); ``None`` leaves torch's choice."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _flag(dest: str) -> str:
    """The option an argparse destination comes from: ``max_duration_s`` -> ``--max-duration-s``."""
    return "--" + dest.replace("_", "-")
