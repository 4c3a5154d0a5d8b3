"""``sdd eval``: score a detector's output file against a protocol and write the report."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sddkit.evaluation.scores import ScoreFile


def register(sub: argparse._SubParsersAction) -> None:
    from sddkit.cli.options import SCORE_FORMAT_HELP, add_partitions_option, add_protocol_option

    p = sub.add_parser(
        "eval",
        help="evaluate a score file against a protocol (EER, minDCF, t-DCF, ... report with plots)",
        description="Evaluate scores (higher = more bona fide) against a protocol; writes report.json, "
        "report.md, per-attack/source/codec (and, with a vocoder or attack_type column, per-vocoder or "
        "per-attack-type) CSV tables, det.png, roc.png and scores.png (score histograms per class) into --out.",
    )
    # not required by argparse: left out together, with --asv-scores, they ask for an SASV system's a-DCF alone
    p.add_argument(
        "--scores",
        default=None,
        help="score file (ASVspoof 2019/2021/5, path,score CSV or TSV, sdd score JSONL); required, unless an SASV "
        "system is evaluated alone (--asv-scores without --scores)",
    )
    p.add_argument(
        "--protocol",
        default=None,
        help="protocol / key file of the evaluation set (with --scores; with --asv-scores alone, read only for each "
        "SASV trial's attack and codec by its file)",
    )
    p.add_argument(
        "--out", required=True, help="output folder for the report (a report already there is replaced, with a note)"
    )
    p.add_argument("--protocol-format", default=None, help="protocol reader name (default: detect)")
    add_protocol_option(p)
    p.add_argument("--score-format", default=None, metavar="FORMAT", help=SCORE_FORMAT_HELP)
    add_partitions_option(
        p,
        "evaluate only these partitions of the protocol (e.g. eval: ASVspoof 2021's official phase; "
        "default: every row, with a per-partition table when there are several)",
    )
    p.add_argument(
        "--by",
        action="append",
        default=None,
        metavar="COLUMN",
        help="also tabulate the metrics per value of this protocol column (repeatable; e.g. speaker, language, codec; "
        "attack, attack_type or vocoder: each value's spoofs against the bona fide trials of its partition, as the "
        "per-attack table; any other: the trials holding each value, as the per-source table), in report.md and "
        "at per_column.COLUMN of report.json",
    )
    p.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap replicates for the EER CI (0 = none; default 200)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--asv-scores",
        default=None,
        metavar="FILE",
        help="scores of the ASV system the countermeasure protects (ASVspoof 2019's layout, 'SOURCE KEY SCORE' "
        "with KEY target/nontarget/spoof, or ASVspoof 2021's ASV key lines with their score appended, of which the "
        "evaluated phases' lines count; ASVspoof 5's SASV score lines 'SPEAKER UTT SCORE KIND', or a table with "
        "asv-label and asv-score columns): the min t-DCFs take its error rates at its EER threshold, as the "
        "official ASVspoof 2019/2021 scripts do (default: the ASVspoof 5 organisers' pooled ASV rates), each "
        "attack's min t-DCFs the Pfa_spoof of its own ASV spoof trials where the lines name their attack ('A07 spoof "
        "-2.90'), and the "
        "report adds the concurrent t-EER of the countermeasure before that ASV system (pooled, and per attack and "
        "per codec condition where the lines name them); a table with a sasv-score "
        "column too (an ASVspoof 5 track-2 submission) adds the min a-DCF of those SASV scores (pooled, per attack and "
        "per codec condition); given without --scores, the file holds an SASV system's scores (its sasv-score "
        "column, else its score: 'SPEAKER UTT SCORE KIND' lines) and the report is their min a-DCF alone (the "
        "ASVspoof 5 package's t2_single mode, e.g. an end-to-end SASV system's submission), pooled and per attack "
        "and per codec condition where the key (or a --protocol given, by file) names them",
    )
    p.add_argument(
        "--asv-key",
        default=None,
        metavar="FILE",
        help="the trials' kinds of an --asv-scores table that names its trials but not their kinds (ASVspoof 5: "
        "'spk filename ... asv-score' scores, joined on spk and filename with the package's SASV key 'spk filename "
        "cm-label asv-label' or the database's ASVspoof5.<dev|eval>.track_2.trial.tsv); each spoof trial's attack, "
        "for the per-attack min t-DCFs, is the key's (the track-2 list's ATTACK_LABEL) or else the --protocol line's "
        "of its file, and each trial's codec, for the per-codec ones, the --protocol line's of its file; the t-EER "
        "joins each trial with the CM score of its file, as the ASVspoof 5 package does (a file in several trials "
        "counts once per trial: report.json's t_eer_cm_counting per_trial)",
    )
    p.set_defaults(func=run)


def evaluate_files(
    scores: str,
    protocol: str,
    out: str,
    *,
    protocol_format: str | None,
    score_format: str | None,
    bootstrap: int,
    seed: int,
    partitions: list[str] | None = None,
    asv_scores: str | None = None,
    command: str = "eval",
    protocol_options: dict[str, Any] | None = None,
    asv_key: str | None = None,
    by: list[str] | None = None,
) -> int:
    """Shared by ``sdd eval`` and ``sdd demo`` (``command``, which its notes name): read, evaluate, write, print
    the summary. ``by``: ``--by``'s protocol columns, checked once the protocol is read, before the scores."""
    import dataclasses

    from sddkit.cli.options import read_partitions_and_rest, selection_words
    from sddkit.config import from_dict
    from sddkit.evaluation.asv import read_asv_and_sasv_scores
    from sddkit.evaluation.report import EvalConfig, by_problem, evaluate, evaluated_asv_trials, write_report
    from sddkit.evaluation.scores import read_scores
    from sddkit.outputs import earlier_report

    config = from_dict(EvalConfig, {"bootstrap": bootstrap, "seed": seed})
    asv = sasv = None
    if asv_scores is not None:  # read first: a bad line is said before the protocol and scores are read
        # with an ASVspoof 5 track-2 submission's sasv-score beside its asv-score: the a-DCF, that track's metric
        asv, sasv = read_asv_and_sasv_scores(asv_scores, key=asv_key)
    # every row when partitions is None; else the selected rows and the rest (whose scores are no strays)
    table, rest = read_partitions_and_rest(protocol, protocol_format, partitions, protocol_options)
    for column in dict.fromkeys(by or ()):  # named with the flag and the file, before the scores are read
        problem = by_problem(table, column)
        if problem is not None:
            from sddkit.errors import ConfigError

            raise ConfigError(f"--by {column}: {protocol} {problem}")
    asv_phases = None
    if asv is not None:
        if table.has_column("partition"):
            # ASVspoof 2021 ASV key lines with their scores: the ASV trials of the evaluated phases alone, as the
            # official scripts take them (all phases' made another min t-DCF of `--partitions eval`, unsaid)
            asv, asv_phases = asv.of_phases(table.column("partition"), asv_scores)
        # the trials the pooled t-DCFs take, of the evaluated codec conditions alone where the CM trials are of some
        # (a warning of the report says how many each kind kept): the notes below describe those, not every trial
        used, codecs = evaluated_asv_trials(asv, table, rest)
        conditions = "" if codecs is None else f"codec condition(s) {', '.join(codecs)}"
        if asv_phases is not None:
            phases = ", ".join(asv_phases) + (f" and {conditions}" if conditions else "")
            print(
                f"sdd {command}: note: {asv_scores}: the ASV error rates are those of its trials of the evaluated "
                f"phase(s) {phases} ({used.target.size} target, {used.nontarget.size} non-target, {used.spoof.size} "
                "spoof), as the official ASVspoof 2021 scripts take them",
                file=sys.stderr,
            )
        config = dataclasses.replace(config, asv=asv.rates())
        if used.rates().pfa_spoof == 0:  # the report stands, its 2019 t-DCF null (min_tdcf_notes says why)
            spoofs = f"spoof trials of {conditions}" if conditions else "spoof trials"
            print(
                f"sdd {command}: note: {asv_scores}: at its EER threshold the ASV system accepts none of its {spoofs} "
                "(Pfa_spoof 0): the 2019 t-DCF, normalised by min(C1, C2) with C2 proportional to that rate, "
                "is undefined (a spoof the countermeasure accepts would cost nothing) and left out",
                file=sys.stderr,
            )
    score_file = read_scores(scores, format=score_format)
    inputs = evaluated_inputs(
        scores,
        protocol,
        protocol_format,
        partitions,
        asv_scores,
        score_file=score_file,
        protocol_options=protocol_options,
        asv_key=asv_key,
    )
    model_threshold = (inputs["model"] or {}).get("threshold")
    if model_threshold is not None:
        # the decisions sdd score wrote (`decision`: score >= the model's threshold) are the ones the thresholded
        # rates describe; at 0 they described decisions no one made (the bundled model decides at 0.73)
        config = dataclasses.replace(config, decision_threshold=model_threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # partial-match notes are printed from the report below
        selection = selection_words(partitions, protocol_options)
        report = evaluate(
            table, score_file, config, outside=rest, asv_scores=asv, selection=selection, sasv_scores=sasv, by=by
        )
    if asv_phases is not None:  # which of the ASV file's trials gave the t-DCFs' ASV rates
        inputs["asv_phases"] = asv_phases
    report.inputs = inputs
    earlier = earlier_report(Path(out) / "report.json", ("inputs", "scores"))
    paths = write_report(report, out)
    if earlier is not None:  # a rerun into the same folder replaces the report: said, never silently
        print(f"sdd {command}: note: replaced the earlier report in {out} ({earlier})", file=sys.stderr)
    for note in report.warnings:
        print(f"warning: {note}", file=sys.stderr)
    print(f"{report.summary()} -> {Path(paths['report.md'])}")
    return 0


def evaluated_inputs(
    scores: str,
    protocol: str,
    protocol_format: str | None,
    partitions: list[str] | None,
    asv_scores: str | None = None,
    *,
    score_file: ScoreFile | None = None,
    protocol_options: dict[str, Any] | None = None,
    asv_key: str | None = None,
) -> dict[str, Any]:
    """What a report evaluated (its ``inputs``): the score file, the protocol and the ASV score file (None: the
    default ASV rates) by absolute path and SHA-256 (a path alone names a file that may be rewritten), and the
    model that scored, from the run record ``sdd score`` wrote beside its output (None: a score file from
    elsewhere), with its calibration, decision threshold and the git commit of the code that scored (``git``, and
    ``earlier_git`` for a resumed output's rows of other code) when the record has them; ``sddkit_git``: the commit
    (and dirty flag) of the code evaluating, None outside a git checkout. ``score_file``: ``scores``
    as read for the report, whose columns tell whether that record is still of this file; without it its header is
    read again (:func:`~sddkit.evaluation.scores.score_columns`)."""
    import math
    import os

    from sddkit import __version__
    from sddkit.documents import file_digest
    from sddkit.evaluation.fusion import applied_fusion, fitted_fusion
    from sddkit.evaluation.scores import run_record
    from sddkit.training.provenance import git_commit

    record = run_record(scores)
    # an sdd fuse output: the partitions its fusion was fitted on, whose figures here are no held-out ones
    fusion = fitted_fusion(scores, len(score_file)) if score_file is not None else None
    # an sdd fuse --apply output: the fusion record applied, and the code that applied it
    applied = applied_fusion(scores, len(score_file)) if score_file is not None else None
    model = None
    if record is not None and _has_recorded_columns(scores, record, score_file):
        where, cwd = record.get("model"), record.get("cwd")
        if isinstance(where, str) and where and isinstance(cwd, str) and os.path.isabs(cwd):
            where = os.path.normpath(os.path.join(cwd, where))  # as sdd score's working directory read it
        model = {"model": where, "weights_digest": record.get("weights_digest")}
        inference = record.get("inference")
        if isinstance(inference, dict) and isinstance(inference.get("calibration"), dict):
            # the scores' scale: an uncalibrated model's are no LLRs, which actDCF and Cllr take them for
            model["calibration"] = inference["calibration"]
        if "git" in record:  # which code scored (an older sdd score's record has no such key)
            model["git"] = record["git"]
            if record.get("earlier_git"):  # rows of a resumed output scored by other code too
                model["earlier_git"] = record["earlier_git"]
        threshold = inference.get("threshold") if isinstance(inference, dict) else None
        if isinstance(threshold, int | float) and not isinstance(threshold, bool) and math.isfinite(threshold):
            # where the model decides (`decision` in the scores): the report's thresholded rates are taken there
            model["threshold"] = float(threshold)
    return {
        "scores": os.path.abspath(scores),
        "scores_sha256": file_digest(scores),
        "protocol": os.path.abspath(protocol),
        "protocol_sha256": file_digest(protocol),  # None for a protocol folder
        "protocol_format": protocol_format,
        "protocol_options": protocol_options or None,  # --protocol-option's reader options, None when none
        "partitions": partitions,
        "asv_scores": None if asv_scores is None else os.path.abspath(asv_scores),
        "asv_scores_sha256": None if asv_scores is None else file_digest(asv_scores),
        **({} if asv_key is None else {"asv_key": os.path.abspath(asv_key), "asv_key_sha256": file_digest(asv_key)}),
        "model": model,
        **({} if fusion is None else {"fusion": fusion}),
        **({} if applied is None else {"fusion_applied": applied}),
        "sddkit_version": __version__,
        "sddkit_git": git_commit(),  # the code that evaluated: a version names many commits
    }


def _has_recorded_columns(scores: str, record: dict[str, Any], score_file: ScoreFile | None) -> bool:
    """Whether ``scores`` still has the columns its run record says ``sdd score`` wrote: a file another tool wrote
    over (its ``path,score`` probabilities, say) beside an earlier run's record holds no scores of that model, which
    the report would name and read as its log-odds (no "probabilities" warning, the calibration one). A record
    without ``columns`` (an older sdd score) or, without ``score_file``, a file whose header cannot be read is taken
    at its word."""
    from sddkit.evaluation.scores import score_columns

    columns = record.get("columns")
    if not isinstance(columns, list) or not columns:
        return True
    if score_file is not None:
        found = score_file.columns
    else:
        try:
            found = score_columns(scores)
        except (OSError, ValueError):  # ProtocolError, a JSON line that is not JSON, text that is not UTF-16
            return True
    # more columns are fine (a spreadsheet's added one); one of sdd score's missing is another file's header
    return {str(c) for c in columns} <= set(found)


# names of the files a report holds, which a new --out folder is not given by mistake
REPORT_FILE_SUFFIXES = (".json", ".md", ".csv", ".png", ".txt", ".html")


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import check_minimums, check_paths_given, parse_partitions, parse_protocol_options

    check_paths_given(args, "scores", "protocol", "out", "asv_scores", "asv_key")
    if args.asv_key is not None and args.asv_scores is None:
        from sddkit.errors import ConfigError

        raise ConfigError("--asv-key gives the kinds of --asv-scores' trials: give it with --asv-scores")
    # --protocol may come too: read only for the trials' attacks and codecs by file (their per-attack and per-codec
    # min a-DCFs, where the key names neither, as the package's SASV key)
    sasv_alone = args.scores is None and args.asv_scores is not None
    _check_inputs(args, sasv_alone)
    check_minimums(args, bootstrap=0, seed=0)  # numpy's generators refuse a negative seed, mid-report
    protocol_options = parse_protocol_options(args.protocol_options)
    if os.path.exists(args.out) and not os.path.isdir(args.out):  # known now, not after the bootstrap
        from sddkit.errors import ConfigError
        from sddkit.outputs import folder_failure

        # the words publish_staged's mkdir would give after the whole evaluation
        raise ConfigError(f"--out {args.out}: cannot create the report folder ({folder_failure(FileExistsError())})")
    if not os.path.exists(args.out) and os.path.splitext(args.out)[1].lower() in REPORT_FILE_SUFFIXES:
        from sddkit.errors import ConfigError

        # `--out report.json` would make a folder of that name with report.json inside: the report is several files
        raise ConfigError(
            f"--out {args.out}: --out is the report's folder (report.json, report.md, CSV tables and plots go into it),"
            " not a file: give a folder, e.g. --out report/"
        )
    if sasv_alone:
        return evaluate_sasv_file(
            args.asv_scores,
            args.out,
            asv_key=args.asv_key,
            protocol=args.protocol,
            protocol_format=args.protocol_format,
        )
    return evaluate_files(
        args.scores,
        args.protocol,
        args.out,
        protocol_format=args.protocol_format,
        score_format=args.score_format,
        bootstrap=args.bootstrap,
        seed=args.seed,
        partitions=parse_partitions(args.partitions),
        asv_scores=args.asv_scores,
        asv_key=args.asv_key,
        protocol_options=protocol_options,
        by=args.by,
    )


# countermeasure options that an SASV system's scores evaluated alone do not use: refused, not silently ignored
# (--protocol-format only without --protocol, which names the trials' attacks and codecs there)
_CM_ONLY_OPTIONS = (
    ("protocol_format", "--protocol-format"),
    ("protocol_options", "--protocol-option"),
    ("score_format", "--score-format"),
    ("partitions", "--partitions"),
    ("by", "--by"),
)


def _check_inputs(args: argparse.Namespace, sasv_alone: bool) -> None:
    """Refuse a countermeasure evaluation missing --scores or --protocol, and an SASV one given the options of a
    countermeasure's (which it would ignore)."""
    from sddkit.errors import ConfigError

    if sasv_alone:
        given = [
            flag
            for dest, flag in _CM_ONLY_OPTIONS
            if getattr(args, dest, None) and not (dest == "protocol_format" and args.protocol is not None)
        ]
        if given:
            raise ConfigError(
                f"{', '.join(given)}: options of a countermeasure's --scores and --protocol; --asv-scores without "
                "--scores is an SASV system's scores, evaluated by trial kind (their min a-DCF; a --protocol given "
                "too names their attacks and codecs by file)"
            )
        return
    missing = [flag for flag in ("--scores", "--protocol") if getattr(args, flag[2:]) is None]
    if missing:
        raise ConfigError(
            f"give {' and '.join(missing)}: a countermeasure is evaluated from its --scores against the --protocol "
            "(an SASV system's scores alone, for their a-DCF: --asv-scores FILE [--asv-key KEY] without --scores and "
            "--protocol)"
        )


def evaluate_sasv_file(
    asv_scores: str,
    out: str,
    *,
    asv_key: str | None = None,
    command: str = "eval",
    protocol: str | None = None,
    protocol_format: str | None = None,
) -> int:
    """``sdd eval --asv-scores FILE [--asv-key KEY] [--protocol P]`` without ``--scores``: the min a-DCF of an SASV
    system's scores (:func:`sddkit.evaluation.asv.read_sasv_system_scores`) under ``EvalConfig``'s a-DCF costs,
    written as ``report.json`` (``pooled.min_a_dcf``, ``pooled.a_dcf_threshold``, as a full report has them) and
    ``report.md``; and per attack and per codec condition where the trials name them (``per_attack``,
    ``per_codec``: :func:`sddkit.evaluation.report.sasv_group_rows`), as the key names them, else as the line of
    each trial's file in ``protocol`` (read only for that), those rows also as ``per_attack.csv`` and
    ``per_codec.csv`` (each written where it has rows), as a countermeasure report writes its tables."""
    import json

    import numpy as np

    from sddkit import __version__
    from sddkit.config import to_dict
    from sddkit.documents import file_digest
    from sddkit.evaluation.asv import read_sasv_system_scores
    from sddkit.evaluation.report import (
        OPTIONAL_OUTPUTS,
        REPORT_OUTPUTS,
        SASV_SCHEMA,
        EvalConfig,
        csv_text,
        inverted_note,
        key_protocol_warnings,
        protocol_by_file,
        sasv_dcf,
        sasv_group_rows,
    )
    from sddkit.outputs import earlier_report, publish_staged
    from sddkit.training.provenance import git_commit

    sasv = read_sasv_system_scores(asv_scores, asv_key)
    notes = []
    if protocol is not None:
        table = _read_whole_protocol(protocol, protocol_format)
        notes += _sasv_protocol_notes(sasv, protocol, table)
        notes += key_protocol_warnings([sasv], table)  # the key's kept where the protocol names others: said
        sasv = sasv.with_protocol(*protocol_by_file(table))
    cost = EvalConfig().adcf
    dcf = sasv_dcf(sasv, cost)
    counts = {"n_target": sasv.target.size, "n_nontarget": sasv.nontarget.size, "n_spoof": sasv.spoof.size}
    groups = sasv_group_rows(sasv, cost)
    unnamed = 0 if sasv.spoof_attacks is None else int(np.sum(sasv.spoof_attacks == ""))
    if unnamed and groups["per_attack"]:
        notes.append(
            f"{unnamed} of the {sasv.spoof.size} spoof trials name no attack (neither the key nor the protocol names "
            "it): they count in the pooled min a-DCF and in no per-attack row"
        )
    if sasv.n_unscored:
        scored = sum(counts.values())
        notes.append(
            f"the SASV score table scores {scored} of the {scored + sasv.n_unscored} trials of its key "
            f"({sasv.n_unscored} without a score): the a-DCF is that of the scored trials alone (the ASVspoof 5 "
            "package refuses a score file that does not cover its SASV key)"
        )
    inverted = inverted_note(sasv, sasv=True)
    if inverted:
        notes.append(inverted)
    inputs = {
        "asv_scores": os.path.abspath(asv_scores),
        "asv_scores_sha256": file_digest(asv_scores),
        **({} if asv_key is None else {"asv_key": os.path.abspath(asv_key), "asv_key_sha256": file_digest(asv_key)}),
        **(
            {}
            if protocol is None
            else {
                "protocol": os.path.abspath(protocol),
                "protocol_sha256": file_digest(protocol),
                "protocol_format": protocol_format,
            }
        ),
        "sddkit_version": __version__,
        "sddkit_git": git_commit(),  # the code that evaluated: a version names many commits
    }
    pooled = {**counts, **dcf}
    # a schema of its own: a reader of report.json tells it from a countermeasure's report (sddkit.report/1)
    report = {
        "schema": SASV_SCHEMA,
        "pooled": pooled,
        # as the package's full evaluation breaks the min a-DCF down; None where no trial names an attack (codec)
        "per_attack": groups["per_attack"],
        "per_codec": groups["per_codec"],
        "warnings": notes,
        "inputs": inputs,
        "config": {"adcf": to_dict(cost)},
    }
    markdown = "\n".join(
        [
            "# SASV evaluation report",
            "",
            f"SASV scores: `{inputs['asv_scores']}`" + (f", trial kinds from `{inputs['asv_key']}`" if asv_key else ""),
            f"({counts['n_target']} target, {counts['n_nontarget']} non-target, {counts['n_spoof']} spoof trials).",
            "",
            "| metric | value |",
            "|---|---|",
            f"| min a-DCF (normalised); threshold {dcf['a_dcf_threshold']:.4f} | {dcf['min_a_dcf']:.4f} |",
            "",
            f"a-DCF costs: P_tar {cost.p_tar:g}, P_non {cost.p_non:g}, P_spf {cost.p_spf:g}, C_miss {cost.c_miss:g}, "
            f"C_fa_asv {cost.c_fa_asv:g}, C_fa_spoof {cost.c_fa_spoof:g} (the ASVspoof 5 evaluation package's).",
            *_sasv_group_section(groups["per_attack"], "attack"),
            *_sasv_group_section(groups["per_codec"], "codec"),
            *([""] + [f"- warning: {note}" for note in notes] if notes else []),
            "",
        ]
    )
    texts = {"report.md": markdown}
    for key in ("attack", "codec"):  # the per-attack (per-codec) table as a countermeasure report writes its own
        if groups[f"per_{key}"]:
            texts[f"per_{key}.csv"] = csv_text(groups[f"per_{key}"])
    texts["report.json"] = json.dumps(report, indent=2, allow_nan=False) + "\n"

    def write(staging: Path) -> list[str]:
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")
        return list(texts)  # report.json last: the index goes in after the files it describes

    earlier = earlier_report(Path(out) / "report.json", ("inputs", "asv_scores"))
    # a countermeasure report's tables and plots that an earlier run left in --out go: not read as this one's
    publish_staged(Path(out), "report", write, stale=(*REPORT_OUTPUTS, *OPTIONAL_OUTPUTS))
    if earlier is not None:
        print(f"sdd {command}: note: replaced the earlier report in {out} ({earlier})", file=sys.stderr)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    print(
        f"min a-DCF {dcf['min_a_dcf']:.4f} (threshold {dcf['a_dcf_threshold']:.4g}; {counts['n_target']} target, "
        f"{counts['n_nontarget']} non-target, {counts['n_spoof']} spoof) -> {Path(out) / 'report.md'}"
    )
    return 0


def _read_whole_protocol(protocol: str, protocol_format: str | None) -> Any:
    """Every row of ``protocol`` (an SASV evaluation selects no partition: the protocol names files' attacks)."""
    from sddkit.cli.options import read_partitions_and_rest

    return read_partitions_and_rest(protocol, protocol_format, None, None)[0]


def _sasv_protocol_notes(sasv: Any, protocol: str, table: Any) -> list[str]:
    """A note when ``protocol`` names nothing of the SASV trials: their layout names no file to join on, or none of
    their files is among its rows (another set's protocol): its attacks and codecs would be taken from nowhere."""
    import numpy as np

    if sasv.files is None:
        return [
            f"--protocol {protocol}: the SASV score lines name no file (ASVspoof 2019's layout), so the protocol names "
            "none of their attacks or codecs; only what the lines name is broken down"
        ]
    if not np.isin(np.concatenate(sasv.files), table.column("utt_id")).any():
        return [
            f"--protocol {protocol}: none of the SASV trials' files is in it (a protocol of another set?), so it names "
            "none of their attacks or codecs; give the protocol of the same set (ASVspoof5.<dev|eval>.track_1.tsv)"
        ]
    return []


def _sasv_group_section(rows: list[dict[str, Any]] | None, key: str) -> list[str]:
    """report.md's per-attack (``key`` ``attack``) or per-codec min a-DCF table of an SASV report; none without rows."""
    if not rows:
        return []
    from sddkit.evaluation.groups import markdown_cell
    from sddkit.evaluation.report import adcf_cells

    trials = (
        "every target and non-target trial with that attack's spoof trials alone"
        if key == "attack"
        else "that condition's own target, non-target and spoof trials"
    )
    lines = ["", f"## Per-{key} min a-DCF", "", f"Each row takes {trials}, as the package's full evaluation does.", ""]
    lines += [f"| {key} | target | non-target | spoof | min a-DCF | threshold |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [str(r[n]) for n in ("n_target", "n_nontarget", "n_spoof")] + adcf_cells(r)
        lines.append(f"| {markdown_cell(str(r[key]))} | {' | '.join(cells)} |")
    return lines
