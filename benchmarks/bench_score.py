"""Throughput of ``sdd score`` on generated 4 s files: files/s and real-time factor (JSON on stdout).

    python benchmarks/bench_score.py --model DIR [--files 64] [--seconds 4] [--threads 2] [--workers 2]
                                     [--batch-size 16] [--backend torch|onnx] [--repeats 2]
    python benchmarks/bench_score.py --demo-model lcnn      # random-weight model, to check the script runs

The files are speech-like (harmonic tones with a syllable-rate envelope plus noise) 16 kHz WAVs in
a temporary folder. Each repeat scores all of them into a fresh output file with the real
``sdd score`` code path (``sddkit.scoring.batch``: decoding threads, batching, CSV writing) with the
model loaded once; model loading and one end-to-end ``sdd score`` run are reported separately.
RTF = scoring time / audio duration (lower is better; 0.1 = ten times faster than real time).
The best repeat is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def speech_like(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * rng.random() + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.random() * 6))  # ~4 syllables per second
    x = 0.1 * envelope * voiced + 0.005 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def demo_model(kind: str, directory: Path) -> Path:
    """A random-weight model directory of a published architecture (for smoke runs only)."""
    import torch

    from sddkit.config import from_dict, to_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir

    specs = {
        "lcnn": {"frontend": "logmel", "backend": "lcnn"},
        "aasist_l": {"frontend": "raw", "backend": "aasist_l"},
        "aasist": {"frontend": "raw", "backend": "aasist"},
    }
    cfg = from_dict(DetectorConfig, specs[kind])
    torch.manual_seed(0)
    return save_model_dir(directory / kind, build_detector(cfg).eval(), model_config=to_dict(cfg))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model directory (or .onnx file with --backend onnx)")
    src.add_argument("--demo-model", choices=["lcnn", "aasist_l", "aasist"], help="random-weight model (smoke test)")
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2 = the 2-core budget)")
    ap.add_argument("--workers", type=int, default=2, help="decoding threads")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from sddkit.cli.options import require_positive

    require_positive(ap, args, "files", "seconds", "threads", "workers", "batch_size", "repeats")

    import torch

    from sddkit.cli.main import main as sdd
    from sddkit.scoring import batch
    from sddkit.scoring.api import load_detector

    with tempfile.TemporaryDirectory(prefix="bench_score_") as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else demo_model(args.demo_model, tmp)
        if args.backend == "onnx" and model.is_dir() and not (model / "model.onnx").is_file():
            from sddkit.scoring.onnx_export import export_onnx

            model = Path(export_onnx(model, tmp / "model.onnx")["out"])  # a model directory: export it first
        audio = tmp / "audio"
        audio.mkdir()
        for i in range(args.files):
            sf.write(audio / f"utt{i:05d}.wav", speech_like(args.seconds, i), SR, subtype="PCM_16")
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        det = load_detector(model, backend=args.backend)
        det.stat_widths()
        load_s = time.perf_counter() - t0
        # end to end once, as a user runs it (process-internal: imports are already done)
        out = tmp / "cli.csv"
        argv = ["score", str(audio), "--model", str(model), "--out", str(out), "--quiet", "--backend", args.backend]
        argv += ["--threads", str(args.threads), "--workers", str(args.workers), "--batch-size", str(args.batch_size)]
        t0 = time.perf_counter()
        rc = sdd(argv)
        cli_s = time.perf_counter() - t0
        # sdd score writes a file's error in its row (e.g. shorter than the model's minimum) and exits 0, or 1 when
        # every file failed: no timing then, and the rows say why
        failed = [r for r in batch.read_rows(out)[1] if r.get("error")] if out.is_file() else []
        if rc != 0 and not failed:
            print(f"sdd score failed with exit code {rc}", file=sys.stderr)
            return rc
        if failed:
            error = failed[0]["error"]  # it names its file
            print(f"sdd score could not score {len(failed)} of {args.files} files, e.g. {error}", file=sys.stderr)
            return 1
        # then the scoring loop of `sdd score` alone (decode threads, batching, CSV rows), model loaded once
        paths = batch.expand_inputs([audio])
        columns = batch.output_columns(det.weight_columns())
        det.batch_size = args.batch_size
        times = []
        for r in range(args.repeats):
            with batch.ScoreWriter(tmp / f"scores{r}.csv", columns) as writer:
                t0 = time.perf_counter()
                summary = batch.score_files(det, paths, writer, workers=args.workers, progress=False)
                times.append(time.perf_counter() - t0)
            if summary.scored != args.files:  # not an assert: it must hold under python -O too
                print(f"scored {summary.scored} of {args.files} files: {summary}", file=sys.stderr)
                return 1
        best = min(times)
        audio_s = args.files * args.seconds
        result = {
            "model": str(args.model or f"demo:{args.demo_model}"),
            "backend": args.backend,
            "num_parameters": det.info.get("num_parameters"),
            "window_s": det.inference.window_s,
            "hop_s": det.inference.hop_samples / det.inference.sample_rate,
            "files": args.files,
            "seconds_per_file": args.seconds,
            "threads": args.threads,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "load_s": round(load_s, 3),
            "cli_total_s": round(cli_s, 3),
            "score_s": [round(t, 3) for t in times],
            "files_per_s": round(args.files / best, 2),
            "rtf": round(best / audio_s, 4),
            "x_real_time": round(audio_s / best, 1),
            "cpu": platform.processor() or platform.machine(),
            "cores_visible": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch": torch.__version__,
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_score")
