"""``sdd robustness``: evaluate a model under named degradations (codecs, noise, reverb, laundering).

    sdd robustness --model DIR --protocol P --out OUT [--conditions all|c1,c2,...] [--mode both|all|spoof_only]

Each file is decoded once, degraded by every condition (seeded per condition and utterance) and
scored; ``clean`` is always the reference. Writes OUT/robustness.{csv,json,md,png} (one row per
condition and mode: EER, balanced accuracy at the model's threshold, minDCF) and
OUT/scores_<mode>.csv (per-trial scores), and prints the Markdown table.

Resumable: the scores are journaled in OUT/robustness.journal.jsonl as the batches are scored, so a rerun
with the same options after a crash or Ctrl-C scores only the files not yet done (a journal of another
model, protocol or settings is refused, naming what differs: delete it to start afresh; other package versions
are not refused, but a note says so and robustness.json keeps the earlier ones as info.earlier_versions). A
resumed run keeps the errors the journal holds (files that could not be decoded, conditions that failed on a
file), as a resumed ``sdd score`` keeps its error rows; ``--retry-errors`` scores those files again (e.g. after
mending them). The journal is removed once the report is written. A finished run's report already in OUT is
replaced by the new run's; a note at the start names it (its robustness.json, when it was written, its model).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from sddkit.cli.options import add_partitions_option, add_protocol_option

    p = sub.add_parser(
        "robustness",
        help="evaluate a model under degradations (codecs, noise, reverb, laundering), SAFE-style",
        description="Score a protocol under named test conditions in two modes: 'all' (every utterance "
        "degraded) and 'spoof_only' (only spoofs degraded, bona fide stays clean, as in the SAFE challenge). "
        "Writes robustness.csv/.json/.md/.png and scores_<mode>.csv into --out. Resumable: scores are journaled "
        "in --out as they are made (robustness.journal.jsonl, removed once the report is written), and a rerun "
        "with the same model, protocol and options after a crash or Ctrl-C scores only the files not yet done "
        "(a journal of other ones is refused: delete it to start afresh); the errors the journal holds (files that "
        "could not be decoded, conditions that failed on a file) are kept unless --retry-errors is given.",
    )
    p.add_argument("--model", default=None, help="model directory (default: the bundled default model)")
    p.add_argument("--protocol", required=True, help="protocol file or labelled folder (bonafide/ + spoof/)")
    p.add_argument(
        "--out",
        required=True,
        help="output folder (a rerun into it resumes an unfinished run; a finished one's report there is replaced, "
        "with a note at the start)",
    )
    p.add_argument(
        "--conditions",
        default="all",
        help="comma-separated condition names (listed in docs/cli.md; an unknown name's error lists them all), or "
        "'all' (default); 'clean' is always included",
    )
    p.add_argument(
        "--mode",
        choices=["both", "all", "spoof_only"],
        default="both",
        help="degrade every utterance ('all'), only spoofs ('spoof_only'), or report both (default)",
    )
    p.add_argument("--protocol-format", default=None, help="protocol reader name (default: detect)")
    add_protocol_option(p)
    add_partitions_option(p, "partitions to keep (e.g. test_unseen); any protocol whose table has a partition column")
    p.add_argument("--limit", type=int, default=None, help="evaluate a seeded, label-stratified subset of N files")
    p.add_argument("--seed", type=int, default=0, help="seed of the degradations and of --limit (default 0)")
    p.add_argument(
        "--workers", type=int, default=2, help="decoding + degradation threads (0 = in the main thread; default 2)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...; default cpu)")
    p.add_argument(
        "--fast-codecs",
        action="store_true",
        help="cheaper codec encoder search (3-6x faster codecs; not bit-identical to the named conditions)",
    )
    p.add_argument(
        "--max-duration-s",
        type=float,
        default=600.0,
        help="files longer than this count as failures (0 = no limit; default 600)",
    )
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="on resume, score again the files whose journaled results hold an error (a file that could not be "
        "decoded, a condition that failed on it), e.g. after mending them",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, no table on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import (
        check_max_duration_fits,
        check_minimums,
        check_paths_given,
        parse_partitions,
        parse_protocol_options,
        read_partitions,
        set_torch_threads,
    )
    from sddkit.config import from_dict
    from sddkit.documents import file_digest
    from sddkit.errors import ConfigError
    from sddkit.evaluation.robustness import (
        JOURNAL_NAME,
        RobustnessConfig,
        markdown_table,
        prepare_out_dir,
        resolve_conditions,
        run_robustness,
        write_robustness,
    )
    from sddkit.outputs import earlier_report
    from sddkit.scoring.api import load_detector, resolve_model_path, scoring_device
    from sddkit.training.provenance import git_commit, package_versions

    check_paths_given(args, "model", "protocol", "out")
    check_minimums(args, batch_size=1, workers=0, threads=1, max_duration_s=0, seed=0)
    if args.limit is not None and args.limit < 2:  # named as the flag, not as RobustnessConfig's field
        raise ConfigError(f"--limit must be >= 2 (one bona fide and one spoof file), got {args.limit}")
    scoring_device(args.device)
    set_torch_threads(args.threads)
    # validate the cheap things (condition names, limits) before loading a model or reading audio
    try:
        conditions = resolve_conditions(args.conditions)
    except ConfigError as exc:
        raise ConfigError(f"--conditions: {exc}") from None
    config = from_dict(
        RobustnessConfig,
        {
            "conditions": conditions,
            "mode": args.mode,
            "seed": args.seed,
            "workers": args.workers,
            "limit": args.limit,
            "fast_codecs": args.fast_codecs,
            "max_duration": args.max_duration_s or None,
        },
    )
    partitions = parse_partitions(args.partitions)
    protocol_options = parse_protocol_options(args.protocol_options)
    table = read_partitions(args.protocol, args.protocol_format, partitions, protocol_options)
    model_path = resolve_model_path(args.model)
    detector = load_detector(model_path, device=args.device, batch_size=args.batch_size)
    # a limit no file could pass: refused before a journal is opened (every file failed, and a rerun read that back)
    check_max_duration_fits(args.max_duration_s, detector.inference.min_duration_s, "every file would be a failure")
    info = {
        "model": str(model_path),
        "protocol": str(args.protocol),
        "protocol_sha256": file_digest(args.protocol),  # None for a protocol folder
        "protocol_format": args.protocol_format,
        "protocol_options": protocol_options or None,
        "partitions": partitions,
        "sample_rate": detector.sample_rate,
        "window_samples": detector.inference.window_samples,
        # which weights scored (the path may be relative, and a model directory may be overwritten), where
        # relative paths were read from, and the versions of what decoded and degraded the audio
        "weights_digest": detector.info.get("weights_digest"),
        "cwd": os.getcwd(),
        "versions": package_versions(),
        # and which code: the version alone is the same for every commit (not compared on a resume)
        "git": git_commit(),
    }
    out = prepare_out_dir(args.out)  # an --out that cannot be written fails now, not after the scoring
    journal = out / JOURNAL_NAME
    earlier = earlier_report(out / "robustness.json", ("info", "model"))
    if earlier is not None:  # said now, while stopping keeps it, not after hours of scoring
        print(
            f"sdd robustness: note: {out} holds the report of an earlier run ({earlier}); this run replaces it "
            "once its own report is written (stop now, or name another --out, to keep it)",
            file=sys.stderr,
        )
    result = run_robustness(
        detector, table, config, progress=not args.quiet, info=info, journal=journal, retry_errors=args.retry_errors
    )
    paths = write_robustness(result, args.out)
    if result.versions_changed:  # the journaled results were scored under other package versions: said
        print(
            f"sdd robustness: note: the {result.n_resumed} file(s) resumed from {JOURNAL_NAME} were scored under "
            f"other package versions ({', '.join(result.versions_changed)}); robustness.json keeps them as "
            "info.earlier_versions",
            file=sys.stderr,
        )
    if result.git_changed:  # not refused (code changes between an interruption and its resume are normal): said
        print(
            f"sdd robustness: note: the {result.n_resumed} file(s) resumed from {JOURNAL_NAME} were scored by other "
            f"code ({result.git_changed}); robustness.json keeps it as info.earlier_git",
            file=sys.stderr,
        )
    if not args.quiet:
        print(markdown_table(result.rows))
    failed = f", {len(result.failures)} file(s) could not be read or scored" if result.failures else ""
    errors = sum(len(e) for e in result.condition_errors.values())
    failed += f", {errors} degradation(s) failed" if errors else ""
    failed += f", {result.n_resumed} file(s) resumed from {JOURNAL_NAME}" if result.n_resumed else ""
    failed += f", {result.n_retried} file(s) with errors scored again" if result.n_retried else ""
    print(
        f"{int(result.decoded.sum())} files x {len(config.conditions)} conditions ({', '.join(config.modes)})"
        f"{failed} -> {Path(paths['robustness.md'])}",
        file=sys.stderr,
    )
    return 0
