"""Score files: reading the formats of the field and joining them with a protocol.

Formats (``format=None`` detects them from the first non-comment line):

| name              | layout                                                         | id is   |
|-------------------|----------------------------------------------------------------|---------|
| asvspoof2019      | ``UTT SOURCE KEY SCORE`` (4 columns, KEY bonafide/spoof) or ``UTT SCORE`` | utt_id |
| asvspoof2021      | ``UTT SCORE`` (whitespace separated)                           | utt_id  |
| asvspoof5         | TSV with header ``filename<TAB>cm-score[<TAB>...]`` (also ``spk`` first, see below) | utt_id |
| asvspoof5_keyed   | ``SPEAKER UTT SCORE KEY`` (the ASVspoof 5 package's keyed score file) | utt_id |
| csv               | CSV with header ``path,score`` or ``utt_id,score`` (more columns ignored) | path / utt_id |
| tsv               | the same, tab-separated: header ``path<TAB>score`` or ``utt_id<TAB>score`` | path / utt_id |
| jsonl             | JSON lines (or a JSON list) with ``path`` or ``utt_id`` and ``score``   | path / utt_id |

An ``asvspoof5`` TSV with a ``spk`` column is ASVspoof 5's track-2 submission (``spk filename cm-score asv-score
sasv-score``), a row per SASV trial: an utterance in several trials repeats its CM score, read once (another score
for it is an error, and so is an end-to-end system's ``-``).

Files are UTF-8, or UTF-16 with a BOM (as Windows PowerShell's ``>`` writes them). Lines starting with
``#`` and blank lines are skipped. Malformed lines, duplicate ids, non-finite scores and scores written with a
decimal comma (``1,5``) raise :class:`ProtocolError` naming ``file:line``. The one exception is the error
row of ``sdd score`` (a CSV with an ``error`` column: the message there, the score empty): the file
could not be scored, so it has no score to evaluate; its id goes to :attr:`ScoreFile.failed` and the
evaluation reports it as a warning instead of stopping.

A ``label`` column (CSV, TSV, JSONL) of bona fide/spoof words is read as the file's keys, which the join checks
against the protocol's labels; one of numbers alone (another tool's 0/1, whose class 1 is not said) is ignored, as
any other column is.

A mixture's ``sdd score`` output (CSV or JSONL) also carries per-file gate weights in the columns
``gate_w0, gate_w1, ...`` (one per expert, in the order of the mixture's experts); they are read into
:attr:`ScoreFile.gate_weights` so that ``sdd eval`` can tabulate them per source and per attack. A MoLEx
model's output carries each expert's mean router weight in ``molex_gate_mean_0, molex_gate_mean_1, ...``
(averaged over the adapted layers and the file's windows), read into :attr:`ScoreFile.expert_use` and
tabulated alike.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from sddkit.data.protocols.labels_csv import LABELS_CSV_LABELS
from sddkit.data.table import UtteranceTable
from sddkit.data.text import is_utf16_text, open_text
from sddkit.documents import recorded_base_dir, run_record
from sddkit.errors import ProtocolError

KEYS = ("bonafide", "spoof")
GATE_PREFIX = "gate_w"  # sdd score's columns of a mixture's per-file gate weights: gate_w0, gate_w1, ...
_GATE_COLUMN = re.compile(rf"{GATE_PREFIX}(\d+)")
# sdd score's columns of a MoLEx model's per-file mean router weight of each expert: molex_gate_mean_0, ...
EXPERT_USE_PREFIX = "molex_gate_mean_"
_EXPERT_USE_COLUMN = re.compile(rf"{EXPERT_USE_PREFIX}(\d+)")
DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")  # a score like 1,5 (a locale's decimal comma)


@dataclass(frozen=True)
class ScoreFile:
    """Scores read from one file.

    ids: (N,) str utterance ids or paths, as written; scores: (N,) float64 (higher = bona fide);
    keys: (N,) 'bonafide'/'spoof' when the file carries labels, else None;
    gate_weights: (N, E) a mixture's per-file gate weights (``gate_w0..gate_w{E-1}``) when the file has them;
    expert_use: (N, E) a MoLEx model's per-file mean router weights (``molex_gate_mean_0..``) when it has them;
    columns: the names of the file's columns, in file order: a CSV's or TSV's header cells (stripped, case kept),
    the keys of a JSONL file's first record; () for the whitespace-separated formats, which have no header.
    """

    path: str
    format: str
    ids: np.ndarray
    scores: np.ndarray
    id_kind: str = "utt_id"  # 'utt_id' or 'path': what the id column is documented to hold
    keys: np.ndarray | None = None
    failed: tuple[str, ...] = ()  # ids of `sdd score` error rows (no score): skipped, reported by match_scores
    # the error rows' messages (their `error` cells), one per id of `failed`: sdd fuse writes them on
    failed_errors: tuple[str, ...] = ()
    gate_weights: np.ndarray | None = None
    expert_use: np.ndarray | None = None
    expert_names: tuple[str, ...] | None = None  # the gate columns' experts, from sdd score's record of the run
    # the folder relative ids are relative to: the cwd sdd score recorded for its output (None: the current one)
    base_dir: str | None = None
    # the first record's keys of a JSONL file, not their union: sdd score writes every key in every row, so a first
    # row without them was not written by sdd score (sdd eval's check of a run record, evaluated_inputs, reads it)
    columns: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


def _recorded(scores: str | Path, key: str) -> Any:
    """``key`` of the run record beside an ``sdd score`` output; None when there is no readable record
    (a score file from elsewhere, an older sdd score) or it has no such key."""
    record = run_record(scores)
    return None if record is None else record.get(key)


def recorded_expert_names(scores: str | Path, width: int) -> tuple[str, ...] | None:
    """The mixture's expert names recorded beside an ``sdd score`` output, when there are ``width`` distinct
    ones; None otherwise (no record, an older record, or one that does not fit these columns)."""
    names = _recorded(scores, "expert_names")
    if not isinstance(names, list) or len(names) != width:
        return None
    names = [str(n) for n in names]
    # distinct, and none named like the gate tables' own columns (count, group): else expert0.. stand in
    if len(set(names)) != width or {"n", "source", "attack"} & set(names):
        return None
    return tuple(names)


# --- line parsing ----------------------------------------------------------------------------


_MAGIC = (  # what a binary file given as scores most likely is, from its first bytes
    (b"RIFF", "a WAV audio file"),
    (b"RF64", "a WAV audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS", "an Ogg audio file"),
    (b"ID3", "an MP3 audio file"),
    (b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    (b"PK\x03\x04", "a ZIP archive, e.g. an .xlsx spreadsheet (export it as CSV)"),
    (b"PAR1", "a Parquet file"),
)


def _binary_kind(path: Path, line: str) -> str | None:
    """What binary file ``path`` is (:data:`_MAGIC`), whose first data line is ``line``; None for text. A line
    holding a NUL byte is binary; so is one that starts like a :data:`_MAGIC` file whose first 8 KiB hold one: a
    WAV whose RIFF size holds a 0x0a or 0x0d byte ends its first "line" before its first NUL ('RIFF'), which
    was refused as a score format nobody could tell."""
    if "\x00" not in line and not line.startswith(tuple(m.decode("latin-1") for m, _ in _MAGIC)):
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError:  # the reader says why it cannot be read
        head = b""
    if "\x00" not in line and (b"\0" not in head or is_utf16_text(head)):
        return None  # text that starts like one ('RIFF_utt1 0.5')
    kind = next((what for magic, what in _MAGIC if head.startswith(magic)), None)
    return f"it starts like {kind}" if kind else "it holds NUL bytes (binary data)"


def _data_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) of every non-blank, non-comment line of a whitespace-separated file."""
    with open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if line and not line.startswith("#"):
                yield number, line


