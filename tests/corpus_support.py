"""Placeholder audio files for corpus-reader tests."""

from __future__ import annotations

from pathlib import Path


def touch(path: Path, data: bytes = b"") -> Path:
    """Create ``path`` and its parent folders holding ``data`` (empty by default).

    The protocol readers check that a listed file exists; they never decode it, so an empty file stands in for audio.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
