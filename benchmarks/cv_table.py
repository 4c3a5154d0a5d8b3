"""Markdown table of ``sdd cv`` results, one row per recipe.

    python benchmarks/cv_table.py R30=runs/cv_R30 R60=runs/cv_R60 [--reference R30=36.0 --reference R60=44.8]

Columns: each fold's held-out EER, the mean over folds, and the fold runs' own validation EER (their
checkpoint selection, on the recipe's ``val`` without the held-out sources). For a run of ``sdd cv --seeds``
every figure is the mean over the seeds, and the mean column adds the standard deviation of the per-seed means.
``--reference NAME=EER`` adds a column of another figure per recipe (e.g. its ``test_unseen`` EER in
percent) and the Spearman rank correlation between it and the cross-validation mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"{what} must be NAME=VALUE, got {item!r}")
        if name in out:  # the later one would replace the earlier without a word
            raise SystemExit(f"{what} {name!r} given twice")
        out[name] = value
    return out


def _read_cv(folder: Path) -> dict:
    """The ``cv.json`` that ``sdd cv --out folder`` writes once every fold is done."""
    path = folder / "cv.json"
    if not path.is_file():
        what = "no such folder" if not folder.exists() else "no cv.json there (an unfinished or other run?)"
        raise SystemExit(f"{folder}: {what}; give the --out folder of a finished `sdd cv` run")
    return json.loads(path.read_text())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", metavar="NAME=DIR", help="sdd cv output folders")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=EER", help="another EER (%%) per recipe")
    args = p.parse_args(argv)
    runs = {name: _read_cv(Path(d)) for name, d in _pairs(args.runs, "a run").items()}
    refs = {}
    for name, value in _pairs(args.reference, "--reference").items():
        if name not in runs:  # a misspelt name would leave its row's reference cell empty without a word
            raise SystemExit(f"--reference {name}: no such run; runs: {', '.join(runs)}")
        try:
            refs[name] = float(value)
        except ValueError:
            raise SystemExit(f"--reference {name}: the EER must be a number (percent), got {value!r}") from None
    folds = [" + ".join(f["held_out"]) for f in next(iter(runs.values()))["folds"]]
    for name, cv in runs.items():
        if [" + ".join(f["held_out"]) for f in cv["folds"]] != folds:
            raise SystemExit(f"{name} was run with other folds than the first recipe")
    head = ["recipe", *[f"held out: {f}" for f in folds], "mean", "fold runs' val (mean)"]
    if refs:
        head.append("reference")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, cv in runs.items():
        vals = [f["val_eer"] for f in cv["folds"] if f["val_eer"] is not None]
        mean = f"**{100 * cv['mean_eer']:.1f}**"
        if "seeds" in cv:  # sdd cv --seeds: folds and mean are averaged over the seeds
            mean += f" ± {100 * cv['std_eer_over_seeds']:.1f} ({len(cv['seeds'])} seeds)"
        row = [name, *[f"{100 * f['eer']:.1f}" for f in cv["folds"]], mean]
        row.append(f"{100 * np.mean(vals):.1f}" if vals else "n/a")
        if refs:
            row.append(f"{refs[name]:.1f}" if name in refs else "")
        print("| " + " | ".join(row) + " |")
    common = [n for n in runs if n in refs]
    if len(common) >= 3:
        cv_mean = np.array([runs[n]["mean_eer"] for n in common])
        ref = np.array([refs[n] for n in common])
        print(f"\nSpearman(cv mean, reference) over {len(common)} recipes: {spearman(cv_mean, ref):+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
