"""Time of ``paired_bootstrap`` at ASVspoof 5 size: 180,000 trials, 3 paired runs per system (what ``sdd compare``
does with three seeds), EER by resampling and sorting every replicate vs :class:`sddkit.metrics.CurveMetric`.

    python benchmarks/bench_paired_bootstrap.py [N_REPLICATES]      # default 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sddkit.metrics import CurveMetric, eer, eer_from_curve, paired_bootstrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("replicates", nargs="?", type=int, default=200)
    args = parser.parse_args()
    if args.replicates <= 0:  # paired_bootstrap's error (a traceback) once the trials were drawn
        parser.error(f"N_REPLICATES must be positive, got {args.replicates}")
    rng = np.random.default_rng(0)
    n_trials, runs = 180_000, 3
    y = rng.random(n_trials) < 0.1
    a = np.round(rng.normal(y * 1.5, 1.0, size=(runs, n_trials)), 4)
    b = np.round(rng.normal(y * 1.6, 1.0, size=(runs, n_trials)), 4)
    for name, fn in [("resample and sort", eer), ("CurveMetric", CurveMetric(eer_from_curve))]:
        start = time.perf_counter()
        result = paired_bootstrap(fn, y, a, b, n=args.replicates)
        print(f"{name}: {time.perf_counter() - start:.1f} s for {args.replicates} replicates  {result}")


if __name__ == "__main__":
    main()