def _score(token: str, where: str) -> float:
    try:
        value = float(token)
    except ValueError:
        if DECIMAL_COMMA.fullmatch(token):
            raise ProtocolError(
                f"{where}: score {token!r} is written with a decimal comma; write scores with a decimal point"
            ) from None
        raise ProtocolError(f"{where}: score {token!r} is not a number") from None
    if not math.isfinite(value):
        raise ProtocolError(f"{where}: non-finite score {token!r}")
    return value


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


class _Collector:
    """Accumulates (id, score[, key]) rows, refusing duplicate ids."""

    def __init__(self, path: Path, trials: bool = False, label_column: bool = False):
        self.path = path
        # the keys are a table's optional `label` column (CSV, TSV, JSONL), not a format's key field: one of numbers
        # alone (another tool's 0/1 or 1.0/0.0, whose class 1 tools number differently) is not read
        self.label_column = label_column
        self._numeric_key: tuple[int, str] | None = None  # the first label that is a number: (row, label)
        # a score per SASV trial (ASVspoof 5's track-2 submission, spk + filename): an utterance in several trials
        # repeats its CM score, read once; another score for it is refused
        self.trials = trials
        self.ids: list[str] = []
        self.scores: list[float] = []
        self.keys: list[str] = []
        self.failed: list[str] = []
        self.failed_errors: list[str] = []  # the error rows' messages, one per id of failed
        self.gates: list[list[float]] = []
        self.uses: list[list[float]] = []
        self._first_line: dict[str, int] = {}
        self._row: dict[str, int] = {}  # id -> its row
        # what a row's number counts: a line of the file, or an object of a JSON list (whose items share one line)
        self.unit = "line"

    def _at(self, number: int) -> str:
        return _location(self.path, self.unit, number)

    def add(
        self,
        line: int,
        utt: str,
        score: float,
        key: str | None = None,
        gate: list[float] | None = None,
        use: list[float] | None = None,
    ) -> None:
        if not utt:
            raise ProtocolError(f"{self._at(line)}: empty utterance id")
        if utt in self._first_line:
            first = self._first_line[utt]
            if self.trials and score == self.scores[self._row[utt]]:
                return  # the same utterance's CM score in another SASV trial
            if self.trials:
                raise ProtocolError(
                    f"{self._at(line)}: utterance {utt!r} has the score {score!r} here and "
                    f"{self.scores[self._row[utt]]!r} on {self.unit} {first}; a countermeasure scores an utterance "
                    "once, whichever SASV trial (spk) it is in"
                )
            raise ProtocolError(f"{self._at(line)}: duplicate id {utt!r} (first on {self.unit} {first})")
        self._row[utt] = len(self.ids)
        self._first_line[utt] = line
        self.ids.append(utt)
        self.scores.append(score)
        if key is not None:
            key = LABELS_CSV_LABELS.get(key.strip().lower(), key)  # real/fake, bona-fide: as a labels CSV reads them
            if key not in KEYS and not (self.label_column and _is_number(key)):
                raise _key_error(self._at(line), key)
            if key not in KEYS and self._numeric_key is None:
                self._numeric_key = (line, key)  # told at the end: a column of numbers alone is not read
            self.keys.append(key)
        if gate is not None:
            if self.gates and len(gate) != len(self.gates[0]):
                raise ProtocolError(
                    f"{self._at(line)}: {len(gate)} gate weights, where the rows before have {len(self.gates[0])}"
                )
            self.gates.append(gate)
        # a row without router weights after rows with them is refused here too (JSONL keys may differ per row)
        if self.uses and len(use or ()) != len(self.uses[0]):
            raise ProtocolError(
                f"{self._at(line)}: {len(use or ())} MoLEx expert-use values, where the rows before have "
                f"{len(self.uses[0])}"
            )
        if use is not None:
            self.uses.append(use)

    def result(self, fmt: str, id_kind: str = "utt_id", columns: tuple[str, ...] = ()) -> ScoreFile:
        if not self.ids:
            failed = f" ({len(self.failed)} error rows, e.g. {self.failed[0]!r})" if self.failed else ""
            raise ProtocolError(f"{self.path}: no scores in file{failed}")
        keys = np.array(self.keys, dtype=object) if self.keys and len(self.keys) == len(self.ids) else None
        if self._numeric_key is not None:
            if any(k in KEYS for k in self.keys):  # bona fide/spoof words, and a number among them: refused
                raise _key_error(self._at(self._numeric_key[0]), self._numeric_key[1])
            # 0/1: which class is 1 is not said, and the protocol's labels are the evaluated ones (these only check
            # them): ignored as any other column, where the whole file was refused over them
            keys = None
        if self.gates and len(self.gates) != len(self.ids):  # add() is given gates for every row or for none
            raise ProtocolError(f"{self.path}: gate weights on {len(self.gates)} of {len(self.ids)} scored rows")
        gates = np.array(self.gates, dtype=np.float64) if self.gates else None
        if self.uses and len(self.uses) != len(self.ids):
            raise ProtocolError(f"{self.path}: MoLEx expert use on {len(self.uses)} of {len(self.ids)} scored rows")
        return ScoreFile(
            path=str(self.path),
            format=fmt,
            ids=np.array(self.ids, dtype=object),
            scores=np.array(self.scores, dtype=np.float64),
            id_kind=id_kind,
            keys=keys,
            failed=tuple(f for f in self.failed if f not in self._first_line),  # a later row may have scored it
            failed_errors=tuple(e for f, e in zip(self.failed, self.failed_errors) if f not in self._first_line),
            gate_weights=gates,
            expert_use=np.array(self.uses, dtype=np.float64) if self.uses else None,
            expert_names=None if gates is None else recorded_expert_names(self.path, gates.shape[1]),
            columns=columns,
        )


def _key_error(where: str, key: str) -> ProtocolError:
    return ProtocolError(f"{where}: key {key!r} is not 'bonafide' or 'spoof' (or real, fake)")


def _gate_width(names: list[str], where: str, prefix: str = GATE_PREFIX) -> int:
    """How many ``gate_w<k>`` columns (or ``prefix<k>``) ``names`` holds; they must be gate_w0 .. gate_w{E-1},
    each once."""
    pattern = _GATE_COLUMN if prefix == GATE_PREFIX else _EXPERT_USE_COLUMN
    found = sorted(int(m.group(1)) for n in names if (m := pattern.fullmatch(n)))
    if found != list(range(len(found))):
        what = "gate-weight" if prefix == GATE_PREFIX else "MoLEx expert-use"
        raise ProtocolError(f"{where}: {what} columns must be {prefix}0 .. {prefix}<E-1>, got {found}")
    return len(found)


