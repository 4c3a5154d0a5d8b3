"""The training data preflight: what looking up every audio file of a run's protocols costs before its first step.

    python benchmarks/bench_preflight.py [--files 182000] [--repeats 3] [--dir /dev/shm]

Writes ``--files`` small placeholder files (ASVspoof 5's training + development sets hold about 182k utterances)
in 1000-file folders under a temporary folder of ``--dir`` (tmpfs by default: the figures are then the lookups'
own, no disk), and an utterance table listing them, then times, best of ``--repeats``:

- ``file_problem`` with a stat only, and with the open (``check_open=True``, what the preflight does: a file the run
  may not read is refused too);
- ``check_audio_files`` on the table as a ``data.train`` spec: the protocol read, and every file's check.

The placeholders are removed afterwards. A network file system answers each stat and open slower: measure there.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _write_files(root: Path, n: int) -> Path:
    """``n`` placeholder files and the utterance table listing them (absolute paths); returns the table."""
    table = root / "table.csv"
    with open(table, "w") as f:
        f.write("utt_id,path,label\n")
        for i in range(n):
            folder = root / f"{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir()
            path = folder / f"u{i:07d}.flac"
            path.write_bytes(b"fLaC\x00\x00\x00\x22")
            f.write(f"u{i},{path},{'bonafide' if i % 2 else 'spoof'}\n")
    return table


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=_positive, default=182000, help="placeholder files (default 182000)")
    parser.add_argument("--repeats", type=_positive, default=3, help="timed repeats, the best kept (default 3)")
    parser.add_argument("--dir", default="/dev/shm", help="where the temporary folder goes (default /dev/shm)")
    args = parser.parse_args()
    if not os.path.isdir(args.dir):
        parser.error(f"--dir {args.dir}: no such folder")

    from sddkit.audio.io import file_problem
    from sddkit.config import from_dict
    from sddkit.training.data import check_audio_files
    from sddkit.training.recipe import ProtocolSpec

    root = Path(tempfile.mkdtemp(prefix="sddkit-preflight-", dir=args.dir))
    try:
        table = _write_files(root, args.files)
        paths = [line.split(",")[1] for line in table.read_text().splitlines()[1:]]
        spec = from_dict(ProtocolSpec, {"protocol": str(table), "format": "utterance_table"})

        def lookups(check_open: bool) -> None:
            bad = [p for p in paths if file_problem(p, check_open=check_open) is not None]
            assert not bad, bad[:3]

        stat_only = _best(lambda: lookups(False), args.repeats)
        with_open = _best(lambda: lookups(True), args.repeats)
        preflight = _best(lambda: check_audio_files([("data.train", spec)]), args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    python = sys.version.split()[0]
    print(f"# {args.files} files under {args.dir}, best of {args.repeats}; {platform.node()}, Python {python}")
    print(f"file_problem, stat only:           {stat_only:.2f} s")
    print(f"file_problem, stat + open:         {with_open:.2f} s")
    print(f"check_audio_files (with the read): {preflight:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
