"""Scoring: calibration, ``load_detector`` (the Python API), batch scoring and ONNX export."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sddkit.scoring.api import ScoreResult, ScoringDetector, load_detector
    from sddkit.scoring.calibration import Calibration, fit_calibration
    from sddkit.scoring.inference import InferenceConfig, calibrate_model_dir, read_inference, write_inference

# name -> module; imported on first use, so that importing a light submodule (the allocator, for the CLI's
# parsers) does not load torch
_EXPORTS = {
    "ScoreResult": "api",
    "ScoringDetector": "api",
    "load_detector": "api",
    "Calibration": "calibration",
    "fit_calibration": "calibration",
    "InferenceConfig": "inference",
    "calibrate_model_dir": "inference",
    "read_inference": "inference",
    "write_inference": "inference",
}


def __dir__() -> list[str]:
    # the lazy names too (tab completion), without importing their modules
    return sorted(set(globals()) | set(_EXPORTS))


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sddkit.scoring' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sddkit.scoring.{module}"), name)


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
