"""Cost of each spectral front-end under the default recipe's LCNN: PyTorch and ONNX Runtime, and the export's size.

    .venv/bin/python benchmarks/bench_frontends.py [--threads 2] [--repeats 5] [--batch 16] [--only mgd cqt ...]
        [--json out.json]

The question it answers: what scoring with a front-end other than the bundled model's log-Mel would cost. Each
front-end is put in front of the default recipe's back-end (LCNN, 16 channels, dropout 0.3; recipes/sddbench/
default_model.yaml) with the recipe's normalisation and level (``normalize: true``, ``level_db: -27``), random weights
(time does not depend on the values), saved as a model directory with the bundled model's 4 s window, and exported
by ``sdd export-onnx``'s own function (which checks parity). Timed: the median of ``--repeats`` forwards of a batch of
``--batch`` 4 s windows after two warm-ups, in PyTorch under ``torch.inference_mode`` and through the exported graph
in ONNX Runtime (the ``sdd score --backend onnx`` path), both with ``--threads`` threads. ``x real time`` is audio
seconds per second of compute for that forward alone (decoding and resampling excluded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sddkit.cli.describe_cmd import count_params
from sddkit.cli.options import check_paths_writable, require_positive
from sddkit.config import from_dict, to_dict
from sddkit.detectors import DetectorConfig, build_detector
from sddkit.detectors.model_dir import atomic_write_bytes, save_model_dir
from sddkit.scoring.onnx_export import OnnxRunner, export_onnx

WINDOW = 64000  # the bundled model's inference.window_samples (4 s at 16 kHz)
BACKEND = {"name": "lcnn", "channels": 16, "dropout": 0.3}  # the default recipe's
LEVEL = {"normalize": True, "level_db": -27}

FRONTENDS: dict[str, dict[str, Any]] = {
    "logmel (120 bands, the bundled expert)": {"name": "logmel", "n_mels": 120, "f_max": None, **LEVEL},
    "lfb (120 linear bands, the bundled expert)": {"name": "lfb", **LEVEL},
    "lfcc": {"name": "lfcc", **LEVEL},
    "logspec (257 bins)": {"name": "logspec", **LEVEL},
    "mgd (120 bands)": {"name": "mgd", **LEVEL},
    "cqt (863 bins)": {"name": "cqt", **LEVEL},
    "cqcc (60 dims)": {"name": "cqcc", **LEVEL},
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(frontend: dict[str, Any], folder: Path, *, batch: int, repeats: int, threads: int) -> dict[str, Any]:
    cfg = from_dict(DetectorConfig, {"frontend": frontend, "backend": BACKEND})
    torch.manual_seed(0)
    model = build_detector(cfg).eval()
    save_model_dir(folder, model, model_config=to_dict(cfg), inference={"window_samples": WINDOW})
    x = torch.randn(batch, WINDOW, generator=torch.Generator().manual_seed(1)) * 0.1

    def torch_forward() -> None:
        with torch.inference_mode():
            model(x)

    report = export_onnx(folder, folder)
    graph = folder / "model.onnx"
    runner = OnnxRunner(graph, threads=threads)
    windows = x.numpy().astype(np.float32)
    return {
        "params": count_params(model)["total_params"],
        "torch_s": median_seconds(torch_forward, repeats),
        "onnx_s": median_seconds(lambda: runner(windows), repeats),
        "onnx_mb": graph.stat().st_size / 1e6,
        "parity": report.get("max_abs_diff"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--only", nargs="*", help="substrings of front-end names to run (e.g. mgd cqt)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    require_positive(ap, args, "threads", "repeats", "batch")
    check_paths_writable(args, "json")
    unmatched = [s for s in args.only or [] if not any(s in name for name in FRONTENDS)]
    if unmatched:
        ap.error(f"--only {' '.join(map(repr, unmatched))} matches no front-end; front-ends: {'; '.join(FRONTENDS)}")
    torch.set_num_threads(args.threads)
    audio_s = args.batch * WINDOW / 16000
    print(
        f"| front-end (LCNN-16 back-end) | params | PyTorch, batch {args.batch} (ms) | x real time | ONNX Runtime (ms) "
        "| x real time | ONNX file (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_frontends_") as tmp:
        for i, (name, frontend) in enumerate(FRONTENDS.items()):
            if args.only and not any(s in name for s in args.only):
                continue
            row = measure(frontend, Path(tmp) / str(i), batch=args.batch, repeats=args.repeats, threads=args.threads)
            results[name] = row
            cells = [
                f"{row['params'] / 1e3:.0f}k",
                f"{row['torch_s'] * 1000:.0f}",
                f"{audio_s / row['torch_s']:.0f}x",
                f"{row['onnx_s'] * 1000:.0f}",
                f"{audio_s / row['onnx_s']:.0f}x",
                f"{row['onnx_mb']:.1f}",
            ]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(results, indent=2) + "\n").encode())


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_frontends")
