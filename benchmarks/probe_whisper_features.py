"""A logistic regression on frozen Whisper-base features, trained on sddbench `train`, as a score CSV.

For every `train`, `val` and `test_unseen` file: the first 8 s (resampled to 16 kHz, scaled to -27 dBFS RMS as
the default model's front-end does) go through the frozen pretrained Whisper-base encoder, unpadded; each hidden
state (the input of layer 1 and the output of every layer) is pooled to its mean and standard deviation over
time. A class-balanced L2 logistic regression on standardised features is fitted on `train` for every layer and
every C in --cs; the (C, layer) with the lowest `val` EER is kept (ties: the smaller C, then the lower layer).
Its decision values are written as `path,raw_score` rows for `val` and `test_unseen`, the input
`benchmarks/bench_score_fusion.py` reads, and the per-layer EERs are printed. Nothing is fitted or chosen on a
test partition.

    python benchmarks/probe_whisper_features.py --out whisper_lr.csv [--encoder DIR] [--features feats.npz]
    python benchmarks/bench_score_fusion.py default=default.csv whisper_lr=whisper_lr.csv

The encoder is read from a local folder (default: ../shared/models/whisper-base-encoder); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from sddkit.audio.io import load_audio
from sddkit.cli.options import check_paths_writable, require_positive
from sddkit.data.protocols import read_protocol
from sddkit.detectors.model_dir import atomic_open, atomic_write_bytes
from sddkit.frontends.encoders import EncoderConfig, build_encoder
from sddkit.metrics.det import eer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PARTITIONS = ("train", "val", "test_unseen")
SAMPLE_RATE = 16000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="score CSV (path,raw_score) for val and test_unseen")
    ap.add_argument("--manifest", default=str(SHARED / "data" / "sddbench" / "manifest.csv"))
    ap.add_argument("--encoder", default=str(SHARED / "models" / "whisper-base-encoder"))
    ap.add_argument("--preset", default="whisper_base", help="sddkit encoder preset of --encoder (sdd list)")
    ap.add_argument("--features", help="cache of the pooled features (.npz): read when it exists, else written")
    ap.add_argument("--max-seconds", type=float, default=8.0, help="seconds encoded from the start of each file")
    ap.add_argument("--level-db", type=float, default=-27.0, help="RMS level every input is scaled to")
    ap.add_argument("--cs", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="inverse L2 strengths tried")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    # asked now, not after minutes of encoding (torch's RuntimeError for --threads 0, sklearn's for a C of 0)
    require_positive(ap, args, "threads", "max_seconds")
    if min(args.cs) <= 0:
        ap.error(f"--cs must be positive, got {' '.join(f'{c:g}' for c in args.cs)}")
    return args


def pooled_states(encoder: torch.nn.Module, waveform: np.ndarray, level_db: float) -> np.ndarray:
    """(T,) at 16 kHz -> (L + 1, 2 D): mean and std over time of every hidden state."""
    x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    x = x * (10 ** (level_db / 20) / x.pow(2).mean().sqrt().clamp_min(1e-8))
    states = encoder._run(x[None], all_states=True)  # list of (1, N, D)
    return np.stack([torch.cat([s[0].mean(0), s[0].std(0)]).numpy() for s in states])


def extract(args: argparse.Namespace, paths: list[str]) -> np.ndarray:
    """(files, L + 1, 2 D) pooled features, from the --features cache when it holds these files encoded with these
    settings (a cache written before the settings were recorded is taken as it is)."""
    cache = Path(args.features) if args.features else None
    encoder = str(Path(args.encoder).resolve())
    settings = {"preset": args.preset, "max_seconds": args.max_seconds, "level_db": args.level_db, "encoder": encoder}
    if cache is not None and cache.exists():
        saved = np.load(cache)
        if list(saved["paths"]) != paths:
            raise SystemExit(f"{cache} holds other files: delete it or pass another --features")
        stored = json.loads(str(saved["settings"])) if "settings" in saved else settings
        # the encoder is compared only when --encoder exists (features of it could be encoded): a cache is read
        # back without its encoder at hand, but not for another encoder's features (a cache of one written before
        # the encoder was recorded is taken as it is, as one without settings)
        compared = {k: v for k, v in settings.items() if k != "encoder" or Path(encoder).exists()}
        changed = [
            f"--{k.replace('_', '-')} {stored[k]} there, {v} now" for k, v in compared.items() if stored.get(k, v) != v
        ]
        if changed:
            raise SystemExit(
                f"{cache} was encoded with other settings ({'; '.join(changed)}): delete it or pass another --features"
            )
        return saved["X"]
    torch.set_num_threads(args.threads)
    encoder = build_encoder(EncoderConfig(pretrained=args.encoder, dropout=0.0), preset=args.preset).eval()
    feats, start = [], time.time()
    with torch.inference_mode():
        for i, path in enumerate(paths):
            audio = load_audio(path, sample_rate=SAMPLE_RATE, allow_silent=True)
            feats.append(pooled_states(encoder, audio[: int(args.max_seconds * SAMPLE_RATE)], args.level_db))
            if i % 200 == 0:
                print(f"encoded {i}/{len(paths)} files in {time.time() - start:.0f} s", flush=True)
    X = np.stack(feats)
    if cache is not None:
        # into an open file: np.savez would append ".npz" to another name, and the next run would miss the cache
        with atomic_open(cache) as fh:
            np.savez(fh, paths=np.array(paths), X=X, settings=json.dumps(settings))
    return X


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    args = parse_args(argv)
    check_paths_writable(args, "out", "features")  # both written after the encoding
    table = read_protocol(args.manifest, "sddbench", partitions=list(PARTITIONS))
    paths = [str(Path(p).resolve()) for p in table.column("path")]
    part = np.asarray(table.column("partition")).astype(str)
    y = np.asarray(table.labels, dtype=int)
    X = extract(args, paths)
    train, val, test = (part == p for p in PARTITIONS)

    def pct_eer(mask: np.ndarray, s: np.ndarray) -> float:
        return 100.0 * eer(y[mask], s[mask]).eer

    results = {}
    print("| C | layer | val EER % | test_unseen EER % |\n|---|---|---|---|")
    for c in sorted(args.cs):
        for layer in range(X.shape[1]):
            scaler = StandardScaler().fit(X[train, layer])
            clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
            clf.fit(scaler.transform(X[train, layer]), y[train])
            s = clf.decision_function(scaler.transform(X[:, layer]))
            results[(c, layer)] = (pct_eer(val, s), s)
            print(f"| {c:g} | {layer} | {pct_eer(val, s):.1f} | {pct_eer(test, s):.1f} |")
    best = min(results, key=lambda k: (results[k][0], k[0], k[1]))
    scores = results[best][1]
    print(
        f"chosen on val: C={best[0]:g}, layer {best[1]}: val {pct_eer(val, scores):.1f} %, "
        f"test_unseen {pct_eer(test, scores):.1f} %"
    )
    # replaced whole or not at all: an interrupted write would leave a truncated CSV for bench_score_fusion.py
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["path", "raw_score"])
    for i in np.flatnonzero(val | test):
        writer.writerow([paths[i], f"{scores[i]:.7g}"])
    atomic_write_bytes(Path(args.out), text.getvalue().encode())
    print(f"wrote {int((val | test).sum())} scores (val, test_unseen) to {args.out}")
    return 0


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "probe_whisper_features")
