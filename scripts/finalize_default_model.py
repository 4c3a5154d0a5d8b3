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

Nothing is written until steps 2-4 succeeded (a fit that fails leaves ``--out`` as it was); then
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

from sddkit.scoring.calibrate import (  # as `sdd calibrate` sets, records and writes
    margin_threshold,
    record_calibration,
    write_with_config,
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
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from sddkit.audio.io import load_audio
    from sddkit.data.dataset import CachedWaveforms
    from sddkit.data.protocols import read_protocol
    from sddkit.detectors.model_dir import (
        read_model_config,
    )
    from sddkit.metrics.det import eer
    from sddkit.scoring.api import load_detector
    from sddkit.scoring.calibration import fit_calibration
    from sddkit.scoring.inference import read_inference

    model_dir = Path(args.model)
    table = read_protocol(args.manifest, partitions=["val"])
    labels = np.asarray(table.labels, dtype=np.int64)
    detector = load_detector(model_dir)
    sample_rate = detector.sample_rate  # score_many takes waveforms at the model's rate
    cache = CachedWaveforms.load(args.cache) if args.cache else None
    if cache is not None and cache.sample_rate != sample_rate:
        raise SystemExit(f"--cache {args.cache} holds {cache.sample_rate} Hz audio; the model scores {sample_rate} Hz")
    waves, paths = [], [str(path) for path in table.column("path")]
    for utt, path in zip(table.column("utt_id"), paths):
        x = cache.get(str(utt)) if cache is not None else None
        waves.append(np.asarray(x if x is not None else load_audio(path, sample_rate=sample_rate), dtype=np.float32))

    # named by their files: an unscorable one (e.g. shorter than the model's minimum) is reported by its path
    raw = np.asarray([r.raw_score for r in detector.score_many(waves, names=paths)], dtype=np.float64)
    # fitted before anything is written: a fit that fails (one class in val, a model too weak to calibrate) leaves
    # --out as it was, not holding the new weights uncalibrated
    inference = read_inference(model_dir)
    inference.calibration = fit_calibration(raw, labels, prior=0.5)
    llr = inference.calibration.apply(raw)
    val = eer(labels, llr)
    inference.threshold = margin_threshold(llr, val.threshold)
    config = read_model_config(model_dir)
    config["inference"] = inference.to_dict()
    record = {
        "partition": "sddbench val",
        "n_bonafide": int((labels == 1).sum()),
        "n_spoof": int((labels == 0).sum()),
        "eer_whole_files": float(val.eer),
        "threshold": "val EER operating point of the calibrated scores, halfway to the next lower val score",
    }
    # metadata is optional in a model config; an earlier calibration's record (sdd calibrate's) is superseded
    config["metadata"] = record_calibration(config.get("metadata"), "val_calibrated", record)

    out = Path(args.out)
    write_with_config(model_dir, out, config)
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
