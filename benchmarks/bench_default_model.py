"""Evaluate a model directory on sddbench, as a markdown section on stdout.

    python benchmarks/bench_default_model.py [MODEL_DIR] [--partitions val test_unseen test_wild]
        [--codec mp3:64 | --codec none] [--cache /work/cache/sddbench16k.npz] [--threads 2] [--json out.json]

MODEL_DIR defaults to the bundled default model (``src/sddkit/assets/default_model``). Every file
is scored as ``sdd score`` scores it (``sddkit.load_detector``: the model dir's windows, hop,
aggregation, calibration and threshold). For each partition the section gives the pooled EER with
a 95 % stratified bootstrap interval, the EER of every source and their mean, the EER of every
spoofing system against the partition's bona fide files, and the error rates at the stored
threshold. ``stress_narrowband`` (bona fide only) gets the share of files wrongly rejected at that
threshold (the threshold is the one chosen on ``val``).

Codec-equalised variant (``--codec mp3:64``, the default): every file (at 16 kHz) also goes through
the same lossy round trip before scoring, so the container or codec a source was published in
cannot decide the label (sddbench's README, "Known confounds"). ``--codec none`` skips it.

``--cache`` reads the 16 kHz waveforms from a ``CachedWaveforms`` ``.npz`` of the manifest
(decoded by ``sddkit.audio.load_audio``, the same decoding) instead of decoding every file.
Reads ``../shared/data/sddbench`` (never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO.parent / "shared" / "data" / "sddbench" / "manifest.csv"
PARTITIONS = ("val", "test_unseen", "test_wild")
STRESS = "stress_narrowband"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", nargs="?", default=None, help="sddkit model directory (default: the bundled model)")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="sddbench manifest.csv")
    p.add_argument("--partitions", nargs="+", default=list(PARTITIONS), help="partitions with both classes")
    p.add_argument("--no-stress", action="store_true", help=f"skip {STRESS}")
    p.add_argument("--codec", default="mp3:64", help="codec:kbps of the codec-equalised variant, or 'none'")
    p.add_argument("--cache", default=None, help="CachedWaveforms .npz holding the manifest at 16 kHz")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the EER intervals")
    p.add_argument("--threads", type=int, default=2, help="torch threads while scoring")
    p.add_argument("--batch-size", type=int, default=32, help="windows per forward pass")
    p.add_argument("--name", default=None, help="model name in the section title (default: the directory name)")
    p.add_argument("--json", default=None, help="also write every number to this JSON file")
    args = p.parse_args(argv)
    from sddkit.cli.options import require_positive

    # asked now: torch's RuntimeError for --threads 0, and the bootstrap's error for --bootstrap 0 only once the
    # first partition had been scored
    require_positive(p, args, "threads", "bootstrap")
    return args


# --- scoring -------------------------------------------------------------------------------------


def load_waveforms(table, cache_path: str | None) -> list[np.ndarray]:
    """(T_i,) float32 16 kHz waveform of every row of ``table``."""
    from sddkit.audio.io import load_audio
    from sddkit.data.dataset import CachedWaveforms
    from sddkit.errors import ConfigError

    cache = CachedWaveforms.load(cache_path) if cache_path else None
    if cache is not None and cache.sample_rate != 16000:  # its samples would be read as 16 kHz audio
        raise ConfigError(f"--cache {cache_path} holds {cache.sample_rate} Hz audio; the benchmark scores 16000 Hz")
    out = []
    for utt, path in zip(table.column("utt_id"), table.column("path")):
        x = cache.get(str(utt)) if cache is not None else None
        out.append(np.asarray(x if x is not None else load_audio(path, sample_rate=16000), dtype=np.float32))
    return out


def codec_equalise(waves: list[np.ndarray], codec: str, kbps: float | None) -> list[np.ndarray]:
    from sddkit.augment.codecs import codec_roundtrip

    return [codec_roundtrip(x, 16000, codec, bitrate_kbps=kbps) for x in waves]


def parse_codec(spec: str) -> tuple[str | None, float | None]:
    """``--codec`` -> (codec, kb/s), (None, None) for ``none``; tried at once on 0.1 s of audio, so that a
    misspelt codec or bit rate is refused before the clean variant of the first partition is scored."""
    from sddkit.errors import ConfigError

    if spec.lower() == "none":
        return None, None
    codec, _, rate = spec.partition(":")
    try:
        kbps = float(rate) if rate else None
    except ValueError:
        raise ConfigError(f"--codec {spec}: the bit rate after ':' must be a number of kb/s, e.g. mp3:64") from None
    if not codec:
        raise ConfigError(f"--codec {spec}: name a codec, e.g. mp3:64, or 'none'")
    try:
        codec_equalise([np.zeros(1600, dtype=np.float32)], codec, kbps)
    except ConfigError as exc:
        raise ConfigError(f"--codec {spec}: {exc}") from None
    return codec, kbps


def score_all(
    detector, waves: list[np.ndarray], names: list[str] | None = None, chunk: int = 64
) -> tuple[np.ndarray, float]:
    """Calibrated scores (N,) and the seconds the detector took (windowing + forward passes).

    ``names`` (e.g. the files) label an unscorable waveform in the error; without them it is "waveforms[i]", ``i``
    counted within its chunk."""
    scores, seconds = [], 0.0
    for i in range(0, len(waves), chunk):
        t0 = time.perf_counter()
        results = detector.score_many(waves[i : i + chunk], names=None if names is None else names[i : i + chunk])
        seconds += time.perf_counter() - t0
        scores.extend(r.score for r in results)
    return np.asarray(scores, dtype=np.float64), seconds


def read_partition(manifest: str, part: str):
    """The manifest's rows of ``part``; a partition reported by EER must hold both classes (``stress_narrowband``
    is bona fide only: it gets the share wrongly rejected)."""
    from sddkit.data.protocols import read_protocol
    from sddkit.errors import ConfigError

    table = read_protocol(manifest, partitions=[part])
    labels = np.asarray(table.labels)
    if part != STRESS and len(set(labels.tolist())) < 2:
        what = "bona fide" if labels.size and labels[0] == 1 else "spoof"
        raise ConfigError(
            f"--partitions {part}: {manifest} lists only {what} files there ({labels.size}); an EER needs both "
            f"classes: leave it out of --partitions"
        )
    return table


# --- metrics -------------------------------------------------------------------------------------


def eer_value(labels: np.ndarray, scores: np.ndarray) -> float:
    from sddkit.metrics.det import eer

    return float(eer(labels, scores).eer)


def eer_ci(labels: np.ndarray, scores: np.ndarray, n: int) -> dict[str, float]:
    from sddkit.metrics.bootstrap import bootstrap_ci
    from sddkit.metrics.det import eer

    point, low, high = bootstrap_ci(lambda y, s: eer(y, s), labels, scores, n=n, seed=0)
    return {"eer": point, "low": low, "high": high}


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Bona fide rejected (score < threshold) and spoof accepted, as fractions."""
    bona, spoof = scores[labels == 1], scores[labels == 0]
    return {
        "frr": float(np.mean(bona < threshold)) if bona.size else None,
        "far": float(np.mean(spoof >= threshold)) if spoof.size else None,
    }


