"""Mixtures of detectors (MELE / MILE) on sddbench: does a mixture beat the best single expert?

Trains, through the real ``Trainer`` with the shipped sddbench recipes (shortened by overrides), per seed:

- MELE stage 1: one LCNN + log-Mel expert per source group (``mele_expert_{tortoise,yourtts,vocoders}.yaml``);
- the joint baseline: one LCNN + log-Mel on the pooled train sources (``joint_lcnn_logmel.yaml``); it is
  also the MILE LCNN expert (``mile_expert_lcnn_logmel.yaml`` is the same recipe, so it is trained once);
- MILE stage 1: ResNet18 + log-Mel and ResNet18 + log spectrogram on the pooled train sources;
- stage 2: the average ensembles (built, nothing to train), MELE + enhanced_mlp gate, MILE + enhanced_mlp and
  attention gates (and MELE + classic with ``--classic``), experts frozen; with ``--generalist``, also the
  MELE enhanced_mlp gate over the three source experts *and* the joint model (``mele_gate_generalist``), so
  that the gate can fall back on the pooled-data model where no specialist fits.

Every model's ``best/`` directory is then scored on sddbench ``val`` and ``test_unseen`` (first ``--eval-crop``
samples of each file, repeat-padded: the trainer's validation windowing), and the script reports EER (mean ± std
over seeds) and the mean gate weight per source and per attack system on ``test_unseen``.

With ``--gate-holdout N``, sddbench ``train`` is split into N folds by pair/speaker group
(``data.train.0.folds``, ``UtteranceTable.group_folds``): every expert and the joint model train on folds
0..N-2 and the gates on fold N-1 only, so a gate learns which expert to trust on utterances no expert
was fitted on (without it, the gate sees the experts' own training data, where they are overconfident).

Audio comes from the decoded 16 kHz cache (``--cache``, ``CachedWaveforms``) when present: the datasets are
built as ``training.data.build_dataset`` builds them, plus ``waveforms=cache``, and handed to the Trainer.

    python benchmarks/bench_mixtures.py --seeds 1 --epochs 6 --gate-epochs 3 --out runs/bench_mixtures
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sddkit.cli.options import require_positive
from sddkit.data.dataset import CachedWaveforms, UtteranceDataset
from sddkit.data.protocols import read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.detectors.mixture import build_mixture, resolved_mixture_config
from sddkit.detectors.model_dir import atomic_write_bytes, load_model_dir, save_model_dir
from sddkit.evaluation.gate_weights import gate_weight_table
from sddkit.metrics.det import eer
from sddkit.training.data import read_tables
from sddkit.training.recipe import TrainRecipe, load_recipe
from sddkit.training.trainer import Trainer

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "sddbench"
MANIFEST = "../shared/data/sddbench/manifest.csv"
MELE_EXPERTS = ["mele_expert_tortoise", "mele_expert_yourtts", "mele_expert_vocoders"]
# --generalist: the MELE source experts plus the jointly trained model, under one enhanced_mlp gate
GENERALIST_EXPERTS = [*MELE_EXPERTS, "joint_lcnn_logmel"]
# the MILE LCNN expert is the joint model (identical recipes): trained once, used twice
MILE_EXPERTS = ["joint_lcnn_logmel", "mile_expert_resnet18_logmel", "mile_expert_resnet18_logspec"]
STAGE1 = [*MELE_EXPERTS, *MILE_EXPERTS]
GATES = {  # model name -> (recipe, experts)
    "mele_gate_enhanced_mlp": ("mele_gate_enhanced_mlp", MELE_EXPERTS),
    "mile_gate_enhanced_mlp": ("mile_gate_enhanced_mlp", MILE_EXPERTS),
    "mile_gate_attention": ("mile_gate_attention", MILE_EXPERTS),
}
AVERAGES = {"mele_average_ensemble": MELE_EXPERTS, "mile_average_ensemble": MILE_EXPERTS}


def datasets(recipe: TrainRecipe, cache: CachedWaveforms | None) -> dict[str, Any]:
    """Trainer injections built like ``build_dataset`` (same crops, augmentation, domains) plus the cache."""
    from sddkit.augment.pipeline import AugmentationPipeline

    d = recipe.data
    train_table = read_tables(d.train, "data.train")
    val_table = read_tables(d.val, "data.val")
    augment = AugmentationPipeline(d.augment_specs, seed=recipe.seed).apply if d.augment else None
    common = {"seed": recipe.seed, "domain_column": d.domain_column, "waveforms": cache}
    train = UtteranceDataset(train_table, crop_samples=d.crop_samples, train=True, augment=augment, **common)
    val = UtteranceDataset(val_table, crop_samples=d.val_crop_samples or d.crop_samples, train=False, **common)
    return {"train_data": train, "val_data": val, "val_table": val_table}


def train(
    name: str, recipe_name: str, overrides: list[str], cache: CachedWaveforms | None, log: dict, resume: bool = False
) -> Path:
    recipe = load_recipe(RECIPES / f"{recipe_name}.yaml", overrides)
    t0 = time.time()
    result = Trainer(recipe, resume=resume, **datasets(recipe, cache)).fit()
    log[name] = {"recipe": recipe_name, "overrides": overrides, "train_s": round(time.time() - t0, 1)}
    log[name]["best_val_eer"] = getattr(result, "best_eer", None)
    print(f"[bench] trained {name} in {log[name]['train_s']} s", flush=True)
    return Path(recipe.trainer.out_dir) / "best"


def build_average(out: Path, expert_dirs: list[Path]) -> Path:
    """The average ensemble: the recipe's mixture with these expert dirs, saved without training."""
    from sddkit.config import from_dict
    from sddkit.detectors.mixture import MixtureConfig

    cfg = from_dict(MixtureConfig, {"expert_dirs": [str(d) for d in expert_dirs], "gate": "average"})
    return save_model_dir(out, build_mixture(cfg), model_config=resolved_mixture_config(cfg), architecture="mixture")


