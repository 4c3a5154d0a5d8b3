"""Batch scoring of many files (``sdd score``): inputs, resumable outputs, shards.

Inputs: audio files, folders (searched recursively for audio extensions), and manifests: a
CSV/TSV with a ``path`` column (comma, tab or semicolon separated), a text file with one path per
line (or a path and other fields: ``a.wav bonafide``; UTF-8, or UTF-16 with a BOM), or a protocol file that
:func:`sddkit.data.protocols.read_protocol` understands. Relative paths in a manifest are taken
relative to the manifest's folder when they exist there, else as given.

Output: one row per file, CSV or JSONL (by the suffix of ``out``), with the columns
:func:`output_columns` lists. An unreadable file (or one the model answers with a NaN/inf score)
gets a row with an ``error`` and no score; it never stops the batch. Rows are appended and
flushed one by one (fsync every few seconds), so an interrupted run restarted with the same
``out`` skips every path already written; a partially written last line (the process died
mid-write) is cut off first. ``<out>.run.json`` records what the rows depend on (the model, identified by
its scores of a fixed probe, its inference settings, the columns, ``windows``): a resume (or a shard
merge) whose record differs is refused instead of mixing two models in one file. It also records the package
versions the rows were scored under (``versions``, as training's ``run.json``) and the git commit of sddkit's
source with its dirty flag (``git``, as ``run.json``'s; None outside a checkout, e.g. an installed wheel); neither is
compared, so a resume after an upgrade or under newer code goes on, and the record keeps the earlier runs' other
blocks (``earlier_versions``, ``earlier_git``).
It records too how windows of digital silence enter a file's score (``silent_windows``): an output of an sddkit
before 2026-12-06, which averaged them in (its record has no such key), is not resumed, as its rows and new ones
would score a file padded with silence two ways (under ``first`` aggregation, where no window is left out, it is).
While a run writes ``out`` it holds an flock on ``<out>.lock``, so a second run on the same output is refused.

Windows (``windows=True``): per-window scores go to a sidecar ``<out stem>.windows.csv``
(columns ``path,window,start_s,end_s,score``), or to a ``windows`` list in each JSONL row. A window's ``score`` is
the file's calibration applied to the window's raw score (``ScoreResult.window_scores``).

Shards: with ``WORLD_SIZE > 1`` (torchrun), rank ``r`` scores every ``WORLD_SIZE``-th path into
``<out>.rank<r>`` and marks it complete with ``<out>.rank<r>.done``; rank 0 then merges all
shards into ``out`` after a gloo barrier (or, without a process group, the last rank to finish
does). ``merge_shards(out)`` (``sdd score --merge``) merges complete shards by hand. The rows of every shard of an
earlier run stopped before its merge count as scored in a resume, whatever rank their files fall to now
(:func:`iter_whole_rows`); shards of ranks beyond ``WORLD_SIZE``, left by a run with more ranks
(:func:`stale_shards`), are merged too.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import re
import stat
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, BinaryIO

from sddkit.audio.files import AUDIO_EXTENSIONS, list_audio_files, resolve_written_path
from sddkit.data.protocols._common import header_fields, misspelt_columns
from sddkit.data.text import is_utf16_text, read_text, universal_line_ends
from sddkit.documents import recorded_base_dir, run_record_path
from sddkit.errors import ProtocolError, SddkitError
from sddkit.locks import ExclusiveLock
from sddkit.outputs import RowWriter, why_unwritable
from sddkit.scoring.api import PreparedAudio, ScoreResult, ScoringDetector, non_finite_reason
from sddkit.threads import in_order_ahead

BASE_COLUMNS: tuple[str, ...] = ("path", "score", "probability", "decision", "duration_s", "n_windows", "raw_score")
WINDOW_COLUMNS: tuple[str, ...] = ("path", "window", "start_s", "end_s", "score")
FSYNC_EVERY_S = 5.0
# A POSIX file name is bytes: one that is not UTF-8 (e.g. Latin-1) reaches Python with surrogates
# (os.fsdecode), which CSV output writes back as the original bytes and reads again as the same str.
# (JSONL needs nothing: json.dumps escapes them as \udcXX.)
_PATH_ERRORS = "surrogateescape"
# how outputs are read back (resume, merge): UTF-8, less a BOM a spreadsheet or editor put in front when it saved one
_OUTPUT_ENCODING = "utf-8-sig"


# --- inputs --------------------------------------------------------------------------------


def expand_inputs(
    inputs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    empty_folders: list[str] | None = None,
    skipped: list[str] | None = None,
    repeated: list[str] | None = None,
) -> list[str]:
    """Audio files, folders and manifests -> a de-duplicated list of audio paths, in input order.

    ``out``: the output being written; its own files (the output, its ``.run.json``, ``.lock``, ``.merge.lock``,
    windows sidecar and shards), which a glob such as ``sdd score clips/* --out clips/scores.csv`` names on a rerun
    (or with ``--merge``), are skipped (read as manifests they listed the files already scored, or failed as no
    manifest at all); ``skipped``, when given, gets those inputs.
    ``empty_folders``, when given, gets every folder input that lists no audio file (a mistyped folder, or one of
    recordings under suffixes no listing takes, e.g. ``.pcm``), which ``sdd score`` names rather than writing an
    empty output without a word. ``repeated``, when given, gets every path left out as a file listed already (its
    first spelling is kept)."""
    paths: list[str] = []
    own = _own_files(out) if out is not None else None
    for item in inputs:
        if isinstance(item, str) and not item.strip():
            # Path("") is ".": an unset shell variable ("$DIR") would score the whole current folder
            raise ProtocolError(f"an empty input name ({item!r}): name an audio file, folder or manifest")
        p = Path(item)
        if own is not None and own(p):
            if skipped is not None:
                skipped.append(str(item))
            continue
        try:
            is_dir, is_file = p.is_dir(), p.is_file()
        except OSError as exc:  # a name too long, an unsearchable folder: Path only hides "no such file"
            if p.suffix.lower() not in AUDIO_EXTENSIONS:
                raise ProtocolError(f"{p}: cannot access ({exc.strerror or exc})") from None
            is_dir = is_file = False  # an audio path: its row says why it cannot be read
        if is_dir:
            # every audio-named entry that is not a folder, linked subfolders included (each folder once, so a
            # link loop ends); a dangling link gets an error row, not silence about why a file is missing
            found = list_audio_files(p, AUDIO_EXTENSIONS)
            if not found and empty_folders is not None:
                empty_folders.append(str(item))
            paths.extend(str(f) for f in found)
        elif p.suffix.lower() in AUDIO_EXTENSIONS:
            paths.append(str(p))  # a missing audio file becomes an error row, not a failed run
        elif is_file and _is_text(p):
            paths.extend(read_manifest(p))
        elif is_file:  # binary under an unlisted name (.pcm, .dat, none): audio, whose row says if it is not
            paths.append(str(p))
        elif is_pipe(p):
            # a list piped in: `sdd score <(find in -name '*.wav')`, `... | sdd score /dev/stdin` (refused as "no
            # such file or folder" before, of a name that exists)
            paths.extend(read_manifest(p))
        elif p.exists():  # /dev/null, a socket: it is there, so "no such file" misled
            raise ProtocolError(f"{p}: not a regular file, folder or pipe; name an audio file, folder or manifest")
        elif str(item) == "-":  # the usual "read standard input": a list piped in is named /dev/stdin here
            raise ProtocolError("-: no such file or folder; a list of paths piped in is read as /dev/stdin")
        else:
            raise ProtocolError(f"{p}: no such file or folder")
    # one row per file: the same file spelled twice ("a.wav", "./a.wav", absolute) keeps its first spelling
    unique: dict[str, str] = {}
    for path in paths:
        key = os.path.abspath(path)
        if key in unique and repeated is not None:
            repeated.append(path)
        unique.setdefault(key, path)
    return list(unique.values())


def _own_files(out: str | Path) -> Callable[[Path], bool]:
    """Whether a path is one of the files ``sdd score --out out`` writes (see :func:`expand_inputs`)."""
    out = Path(os.path.abspath(out))
    windows = os.path.abspath(windows_path(out))
    # the merge lock: left by a rank killed while merging shards
    names = {str(out), str(run_record_path(out)), str(lock_path(out)), str(merge_lock_path(out)), windows}
    shards = (f"{out}.rank", f"{windows}.rank")  # shard_path(out, r) and its sidecar, r = 0, 1, ...

    def own(path: Path) -> bool:
        full = os.path.abspath(path)
        return full in names or full.startswith(shards)

    return own


def is_pipe(path: Path) -> bool:
    """Whether ``path`` is a pipe (a named one, or a shell's ``<(...)`` and ``/dev/stdin`` fed by one)."""
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


def _is_text(path: Path) -> bool:
    """Whether a file reads as text (no NUL byte in its first 8 KiB): a manifest, not audio. Every audio
    container has NULs in its header (RIFF sizes, MP3/MP4 boxes and frames, FLAC/Ogg blocks)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError:
        return True  # read_manifest says why it cannot be read
    return b"\0" not in head or is_utf16_text(head)


def read_manifest(path: Path) -> list[str]:
    """Paths listed by a CSV/TSV with a ``path`` column, a protocol file, or a one-path-per-line text."""
    try:  # UTF-8 (non-UTF-8 paths survive), or UTF-16 after its BOM: a list written by Windows PowerShell
        # line ends as written: a pipe is read once, and the CSV reader needs the "\r" of a quoted path
        raw = read_text(path, keep_line_ends=True)
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{path}: not a readable UTF-16 manifest ({exc.reason} at byte {exc.start})") from None
    text = universal_line_ends(raw)
    if "\0" in text and is_pipe(path):  # a file's first bytes were looked at already (_is_text): audio is named
        # audio piped in (`sdd score <(ffmpeg ... -f wav -)`): else its bytes were listed as paths, "lines like
        # 'RIFF$\udcfa\x00...' are not audio paths"
        raise ProtocolError(
            f"{path}: binary data (audio?) piped in, where a pipe is read as a list of paths; "
            "write the audio to a file and name that file"
        )
    first = text.split("\n", 1)[0]
    base = _written_from(path)  # an sdd score output: its relative paths are relative to where it was written
    rows = _json_lines_paths(text, path)
    if rows is not None:  # sdd score's JSONL output, to score its files again with another model
        if not rows:
            raise ProtocolError(f"{path}: the JSON lines list no paths")
        return [_resolve(path, p, base) for p in rows]
    unnamed: str | None = None  # a table's column of audio paths that is not named 'path'
    # a one-column "path" header heads a CSV whatever the file's name (else "path" was listed as a file)
    if path.suffix.lower() in (".csv", ".tsv") or any(d in first for d in ",\t;") or first.strip() == "path":
        delimiter = _delimiter(first)
        # the text as written: with its line ends made "\n", a path holding a "\r" (which sdd score's CSV output
        # quotes) was listed with a "\n" in its place, a file that does not exist
        reader = csv.DictReader(io.StringIO(raw, newline=""), delimiter=delimiter)
        names = [f.strip() for f in reader.fieldnames or []]
        if "path" in names:
            if names.count("path") > 1:
                raise ProtocolError(f"{path}: the header names 'path' {names.count('path')} times; keep one")
            rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in reader]
            listed = [_resolve(path, r["path"].strip(), base) for r in rows if (r.get("path") or "").strip()]
            if not listed:
                raise ProtocolError(f"{path}: the manifest's 'path' column lists no paths")
            return listed
        unnamed = _audio_column(raw, delimiter)
    # a pipe, read once already, holds nothing more for a protocol reader to read
    table = _try_protocol(path) if path.is_file() else None
    if table is not None:
        return [_resolve(path, p) for p in table.column("path") if p]
    lines = [ln.strip() for ln in text.splitlines()]
    listed = [ln for ln in lines if ln and not ln.startswith("#")]
    if not listed:
        raise ProtocolError(f"{path}: the manifest lists no paths")
    for ln in listed:
        if ln.endswith("|") and not os.path.lexists(_resolve(path, ln)):
            # a Kaldi wav.scp "extended filename" (`utt001 sox a.sph -t wav - |`): a command, never run here
            raise ProtocolError(
                f"{path}: the line {ln!r} is a command whose output Kaldi reads (it ends with '|'); sddkit runs no "
                "commands from a manifest: decode the audio to files and list those"
            )
    # a whole line (a path may hold spaces: "My Recordings/a.wav"), its first field or the rest (a Kaldi wav.scp
    # line, "utt001 /data/a.wav") names an audio file
    bad = [
        ln
        for ln in listed
        if {Path(ln).suffix.lower(), *(Path(f.strip()).suffix.lower() for f in ln.split(maxsplit=1))}.isdisjoint(
            AUDIO_EXTENSIONS
        )
    ]
    if bad and len(bad) == len(listed):
        raise ProtocolError(
            f"{path}: not a manifest sddkit understands (no 'path' column, not a known protocol, "
            f"and lines like {bad[0]!r} are not audio paths){_path_typo(first)}"
        )
    if unnamed is not None:
        # else each whole line was listed, the header too, where a line ends like an audio name (its path in the
        # last column, "spoof,clips/a.wav"): every row an error "no such file", exit 1
        raise ProtocolError(
            f"{path}: a table without a 'path' column, whose {unnamed!r} column holds audio paths: name that "
            "column 'path' in the header (or list one path per line)"
        )
    return [_list_entry(path, ln) for ln in listed]


def _audio_column(raw: str, delimiter: str) -> str | None:
    """The header name of the column of a table (``raw``, cells separated by ``delimiter``) that holds audio paths,
    when the table has a header (its first line, not a ``#`` comment, names no audio file) and every other line
    has as many cells as it: ``label,file`` over ``spoof,clips/a.wav``. None for anything else (a list of paths, a
    headerless table)."""
    reader = csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter)
    cells = (row for row in reader if any(c.strip() for c in row))
    header = next(cells, [])

    def audio(cell: str) -> bool:
        return Path(cell.strip()).suffix.lower() in AUDIO_EXTENSIONS

    if len(header) < 2 or header[0].lstrip().startswith("#") or any(audio(h) for h in header):
        return None  # (before the rest is read: a long list named .csv has no header)
    rows = list(cells)
    if not rows or any(len(r) != len(header) for r in rows):
        return None
    found = [i for i in range(len(header)) if any(audio(r[i]) for r in rows)]
    return header[found[0]].strip() if found else None


def _path_typo(header: str) -> str:
    """``; is 'pth' meant to be 'path'? ...`` when a field of a CSV-like first line is close to ``path``: a misspelt
    header is the usual reason a hand-written manifest has no ``path`` column."""
    fields, separator = header_fields(header)
    return misspelt_columns(["path"], fields) if separator is not None else ""


def _json_lines_paths(text: str, path: Path) -> list[str] | None:
    """The ``path`` of every line of ``text`` (read from ``path``) when each is a JSON object holding one (``sdd
    score``'s JSONL output); None when ``text`` is no such JSON lines. A ``ProtocolError`` when only the last line
    is not JSON (an output cut short by a crash)."""
    lines = [(n, ln) for n, ln in enumerate(text.split("\n"), 1) if ln.strip()]
    if not lines or not lines[0][1].lstrip().startswith("{"):
        return None
    paths = []
    for i, (lineno, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except ValueError:
            if i == len(lines) - 1 and line.lstrip().startswith("{"):
                # every line before it a row: sdd score's output cut short by a crash while it wrote its last row,
                # which was read as a CSV and refused as "not a manifest sddkit understands"
                if text.endswith(line):  # no newline after it: a write cut short, which a resume cuts off
                    advice = (
                        f"an sdd score output whose run was stopped while writing it? Run that sdd score again "
                        f"with --out {path} to complete it (the cut row is scored again), or remove the line"
                    )
                    raise ProtocolError(
                        f"{path}: JSON lines whose last line (line {lineno}) is incomplete, cut short ({advice})"
                    ) from None
                raise ProtocolError(
                    f"{path}: JSON lines whose last line (line {lineno}) is not complete JSON: mend or remove it"
                ) from None
            return None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            return None
        if row["path"].strip():
            paths.append(row["path"])
    return paths


def _delimiter(header: str) -> str:
    """The delimiter of a CSV manifest: the one that makes a ``path`` field of its ``header`` (``,``, tab, or the
    ``;`` of a CSV that a spreadsheet saved in a locale whose decimal mark is a comma), else as before: tab when
    the header holds tabs but no comma, else comma. (Read with commas, the ``"path";"score"`` manifest of such a
    spreadsheet, whose numbers hold commas, listed its header and every line as files that do not exist.)"""
    for d in (",", "\t", ";"):
        if d in header and "path" in (f.strip().strip('"') for f in header.split(d)):
            return d
    return "\t" if "\t" in header and "," not in header else ","


def _list_entry(manifest: Path, line: str) -> str:
    """The path a list line names: the whole line when it exists (a path may hold spaces: ``My Recordings/a.wav``);
    else its first field when that is an existing audio file (``a.wav bonafide``, ``a.wav 3.2``); else the rest of
    the line after its first field when that is one (a Kaldi ``wav.scp`` line, ``utt001 /data/a.wav``); else, for
    a file that exists nowhere (its error row names it), that rest when it is an absolute audio path after a first
    field that is no audio name (a wav.scp line), the whole line when it is an audio name, then the first field
    when that is one, then the whole line."""
    whole = _resolve(manifest, line)
    fields = line.split(maxsplit=1)
    if len(fields) == 1 or os.path.lexists(whole):
        return whole
    first, rest = (_resolve(manifest, f.strip()) for f in fields)
    for named, field in ((first, fields[0]), (rest, fields[1])):
        if Path(field).suffix.lower() in AUDIO_EXTENSIONS and os.path.lexists(named):
            return named
    if (
        Path(fields[0]).suffix.lower() not in AUDIO_EXTENSIONS
        and Path(fields[1]).suffix.lower() in AUDIO_EXTENSIONS
        and (os.path.isabs(fields[1]) or PureWindowsPath(fields[1]).is_absolute())
    ):
        # a wav.scp line whose file is missing (`utt001 /data/a.wav`, its disk not mounted): its error row names
        # /data/a.wav, not 'utt001 /data/a.wav' (as a whole line, a folder 'utt001 ' no one names)
        return rest
    if Path(line).suffix.lower() in AUDIO_EXTENSIONS:
        return whole
    return first if Path(fields[0]).suffix.lower() in AUDIO_EXTENSIONS else whole


def _try_protocol(path: Path):
    """The utterance table of a protocol file, or None when no reader recognises it."""
    try:
        from sddkit.data.protocols import read_protocol
        from sddkit.data.protocols.detect import MailabsBookError
    except ImportError:
        return None
    try:
        try:
            return read_protocol(path)
        except MailabsBookError:
            # refused by format detection for its labels (an M-AILABS book read as LJSpeech); a manifest needs only
            # its files, which the LJSpeech reader lists (else "not a known protocol" was said of it)
            return read_protocol(path, format="ljspeech")
    except SddkitError:
        return None


def _resolve(manifest: Path, entry: str, written_from: Path | None = None) -> str:
    """``entry`` as listed by ``manifest``: a relative path is read against ``written_from`` (the folder an sdd score
    output's rows were written from, :func:`_written_from`) when the file is there, else against the manifest's
    folder when the file is there, else as given (against the working directory). A path written on Windows
    (``audio\\x.wav``) that exists nowhere as given, where its form with forward slashes does, is that file, as the
    ``labels_csv`` protocol reads it (on POSIX a backslash is part of a file name, so one that exists is kept)."""
    # the same CSV read as a protocol by sdd eval/calibrate/robustness found these files; as a manifest every row
    # was 'no such file' and sdd score exited 1
    return resolve_written_path(entry, lambda e: _resolve_as_written(manifest, e, written_from))


def _resolve_as_written(manifest: Path, entry: str, written_from: Path | None = None) -> str:
    """:func:`_resolve` without the Windows-separator fallback."""
    p = Path(entry)
    if p.is_absolute():
        return entry
    for folder in (written_from, manifest.parent):
        try:
            # lexists: a broken link there is that file ("a broken symbolic link"), not a missing one elsewhere
            if folder is not None and os.path.lexists(folder / p):
                # spelled as given when that folder is the working directory: the new output lists it as the old one
                return entry if os.path.samefile(folder, ".") else str(folder / p)
        except OSError:  # e.g. a name too long: the entry as given, whose row will say why
            return entry
    return entry


def _written_from(manifest: Path) -> Path | None:
    """The working directory an sdd score output's relative paths are relative to (``cwd`` in its run record):
    scoring an output's files again with another model from another folder found none of them."""
    cwd = recorded_base_dir(manifest)
    return Path(cwd) if cwd else None


# --- output files --------------------------------------------------------------------------


def output_format(out: str | Path) -> str:
    """'jsonl' for ``*.jsonl`` (also inside shard names like ``x.jsonl.rank0``), else 'csv'."""
    name = _unsharded_name(Path(out).name).lower()
    return "jsonl" if name.endswith(".jsonl") else "csv"


# the suffix shard_path adds: only ".rank<digits>" at the end, not a ".rank" inside a name ("scores.ranked.csv")
_SHARD_SUFFIX = re.compile(r"\.rank\d+$")


def _unsharded_name(name: str) -> str:
    """A file name without the ``.rank<r>`` that :func:`shard_path` adds, when it has one."""
    return _SHARD_SUFFIX.sub("", name)


def windows_path(out: str | Path) -> Path:
    """The per-window sidecar of a CSV output: ``scores.csv`` -> ``scores.windows.csv``."""
    out = Path(out)
    base = _unsharded_name(out.name)
    rank = out.name[len(base) :]  # keep shard suffixes at the end
    stem = base[: -len(".csv")] if base.lower().endswith(".csv") else base
    return out.with_name(f"{stem}.windows.csv{rank}")


def output_columns(weight_columns: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *weight_columns, "error"]


def repair_partial_line(path: Path) -> None:
    """Cut a last line without its newline (a write interrupted mid-row).

    In CSV a quoted field (a path) may hold newlines, so the cut goes after the last newline that
    is outside quotes (an even number of ``"`` before it), which ends the last whole record.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    # read in chunks, never whole: an output of a million rows is about 100 MB
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        cut = _whole_records_end(f, size, output_format(path))
        if cut != size:
            f.truncate(cut)


def _whole_records_end(f: BinaryIO, size: int, fmt: str) -> int:
    """The offset where the last whole record of an output file (``fmt``, ``size`` bytes) ends: after its last
    newline, in CSV the last one outside quotes."""
    cut = _after_last_newline(f, size)
    if fmt == "csv":
        quotes = _count_quotes(f, 0, cut)
        while cut > 0 and quotes % 2:
            earlier = _after_last_newline(f, cut - 1)
            quotes -= _count_quotes(f, earlier, cut)
            cut = earlier
    return cut


def iter_whole_rows(path: Path) -> Iterator[Any]:
    """:func:`iter_rows` of the whole records only, the file left as it is: a shard that its rank may be appending to
    right now, or one that a rank stopped mid-row left with a row cut short (which the merge cuts off; read as it
    was, a CSV row cut after its path counted as scored, and a JSONL one was "not a JSON line")."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        end = _whole_records_end(f, f.seek(0, os.SEEK_END), output_format(path))
        f.seek(0)

        def lines() -> Iterator[str]:
            at = 0
            while at < end:
                raw = f.readline(end - at)
                if not raw:
                    break
                text = raw.decode("utf-8", errors=_PATH_ERRORS)
                yield text[1:] if at == 0 and text.startswith("\ufeff") else text
                at += len(raw)

        yield from _parse_rows(path, lines())


_CHUNK = 1 << 20


def _after_last_newline(f: BinaryIO, end: int) -> int:
    """The offset just after the last ``\n`` before ``end`` (0 when there is none), read backwards in chunks."""
    while end > 0:
        start = max(0, end - _CHUNK)
        f.seek(start)
        at = f.read(end - start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def _count_quotes(f: BinaryIO, start: int, end: int) -> int:
    """How many ``"`` bytes ``f`` holds in [start, end)."""
    f.seek(start)
    n = 0
    while start < end:
        chunk = f.read(min(_CHUNK, end - start))
        if not chunk:
            break
        n += chunk.count(b'"')
        start += len(chunk)
    return n


def read_header(path: Path) -> list[str] | None:
    """The CSV header of an output file (``[]`` when the file is empty); None for JSONL or a missing file."""
    if not path.is_file() or output_format(path) == "jsonl":
        return None
    # utf-8-sig: an output a spreadsheet or editor saved again with a BOM ("CSV UTF-8") was refused as written
    # "with other columns", naming the very columns this model writes (the BOM invisible in front of "path")
    with open(path, newline="", encoding=_OUTPUT_ENCODING, errors=_PATH_ERRORS) as f:
        return next(csv.reader(f), [])


def iter_rows(path: Path) -> Iterator[Any]:
    """The rows of an output file written by :class:`ScoreWriter` (CSV: dicts; JSONL: each line's JSON value),
    one at a time: resuming a run of a million files does not hold its rows in memory."""
    if not path.is_file():
        return
    if output_format(path) == "jsonl":
        with open(path, encoding=_OUTPUT_ENCODING) as f:
            yield from _parse_rows(path, f)
        return
    with open(path, newline="", encoding=_OUTPUT_ENCODING, errors=_PATH_ERRORS) as f:
        yield from _parse_rows(path, f)


def _parse_rows(path: Path, lines: Iterable[str]) -> Iterator[Any]:
    """The rows of the text ``lines`` of output file ``path`` (CSV: dicts; JSONL: each line's JSON value)."""
    if output_format(path) == "csv":
        yield from csv.DictReader(lines)
        return
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"{path}:{lineno}: not a JSON line ({exc}); fix or remove it") from None


def has_rows(path: Path) -> bool:
    """Whether an output file holds at least one row."""
    rows = iter_rows(path)
    try:
        return next(rows, None) is not None
    finally:
        rows.close()


def read_rows(path: Path) -> tuple[list[str] | None, list[dict[str, Any]]]:
    """(CSV header or None for JSONL, rows) of an output file written by :class:`ScoreWriter`."""
    return read_header(path), list(iter_rows(path))


def run_info(detector: ScoringDetector, *, windows: bool = False) -> dict[str, Any]:
    """What an output's rows depend on, so that a resume never mixes two models or two settings.

    The model is identified by its raw scores of a fixed probe signal (the same weights give the same
    scores on any backend or device, up to rounding; other weights do not), plus its inference settings
    (windows, calibration, threshold, aggregation) and whether per-window scores are written.
    """
    import math

    import numpy as np

    cfg = detector.inference
    rng = np.random.default_rng(20240611)
    probe = (0.1 * rng.standard_normal((2, cfg.window_samples))).astype(np.float32)
    logits = np.asarray(detector.runner(probe)[0], dtype=np.float64)
    raw = (logits[:, 1] - logits[:, 0]).tolist() if logits.shape == (2, 2) else []
    run = {
        "model": str(detector.info.get("path", "")),  # for messages only: a model may move
        "weights_digest": detector.info.get("weights_digest"),  # which weights scored (see run_differences)
        "inference": json.loads(json.dumps(cfg.to_dict())),
        "windows": bool(windows),
        "probe": [float(v) if math.isfinite(v) else None for v in raw],
        # how a file's score treats windows of digital silence: sddkit before 2026-12-06 averaged them in (a record
        # without this key), so an older output's rows and this run's differ for a file with silent windows
        "silent_windows": SILENT_WINDOWS,
    }
    experts = (detector.info.get("components") or {}).get("experts")
    if experts:  # a mixture: what its gate_w<i> / expert_score<i> columns are (sdd eval names its tables so)
        run["expert_names"] = [str(e["name"]) for e in experts]
    return run


# run_info's "silent_windows": windows of digital silence are left out of a file's score (scoring.api, all
# aggregations but "first"); a run record without the key was written by an sddkit that averaged them in
SILENT_WINDOWS = "left_out"


def _silence_rule(record: dict[str, Any]) -> str | None:
    """How the run of ``record`` scored windows of digital silence: ``"left_out"``, ``"averaged_in"`` (an older
    sddkit's record, which has a probe but no ``silent_windows``), None for a hand-made record saying neither."""
    inference = record.get("inference")
    if isinstance(inference, dict) and inference.get("aggregation") == "first":
        return None  # the first window alone decides, silent or not: no rule applies, in either version
    if "silent_windows" in record:
        return str(record["silent_windows"])
    return "averaged_in" if "probe" in record else None


def run_differences(earlier: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Which parts of two :func:`run_info` records differ (empty: the same run)."""
    diffs = [k for k in ("columns", "inference", "windows") if k in earlier and k in now and earlier[k] != now[k]]
    rules = _silence_rule(earlier), _silence_rule(now)
    if None not in rules and rules[0] != rules[1]:
        # the same model scores a file padded with silence otherwise under the two rules: one output would hold
        # rows of both (a resume after an upgrade went on, and the same audio got two scores)
        diffs.append("silent_windows")
    # Two digests that differ are two sets of weights, however alike their probe scores (two checkpoints of one
    # run score the probe within its tolerance). Equal digests do not prove one model (a directory that leaves
    # its pretrained encoder out digests only the rest), so the probe still decides then.
    d1, d2 = earlier.get("weights_digest"), now.get("weights_digest")
    if d1 and d2 and d1 != d2:
        return [*diffs, "model weights"]
    a, b = earlier.get("probe"), now.get("probe")
    if a and b:
        # a non-finite probe score (None) matches only another None: a model answering NaN on the probe is
        # still told apart from one that does not
        close = len(a) == len(b) and all(
            (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= 1e-2 * (1.0 + abs(y)))
            for x, y in zip(a, b)
        )
        if not close:
            diffs.append("model weights")
    return diffs


def check_run_info(out: str | Path, run: dict[str, Any]) -> None:
    """Refuse to add rows of ``run`` to ``out`` when its recorded run (``out.run.json``) differs."""
    earlier = _read_run_info(out, f"remove it to resume {out}")
    if earlier is not None:  # None: written before runs were recorded, or by hand: nothing to compare with
        _refuse_another_run(out, earlier, run)


def check_shard_run_info(shard: str | Path, run: dict[str, Any], target: str | Path) -> None:
    """Refuse to count the rows of ``shard`` (another shard of the output ``target``, this rank's shard, is merged
    into) as scored when its run record differs from ``run``: the merge would refuse to mix them, after this rank
    had scored its share (two ranks started with different models, or a resume with another one)."""
    earlier = _read_run_info(shard, "cannot merge")
    diffs = [] if earlier is None else run_differences(earlier, run)
    if diffs:
        raise ProtocolError(
            f"{shard} and {target} were scored by different runs ({', '.join(diffs)} differ); merging would mix "
            "them: give every rank the model and settings of that run, or choose another --out"
        )


def _refuse_another_run(out: str | Path, earlier: dict[str, Any], run: dict[str, Any]) -> None:
    """The check of :func:`check_run_info` against a run record already read."""
    path = run_record_path(out)
    diffs = run_differences(earlier, run)
    if diffs:
        details = "; ".join(
            change
            for k in diffs
            if k not in ("model weights", "silent_windows")
            for change in _changes(k, earlier.get(k), run.get(k))
        )
        if "silent_windows" in diffs:
            details = "; ".join(filter(None, [silent_windows_change(earlier, run), details]))
        if "model weights" in diffs:
            details = "; ".join(
                filter(None, [f"the model differs (earlier {earlier.get('model')}, now {run.get('model')})", details])
            )
        raise ProtocolError(
            f"{out} holds rows of another scoring run ({details}); resuming would mix them: "
            f"choose another --out, or delete {Path(out).name} and {path.name} to start over"
        )


def silent_windows_change(earlier: dict[str, Any], now: dict[str, Any]) -> str:
    """The ``silent_windows`` difference of two run records in words, naming the sddkit that wrote the earlier."""
    said = {
        "averaged_in": "averaged windows of digital silence into a file's score (sddkit before 2026-12-06)",
        SILENT_WINDOWS: "leaves windows of digital silence out of a file's score",
    }
    before, after = (_silence_rule(r) for r in (earlier, now))
    return (
        f"the earlier run {said.get(str(before), repr(before))}, this one "
        f"{said.get(str(after), repr(after))}: a file padded with silence would get "
        "another score than the earlier rows' files; score every file again with this sddkit"
    )


def _changes(key: str, earlier: Any, now: Any) -> list[str]:
    """``key: earlier X, now Y`` for each leaf that differs, dotted into dicts: another calibration named the
    whole ``inference`` section twice, windows, hop and aggregation that had not changed among them."""
    if isinstance(earlier, dict) and isinstance(now, dict):
        keys = [*earlier, *(k for k in now if k not in earlier)]
        # a key one record lacks is told from one it holds as None (a setting added since the earlier run): by
        # .get() they read alike, and the error listed no change at all, "another scoring run ()"
        return [
            change
            for k in keys
            if (k in earlier) != (k in now) or earlier[k] != now[k]
            for change in _changes(f"{key}.{k}", earlier.get(k, _ABSENT), now.get(k, _ABSENT))
        ]
    return [f"{key}: earlier {earlier!r}, now {now!r}"]


class _Absent:
    def __repr__(self) -> str:
        return "(not recorded)"


_ABSENT = _Absent()  # a key a run record lacks, as _changes shows it


def _read_run_info(out: str | Path, remedy: str) -> dict[str, Any] | None:
    """``out``'s run record, None when it has none; an unreadable one is a ProtocolError naming ``remedy``."""
    path = run_record_path(out)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"{path}: unreadable run record ({exc}); {remedy}") from None


def check_writable(out: str | Path) -> None:
    """Refuse, in one line and before any model loads, an output that cannot be created or appended to
    (its folder is a file or read-only, its name too long); leaves nothing behind."""
    reason = why_unwritable(out)
    if reason is not None:
        raise ProtocolError(f"cannot write {out}: {reason}")


def recorded_cwd(out: str | Path) -> str | None:
    """The folder the relative paths of ``out``'s rows are relative to (``cwd`` in its run record), None when it
    holds no rows or records none."""
    if not has_rows(Path(out)):
        return None
    run = _read_run_info(out, f"remove it to resume {out}") or {}
    return str(run["cwd"]) if run.get("cwd") else None


def write_run_info(out: str | Path, run: dict[str, Any]) -> None:
    from sddkit.detectors.model_dir import atomic_write_bytes

    atomic_write_bytes(run_record_path(out), (json.dumps(run, indent=1) + "\n").encode())


def lock_path(out: str | Path) -> Path:
    """The lock file of a run writing ``out`` (:class:`OutputLock`)."""
    return Path(f"{out}.lock")


def merge_lock_path(out: str | Path) -> Path:
    """The lock file of the rank merging ``out``'s shards."""
    return Path(f"{out}.merge.lock")


class OutputLock(ExclusiveLock):
    """An exclusive lock on ``out`` (``out.lock``): a second run writing the same file is refused."""

    def __init__(self, out: str | Path):
        super().__init__(
            lock_path(out),
            ProtocolError(
                f"{out} is being written by another sdd score run (it holds {lock_path(out).name}); "
                "wait for it to finish, or choose another --out"
            ),
        )


# The limit an AudioTooLongError names ("over max_duration 2.0 s", "exceeds max_duration 2 s", "longer than
# max_duration 2.0 s"): what an error row's file was refused at, so that a rerun with a larger --max-duration-s scores
# it again (the row's own hint tells to raise the limit; the rerun skipped the row as done, exit 0, without a word)
_REFUSED_LIMIT = re.compile(r"(?:over|exceeds|longer than) max_duration (\S+) s\b")


def refused_limit(error: object) -> float | None:
    """The ``max_duration`` (seconds) an output row's ``error`` refused its file at as too long; None when the error
    is of another kind (or there is none)."""
    found = _REFUSED_LIMIT.findall(error) if isinstance(error, str) else []
    try:
        return float(found[-1]) if found else None  # the last: the path in front of the message may hold the words
    except ValueError:
        return None


def rescored(row: dict[str, Any], retry_errors: bool, limit: float | None) -> bool:
    """Whether a run scores ``row``'s file again instead of skipping it as done: an error row under ``retry_errors``,
    or one refused as longer than a limit below ``limit`` (this run's ``max_duration``; ``math.inf``: no limit;
    None: such rows are kept)."""
    error = row.get("error")
    if not error:
        return False
    refused_at = refused_limit(error) if limit is not None else None
    return retry_errors or (refused_at is not None and refused_at < limit)


class ScoreWriter:
    """Appends result rows to a CSV/JSONL file (and the windows sidecar); resumable.

    ``done`` holds the absolute paths of the rows already present when the writer was opened. A relative
    path in a row is relative to the folder of the output's first run (``cwd`` in its run record), so a
    restart from another folder still skips what is written, and its own relative paths are written
    relative to that folder too (one base per file; ``base``, when given, is that folder for a file that holds no
    rows yet: a shard takes the one of the output it is merged into). With ``retry_errors`` the rows of ``retry_inputs``
    (all rows when None) that hold an error are first removed from the file (atomically), so those
    files count as not done; error rows of other files stay. ``retry_below_limit`` (None: off) does the same for the
    rows of ``retry_inputs`` whose file was refused as longer than a limit below it (this run's ``max_duration``,
    ``math.inf`` for none): a rerun that raises the limit scores them (``retried_too_long`` counts them).
    ``retry_inputs`` are this run's inputs, relative paths read against the working directory.
    With ``windows`` (CSV), the scored rows of ``retry_inputs`` whose windows the sidecar lacks are removed and scored
    again too (``windows_rescored`` counts them; ``windows_missing_kept`` counts such rows of other files, kept).
    ``lock``: the :class:`OutputLock` of ``out``, taken already (``sdd score`` takes it before the model loads; one
    that locked nothing, taken before out's folder existed, is taken again once the writer has made the folder); the
    writer releases it when it closes or fails to open, as it does the lock it takes itself when none is given.
    """

    def __init__(
        self,
        out: str | Path,
        columns: Sequence[str],
        *,
        windows: bool = False,
        retry_errors: bool = False,
        retry_inputs: Collection[str] | None = None,
        run: dict[str, Any] | None = None,
        base: str | None = None,
        lock: OutputLock | None = None,
        retry_below_limit: float | None = None,
    ):
        self.out = Path(out)
        self.columns = list(columns)
        self.format = output_format(self.out)
        self.windows = windows
        self._failed: ProtocolError | None = None
        if self.out.is_dir():
            if lock is not None:
                lock.release()
            raise ProtocolError(f"{self.out} is a folder; name a .csv or .jsonl file to write")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            if lock is not None and not lock.held:
                # taken by the caller before out's folder existed, it locked nothing (sdd score makes the folder
                # first): taken again now that the folder is there, else a second run into it was not refused
                lock.release()
                lock = None
            self._lock = lock if lock is not None else OutputLock(self.out)
        except OSError as exc:
            if lock is not None:
                lock.release()
            raise ProtocolError(f"cannot write {self.out}: {exc.strerror or exc}") from None
        try:
            self._open(retry_errors, retry_inputs, run, base, retry_below_limit)
        except OSError as exc:
            self._lock.release()
            raise ProtocolError(f"cannot write {self.out}: {exc.strerror or exc}") from None
        except BaseException:
            self._lock.release()
            raise

    def _open(
        self,
        retry_errors: bool,
        retry_inputs: Collection[str] | None,
        run: dict[str, Any] | None,
        base: str | None,
        retry_below_limit: float | None = None,
    ) -> None:
        repair_partial_line(self.out)
        header = read_header(self.out)
        if header is not None and header and header != self.columns:
            sep = next((d for d in (";", "\t") if len(header) == 1 and header[0].split(d) == self.columns), None)
            if sep is not None:  # these very columns, saved again by a spreadsheet: "other columns" misled
                raise ProtocolError(
                    f"{self.out} was saved again with {sep!r} between its columns (as a spreadsheet saves a CSV in a "
                    "locale whose decimal mark is a comma), not ',': save it comma-separated to resume it, or choose "
                    "another --out"
                )
            raise ProtocolError(
                f"{self.out} was written with other columns ({','.join(header)}); "
                f"this model writes {','.join(self.columns)}: choose another --out"
            )
        rows = has_rows(self.out)
        earlier = _read_run_info(self.out, f"remove it to resume {self.out}") if rows else None
        # rows no run record covers (its .run.json deleted, or the output copied without it): nothing tells which
        # model scored them, and the record written now claims them for this one (sdd score says so)
        self.unrecorded = rows and earlier is None and run is not None
        self.base = str((earlier or {}).get("cwd") or base or os.getcwd())
        try:
            self._same_base = os.path.samefile(self.base, os.getcwd())
        except OSError:  # the first run's folder is gone: its relative rows cannot be matched anyway
            self._same_base = self.base == os.getcwd()
        # this run's inputs are relative to the working directory (as score_files reads them), not to the base of
        # the rows: read against the base, a --retry-errors rerun from another folder retried none of its error rows
        retry = None if retry_inputs is None else {os.path.abspath(p) for p in retry_inputs}

        def retried(r: dict[str, Any]) -> bool:  # an error row that this run removes and scores again
            return rescored(r, retry_errors, retry_below_limit) and (
                retry is None or self.absolute(r.get("path")) in retry
            )

        # one pass over the rows, keeping only their paths
        self.done: set[str] = set()
        # the done rows that hold a score, whose windows a CSV sidecar must hold (only then: a set as large as done)
        scored: set[str] | None = set() if self.windows and self.format == "csv" else None
        dropped = False
        self.retried_too_long = 0
        for r in iter_rows(self.out):
            if header is None:
                self._check_json_row(r)
            if retried(r):
                dropped = True
                if not retry_errors:
                    self.retried_too_long += 1
            elif r.get("path"):
                key = self.absolute(r.get("path"))
                self.done.add(key)
                if scored is not None and not r.get("error"):
                    scored.add(key)
        # scored rows whose windows the sidecar lacks (deleted, or replaced, between runs): scored again, else the
        # resumed sidecar held the windows of the new rows only, and nothing said the others were missing
        lacking = self._without_windows(scored)
        if retry is not None:  # only this run's inputs: the rows of other files, dropped, would not come back
            self.windows_missing_kept = len(lacking - retry)
            lacking &= retry
        else:
            self.windows_missing_kept = 0
        self.windows_rescored = len(lacking)
        self.done -= lacking
        self.versions_changed: list[str] = []  # packages upgraded since the output's earlier run
        self.git_changed: str | None = None  # "<earlier> -> <now>" when the code changed since the earlier run
        if run is not None:
            from sddkit.training.provenance import (
                changed_git,
                changed_versions,
                earlier_blocks,
                git_commit,
                package_versions,
            )

            run = {**run, "columns": self.columns, "cwd": self.base, "versions": package_versions()}
            run["git"] = git_commit()  # which code scored: the version alone is the same for every commit
            if earlier is not None:  # (read above: rows are there)
                _refuse_another_run(self.out, earlier, run)
                run.update(earlier_blocks(earlier, "versions", run["versions"]))
                run.update(earlier_blocks(earlier, "git", run["git"]))
                self.versions_changed = changed_versions(earlier.get("versions"), run["versions"])
                self.git_changed = changed_git(earlier, run["git"])
            write_run_info(self.out, run)  # before any row, so every row is covered by it
        if dropped or lacking:
            _rewrite_kept(self.out, header, lambda r: not retried(r) and self.absolute(r.get("path")) not in lacking)
        self._sidecar = None
        if self.windows and self.format == "csv":
            self._sidecar = self._open_sidecar(windows_path(self.out))
        self._f = open(self.out, "a", newline="", encoding="utf-8", errors=_PATH_ERRORS)
        self._csv = RowWriter(self._f) if self.format == "csv" else None
        if self._csv is not None and self._f.tell() == 0:
            self._csv.writerow(self.columns)
            self._f.flush()
        self._last_sync = time.monotonic()
        self.rows_written = 0

    def _check_json_row(self, row: Any) -> None:
        """Refuse a JSONL output's row that this run would not write: JSON lines of another tool, or rows of other
        fields (another system's ``path``/``score`` lines, an ``sdd fuse`` output, another model's statistics), as a
        CSV output of other columns is refused (they were appended to, the file a mix of two kinds of rows)."""
        if not isinstance(row, dict) or "path" not in row or "score" not in row:
            raise ProtocolError(f"{self.out} holds JSON lines that sdd score did not write: choose another --out")
        fields = [k for k in row if k != "windows"]  # (present with --windows, which the run record compares)
        if set(fields) != set(self.columns):
            raise ProtocolError(
                f"{self.out} was written with other fields ({','.join(fields)}); this model writes "
                f"{','.join(self.columns)}: choose another --out"
            )

    def absolute(self, path: object) -> str:
        """A row's path (relative to :attr:`base` unless absolute) as an absolute, normalised path."""
        return os.path.normpath(os.path.join(self.base, str(path)))

    def stored(self, path: str) -> str:
        """The spelling a row gets for an input ``path``: as given, re-based on :attr:`base` when relative."""
        if os.path.isabs(path) or self._same_base:
            return path
        return os.path.relpath(os.path.abspath(path), self.base)

    def _without_windows(self, scored: set[str] | None) -> set[str]:
        """The paths of ``scored`` (rows of the main file that hold a score) without a window in the CSV sidecar of
        a ``windows`` run (every such row has them: a row is written after its windows); none without one (None)."""
        if not scored:
            return set()
        path = windows_path(self.out)
        repair_partial_line(path)
        return scored - {self.absolute(r.get("path")) for r in iter_rows(path)}

    def _open_sidecar(self, path: Path):
        """Open the sidecar for appending, keeping only windows of rows already in the main file."""
        repair_partial_line(path)

        def kept(r: dict[str, Any]) -> bool:
            return self.absolute(r.get("path")) in self.done

        if not all(kept(r) for r in iter_rows(path)):  # windows of a file whose main row was never written
            _rewrite_kept(path, WINDOW_COLUMNS, kept)
        f = open(path, "a", newline="", encoding="utf-8", errors=_PATH_ERRORS)
        writer = RowWriter(f)
        if f.tell() == 0:
            writer.writerow(WINDOW_COLUMNS)
        return f, writer

    def write(self, path: str, result: ScoreResult | None, error: str | None = None) -> None:
        """One file's row (``result`` None and ``error`` set for a failed file).

        A write the system refuses (a full disk) is a ProtocolError; the writer then takes no more rows, since
        its file may end in a row cut short (which the next run cuts off and scores again)."""
        if self._failed is not None:
            raise self._failed
        done = os.path.abspath(path)
        path = self.stored(path)
        row = result_row(path, result, self.columns, error)
        target = self.out
        try:
            if self._sidecar is not None and result is not None:
                f, writer = self._sidecar
                target = windows_path(self.out)
                for i, (s, e, v) in enumerate(zip(result.window_starts_s, result.window_ends_s, result.window_scores)):
                    writer.writerow([path, i, _fmt(s), _fmt(e), _fmt(v)])
                f.flush()  # windows first: a main row is only ever written after its windows
                target = self.out
            if self._csv is not None:
                self._csv.writerow(["" if row[c] is None else _fmt(row[c]) for c in self.columns])
            else:
                if self.windows and result is not None:
                    row["windows"] = [
                        {"start_s": s, "end_s": e, "score": v}
                        for s, e, v in zip(result.window_starts_s, result.window_ends_s, result.window_scores)
                    ]
                self._f.write(json.dumps(row) + "\n")
            self._f.flush()
        except OSError as exc:
            raise self._fail(target, exc) from None
        self.done.add(done)
        self.rows_written += 1
        if time.monotonic() - self._last_sync > FSYNC_EVERY_S:
            self.sync()

    def _fail(self, target: Path, exc: OSError) -> ProtocolError:
        """The error of a refused write (a full disk, a file system gone read-only); remembered, so that no row
        is appended after one that may be cut short."""
        self._failed = ProtocolError(
            f"cannot write {target}: {exc.strerror or exc}; the rows written before are kept: free the space "
            "(or fix the folder), then run the same command again to go on after them"
        )
        return self._failed

    def _files(self) -> list:
        """The open output files: the main one, and the windows sidecar when there is one."""
        return [self._f] + ([self._sidecar[0]] if self._sidecar else [])

    def sync(self) -> None:
        if self._failed is not None:
            return  # a write failed (and said so): nothing more goes to the files
        try:
            for f in self._files():
                if not f.closed:
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            raise self._fail(self.out, exc) from None
        self._last_sync = time.monotonic()

    def close(self) -> None:
        try:
            self.sync()
        finally:
            try:
                for f in self._files():
                    # after a failed write its unwritten rest fails again here: the error raised then says why
                    with contextlib.suppress(OSError):
                        f.close()
            finally:
                self._lock.release()

    def __enter__(self) -> ScoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def result_row(path: str, result: ScoreResult | None, columns: Sequence[str], error: str | None) -> dict[str, Any]:
    """A flat row: CSV cells are strings (each float as the shortest text that reads back exactly), JSON keeps
    numbers."""
    row: dict[str, Any] = {c: None for c in columns}
    row["path"] = path
    row["error"] = error or ("" if result is not None else "unknown error")
    if result is None:
        return row
    row.update(
        score=result.score,
        probability=result.probability,
        decision=result.decision,
        duration_s=result.duration_s,
        n_windows=result.n_windows,
        raw_score=result.raw_score,
    )
    from sddkit.scoring.api import stat_columns

    for name, values in result.weights.items():
        for col, v in zip(stat_columns(name, len(values)), values):
            if col in row:
                row[col] = v
    return row


def drop_paths(path: Path, paths: Sequence[str]) -> None:
    """Rewrite a :class:`ScoreWriter` output (CSV or JSONL) without the rows of ``paths`` (atomically), so that
    the next run scores those files again instead of skipping them as done."""
    drop = set(paths)
    if not drop or not path.is_file():
        return
    _rewrite_kept(path, read_header(path), lambda r: r.get("path") not in drop)


def _rewrite_kept(path: Path, header: list[str] | None, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite an output file (``header`` None: JSONL) with only the rows ``keep`` accepts, atomically."""
    _write_rows(path, header, (r for r in iter_rows(path) if keep(r)))


def _write_rows(path: Path, header: list[str] | None, rows: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` by ``rows`` atomically (``header`` None: JSONL), streamed to disk as they come."""
    from sddkit.detectors.model_dir import atomic_open

    with atomic_open(path) as raw:
        f = io.TextIOWrapper(raw, encoding="utf-8", errors=_PATH_ERRORS, newline="")
        if header is None:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        else:
            writer = RowWriter(f)
            if header:  # an empty file (no header) stays empty: a lone newline would read as its header
                writer.writerow(header)
            for r in rows:
                writer.writerow(["" if r.get(c) is None else r.get(c) for c in header])
        f.flush()
        f.detach()  # atomic_open syncs and closes the file itself


def _fmt(v: Any) -> Any:
    """A CSV cell: a float as the shortest text that reads back as the same float (``repr``), so that a score
    within 1e-7 of the threshold is not written on the other side of it from its decision, and scores that
    differ are not written alike (7 significant digits tied distinct trials in an EER read from the file)."""
    return repr(float(v)) if isinstance(v, float) else v


# --- scoring loop --------------------------------------------------------------------------


@dataclass
class ScoreSummary:
    total: int = 0
    skipped: int = 0
    scored: int = 0
    failed: int = 0
    audio_s: float = 0.0


class _TooLong(str):
    """The error message of a file over ``max_duration`` (which :func:`score_files` may follow with a hint)."""


def _decode(detector: ScoringDetector, path: str, max_duration: float | None) -> PreparedAudio | str:
    """Decode and window one file in a worker thread; an error message instead of raising."""
    from sddkit.audio.io import load_audio
    from sddkit.errors import AudioTooLongError

    try:
        x = load_audio(path, sample_rate=detector.sample_rate, max_duration=max_duration)
        return detector.prepare(x, path=path)
    except AudioTooLongError as exc:
        return _TooLong(exc)
    except SddkitError as exc:
        return str(exc)
    except Exception as exc:  # any other decode failure is still this file's problem, not the batch's
        return f"{path}: {type(exc).__name__}: {exc}"


def _decoded_in_order(
    detector: ScoringDetector, paths: Sequence[str], workers: int, max_duration: float | None
) -> Generator[tuple[str, PreparedAudio | str], None, None]:
    """(path, windows or error) in input order, decoded ``workers`` at a time ahead of the model."""
    return in_order_ahead(lambda p: _decode(detector, p, max_duration), paths, workers, thread_name="sdd-decode")


def score_files(
    detector: ScoringDetector,
    paths: Sequence[str],
    writer: ScoreWriter,
    *,
    workers: int = 2,
    max_duration: float | None = 600.0,
    progress: bool = True,
    too_long_hint: str = "",
) -> ScoreSummary:
    """Score every path not already in ``writer.done``; rows are written as batches finish.

    ``too_long_hint`` follows the error of a file over ``max_duration`` (``sdd score`` names its option there).

    Paths are compared as absolute paths (relative ones taken from the current folder), without
    resolving symlinks, so a restart that spells the inputs differently skips what is written.

    Windows of consecutive files are gathered until ``detector.batch_size`` windows are ready,
    then run in one go, while the worker threads decode the next files.
    """
    from sddkit.progress import progress_bar

    # the same file spelled relative in one run and absolute (or via "./", "..") in the next is done too
    todo = [p for p in paths if os.path.abspath(p) not in writer.done]
    summary = ScoreSummary(total=len(paths), skipped=len(paths) - len(todo))
    bar = progress_bar(total=len(todo), unit="file", desc="sdd score", enabled=progress)
    # decoded files wait here until a batch of windows is full; failed ones keep their place, so
    # rows come out in input order
    pending: list[tuple[str, PreparedAudio | str]] = []

    def flush() -> None:
        ready = [item for _, item in pending if not isinstance(item, str)]
        windows = sum(item.n_windows for item in ready)
        on_windows: Callable[[int], None] | None = None
        if progress and windows > detector.batch_size:
            # a long file's row comes only after all its windows: the bar (which counts files) shows them meanwhile
            done = 0

            def count(n: int) -> None:
                nonlocal done
                done += n
                bar.set_postfix(windows=f"{done}/{windows}", refresh=True)

            on_windows = count
            count(0)
        results = iter(detector.score_prepared(ready, on_windows=on_windows))
        if on_windows is not None:
            bar.set_postfix(refresh=False)  # cleared before the update that counts the flush's files
        for p, item in pending:
            if isinstance(item, str):
                writer.write(p, None, error=item + too_long_hint if isinstance(item, _TooLong) else item)
                summary.failed += 1
                continue
            res = next(results)
            reason = non_finite_reason(res)
            if reason is not None:  # the model failed on this file: an error row, never a NaN "spoof"
                writer.write(p, None, error=f"{p}: {reason}")
                summary.failed += 1
                continue
            writer.write(p, res)
            summary.scored += 1
            summary.audio_s += res.duration_s
        bar.update(len(pending))
        pending.clear()

    decoded = _decoded_in_order(detector, todo, workers, max_duration)
    try:
        n_windows = 0
        for path, item in decoded:
            pending.append((path, item))
            n_windows += 0 if isinstance(item, str) else item.n_windows
            # error rows wait only for the files decoded before them: a long run of unreadable files (a
            # missing folder) is written as it comes, not held (unsaved, the bar still) until a batch fills
            if n_windows >= detector.batch_size or n_windows == 0 or len(pending) >= detector.batch_size:
                flush()
                n_windows = 0
        if pending:
            flush()
    finally:
        decoded.close()  # now, not when the traceback is freed: an interruption drops the queued decodes
        bar.close()
        writer.sync()
    return summary


# --- shards --------------------------------------------------------------------------------


def shard_path(out: str | Path, rank: int) -> Path:
    return Path(f"{out}.rank{rank}")


def _marker(out: str | Path, rank: int) -> Path:
    return Path(f"{out}.rank{rank}.done")


def clear_shard_done(out: str | Path, rank: int) -> None:
    """Remove the marker an earlier run of ``rank`` left: while it scores again, the shard is not done."""
    _marker(out, rank).unlink(missing_ok=True)


def mark_shard_done(out: str | Path, rank: int, world_size: int, rows: int) -> None:
    from sddkit.detectors.model_dir import atomic_write_bytes

    info = {"rank": rank, "world_size": world_size, "rows": rows}
    atomic_write_bytes(_marker(out, rank), json.dumps(info).encode())


def complete_shards(out: str | Path) -> tuple[int, list[int]]:
    """(world size recorded by the markers, ranks whose marker is missing); (0, []) if none."""
    out = Path(out)
    sizes = set()
    # escaped: an output named "scores[v2].csv" is a pattern that matches none of its own markers, and its shards
    # were never merged (each rank took another's merge for done)
    for marker in sorted(out.parent.glob(f"{glob.escape(out.name)}.rank*.done")):
        try:
            sizes.add(json.loads(marker.read_text())["world_size"])
        except FileNotFoundError:
            # cleared since it was listed by its rank, which scores again (sdd score clears a rank's marker as it
            # starts, while the other ranks may be checking the markers): not done
            continue
    if not sizes:
        return 0, []
    if len(sizes) != 1:
        raise ProtocolError(f"{out}: shard markers disagree on the world size ({sorted(sizes)}); remove stale ones")
    world = sizes.pop()
    return world, [r for r in range(world) if not _marker(out, r).is_file()]


def stale_shards(out: str | Path, world_size: int, *, free_only: bool = True) -> list[Path]:
    """The shards ``out.rank<r>`` with ``r >= world_size``, with ``free_only`` those that no run is writing (their
    lock is free): left by an earlier run with more ranks, stopped before they were merged. Rows of files they hold
    count as scored, and the merge takes them in (rank order), then removes them: a resume with fewer ranks scored
    those files again and left the shards beside the merged output, where they refused every later one-process
    run on it. (Without ``free_only`` for the ranks that read them as they start together: the lock each took to
    look would hide the shard from the others.)"""
    out = Path(out)
    found: list[tuple[int, Path]] = []
    for path in out.parent.glob(f"{glob.escape(out.name)}.rank*"):
        rank = re.fullmatch(r"\.rank(\d+)", path.name[len(out.name) :])
        if rank is None or int(rank.group(1)) < world_size or not path.is_file():
            continue
        try:
            if free_only:
                OutputLock(path).release()
        except ProtocolError:
            continue  # being written by a run of its own: not this run's to take
        found.append((int(rank.group(1)), path))
    return [path for _, path in sorted(found)]


def shard_base(out: str | Path) -> str | None:
    """The folder the relative paths of a shard of ``out`` are written relative to: that of ``out``'s rows (``cwd``
    in its run record), else that of an earlier run's shards (the first, in rank order, that holds rows); None when
    none holds any. Taken from ``out`` alone, a rank of a resume started in another folder whose shard holds no rows
    (a rank the earlier run did not have) wrote its paths relative to its own folder: the merge read them against
    the earlier run's (rows naming files that are not there, beside the inputs it then said no rank had scored), and
    the rank read the other shards' rows against its own too, so scored their files again."""
    for source in [Path(out), *stale_shards(out, 0, free_only=False)]:
        cwd = recorded_cwd(source)
        if cwd is not None:
            return cwd
    return None


def merge_shards(out: str | Path, order: Sequence[str] | None = None) -> int:
    """Merge complete ``out.rank*`` shards (plus rows already in ``out``) into ``out``; returns rows.

    ``order``: input paths, to write rows in input order (others keep file order after them), after the rows ``out``
    held already of files not among them, as a one-process run appends after those.
    Shard files and markers are removed once ``out`` is written.
    """
    out = Path(out)
    world, missing = complete_shards(out)
    if world == 0:
        raise ProtocolError(
            f"{out}: no finished shards to merge (no {out.name}.rank<r>.done files){_stopped_run_hint(out)}"
        )
    if missing:
        raise ProtocolError(f"{out}: shards of rank(s) {missing} of {world} are not finished; run them first")
    lock = OutputLock(out)
    try:
        return _merge_locked(out, world, order)
    finally:
        lock.release()


def _stopped_run_hint(out: Path) -> str:
    """What a ``--merge`` without markers says when shards are there: those of a run stopped before its ranks
    finished, which only a resume under torchrun finishes (the one-process run that it told to do so, as "merge what
    it wrote", is refused beside them)."""
    if not stale_shards(out, 0, free_only=False):  # every out.rank<r> shard there (those of rank 0 up)
        return ""
    return (
        "; the shards here are of a run stopped before its ranks finished: resume it under torchrun (2 or more "
        "processes, the same inputs and --out), which scores what they lack, then merges"
    )


def _merge_locked(out: Path, world: int, order: Sequence[str] | None) -> int:
    shards = [shard_path(out, r) for r in range(world)] + stale_shards(out, world)
    sources = [out, *shards]
    header, rows, with_rows, origin = _merge_rows(sources, windowed=_windowed_paths(out, sources))
    run = _merged_run_info(with_rows)
    # compared as absolute paths: a row's relative path is relative to the output's first run's folder (``cwd``
    # in its record), an input's to this one; spelled differently (a resume from another folder), every row
    # missed its input and the merged file kept the shards' order (rank 0's files, then rank 1's, ...)
    base = str((run or {}).get("cwd") or os.getcwd())
    rank_of = {os.path.abspath(p): i for i, p in enumerate(order or [])}

    def place(r: dict[str, Any]) -> int:
        return rank_of.get(os.path.normpath(os.path.join(base, str(r.get("path")))), len(rank_of))

    rows = _in_output_order(rows, origin, place, len(rank_of))
    if output_format(out) == "jsonl":
        _write_rows(out, None, rows)
    else:
        _write_rows(out, header or [], rows)
        w_sources = [windows_path(out)] + [windows_path(shard) for shard in shards]
        if any(p.is_file() for p in w_sources):
            kept = {r["path"] for r in rows}
            _, w_rows, _, w_origin = _merge_rows(w_sources, key=("path", "window"))
            w_rows = _in_output_order(w_rows, w_origin, place, len(rank_of))
            _write_rows(windows_path(out), WINDOW_COLUMNS, (r for r in w_rows if r["path"] in kept))
            for p in w_sources[1:]:
                p.unlink(missing_ok=True)
    if run is not None:
        write_run_info(out, run)
    for shard in shards:
        shard.unlink(missing_ok=True)
        run_record_path(shard).unlink(missing_ok=True)
    for r in range(world):
        _marker(out, r).unlink(missing_ok=True)
    return len(rows)


def inputs_without_rows(out: str | Path, paths: Sequence[str]) -> list[str]:
    """The ``paths`` (inputs, relative to the working directory) that no row of ``out`` names. After a merge of
    shards they are the files no rank scored: ranks without a process group each list the inputs and score every
    ``WORLD_SIZE``-th one of their own listing, so ranks that listed different files (a folder written to while they
    started, a manifest changed, a disk that one node sees otherwise) each skipped a file another rank's listing gave
    to them."""
    out = Path(out)
    base = recorded_base_dir(out) or os.getcwd()
    written = {os.path.normpath(os.path.join(base, str(r.get("path")))) for r in iter_rows(out) if r.get("path")}
    return [p for p in paths if os.path.abspath(p) not in written]


def _merged_run_info(sources: Sequence[Path]) -> dict[str, Any] | None:
    """The run record the merged output gets; a ProtocolError when the shards (or ``out``) disagree.

    ``sources``: the files that hold rows (a record without rows describes nothing). The record is the first's (its
    ``cwd``: the rows' paths are relative to it), with the package versions and git commit of all of them
    (:func:`_merged_provenance`)."""
    merged: tuple[Path, dict[str, Any]] | None = None
    records: list[tuple[int, dict[str, Any]]] = []
    for src in sources:
        run = _read_run_info(src, "cannot merge")
        if run is None:
            continue
        records.append((run_record_path(src).stat().st_mtime_ns, run))
        if merged is None:
            merged = (src, run)
            continue
        diffs = run_differences(merged[1], run)
        if diffs:
            raise ProtocolError(
                f"{src} and {merged[0]} were scored by different runs ({', '.join(diffs)} differ); "
                "merging would mix them"
            )
    if merged is None:
        return None
    # oldest first (a stable sort: the output's own record before its shards' when written at the same moment)
    return _merged_provenance(merged[1], [r for _, r in sorted(records, key=lambda t: t[0])])


def _merged_provenance(first: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``first`` with the ``versions`` and ``git`` of the latest of ``records`` (oldest first) and every other block
    of them as ``earlier_versions`` / ``earlier_git``: the output's record of an earlier run, kept whole, named its
    code and versions for the rows this run's shards scored under others."""
    from sddkit.training.provenance import earlier_blocks

    merged = dict(first)
    latest = records[-1]
    for key in ("versions", "git"):
        if key not in latest:  # a record of an sddkit that did not record it: nothing to say of the latest run
            continue
        earlier_key = f"earlier_{key}"
        history = [b for r in records for b in [*(r.get(earlier_key) or []), *([r[key]] if key in r else [])]]
        merged.pop(earlier_key, None)
        merged[key] = latest[key]
        merged.update(earlier_blocks({earlier_key: history}, key, latest[key]))
    return merged


def _in_output_order(
    rows: list[dict[str, Any]], origin: list[int], place: Callable[[dict[str, Any]], int], unknown: int
) -> list[dict[str, Any]]:
    """Merged rows in order: those the output held already of files not among this run's inputs (``origin`` 0,
    ``place`` ``unknown``) first, as they were (a one-process run appends after them), then the rest in input order
    (``place``; unknown ones in file order after them). (All were sorted by this run's inputs: the rows of an
    earlier run's other files, scored into the same output, went behind this run's.)"""
    front = [o == 0 and place(r) == unknown for r, o in zip(rows, origin)]
    kept = [r for r, f in zip(rows, front) if f]
    return kept + sorted((r for r, f in zip(rows, front) if not f), key=place)


def _windowed_paths(out: Path, sources: Sequence[Path]) -> list[set[str]] | None:
    """For a CSV output whose run wrote windows, the paths (as written) that each source's sidecar holds windows of;
    else None. (Partial last lines cut first, as :func:`_merge_rows` cuts those of the sources.)"""
    if output_format(out) != "csv":
        return None
    sidecars = [windows_path(src) for src in sources]
    if not any(p.is_file() for p in sidecars):
        return None
    found = []
    for path in sidecars:
        repair_partial_line(path)
        found.append({str(r.get("path")) for r in iter_rows(path)})
    return found


def _merge_rows(
    sources: Sequence[Path], key: tuple[str, ...] = ("path",), windowed: Sequence[set[str]] | None = None
) -> tuple[list[str] | None, list[dict], list[Path], list[int]]:
    """(header, de-duplicated rows, the sources that held rows, the index in ``sources`` each row came from), each
    source read once. ``windowed``: the paths each source's windows sidecar holds windows of, for a run with
    ``--windows``: a scored row whose windows were lost gives way to the row of that file scored again."""

    def with_windows(i: int, r: dict) -> bool:
        return windowed is not None and not r.get("error") and str(r.get("path")) in windowed[i]

    header: list[str] | None = None
    with_rows: list[Path] = []
    at: dict[tuple, int] = {}  # key -> index in rows
    rows: list[dict] = []
    origin: list[int] = []
    for i, src in enumerate(sources):
        repair_partial_line(src)
        h, rs = read_rows(src)
        if rs:
            with_rows.append(src)
        if h:
            if header is not None and h != header:
                raise ProtocolError(f"{src}: columns differ from the other shards; cannot merge")
            header = h
        for r in rs:
            k = tuple(str(r.get(c)) for c in key)
            if k not in at:
                at[k] = len(rows)
                rows.append(r)
                origin.append(i)
            elif rows[at[k]].get("error") or (
                # a file scored again because its sidecar lacked its windows (deleted since): its new row, whose
                # windows are the ones merged, not the old row (the two agree only up to float32 rounding)
                with_windows(i, r) and not with_windows(origin[at[k]], rows[at[k]])
            ):
                # a file scored again after a failure (--retry-errors, a larger --max-duration-s): the later row wins,
                # a success, or the error of this run (the earlier one named the limit it was refused at then)
                rows[at[k]] = r
                origin[at[k]] = i
    return header, rows, with_rows, origin


def shard_of(paths: Sequence[str], rank: int, world_size: int) -> list[str]:
    """Every ``world_size``-th path starting at ``rank`` (balanced when durations are mixed)."""
    return list(paths[rank::world_size])
