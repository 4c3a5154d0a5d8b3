"""Training benchmark (issue 4): ERM LoRA vs MLDG LoRA vs MoLEx on sddbench with the real Whisper-base encoder.

    .venv/bin/python benchmarks/bench_training.py [--steps 120] [--val-every 30] [--seeds 1234]
        [--crop-s 2] [--eval-crop-s 4] [--batch-size 8] [--threads 1] [--jobs N]
        [--methods erm,mldg,molex] [--set KEY=VALUE ...] [--out-dir runs/bench_training]
        [--reuse | --summarise-only] [--json out.json]

Every run goes through the real ``sdd train`` command with the shipped recipes
(recipes/sddbench/whisper_base_{lora_erm,lora_mldg,molex}.yaml) and ``key=value`` overrides only: a
reduced protocol (``--steps`` optimisation steps for every method, ``--crop-s`` training crops, batches of
``--batch-size``, validation on the full ``val`` partition with fixed ``--eval-crop-s`` crops every
``--val-every`` steps, no early stopping, best-on-val checkpoint = ``best/``). The ``best/`` model
directory is then scored on ``test_unseen`` with the same fixed crops (the first ``--eval-crop-s`` of each
file, repeat-padded if shorter) through ``sddkit.training.evaluate``, and its EER gets a stratified bootstrap
95% CI (``sddkit.metrics.bootstrap_ci``). Time per step is the median wall time between consecutive
training-loss log points (every 5 steps, from the run's TensorBoard events) with no validation between
them; time per epoch-equivalent = time per step x 1109 / batch size (1109 = sddbench train files).
Reads ../shared (data, Whisper weights); writes only under ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sddkit.detectors.model_dir import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "erm": "recipes/sddbench/whisper_base_lora_erm.yaml",
    "mldg": "recipes/sddbench/whisper_base_lora_mldg.yaml",
    "molex": "recipes/sddbench/whisper_base_molex.yaml",
}
N_TRAIN_FILES = 1109
LOG_EVERY = 5
SCORES = "test_unseen_scores.npz"
RESULT = "result.json"
SR = 16000


def overrides(args: argparse.Namespace, seed: int, out_dir: Path) -> list[str]:
    """The reduced protocol as ``sdd train`` overrides (identical for every method)."""
    return [
        f"seed={seed}",
        f"data.crop_samples={int(args.crop_s * SR)}",
        f"data.val_crop_samples={int(args.eval_crop_s * SR)}",
        f"data.batch_size={args.batch_size}",
        f"data.val_batch_size={args.val_batch_size}",
        "data.num_workers=0",
        f"schedule.warmup_steps={args.warmup}",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_every={args.val_every}",
        "trainer.patience=null",
        "trainer.keep_top_k=1",
        "trainer.average_top_k=1",
        f"trainer.log_every={LOG_EVERY}",
        "trainer.device=cpu",
        "trainer.progress=false",
        f"trainer.out_dir={out_dir.resolve()}",  # `sdd train` runs in the repository root, not here
        *args.set,
    ]


def step_times(out_dir: Path, val_steps: set[int]) -> list[float]:
    """Seconds per step between consecutive train-loss log points with no validation between them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tag = "train/loss" if "train/loss" in acc.Tags()["scalars"] else acc.Tags()["scalars"][0]
    events = sorted(acc.Scalars(tag), key=lambda e: e.step)
    out = []
    for a, b in zip(events, events[1:], strict=False):
        if any(a.step <= v < b.step for v in val_steps):
            continue  # a validation (and checkpoint) ran in this interval
        out.append((b.wall_time - a.wall_time) / (b.step - a.step))
    return out


def score_test(model_dir: Path, eval_crop: int, batch_size: int, partition: str, save: Path) -> dict:
    """EER (+ stratified bootstrap 95% CI) of a model directory on one sddbench partition, fixed crops.

    The per-file labels and scores are saved to ``save`` (``.npz``) for the paired comparisons.
    """
    import torch

    from sddkit.detectors.model_dir import load_model_dir
    from sddkit.metrics import eer
    from sddkit.metrics.bootstrap import bootstrap_ci
    from sddkit.training.data import build_dataset, read_tables
    from sddkit.training.evaluate import evaluate
    from sddkit.training.losses import DetectionLoss
    from sddkit.training.recipe import DataConfig, LossConfig, ProtocolSpec

    spec = ProtocolSpec(
        protocol=str(ROOT / ".." / "shared" / "data" / "sddbench" / "manifest.csv"),
        format="sddbench",
        options={"partitions": [partition]},
    )
    table = read_tables(spec, partition)
    data = DataConfig(crop_samples=eval_crop, val_crop_samples=eval_crop, domain_column="attack")
    dataset = build_dataset(table, data, train=False, seed=0)
    model = load_model_dir(model_dir).model
    result = evaluate(
        model, dataset, batch_size=batch_size, device=torch.device("cpu"), loss_fn=DetectionLoss(LossConfig())
    )
    order = np.argsort(result.indices)  # file order of the table, identical for every model
    np.savez(save, labels=result.labels[order], scores=result.scores[order])
    point, low, high = bootstrap_ci(lambda y, s: eer(y, s).eer, result.labels, result.scores, n=1000, seed=0)
    return {"eer": point, "ci95": [low, high], "n": int(result.n)}