def _gate_values(cells: list[object], where: str, prefix: str = GATE_PREFIX) -> list[float]:
    """A row's gate weights as floats: each a finite number >= 0 (a gate's output is a distribution; so is a MoLEx
    router's, read with ``prefix`` EXPERT_USE_PREFIX)."""
    what = "gate weights" if prefix == GATE_PREFIX else "MoLEx router weights"
    values = []
    for k, cell in enumerate(cells):
        text = "" if cell is None else str(cell).strip()
        try:
            value = float(text)
        except ValueError:
            raise ProtocolError(f"{where}: {prefix}{k} {text!r} is not a number") from None
        if not (math.isfinite(value) and value >= 0):
            raise ProtocolError(f"{where}: {prefix}{k} is {text}; {what} are finite and >= 0")
        values.append(value)
    return values


# --- readers -----------------------------------------------------------------------------------


# the kinds of an SASV trial that are no CM key (its third kind, spoof, is one)
_SASV_KINDS = ("target", "nontarget", "non-target")


def _sasv_scores_error(where: str) -> ProtocolError:
    """The ASVspoof 5 package's SASV score file (``SPEAKER UTT SCORE KIND``) given as CM scores: detected by its first
    line's kind, or met at the first target/nontarget line of a file whose first trial is a spoof one."""
    return ProtocolError(
        f"{where}: an SASV score file (SPEAKER UTT SCORE KIND, KIND target/nontarget/spoof): its scores are a "
        "speaker-verification system's, one per trial, not a countermeasure's bona fide scores; give it as "
        "sdd eval --asv-scores (the t-DCF's ASV rates and the t-EER), or as the --protocol (its kinds key the "
        "utterances), and the countermeasure's scores as --scores"
    )


def _read_whitespace(path: Path, fmt: str, allowed: tuple[int, ...]) -> ScoreFile:
    out = _Collector(path)
    for number, line in _data_lines(path):
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) not in allowed:
            want = " or ".join(map(str, allowed))
            raise ProtocolError(f"{where}: expected {want} whitespace-separated columns, got {len(parts)}: {line!r}")
        if len(parts) == 2:
            out.add(number, parts[0], _score(parts[1], where))
        elif fmt == "asvspoof5_keyed":  # SPEAKER UTT SCORE KEY
            if parts[3].lower() in _SASV_KINDS:  # an SASV score file whose first trial is a spoof one
                raise _sasv_scores_error(where)
            out.add(number, parts[1], _score(parts[2], where), parts[3])
        else:  # UTT SOURCE KEY SCORE
            out.add(number, parts[0], _score(parts[3], where), parts[2])
    return out.result(fmt)


def read_asvspoof2019(path: str | Path) -> ScoreFile:
    """``UTT SOURCE KEY SCORE`` or ``UTT SCORE`` lines (ASVspoof 2019 CM scores)."""
    return _read_whitespace(Path(path), "asvspoof2019", (4, 2))


def read_asvspoof2021(path: str | Path) -> ScoreFile:
    """``UTT SCORE`` lines (ASVspoof 2021 submissions)."""
    return _read_whitespace(Path(path), "asvspoof2021", (2,))


def read_asvspoof5_keyed(path: str | Path) -> ScoreFile:
    """``SPEAKER UTT SCORE KEY`` lines (keyed CM scores of the ASVspoof 5 evaluation package)."""
    return _read_whitespace(Path(path), "asvspoof5_keyed", (4,))


def _records(path: Path, delimiter: str) -> Iterator[tuple[int, list[str], bool]]:
    """(1-based line number where it starts, cells, whether it is a ``#`` line) of every non-blank record of a
    delimited file.

    Records, not lines: ``sdd score`` quotes a path holding a newline, which spans two lines. File names are
    bytes: one that is not UTF-8 comes back as ``sdd score`` wrote it (surrogate escapes), and matches the
    protocol's path read the same way. A line starting with ``#`` outside a quoted field is read on its own, so
    that a quote in a comment cannot swallow the rows after it; the caller tells a comment from a row whose path
    starts with ``#``.
    """
    with open_text(path) as fh:
        numbers: list[int] = []  # physical line number of every line given to the reader
        hashed: list[tuple[int, list[str]]] = []  # `#` lines read on their own, in order

        def lines() -> Iterator[str]:
            inside = False  # within a quoted field that spans lines
            for number, line in enumerate(fh, start=1):
                if not inside and line.lstrip().startswith("#"):
                    hashed.append((number, next(csv.reader([line], delimiter=delimiter), [])))
                    numbers.append(number)
                    yield "\n"  # its place in the order: a blank record that stands for it
                    continue
                numbers.append(number)
                inside ^= line.count('"') % 2 == 1
                yield line

        reader = csv.reader(lines(), delimiter=delimiter)
        consumed = 0
        try:
            for row in reader:
                first = numbers[consumed]
                consumed = reader.line_num
                if hashed and hashed[0][0] == first:
                    yield first, hashed.pop(0)[1], True
                elif any(cell.strip() for cell in row):
                    yield first, row, False
        except csv.Error as exc:  # e.g. a field over csv's size limit: binary data, or a quote never closed
            kind = "TSV" if delimiter == "\t" else "CSV"
            where = numbers[consumed] if consumed < len(numbers) else consumed + 1
            raise ProtocolError(
                f"{path}:{where}: malformed {kind} ({exc}): a quote opened and never closed, or not a score file?"
            ) from None


def _is_row(cells: list[str], width: int, i_score: int, i_error: int | None) -> bool:
    """Whether a ``#`` line is a row (a path starting with ``#``: the header's cells, a number or an error) rather
    than a comment."""
    if len(cells) != width:
        return False
    return _is_number(cells[i_score].strip()) or (i_error is not None and bool(cells[i_error].strip()))


def _separator_hint(header_cells: list[str], delimiter: str, fmt: str) -> str:
    """Why a header has no id or score column when the file was read with the wrong separator (``--score-format
    csv`` given a TSV, or ``tsv`` a CSV): its one field holds the other separator, and the header's ``path``
    and ``score`` were not seen, so the bare "needs an id column" would contradict what the user sees."""
    if len(header_cells) != 1:
        return ""
    for separator, kind, fits in (("\t", "tab", "tsv"), (",", "comma", "csv")):
        if separator != delimiter and separator in header_cells[0]:
            return (
                f"read as {fmt}, the header is one field holding {kind}s: the file is {kind}-separated, so read it "
                f"as {fits} (--score-format {fits}, or no --score-format to detect it): "
            )
    return ""


