"""Options shared by several commands: checks of numeric ones (``--batch-size``, ``--threads``,
``--workers``...) and ``--partitions`` (``sdd eval``, ``sdd robustness``).

Each command calls :func:`check_minimums` first thing, so a bad value is one clean line (exit status 2)
before a model loads, a manifest is read or a fold trains for an hour, and every command words it alike.
"""

from __future__ import annotations

import argparse
import os

from sddkit.errors import ConfigError


def check_minimums(args: argparse.Namespace, **minimums: float) -> None:
    """Refuse any option ``dest`` of ``args`` whose value is below ``minimums[dest]``.

    Keys are argparse destinations (``batch_size`` checks ``--batch-size``); a value of ``None``
    (an option left at "automatic") passes, NaN does not. Raises ``ConfigError`` naming the first bad
    option.
    """
    for dest, low in minimums.items():
        value = getattr(args, dest)
        if value is not None and not value >= low:  # `not >=` also refuses NaN, which compares false
            raise ConfigError(f"{_flag(dest)} must be >= {low:g}, got {value:g}")


def check_positive(args: argparse.Namespace, *dests: str) -> None:
    """Refuse any option ``dest`` of ``args`` that is not strictly positive (NaN included)."""
    for dest in dests:
        value = getattr(args, dest)
        if not value > 0:
            raise ConfigError(f"{_flag(dest)} must be > 0, got {value:g}")


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *dests: str) -> None:
    """A usage error (``parser.error``, exit status 2) for any option ``dest`` of ``args`` that is not strictly
    positive (NaN included): the benchmark scripts' counts and durations, where 0 divided by zero or took the
    minimum of nothing after the first cases had run."""
    for dest in dests:
        value = getattr(args, dest)
        if not value > 0:
            parser.error(f"{_flag(dest)} must be positive, got {value}")


def check_max_duration_fits(
    max_duration_s: float | None,
    min_duration_s: float,
    consequence: str,
    *,
    name: str = "--max-duration-s",
    note: str = "",
) -> None:
    """Refuse a ``--max-duration-s`` below the model's shortest input (``inference.min_duration_s``): no file could pass
    both bounds, so ``consequence`` would follow for every one. 0 or ``None`` (no limit) passes. ``name`` and ``note``
    (after the value) say where the limit was given (the service's ``create_app`` names its ``max_duration_s``)."""
    if max_duration_s and max_duration_s < min_duration_s:
        raise ConfigError(
            f"{name} {max_duration_s:g}{note}: below this model's shortest input, {min_duration_s:g} s "
            f"(inference.min_duration_s): {consequence}"
        )


def check_paths_given(args: argparse.Namespace, *dests: str) -> None:
    """Refuse any path option ``dest`` of ``args`` given as an empty string (``--out ""``, an unset shell variable):
    ``Path("")`` is ``.``, so a report, a journal or an export landed in the working directory without a word,
    and ``--json ""`` was skipped as if not given. ``None`` (an option left out) passes."""
    for dest in dests:
        value = getattr(args, dest)
        if value is not None and not str(value).strip():
            name = _flag(dest) if dest not in _POSITIONALS else dest.upper()
            raise ConfigError(f"{name} is an empty string: name a path")


def check_paths_writable(args: argparse.Namespace, *dests: str) -> None:
    """Refuse any output path option ``dest`` of ``args`` that cannot be written (``None``: not given, passes),
    asked before the work that produces it (a bootstrap, hours of training), not after."""
    from sddkit.outputs import why_unwritable

    for dest in dests:
        value = getattr(args, dest)
        reason = why_unwritable(value) if value else None
        if reason is not None:
            raise ConfigError(f"{_flag(dest)} {value}: cannot write it ({reason})")


_POSITIONALS = frozenset({"config", "recipe", "weights"})


def check_rows_out(out: str, example: str) -> None:
    """Refuse a rows output (``sdd score``'s and ``sdd fuse``'s ``--out``) that is a folder or does not end in
    ``.csv`` or ``.jsonl``; ``example``: the file name the folder message suggests in it."""
    from pathlib import Path

    path = Path(out)
    # before the suffix check, which a folder (`--out results/`) failed first as "got 'results'"; isdir is False,
    # not OSError, for a name too long: the writability check says that
    if os.path.isdir(path) or out.endswith(("/", os.sep)):
        what = "is a folder" if os.path.isdir(path) else "names a folder"
        raise ConfigError(f"--out {out} {what}; name a .csv or .jsonl file to write, e.g. {path / example}")
    if path.suffix.lower() not in (".csv", ".jsonl"):  # else "scores.json" would silently hold CSV
        raise ConfigError(f"--out must name a .csv or .jsonl file (JSON output is JSON lines), got {path.name!r}")


def overwrites_input(out: str | os.PathLike, inputs) -> bool:
    """Whether writing ``out`` would replace one of ``inputs`` (paths; missing ones are skipped): the same file,
    however spelled."""
    import os

    return os.path.exists(out) and any(os.path.exists(f) and os.path.samefile(f, out) for f in inputs)


