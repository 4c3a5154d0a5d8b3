"""sddkit's source as a tiny git checkout of its own, or as a folder outside any (an installed wheel), for the tests of
what records name the code's commit: ``sddkit.__file__`` pointed into it is where
:func:`sddkit.training.provenance.git_commit` looks, its cache cleared between runs, as each run is a new process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import sddkit
from sddkit.training import provenance


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


class Source:
    """sddkit's source as a checkout of its own (``checkout=True``) or a folder outside any (an installed wheel)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, checkout: bool):
        self.root = root
        package = root / "src" / "sddkit"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("x = 1\n")
        if checkout:
            git(root, "init", "-q")
            git(root, "add", "-A")
            git(root, "commit", "-qm", "first")
        monkeypatch.setattr(sddkit, "__file__", str(package / "__init__.py"))
        provenance._git_commit.cache_clear()

    def commit_change(self) -> None:
        """Another commit of the code (between an interruption and its resume), seen by the next run."""
        (self.root / "src" / "sddkit" / "__init__.py").write_text("x = 2\n")
        git(self.root, "commit", "-qam", "second")
        provenance._git_commit.cache_clear()

    def block(self) -> dict[str, object]:
        return {"commit": git(self.root, "rev-parse", "HEAD"), "dirty": False}