def _read_delimited(
    path: Path,
    fmt: str,
    delimiter: str,
    id_columns: tuple[str, ...],
    score_columns: tuple[str, ...],
    column: str | None = None,
):
    if column is not None:  # another column than the score (sdd fuse --column raw_score): that one only
        score_columns = (column.strip().lower(),)
    records = _records(path, delimiter)
    first = next(((n, row) for n, row, hashed in records if not hashed), None)  # comments above the header
    if first is None:
        raise ProtocolError(f"{path}: no scores in file")
    header_line, header_cells = first
    header = [h.strip().lower() for h in header_cells]
    # ASVspoof 5's track-2 submission (spk filename cm-score asv-score sasv-score): a row per SASV trial
    out = _Collector(path, trials=fmt == "asvspoof5" and "spk" in header, label_column=True)
    id_col = next((c for c in id_columns if c in header), None)
    score_col = next((c for c in score_columns if c in header), None)
    if id_col is None or score_col is None:
        headerless = any(_is_number(cell) for cell in header)  # e.g. `a.wav,0.93`: a data row, no header above it
        cause = "the first row looks like data, not a header; the file needs a header row: " if headerless else ""
        cause = _separator_hint(header_cells, delimiter, fmt) or cause
        raise ProtocolError(
            f"{path}:{header_line}: {cause}header {header} needs an id column ({' or '.join(id_columns)}) "
            f"and a score column ({' or '.join(score_columns)})"
        )
    if {"window", "start_s", "end_s"} <= set(header):
        # sdd score --windows' sidecar (FILE.windows.csv): one row per window, so a file scored in several windows
        # was "a duplicate id", and one scored in one window was evaluated by that window, not by its file score
        raise ProtocolError(
            f"{path}: this is sdd score's per-window sidecar (columns window, start_s, end_s), one row per window, "
            "not per file: evaluate the score file beside it (FILE.csv, not FILE.windows.csv)"
        )
    i_id, i_score = header.index(id_col), header.index(score_col)
    i_key = header.index("label") if "label" in header else None
    i_error = header.index("error") if "error" in header else None
    i_gates = [header.index(f"{GATE_PREFIX}{k}") for k in range(_gate_width(header, f"{path}:{header_line}"))]
    use_width = _gate_width(header, f"{path}:{header_line}", EXPERT_USE_PREFIX)
    i_uses = [header.index(f"{EXPERT_USE_PREFIX}{k}") for k in range(use_width)]
    for number, row, hashed in records:
        where = f"{path}:{number}"
        if hashed and not _is_row(row, len(header), i_score, i_error):
            continue  # a comment
        if len(row) != len(header):
            text = delimiter.join(row)
            raise ProtocolError(f"{where}: expected {len(header)} columns like the header, got {len(row)}: {text!r}")
        if i_error is not None and row[i_error].strip() and not row[i_score].strip():
            out.failed.append(row[i_id].strip())  # `sdd score` could not read this file: nothing to evaluate
            out.failed_errors.append(row[i_error].strip())
            continue
        key = (row[i_key].strip() or None) if i_key is not None else None  # an empty cell: no label given
        gate = _gate_values([row[i] for i in i_gates], where) if i_gates else None
        use = _gate_values([row[i] for i in i_uses], where, EXPERT_USE_PREFIX) if i_uses else None
        if out.trials and row[i_score].strip() == "-":
            raise ProtocolError(
                f"{where}: {score_col} '-': a track-2 submission of an end-to-end SASV system holds no "
                "countermeasure scores (its sasv-score is evaluated alone, its min a-DCF: sdd eval --asv-scores FILE "
                "[--asv-key KEY] without --scores and --protocol)"
            )
        out.add(number, row[i_id].strip(), _score(row[i_score].strip(), where), key, gate, use)
    columns = tuple(cell.strip() for cell in header_cells)
    return out.result(fmt, id_kind="path" if id_col == "path" else "utt_id", columns=columns)


def read_asvspoof5(path: str | Path, column: str | None = None) -> ScoreFile:
    """TSV with a header naming ``filename`` and ``cm-score`` (ASVspoof 5 submissions); ``column``: read the scores
    of that column instead (any reader of a format with named columns takes it)."""
    return _read_delimited(
        Path(path), "asvspoof5", _DELIMITERS["asvspoof5"], ("filename",), ("cm-score", "cm_score", "score"), column
    )


def read_csv_scores(path: str | Path, column: str | None = None) -> ScoreFile:
    """CSV with a header naming ``path`` or ``utt_id`` and ``score`` (an optional ``label`` is kept)."""
    return _read_delimited(Path(path), "csv", _DELIMITERS["csv"], _ID_COLUMNS, _SCORE_COLUMNS, column)


def read_tsv_scores(path: str | Path, column: str | None = None) -> ScoreFile:
    """Tab-separated, with a header naming ``path``, ``utt_id`` or ``filename`` and ``score`` (as
    :func:`read_csv_scores`; ``filename<TAB>cm-score`` files are ASVspoof 5's, :func:`read_asvspoof5`)."""
    return _read_delimited(Path(path), "tsv", _DELIMITERS["tsv"], _ID_COLUMNS, _SCORE_COLUMNS, column)


def _json_document(path: Path) -> Any:
    """The whole file parsed as one JSON document, or None when it is not one (JSON lines, or malformed)."""
    try:
        with open_text(path) as fh:
            return json.loads(fh.read())
    except json.JSONDecodeError:
        return None


def _location(path: Path, unit: str, number: int) -> str:
    """Where a score row is, for messages: ``path:3`` (line 3) or ``path: item 3`` (of a JSON list, on one line)."""
    return f"{path}:{number}" if unit == "line" else f"{path}: item {number}"


def _json_rows(path: Path) -> Iterator[tuple[int, str, dict[str, Any], str]]:
    """(number, unit, object, its text) of each score row of a JSON lines file (unit ``line``) or of a JSON list of
    objects (unit ``item``).

    A list of row objects (``json.dump(rows)``, pandas' ``to_json(orient="records")``) is read as JSON lines are;
    another whole-file JSON document (e.g. ``sdd eval``'s pretty-printed ``report.json``) is refused as such,
    where it was "line 1: not a JSON object" (the file is one) or, on one line, a header error of its whole text.
    """
    first = next(_data_lines(path), (0, ""))[1]
    document = _json_document(path) if first.startswith("[") or first == "{" else None
    if isinstance(document, list) and all(isinstance(item, dict) for item in document):
        for k, item in enumerate(document, start=1):
            yield k, "item", item, json.dumps(item)
        return
    if document is not None:
        kind = "a list holding non-objects" if isinstance(document, list) else f"a JSON {type(document).__name__}"
        raise ProtocolError(
            f"{path}: one JSON document ({kind}), not score rows; give JSON lines, one "
            '{"path": ..., "score": ...} object per line (as `sdd score --out scores.jsonl` writes), or a JSON list '
            "of such objects"
        )
    for number, line in _data_lines(path):
        where = _location(path, "line", number)
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"{where}: not a JSON object ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ProtocolError(f"{where}: not a JSON object: {line!r}")
        yield number, "line", row, line


