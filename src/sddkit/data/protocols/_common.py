"""Shared helpers of the protocol readers: line/CSV iteration with file:line errors, label maps,
audio-folder resolution, recursive audio listing and table assembly.

Every reader reports a malformed input as ``ProtocolError("<file>:<line>: <what>")`` so a user
can open the exact line; folder readers name the folder instead.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pandas as pd

from sddkit.audio.files import AUDIO_EXTENSIONS, list_audio_files  # noqa: F401  (the readers import them from here)
from sddkit.data.table import BONAFIDE_SPOOF_WORDS, REQUIRED_COLUMNS, UtteranceTable  # noqa: F401  (readers' import)
from sddkit.data.text import not_text, open_text
from sddkit.errors import ProtocolError

ASVSPOOF_LABELS: dict[str, str] = {"bonafide": "bonafide", "spoof": "spoof"}

# ASVspoof 2019 LA attack families (Wang et al., "ASVspoof 2019: a large-scale public database ...",
# Table 1); A16 and A19 reuse A04 and A06. ASVspoof 2021 LA/DF eval reuses A07-A19.
ASVSPOOF2019_ATTACK_TYPES: dict[str, str] = {
    "A01": "tts",
    "A02": "tts",
    "A03": "tts",
    "A04": "tts",
    "A05": "vc",
    "A06": "vc",
    "A07": "tts",
    "A08": "tts",
    "A09": "tts",
    "A10": "tts",
    "A11": "tts",
    "A12": "tts",
    "A13": "tts+vc",
    "A14": "tts+vc",
    "A15": "tts+vc",
    "A16": "tts",
    "A17": "vc",
    "A18": "vc",
    "A19": "vc",
}


_Reader = TypeVar("_Reader", bound=Callable[..., UtteranceTable])


def table_columns(*columns: str) -> Callable[[_Reader], _Reader]:
    """Declare the columns a reader's tables can have: :data:`REQUIRED_COLUMNS` and ``columns`` (those it adds, the
    union over its options and layouts). A recipe's ``where``/``exclude`` naming another column is then refused when
    the recipe is read (:func:`sddkit.data.protocols.known_columns`), not after start-up when the table is read. A
    reader whose columns are its file's own (``utterance_table``) declares none."""

    def deco(reader: _Reader) -> _Reader:
        reader.table_columns = tuple(dict.fromkeys((*REQUIRED_COLUMNS, *columns)))  # type: ignore[attr-defined]
        return reader

    return deco


def misspelt_columns(missing: Iterable[str], header: Sequence[str]) -> str:
    """``; is 'lable' meant to be 'label'? rename it`` for each missing column a header name is close to, else ''.

    A hand-written header with a typo is the usual cause of a missing column, and the list of the header's names
    alone leaves the user to spot it."""
    import difflib

    spelt = {h.lower(): h for h in header if h}  # lower-cased for the match, named as written
    pairs = []
    for column in missing:
        close = difflib.get_close_matches(column, list(spelt), n=1)
        if close and spelt[close[0]] != column:
            pairs.append(f"is {spelt[close[0]]!r} meant to be {column!r}?")
    return f"; {' '.join(pairs)} rename {'them' if len(pairs) > 1 else 'it'} in the header" if pairs else ""


DELIMITERS = (",", ";", "\t")  # of a hand-written table (labels CSV, manifest); ";" from comma-decimal locales


def header_fields(line: str) -> tuple[list[str], str | None]:
    """A hand-written table's first line split by the separator of :data:`DELIMITERS` that gives the most fields,
    and that separator; white space (None) where none of them gives more than one field."""
    split = max(((line.split(d), d) for d in DELIMITERS), key=lambda fd: len(fd[0]))
    if len(split[0]) < 2:
        return line.split(), None
    return [f.strip().strip('"') for f in split[0]], split[1]


def located(path: str | Path, lineno: int | None, message: str) -> ProtocolError:
    """A ProtocolError that names the file (and line, 1-based) it is about."""
    where = f"{path}:{lineno}" if lineno is not None else f"{path}"
    return ProtocolError(f"{where}: {message}")


def require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ProtocolError(f"{p}: no such {what} file")
    return p