def set_torch_threads(threads: int | None) -> None:
    """Use ``threads`` torch CPU threads (already checked >= 1); ``None`` leaves torch's choice."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _flag(dest: str) -> str:
    """The option an argparse destination comes from: ``max_duration_s`` -> ``--max-duration-s``."""
    return "--" + dest.replace("_", "-")


def parse_partitions(values: list[str] | None) -> list[str] | None:
    """``--partitions a b`` and ``--partitions a,b`` both mean [a, b]; ``None`` (not given) means every row.

    Given but naming nothing (``--partitions ""``, ``--partitions ,``) is a ``ConfigError``: it selected no row,
    which surfaced later as "no score matches the protocol's 0 utterances" or "no utterances to evaluate".
    """
    if not values:
        return None
    names = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if not names:
        raise ConfigError(f"--partitions names no partition, got {values}; leave it out to keep every row")
    return names


PROTOCOL_OPTION_HELP = (
    "an option of the protocol's reader, KEY=VALUE, repeatable (an unknown key's error lists the reader's keys), "
    "e.g. bonafide_root=DIR for MLAAD's M-AILABS bona fide speech, root=DIR for an ASVspoof protocol's audio "
    "folder, codecs=[C01,C05] for a list, attack_from_subfolder=false for a yes/no option; `sdd list protocol` "
    "lists each reader's options"
)


def add_protocol_option(parser: argparse.ArgumentParser) -> None:
    """``--protocol-option KEY=VALUE``: a reader option the protocol path alone cannot give (an M-AILABS folder
    beside MLAAD, the audio folder of an ASVspoof protocol kept elsewhere), as a recipe's ``options`` gives it."""
    parser.add_argument(
        "--protocol-option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        dest="protocol_options",
        help=PROTOCOL_OPTION_HELP,
    )


def add_partitions_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--partitions NAME ...``: the protocol's partitions a command keeps; repeated, the names add up (argparse's
    ``nargs="+"`` alone kept the last occurrence's)."""
    parser.add_argument("--partitions", nargs="+", action="extend", default=None, metavar="NAME", help=help)


# sddkit.evaluation.scores.SCORE_READERS' names, written out: importing it (pandas) to build the parser would slow
# every command's start; a test keeps the two equal
SCORE_FORMATS = ("asvspoof2019", "asvspoof2021", "asvspoof5", "asvspoof5_keyed", "csv", "tsv", "jsonl")
SCORE_FORMAT_HELP = f"score file format: {', '.join(SCORE_FORMATS)} (default: detect from the file)"


# options a command's own flags set: given as --protocol-option they would be read twice, or against the path given
_FLAG_OPTIONS = {"partitions": "--partitions", "protocol": "--protocol"}


def parse_protocol_options(values: list[str] | None, flag: str = "--protocol-option") -> dict[str, object]:
    """``["bonafide_root=/data/m-ailabs", "codecs=[C01,C05]"]`` -> ``{"bonafide_root": "/data/m-ailabs", "codecs":
    ["C01", "C05"]}``: a value in brackets is a comma-separated list, any other a string (a path keeps its text)."""
    options: dict[str, object] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} bonafide_root=/data/M-AILABS")
        if key in _FLAG_OPTIONS:
            raise ConfigError(f"{flag} {item!r}: give {key} with {_FLAG_OPTIONS[key]}")
        if key in options:
            raise ConfigError(f"{flag} {key}= is given twice; give each option once")
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            options[key] = [v.strip() for v in text[1:-1].split(",") if v.strip()]
        else:
            options[key] = text
    from sddkit.config import expand_root_options

    # `--protocol-option "root=~/corpora/x"` (quoted, or a shell that expands no ~ after `=`) looked for a folder
    # named ~ under the working directory, where a recipe's root=~/... is expanded
    return expand_root_options(options)


# the words --protocol-option takes for a yes/no reader option, as a recipe's YAML reads them
_YES, _NO = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def typed_protocol_options(fmt: str, options: dict[str, object] | None) -> dict[str, object]:
    """``--protocol-option``'s text values as reader ``fmt``'s config takes them: ``true``/``false`` (``yes``/``no``)
    for a yes/no option (``folder``'s ``attack_from_subfolder=false`` was refused as "expected true/false, got
    'false'"). Other values, and keys the reader lacks (:func:`_check_option_names` refuses those first), are passed on
    as given (one value of a list option, ``codecs=C01``, :func:`~sddkit.data.protocols.read_protocol` takes as a
    list)."""
    import dataclasses
    import typing

    from sddkit.data import PROTOCOLS

    options = dict(options or {})
    config_cls = PROTOCOLS.get(fmt).config_cls if fmt in PROTOCOLS else None
    if config_cls is None:
        return options
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        value = options.get(field.name)
        if isinstance(value, str) and hints[field.name] in (bool, bool | None):
            word = value.strip().lower()
            options[field.name] = True if word in _YES else False if word in _NO else value
    return options