def read_jsonl_scores(path: str | Path, column: str | None = None) -> ScoreFile:
    """JSON lines with ``path``/``utt_id``/``filename`` and ``score`` (``sdd score``'s JSONL; error rows kept apart);
    ``column``: the key whose value is read as the score instead."""
    path = Path(path)
    score_key = "score" if column is None else column.strip()
    out = _Collector(path, label_column=True)
    id_kind = "utt_id"
    columns: tuple[str, ...] | None = None
    for number, unit, row, line in _json_rows(path):
        out.unit = unit
        where = _location(path, unit, number)
        if columns is None:
            columns = tuple(row)
        id_col = next((c for c in ("utt_id", "path", "filename") if c in row), None)
        if id_col is None or score_key not in row:
            raise ProtocolError(f"{where}: needs an id (utt_id, path or filename) and a {score_key}: {line!r}")
        id_kind = "path" if id_col == "path" else "utt_id"
        # `or ""` would turn a numeric id 0 into an empty one; only null (or a blank string) is no id
        utt = "" if row[id_col] is None else str(row[id_col]).strip()
        score, error = row[score_key], row.get("error")
        if error and score in (None, ""):
            out.failed.append(utt)  # `sdd score` could not read this file: nothing to evaluate
            out.failed_errors.append(str(error).strip())
            continue
        if isinstance(score, bool) or not isinstance(score, (int, float, str)):
            raise ProtocolError(f"{where}: score {score!r} is not a number")
        key = (str(row["label"]).strip() or None) if row.get("label") is not None else None
        width = _gate_width(list(row), where)
        gate = _gate_values([row[f"{GATE_PREFIX}{k}"] for k in range(width)], where) if width else None
        use_width = _gate_width(list(row), where, EXPERT_USE_PREFIX)
        uses = [row[f"{EXPERT_USE_PREFIX}{k}"] for k in range(use_width)]
        use = _gate_values(uses, where, EXPERT_USE_PREFIX) if use_width else None
        out.add(number, utt, _score(str(score).strip(), where), key, gate, use)
    return out.result("jsonl", id_kind=id_kind, columns=columns or ())


SCORE_READERS: dict[str, Callable[[str | Path], ScoreFile]] = {
    "asvspoof2019": read_asvspoof2019,
    "asvspoof2021": read_asvspoof2021,
    "asvspoof5": read_asvspoof5,
    "asvspoof5_keyed": read_asvspoof5_keyed,
    "csv": read_csv_scores,
    "tsv": read_tsv_scores,
    "jsonl": read_jsonl_scores,
}
_ID_COLUMNS = ("utt_id", "path", "filename")  # what a header line names the id column (csv, tsv, asvspoof5)
_SCORE_COLUMNS = ("score", "cm-score", "cm_score")
_DELIMITERS = {"asvspoof5": "\t", "csv": ",", "tsv": "\t"}  # the formats with a header row, read by _read_delimited
# the formats whose readers take ``column`` (read_scores' column): those that name their columns
NAMED_COLUMN_FORMATS = (*_DELIMITERS, "jsonl")


def _decimal_comma_score(parts: list[str]) -> str | None:
    """The score token of a whitespace-separated line (``UTT SCORE``, ``UTT SOURCE KEY SCORE`` or
    ``SPEAKER UTT SCORE KEY``) when it is written with a decimal comma (``1,5``), else None."""
    candidates = {2: (1,), 4: (3, 2)}.get(len(parts), ())
    return next((parts[i] for i in candidates if DECIMAL_COMMA.fullmatch(parts[i])), None)


def _is_key(token: str) -> bool:
    """Whether ``token`` is a bona fide/spoof key as the readers accept it (any case; real/fake too)."""
    return token.strip().lower() in LABELS_CSV_LABELS


def detect_score_format(path: str | Path) -> str:
    """Name of the score format of ``path``, from its first non-comment line."""
    path = Path(path)
    first = next(_data_lines(path), None)
    if first is None:
        raise ProtocolError(f"{path}: no scores in file")
    number, line = first
    # no text file holds a NUL byte; an audio file (or a gzip, a spreadsheet) given as the scores was refused
    # with hundreds of characters of its header as "cannot tell the score format from 'RIFF...'"
    binary = _binary_kind(path, line)
    if binary is not None:
        raise ProtocolError(
            f"{path}: not a text score file: {binary}; give a score file: `sdd score`'s CSV or JSONL "
            "output (score audio with `sdd score AUDIO --out scores.csv`) or another tool's text scores"
        )
    lower = line.lower()
    if line.startswith(("{", "[")):  # JSON lines, or a JSON list of row objects (read_jsonl_scores)
        return "jsonl"
    if "\t" in line:
        cells = [cell.strip() for cell in lower.split("\t")]
        if "filename" in cells:
            return "asvspoof5"
        if any(c in cells for c in _ID_COLUMNS):  # a header such as utt_id<TAB>score: a TSV, read as the CSV is
            return "tsv"
    parts = line.split()
    comma = _decimal_comma_score(parts)
    if comma is not None:
        # else read as a CSV whose "header" names no id or score column: an error that hides the cause
        raise ProtocolError(
            f"{path}:{number}: score {comma!r} is written with a decimal comma; write scores with a decimal "
            f"point (e.g. {comma.replace(',', '.')!r})"
        )
    if "," in line:
        return "csv"
    if len(parts) == 2 and _is_number(parts[1]):
        return "asvspoof2021"
    if len(parts) == 4 and _is_number(parts[3]):
        return "asvspoof2019"
    if len(parts) == 4 and _is_number(parts[2]) and _is_key(parts[3]):
        return "asvspoof5_keyed"
    if len(parts) == 4 and _is_number(parts[2]) and parts[3].lower() in _SASV_KINDS:
        raise _sasv_scores_error(f"{path}:{number}")
    tokens = re.split(r"[\s;]+", lower)
    if any(c in tokens for c in _ID_COLUMNS) and any(c in tokens for c in _SCORE_COLUMNS):
        # e.g. `utt_id score` above `UTT SCORE` lines, or a spreadsheet's `utt_id;score`: was "cannot tell the score
        # format", not saying why
        separated = "semicolon" if ";" in line else "space"
        raise ProtocolError(
            f"{path}:{number}: {line!r} is a header of {separated}-separated columns, which no score format has; "
            "separate its columns (and every row's) with tabs or commas (a TSV or CSV file)"
            + ("" if separated == "semicolon" else ", or drop the header line of 'UTT SCORE' lines")
        )
    shown = line if len(line) <= 120 else line[:120] + "..."  # a long line (binary data) is not shown whole
    raise ProtocolError(
        f"{path}:{number}: cannot tell the score format from {shown!r}; expected 'UTT SCORE', "
        "'UTT SOURCE KEY SCORE', a 'filename<TAB>cm-score' or 'utt_id<TAB>score' TSV header, a 'path,score' CSV "
        "header or JSON lines "
        f"(or pass the format explicitly: {', '.join(SCORE_READERS)})"
    )


def score_columns(path: str | Path, format: str | None = None) -> tuple[str, ...]:
    """:attr:`ScoreFile.columns` of ``path`` (``format`` as :func:`read_scores` takes it) from its header or first
    JSON line alone: a file of a header without rows has them too. Raises ProtocolError (or OSError, or
    ``ValueError`` for a first line that is not JSON) when they cannot be read."""
    path = Path(path)
    fmt = format or detect_score_format(path)
    if fmt in _DELIMITERS:
        first = next((row for _, row, hashed in _records(path, _DELIMITERS[fmt]) if not hashed), [])
        return tuple(cell.strip() for cell in first)
    if fmt == "jsonl":
        first = next(_data_lines(path), None)
        row = None if first is None else json.loads(first[1])
        return tuple(row) if isinstance(row, dict) else ()
    return ()


