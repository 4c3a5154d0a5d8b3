"""``sdd fuse``: linear logistic-regression fusion of several systems' score files (as BOSARIS's linear fusion)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sddkit.evaluation.fusion import FusedTrials


def register(sub: argparse._SubParsersAction) -> None:
    from sddkit.cli.options import SCORE_FORMAT_HELP, add_protocol_option

    p = sub.add_parser(
        "fuse",
        help="fuse several systems' score files into one LLR per file (logistic regression fitted on val trials)",
        description="Fit llr = sum_k w_k * score_k + b by prior-weighted logistic regression (the objective of sdd "
        "calibrate) on the labelled trials of --fit-partitions that every system scored, and apply it to every file "
        "every system scored. Writes one row per file (path, score, probability, decision, score_<name> per system), "
        "an error row (score empty, the systems and their messages in an error column, as sdd score writes one) per "
        "file some system could not score, and OUT.fusion.json (weights, bias, fit EER and Cllr). With --apply, an "
        "earlier fit's OUT.fusion.json is applied to new score files instead (nothing is fitted).",
    )
    p.add_argument(
        "--protocol",
        nargs="+",
        action="extend",
        default=None,
        metavar="P",
        help="protocol / key file the score files are joined with; several are read as one (ASVspoof's dev and eval "
        "keys: --fit-partitions dev fits on the first, the fusion is applied to the trials of both). Required to fit; "
        "with --apply, optional: without it, score files of paths are joined by path",
    )
    p.add_argument(
        "--apply",
        default=None,
        metavar="RECORD",
        help="apply the fusion an earlier sdd fuse recorded (its OUT.fusion.json) to --scores, one file per recorded "
        "system in its order, instead of fitting one",
    )
    p.add_argument(
        "--scores",
        nargs="+",
        action="extend",
        required=True,
        help="score files, one per system (sdd score CSV or JSONL, or any file sdd eval reads)",
    )
    p.add_argument(
        "--names",
        nargs="+",
        action="extend",
        default=None,
        help="one name per system (default: the score files' stems)",
    )
    p.add_argument(
        "--fit-partitions",
        nargs="+",
        action="extend",
        default=None,
        metavar="NAME",
        help="fit on the protocol's trials of these partitions (default: val); the fusion is applied to all",
    )
    p.add_argument(
        "--column",
        nargs="+",
        action="extend",
        default=None,  # score when fitting; with --apply, the record's
        help="the column read as each system's score (default score, or with --apply the record's; e.g. raw_score, "
        "or a mixture's expert_score0): one value for every system, or one per system",
    )
    p.add_argument(
        "--prior",
        type=float,
        default=None,  # 0.5; None tells it was not given (refused with --apply)
        help="bona fide prior of the fit's objective (default 0.5)",
    )
    p.add_argument("--protocol-format", default=None, help="protocol reader name of --protocol (default: detect)")
    add_protocol_option(p)  # as sdd eval's: an MLAAD protocol without its bonafide_root has no bona fide trial to fit
    p.add_argument(
        "--score-format",
        nargs="+",
        action="extend",
        default=None,
        metavar="FORMAT",
        help=f"{SCORE_FORMAT_HELP}: one value for every system, or one per system (systems scored by different "
        "toolkits)",
    )
    p.add_argument(
        "--out",
        default="fused.csv",
        help="output file, .csv or .jsonl (default fused.csv; replaced when there, with a note); the fusion's "
        "record goes beside it as OUT.fusion.json",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import (
        check_paths_given,
        check_paths_writable,
        check_rows_out,
        overwrites_input,
        parse_partitions,
        parse_protocol_options,
    )
    from sddkit.errors import ConfigError
    from sddkit.evaluation.fusion import (
        RECORD_SUFFIX,
        apply_fusion,
        fuse_score_files,
        missing_note,
        read_fusion_record,
    )
    from sddkit.evaluation.scores import read_scores
    from sddkit.outputs import why_unwritable

    check_paths_given(args, "out")
    _check_mode(args)
    protocol_options = parse_protocol_options(args.protocol_options)
    check_rows_out(args.out, "fused.csv")
    out = Path(args.out)
    record = out.with_name(out.name + RECORD_SUFFIX)
    n = len(args.scores)
    applied = None
    if args.apply is not None:  # read first: which systems, and how many, are the record's
        fusion, recorded_columns, applied = read_fusion_record(args.apply)
        _check_applied_systems(args, list(fusion.names))
        columns = _per_system(args.column, n, "--column", "columns") if args.column is not None else recorded_columns
        names = list(fusion.names)
    else:
        columns = _per_system(args.column or ["score"], n, "--column", "columns")
        names = _names(args.names, args.scores, columns)
    prior = 0.5 if args.prior is None else args.prior
    if not 0.0 < prior < 1.0:
        raise ConfigError(f"--prior must be in (0, 1), got {prior:g}")
    if args.fit_partitions is not None and not "".join(args.fit_partitions).replace(",", "").strip():
        # parse_partitions' own words ("leave it out to keep every row") are not this flag's default
        raise ConfigError(f"--fit-partitions names no partition, got {args.fit_partitions}; leave it out for val")
    fit_partitions = parse_partitions(args.fit_partitions) or ["val"]
    inputs = [*(args.protocol or []), *args.scores, *([args.apply] if applied is not None else [])]
    for path in (out, record):  # an input overwritten by the output would be lost
        if overwrites_input(path, inputs):
            raise ConfigError(f"--out {args.out}: {path} is one of the inputs: it would be overwritten; name another")
    check_paths_writable(args, "out")
    reason = why_unwritable(record)  # asked too before the work: both files are written, or neither
    if reason is not None:
        raise ConfigError(f"--out {args.out}: cannot write the fusion's record {record} ({reason})")

    table = None if args.protocol is None else _read_protocols(args.protocol, args.protocol_format, protocol_options)
    formats = _per_system(args.score_format, n, "--score-format", "formats") if args.score_format else [None] * n
    files = [
        read_scores(f, format=fmt, column=None if c == "score" else c)
        for f, c, fmt in zip(args.scores, columns, formats)
    ]
    if applied is not None:
        fused = apply_fusion(fusion, files, record=applied, applied_from=str(args.apply), columns=columns, table=table)
    else:
        fused = fuse_score_files(table, files, names=names, fit_partitions=fit_partitions, columns=columns, prior=prior)
    for note in dict.fromkeys(fused.notes):  # once: one file read for two columns is joined twice alike
        print(f"sdd fuse: warning: {note}", file=sys.stderr)
    if fused.missing:
        print(f"sdd fuse: warning: {missing_note(fused.missing, n)}", file=sys.stderr)
    replaced = out.exists()
    _write(out, record, fused)
    if replaced:  # as sdd compare says of its JSON: a rerun replaces the file, never silently
        print(f"sdd fuse: note: replaced the earlier {out}", file=sys.stderr)
    print(fused.summary())
    errors = f", {len(fused.errors)} error row(s) of files some system could not score" if fused.errors else ""
    print(f"-> {out} ({len(fused.llr)} files{errors}), {record}", file=sys.stderr)
    return 0


def _check_mode(args: argparse.Namespace) -> None:
    """Fitting needs --protocol; applying (--apply) fits nothing, so takes no fit option."""
    from sddkit.errors import ConfigError

    if args.apply is not None:
        if not str(args.apply).strip():
            raise ConfigError("--apply names no file (an unset shell variable?): give the OUT.fusion.json to apply")
        given = [f for f, v in (("--fit-partitions", args.fit_partitions), ("--prior", args.prior)) if v is not None]
        if given:
            raise ConfigError(
                f"{' and '.join(given)} cannot go with --apply: the recorded fusion is applied as fitted, nothing is "
                f"fitted; leave {'them' if len(given) > 1 else 'it'} out"
            )
    elif args.protocol is None:
        raise ConfigError(
            "--protocol is required to fit a fusion (its labelled trials); --apply RECORD applies a fitted one"
        )
    if args.protocol is None and args.protocol_format is not None:  # with --apply and no protocol it did nothing
        raise ConfigError(
            f"--protocol-format {args.protocol_format} names the reader of --protocol, which is not given: give the "
            "protocol too, or leave --protocol-format out (score files are then joined by path)"
        )
    if args.protocol is None and args.protocol_options:  # no reader to give them to
        raise ConfigError(
            f"--protocol-option {args.protocol_options[0]} is an option of the reader of --protocol, which is not "
            "given: give the protocol too, or leave --protocol-option out (score files are then joined by path)"
        )
    if args.protocol is not None and any(not str(f).strip() for f in args.protocol):  # Path("") is the cwd
        raise ConfigError("--protocol holds an empty path (an unset shell variable?): name each protocol file")


def _check_applied_systems(args: argparse.Namespace, names: list[str]) -> None:
    """--scores and --names against the applied record's systems: the weights are theirs, in their order."""
    from sddkit.errors import ConfigError

    if len(args.scores) != len(names):
        raise ConfigError(
            f"--scores gives {len(args.scores)} score file(s) for the {len(names)} systems of --apply {args.apply} "
            f"({', '.join(names)}): give one per system, in that order"
        )
    if args.names is not None and list(args.names) != names:
        raise ConfigError(
            f"--names {' '.join(args.names)} are not the systems of --apply {args.apply} ({' '.join(names)}): its "
            "weights belong to those, in that order; leave --names out"
        )


