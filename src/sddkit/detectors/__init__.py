"""Detectors (front-end + back-end) and mixtures of detectors."""

from sddkit.detectors.detector import Detector, DetectorConfig, build_detector
from sddkit.detectors.outputs import BackendOutput, DetectorOutput, FrontendOutput
from sddkit.registry import Registry

GATES = Registry("gate")

__all__ = [
    "GATES",
    "BackendOutput",
    "Detector",
    "DetectorConfig",
    "DetectorOutput",
    "FrontendOutput",
    "build_detector",
]

from sddkit.detectors import gates  # noqa: E402,F401  (registers the gates)
from sddkit.detectors.mixture import DetectorMixture, MixtureConfig, build_mixture  # noqa: E402

__all__ += ["DetectorMixture", "MixtureConfig", "build_mixture"]
