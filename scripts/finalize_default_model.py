"""Calibrate a trained model directory on sddbench ``val``, set its threshold there, and install it.

    python scripts/finalize_default_model.py runs/default_model/final \
        [--out src/sddkit/assets/default_model] [--cache /work/cache/sddbench16k.npz]

1. scores every ``val`` file as ``sdd score`` does (``sddkit.load_detector``: windows, hop and
   aggregation of the model's ``inference`` section) and keeps the raw (uncalibrated) scores;
2. fits the logistic calibration ``llr = a * raw + b`` on them
   (``sddkit.scoring.calibration.fit_calibration``, prior 0.5);
3. sets the threshold at the val EER operating point of the calibrated scores (bona fide iff
   ``score >= threshold``), so errors on val are balanced between the two classes: halfway between the
   operating point, which is one val file's score, and the next lower val score, which makes the same val
   decisions with a margin (a threshold equal to a file's score flips that file's decision when another
   sddkit version scores it a few millionths lower);
4. records the val figures in ``metadata.val_calibrated`` (an earlier calibration's record moves to
   ``metadata.superseded_calibrations``, as ``sdd calibrate`` does).

Steps 2-4 and the writing are ``sdd calibrate``'s own (``sddkit.scoring.calibrate``: ``calibrated_config`` with
the threshold rule ``eer``, refusing a model folder replaced while it was scored (``scored_model``),
``record_calibration``, ``writable_target`` and ``store_calibrated``); what is this
script's is the sddbench ``val`` partition, the decode cache, step 1's batched scoring and the record it writes.

Nothing is written until steps 2-4 succeeded (a fit that fails leaves ``--out`` as it was; an ``--out`` that
cannot be written is refused before the scoring); then
``model.safetensors`` is copied to ``--out`` (the bundled default model by default) and ``config.json``
written there with the calibration, threshold and metadata, so the trained folder is left as it was (an
``--out`` equal to it is calibrated in place).

Only ``val`` is read: the test partitions play no part in calibration or threshold.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from sddkit.scoring.calibrate import (  # the steps of `sdd calibrate` (calibrate_on_protocol) after its scoring
    calibrated_config,
    count_classes,
    record_calibration,
    scored_model,
    store_calibrated,
    writable_target,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO.parent / "shared" / "data" / "sddbench" / "manifest.csv"
DEFAULT_OUT = REPO / "src" / "sddkit" / "assets" / "default_model"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "model", help="trained model directory (e.g. runs/default_model/final, what the bundled model is built from)"
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where to install the finished model directory")
    p.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="sddbench manifest.csv")
    p.add_argument("--cache", default=None, help="CachedWaveforms .npz of the manifest at 16 kHz (skips decoding)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    from sddkit.cli.options import require_positive

    require_positive(p, args, "threads")  # torch's RuntimeError (a traceback) otherwise
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from sddkit.audio.io import load_audio
    from sddkit.data.dataset import CachedWaveforms
    from sddkit.data.protocols import read_protocol
    from sddkit.scoring.api import load_detector

    model_dir = Path(args.model)
    table = read_protocol(args.manifest, partitions=["val"])
    labels = np.asarray(table.labels, dtype=np.int64)
    n_bona, n_spoof = count_classes(labels, f"{args.manifest} (partition val)")
    detector = load_detector(model_dir)
    scored = scored_model(model_dir)  # a folder that holds another model when the fit is stored is refused then
    # asked before the scoring: an --out that cannot be written is refused now, not after every val file is scored
    out, made = writable_target(model_dir, Path(args.out))
    sample_rate = detector.sample_rate  # score_many takes waveforms at the model's rate
    cache = CachedWaveforms.load(args.cache) if args.cache else None
    if cache is not None and cache.sample_rate != sample_rate:
        raise SystemExit(f"--cache {args.cache} holds {cache.sample_rate} Hz audio; the model scores {sample_rate} Hz")
    waves, paths = [], [str(path) for path in table.column("path")]
    for utt, path in zip(table.column("utt_id"), paths):
        x = cache.get(str(utt)) if cache is not None else None
        waves.append(np.asarray(x if x is not None else load_audio(path, sample_rate=sample_rate), dtype=np.float32))

    # batched, not file by file as sdd calibrate scores: the bundled model's calibration was fitted on these scores,
    # and a file's windows batched with another's score a few 1e-7 apart, so its rebuild would not be byte-identical.
    # Named by their files: an unscorable one (e.g. shorter than the model's minimum) is reported by its path
    raw = np.asarray([r.raw_score for r in detector.score_many(waves, names=paths)], dtype=np.float64)
    # fitted before anything is written: a fit that fails (a model too weak to calibrate) leaves --out as it was,
    # not holding the new weights uncalibrated
    config, inference, val = calibrated_config(model_dir, raw, labels, threshold="eer", prior=0.5, scored=scored)
    record = {
        "partition": "sddbench val",
        "n_bonafide": n_bona,
        "n_spoof": n_spoof,
        "eer_whole_files": float(val.eer),
        "threshold": "val EER operating point of the calibrated scores, halfway to the next lower val score",
    }
    # metadata is optional in a model config; an earlier calibration's record (sdd calibrate's) is superseded
    config["metadata"] = record_calibration(config.get("metadata"), "val_calibrated", record)
    store_calibrated(model_dir, out, config, made)
    cal = inference.calibration
    print(
        f"val EER {100 * val.eer:.2f}% (whole files, {len(labels)} files); calibration a={cal.a:.4f} b={cal.b:.4f}; "
        f"threshold {inference.threshold:.4f}; installed in {out}"
    )
    return 0


if __name__ == "__main__":
    from sddkit.errors import SddkitError

    try:
        raise SystemExit(main())
    except SddkitError as exc:  # e.g. a model too weak to calibrate: one line, not a traceback
        raise SystemExit(f"finalize_default_model: {exc}") from None