def _per_system(given: list[str], n: int, flag: str, what: str) -> list[str]:
    """A per-system option's values (--column, --score-format), one per system: one value given serves all."""
    from sddkit.errors import ConfigError

    if len(given) not in (1, n):
        raise ConfigError(
            f"{flag} gives {len(given)} {what} for {n} score files: give one for every system, or one per system"
        )
    return given * n if len(given) == 1 else list(given)


def _names(given: list[str] | None, paths: list[str], columns: list[str]) -> list[str]:
    """The systems' names: --names, else the score files' stems; refused when they repeat or one is empty."""
    from sddkit.errors import ConfigError

    names = list(given) if given is not None else _default_names(paths, columns)
    if len(names) != len(paths):
        raise ConfigError(f"--names gives {len(names)} names for {len(paths)} score files: give one per --scores file")
    repeated = sorted({x for x in names if names.count(x) > 1})
    if repeated and given is None:  # e.g. runs/a/scores.csv and runs/b/scores.csv
        raise ConfigError(
            f"the score files' default names repeat ({', '.join(map(repr, repeated))}): name each system with --names"
        )
    if repeated:
        raise ConfigError(f"--names repeats {', '.join(map(repr, repeated))}: each system needs a name of its own")
    if any(not x.strip() for x in names):
        raise ConfigError("--names holds an empty name: name every system")
    return names


