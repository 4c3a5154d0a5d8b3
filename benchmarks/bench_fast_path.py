"""Inference fast paths (sddkit.backends.fastpath) on vs off, one process, runs interleaved.

For each model directory: the forward of a batch of random waveforms, timed with the fast path (eval mode under
``torch.inference_mode``, as scoring runs) and without it (the same within
``sddkit.backends.fastpath.plain_computation``: every back-end's plain computation), alternating, best of
``--repeats``; plus the largest difference of their logits. Interleaving makes the ratio robust to a busy host; the
absolute times are not.

    python benchmarks/bench_fast_path.py --model src/sddkit/assets/default_model --random resnet18_logmel --threads 1
    sdd import-aasist ../shared/models/aasist-official/AASIST.pth --out /tmp/AASIST
    python benchmarks/bench_fast_path.py --model /tmp/AASIST --samples 64600 --threads 1 2
"""

from __future__ import annotations

import argparse
import time

import torch

from sddkit.cli.options import require_positive


def _time(fn) -> tuple[float, torch.Tensor]:
    """(seconds, output) of one call of ``fn``."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# random-weight detectors (``--random NAME``): the back-ends with nothing bundled to measure them on
RANDOM_MODELS = {
    "resnet18_logmel": {"frontend": {"name": "logmel", "n_mels": 120, "f_max": None}, "backend": {"name": "resnet18"}},
    "resnet18_logspec": {"frontend": {"name": "logspec"}, "backend": {"name": "resnet18"}},
    "lcnn_logmel": {"frontend": {"name": "logmel", "n_mels": 120, "f_max": None}, "backend": {"name": "lcnn"}},
}


def random_model(name: str) -> torch.nn.Module:
    """``RANDOM_MODELS[name]`` with seeded random weights and random batch-norm statistics (as a trained model has:
    with the initial ones, folding a norm would be nearly the identity)."""
    from sddkit.config import from_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector

    torch.manual_seed(0)
    model = build_detector(from_dict(DetectorConfig, RANDOM_MODELS[name]))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def bench(model_dir: str, *, batch: int, samples: int, threads: int, repeats: int) -> dict:
    """``model_dir``: a model directory, or ``random:NAME`` for :func:`random_model`."""
    from sddkit.backends.fastpath import plain_computation
    from sddkit.detectors.model_dir import load_model_dir

    torch.set_num_threads(threads)
    if model_dir.startswith("random:"):
        loaded = random_model(model_dir.removeprefix("random:"))
    else:
        loaded = load_model_dir(model_dir)
    model = (loaded.model if hasattr(loaded, "model") else loaded).eval().requires_grad_(False)
    waveform = torch.randn(batch, samples, generator=torch.Generator().manual_seed(0)) * 0.05

    def fast() -> torch.Tensor:
        with torch.inference_mode():
            return model(waveform).logits

    def plain() -> torch.Tensor:
        with plain_computation(), torch.inference_mode():
            return model(waveform).logits

    fast(), plain()  # warm-up
    t_fast = t_plain = float("inf")
    for _ in range(repeats):  # alternate, so that a load change hits both
        t, a = _time(fast)
        t_fast = min(t_fast, t)
        t, b = _time(plain)
        t_plain = min(t_plain, t)
    return {
        "model": model_dir,
        "threads": threads,
        "plain_s": round(t_plain, 4),
        "fast_s": round(t_fast, 4),
        "speed_up": round(t_plain / t_fast, 2),
        "max_abs_logit_diff": float((a - b).abs().max()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", default=[], help="model directory (repeatable)")
    p.add_argument(
        "--random", action="append", default=[], choices=sorted(RANDOM_MODELS), help="random-weight model (repeatable)"
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--samples", type=int, default=64000, help="samples per waveform (16 kHz)")
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    if not args.model and not args.random:
        p.error("give at least one --model DIR or --random NAME")
    # --repeats 0 timed nothing and ended in a NameError; --threads 0 in torch's error, after the table's header
    require_positive(p, args, "batch", "samples", "repeats")
    if min(args.threads) <= 0:
        p.error(f"--threads must be positive, got {' '.join(map(str, args.threads))}")
    print("| model | threads | plain (s) | fast path (s) | speed-up | max abs logit diff |")
    print("|---|---|---|---|---|---|")
    for model_dir in args.model + [f"random:{name}" for name in args.random]:
        for threads in args.threads:
            r = bench(model_dir, batch=args.batch, samples=args.samples, threads=threads, repeats=args.repeats)
            print(
                f"| {r['model']} | {threads} | {r['plain_s']} | {r['fast_s']} | {r['speed_up']}x "
                f"| {r['max_abs_logit_diff']:.1e} |"
            )


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_fast_path")  # a --model that is no model directory: one line, not a traceback
