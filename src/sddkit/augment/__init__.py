"""Waveform and feature augmentations, usable in training and as robustness test conditions."""

from sddkit.registry import Registry

AUGMENTATIONS = Registry("augmentation")

__all__ = ["AUGMENTATIONS"]

# Importing the modules registers their entries (the registry above must exist first).
from sddkit.augment import (  # noqa: E402
    chains,  # noqa: F401
    codecs,  # noqa: F401
    filters,  # noqa: F401
    noise,  # noqa: F401
    pipeline,  # noqa: F401
    rawboost,  # noqa: F401
    reverb,  # noqa: F401
    specaugment,  # noqa: F401
    timescale,  # noqa: F401
)
