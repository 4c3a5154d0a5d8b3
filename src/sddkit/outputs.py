"""Writing outputs safely: whether an output file can be written, asked before the work that produces it (scoring,
a bootstrap), one file replaced whole or not at all (:func:`atomic_open`), a report's files published together
(:func:`publish_staged`), the fsyncs that make a rename durable, and the CSV rows of score files (:class:`RowWriter`).
Nothing here loads torch: a command that needs none writes with these too."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from sddkit.errors import ConfigError


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


def file_in_the_way(path: Path) -> Path | None:
    """The nearest existing one of ``path`` and its parents when it is not a folder (a file there makes
    creating ``path`` fail in ``mkdir``, with a traceback); None when ``path`` can be made a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename into ``directory`` durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename itself is already done
    finally:
        os.close(fd)


def folder_failure(exc: OSError) -> str:
    """Why ``mkdir`` of an output folder failed, in words: "File exists" (``EEXIST``) means a file stands at that
    name (``--out report.md`` given twice, a folder name that is a CSV), which the bare message did not say."""
    if isinstance(exc, FileExistsError):
        return "a file of that name is there: name a folder"
    return str(exc.strerror or exc)


def earlier_report(index: Path, about: Sequence[str] = ()) -> str | None:
    """Words naming the report an earlier run left at ``index`` (e.g. ``OUT/report.json``), which a rerun into the
    same folder replaces: the file, when it was written (UTC) and, when ``about`` is a key path into its JSON (e.g.
    ``("inputs", "scores")``) that holds a string, that string. None when there is no such file."""
    try:
        written = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(index.stat().st_mtime))
    except OSError:  # none there (or unreadable: nothing to name)
        return None
    words = f"{index}, written {written}"
    try:
        value: object = json.loads(index.read_text(encoding="utf-8"))
        for key in about:
            value = value.get(key) if isinstance(value, dict) else None
    except (OSError, ValueError):  # not the JSON of a report: the file and its time say enough
        value = None
    if about and isinstance(value, str):
        words += f", {about[-1]} {value}"
    return words


def publish_staged(
    out: Path, what: str, write: Callable[[Path], Sequence[str]], *, stale: Iterable[str] = ()
) -> list[str]:
    """Write a report's files into ``out`` all or none: returns the names written.

    ``write(staging)`` writes every file complete into a hidden folder inside ``out`` and returns their names in
    the order they are to be moved in place (the report's index, e.g. ``report.json``, last). Then the earlier
    run's index and the ``stale`` names (files of an earlier run that this one lacks) are removed from ``out`` and
    the new files moved in, the index last. A crash, a full disk or Ctrl-C thus leaves no half-written file, and
    never an index over a mix of two runs' files: a crash between the renames leaves no index at all (rerun); an
    OSError is a ConfigError naming ``out`` and ``what`` (e.g. "report"), not a traceback.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file of that name
        raise ConfigError(f"{out}: cannot create the {what} folder ({folder_failure(exc)})") from None
    stem = f".{what.replace(' ', '-')}-"
    remove_dead_temporaries(out, stem)  # a killed run's staging folder, which nothing else removes
    try:
        staging = Path(tempfile.mkdtemp(dir=out, prefix=f"{stem}{_writer()}.", suffix=".tmp"))
    except OSError as exc:  # no permission, a read-only file system
        raise ConfigError(f"{out}: cannot write the {what} there ({exc.strerror or exc})") from None
    try:
        names = list(write(staging))
        for name in names:  # on disk before the renames publish them: a power cut leaves no empty report file
            fsync_file(staging / name)
        if len(names) > 1:
            # the earlier index goes first: the renames below are one file at a time, and a crash between them left
            # the earlier run's index beside this run's files, a report whose index describes other files
            (out / names[-1]).unlink(missing_ok=True)
        for name in stale:
            if name not in names:
                (out / name).unlink(missing_ok=True)
        for name in names:
            os.replace(staging / name, out / name)
        fsync_dir(out)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the {what} ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names


def _writer() -> str:
    """``<pid>@<host>``: the process that writes a temporary file or folder, in its name, so that a later write
    removes those of a writer killed before its end (SIGKILL, a power cut: no clean-up of its own ran), and never
    one of a writer still running, here or on another machine writing into a shared folder."""
    # the host name cut short: a long one made the names of long output files too long for the file system
    return f"{os.getpid()}@{host_name()[:32]}"


def host_name() -> str:
    """This machine's name as temporary files' names carry it (letters, digits, ``.``, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())