def read_scores(path: str | Path, format: str | None = None, column: str | None = None) -> ScoreFile:
    """Read a score file; ``format`` is one of :data:`SCORE_READERS` or None to detect it; ``column``: the column
    (a CSV's or TSV's header cell, in any case, or a JSONL key) read as the scores instead of ``score``, in a format
    with named columns (:data:`NAMED_COLUMN_FORMATS`), e.g. ``raw_score`` or a mixture's ``expert_score0`` of an
    ``sdd score`` output."""
    path = Path(path)
    if path.is_dir():  # e.g. the folder sdd score wrote into, not its output file
        raise ProtocolError(f"{path}: is a folder; give the score file in it")
    if not path.is_file():
        raise ProtocolError(f"{path}: no such score file")
    try:
        fmt = format or detect_score_format(path)
        reader = SCORE_READERS.get(fmt)
        if reader is None:
            raise ProtocolError(f"unknown score format {fmt!r}; known: {', '.join(SCORE_READERS)}")
        if column is None:
            read = reader(path)
        elif fmt in NAMED_COLUMN_FORMATS:
            read = reader(path, column=column)  # type: ignore[call-arg]
        else:
            raise ProtocolError(
                f"{path}: a {fmt} score file has no named columns, so no column {column!r}: its one score is read"
            )
    except UnicodeDecodeError as exc:  # only a UTF-16 file (its BOM) is decoded strictly
        raise ProtocolError(f"{path}: not readable UTF-16 text ({exc.reason} at byte {exc.start})") from None
    base = recorded_base_dir(path)
    return dataclasses.replace(read, base_dir=base) if base else read


# --- joining with a protocol ----------------------------------------------------------------


@dataclass
class ScoreMatch:
    """Protocol rows that have a score, in protocol order, and what did not match.

    table: matched rows; scores: (len(table),) aligned scores; matched_by: 'utt_id', 'path'
    or 'stem'; warnings: human-readable notes on partial matches or key disagreements;
    gate_weights: (len(table), E) the score file's gate weights in the same order, or None;
    protocol_rows: (len(table),) the matched rows' positions in the protocol table that was matched.
    """

    table: UtteranceTable
    scores: np.ndarray
    matched_by: str
    n_scores: int
    n_protocol: int
    n_unmatched_scores: int
    n_unmatched_protocol: int
    unmatched_score_examples: list[str] = field(default_factory=list)
    unmatched_protocol_examples: list[str] = field(default_factory=list)
    n_key_disagreements: int = 0
    # protocol utterances that `sdd score` could not score (error rows); not part of n_unmatched_protocol,
    # which counts the protocol utterances the score file does not mention at all
    n_failed_scores: int = 0
    # scores of protocol utterances left out of the evaluation (match_scores' ``outside``: other partitions);
    # not part of n_unmatched_scores, which counts the scores of no protocol utterance at all
    n_scores_outside: int = 0
    warnings: list[str] = field(default_factory=list)
    gate_weights: np.ndarray | None = None  # (len(table), E) aligned like scores, when the score file has them
    expert_use: np.ndarray | None = None  # (len(table), E) a MoLEx model's mean router weights, aligned alike
    expert_names: tuple[str, ...] | None = None  # the score file's names of those E experts, when recorded
    protocol_rows: np.ndarray | None = None  # (len(table),) int64; set by match_scores
    score_rows: np.ndarray | None = None  # (len(table),) int64: each matched row's row of the score file; likewise
    # the protocol rows counted in n_failed_scores, and each one's error row (its position in ScoreFile.failed)
    failed_rows: np.ndarray | None = None
    failed_at: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {
            "matched_by": self.matched_by,
            "n_scores": self.n_scores,
            "n_protocol": self.n_protocol,
            "n_matched": len(self.table),
            "n_unmatched_scores": self.n_unmatched_scores,
            "n_unmatched_protocol": self.n_unmatched_protocol,
            "unmatched_score_examples": self.unmatched_score_examples,
            "unmatched_protocol_examples": self.unmatched_protocol_examples,
            "n_key_disagreements": self.n_key_disagreements,
            "n_failed_scores": self.n_failed_scores,
            "n_scores_outside": self.n_scores_outside,
            "warnings": self.warnings,
        }


def _stem(value: str) -> str:
    return PurePosixPath(value.replace("\\", "/")).stem


def _norm_path(value: str, base: str | None = None) -> str:
    # absolute, so `sdd score /abs/dir` paths meet a protocol's cwd-relative paths to the same files; a
    # relative one from the folder it was written in (base), when that is recorded
    if not value:
        return ""
    value = value.replace("\\", "/")
    return os.path.normpath(os.path.join(base, value)) if base else os.path.abspath(value)


# a path that normalising leaves as it is, absolute or relative: no backslash, no empty, '.' or '..' component
_PLAIN_PATH = re.compile(r"/?(?!\.\.?(?:/|\Z))[^/\\]+(?:/(?!\.\.?(?:/|\Z))[^/\\]+)*\Z")
_NOT_PLAIN = ("\\", "//", "/.", "\n.", "/\n", "\n\n")  # in the joined text of paths that are all plain, none of these


def _text(values: object) -> np.ndarray:
    """``values`` as the (N,) object array of ``np.asarray(values).astype(str)``, without copying it when that
    changes nothing (str values without NUL: numpy's fixed-width text drops trailing ones)."""
    values = np.asarray(values, dtype=object)
    try:
        clean = "\x00" not in "".join(values.tolist())
    except TypeError:  # not all str
        clean = False
    return values if clean else values.astype(str).astype(object)


def _all_plain(values: np.ndarray) -> str | None:
    """The ``values`` joined by newlines when all are plain paths (:data:`_PLAIN_PATH`), told from one scan of
    that text; None when one may not be (then :func:`_plain_mask` tells which)."""
    try:
        joined = "\n".join(values.tolist())
    except TypeError:  # not all str
        return None
    if joined.count("\n") != len(values) - 1 or any(mark in joined for mark in _NOT_PLAIN):
        return None
    return joined if joined[:1] not in ("", ".") and not joined.endswith("/") else None


def _plain_mask(values: np.ndarray) -> np.ndarray:
    """(N,) bool: which ``values`` are plain paths (:data:`_PLAIN_PATH`)."""
    return np.fromiter(
        (isinstance(v, str) and _PLAIN_PATH.match(v) is not None for v in values.tolist()),
        dtype=bool,
        count=len(values),
    )


def _norm_paths(values: np.ndarray, base: str | None = None) -> np.ndarray:
    """(N,) object: :func:`_norm_path` of every value. A plain path (:data:`_PLAIN_PATH`), the usual one, is not
    normalised one by one: kept when absolute, put under the normalised folder when relative."""
    prefix = _norm_path("x", base)[:-1]  # what normalising puts before a plain relative path
    plain = None if _all_plain(values) is not None else _plain_mask(values)
    out = np.empty(len(values), dtype=object)
    if plain is None:
        out[:] = [v if v[0] == "/" else prefix + v for v in values.tolist()]
    else:
        out[:] = [
            (v if v[0] == "/" else prefix + v) if ok else _norm_path(v, base) for v, ok in zip(values.tolist(), plain)
        ]
    return out


def _plain_stem(value: str) -> str:
    """:func:`_stem` of a plain path (:data:`_PLAIN_PATH`): its last component without its last suffix."""
    name = value.rpartition("/")[2]
    head, _, suffix = name.rpartition(".")
    return head if head and suffix else name  # as PurePath.stem: not for '.hidden' or 'name.'


