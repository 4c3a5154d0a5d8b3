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
from pathlib import Path

import numpy as np
from scipy.special import expit

from sddkit.data.protocols import read_protocol
from sddkit.metrics.det import eer
from sddkit.scoring.batch import read_rows
from sddkit.scoring.calibration import fit_calibration

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT.parent / "shared" / "data" / "sddbench" / "manifest.csv"


def read_scores(path: str) -> dict[str, float]:
    """`sdd score` output (CSV or JSONL) -> {resolved path: raw score}; error rows are dropped."""
    _, rows = read_rows(Path(path))
    return {str(Path(r["path"]).resolve()): float(r["raw_score"]) for r in rows if not r.get("error")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="NAME=scores.csv (sdd score output), two or more")
    ap.add_argument("--manifest", default=str(MANIFEST))
    ap.add_argument("--partitions", nargs="+", default=["val", "test_unseen"])
    args = ap.parse_args()

    table = read_protocol(args.manifest, "sddbench", partitions=sorted({"val", *args.partitions}))
    manifest = {  # resolved path -> (partition, label 1 = bona fide)
        str(Path(path).resolve()): (part, int(label))
        for path, part, label in zip(table.column("path"), table.column("partition"), table.labels)
    }
    scores = dict(s.split("=", 1) for s in args.models)
    raw = {name: read_scores(path) for name, path in scores.items()}
    common = set.intersection(*(set(s) for s in raw.values())) & set(manifest)
    files = {p: sorted(k for k in common if manifest[k][0] == p) for p in {"val", *args.partitions}}
    labels = {p: np.array([manifest[k][1] for k in ks], dtype=int) for p, ks in files.items()}
    if not files["val"]:
        raise SystemExit("no val files scored by every model: calibration needs val")

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
    main()
