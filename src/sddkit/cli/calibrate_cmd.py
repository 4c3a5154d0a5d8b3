"""``sdd calibrate --model DIR --protocol P``: fit a model's score calibration and threshold on labelled files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from sddkit.cli.options import add_partitions_option, add_protocol_option

    p = sub.add_parser(
        "calibrate",
        help="fit a model directory's calibration (scores become LLRs) and threshold on labelled validation files",
        description=(
            "Score the labelled files of --protocol (choose the validation partition with --partitions), fit a "
            "logistic calibration of the model's raw scores (a * raw + b, a calibrated log-likelihood ratio) and a "
            "decision threshold, and store both in the model directory (or a copy with --out). sdd score, sdd serve "
            "and the Python API then give calibrated scores and decide at that threshold."
        ),
    )
    p.add_argument("--model", required=True, help="model directory to calibrate (e.g. runs/NAME/best)")
    p.add_argument(
        "--protocol",
        required=True,
        help="labelled files to fit on: any protocol of `sdd list protocol` (validation files, never test ones)",
    )
    p.add_argument(  # --protocol-format as sdd eval, compare, fuse and robustness name it; --format kept for scripts
        "--protocol-format",
        "--format",
        dest="format",
        default=None,
        help="the protocol's reader (default: detected); --format is the same option",
    )
    add_protocol_option(p)
    add_partitions_option(p, "only these partitions (e.g. val)")
    p.add_argument(
        "--threshold",
        default="eer",
        metavar="{eer,bayes,keep,far=RATE,frr=RATE}",
        help="eer (default): where the two error rates on these files meet; bayes: the Bayes decision at --prior "
        "with equal costs (0 at 0.5); keep: the model's stored threshold value, read on the new calibrated scale (the "
        "decisions it gave move with the calibration); far=RATE (e.g. far=0.01): at most RATE of these spoof files "
        "accepted (scored >= the threshold), rejecting the fewest bona fide; frr=RATE: at most RATE of these bona fide "
        "files rejected, accepting the fewest spoofs (RATE a fraction in (0, 1), at least 1 over the class's file "
        "count; the report's operating_point gives the FAR and FRR reached)",
    )
    p.add_argument("--prior", type=float, default=0.5, help="bona fide prior of the fit (default 0.5)")
    p.add_argument(
        "--max-duration-s",
        type=float,
        default=600.0,
        help="a file longer than this stops the calibration, named (0 = no limit; default 600, as sdd score)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="write the calibrated model here (its weights copied, config.json written; not its MODEL_CARD.md, "
        "whose figures are for the source's calibration; metadata.calibrated.copied_from names the source); "
        "default: in place",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import check_minimums, check_paths_given, parse_partitions, parse_protocol_options
    from sddkit.scoring.calibrate import calibrate_on_protocol
    from sddkit.scoring.onnx_export import ONNX_NAME

    check_paths_given(args, "model", "protocol", "out")
    check_minimums(args, max_duration_s=0)
    if not 0.0 < args.prior < 1.0:  # the API's words ("prior must be ...") named no option; `not <` refuses NaN too
        from sddkit.errors import ConfigError

        raise ConfigError(f"--prior must be in (0, 1), got {args.prior:g}")
    protocol_options = parse_protocol_options(args.protocol_options)
    report = calibrate_on_protocol(
        args.model,
        args.protocol,
        format=args.format,
        partitions=parse_partitions(args.partitions),  # `a b` or `a,b`, as sdd eval's
        protocol_options=protocol_options,
        out=args.out,
        threshold=args.threshold,
        prior=args.prior,
        max_duration=args.max_duration_s or None,
        too_long_hint="; sdd calibrate --max-duration-s sets the limit (0: none)",
        max_duration_name="--max-duration-s",
        warn=lambda note: print(f"sdd calibrate: warning: {note}", file=sys.stderr),
    )
    print(json.dumps(report, indent=2))
    card = Path(args.model) / "MODEL_CARD.md"
    if "copied_from" in report and card.is_file():  # a copy of the card would give the source's calibration
        print(
            f"sdd calibrate: note: {card} is not copied to {report['model']}: its calibration and threshold are "
            f"not this one's; the copy's metadata.calibrated.copied_from names {args.model}, whose card tells how "
            "the weights were made",
            file=sys.stderr,
        )
    elif "copied_from" not in report and card.is_file():
        # in place the card stays, and its calibration, threshold and figures at the threshold are the ones this run
        # replaced: read as the model's, they were false, where a copy is given no card for that reason
        print(
            f"sdd calibrate: note: {card} describes the calibration and threshold {args.model} held before this "
            "one, and its figures at the threshold are theirs: the ones in force are config.json's inference, "
            "fitted as metadata.calibrated records",
            file=sys.stderr,
        )
    folder = Path(report["model"])
    # every export in the folder, not only model.onnx: one written as `--out DIR/NAME.onnx` is refused alike
    for exported in sorted(p for p in folder.glob("*.onnx") if p.is_file()):
        out = report["model"] if exported.name == ONNX_NAME else str(exported)
        # its graph carries the old calibration: the onnx backend now refuses it, as it should
        print(
            f"sdd calibrate: note: {exported} was exported before this calibration, and the onnx backend refuses it "
            f"until it is exported again: sdd export-onnx --model {report['model']} --out {out} --force",
            file=sys.stderr,
        )
    return 0