def partition_metrics(table, labels: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int) -> dict[str, Any]:
    sources = np.asarray([str(s) for s in table.column("source")])
    systems = np.asarray([str(s) for s in table.column("attack")])
    out: dict[str, Any] = {
        "n_bonafide": int((labels == 1).sum()),
        "n_spoof": int((labels == 0).sum()),
        "pooled": eer_ci(labels, scores, n_boot),
        "threshold": at_threshold(labels, scores, threshold),
        "sources": {},
        "systems": {},
    }
    for src in sorted(set(sources)):
        m = sources == src
        if len(set(labels[m].tolist())) == 2:
            out["sources"][src] = {
                "n_bonafide": int((labels[m] == 1).sum()),
                "n_spoof": int((labels[m] == 0).sum()),
                "eer": eer_value(labels[m], scores[m]),
            }
    per_source = [v["eer"] for v in out["sources"].values()]
    out["mean_over_sources"] = float(np.mean(per_source)) if per_source else None
    bona = labels == 1
    for sysname in sorted(set(systems[labels == 0])):
        m = bona | (systems == sysname)
        out["systems"][sysname] = {"n_spoof": int((systems == sysname).sum()), "eer": eer_value(labels[m], scores[m])}
    return out


# --- report --------------------------------------------------------------------------------------


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def markdown(results: dict[str, Any]) -> str:
    lines = [f"## sddbench: `{results['model']}`", ""]
    lines.append(
        f"Scored as `sdd score` does: {results['inference']['window_samples']}-sample windows, hop "
        f"{results['inference']['hop_samples']}, {results['inference']['aggregation']} aggregation, the model's stored "
        f"calibration and threshold ({results['inference']['threshold']:.4g}). EER in %, 95 % bootstrap interval "
        f"({results['bootstrap']} stratified replicates)."
    )
    header = "| partition | variant | bona fide / spoof | EER % [95 % CI] | mean over sources | FRR @thr | FAR @thr |"
    lines += ["", header]
    lines.append("|---|---|---|---|---|---|---|")
    for variant, parts in results["variants"].items():
        for part, r in parts.items():
            if part == STRESS:
                continue
            e = r["pooled"]
            lines.append(
                f"| {part} | {variant} | {r['n_bonafide']} / {r['n_spoof']} | {pct(e['eer'])} "
                f"[{pct(e['low'])}, {pct(e['high'])}] | {pct(r['mean_over_sources'])} | "
                f"{pct(r['threshold']['frr'])} | {pct(r['threshold']['far'])} |"
            )
    for variant, parts in results["variants"].items():
        if STRESS in parts:
            s = parts[STRESS]
            lines.append(
                f"\n{STRESS} ({variant}): {s['n_rejected']} of {s['n']} bona fide files wrongly rejected "
                f"({pct(s['frr'])} %) at the val threshold."
            )
    lines += [
        "",
        "Per source (EER %):",
        "",
        "| partition | source | bona fide / spoof | " + " | ".join(results["variants"]) + " |",
        "|---|---|---|" + "---|" * len(results["variants"]),
    ]
    first = next(iter(results["variants"].values()))
    for part, r in first.items():
        if part == STRESS:
            continue
        for src, v in r["sources"].items():
            cells = [pct(results["variants"][var][part]["sources"][src]["eer"]) for var in results["variants"]]
            lines.append(f"| {part} | {src} | {v['n_bonafide']} / {v['n_spoof']} | " + " | ".join(cells) + " |")
    lines += ["", "Per spoofing system, against the partition's bona fide files (EER %):", ""]
    lines += ["| partition | system | spoof files | " + " | ".join(results["variants"]) + " |"]
    lines.append("|---|---|---|" + "---|" * len(results["variants"]))
    for part, r in first.items():
        if part == STRESS:
            continue
        for sysname, v in r["systems"].items():
            cells = [pct(results["variants"][var][part]["systems"][sysname]["eer"]) for var in results["variants"]]
            lines.append(f"| {part} | {sysname} | {v['n_spoof']} | " + " | ".join(cells) + " |")
    sp = results["speed"]
    lines += [
        "",
        f"Speed: {sp['audio_s']:.0f} s of audio scored in {sp['seconds']:.1f} s = {sp['xrt']:.0f}x real time "
        f"({sp['threads']} torch threads, {sp['machine']}; decoding not included).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sddkit.cli.options import check_paths_writable

    check_paths_writable(args, "json")  # asked now, not after the scoring and the bootstraps
    codec, kbps = parse_codec(args.codec)
    import torch

    torch.set_num_threads(args.threads)
    from sddkit.scoring.api import load_detector, resolve_model_path

    parts = list(dict.fromkeys(list(args.partitions) + ([] if args.no_stress else [STRESS])))
    model_path = resolve_model_path(args.model)
    detector = load_detector(model_path, batch_size=args.batch_size)
    # every partition read before any scoring: a misspelt or one-class one was refused only once those before it
    # had been scored and bootstrapped
    tables = {part: read_partition(args.manifest, part) for part in parts}
    inference = detector.inference
    threshold = float(inference.threshold)
    variants = {"clean": None} | ({f"{codec} {kbps:g} kb/s" if kbps else codec: (codec, kbps)} if codec else {})

    results: dict[str, Any] = {
        "model": args.name or model_path.name,
        "model_dir": str(model_path),
        "inference": inference.to_dict(),
        "bootstrap": args.bootstrap,
        "variants": {v: {} for v in variants},
    }
    audio_s, seconds = 0.0, 0.0
    for part, table in tables.items():
        labels = np.asarray(table.labels, dtype=np.int64)
        clean = load_waveforms(table, args.cache)
        for variant, spec in variants.items():
            waves = clean if spec is None else codec_equalise(clean, *spec)
            scores, took = score_all(detector, waves, [str(path) for path in table.column("path")])
            if spec is None:
                audio_s += sum(len(x) for x in waves) / 16000.0
                seconds += took
            if part == STRESS:
                rejected = int((scores < threshold).sum())
                results["variants"][variant][part] = {
                    "n": len(scores),
                    "n_rejected": rejected,
                    "frr": rejected / len(scores),
                }
            else:
                results["variants"][variant][part] = partition_metrics(table, labels, scores, threshold, args.bootstrap)
    results["speed"] = {
        "audio_s": audio_s,
        "seconds": seconds,
        "xrt": audio_s / seconds if seconds > 0 else float("nan"),
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
    }
    print(markdown(results))
    if args.json:
        from sddkit.detectors.model_dir import atomic_write_bytes

        atomic_write_bytes(Path(args.json), (json.dumps(results, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "bench_default_model")
