"""Scoring: calibration, ``load_detector`` (the Python API), batch scoring and ONNX export."""

from sddkit.scoring.api import ScoreResult, ScoringDetector, load_detector
from sddkit.scoring.calibration import Calibration, fit_calibration
from sddkit.scoring.inference import InferenceConfig, calibrate_model_dir, read_inference, write_inference

__all__ = [
    "Calibration",
    "InferenceConfig",
    "ScoreResult",
    "ScoringDetector",
    "calibrate_model_dir",
    "fit_calibration",
    "load_detector",
    "read_inference",
    "write_inference",
]
