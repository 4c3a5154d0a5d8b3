"""A plain labels file: a CSV with ``path`` and ``label`` columns, what a practitioner writes by hand.

    path,label
    calls/0001.wav,bonafide
    calls/0002.wav,spoof

``label`` is ``bonafide`` / ``bona-fide`` / ``bona_fide`` / ``bona fide`` / ``real`` / ``genuine`` (ASVspoof
2017's and ADD's word) or ``spoof`` / ``fake``, in any case (the names a labelled folder's sub-folders may take,
and the labels an utterance table's file may hold).
Optional columns ``attack``, ``source`` and ``speaker`` become the table's columns of those names (the
evaluation's per-attack and per-source tables); ``partition``, ``attack_type``, ``codec``, ``transmission``,
``language`` and ``vocoder`` are kept too. Bona fide rows get the attack ``bonafide`` whatever the column says; a
spoof's ``-`` means unknown (''). ``utt_id`` is the path as written, so the ``path`` column of
``sdd score``'s output (scored with the same paths) matches it directly; relative paths are read from
``root`` (default: the CSV's folder). The separator may be ``,``, ``;`` (spreadsheet exports in many
locales) or a tab, told from the header line; column names are case-insensitive (``Path,Label``).
A path written with Windows separators (``calls\\0001.wav``, a CSV made on Windows) that does not exist as
written but does with forward slashes is read as ``calls/0001.wav`` (a path that exists as written is kept:
on Linux and macOS a backslash may be part of a file name); ``utt_id`` stays the path as written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.audio.files import resolve_written_path
from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    BONAFIDE_SPOOF_WORDS,
    DELIMITERS,
    build_table,
    is_preamble,
    iter_csv,
    located,
    map_label,
    require_dir,
    table_columns,
)
from sddkit.data.table import OPTIONAL_COLUMNS, UtteranceTable
from sddkit.data.text import open_text

LABELS_CSV_LABELS = BONAFIDE_SPOOF_WORDS  # the words of a labelled folder's sub-folders and an utterance table's labels
_EXTRA_COLUMNS = ("attack", "source", "speaker")  # optional; empty when absent
_KEPT_COLUMNS = OPTIONAL_COLUMNS  # partition, attack_type, ...: kept when present


def labels_csv_delimiter(header_line: str) -> str | None:
    """The separator (``,``, ``;`` or tab) under which ``header_line`` names ``path`` and ``label``."""
    for delimiter in DELIMITERS:
        names = {h.strip().strip('"').lower() for h in header_line.split(delimiter)}
        if {"path", "label"} <= names:
            return delimiter
    return None


def _header_line(path: Path) -> str:
    try:
        with open_text(path, strict=True) as fh:
            for raw in fh:
                if not is_preamble(raw):
                    return raw.strip()
    except (OSError, UnicodeDecodeError):
        pass  # iter_csv reports a missing or undecodable file
    return ""


def _resolved(written: str, root: Path) -> str:
    """The file ``written`` names: relative to ``root`` unless absolute. A path written on Windows
    (``audio\\x.wav``) that does not exist as given, where its form with forward slashes does, is that file
    (on POSIX a backslash is part of a file name); a path that exists as given is never changed."""
    return resolve_written_path(written, lambda w: w if os.path.isabs(w) else str(root / w))


@dataclass
class LabelsCSVConfig:
    protocol: str  # the CSV file
    root: str | None = None  # folder of relative paths (default: the CSV's folder)
    corpus: str = "labels_csv"


@PROTOCOLS.register("labels_csv", config=LabelsCSVConfig)
@table_columns(*_KEPT_COLUMNS)
def read_labels_csv(cfg: LabelsCSVConfig, **_: object) -> UtteranceTable:
    """CSV with path,label (bonafide/spoof, real/fake) and optional attack, source, speaker, partition columns."""
    meta = Path(cfg.protocol)
    root = require_dir(cfg.root, "audio root") if cfg.root is not None else meta.parent
    delimiter = labels_csv_delimiter(_header_line(meta)) if meta.is_file() else None
    records = []
    first_line: dict[str, tuple[int, str]] = {}  # normalised path -> (line, as written)
    rows = iter_csv(meta, delimiter=delimiter or ",", required=("path", "label"), what="labels CSV", lower_header=True)
    for lineno, row in rows:
        written = row["path"].strip()
        if not written:
            raise located(meta, lineno, "empty path")
        path = _resolved(written, root)
        # x.wav and ./x.wav are one file: listed twice (perhaps under both labels) it would train twice
        key = os.path.normpath(path)
        if key in first_line:
            line, as_written = first_line[key]
            raise located(meta, lineno, f"{written!r} is the file of line {line} ({as_written!r}) again")
        first_line[key] = (lineno, written)
        label = map_label(row["label"], LABELS_CSV_LABELS, meta, lineno)
        extra = {col: row.get(col, "").strip() for col in _EXTRA_COLUMNS}
        attack = "bonafide" if label == "bonafide" else ("" if extra["attack"] == "-" else extra["attack"])
        records.append(
            {
                "utt_id": written,
                "path": path,
                "label": label,
                "attack": attack,
                "source": extra["source"] or cfg.corpus,
                "speaker": extra["speaker"],
                "corpus": cfg.corpus,
                **{col: row[col].strip() for col in _KEPT_COLUMNS if col in row},
            }
        )
    return build_table(records, meta)