def run_dir(args: argparse.Namespace, method: str, seed: int) -> Path:
    return Path(args.out_dir) / f"{method}_seed{seed}"


def launch(args: argparse.Namespace, method: str, seed: int) -> tuple[subprocess.Popen, Path, float]:
    out_dir = run_dir(args, method, seed)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SystemExit(f"{out_dir} exists: remove it or pick another --out-dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "sddkit.cli.main", "train", RECIPES[method], *overrides(args, seed, out_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    log = open(out_dir / "train.log", "w")  # noqa: SIM115 - closed with the process
    print("$ " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, out_dir, time.time()


def trained_batch_size(out_dir: Path, default: int) -> int:
    """The batch size the run in ``out_dir`` trained with (its run.json), not today's --batch-size."""
    try:
        return int(json.loads((out_dir / "run.json").read_text())["recipe"]["data"]["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def summarise(args: argparse.Namespace, method: str, seed: int, out_dir: Path, wall: float) -> dict:
    batch_size = trained_batch_size(out_dir, args.batch_size)
    history = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line]
    best = min(history, key=lambda h: (h["val_eer"], h["step"]))
    per_step = step_times(out_dir, {h["step"] for h in history})
    sec_step = statistics.median(per_step) if per_step else float("nan")
    test = score_test(
        out_dir / "best", int(args.eval_crop_s * SR), args.val_batch_size, "test_unseen", out_dir / SCORES
    )
    return {
        "method": method,
        "seed": seed,
        "steps": args.steps,
        "val_history": [(h["step"], h["val_eer"]) for h in history],
        "best_step": best["step"],
        "val_eer": best["val_eer"],
        "test_unseen_eer": test["eer"],
        "test_unseen_ci95": test["ci95"],
        "test_unseen_n": test["n"],
        "sec_per_step": sec_step,
        "sec_per_epoch_equiv": sec_step * N_TRAIN_FILES / batch_size,
        "wall_s": wall,
        "batch_size": batch_size,
    }


def paired_difference(args: argparse.Namespace, a: str, b: str, seeds: list[int], n: int = 2000) -> dict | None:
    """Paired stratified bootstrap of test_unseen EER(b) - EER(a), files resampled jointly, seed-averaged EERs."""
    from sddkit.metrics import eer, paired_bootstrap

    runs = []
    for seed in seeds:
        fa, fb = run_dir(args, a, seed) / SCORES, run_dir(args, b, seed) / SCORES
        if fa.is_file() and fb.is_file():
            runs.append((np.load(fa), np.load(fb)))
    if not runs:
        return None
    y = runs[0][0]["labels"].astype(np.int64)
    d = paired_bootstrap(eer, y, [ra["scores"] for ra, _ in runs], [rb["scores"] for _, rb in runs], n=n)
    return {
        "a": a,
        "b": b,
        "seeds": len(runs),
        "diff": d.diff,
        "ci95": [d.low, d.high],
        "p_b_not_better": d.p_b_not_better,
    }


def table(results: list[dict]) -> str:
    """One row per run (test EER with its bootstrap CI), then mean ± std over seeds per method."""
    head = "| method | seed(s) | best step | val EER % | test_unseen EER % | test 95% CI | s/step | s/epoch-equiv |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        low, high = (100 * x for x in r["test_unseen_ci95"])
        lines.append(
            f"| {r['method']} | {r['seed']} | {r['best_step']} | {100 * r['val_eer']:.2f} "
            f"| {100 * r['test_unseen_eer']:.2f} | [{low:.2f}, {high:.2f}] | {r['sec_per_step']:.2f} "
            f"| {r['sec_per_epoch_equiv']:.0f} |"
        )
    for method in dict.fromkeys(r["method"] for r in results):
        rs = [r for r in results if r["method"] == method]
        if len(rs) < 2:
            continue
        val, test = (np.array([r[k] for r in rs]) * 100 for k in ("val_eer", "test_unseen_eer"))
        sps, epoch = (np.mean([r[k] for r in rs]) for k in ("sec_per_step", "sec_per_epoch_equiv"))
        lines.append(
            f"| **{method}** | {len(rs)} seeds | | {val.mean():.2f} ± {val.std(ddof=1):.2f} "
            f"| {test.mean():.2f} ± {test.std(ddof=1):.2f} | | {sps:.2f} | {epoch:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="erm,mldg,molex")
    p.add_argument("--seeds", default="1234", help="comma-separated seeds")
    p.add_argument("--steps", type=int, default=120, help="optimisation steps per run (same for every method)")
    p.add_argument("--val-every", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10, help="linear warm-up steps (recipes: 100)")
    p.add_argument("--crop-s", type=float, default=2.0, help="training crop, seconds")
    p.add_argument("--eval-crop-s", type=float, default=4.0, help="fixed val/test crop, seconds")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--val-batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override, every method")
    p.add_argument("--jobs", type=int, default=1, help="at most this many runs at once (0 = all)")
    p.add_argument("--out-dir", default="runs/bench_training")
    p.add_argument("--reuse", action="store_true", help="summarise runs whose out dir has best/ instead of training")
    p.add_argument("--summarise-only", action="store_true", help="train nothing: tabulate the finished runs only")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sddkit.cli.options import check_paths_writable, require_positive

    # OMP_NUM_THREADS=0 is not an error to torch: every run would train on all cores, recorded as 0 threads
    require_positive(p, args, "threads")

    check_paths_writable(args, "json")  # asked now, not after hours of training
    unknown = [m for m in args.methods.split(",") if m not in RECIPES]
    if unknown:  # a KeyError once the runs before it had been launched
        raise SystemExit(f"--methods: unknown {', '.join(map(repr, unknown))}; known: {', '.join(RECIPES)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    jobs = [(m, s) for s in seeds for m in args.methods.split(",")]
    limit = args.jobs if args.jobs > 0 else len(jobs)
    results = []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pending = list(jobs)
    running: list[tuple[str, int, subprocess.Popen, Path, float]] = []
    for m, s in list(pending):  # finished runs (``--reuse``) are summarised, not trained again
        out_dir = run_dir(args, m, s)
        if (args.reuse or args.summarise_only) and (out_dir / "best").is_dir():
            pending.remove((m, s))
            cached = out_dir / RESULT
            if cached.is_file():  # as it was summarised when it finished: today's flags do not rewrite it
                r = json.loads(cached.read_text())
                r.setdefault("batch_size", trained_batch_size(out_dir, args.batch_size))
            else:
                r = summarise(args, m, s, out_dir, float("nan"))
                atomic_write_bytes(cached, (json.dumps(r) + "\n").encode())
            results.append(r)
    if args.summarise_only:
        for m, s in pending:
            print(f"{m} seed {s}: no finished run under {run_dir(args, m, s)}, left out", file=sys.stderr)
        pending = []
    while pending or running:
        while pending and len(running) < limit:
            m, s = pending.pop(0)
            running.append((m, s, *launch(args, m, s)))
        time.sleep(2)
        for job in list(running):
            m, s, proc, out_dir, t0 = job
            if proc.poll() is None:
                continue
            running.remove(job)
            if proc.returncode != 0:
                print(f"{m} seed {s} failed (rc {proc.returncode}); see {out_dir}/train.log", file=sys.stderr)
                continue
            r = summarise(args, m, s, out_dir, time.time() - t0)
            # whole or not at all: --reuse reads it back as the run's summary
            atomic_write_bytes(out_dir / RESULT, (json.dumps(r) + "\n").encode())
            results.append(r)
            print(json.dumps(r), file=sys.stderr)
    import torch

    meta = {
        "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    order = {m: i for i, m in enumerate(args.methods.split(","))}
    results.sort(key=lambda r: (order[r["method"]], r["seed"]))
    pairs = [paired_difference(args, "erm", b, seeds) for b in ("mldg", "molex")]
    pairs = [p for p in pairs if p is not None]
    print(table(results))
    for p in pairs:
        print(
            f"test_unseen EER {p['b']} - {p['a']} (mean over {p['seeds']} seed(s)): {100 * p['diff']:+.2f} points, "
            f"paired bootstrap 95% CI [{100 * p['ci95'][0]:+.2f}, {100 * p['ci95'][1]:+.2f}], "
            f"P(not better) = {p['p_b_not_better']:.2f}"
        )
    if args.json:
        out = {"meta": meta, "results": results, "paired": pairs}
        atomic_write_bytes(Path(args.json), (json.dumps(out, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_training")
