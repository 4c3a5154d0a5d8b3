"""Finding audio files on disk: the suffixes taken as audio, a recursive listing that follows links safely, and
the file a path written on Windows names."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from sddkit.errors import ProtocolError

AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav",
    ".flac",
    ".mp3",
    ".m4a",
    ".ogg",
    ".oga",
    ".opus",
    ".aac",
    ".aif",
    ".aiff",
    ".webm",
    ".wma",
    # telephony, broadcast and lossless formats FFmpeg reads: Sun/NeXT, Core Audio, NIST SPHERE (TIMIT, Switchboard),
    # AMR (phone recordings), Sony Wave64, WavPack
    ".au",
    ".caf",
    ".sph",
    ".amr",
    ".w64",
    ".wv",
    # video containers (FakeAVCeleb ships .mp4) and Matroska audio: their first audio stream is scored
    ".mp4",
    ".mka",
    ".mkv",
    ".mov",
    ".3gp",
)
"""Suffixes (lower case) taken as audio files: by folder listings (protocol readers, ``sdd score DIR``) and by
``sdd score``'s inputs, where a listed suffix is audio even before the file exists."""

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mkv", ".mov", ".webm", ".3gp"})
"""Containers that usually hold a video: in a folder listing, one is left out when a file of another listed suffix
has the same stem beside it (``clip.wav`` extracted from ``clip.mp4``), so the audio is not listed twice."""


def resolve_written_path(written: str, resolve: Callable[[str], str]) -> str:
    """``resolve(written)`` (the caller's rule for a listed path: its base folder, say); but a path written on Windows
    (``audio\\x.wav``, a list made there) that does not exist so, where ``resolve`` of its form with forward slashes
    does, is that file. On POSIX a backslash is part of a file name, so a path that exists as written is never
    changed. Shared by the ``labels_csv`` protocol reader and ``sdd score``'s manifests, which read the same CSVs."""
    path = resolve(written)
    if "\\" not in written or os.sep == "\\" or os.path.lexists(path):
        return path
    converted = resolve(written.replace("\\", "/"))
    return converted if os.path.lexists(converted) else path


def resolve_in_folder(written: str, folder: str | Path) -> str:
    """The file a list in ``folder`` names by ``written``: a relative path is read against ``folder`` when the file
    is there (a broken link counts: its error then names it), else as written (against the working directory); an
    absolute or empty one is kept. The rule of ``sdd score``'s manifests, shared by the ``utterance_table`` reader so
    that one table's relative paths name the same files whichever command reads it."""
    if not written or os.path.isabs(written):
        return written
    candidate = str(Path(folder) / written)  # Path("." / "a.wav") is "a.wav": spelled as written beside the cwd
    return candidate if os.path.lexists(candidate) else written


def list_audio_files(root: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Every audio file under ``root`` (recursively, symlinks followed), in a stable sorted order; files and
    folders whose name starts with ``.`` are skipped (``root`` itself may be one), and so is a video container
    beside an audio file of the same stem (:data:`VIDEO_EXTENSIONS`).

    A folder reached a second time through a symbolic link (a link loop, or two links to one folder)
    is listed only the first time: a loop would otherwise be walked until the path grows too long,
    listing its files again at every level. A folder that cannot be listed (no permission) raises
    ``ProtocolError``: its files would otherwise be left out without a word.
    """
    exts = {e.lower() for e in extensions}
    out: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=_unlistable, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:  # vanished while walking: os.walk lists nothing in it either
            dirnames.clear()
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        # hidden folders (.git, .ipynb_checkpoints, .Trash) hold copies or metadata, not recordings to score
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        listed = [n for n in sorted(filenames) if not n.startswith(".") and os.path.splitext(n)[1].lower() in exts]
        audio_stems = {os.path.splitext(n)[0] for n in listed if os.path.splitext(n)[1].lower() not in VIDEO_EXTENSIONS}
        out.extend(
            Path(dirpath) / n
            for n in listed
            if not (os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS and os.path.splitext(n)[0] in audio_stems)
        )
    return out


def _unlistable(exc: OSError) -> None:
    """os.walk's error hook for a folder it cannot list. One that is missing (or vanished while walking) or is a
    file holds nothing to list, as before."""
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return
    raise ProtocolError(
        f"{exc.filename}: cannot list the folder ({exc.strerror or exc}): the audio files in it would be left out"
    ) from None
