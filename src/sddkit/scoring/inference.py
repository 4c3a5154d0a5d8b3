"""The ``inference`` section of a model directory's ``config.json``: how to score with the model.

    "inference": {
      "sample_rate": 16000,        # the model's input rate; audio is resampled to it
      "window_samples": 64600,     # fixed window the model sees (~4 s at 16 kHz, as AASIST)
      "hop_samples": 32300,        # step between windows of long inputs (default: half a window)
      "aggregation": "mean",       # how window scores make a file score (mean of window logits)
      "threshold": 0.0,            # decision threshold on the calibrated LLR (0 = Bayes at prior 0.5)
      "min_duration_s": 0.1,       # shorter inputs are refused, not scored (AudioTooShortError)
      "calibration": {"a": 1.0, "b": 0.0, "prior": null, "n_bonafide": 0, "n_spoof": 0}
    }

An empty or missing section means these defaults (an uncalibrated model). Unknown keys are an
error, like everywhere else in sddkit, so a typo never silently changes how a model scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sddkit.config import from_dict, to_dict
from sddkit.errors import CheckpointError, ConfigError
from sddkit.scoring.calibration import Calibration

Aggregation = Literal["mean", "median", "min", "max", "first"]


@dataclass
class InferenceConfig:
    """How a model directory is scored (see the module docstring for the JSON form).

    aggregation: ``mean`` averages window logits, so the file score is the mean window score
    (the default: robust, and what window-level training optimises); ``min`` flags a file as
    spoof as soon as one window looks spoofed (partially spoofed audio); ``max``/``median`` for
    completeness; ``first`` scores the first window only (the rest of the file is neither read into
    windows nor scored): the ASVspoof evaluation protocol of the AASIST and RawNet2 reference code, which
    scores the first 64,600 samples of each file, repeat-padded when shorter. ``min_duration_s``: inputs
    shorter than this are refused rather than scored, since
    repeat-padding a few milliseconds to a whole window makes a periodic buzz whose score says nothing
    about the file (the shortest real utterances of sddbench, spoken digits, last 0.16 s).
    """

    sample_rate: int = 16000
    window_samples: int = 64600
    hop_samples: int | None = None
    aggregation: Aggregation = "mean"
    threshold: float = 0.0
    calibration: Calibration = field(default_factory=Calibration)
    min_duration_s: float = 0.1

    def __post_init__(self):
        # finite, as the calibration's a and b are: an infinite threshold decides every input alike and breaks
        # strict JSON (the service's responses); an infinite minimum refuses every input
        if not self.min_duration_s >= 0:
            raise ValueError(f"min_duration_s must be >= 0, got {self.min_duration_s}")
        if not math.isfinite(self.min_duration_s):
            raise ValueError(f"min_duration_s must be finite, got {self.min_duration_s}")
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.window_samples <= 0:
            raise ValueError(f"window_samples must be positive, got {self.window_samples}")
        if self.hop_samples is None:
            self.hop_samples = max(1, self.window_samples // 2)
        if not 0 < self.hop_samples <= self.window_samples:
            raise ValueError(f"hop_samples must be in [1, window_samples], got {self.hop_samples}")

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def parse_inference(section: dict[str, Any] | None, where: str = "inference") -> InferenceConfig:
    """The (possibly empty) ``inference`` mapping of a model config -> InferenceConfig."""
    try:
        return from_dict(InferenceConfig, section or {}, where)
    except ConfigError as exc:
        raise CheckpointError(f"invalid inference section: {exc}") from None


def check_model_rate(inference: InferenceConfig, where: str) -> None:
    """Refuse settings that score at another rate than the model's front-end takes (16 kHz for all of them).

    Scored at 8 kHz, a 16 kHz model would be given every file resampled to 8 kHz and read it as 16 kHz
    audio: each band an octave off, and a score without a word of warning.
    """
    from sddkit.frontends import SAMPLE_RATE  # loaded with the model already

    if inference.sample_rate != SAMPLE_RATE:
        raise CheckpointError(
            f"{where}: inference.sample_rate is {inference.sample_rate} Hz, but the model's front-end takes "
            f"{SAMPLE_RATE} Hz audio (set it to {SAMPLE_RATE})"
        )


def read_inference(model_dir: str | Path) -> InferenceConfig:
    """The inference settings stored in ``model_dir/config.json``."""
    from sddkit.detectors.model_dir import read_model_config

    return parse_inference(read_model_config(model_dir).get("inference"), f"{Path(model_dir)}: inference")


def write_inference(model_dir: str | Path, inference: InferenceConfig | dict[str, Any]) -> InferenceConfig:
    """Replace the ``inference`` section of ``model_dir/config.json`` (atomically); weights are untouched."""
    import json

    from sddkit.detectors.model_dir import CONFIG_NAME, atomic_write_bytes, read_model_config

    model_dir = Path(model_dir)
    # an InferenceConfig is checked again too: its fields may have been set since it was made (a threshold of
    # inf, a slope of 0), and written unchecked they would leave a model directory that no longer loads
    cfg = parse_inference(inference.to_dict() if isinstance(inference, InferenceConfig) else inference)
    config = read_model_config(model_dir)
    config["inference"] = cfg.to_dict()
    atomic_write_bytes(model_dir / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    return cfg


def calibrate_model_dir(
    model_dir: str | Path, scores, labels, *, prior: float = 0.5, threshold: str = "keep"
) -> InferenceConfig:
    """Fit the calibration on raw validation ``scores``/``labels`` and store it in ``model_dir``.

    scores must be *raw* (uncalibrated) scores of this model, e.g. from
    ``ScoringDetector.score(...).raw_score``. Returns the updated inference settings.

    threshold: ``keep`` (default): the stored ``threshold`` is kept as it is, on the new LLR scale: 0 is the Bayes
    decision at prior 0.5, but a threshold chosen as an operating point of the old calibration (e.g. a val EER point)
    no longer is one and must be chosen again (``scripts/finalize_default_model.py`` sets it to the new val EER
    point); ``eer``, ``bayes``, ``far=RATE`` or ``frr=RATE`` set it as ``sdd calibrate --threshold`` does
    (:func:`sddkit.scoring.calibrate.operating_point`: the rates reached are recorded at ``operating_point``).

    As ``sdd calibrate``, records the calibration in force in ``metadata.calibrated`` (``fitted_by``, the counts,
    the prior, ``threshold_rule``); an earlier record (of ``sdd calibrate``, or the bundled model's
    ``val_calibrated``) describes a calibration the config no longer holds and moves to
    ``metadata.superseded_calibrations`` (:func:`sddkit.scoring.calibrate.record_calibration`). A training run that
    exports the same weights there again keeps it, as it keeps one of ``sdd calibrate``.
    """
    import json

    import numpy as np

    from sddkit.detectors.model_dir import CONFIG_NAME, atomic_write_bytes, read_model_config
    from sddkit.scoring.calibrate import parse_threshold_rule, record_calibration, rule_threshold
    from sddkit.scoring.calibration import fit_calibration

    rule, _ = parse_threshold_rule(threshold)  # before the folder is read: a misspelt rule writes nothing
    model_dir = Path(model_dir)
    config = read_model_config(model_dir)  # read once: the inference and metadata written back are this config's
    cfg = parse_inference(config.get("inference"), f"{model_dir}: inference")
    cfg.calibration = fit_calibration(scores, labels, prior=prior)
    cal = cfg.calibration
    llr = cal.apply(np.asarray(scores, dtype=np.float64).reshape(-1))
    cfg.threshold, point = rule_threshold(llr, labels, threshold, prior, cfg.threshold)
    config["inference"] = cfg.to_dict()
    record = {
        "fitted_by": "sddkit.scoring.calibrate_model_dir",
        "n_bonafide": cal.n_bonafide,
        "n_spoof": cal.n_spoof,
        "prior": cal.prior,
        "threshold_rule": rule,
    }
    if point is not None:
        record["operating_point"] = point.record()
    # before, the record of an earlier calibration stayed as the one in force, and a training run's next export of
    # the same weights (which keeps a calibration only where a record says one was fitted) dropped this one
    config["metadata"] = record_calibration(config.get("metadata"), "calibrated", record)
    atomic_write_bytes(model_dir / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    return cfg
