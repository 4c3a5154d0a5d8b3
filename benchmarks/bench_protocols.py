"""Reading a large protocol: time and peak memory of ``read_protocol`` on an ASVspoof 2021 DF-sized key.

    python benchmarks/bench_protocols.py [--lines 611829] [--repeats 3] [--src DIR]

Writes a synthetic key in the ASVspoof 2021 DF evaluation layout (13 fields: ASVspoof and VCC 2020 trials, nine
codecs, three phases; the real key has 611,829 lines) to a temporary folder, then reads it ``--repeats`` times, each
in a fresh Python process (so each peak RSS is that read's own): wall time of ``read_protocol`` alone, the process's
peak RSS, and its RSS before the read (the imports). ``--src DIR`` runs the reads against another checkout's
``src`` (e.g. a ``git worktree`` of an older commit), for before/after figures on the same key and machine; the
header names the ``sddkit`` folder the reads imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CODECS = ["nocodec", "low_mp3", "high_mp3", "low_m4a", "high_m4a", "mp3m4a", "oggm4a", "low_ogg", "high_ogg"]
PHASES = ["progress", "eval", "hidden"]
LANGUAGES = ["English", "Finnish", "German", "Mandarin"]

# one read in a fresh process: the figures come back as one JSON line
CHILD = """
import json, os, resource, sys, time
def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
import sddkit
from sddkit.data.protocols import read_protocol
before = rss_mb()
t = time.perf_counter()
table = read_protocol(sys.argv[1], format="asvspoof2021_df")
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sddkit_dir = os.path.dirname(sddkit.__file__)
print(json.dumps({"seconds": seconds, "peak_mb": peak, "imports_mb": before, "rows": len(table), "sddkit": sddkit_dir}))
"""


def write_key(path: Path, lines: int, seed: int = 13) -> None:
    """A DF evaluation key of ``lines`` trials: 4 % bona fide, 46 % ASVspoof 2019 attacks, 50 % VCC 2020 teams."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(lines):
            utt, codec, phase = f"DF_E_{2000000 + i}", rng.choice(CODECS), rng.choice(PHASES)
            r = rng.random()
            if r < 0.04:
                f.write(f"LA_{rng.randint(1, 99):04d} {utt} {codec} asvspoof bonafide bonafide notrim {phase} ")
                f.write("bonafide - - - -\n")
            elif r < 0.5:
                attack = f"A{rng.randint(7, 19):02d}"
                f.write(f"LA_{rng.randint(1, 99):04d} {utt} {codec} asvspoof {attack} spoof notrim {phase} ")
                f.write("traditional_vocoder - - - -\n")
            else:
                team, task = rng.randint(1, 33), rng.choice(["Task1", "Task2"])
                f.write(f"TEF{rng.randint(1, 2)} {utt} {codec} vcc2020 {task}-team{team:02d} spoof notrim {phase} ")
                f.write(f"neural_vocoder_autoregressive {task} team{team:02d} FM {rng.choice(LANGUAGES)}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=611829)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--src", default=None, help="read with this checkout's src/ (default: the installed sddkit)")
    args = parser.parse_args(argv)
    if args.lines < 1 or args.repeats < 1:
        parser.error("--lines and --repeats must be at least 1")
    env = None
    if args.src is not None:
        src = Path(args.src).resolve() / "src"
        if not (src / "sddkit").is_dir():
            parser.error(f"--src {args.src}: no src/sddkit there")
        env = {**os.environ, "PYTHONPATH": str(src)}
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "DF_key.txt"
        write_key(key, args.lines)
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, str(key)], env=env, capture_output=True, text=True)
            if out.returncode != 0:  # the read's own error (e.g. an old --src), not a CalledProcessError that hid it
                print(out.stderr.rstrip(), file=sys.stderr)
                print(f"bench_protocols: the read failed (exit status {out.returncode})", file=sys.stderr)
                return 1
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    # the package the reads imported: without --src, whichever checkout the environment installed, not always this one
    read_from = ", ".join(sorted({r["sddkit"] for r in runs}))
    print(f"{platform.node()} {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"{args.lines} lines, {args.repeats} reads, sddkit read from {read_from}\n")
    print("| read | seconds | peak RSS MB | RSS before the read (imports) MB | rows |")
    print("|---|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        print(f"| {i} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['imports_mb']:.0f} | {r['rows']} |")
    print(
        f"\nmedian: {statistics.median(r['seconds'] for r in runs):.2f} s, "
        f"peak RSS {statistics.median(r['peak_mb'] for r in runs):.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