def _read_protocols(protocols: list[str], fmt: str | None, options: dict[str, object] | None = None):
    """The protocols' tables as one, each read with the reader ``options`` of ``--protocol-option``; a ConfigError
    naming the two files when they share utterance ids (a trial listed twice would be fused twice, or under either
    label)."""
    from sddkit.cli.options import read_partitions
    from sddkit.data.table import UtteranceTable
    from sddkit.errors import ConfigError

    tables = [read_partitions(f, fmt, None, options) for f in protocols]
    clash = UtteranceTable.first_shared_ids(tables)
    if clash is not None:
        i, j, shared = clash
        raise ConfigError(
            f"--protocol {protocols[i]} and {protocols[j]} share {len(shared)} utterance id(s) "
            f"(e.g. {shared[0]!r}): give each trial once"
        )
    return tables[0] if len(tables) == 1 else UtteranceTable.concat(tables)


def _default_names(paths: list[str], columns: list[str]) -> list[str]:
    """Each score file's stem; with the column appended where stems repeat (one file read for two columns)."""
    stems = [Path(p).stem for p in paths]
    return [f"{s}_{c}" if stems.count(s) > 1 else s for s, c in zip(stems, columns)]


def _write(out: Path, record: Path, fused: FusedTrials) -> None:
    """The rows (CSV or JSONL by ``out``'s suffix) and the record, both or neither: each is written whole beside
    the other in a hidden folder, then both are moved in place (a full disk, an error or Ctrl-C while writing the
    record left new rows beside an earlier run's record, or none)."""
    from sddkit.outputs import RowWriter, publish_staged

    def write(staging: Path) -> list[str]:
        columns = fused.columns_out()
        # file names are bytes: one that is not UTF-8 is written back as read, as sdd score writes it
        with open(staging / out.name, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            if out.suffix.lower() == ".jsonl":
                for row in fused.rows():
                    f.write(json.dumps(row) + "\n")
            else:
                writer = RowWriter(f)
                writer.writerow(columns)
                for row in fused.rows():
                    writer.writerow([row[c] for c in columns])
        (staging / record.name).write_text(json.dumps(fused.to_dict(), indent=2) + "\n", encoding="utf-8")
        return [out.name, record.name]

    publish_staged(out.parent, f"fusion {out.name}", write)
