"""Write Griffin-Lim copy-synthesis spoofs of a corpus's bona fide files, with an sddbench-style manifest.

    python scripts/make_copysynth.py ../shared/data/sddbench/manifest.csv --partitions train \
        --out ../sddbench_copysynth

Each bona fide file of the chosen partitions gets one vocoded copy (16 kHz FLAC), labelled spoof, system
``copysynth-mel-gl`` or ``copysynth-linear-gl`` (by the parity of the CRC-32 of its ``utt_id``: about half each,
the same file always the same way), with the original's source, speaker,
pair_id and partition, so that a pair differs only in the vocoding. Add the output to a recipe's
``data.train`` as a second ``sddbench`` protocol, e.g. with the override in docs/benchmarks.md ("Copy-synthesis
training spoofs"). The output must stay outside the repository, in a new folder: an ``--out`` that already holds a
``manifest.csv`` (the corpus's own folder, or an earlier run's output) is refused, since the run replaces it whole.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import zlib
from pathlib import Path

import soundfile as sf

from sddkit.audio.io import load_audio
from sddkit.augment.vocoder import copy_synthesis
from sddkit.data.protocols.sddbench import SddbenchConfig, read_sddbench
from sddkit.detectors.model_dir import atomic_write_bytes
from sddkit.errors import ConfigError

COLUMNS = [
    "path", "label", "partition", "system", "attack_type", "source", "speaker", "pair_id", "language",
    "origin_corpus", "variant", "orig_format", "sample_rate", "channels", "duration_s",
]  # fmt: skip
SAMPLE_RATE = 16000


def refuse_existing_manifest(out: Path) -> None:
    """Refuse an ``--out`` that already holds a ``manifest.csv``: the run replaced it whole, so an ``--out`` equal to
    the corpus's own folder overwrote the corpus's manifest, and a second run into the same folder (e.g. another
    ``--partitions``) dropped the first run's rows while their audio stayed behind, listed nowhere."""
    if (out / "manifest.csv").exists():
        raise ConfigError(
            f"--out {out} already holds a manifest.csv (a corpus's, or an earlier run's), which this run would "
            "replace: choose a new folder, or delete that one first"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", help="sddbench manifest.csv")
    parser.add_argument("--partitions", nargs="+", default=["train"])
    parser.add_argument("--out", required=True, help="output folder (gets manifest.csv and audio/)")
    parser.add_argument("--n-iter", type=int, default=60, help="Griffin-Lim iterations")
    parser.add_argument(
        "--magnitude",
        choices=["alternate", "mel", "linear"],
        default="alternate",
        help="alternate: mel or linear by the parity of the CRC-32 of the utt_id (about half each, fixed per file)",
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    refuse_existing_manifest(out)  # asked now, not after minutes of synthesis
    table = read_sddbench(SddbenchConfig(protocol=args.manifest, partitions=args.partitions))
    rows = []
    bonafide = table.where(label="bonafide").df.fillna("").to_dict("records")
    for i, row in enumerate(bonafide):
        wave = load_audio(row["path"], sample_rate=SAMPLE_RATE)
        seed = zlib.crc32(row["utt_id"].encode())
        kind = args.magnitude if args.magnitude != "alternate" else ("mel", "linear")[seed % 2]
        y = copy_synthesis(wave, SAMPLE_RATE, magnitude=kind, n_iter=args.n_iter, seed=seed)
        rel = f"audio/{row['source']}/cs_{kind}_{row['utt_id']}.flac"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(out / rel, y, SAMPLE_RATE, subtype="PCM_16")
        rows.append(
            {
                "path": rel,
                "label": "spoof",
                "partition": row["partition"],
                "system": f"copysynth-{kind}-gl",
                "attack_type": "vocoder",
                "source": row["source"],
                "speaker": row["speaker"],
                "pair_id": row.get("pair_id", ""),
                "language": row.get("language", ""),
                "origin_corpus": row.get("origin_corpus", ""),
                "variant": f"Griffin-Lim {args.n_iter} it. from {kind} magnitude of {row['utt_id']}",
                "orig_format": "FLAC/PCM_16",
                "sample_rate": SAMPLE_RATE,
                "channels": 1,
                "duration_s": f"{len(y) / SAMPLE_RATE:.3f}",
            }
        )
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(bonafide)}", file=sys.stderr, flush=True)
    # replaced whole: a stop mid-write left a truncated manifest that reads as a smaller corpus
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "manifest.csv", text.getvalue().encode())
    print(f"wrote {len(rows)} files and {out / 'manifest.csv'}")
    return 0


if __name__ == "__main__":
    from sddkit.errors import run_script

    run_script(main, "make_copysynth")
