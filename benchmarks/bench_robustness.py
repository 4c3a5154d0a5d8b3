"""Robustness benchmark: ``sdd robustness`` of a model on sddbench ``test_unseen``; prints the Markdown table.

    python benchmarks/bench_robustness.py --model DIR [--conditions all|c1,c2,...] [--mode both]
                                          [--limit N] [--out DIR] [--workers 2] [--threads 2]
    python benchmarks/bench_robustness.py --demo-model lcnn --limit 20 --conditions mp3_64k,noise_white_10db
                                          # random-weight model: checks that the script runs

It runs the real ``sdd robustness`` code path (decoding and degradation threads, batched scoring,
report writing) over ``--manifest`` (default: the shared sddbench manifest) restricted to
``--partitions`` (default ``test_unseen``), prints the table of EER / balanced accuracy / minDCF per
condition and mode on stdout, and a JSON line with the wall time and throughput on stderr. The full
report (CSV, JSON, Markdown, plot, per-trial scores) stays in ``--out``. An ``--out`` holding the journal
of an interrupted run is refused: the rerun would read its files back, and the throughput would count them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MANIFEST = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sddbench" / "manifest.csv")


def demo_model(kind: str, directory: Path) -> Path:
    """A random-weight model directory (for smoke runs only: its numbers mean nothing)."""
    import torch

    from sddkit.config import from_dict, to_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir

    specs = {
        "lcnn": {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 16, "lstm_layers": 0}},
        "aasist_l": {"frontend": "raw", "backend": "aasist_l"},
    }
    cfg = from_dict(DetectorConfig, specs[kind])
    torch.manual_seed(0)
    return save_model_dir(directory / kind, build_detector(cfg).eval(), model_config=to_dict(cfg))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model directory")
    src.add_argument("--demo-model", choices=["lcnn", "aasist_l"], help="random-weight model (smoke test)")
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST, help="sddbench manifest.csv (or any protocol)")
    ap.add_argument("--protocol-format", default=None, help="protocol reader (default: detect)")
    ap.add_argument("--partitions", default="test_unseen", help="comma-separated partitions ('' = all)")
    ap.add_argument("--conditions", default="all", help="'all' or comma-separated condition names")
    ap.add_argument("--mode", choices=["both", "all", "spoof_only"], default="both")
    ap.add_argument("--limit", type=int, default=None, help="a seeded, label-stratified subset of N files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="decoding + degradation threads")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2 = the 2-core budget)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fast-codecs", action="store_true")
    ap.add_argument(
        "--out",
        default=None,
        help="report folder (default: a temporary folder, removed); one holding an interrupted run's journal is "
        "refused",
    )
    args = ap.parse_args()

    from sddkit.cli.main import main as sdd
    from sddkit.evaluation.robustness import JOURNAL_NAME

    journal = Path(args.out) / JOURNAL_NAME if args.out else None
    if journal is not None and journal.exists():
        # sdd robustness would read that run's files back, not score them, and the throughput would count them
        print(
            f"bench_robustness: {journal} holds an interrupted run's scores, which a run into --out {args.out} would "
            "read back instead of scoring (the wall time and throughput would count those files): delete it, or "
            "choose another --out",
            file=sys.stderr,
        )
        return 2

    with tempfile.TemporaryDirectory(prefix="bench_robustness_") as tmp:
        model = args.model or str(demo_model(args.demo_model, Path(tmp)))
        out = Path(args.out) if args.out else Path(tmp) / "report"
        argv = ["robustness", "--model", model, "--protocol", args.manifest, "--out", str(out)]
        argv += ["--conditions", args.conditions, "--mode", args.mode, "--seed", str(args.seed)]
        argv += ["--workers", str(args.workers), "--threads", str(args.threads), "--quiet"]
        argv += ["--batch-size", str(args.batch_size), "--device", args.device]
        if args.protocol_format:
            argv += ["--protocol-format", args.protocol_format]
        if args.partitions:
            argv += ["--partitions", args.partitions]
        if args.limit is not None:
            argv += ["--limit", str(args.limit)]
        if args.fast_codecs:
            argv.append("--fast-codecs")

        start = time.perf_counter()
        rc = sdd(argv)
        wall = time.perf_counter() - start
        if rc != 0:
            return rc
        report = json.loads((out / "robustness.json").read_text())
        from sddkit.evaluation.robustness import markdown_table

        print(markdown_table(report["rows"]))
        n_trials = report["n_decoded"] * len(report["conditions"])
        print(
            json.dumps(
                {
                    "model": args.model or f"demo:{args.demo_model}",
                    "manifest": args.manifest,
                    "partitions": args.partitions,
                    "files": report["n_decoded"],
                    "failed_files": report["n_failed_files"],
                    "conditions": len(report["conditions"]),
                    "modes": report["modes"],
                    "wall_s": round(wall, 2),
                    "file_conditions_per_s": round(n_trials / wall, 2),
                    "threads": args.threads,
                    "workers": args.workers,
                    "machine": platform.machine(),
                    "out": str(out) if args.out else None,
                }
            ),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
