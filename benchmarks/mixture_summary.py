"""Summarise one or more ``bench_mixtures.py`` output folders (e.g. one per seed) as markdown.

Reads each folder's ``eer_per_seed.csv`` and ``scores_per_file.csv`` and prints:

- EER % on val and test_unseen per model, mean ± std over the seeds, and the per-seed test values;
- for every mixture, the paired bootstrap of its test_unseen EER minus that of the best single model
  (the non-mixture with the lowest mean test_unseen EER: the strictest reference, chosen on the test set)
  and minus that of the uniform average of the same experts, seeds paired with seeds and files resampled
  jointly (``sddkit.metrics.paired_bootstrap``).

    python benchmarks/mixture_summary.py runs/bench_mixtures_s0 runs/bench_mixtures_s1 runs/bench_mixtures_s2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sddkit.cli.options import require_positive
from sddkit.detectors.mixture import mix_log_probs
from sddkit.metrics import eer, paired_bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mixtures import GENERALIST_EXPERTS  # noqa: E402

MIXTURE_PREFIXES = ("mele_average", "mile_average", "mele_gate", "mile_gate")


def is_mixture(model: str) -> bool:
    return model.startswith(MIXTURE_PREFIXES)


def read_runs(dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = [str(d) for d in dirs if not (d / "eer_per_seed.csv").is_file()]
    if missing:
        raise SystemExit(f"no eer_per_seed.csv in: {', '.join(missing)}")
    eers = pd.concat([pd.read_csv(d / "eer_per_seed.csv").assign(folder=str(d)) for d in dirs], ignore_index=True)
    twice = eers[eers.duplicated(["seed", "model"], keep=False)]
    if not twice.empty:  # one run counted as two seeds in mean ± std (and the paired bootstrap failed in pivot)
        seed, model = twice.iloc[0][["seed", "model"]]
        where = ", ".join(twice.loc[(twice["seed"] == seed) & (twice["model"] == model), "folder"])
        raise SystemExit(f"seed {seed} of {model} is in more than one folder ({where}): give each seed once")
    eers = eers.drop(columns="folder")
    # folders written before bench_mixtures.py wrote per-file scores have none: no paired comparison then
    per_file = [pd.read_csv(f) for f in (d / "scores_per_file.csv" for d in dirs) if f.is_file()]
    scores = pd.concat(per_file, ignore_index=True) if per_file else pd.DataFrame()
    return eers, scores


def add_generalist_average(eers: pd.DataFrame, scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``mele_average_generalist``, the uniform average of ``mele_gate_generalist``'s four experts.

    ``bench_mixtures.py --generalist`` trains no such average, but none needs training: the average gate
    outputs the mean of the experts' bona fide probabilities (as log-odds), so it follows exactly from their
    per-file scores (each a bona fide log-odds). Without it, the generalist gate would be compared with
    ``mele_average_ensemble``, which averages only three of its four experts.
    """
    experts = GENERALIST_EXPERTS
    if "mele_gate_generalist" not in set(scores["model"]) or not set(experts) <= set(scores["model"]):
        return eers, scores
    keys = ["seed", "partition", "utt_id"]
    wide = scores[scores["model"].isin(experts)].pivot_table(index=keys, columns="model", values="score")
    # an expert's score s is its bona fide log-odds, i.e. the logits (0, s); mix them as DetectorMixture does
    s = torch.tensor(wide[experts].to_numpy(dtype=np.float64))  # (N, E)
    log_probs = torch.log_softmax(torch.stack([torch.zeros_like(s), s], dim=-1), dim=-1)  # (N, E, 2)
    mixed = mix_log_probs(log_probs, torch.full_like(s, 1.0 / len(experts)))  # (N, 2)
    info = scores[scores["model"] == experts[0]].set_index(keys).drop(columns=["model", "score"])
    score = (mixed[:, 1] - mixed[:, 0]).numpy()
    avg = info.loc[wide.index].reset_index().assign(model="mele_average_generalist", score=score)
    rows = []
    for seed, g in avg.groupby("seed"):
        row = {"seed": seed, "model": "mele_average_generalist"}
        for part, gp in g.groupby("partition"):
            row[f"eer_{part}"] = float(eer(gp["label"].to_numpy(), gp["score"].to_numpy()).eer)
        rows.append(row)
    return pd.concat([eers, pd.DataFrame(rows)], ignore_index=True), pd.concat([scores, avg], ignore_index=True)


