"""Score-level fusion of detectors on sddbench, from `sdd score` CSV files.

Each input CSV is `sdd score` output (column `raw_score`) for the same sddbench files. Every model's raw scores
get a logistic calibration fitted on `val` (``scoring.calibration.fit_calibration``, prior 0.5); the fusions are
the average of the calibrated bona fide probabilities, the sum of calibrated LLRs, and the average of the
uncalibrated probabilities (sigmoid of the raw log-odds), which is what an average-gate detector mixture
computes. Prints EER % per partition for each model and each fusion, as a markdown table.

    python benchmarks/bench_score_fusion.py default=def.csv aasist5=a5.csv

Nothing here is fitted on a test partition: calibration uses `val` only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.special import expit

from sddkit.data.protocols import read_protocol
from sddkit.documents import run_record_path
from sddkit.metrics.det import eer
from sddkit.scoring.batch import read_rows
from sddkit.scoring.calibration import fit_calibration

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT.parent / "shared" / "data" / "sddbench" / "manifest.csv"


def read_scores(path: str) -> dict[str, float]:
    """`sdd score` output (CSV or JSONL) -> {resolved path: raw score}; error rows are dropped."""
    if not Path(path).is_file():  # read_rows reads a missing output as empty (a fresh `sdd score` run)
        raise SystemExit(f"{path}: no such score file")
    _, rows = read_rows(Path(path))
    if not rows:
        raise SystemExit(f"{path}: no score rows")
    missing = {"path", "raw_score"} - set(rows[0])
    if missing:
        raise SystemExit(f"{path}: not `sdd score` output: no column {', '.join(sorted(missing))}")
    base = output_base(Path(path))
    return {str((base / r["path"]).resolve()): float(r["raw_score"]) for r in rows if not r.get("error")}


def output_base(out: Path) -> Path:
    """The folder ``out``'s relative paths start from: ``cwd`` in its run record (`sdd score` writes paths
    relative to the folder of the output's first run), else the current folder (no record: e.g. a probe's CSV)."""
    record = run_record_path(out)
    cwd = json.loads(record.read_text()).get("cwd") if record.is_file() else None
    return Path(cwd) if cwd else Path.cwd()


def parse_models(items: list[str]) -> dict[str, str]:
    """``NAME=scores.csv`` arguments -> {name: file}; two or more, names unique."""
    models: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"a model must be NAME=scores.csv, got {item!r}")
        if name in models:
            raise SystemExit(f"model name {name!r} given twice")
        models[name] = path
    if len(models) < 2:
        raise SystemExit(f"fusion needs two or more models, got {len(models)}")
    return models


def note_left_out(
    raw: dict[str, dict[str, float]], manifest: dict[str, tuple[str, int]], common: set[str], partitions: set[str]
) -> None:
    """Say on stderr how many files of ``partitions`` some model scored but the table leaves out (not scored by every
    model): every figure is over the files all models scored, and a short score file (an interrupted `sdd score`)
    shrank every model's partition without a word."""
    used = {k for k, (part, _) in manifest.items() if part in partitions}
    scored = {name: len(used & set(s)) for name, s in raw.items()}
    n_common = len(used & common)
    if any(n != n_common for n in scored.values()):
        counts = ", ".join(f"{name} {n}" for name, n in scored.items())
        print(
            f"note: of the {', '.join(sorted(partitions))} files, the models scored {counts}; the figures are over "
            f"the {n_common} that every model scored (score the missing files to compare on all of them)",
            file=sys.stderr,
        )


def check_partitions(labels: dict[str, np.ndarray], partitions: list[str]) -> None:
    """Refuse a reported partition without both classes among the files every model scored, before any output:
    its EER was an error naming no partition, after the calibrations and half the table had been printed."""
    for part in partitions:
        bona = int(labels[part].sum())
        spoof = len(labels[part]) - bona
        if bona == 0 or spoof == 0:
            raise SystemExit(
                f"partition {part}: {bona} bona fide and {spoof} spoof files scored by every model; an EER needs "
                "both: score its files with every model, or leave it out of --partitions"
            )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="NAME=scores.csv (sdd score output), two or more")
    ap.add_argument("--manifest", default=str(MANIFEST))
    ap.add_argument("--partitions", nargs="+", default=["val", "test_unseen"])
    args = ap.parse_args(argv)

    scores = parse_models(args.models)
    raw = {name: read_scores(path) for name, path in scores.items()}
    table = read_protocol(args.manifest, "sddbench", partitions=sorted({"val", *args.partitions}))
    manifest = {  # resolved path -> (partition, label 1 = bona fide)
        str(Path(path).resolve()): (part, int(label))
        for path, part, label in zip(table.column("path"), table.column("partition"), table.labels)
    }
    common = set.intersection(*(set(s) for s in raw.values())) & set(manifest)
    files = {p: sorted(k for k in common if manifest[k][0] == p) for p in {"val", *args.partitions}}
    note_left_out(raw, manifest, common, {"val", *args.partitions})
    labels = {p: np.array([manifest[k][1] for k in ks], dtype=int) for p, ks in files.items()}
    if not files["val"]:
        raise SystemExit("no val files scored by every model: calibration needs val")
    check_partitions(labels, args.partitions)

    llr, uncalibrated = {}, {}
    for name, s in raw.items():
        cal = fit_calibration(np.array([s[k] for k in files["val"]]), labels["val"])
        uncalibrated[name] = {p: np.array([s[k] for k in ks]) for p, ks in files.items()}
        llr[name] = {p: cal.apply(x) for p, x in uncalibrated[name].items()}
        print(f"calibration {name}: llr = {cal.a:.4g} * raw + {cal.b:.4g}")

    rows = {name: llr[name] for name in raw}
    rows["average of probabilities"] = {p: np.mean([expit(llr[n][p]) for n in raw], axis=0) for p in files}
    rows["sum of LLRs"] = {p: np.sum([llr[n][p] for n in raw], axis=0) for p in files}
    # what an average-gate DetectorMixture computes: raw scores are log-odds, no per-expert calibration
    rows["average of uncalibrated probabilities"] = {
        p: np.mean([expit(uncalibrated[n][p]) for n in raw], axis=0) for p in files
    }

    heads = [f"{p} EER % ({labels[p].sum()} / {(1 - labels[p]).sum()})" for p in args.partitions]
    print("\n| model | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(args.partitions))
    for name, by_part in rows.items():
        cells = [f"{100 * eer(labels[p], by_part[p]).eer:.1f}" for p in args.partitions]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_score_fusion")
