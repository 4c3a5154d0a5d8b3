"""Time and peak memory of ``match_scores`` (what ``sdd eval`` and ``sdd compare`` do per score file) at ASVspoof 5
size: a synthetic protocol of 1,000,000 trials and a score file keyed by utt_id, by path or by file stem.

    python benchmarks/bench_match_scores.py [--trials 1000000] [--cases utt_id,utt_id_partial,path,stem]

Cases (score rows in shuffled order, as a merged ``sdd score`` output has them):

- ``utt_id``: every trial scored, ids are the protocol's utt_ids (an ASVspoof 5 submission);
- ``utt_id_partial``: 1 % of the trials unscored and 1 % of the rows for utterances the protocol does not list;
- ``path``: ids are the protocol's absolute paths (``sdd score`` run on the protocol's files);
- ``stem``: ids are paths under another folder with another extension (only the file stem matches);
- ``compare4``: what ``sdd compare`` does to align 4 score files keyed by utt_id (``_common_trials``: each file
  matched, then the trials all of them score kept).

Each case runs in a fresh process. Once the table and score file are built, the peak resident memory is reset
(``5`` written to ``/proc/self/clear_refs``, Linux), so that ``getrusage``' ``ru_maxrss`` then is the memory in use
(``rss_before_mb``) and, after matching, the peak while matching (``rss_peak_mb``); ``extra_mb`` is the difference.
Where the reset is refused, ``rss_before_mb`` is the peak of building the inputs (``peak_reset`` false).
One JSON line per case on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

from sddkit.cli.options import require_positive

CASES = ("utt_id", "utt_id_partial", "path", "stem", "compare4")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _inputs(case: str, n: int):
    from sddkit.data.table import UtteranceTable
    from sddkit.evaluation.scores import ScoreFile

    rng = np.random.default_rng(0)
    utt = np.array([f"E_{i:010d}" for i in range(n)], dtype=object)
    paths = np.array([f"/data/corpus/ASVspoof5/flac_E_eval/{u}.flac" for u in utt], dtype=object)
    labels = np.where(rng.random(n) < 0.1, "bonafide", "spoof").astype(object)
    df = pd.DataFrame({"utt_id": utt, "path": paths, "label": labels, "attack": "A01", "source": "eval"})
    table = UtteranceTable(df)
    order = rng.permutation(n)
    if case in ("utt_id", "compare4"):
        ids = utt[order]
    elif case == "utt_id_partial":
        keep = order[: n - n // 100]
        extra = np.array([f"X_{i:010d}" for i in range(n // 100)], dtype=object)
        ids = np.concatenate([utt[keep], extra])
    elif case == "path":
        ids = paths[order]
    elif case == "stem":
        ids = np.array([f"/mnt/scratch/wav/{u}.wav" for u in utt[order]], dtype=object)
    else:
        raise SystemExit(f"unknown case {case!r}; known: {', '.join(CASES)}")
    scores = ScoreFile(path=f"{case}.csv", format="csv", ids=ids, scores=rng.normal(size=len(ids)))
    return table, scores


def run_case(case: str, n: int) -> dict:
    from sddkit.evaluation.compare import _common_trials
    from sddkit.evaluation.scores import match_scores

    table, scores = _inputs(case, n)
    rng = np.random.default_rng(1)
    files = []
    if case == "compare4":  # 4 runs: each file its own strings, in its own order
        for k in range(4):
            ids = np.array([f"E_{i:010d}" for i in rng.permutation(n)], dtype=object)
            files.append(dataclasses.replace(scores, path=f"run{k}.csv", ids=ids, scores=rng.normal(size=n)))
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets the peak resident memory to what is in use now
        reset = True
    except OSError:
        reset = False
    before = _rss_mb()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case == "compare4":
            aligned, _ = _common_trials(table, files)
            matched_by, matched = "utt_id", len(aligned.rows)
        else:
            match = match_scores(table, scores)
            matched_by, matched = match.matched_by, len(match.table)
    seconds = time.perf_counter() - start
    return {
        "case": case,
        "trials": n,
        "score_rows": len(scores),
        "matched_by": matched_by,
        "matched": matched,
        "seconds": round(seconds, 2),
        "rss_before_mb": round(before),
        "rss_peak_mb": round(_rss_mb()),
        "extra_mb": round(_rss_mb() - before),
        "peak_reset": reset,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a single case, in this process
    args = parser.parse_args()
    require_positive(parser, args, "trials")
    if args.one:
        print(json.dumps(run_case(args.one, args.trials)))
        return 0
    cases = args.cases.split(",")
    unknown = [case for case in cases if case not in CASES]
    if unknown:  # asked here: a case's own process said it on a stderr nobody read, under a CalledProcessError
        parser.error(f"--cases: unknown {', '.join(map(repr, unknown))}; known: {','.join(CASES)}")
    for case in cases:
        cmd = [sys.executable, __file__, "--trials", str(args.trials), "--one", case]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:  # its error, not a traceback of this process that hides it
            print(proc.stderr.rstrip(), file=sys.stderr)
            print(f"bench_match_scores: case {case} failed (exit status {proc.returncode})", file=sys.stderr)
            return 1
        print(proc.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