def eer_table(eers: pd.DataFrame) -> str:
    lines = ["| model | val EER % | test_unseen EER % | per seed (test) |", "|---|---|---|---|"]
    for model, g in eers.groupby("model", sort=False):
        val, test = 100 * g["eer_val"], 100 * g["eer_test_unseen"]
        per_seed = " / ".join(f"{v:.1f}" for v in test)
        lines.append(
            f"| {model} | {val.mean():.1f} ± {val.std():.1f} | {test.mean():.1f} ± {test.std():.1f} | {per_seed} |"
        )
    return "\n".join(lines)


def score_matrix(scores: pd.DataFrame, model: str, seeds: list[int], partition: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N,) and scores (seeds, N) of ``model`` on ``partition``, files in one order for every seed."""
    rows = scores[(scores["model"] == model) & (scores["partition"] == partition)]
    table = rows.pivot(index="utt_id", columns="seed", values="score")[seeds]
    labels = rows.drop_duplicates("utt_id").set_index("utt_id").loc[table.index, "label"].to_numpy()
    return labels, table.to_numpy().T


def paired_table(eers: pd.DataFrame, scores: pd.DataFrame, n: int) -> str:
    means = eers.groupby("model", sort=False)["eer_test_unseen"].mean()
    singles = [m for m in means.index if not is_mixture(m)]
    best = means[singles].idxmin()
    lines = [
        f"Reference: best single model on test_unseen = {best} ({100 * means[best]:.1f} %).",
        "",
        "| mixture | test_unseen EER % | minus best single (points) [95 % CI] | P(not better) "
        "| minus its average ensemble [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for model in [m for m in means.index if is_mixture(m)]:
        seeds = sorted(
            set(scores.loc[scores["model"] == model, "seed"]) & set(scores.loc[scores["model"] == best, "seed"])
        )
        if not seeds:
            continue
        y, s_mix = score_matrix(scores, model, seeds, "test_unseen")
        y_best, s_best = score_matrix(scores, best, seeds, "test_unseen")
        if not np.array_equal(y, y_best):
            raise SystemExit(f"{model} and {best} were scored on different files")
        d = paired_bootstrap(eer, y, s_best, s_mix, n=n)
        avg = ("mele" if model.startswith("mele") else "mile") + "_average_ensemble"
        if model == "mele_gate_generalist":
            avg = "mele_average_generalist"  # same four experts (add_generalist_average)
        vs_avg = "-"
        # an average ensemble is its own baseline here (the generalist average is not the 3-expert one's mixture)
        if "_average_" not in model and avg in means.index:
            _, s_avg = score_matrix(scores, avg, seeds, "test_unseen")
            a = paired_bootstrap(eer, y, s_avg, s_mix, n=n)
            vs_avg = f"{100 * a.diff:+.1f} [{100 * a.low:+.1f}, {100 * a.high:+.1f}]"
        lines.append(
            f"| {model} | {100 * means[model]:.1f} | {100 * d.diff:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}] "
            f"| {d.p_b_not_better:.2f} | {vs_avg} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, help="bench_mixtures.py --out folders")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    args = p.parse_args(argv)
    # asked now: paired_bootstrap's MetricError (a traceback) came only after the EER table had been printed
    require_positive(p, args, "bootstrap")
    eers, scores = read_runs(args.dirs)
    if scores.empty:
        print(eer_table(eers))
        print("\n(no scores_per_file.csv: no paired comparison)")
        return
    eers, scores = add_generalist_average(eers, scores)
    print(eer_table(eers))
    print()
    print(paired_table(eers, scores, args.bootstrap))


if __name__ == "__main__":
    main()