# the rest of a temporary's name after its stem: the writer (pid@host), then mkstemp/mkdtemp's random letters
_TEMPORARY = re.compile(r"(\d+)@([A-Za-z0-9._-]+)\.[a-z0-9_]+\.tmp")


def remove_dead_temporaries(folder: Path, stem: str) -> list[Path]:
    """Remove the temporary files and staging folders named ``<stem><pid>@<host>.<random>.tmp`` in ``folder`` that a
    writer of this machine left when it was killed (its process gone); returns them. A killed export of a large
    model left a copy of its weights hidden in ``best/`` or ``final/`` (and in every copy of that folder), a killed
    report its staging folder, for good: nothing else removes them. Those of a live process, of another machine,
    and names of an older sddkit (no writer in them) stay."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process there
        return []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(stem) and n.endswith(".tmp")]
    except OSError:  # not there yet, or unreadable: the write itself says what is wrong
        return []
    host = _writer().partition("@")[2]
    removed = []
    for name in names:
        match = _TEMPORARY.fullmatch(name[len(stem) :])
        if match is None or match.group(2) != host or process_alive(int(match.group(1))):
            continue
        path = folder / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:  # removed by another writer at the same moment, or a folder we may not write in
            pass
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` may exist here: only an id the system says no process has is a dead one."""
    if pid <= 0:  # 0 and negative ids name process groups, not a process: never a writer's own
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):  # PermissionError: it exists, under another user
        return True
    return True


def _umask() -> int:
    """The process umask, read without changing it (Linux), else by the set-and-restore dance."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode() -> int:
    """The mode a plain open() gives a new file, 0666 less the umask, for the mkstemp files (always 0600) that
    atomic writes rename into place: model directories, checkpoints and score files are then as readable (by
    the service, by colleagues) as any other file the user writes."""
    return 0o666 & ~_umask()


def _set_new_file_mode(file: int | str) -> None:
    """Give a temporary file (a descriptor or a path) :func:`_new_file_mode`, where the file system allows it: one
    that refuses chmod (vfat, some network shares) keeps the file as created, and the write goes on."""
    try:
        os.chmod(file, _new_file_mode())
    except OSError:
        pass


@contextlib.contextmanager
def replacing_file(path: Path) -> Iterator[tuple[int, str]]:
    """``(fd, name)`` of a new temporary file beside ``path`` that replaces ``path`` (renamed, then its folder
    fsynced) when the ``with`` block ends without error, and is removed when it fails. The block closes ``fd`` and
    makes the file durable (fsync) before it ends: the rename publishes what is on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path.parent, f".{path.name}.")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_writer()}.", suffix=".tmp")
    try:
        yield fd, tmp
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` (fsynced, then renamed) only when the ``with`` block ends without error.

    What is written streams to a temporary file beside ``path``, so a large output is never held in memory whole,
    and a crash or an error mid-way leaves ``path`` as it was."""
    with replacing_file(path) as (fd, _):
        _set_new_file_mode(fd)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


class RowWriter:
    """``csv.writer`` with ``\n`` line ends that also quotes the cells of a row holding a ``\r``.

    csv quotes a cell holding its line terminator (``\n``) but not a bare ``\r``, which every reader takes for
    a line end: a file named ``a\rb.wav`` split its row in two, and each restart scored it again.
    """

    def __init__(self, f):  # type: ignore[no-untyped-def]
        self._plain = csv.writer(f, lineterminator="\n")
        self._quoted = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row: Sequence[Any]) -> None:
        cells = list(row)
        carriage = any(isinstance(c, str) and "\r" in c for c in cells)
        (self._quoted if carriage else self._plain).writerow(cells)
