"""Registers SpecAugment time/frequency masking (:mod:`sddkit.features.specaugment`) as the feature-domain
augmentation ``spec_augment``:

    aug = AUGMENTATIONS.build({"name": "spec_augment", "freq_width": [0, 15]})
    feats = aug(feats, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from sddkit.augment import AUGMENTATIONS
from sddkit.features.specaugment import SpecAugment, SpecAugmentConfig

__all__ = ["SpecAugment", "SpecAugmentConfig", "build_spec_augment"]


@AUGMENTATIONS.register("spec_augment", config=SpecAugmentConfig)
def build_spec_augment(cfg: SpecAugmentConfig, **_: object) -> SpecAugment:
    """SpecAugment time/frequency masking on (B, F, T) torch features (feature domain)."""
    return SpecAugment(cfg)
