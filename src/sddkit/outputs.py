"""Whether an output file can be written, asked before the work that produces it (scoring, a bootstrap)."""

from __future__ import annotations

import os
from pathlib import Path


def why_unwritable(path: str | Path) -> str | None:
    """None when ``path`` can be created (its folders too) or appended to; else the reason, e.g. "Is a
    directory" or "Not a directory" (a file stands where a folder is needed). Leaves nothing behind
    but the folders it created."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileExistsError:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            created = False
        os.close(fd)
        if created:
            path.unlink()
    except FileExistsError:  # mkdir: a file stands where a folder is needed
        return "Not a directory"
    except OSError as exc:
        return str(exc.strerror or exc)
    return None
