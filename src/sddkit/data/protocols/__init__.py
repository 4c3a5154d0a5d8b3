"""Corpus protocol readers (registry ``protocol``): every reader returns an :class:`UtteranceTable`.

Registered readers (``sdd list protocol``): ``asvspoof2019_la``, ``asvspoof2021_la``,
``asvspoof2021_df``, ``asvspoof2021_pa``, ``asvspoof5``, ``asvspoof5_key`` (the ASVspoof 5 evaluation package's keys),
``in_the_wild``, ``fake_or_real``, ``mlaad``, ``add2022``,
``fakeavceleb``, ``wavefake``, ``librispeech``, ``ljspeech``, ``vctk``, ``common_voice``, ``folder`` (generic
``bonafide/``+``spoof/``), ``sddbench``, ``utterance_table`` and ``labels_csv`` (``path,label``). Each is a builder
``read_x(cfg: XConfig) -> UtteranceTable``; configs name the protocol file ``protocol`` and the
audio folder ``root``.

:func:`read_protocol` is the one-call entry point: it detects the format of a file or folder
(:func:`detect_format`) and passes the path as the reader's ``protocol`` (or ``root``).
Malformed input raises :class:`~sddkit.errors.ProtocolError` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from sddkit.data.protocols import (  # noqa: F401  (importing registers the readers)
    add2022,
    asvspoof,
    bonafide,
    fake_or_real,
    fakeavceleb,
    folder,
    in_the_wild,
    labels_csv,
    mlaad,
    sddbench,
    table_file,
    wavefake,
)
from sddkit.data.protocols.detect import detect_format
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError, ProtocolError, SddkitError

__all__ = ["ReaderOption", "detect_format", "known_columns", "read_protocol", "reader_options"]

# list-valued options that a caller may give as one string (partitions="train")
_LIST_OPTIONS = (
    "partitions",
    "phases",
    "splits",
    "languages",
    "versions",
    "categories",
    "codecs",
    "generators",
    "jsut_subsets",
)


def _other_folder(root: object, corpus_dir: Path) -> bool:
    """Whether ``root`` names another folder than ``corpus_dir`` (the same one by another spelling is not)."""
    try:
        return not os.path.samefile(str(root), corpus_dir)
    except (OSError, TypeError, ValueError):  # one of them missing: compare the paths as written
        return os.path.normpath(os.path.abspath(str(root))) != os.path.normpath(os.path.abspath(corpus_dir))


@dataclasses.dataclass(frozen=True)
class ReaderOption:
    """One option of a protocol reader: its name, its default (``required``: none) and, for a choice, its values."""

    name: str
    default: Any
    required: bool = False
    choices: tuple[str, ...] = ()


def reader_options(fmt: str) -> list[ReaderOption]:
    """The options of protocol reader ``fmt`` that a recipe's ``options:`` and ``--protocol-option`` give, in its
    config's order: every field but the one :func:`read_protocol` fills from the path (``protocol`` of a file's
    reader, ``root`` of a folder's)."""
    import typing

    from sddkit.config import field_default
    from sddkit.data import PROTOCOLS

    config_cls = PROTOCOLS.get(fmt).config_cls
    if config_cls is None:
        return []
    fields = dataclasses.fields(config_cls)
    from_path = "protocol" if any(f.name == "protocol" for f in fields) else "root"
    hints = typing.get_type_hints(config_cls)
    options = []
    for f in fields:
        if f.name == from_path:
            continue
        default, required = field_default(f)
        hint = hints.get(f.name)
        choices = tuple(map(str, typing.get_args(hint))) if typing.get_origin(hint) is typing.Literal else ()
        options.append(ReaderOption(f.name, default, required, choices))
    return options


def known_columns(fmt: str) -> tuple[str, ...] | None:
    """The columns any table of protocol reader ``fmt`` can have (its ``table_columns`` declaration, see
    :func:`~sddkit.data.protocols._common.table_columns`), or None where they are its file's own (``utterance_table``)
    or undeclared (a plugin's reader): those are known only once the table is read."""
    from sddkit.data import PROTOCOLS

    return getattr(PROTOCOLS.get(fmt).builder, "table_columns", None)