def _stems(values: np.ndarray) -> np.ndarray:
    """(N,) object: :func:`_stem` of every value, a plain path's (the usual one) without parsing it as a path."""
    plain = None if _all_plain(values) is not None else _plain_mask(values)
    out = np.empty(len(values), dtype=object)
    if plain is None:
        out[:] = [_plain_stem(v) for v in values.tolist()]
    else:
        out[:] = [_plain_stem(v) if ok else _stem(v) for v, ok in zip(values.tolist(), plain)]
    return out


def _distinct_paths(ids: np.ndarray) -> bool:
    """Whether :func:`_norm_path` surely keeps distinct ``ids`` distinct: all are plain paths, all absolute
    or all relative (told without normalising them)."""
    joined = _all_plain(np.asarray(ids, dtype=object))
    if joined is None:
        return False
    n_absolute = joined.count("\n/") + joined.startswith("/")
    return n_absolute in (0, len(ids))


def _protocol_keys(utt: np.ndarray, paths: np.ndarray, how: str) -> np.ndarray:
    """(N,) object: the protocol rows' keys by path ('' for a path-less row) or by stem; ``utt`` and ``paths``
    as :func:`_text` gives them (by utt_id, the keys are ``utt``)."""
    has = paths != ""
    if how == "path":
        out = np.full(len(paths), "", dtype=object)
        out[has] = _norm_paths(paths[has])
        return out
    out = utt.copy()  # a path-less row's stem is its utt_id
    out[has] = _stems(paths[has])
    return out


def _score_keys(ids: np.ndarray, how: str, base: str | None = None) -> np.ndarray:
    if how == "utt_id":
        return _text(ids)
    ids = np.asarray(ids, dtype=object)
    return _norm_paths(ids, base) if how == "path" else _stems(ids)


def _rows_of(keys: np.ndarray, key: str) -> np.ndarray:
    """Positions of ``key`` in ``keys`` (compared as str: ``keys == key`` would make it numpy text, without a
    trailing NUL)."""
    return np.flatnonzero(keys == np.array([key], dtype=object))


def _try_match(proto: np.ndarray, sk: np.ndarray, how: str, scores: ScoreFile) -> tuple[np.ndarray | None, str]:
    """(protocol row of every score row, -1 where none; "") for one key kind, from the protocol's keys ``proto``
    and the score rows' ``sk``; (None, why) when the keys are ambiguous.

    Raises ProtocolError when, by path, two score rows spelled differently ("data/a.wav" and
    "./data/a.wav", or a relative and an absolute path) are the same protocol file: it was scored
    twice, and which of its scores to evaluate cannot be told.
    """
    filled = np.flatnonzero(proto != "")  # an empty key (a path-less row by path) matches nothing
    index = pd.Index(proto[filled], dtype=object)
    repeated = pd.Series(sk, dtype=object).duplicated().to_numpy() & (sk != "")
    shared = pd.unique(sk[repeated])  # keys of several score rows, in the order of their second row
    if how == "path" and len(shared):
        twice = shared[pd.Index(shared, dtype=object).isin(index)]
        if len(twice):
            spelled = [" and ".join(repr(str(scores.ids[j])) for j in _rows_of(sk, k)) for k in twice[:3]]
            raise ProtocolError(
                f"{scores.path}: {len(twice)} protocol file(s) appear more than once under different spellings of "
                f"their path, e.g. {'; '.join(spelled)}; keep one score per file"
            )
    if not index.is_unique:
        return None, f"two protocol rows share a {how}"
    if len(shared):  # e.g. equal stems in different folders: not usable
        example = _rows_of(sk, shared[0])[:2]
        return None, f"score ids {[str(scores.ids[j]) for j in example]} share a {how}"
    found = index.get_indexer(pd.Index(sk, dtype=object, copy=False))  # not inferred as str: converted back
    hit = found >= 0
    rows = np.full(len(sk), -1, dtype=np.int64)
    rows[hit] = filled[found[hit]]
    return rows, ""


# what the rows of ``outside`` are outside of, as match_scores' note words it (``selection``)
OUTSIDE_PARTITIONS = "the selected partitions"


def _refuse_all_outside(
    table: UtteranceTable, scores: ScoreFile, outside: UtteranceTable | None, selection: str
) -> None:
    """When none of ``scores`` matches ``table`` but they are scores of the rows ``outside`` it (``sdd eval
    --partitions train`` of a file of val and test scores), say so: the generic refusal said that none of them
    matched the protocol by utt_id, path or stem, and listed protocol paths unlike the scores', which reads as a
    join failure, not a selection that holds none of the scored files."""
    if outside is None or not len(outside):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            elsewhere = match_scores(outside, scores)
    except ProtocolError:  # they are of no protocol row at all: the generic refusal says that
        return
    where = ""
    # the partitions they are of, where partitions made the selection (not a reader's option, such as codecs)
    if selection.startswith(OUTSIDE_PARTITIONS) and elsewhere.table.has_column("partition"):
        found = sorted(set(elsewhere.table.column("partition").astype(str).tolist()) - {""})
        where = f" (partitions {', '.join(found)}: e.g. --partitions {' '.join(found)})" if found else ""
    raise ProtocolError(
        f"{scores.path}: none of its {len(scores)} scores is of the protocol's {len(table)} utterances inside "
        f"{selection}: {len(elsewhere.table)} of them are of its utterances outside it{where}; select the trials "
        "this file scores, or give the scores of the selected ones"
    )


