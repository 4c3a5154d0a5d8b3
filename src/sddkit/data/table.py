"""The utterance table: the common currency between protocol readers, datasets, scoring and evaluation.

One row per utterance with these columns (every reader fills all of them):

| column     | meaning                                                                 |
|------------|-------------------------------------------------------------------------|
| utt_id     | unique id (ASVspoof utterance id, or the path stem / relative path)     |
| path       | audio file path ('' when the protocol has no audio next to it)          |
| label      | 'bonafide' or 'spoof'                                                   |
| attack     | attack / generator system ('bonafide' for real speech, '' if unknown)   |
| source     | domain: the dataset part, demo page or corpus subset it came from       |
| speaker    | speaker id ('' if unknown)                                              |
| corpus     | corpus name (asvspoof2019_la, in_the_wild, sddbench, ...)               |
| duration_s | duration in seconds (NaN when the protocol does not say)                |

Optional columns kept when present: partition, attack_type, codec, transmission, language, vocoder.
Every column but ``duration_s`` holds text, as in the table's CSV copy (a number ``1.0`` is ``'1'``, NaN ``''``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from sddkit.errors import ProtocolError

REQUIRED_COLUMNS: tuple[str, ...] = ("utt_id", "path", "label", "attack", "source", "speaker", "corpus", "duration_s")
OPTIONAL_COLUMNS: tuple[str, ...] = ("partition", "attack_type", "codec", "transmission", "language", "vocoder")
LABELS: tuple[str, str] = ("spoof", "bonafide")  # index = class id: 1 = bona fide

# the words a hand-made dataset uses for its two classes (lower case): a labels CSV's label values, a labelled
# folder's sub-folder names and an utterance table's labels read through this one mapping, so they never accept
# different spellings
BONAFIDE_SPOOF_WORDS: dict[str, str] = {
    "bonafide": "bonafide",
    "bona-fide": "bonafide",
    "bona_fide": "bonafide",  # In-the-Wild's and others' spellings
    "bona fide": "bonafide",
    "genuine": "bonafide",  # ASVspoof 2017's and ADD's word
    "real": "bonafide",
    "spoof": "spoof",
    "fake": "spoof",
}
# the words besides bonafide/spoof, as error messages list them
OTHER_LABEL_WORDS = "/".join(w for w in BONAFIDE_SPOOF_WORDS if w not in LABELS)


def label_word(word: object) -> str | None:
    """``'bonafide'``/``'spoof'`` for a word of :data:`BONAFIDE_SPOOF_WORDS` (any case, outer spaces ignored), else
    None."""
    return BONAFIDE_SPOOF_WORDS.get(str(word).strip().lower())


def _as_csv_text(df: pd.DataFrame) -> pd.DataFrame:
    """Every column but ``duration_s`` as the text the same table holds as CSV.

    A Parquet table written elsewhere types its columns: an integer ``speaker`` with a gap is float
    (``1.0``), a ``pair_id`` gap is NaN, a categorical refuses ``''``. Read as they are, ``exclude: {pair_id:
    [1]}`` matched nothing, every NaN ``pair_id`` fell into one fold group, and the folds of the same table
    differed between its CSV and Parquet copies. Missing values become ``''``, integral floats lose their
    ``.0``.
    """
    out = df.copy()
    for col in out.columns:
        if col == "duration_s":
            continue
        column = out[col]
        # numeric columns element by element in their own dtype (astype(object) widens float32 to a Python float)
        if pd.api.types.is_numeric_dtype(column.dtype):
            out[col] = _numeric_text(column)
        else:
            out[col] = [_cell_text(v) for v in column.astype(object)]
    return out


def _cell_text(value: object) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        # str() of the value's own type: float32 0.1 is "0.1" (widened to float64 first it was 0.10000000149011612)
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value)


def _numeric_text(column: pd.Series) -> np.ndarray:
    """(N,) object array: :func:`_cell_text` of every value of a numeric column, vectorised where it can be.

    Element by element in Python, a 1M-row column took over a second; integers and integral floats (a ``pair_id``
    with gaps) are the common case and convert as arrays. Other floats (0.1, inf) and extension dtypes (``Int64``
    with ``pd.NA``) keep the per-value rule."""
    values = column.to_numpy()
    if values.dtype.kind in "iub":  # str() of an int or bool is the array's text
        return _int_text(values)
    if values.dtype.kind != "f":
        return np.array([_cell_text(v) for v in values], dtype=object)
    out = np.full(values.shape, "", dtype=object)
    wide = values.astype(np.float64, copy=False)  # exact for float16/32; their own dtype overflows at 2**62
    integral = np.isfinite(wide) & (np.abs(wide) < 2.0**62) & (np.floor(wide) == wide)
    out[integral] = _int_text(values[integral].astype(np.int64))
    rest = np.flatnonzero(~integral & ~np.isnan(values))
    out[rest] = [_cell_text(values[i]) for i in rest]
    return out


def _int_text(values: np.ndarray) -> np.ndarray:
    """(N,) object array of ``str(v)`` for integer or bool ``values`` (pandas' conversion: numpy's is 3x slower)."""
    return pd.Series(values).astype(str).to_numpy(dtype=object)


def _skip_preamble(fh: IO[str]) -> None:
    """Move ``fh`` to its header line, past the blank and ``#`` lines before it: format detection skips them (a
    table's CSV with a comment line on top is detected as an utterance table), and pandas took the comment for the
    header, then said the table lacked ``utt_id``."""
    while True:
        start = fh.tell()
        line = fh.readline()
        text = line.strip()
        if not line or (text and not text.startswith("#")):
            fh.seek(start)
            return


def _is_text(column: pd.Series) -> bool:
    return column.dtype == object or isinstance(column.dtype, pd.StringDtype)  # pandas 3: str


def _canonical_labels(column: pd.Series, where: Path) -> pd.Series:
    """The text ``label`` column of a table file, every word a labels CSV takes as a label (``real``, ``Fake``,
    ``bona-fide``: any case) written as ``bonafide``/``spoof``; any other value is a ProtocolError naming the words.
    A table written by hand or by another tool was refused for the ``real``/``fake`` that a ``path,label`` CSV of
    the same files reads."""
    if column.isin(LABELS).all():
        return column
    canonical = {v: label_word(v) for v in column.unique()}
    unknown = [v for v, label in canonical.items() if label is None]
    if unknown:
        raise ProtocolError(
            f"{where}: labels must be 'bonafide' or 'spoof' (or {OTHER_LABEL_WORDS}, in any case); found {unknown[:5]}"
        )
    return column.map(canonical).astype(str)


def _has_non_text(column: pd.Series) -> bool:
    """Whether an object column holds a cell that is not a ``str`` (a number, None, NaN): a fast check first."""
    return pd.api.types.infer_dtype(column, skipna=False) not in ("string", "empty")


def _as_list(value: str | Iterable[str]) -> list[object]:
    """A ``where``/``exclude`` value, one or a collection, as a list."""
    return list(value) if isinstance(value, Iterable) and not isinstance(value, str) else [value]


def _as_compared(column: pd.Series, values: list[object]) -> list[object]:
    """What ``column``'s cells are compared with for ``values``: their text, as the column holds it, in a text
    column (:func:`_cell_text`)."""
    return [_cell_text(v) for v in values] if _is_text(column) else values


class UtteranceTable:
    """A validated, immutable-by-convention wrapper around a pandas DataFrame."""

    def __init__(self, df: pd.DataFrame, *, validate: bool = True):
        df = df.copy()
        for col in REQUIRED_COLUMNS:
            if col not in df.columns:
                if col in ("utt_id", "label"):
                    raise ProtocolError(f"utterance table lacks the required column {col!r}")
                df[col] = np.nan if col == "duration_s" else ""
        # numeric columns of a frame built in memory (pd.read_csv's int ``pair_id``, a float ``speaker`` with gaps)
        # hold the text of the table read back from CSV or Parquet (_as_csv_text): '1', not '1.0', and '' for NaN.
        # Kept as numbers, ``exclude: {pair_id: ['10']}`` matched nothing and every NaN ``pair_id`` was one fold group
        for col in df.columns:
            if col != "duration_s" and pd.api.types.is_numeric_dtype(df[col].dtype):
                df[col] = pd.Series(_numeric_text(df[col]), index=df.index, dtype=object)
            elif validate and col != "duration_s" and df[col].dtype == object and _has_non_text(df[col]):
                # a mixed column ([1, 'x', None]: records, a concat of a numeric and a text column) holds the same
                # text: kept as objects, its 1 matched neither `where: {pair_id: 1}` nor `'1'`, and a float 1.0 of a
                # required column became '1.0' where a float column's became '1' (a derived table, validate=False, is
                # cut from a frame already converted: not checked again)
                df[col] = pd.Series([_cell_text(v) for v in df[col]], index=df.index, dtype=object)
        string_cols = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in df.columns and c != "duration_s"]
        for col in string_cols:
            df[col] = df[col].fillna("").astype(str)
        # other text columns present in only some rows (e.g. after concat) mean '' there, not NaN
        for col in df.columns:
            if col not in string_cols and col != "duration_s" and _is_text(df[col]):
                df[col] = df[col].fillna("")
        df["duration_s"] = pd.to_numeric(df["duration_s"], errors="coerce").astype(float)
        ordered = list(REQUIRED_COLUMNS) + [c for c in df.columns if c not in REQUIRED_COLUMNS]
        self._df = df[ordered].reset_index(drop=True)
        if validate:
            self.validate()

    # --- construction / persistence ---------------------------------------------------------
    @classmethod
    def from_records(cls, records: Iterable[dict]) -> UtteranceTable:
        return cls(pd.DataFrame(list(records), columns=None))

    @classmethod
    def load(cls, path: str | Path) -> UtteranceTable:
        """Read a table written by :meth:`save` (CSV or Parquet, chosen by the suffix). Its labels may be any word of
        :data:`BONAFIDE_SPOOF_WORDS` (``real``/``fake``, ..., any case), as a labels CSV's: read as bonafide/spoof."""
        path = Path(path)
        if not path.is_file():
            raise ProtocolError(f"{path}: no such utterance table")
        try:
            if path.suffix.lower() in (".parquet", ".pq"):
                df = _as_csv_text(pd.read_parquet(path))
            else:
                from sddkit.data.text import open_text

                # as the other protocol files and format detection read it: a UTF-16 copy (Windows PowerShell's `>`)
                # was detected as an utterance table, then refused as not UTF-8
                with open_text(path, strict=True) as fh:
                    _skip_preamble(fh)
                    df = pd.read_csv(fh, dtype=str, keep_default_na=False)
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise ProtocolError(f"{path}: cannot read utterance table: {exc}") from None
        if "label" in df.columns:
            df["label"] = _canonical_labels(df["label"], path)
        try:
            return cls(df)
        except ProtocolError as exc:  # a bad label or a duplicate id: say which of a recipe's tables
            raise ProtocolError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in (".parquet", ".pq"):
            self._df.to_parquet(path, index=False)
        else:
            self._df.to_csv(path, index=False)
        return path

    # --- access -----------------------------------------------------------------------------
    @property
    def df(self) -> pd.DataFrame:
        """The underlying frame (a copy: tables are not mutated in place)."""
        return self._df.copy()

    def __len__(self) -> int:
        return len(self._df)

    def __repr__(self) -> str:
        n_bona = int((self._df["label"] == "bonafide").sum())
        return f"UtteranceTable({len(self)} utterances: {n_bona} bonafide, {len(self) - n_bona} spoof)"

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class ids: 1 = bona fide, 0 = spoof."""
        return (self._df["label"].to_numpy() == "bonafide").astype(np.int64)

    def column(self, name: str) -> np.ndarray:
        return self._df[self._require(name)].to_numpy()

    @property
    def columns(self) -> list[str]:
        """The table's column names, the required ones first."""
        return [str(c) for c in self._df.columns]

    def has_column(self, name: str) -> bool:
        return name in self._df.columns and bool((self._df[name].astype(str) != "").any())

    # --- derived tables ---------------------------------------------------------------------
    def where(self, **equals: str | Iterable[str]) -> UtteranceTable:
        """Rows whose columns equal the given value (or are in the given collection)."""
        return UtteranceTable(self._df[self._matches(equals, keep=True)], validate=False)

    def exclude(self, **equals: str | Iterable[str]) -> UtteranceTable:
        """Rows whose columns differ from the given value (or are not in the given collection)."""
        return UtteranceTable(self._df[self._matches(equals, keep=False)], validate=False)

    def _matches(self, equals: dict[str, str | Iterable[str]], *, keep: bool) -> np.ndarray:
        """(N,) bool: every column's value is listed (``keep``) or, for ``keep=False``, none is.

        Text columns compare as text, so numbers from a recipe (``sample_rate: [16000]``) match; a number is
        written as the column holds it (:func:`_cell_text`): ``pair_id=1.0`` matches ``'1'``, as it matched the
        float column of a table built in memory before such columns became text.
        """
        mask = np.ones(len(self._df), dtype=bool)
        for col, value in equals.items():
            column = self._df[self._require(col)]
            listed = column.isin(_as_compared(column, _as_list(value)))
            mask &= listed.to_numpy() if keep else ~listed.to_numpy()
        return mask

    def absent_values(self, col: str, value: str | Iterable[str]) -> list[object]:
        """The values of ``value`` (one or a collection, as :meth:`where` takes them) that no row holds in ``col``,
        compared as :meth:`where` compares them."""
        column = self._df[self._require(col)]
        values = _as_list(value)
        held = pd.Series(_as_compared(column, values), dtype=object).isin(column).to_numpy()
        return [v for v, found in zip(values, held) if not found]

    def group_folds(self, by: Sequence[str], n: int) -> np.ndarray:
        """Fold index in ``[0, n)`` of every row (N,), the same for all rows of one group.

        A row's group is its first non-empty value among the columns ``by`` (e.g. ``pair_id`` then
        ``speaker``: a speaker of several pairs can straddle folds), or its ``utt_id`` when all are
        empty. A column the table lacks counts as empty (only sddbench has ``pair_id``), but at least
        one must exist. The fold is a hash of that key,
        so it does not depend on the row order, on the other rows or on the Python process (unlike
        ``hash()``): a held-out fold stays held out when the protocol grows or is read elsewhere.
        """
        if n < 2:
            raise ValueError(f"group_folds needs n >= 2, got {n}")
        by = list(by)
        present = [c for c in by if c in self._df.columns]
        if by and not present:
            raise ProtocolError(
                f"utterance table has no column among the group columns {by}; columns: {list(self._df.columns)}"
            )
        keys = self._df["utt_id"].to_numpy(dtype=object).copy()
        for col in reversed(present):  # the first column listed wins, so it is written last
            values = self._df[col].to_numpy(dtype=object)
            filled = values != ""
            keys[filled] = [f"{col}={v}" for v in values[filled]]
        folds = [int.from_bytes(hashlib.sha1(str(k).encode()).digest()[:8], "big") % n for k in keys]
        return np.array(folds, dtype=np.int64)  # int64 for an empty table too (usable as indices)

    def subset(self, mask_or_index: np.ndarray) -> UtteranceTable:
        """The rows selected by a boolean mask (one entry per row) or by integer positions."""
        as_array = np.asarray(mask_or_index)
        if as_array.dtype == bool:
            if as_array.ndim != 1 or as_array.shape[0] != len(self._df):
                raise ProtocolError(
                    f"boolean mask of shape {as_array.shape} does not match the table's {len(self._df)} rows"
                )
            return UtteranceTable(self._df.iloc[np.flatnonzero(as_array)], validate=False)
        return UtteranceTable(self._df.iloc[mask_or_index], validate=False)

    @staticmethod
    def concat(tables: Iterable[UtteranceTable]) -> UtteranceTable:
        return UtteranceTable(pd.concat([t._df for t in tables], ignore_index=True))

    @staticmethod
    def first_shared_ids(tables: Sequence[UtteranceTable]) -> tuple[int, int, list[str]] | None:
        """The first two of ``tables`` that share utt_ids, (earlier index i, later index j, the ids of j that i
        holds too), for the caller to name where they come from (concat's own error lists the ids only); None
        when every utt_id appears in one table."""
        first: dict[str, int] = {}
        for j, table in enumerate(tables):
            ids = [str(u) for u in table.column("utt_id")]
            clash = sorted({first[u] for u in ids if u in first})
            if clash:
                return clash[0], j, [u for u in ids if first.get(u) == clash[0]]
            first.update(dict.fromkeys(ids, j))
        return None

    def _require(self, col: str) -> str:
        if col not in self._df.columns:
            from sddkit.config import did_you_mean

            close = did_you_mean([col], map(str, self._df.columns))  # `--cluster-by spekaer`, `--by sorce`
            raise ProtocolError(f"utterance table has no column {col!r}{close}; columns: {list(self._df.columns)}")
        return col

    # --- checks -----------------------------------------------------------------------------
    def validate(self) -> None:
        bad = ~self._df["label"].isin(LABELS)
        if bad.any():
            examples = self._df.loc[bad, "label"].unique()[:5].tolist()
            raise ProtocolError(f"labels must be 'bonafide' or 'spoof'; found {examples}")
        if (self._df["utt_id"] == "").any():
            raise ProtocolError("every utterance needs a non-empty utt_id")
        dup = self._df["utt_id"].duplicated()
        if dup.any():
            raise ProtocolError(f"duplicate utt_id(s): {self._df.loc[dup, 'utt_id'].head(5).tolist()}")