def _check_option_names(
    fmt: str, options: dict[str, Any], *, detected: bool, path: str | Path, fields: set[str]
) -> None:
    """Refuse ``options`` that reader ``fmt`` does not take, listing those it does as ``sdd list protocol`` shows them.

    A recipe's spec checks its options when read only when it names its ``format``; with the format detected, the
    reader's own error came when the data was read and listed ``protocol`` among the valid keys, which a spec's
    ``options`` refuses (and which, given here, replaced ``path`` without a word)."""
    from sddkit.config import did_you_mean

    known = [o.name for o in reader_options(fmt)]
    allowed = {*known, "root"} if "protocol" not in fields else set(known)  # a folder reader's root is checked below
    unknown = sorted((k for k in options if k not in allowed), key=repr)
    if not unknown:
        return
    how = f" (detected from {path})" if detected else ""
    raise ConfigError(
        f"options: unknown key(s) {', '.join(map(repr, unknown))}{did_you_mean(unknown, known)} for format "
        f"{fmt!r}{how}; valid keys: {', '.join(known) or '(none)'} (sdd list protocol)"
    )


def read_protocol(path: str | Path, format: str | None = None, **options: Any) -> UtteranceTable:
    """Read any supported protocol file or corpus folder into an UtteranceTable.

    ``format``: a registered protocol name; ``None`` detects it from the file's first line or the
    folder's layout. ``options`` are the reader's config fields (``root=`` audio folder,
    ``partitions=["train"]``, ...); unknown ones raise ``ConfigError`` listing the valid keys. A reader of a corpus
    folder (``folder``, ``fake_or_real``, ``mlaad``, ...) takes ``path`` as its ``root``: a ``root`` option naming
    another folder is refused.
    A metadata file of a folder corpus (LJSpeech ``metadata.csv``, FakeAVCeleb ``meta_data.csv``,
    a Common Voice ``<split>.tsv``) stands for its folder.
    """
    from sddkit.data import PROTOCOLS

    fmt = format or detect_format(path)
    entry = PROTOCOLS.get(fmt)
    fields = {f.name for f in dataclasses.fields(entry.config_cls)} if entry.config_cls else set()
    _check_option_names(fmt, options, detected=format is None, path=path, fields=fields)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    for key in _LIST_OPTIONS:
        if isinstance(params.get(key), str):
            params[key] = [params[key]]
    p = Path(path)
    if "protocol" in fields:
        params.setdefault("protocol", str(p))
    else:
        corpus_dir = p.parent if p.is_file() else p
        given = params.get("root")  # None (`root: null`) is no root given
        if given is not None and _other_folder(given, corpus_dir):
            # a folder corpus is read from `root`: the one given as an option was read, and `path` ignored unsaid
            raise ConfigError(
                f"root {given!r}: format {fmt!r} reads the corpus folder given as the path ({p}); this other "
                "folder would replace it: give the folder once, as the path (a recipe's `protocol`)"
            )
        params["root"] = str(corpus_dir) if given is None else given
        if p.is_file() and fmt == "common_voice":
            params.setdefault("splits", [p.stem])
    try:
        return PROTOCOLS.build({"name": fmt, **params})
    except ProtocolError as exc:
        if format is not None:
            _name_detected_format(exc, p, fmt)
        raise


def _name_detected_format(exc: ProtocolError, path: Path, fmt: str) -> None:
    """Append to ``exc`` the format ``path`` is detected as, where that is another than the one named, ``fmt``, and
    the message does not name it already: an ASVspoof 2021 LA key read with ``--protocol-format asvspoof2019_la`` was
    "expected 5 fields (...), got 8", In-the-Wild's meta.csv "got 1", which left the user to find the reader."""
    try:
        detected = detect_format(path)
    except (SddkitError, OSError):
        return  # no format known to name
    if detected != fmt and len(exc.args) == 1 and isinstance(exc.args[0], str) and detected not in exc.args[0]:
        exc.args = (
            f"{exc.args[0]} (this file reads as format {detected!r}, not {fmt!r}: name that one, or leave the format "
            "out to detect it)",
        )