def match_scores(
    table: UtteranceTable,
    scores: ScoreFile,
    outside: UtteranceTable | None = None,
    selection: str = OUTSIDE_PARTITIONS,
) -> ScoreMatch:
    """Join scores with protocol rows by utt_id, else path, else path stem (the best-covering wins).

    Raises ProtocolError when no score matches; a partial match is reported in the result's
    ``warnings`` (and as a UserWarning) and only the matched rows are kept.

    ``outside``: the protocol's rows left out of the evaluation (its other partitions, ``sdd eval
    --partitions``); a score of one of them is counted and named as such (``n_scores_outside``), not as a score
    with no protocol entry: a whole ASVspoof 2021 score file evaluated on its ``eval`` phase has no stray score.
    ``selection``: what left them out, as the note says it (the selected partitions; a reader's selection option,
    ``codecs=[C01]``, leaves trials out alike).

    A key kind that cannot cover more rows than one before it is not tried (its keys are not built): at
    ASVspoof 5 size, 1M trials keyed by utt_id, building every path and stem took 30 s. By path it is still
    tried when two score ids might be spellings of one file, so that such a file is named as before.
    """
    utt = _text(table.column("utt_id"))
    paths: np.ndarray | None = None  # read when a key kind needs them
    most = min(len(table), len(scores))  # matches a key kind can have at most
    # how, protocol keys, score row -> row, count, score keys
    best: tuple[str, np.ndarray, np.ndarray, int, np.ndarray] | None = None
    ambiguous: list[str] = []
    for how in ("utt_id", "path", "stem"):
        if best is not None and best[3] >= most and (how == "stem" or _distinct_paths(scores.ids)):
            continue  # no more matches to be had (and no file scored under two spellings of its path)
        if how == "utt_id":
            proto = utt
        else:
            paths = _text(table.column("path")) if paths is None else paths
            proto = _protocol_keys(utt, paths, how)
        sk = _score_keys(scores.ids, how, scores.base_dir)
        found, why = _try_match(proto, sk, how, scores)
        if why:
            ambiguous.append(why)
        count = 0 if found is None else int((found >= 0).sum())
        if count and (best is None or count > best[3]):
            best = (how, proto, found, count, sk)
    if best is None:
        _refuse_all_outside(table, scores, outside, selection)
        unusable = f" (not matched by a key that is not unique: {'; '.join(ambiguous)})" if ambiguous else ""
        raise ProtocolError(
            f"{scores.path}: none of its {len(scores)} score ids matches the protocol's {len(table)} utterances "
            f"by utt_id, path or file stem{unusable}; score ids look like {list(scores.ids[:3])}, protocol utt_ids "
            f"like {list(table.column('utt_id')[:3])} and paths like {list(table.column('path')[:3])}"
        )
    how, proto_keys, found, _, score_keys = best
    hit = found >= 0
    if outside is not None and len(outside) and not hit.all():  # scores of the protocol's rows left out
        outside_utt = _text(outside.column("utt_id"))
        outside_keys = (
            outside_utt if how == "utt_id" else _protocol_keys(outside_utt, _text(outside.column("path")), how)
        )
        elsewhere = ~hit & pd.Index(score_keys, dtype=object).isin(outside_keys[outside_keys != ""])
    else:
        elsewhere = np.zeros(len(hit), dtype=bool)
    score_of = np.full(len(table), -1, dtype=np.int64)  # protocol row -> its score row
    score_of[found[hit]] = np.flatnonzero(hit)
    rows = np.flatnonzero(score_of >= 0)
    score_rows = score_of[rows]
    unmatched_score = np.flatnonzero(~hit & ~elsewhere)
    n_outside = int(elsewhere.sum())
    proto_mask = score_of < 0
    # error rows count only for files the protocol lists (by the same key kind as the scores)
    failed_rows = np.zeros(len(table), dtype=bool)
    if scores.failed:
        failed_keys = _score_keys(np.array(scores.failed, dtype=object), how, scores.base_dir)
        failed_rows = proto_mask & pd.Index(proto_keys, dtype=object).isin(failed_keys)
    failed = utt[failed_rows]
    failed_at = np.zeros(0, dtype=np.int64)
    if failed_rows.any():  # each one's error row: the first of its key (a file can fail twice in one file)
        first_of = {k: j for j, k in reversed(list(enumerate(failed_keys.tolist())))}
        failed_at = np.array([first_of[k] for k in proto_keys[failed_rows].tolist()], dtype=np.int64)
    unmatched_proto = np.flatnonzero(proto_mask & ~failed_rows)
    matched = table.subset(rows)
    notes = []
    if n_outside:
        notes.append(
            f"{n_outside} of {len(scores)} scores are of protocol utterances outside {selection} (not evaluated)"
        )
    if len(unmatched_score):
        notes.append(f"{len(unmatched_score)} of {len(scores)} scores have no protocol entry (ignored)")
    if len(failed):
        examples = failed[:3].tolist()
        notes.append(f"{len(failed)} file(s) could not be scored (error rows, not evaluated), e.g. {examples}")
    if len(unmatched_proto):
        notes.append(f"{len(unmatched_proto)} of {len(table)} protocol utterances have no score (not evaluated)")
    n_disagree = 0
    if scores.keys is not None:
        file_keys = scores.keys[score_rows].astype(str)
        n_disagree = int((file_keys != matched.column("label").astype(str)).sum())
        if n_disagree:
            notes.append(f"{n_disagree} score-file keys disagree with the protocol labels (protocol labels used)")
    for note in notes:
        warnings.warn(f"{scores.path}: {note}", UserWarning, stacklevel=2)
    return ScoreMatch(
        table=matched,
        scores=scores.scores[score_rows],
        matched_by=how,
        n_scores=len(scores),
        n_protocol=len(table),
        n_unmatched_scores=len(unmatched_score),
        n_scores_outside=n_outside,
        n_unmatched_protocol=len(unmatched_proto),
        unmatched_score_examples=[str(scores.ids[j]) for j in unmatched_score[:5]],
        unmatched_protocol_examples=utt[unmatched_proto[:5]].tolist(),
        n_key_disagreements=n_disagree,
        n_failed_scores=len(failed),
        warnings=notes,
        gate_weights=None if scores.gate_weights is None else scores.gate_weights[score_rows],
        expert_use=None if scores.expert_use is None else scores.expert_use[score_rows],
        expert_names=scores.expert_names,
        protocol_rows=rows,
        score_rows=score_rows,
        failed_rows=np.flatnonzero(failed_rows),
        failed_at=failed_at,
    )


@dataclass(frozen=True)
class CommonTrials:
    """Several score files joined with one protocol (:func:`common_trials`): the trials every file scores.

    rows: (N,) the protocol table's rows every file scores, in protocol order; scores: (F, N) the F files' scores of
    them; score_rows: (F, N) each file's row of each of them (its id is ``files[f].ids[score_rows[f, n]]``);
    partial: the protocol rows some of the files score but not all, in protocol order; matched_by: (F,) how each
    file was joined (:attr:`ScoreMatch.matched_by`); failed: (F,) each file's (protocol rows it has an error row
    for, each one's position in its ``failed``) (:attr:`ScoreMatch.failed_rows`, ``failed_at``).
    """

    rows: np.ndarray
    scores: np.ndarray
    score_rows: np.ndarray
    partial: np.ndarray
    matched_by: tuple[str, ...] = ()
    failed: tuple[tuple[np.ndarray, np.ndarray], ...] = ()


def common_trials(
    table: UtteranceTable,
    files: list[ScoreFile] | tuple[ScoreFile, ...],
    outside: UtteranceTable | None = None,
    selection: str = OUTSIDE_PARTITIONS,
) -> tuple[CommonTrials, list[str]]:
    """Join every score file with ``table`` as :func:`match_scores` does (``outside`` as there), and keep the trials
    every file scores: ``sdd compare``'s runs and ``sdd fuse``'s systems. Returns the join and each file's notes
    on its own match (prefixed with its path); the files' partial coverage of each other is the caller's to word.
    """
    # which protocol rows each file scores, and their scores, as (F, N) arrays: per-row dicts of 1M trials took
    # seconds and about 100 MB per file
    scored = np.zeros((len(files), len(table)), dtype=bool)
    values = np.zeros((len(files), len(table)), dtype=np.float64)
    where = np.zeros((len(files), len(table)), dtype=np.int64)
    notes: list[str] = []
    matched_by: list[str] = []
    failed: list[tuple[np.ndarray, np.ndarray]] = []
    for k, score_file in enumerate(files):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # kept as notes below
            match = match_scores(table, score_file, outside, selection)
        notes += [f"{score_file.path}: {n}" for n in match.warnings]
        scored[k, match.protocol_rows] = True
        values[k, match.protocol_rows] = match.scores
        where[k, match.protocol_rows] = match.score_rows
        matched_by.append(match.matched_by)
        failed.append((match.failed_rows, match.failed_at))
    common = scored.all(axis=0)
    rows = np.flatnonzero(common)
    partial = np.flatnonzero(scored.any(axis=0) & ~common)
    aligned = CommonTrials(
        rows=rows,
        scores=values[:, rows],
        score_rows=where[:, rows],
        partial=partial,
        matched_by=tuple(matched_by),
        failed=tuple(failed),
    )
    return aligned, notes
