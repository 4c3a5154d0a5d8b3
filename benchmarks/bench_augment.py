"""Per-augmentation throughput on one CPU core, as a markdown table on stdout.

    python benchmarks/bench_augment.py [--seconds 4] [--repeats 7] [--model-xrt 500] [--cores 2]

Each case augments a 4 s, 16 kHz speech-like clip; the time reported is the best of
``--repeats`` runs after an untimed pass over the same seeds (codec delays are calibrated
per bit rate and filter designs cached once per worker process, so they are not timed). "x RT" is clip duration /
time. The loader keeps ahead of the model when every worker core delivers
``model_xrt / cores`` x real time; ``max p`` is the largest probability at which the
augmentation alone fits that budget (1.00 = fits always).
"""

from __future__ import annotations

import os

# One core: pin BLAS/FFT/torch thread pools before numpy/torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sddkit.augment import AUGMENTATIONS  # noqa: E402
from sddkit.augment.codecs import CodecUnavailableError, calibration_signal  # noqa: E402
from sddkit.augment.pipeline import build_augmentation  # noqa: E402
from sddkit.cli.options import require_positive  # noqa: E402

SR = 16000

CASES: list[tuple[str, dict]] = [
    ("gain", {"name": "gain"}),
    ("clipping", {"name": "clipping"}),
    ("band_filter (bandpass, order 4)", {"name": "band_filter"}),
    ("resample (8-12 kHz and back)", {"name": "resample"}),
    ("noise (white..brown)", {"name": "noise"}),
    ("rawboost algo 1 (LnL)", {"name": "rawboost", "algo": 1}),
    ("rawboost algo 2 (ISD)", {"name": "rawboost", "algo": 2}),
    ("rawboost algo 3 (SSI)", {"name": "rawboost", "algo": 3}),
    ("rawboost algo 4 (1+2+3)", {"name": "rawboost", "algo": 4}),
    ("rawboost algo 5 (1+2)", {"name": "rawboost", "algo": 5}),
    ("rawboost algo 8 (1||2)", {"name": "rawboost", "algo": 8}),
    ("reverb noise_tail (RT60 0.2-1 s)", {"name": "reverb"}),
    ("reverb image_source (order 8)", {"name": "reverb", "method": "image_source"}),
    ("time_stretch 0.9-1.1 (WSOLA)", {"name": "time_stretch"}),
    ("pitch_shift +-2 st", {"name": "pitch_shift"}),
    ("codec mp3 16-128 kb/s", {"name": "codec", "codec": "mp3", "bitrate_kbps": [16, 128]}),
    ("codec mp3 16-128 kb/s, fast", {"name": "codec", "codec": "mp3", "bitrate_kbps": [16, 128], "fast": True}),
    ("codec aac 16-64 kb/s", {"name": "codec", "codec": "aac", "bitrate_kbps": [16, 64]}),
    ("codec aac 16-64 kb/s, fast", {"name": "codec", "codec": "aac", "bitrate_kbps": [16, 64], "fast": True}),
    ("codec opus 8-32 kb/s", {"name": "codec", "codec": "opus", "bitrate_kbps": [8, 32]}),
    ("codec opus 8-32 kb/s, fast", {"name": "codec", "codec": "opus", "bitrate_kbps": [8, 32], "fast": True}),
    ("codec vorbis (libvorbis)", {"name": "codec", "codec": "vorbis"}),
    ("codec vorbis_native", {"name": "codec", "codec": "vorbis_native"}),
    ("codec amrnb 4.75-12.2 kb/s", {"name": "codec", "codec": "amrnb", "bitrate_kbps": [4.75, 12.2]}),
    ("codec g722", {"name": "codec", "codec": "g722"}),
    ("codec mulaw", {"name": "codec", "codec": "mulaw"}),
    ("rerecord", {"name": "rerecord"}),
    ("car_cabin", {"name": "car_cabin"}),
    ("launder_chain", {"name": "launder_chain"}),
    ("launder_chain, fast codec", {"name": "launder_chain", "fast_codec": True}),
]


def best_time(fn: Callable[[int], object], repeats: int) -> float:
    # Warm-up with the same seeds: per-process caches (codec delay per bit rate, filter designs,
    # lazily loaded libraries) are filled once per worker in training, so they are not timed.
    for i in range(repeats):
        fn(i)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="clip duration (default 4 s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case; the best is kept")
    parser.add_argument("--model-xrt", type=float, default=500.0, help="audio seconds the model trains on per second")
    parser.add_argument("--cores", type=int, default=2, help="loader cores")
    args = parser.parse_args()
    require_positive(parser, args, "seconds", "repeats", "model_xrt", "cores")

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    n = int(args.seconds * SR)
    x = np.resize(calibration_signal(SR, 1.0), n)  # speech-like, looped to the clip length
    need = args.model_xrt / args.cores

    rows = []
    for label, spec in CASES:
        try:
            aug = build_augmentation(spec)
        except CodecUnavailableError:
            rows.append((label, None))
            continue
        rows.append((label, best_time(lambda i, a=aug: a(x, SR, np.random.default_rng(i + 1)), args.repeats)))

    spec_aug = AUGMENTATIONS.build({"name": "spec_augment"})
    feats = torch.randn(1, 80, int(args.seconds * 100))  # 80 log-Mel bins, 10 ms hop
    gen = torch.Generator().manual_seed(0)
    label = f"spec_augment (1 x 80 x {feats.shape[-1]} features)"  # 400 frames for the default 4 s
    rows.append((label, best_time(lambda i: spec_aug(feats, gen), args.repeats)))

    cpu = platform.processor() or platform.machine()
    print(f"Augmentation throughput: {args.seconds:g} s clips at 16 kHz, one CPU core ({cpu}),")
    print(f"best of {args.repeats}. Budget: model at {args.model_xrt:g}x real time fed by {args.cores} loader cores")
    print(f"= {need:g}x real time per core.\n")
    print("| augmentation | ms / clip | x real time | max p within budget |")
    print("|---|---:|---:|---:|")
    for label, t in rows:
        if t is None:
            print(f"| {label} | n/a | encoder missing in this PyAV build | - |")
            continue
        xrt = args.seconds / t
        print(f"| {label} | {t * 1e3:.2f} | {xrt:,.0f} | {min(1.0, xrt / need):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
