"""Waveform and feature augmentations, usable in training and as robustness test conditions."""

from sddkit.registry import Registry

AUGMENTATIONS = Registry("augmentation")

__all__ = ["AUGMENTATIONS"]
