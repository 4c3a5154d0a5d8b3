"""CPU forward time of each model family on 4 s of audio, batch 1 and 16.

    .venv/bin/python benchmarks/bench_models.py [--threads 2] [--repeats 5] [--large] [--json out.json]

Models are built from configs with random weights (timing does not depend on the values), except that
the Whisper-base encoder is the real one from ../shared/models when present. Each model is warmed up,
then timed as the median of ``--repeats`` forwards under ``torch.inference_mode``.
Checks of the models issue: merged LoRA must cost nothing over the bare encoder, and MoLEx with
top-1 routing at most 15% more than a single (unmerged) LoRA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from sddkit.cli.describe_cmd import count_params
from sddkit.cli.options import check_paths_writable, require_positive
from sddkit.config import from_dict
from sddkit.detectors import DetectorConfig, build_detector
from sddkit.detectors.model_dir import atomic_write_bytes

WHISPER_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "whisper-base-encoder"


def ssl(encoder: str, adapter: str = "none", *, pretrained: str | None = None, **adapter_cfg) -> dict:
    enc: dict = {"name": encoder}
    if pretrained:
        enc["pretrained"] = pretrained
    frontend: dict = {"name": "ssl", "encoder": enc, "adapter": adapter}
    if adapter != "none":
        frontend[adapter] = adapter_cfg
    return {"frontend": frontend, "backend": {"name": "ssl_aasist"}}


def spectral(frontend: str, backend: str) -> dict:
    return {"frontend": {"name": frontend}, "backend": {"name": backend}}


def model_zoo(large: bool) -> dict[str, tuple[dict, bool]]:
    """name -> (detector config, merge LoRA before timing)."""
    whisper = str(WHISPER_DIR.resolve()) if WHISPER_DIR.is_dir() else None
    lora = {"rank": 8, "alpha": 2.0, "targets": ["q", "k", "v", "out"]}
    molex = {"num_experts": 4, "rank": 8, "alpha": 2.0, "router": {"name": "topk", "k": 1}}
    zoo = {
        "AASIST (raw)": (spectral("raw", "aasist"), False),
        "AASIST-L (raw)": (spectral("raw", "aasist_l"), False),
        "LCNN (log-Mel)": (spectral("logmel", "lcnn"), False),
        "LCNN (LFCC)": (spectral("lfcc", "lcnn"), False),
        "ResNet18 (log-Mel)": (spectral("logmel", "resnet18"), False),
        "ResNet18 (log spec)": (spectral("logspec", "resnet18"), False),
        "Whisper-base bare": (ssl("whisper_base", pretrained=whisper), False),
        "Whisper-base LoRA r8": (ssl("whisper_base", "lora", pretrained=whisper, **lora), False),
        "Whisper-base LoRA r8 merged": (ssl("whisper_base", "lora", pretrained=whisper, **lora), True),
        "Whisper-base MoLEx E4 top-1": (ssl("whisper_base", "molex", pretrained=whisper, **molex), False),
        "wav2vec2-base bare": (ssl("wav2vec2_base"), False),
        "wav2vec2-base LoRA r8 merged": (ssl("wav2vec2_base", "lora", **lora), True),
    }
    if large:
        zoo["XLS-R 300M LoRA r8 merged"] = (ssl("xlsr_300m", "lora", **lora), True)
    return zoo


def time_forward(model: torch.nn.Module, batch: int, seconds: float, repeats: int) -> float:
    x = torch.randn(batch, int(16000 * seconds)) * 0.1
    with torch.inference_mode():
        model(x)  # warm-up: first calls allocate and pick kernels
        model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--large", action="store_true", help="also XLS-R 300M (slow)")
    ap.add_argument("--only", nargs="*", help="substrings of model names to run (case-sensitive)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    require_positive(ap, args, "threads", "repeats", "seconds")
    if min(args.batches) <= 0:
        ap.error(f"--batches must be positive, got {' '.join(map(str, args.batches))}")
    check_paths_writable(args, "json")  # asked now, not after every model has been timed
    zoo = model_zoo(args.large)
    # a substring no name holds (the match is case-sensitive: `--only lcnn`) printed an empty table and wrote {}
    unmatched = [s for s in args.only or [] if not any(s in name for name in zoo)]
    if unmatched:
        large = "" if args.large else " (XLS-R 300M only with --large)"
        ap.error(f"--only {' '.join(map(repr, unmatched))} matches no model; models: {'; '.join(zoo)}{large}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    header = " | ".join(f"batch {b} (ms)" for b in args.batches)
    print(f"| model | params | {header} | x real time (batch {args.batches[-1]}) |")
    print("|---|---:|" + "---:|" * len(args.batches) + "---:|")
    for name, (cfg, merge) in zoo.items():
        if args.only and not any(s in name for s in args.only):
            continue
        model = build_detector(from_dict(DetectorConfig, cfg)).eval()
        if merge:
            model.frontend.merge()
        row = {b: time_forward(model, b, args.seconds, args.repeats) for b in args.batches}
        b_last = args.batches[-1]
        rtf = b_last * args.seconds / row[b_last]
        results[name] = {"params": count_params(model)["total_params"], **{f"batch{b}_s": t for b, t in row.items()}}
        cells = " | ".join(f"{row[b] * 1000:.0f}" for b in args.batches)
        print(f"| {name} | {results[name]['params'] / 1e6:.2f}M | {cells} | {rtf:.0f}x |", flush=True)
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(results, indent=2) + "\n").encode())


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_models")
