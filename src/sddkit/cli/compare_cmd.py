"""``sdd compare``: is one system better than another on the same trials? (paired bootstrap)"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sddkit.evaluation.scores import ScoreFile


def register(sub: argparse._SubParsersAction) -> None:
    from sddkit.cli.options import SCORE_FORMAT_HELP, add_partitions_option, add_protocol_option

    p = sub.add_parser(
        "compare",
        help="paired bootstrap comparison of two systems' score files on one protocol (several seeds each)",
        description="Compare a system with a baseline on the trials both score (higher score = more bona fide): "
        "the metric of each run, and the paired bootstrap interval of system minus baseline. Several score "
        "files per side are runs (e.g. seeds), paired in the order given and averaged inside every replicate.",
    )
    p.add_argument("--protocol", required=True, help="protocol / key file of the evaluation set")
    p.add_argument(
        "--baseline", nargs="+", action="extend", required=True, help="the baseline's score file(s), one per run"
    )
    p.add_argument(
        "--system",
        nargs="+",
        action="extend",
        required=True,
        help="the system's score file(s), one per run, same order",
    )
    p.add_argument(
        "--names",
        nargs=2,
        default=("baseline", "system"),
        metavar=("BASELINE", "SYSTEM"),
        help="names the table and the JSON give the two sides (default: baseline system)",
    )
    p.add_argument("--metric", default="eer", choices=("eer", "min_dcf"), help="lower-is-better metric (default eer)")
    p.add_argument("--protocol-format", default=None, help="protocol reader name (default: detect)")
    add_protocol_option(p)
    p.add_argument("--score-format", default=None, metavar="FORMAT", help=SCORE_FORMAT_HELP)
    add_partitions_option(p, "compare only on these partitions of the protocol")
    p.add_argument(
        "--by",
        default=None,
        help="also compare within each value of this protocol column (e.g. source; attack, attack_type or vocoder: "
        "each value's spoofs against the bona fide trials of its partition, as sdd eval's per-attack table)",
    )
    p.add_argument(
        "--cluster-by",
        default=None,
        metavar="COLUMN",
        help="resample each class's trials in clusters of this protocol column (e.g. speaker) instead of one by "
        "one: a cluster bootstrap, for trials that are alike within a speaker, text or source",
    )
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level of the interval (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--json",
        default=None,
        help="also write the comparison as JSON to this file (one already there is replaced, with a note)",
    )
    p.set_defaults(func=run)


def _inputs(args: argparse.Namespace, options: dict, partitions: list[str] | None) -> dict:
    """What was compared, as ``sdd eval``'s ``inputs`` records it: the protocol and its selection (without them two
    comparisons of other partitions read alike), each score file's SHA-256 (a path names a file that may be
    rewritten), and the sddkit that computed it: its version and the git commit (and dirty flag) of its source
    (``sddkit_git``, None outside a git checkout), as ``sdd eval``'s report names them."""
    from sddkit import __version__
    from sddkit.documents import file_digest
    from sddkit.training.provenance import git_commit

    return {
        "protocol": os.path.abspath(args.protocol),
        "protocol_sha256": file_digest(args.protocol),  # None for a protocol folder
        "protocol_format": args.protocol_format,
        "protocol_options": options or None,
        "partitions": partitions,
        "baseline_sha256": [file_digest(f) for f in args.baseline],
        "system_sha256": [file_digest(f) for f in args.system],
        "sddkit_version": __version__,
        "sddkit_git": git_commit(),  # the code that compared: a version names many commits
    }


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import (
        check_minimums,
        check_paths_given,
        check_paths_writable,
        overwrites_input,
        parse_partitions,
        parse_protocol_options,
        read_partitions_and_rest,
        selection_words,
    )
    from sddkit.config import did_you_mean
    from sddkit.errors import ConfigError
    from sddkit.evaluation.compare import compare_scores
    from sddkit.evaluation.scores import read_scores
    from sddkit.outputs import earlier_report

    check_paths_given(args, "protocol", "json")
    check_minimums(args, bootstrap=1, seed=0)
    if not 0.0 < args.alpha < 1.0:
        raise ConfigError(f"--alpha must be in (0, 1), got {args.alpha:g}")
    _check_names(args.names)
    if args.json:  # before the bootstrap: a path that cannot be written is known at once
        check_paths_writable(args, "json")
        inputs = [args.protocol, *args.baseline, *args.system]
        if overwrites_input(args.json, inputs):
            raise ConfigError(f"--json {args.json} is one of the inputs: it would be overwritten; name another file")
    # the rest: the other partitions' rows, whose scores are no strays
    options = parse_protocol_options(args.protocol_options)
    partitions = parse_partitions(args.partitions)
    table, rest = read_partitions_and_rest(args.protocol, args.protocol_format, partitions, options)
    for flag, column in (("--by", args.by), ("--cluster-by", args.cluster_by)):
        if column is not None and column not in table.columns:  # the table's own error named neither flag nor file
            raise ConfigError(
                f"{flag} {column}: {args.protocol} has no column {column!r}{did_you_mean([column], table.columns)}; "
                f"columns: {', '.join(table.columns)}"
            )
    baselines = [read_scores(f, format=args.score_format) for f in args.baseline]
    systems = [read_scores(f, format=args.score_format) for f in args.system]
    comparison = compare_scores(
        table,
        baselines,
        systems,
        metric=args.metric,
        n_bootstrap=args.bootstrap,
        alpha=args.alpha,
        seed=args.seed,
        names=tuple(args.names),
        by=args.by,
        cluster_by=args.cluster_by,
        outside=rest,
        selection=selection_words(partitions, options),
    )
    # of the trials compared: the files every run shares may leave out the fusion's fit partitions the protocol holds
    _warn_fit_trials([*baselines, *systems], comparison.partitions)
    print(comparison.summary())
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        # complete or not at all: a crash or a full disk mid-write leaves no truncated JSON (nor cuts an older one)
        tmp = out.with_name(f".{out.name}.tmp")
        earlier = earlier_report(out) if out.is_file() else None
        try:
            record = {**comparison.to_dict(), "inputs": _inputs(args, options, partitions)}
            tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, out)
        except OSError as exc:  # e.g. the disk filled during the bootstrap: one line, the table is printed above
            raise ConfigError(f"--json {out}: cannot write it ({exc.strerror or exc})") from None
        finally:
            tmp.unlink(missing_ok=True)
        if earlier is not None:  # as sdd eval says of its report: a rerun replaces the file, never silently
            print(f"sdd compare: note: replaced the earlier comparison {earlier}", file=sys.stderr)
        print(f"-> {out}", file=sys.stderr)
    return 0


def _warn_fit_trials(files: list[ScoreFile], partitions: tuple[str, ...]) -> None:
    """A warning line for each ``sdd fuse`` output compared on trials of a partition its fusion was fitted on;
    ``partitions``: those of the compared trials (:attr:`Comparison.partitions`), not the protocol's: a baseline
    that scored only test files leaves the fusion's val trials out of the comparison."""
    from sddkit.evaluation.fusion import fit_trials_note, fitted_fusion

    if not partitions:
        return
    for score_file in files:
        note = fit_trials_note(fitted_fusion(score_file.path, len(score_file)), partitions)
        if note is not None:
            print(f"sdd compare: warning: {score_file.path}: {note}", file=sys.stderr)


def _check_names(names: list[str]) -> None:
    """Refuse ``--names`` that do not tell the two sides apart: the table printed two rows of one name (which is
    the baseline?) and the verdict read "a minus a"; an empty one printed " minus b"."""
    from sddkit.errors import ConfigError

    if any(not name.strip() for name in names):
        raise ConfigError(f"--names {' '.join(map(repr, names))}: a name is empty; name both sides")
    if names[0].strip() == names[1].strip():
        raise ConfigError(f"--names {names[0]} {names[1]}: the two sides need names of their own")