def require_dir(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise ProtocolError(f"{p}: no such {what} folder")
    return p


def _open_text(path: Path):
    # utf-8-sig drops a BOM that spreadsheet exports often put in front of the header; a UTF-16 BOM (Excel's
    # "Unicode Text" export, PowerShell's >) reads as UTF-16
    return open_text(path, strict=True)


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of every non-blank, non-``#`` line of a text protocol."""
    p = require_file(path, "protocol")
    try:
        with _open_text(p) as fh:
            for lineno, raw in enumerate(fh, start=1):
                text = raw.strip()  # is_preamble, inlined: once per line of a 600k-line key
                if text and not text.startswith("#"):
                    yield lineno, text
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{p}: {not_text(exc)}") from None


def split_fields(path: Path, lineno: int, line: str, counts: int | Sequence[int], layout: str) -> list[str]:
    """Whitespace-split ``line``; the field count must be one of ``counts`` (else a file:line error)."""
    fields = line.split()
    allowed = (counts,) if isinstance(counts, int) else tuple(counts)
    if len(fields) not in allowed:
        want = " or ".join(str(c) for c in allowed)
        raise located(path, lineno, f"expected {want} fields ({layout}), got {len(fields)}: {line!r}")
    return fields


def map_label(value: str, mapping: Mapping[str, str], path: Path, lineno: int | None) -> str:
    """Protocol label -> 'bonafide'/'spoof'; anything else is a ProtocolError naming file:line."""
    label = mapping.get(value.strip().lower())
    if label is None:
        raise located(path, lineno, f"unknown label {value!r}; expected one of {sorted(set(mapping))}")
    return label


class Words(dict):
    """``words[value]``: one shared copy of each distinct value of a protocol's repeated fields (codec, attack,
    phase...), ``-`` read as ``dash`` (''). Kept as split from each line, the strings of a 611k-line key took
    hundreds of MB."""

    def __init__(self, dash: str = "") -> None:
        super().__init__()
        self.dash = dash

    def __missing__(self, value: str) -> str:
        word = self.dash if value == "-" else value
        self[value] = word
        return word


def is_preamble(line: str) -> bool:
    """A blank or ``#`` comment line: skipped in text protocols and before a headed file's header."""
    text = line.strip()
    return not text or text.startswith("#")


def skip_preamble(fh: Iterable[str]) -> tuple[int, Iterator[str]]:
    """(number of blank/``#`` lines before the header, the lines from the header on)."""
    lines = iter(fh)
    skipped = 0
    for raw in lines:
        if not is_preamble(raw):
            return skipped, itertools.chain([raw], lines)
        skipped += 1
    return skipped, iter(())


def _records(
    lines: Iterator[str], skipped: int, delimiter: str, quoting: int, one_line: bool
) -> Iterator[tuple[int, list[str]]]:
    """(line number of its end, fields) of every CSV record of ``lines`` (the file's lines after ``skipped``);
    with ``one_line``, each line parsed on its own."""
    if one_line:
        for number, raw in enumerate(lines, start=skipped + 1):
            yield number, next(csv.reader([raw], delimiter=delimiter, quoting=quoting), [])
        return
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    for row in reader:
        yield skipped + reader.line_num, row


def iter_csv(
    path: str | Path,
    *,
    delimiter: str = ",",
    required: Iterable[str] = (),
    what: str = "metadata",
    quoting: int = csv.QUOTE_MINIMAL,
    lower_header: bool = False,
    one_line_records: bool = False,
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row dict) of a headed CSV; a missing column or a ragged row is a ProtocolError.

    Blank and ``#`` lines before the header are skipped (format detection skips them too).

    A quoted field holding a line break is an error naming its first line: no protocol field spans lines, and
    a quote left open (``"Bob`` as a speaker) would otherwise swallow the following rows into one field.

    ``lower_header``: column names are lower-cased (hand-written files: ``Path,Label``).
    ``one_line_records``: every line is one record, for formats written a line per row without CSV quoting
    (MLAAD's ``meta.csv``): a field that opens a quote it never closes (a transcript ``"Hallo``) ends with its
    line, where as CSV it ran on over the following lines and silently took their rows into one field."""
    p = require_file(path, what)
    try:
        with _open_text(p) as fh:
            # blank and '#' lines before the header are skipped, as format detection skips them
            skipped, lines = skip_preamble(fh)
            records = _records(lines, skipped, delimiter, quoting, one_line_records)
            first = next(records, None)
            if first is None:
                raise located(p, skipped or 1, f"empty {what} file (no header line)")
            header = [h.strip().lower() if lower_header else h.strip() for h in first[1]]
            missing = [c for c in required if c not in header]
            if missing:
                raise located(
                    p,
                    skipped + 1,
                    f"header lacks column(s) {missing}; header is {header}{misspelt_columns(missing, header)}",
                )
            previous = first[0]  # the line the previous record ended on
            for lineno, row in records:
                start, previous = previous + 1, lineno
                if not row or all(not cell.strip() for cell in row):
                    continue
                if lineno > start and any("\n" in cell or "\r" in cell for cell in row):
                    # no field of a protocol (paths, labels, names) spans lines: a quote left open took the
                    # following lines, rows included, into one field, and the field count may still match
                    raise located(
                        p,
                        start,
                        f"a field runs on from this line to line {lineno} (a quote opened and never closed?): "
                        f"{what} fields hold no line breaks",
                    )
                if len(row) != len(header):
                    # one line per record: a quote left open took the separators after it into its field
                    hint = (
                        " (a quote opened in a field and never closed?)"
                        if one_line_records and any(delimiter in cell for cell in row)
                        else ""
                    )
                    raise located(p, lineno, f"expected {len(header)} fields, got {len(row)}{hint}")
                yield lineno, {h: cell.strip() for h, cell in zip(header, row)}
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{p}: {not_text(exc)}") from None
    except csv.Error as exc:
        raise ProtocolError(f"{p}: malformed CSV: {exc}") from None


def holds_suffix(folder: Path, suffix: str | tuple[str, ...]) -> bool:
    """Whether ``folder`` directly contains a ``*<suffix>`` file (stops at the first one)."""
    try:
        with os.scandir(folder) as it:
            return any(e.name.lower().endswith(suffix) for e in it)
    except OSError:
        return False


def _audio_dir_in(base: Path, candidates: Sequence[str], suffix: str | tuple[str, ...]) -> Path | None:
    # '.' (the base itself) counts only if it directly holds audio: accepting any folder there
    # would turn every typo into a table of missing files
    for c in candidates:
        if c in ("", "."):
            if base.is_dir() and holds_suffix(base, suffix):
                return base
        elif (base / c).is_dir():
            return base / c
    return None


def resolve_audio_dir(
    root: str | Path | None,
    candidates: Sequence[str],
    fallback_roots: Sequence[Path] = (),
    suffix: str | tuple[str, ...] = (".flac", ".wav"),
) -> str:
    """The folder holding a partition's audio, as a string ('' when there is no audio root).

    With ``root`` given, the first of ``root/<candidate>`` that exists is used ('.' = the root
    itself, if it holds ``*<suffix>`` files: FLAC or WAV by default) and none existing is an error (a typo in a recipe
    should not silently produce a table without audio). Without it, the same candidates except
    '.' are tried under ``fallback_roots`` (e.g. the protocol's folder); '' = "no audio known".
    """
    if root is not None:
        base = require_dir(root, "audio root")
        found = _audio_dir_in(base, candidates, suffix)
        if found is None:
            tried = ", ".join(str(base / c) for c in candidates)
            raise ProtocolError(f"{base}: no audio folder found under the audio root; tried {tried}")
        return str(found)
    sub = [c for c in candidates if c not in ("", ".")]
    for base in fallback_roots:
        found = _audio_dir_in(base, sub, suffix)
        if found is not None:
            return str(found)
    return ""


def audio_path(folder: str, utt_id: str, suffix: str) -> str:
    return os.path.join(folder, utt_id + suffix) if folder else ""


def relative_id(path: Path, root: Path) -> str:
    """A stable utterance id: the path relative to ``root`` in POSIX form, without its last suffix."""
    rel = path.relative_to(root).as_posix()
    stem, _ = os.path.splitext(rel)
    return stem


def as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def check_selected(
    where: str | Path, option: str, wanted: Iterable[str] | None, present: Iterable[str], hint: str = ""
) -> None:
    """A ProtocolError when a selection option (``partitions``, ``phases``, ...) names a value absent from
    the data: a typo next to a valid name would otherwise silently drop that part of the corpus. ``hint``: what
    to do instead, appended to the message ('' for none)."""
    if wanted is None:
        return
    known = set(present)
    missing = [w for w in dict.fromkeys(wanted) if w not in known]
    if missing:
        raise ProtocolError(
            f"{where}: no {option} {missing} in this protocol; {option} present: {', '.join(sorted(known)) or 'none'}"
            + hint
        )


def check_unique_ids(records: Sequence[dict], lines: Sequence[int], where: str | Path) -> None:
    """A ProtocolError naming both lines of ``where`` that list the same ``utt_id`` (``lines[i]`` is record i's)."""
    _check_unique_line_ids([str(rec["utt_id"]) for rec in records], lines, where)


def _check_unique_line_ids(ids: Sequence[str], lines: Sequence[int], where: str | Path) -> None:
    if len(set(ids)) == len(ids):
        return
    first: dict[str, int] = {}
    for utt, lineno in zip(ids, lines):
        if utt in first:
            raise located(where, lineno, f"duplicate utt_id {utt!r} (first at line {first[utt]})")
        first[utt] = lineno


def _check_unique_file_ids(records: Sequence[dict], where: str | Path) -> None:
    """A ProtocolError naming both files of a folder corpus whose ids (paths without their suffix) are one: two
    recordings ``x.wav`` and ``x.mp3`` side by side, which the table's check named only as a duplicate id."""
    first: dict[str, str] = {}
    for rec in records:
        utt, path = str(rec["utt_id"]), str(rec.get("path", ""))
        if utt in first:
            if not path or first[utt] in ("", path):
                raise ProtocolError(f"{where}: duplicate utt_id {utt!r}" + (f" ({path} listed twice)" if path else ""))
            raise ProtocolError(
                f"{where}: two files have the utterance id {utt!r}: {first[utt]} and {path} (an id is the file's "
                "path without its suffix); rename or remove one of them"
            )
        first[utt] = path


def _refuse_unencodable(records: list[dict], where: str | Path) -> None:
    """Name a file name that is not UTF-8 (a folder listing keeps its bytes as surrogate escapes, ``caf\udce9.wav``
    for Latin-1 ``café.wav``): the table's text columns (Arrow strings) cannot hold it, and pandas failed with a
    bare ``UnicodeEncodeError`` traceback."""
    for record in records:
        for value in record.values():
            if isinstance(value, str) and not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                    raise ProtocolError(
                        f"{where}: the name '{shown}' is not UTF-8 (written on a system with another encoding?); "
                        "rename such files to UTF-8 (e.g. convmv -f latin1 -t utf8 -r --notest DIR)"
                    ) from None


def build_table(records: list[dict], where: str | Path, lines: Sequence[int] | None = None) -> UtteranceTable:
    """Records -> validated UtteranceTable; validation errors are prefixed with ``where``.

    ``lines``: the line of ``where`` each record comes from, so a duplicate id names its two lines."""
    if not records:
        raise ProtocolError(f"{where}: no utterances found")
    if lines is not None:
        check_unique_ids(records, lines, where)
    else:
        _check_unique_file_ids(records, where)
    try:
        df = pd.DataFrame.from_records(records)
    except UnicodeEncodeError:
        _refuse_unencodable(records, where)
        raise
    return _table(df, where)


def build_table_rows(
    columns: Sequence[str], rows: list[tuple], where: str | Path, lines: Sequence[int], omit: Sequence[str] = ()
) -> UtteranceTable:
    """:func:`build_table` of rows given as tuples of ``columns``' values (``lines[i]`` the line of row i), but the
    columns ``omit``.

    For the large line protocols: a dict per row, the 611,829 trials of the ASVspoof 2021 DF key took 1.3 GB."""
    if not rows:
        raise ProtocolError(f"{where}: no utterances found")
    at = list(columns).index("utt_id")
    _check_unique_line_ids([row[at] for row in rows], lines, where)
    try:
        df = pd.DataFrame.from_records(rows, columns=list(columns), exclude=list(omit) or None)
    except UnicodeEncodeError:
        _refuse_unencodable([dict(zip(columns, row)) for row in rows], where)
        raise
    return _table(df, where)


def _table(df: pd.DataFrame, where: str | Path) -> UtteranceTable:
    front = [c for c in REQUIRED_COLUMNS if c in df.columns]
    df = df[front + [c for c in df.columns if c not in front]]
    # readers that add a column only to some records leave NaN in the others: those mean ''
    for col in df.columns:
        if col != "duration_s" and df[col].dtype == object:
            df[col] = df[col].fillna("")
    try:
        return UtteranceTable(df)
    except ProtocolError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
