"""An exclusive lock on a file (``flock``), so two processes never write the same output at once.

The kernel drops the lock when its process dies (even by SIGKILL), so a crash leaves nothing stale.
On a file system without flock (some network file systems) the holder goes on unlocked.
"""

from __future__ import annotations

import os
from pathlib import Path

from sddkit.errors import SddkitError


class ExclusiveLock:
    """Hold ``path`` exclusively; ``busy`` is raised at once when another process holds it."""

    def __init__(self, path: str | Path, busy: SddkitError):
        self.path = Path(path)
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:  # e.g. a read-only folder: writing the output itself will say what is wrong
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise busy from None
            except OSError:  # no flock here
                os.close(fd)
                return
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)  # the holder removed the file as we opened it: lock the new one

    @property
    def held(self) -> bool:
        """Whether the lock is held: False where it could not be taken (its folder missing or read-only, no flock
        there), when the holder goes on unlocked."""
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still holding it (see the loop above)
            os.close(self._fd)
            self._fd = None