def _reader_selects(fmt: str) -> bool:
    """Whether protocol reader ``fmt`` selects partitions itself (it has a ``partitions`` option)."""
    from sddkit.data.protocols import reader_options

    return any(o.name == "partitions" for o in reader_options(fmt))


def read_partitions(
    protocol: str, fmt: str | None, partitions: list[str] | None, options: dict[str, object] | None = None
):
    """Read ``protocol`` (with the reader ``options`` of ``--protocol-option``); keep ``partitions`` through the
    reader's own option where it has one (sddbench, Fake-or-Real), else by the table's ``partition`` column
    (ASVspoof, utterance tables, ...)."""
    return _read_selected(protocol, fmt, partitions, options)[0]


# reader options that keep some of a protocol's trials, as --partitions keeps some partitions (a small explicit
# registry: ASVspoof 2021's phases, ASVspoof 5's codecs, Fake-or-Real's versions, FakeAVCeleb's categories, MLAAD's
# languages and bona fide selection, LibriSpeech's and Common Voice's splits, WaveFake's generators and JSUT
# subsets): the trials they leave out are outside the evaluation, and their scores no strays
SELECTION_OPTIONS = (
    "phases",
    "codecs",
    "versions",
    "categories",
    "languages",
    "bonafide",
    "splits",
    "generators",
    "jsut_subsets",
)


def selection_options(options: dict[str, object] | None) -> dict[str, object]:
    """The reader options of ``options`` that select trials (:data:`SELECTION_OPTIONS`)."""
    return {k: v for k, v in (options or {}).items() if k in SELECTION_OPTIONS}


def selection_words(partitions: list[str] | None, options: dict[str, object] | None = None) -> str:
    """What the rows left out of an evaluation are outside of, as its note says it: "the selected partitions", or
    the selection options (``the selection --protocol-option codecs=[C01, C05]``), or both."""
    from sddkit.evaluation.scores import OUTSIDE_PARTITIONS

    chosen = selection_options(options)
    if not chosen:
        return OUTSIDE_PARTITIONS
    given = " ".join(
        f"--protocol-option {k}=" + (f"[{', '.join(map(str, v))}]" if isinstance(v, list) else str(v))
        for k, v in chosen.items()
    )
    return f"{OUTSIDE_PARTITIONS} and {given}" if partitions else f"the selection {given}"


def read_partitions_and_rest(
    protocol: str, fmt: str | None, partitions: list[str] | None, options: dict[str, object] | None = None
):
    """(:func:`read_partitions`' table, the protocol's other rows): the rest is None when neither ``partitions``
    nor a selection option of the reader (:data:`SELECTION_OPTIONS`, e.g. ``codecs``) is given (nothing left out);
    with one, the rest is read without those options, so that the trials they leave out are in it. A protocol
    without a reader-level option is read once."""
    import pandas as pd

    from sddkit.data.protocols import read_protocol

    chosen = selection_options(options)
    if partitions is None and not chosen:
        return read_partitions(protocol, fmt, None, options), None
    table, full, fmt = _read_selected(protocol, fmt, partitions, options)
    if full is None or chosen:  # the reader selected: the other rows need a read of their own, without selecting
        rest_options = typed_protocol_options(fmt, {k: v for k, v in (options or {}).items() if k not in chosen})
        full = read_protocol(protocol, format=fmt, **rest_options)
    left = ~pd.Index(full.column("utt_id"), dtype=object).isin(pd.Index(table.column("utt_id"), dtype=object))
    return table, full.subset(left)


def _check_option_names(fmt: str, options: dict[str, object] | None) -> None:
    """Refuse reader options ``fmt``'s reader does not take, listing those it does as ``sdd list protocol`` shows
    them: the reader's own error listed the option its path fills (``protocol``) among them, which
    ``--protocol-option`` then refused."""
    from sddkit.config import did_you_mean
    from sddkit.data.protocols import reader_options

    known = [o.name for o in reader_options(fmt) if o.name not in _FLAG_OPTIONS]
    unknown = [k for k in (options or {}) if k not in known]
    if unknown:
        hint = did_you_mean(unknown, [*known, *_FLAG_OPTIONS])  # a misspelt partitions: its flag's refusal says more
        raise ConfigError(
            f"protocol option(s) {', '.join(map(repr, unknown))} are not options of the {fmt!r} reader{hint}; its "
            f"options: {', '.join(known) or 'none'} (sdd list protocol)"
        )


def _read_selected(
    protocol: str, fmt: str | None, partitions: list[str] | None, options: dict[str, object] | None = None
):
    """(the rows of ``partitions``, the whole protocol as read or None where the reader selected them, the format)."""
    from sddkit.data.protocols import detect_format, read_protocol
    from sddkit.evaluation.robustness import select_partitions

    fmt = fmt or detect_format(protocol)
    _check_option_names(fmt, options)
    options = typed_protocol_options(fmt, options)
    if partitions and _reader_selects(fmt):
        return read_protocol(protocol, format=fmt, partitions=partitions, **options), None, fmt
    full = read_protocol(protocol, format=fmt, **options)
    return select_partitions(full, partitions, what=f"{protocol} (format {fmt!r})"), full, fmt