@torch.no_grad()
def score(model_dir: Path, table: UtteranceTable, crop: int, cache: CachedWaveforms | None) -> dict[str, np.ndarray]:
    """Scores (N,) and, for mixtures, gate weights (N, E) on the first ``crop`` samples of each file."""
    model = load_model_dir(model_dir).model.eval()
    data = UtteranceDataset(table, crop_samples=crop, train=False, waveforms=cache)
    scores, weights = [], []
    for start in range(0, len(data), 32):
        x = torch.stack([data[i]["waveform"] for i in range(start, min(start + 32, len(data)))])
        out = model(x)
        scores.append(out.score.numpy())
        if "gate_weights" in out.stats:
            weights.append(out.stats["gate_weights"].numpy())
    return {"score": np.concatenate(scores), "weights": np.concatenate(weights) if weights else None}


def save_rows(rows: list[dict[str, Any]], out: Path, per_file: list[pd.DataFrame] | None = None) -> None:
    """Per-model results so far (partial results survive a stop); per-file scores for paired comparisons."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(pd.DataFrame(rows), out / "eer_per_seed.csv", index=False)
    if per_file:
        write_csv(pd.concat(per_file, ignore_index=True), out / "scores_per_file.csv", index=False)


def write_csv(frame: pd.DataFrame, path: Path, **to_csv: Any) -> None:
    """``frame.to_csv(path)``, replaced whole: rewritten after every model, a stop mid-write left a truncated file
    for mixture_summary.py to read."""
    atomic_write_bytes(path, frame.to_csv(**to_csv).encode())


def evaluate(
    seed: int,
    name: str,
    model_dir: Path,
    experts: list[str] | None,
    tables: dict[str, UtteranceTable],
    args: argparse.Namespace,
    cache: CachedWaveforms | None,
    gate_tables: dict[tuple[str, str], list[pd.DataFrame]],
    per_file: list[pd.DataFrame],
) -> dict[str, Any]:
    """EER of one model on every table; its per-file scores are appended to ``per_file`` and a mixture's
    test_unseen gate weights go to ``gate_tables``."""
    row: dict[str, Any] = {"seed": seed, "model": name}
    for part, table in tables.items():
        s = score(model_dir, table, args.eval_crop, cache)
        row[f"eer_{part}"] = float(eer(table.labels, s["score"]).eer)
        per_file.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "model": name,
                    "partition": part,
                    "utt_id": [str(u) for u in table.column("utt_id")],
                    "label": np.asarray(table.labels, dtype=int),
                    "source": [str(v) for v in table.column("source")],
                    "attack": [str(v) for v in table.column("attack")],
                    "score": s["score"],
                }
            )
        )
        if part == "test_unseen" and s["weights"] is not None:
            for by in ("source", "attack"):
                gate_tables.setdefault((name, by), []).append(
                    gate_weight_table(table, s["weights"], by=by, expert_names=experts)
                )
    print(f"[bench] {row}", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0, help="seed index to start at (extra seeds in another run)")
    p.add_argument("--mele-only", action="store_true", help="MELE experts, joint, MELE ensembles only (no MILE)")
    p.add_argument("--epochs", type=int, default=6, help="stage-1 epochs (experts, joint)")
    p.add_argument("--gate-epochs", type=int, default=3)
    p.add_argument("--crop", type=int, default=16000, help="training crop (samples)")
    p.add_argument("--eval-crop", type=int, default=48000, help="validation/scoring window (samples)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-augment", action="store_true", help="drop the recipes' codec/resample/noise augmentation")
    p.add_argument("--classic", action="store_true", help="also train MELE + classic gate")
    p.add_argument(
        "--generalist",
        action="store_true",
        help="also train the MELE enhanced_mlp gate over the source experts plus the joint model",
    )
    p.add_argument("--resnet-width", type=int, default=None, help="override the ResNet18 experts' width")
    p.add_argument(
        "--gate-holdout",
        type=int,
        default=0,
        metavar="N",
        help="split train into N group folds: experts/joint on the first N-1, gates on the last (0 = off)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue every model from its out_dir's latest checkpoint (a finished one is only re-exported)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=None, help="CachedWaveforms .npz of the manifest at 16 kHz (default: decode)")
    p.add_argument("--out", default="runs/bench_mixtures")
    args = p.parse_args()
    require_positive(p, args, "threads")  # torch's RuntimeError (a traceback) otherwise
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    if args.cache and not Path(args.cache).is_file():  # a typo would decode everything and still log the path
        raise SystemExit(f"--cache {args.cache}: no such file")
    cache = CachedWaveforms.load(args.cache) if args.cache else None
    stage1 = [*MELE_EXPERTS, "joint_lcnn_logmel"] if args.mele_only else STAGE1
    averages = {k: v for k, v in AVERAGES.items() if not (args.mele_only and k.startswith("mile"))}
    gates = {k: v for k, v in GATES.items() if not (args.mele_only and k.startswith("mile"))}
    if args.classic:
        gates["mele_gate_classic"] = ("mele_gate_classic", MELE_EXPERTS)
    if args.generalist:
        gates["mele_gate_generalist"] = ("mele_gate_enhanced_mlp", GENERALIST_EXPERTS)
    tables = {part: read_protocol(MANIFEST, "sddbench", partitions=[part]) for part in ("val", "test_unseen")}
    out = Path(args.out)
    rows, gate_tables, log = [], {}, {}
    per_file: list[pd.DataFrame] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        run = out / f"seed{seed}"
        common = [
            f"seed={1234 + seed}",
            f"data.crop_samples={args.crop}",
            f"data.val_crop_samples={args.eval_crop}",
            f"data.batch_size={args.batch_size}",
            "schedule.warmup_steps=10",
            "trainer.progress=false",
            "trainer.device=cpu",
            *(["data.augment=[]"] if args.no_augment else []),
        ]
        stage1_data, gate_data = [], []
        if args.gate_holdout:
            n = args.gate_holdout
            stage1_data = [f"data.train.0.folds={{n: {n}, keep: {list(range(n - 1))}}}"]
            gate_data = [f"data.train.0.folds={{n: {n}, keep: [{n - 1}]}}"]
        dirs: dict[str, Path] = {}
        slog = log.setdefault(f"seed{seed}", {})

        for name in stage1:
            ov = [*common, *stage1_data, f"trainer.epochs={args.epochs}", f"trainer.out_dir={run / name}"]
            if args.resnet_width and "resnet" in name:
                ov.append(f"model.backend.width={args.resnet_width}")
            dirs[name] = train(name, name, ov, cache, slog, args.resume)
            rows.append(evaluate(seed, name, dirs[name], None, tables, args, cache, gate_tables, per_file))
            save_rows(rows, out, per_file)
        for name, experts in averages.items():
            dirs[name] = build_average(run / name / "best", [dirs[e] for e in experts])
            rows.append(evaluate(seed, name, dirs[name], experts, tables, args, cache, gate_tables, per_file))
            save_rows(rows, out, per_file)
        for name, (recipe_name, experts) in gates.items():
            expert_list = "[" + ",".join(str(dirs[e]) for e in experts) + "]"
            ov = [
                *common,
                *gate_data,
                f"trainer.epochs={args.gate_epochs}",
                f"trainer.out_dir={run / name}",
                f"mixture.expert_dirs={expert_list}",
            ]
            dirs[name] = train(name, recipe_name, ov, cache, slog, args.resume)
            rows.append(evaluate(seed, name, dirs[name], experts, tables, args, cache, gate_tables, per_file))
            save_rows(rows, out, per_file)
    df = pd.DataFrame(rows)
    summary = df.groupby("model", sort=False).agg(["mean", "std", "count"]).drop(columns="seed")
    write_csv(summary, out / "eer_summary.csv")
    log_text = json.dumps({"args": vars(args), "runs": log}, indent=2, default=str)
    atomic_write_bytes(out / "train_log.json", log_text.encode())
    print("\n== EER (fraction) on val and test_unseen, mean/std over seeds ==")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    for (name, by), tabs in gate_tables.items():
        mean = sum(tabs) / len(tabs)
        write_csv(mean, out / f"gate_weights_{name}_by_{by}.csv")
        if name in gates:  # the average gate is uniform by construction
            print(f"\n== mean gate weight, {name}, test_unseen, by {by} ==")
            print(mean.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_mixtures")
