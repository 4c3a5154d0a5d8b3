"""Review 26 of the spectral features and front-ends: SpecAugment's time-mask cap, the lfb config's export."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from sddkit.features.specaugment import SpecAugment, SpecAugmentConfig


def _widest_time_mask(fraction: float, frames: int, draws: int = 4) -> int:
    """The widest time mask SpecAugment draws on ``frames`` frames: every draw is as wide as the cap allows."""
    cfg = SpecAugmentConfig(
        freq_width=(0, 0), time_width=(frames, frames), num_freq_masks=0, num_time_masks=1, max_time_fraction=fraction
    )
    out = SpecAugment(cfg)(torch.ones(draws, 2, frames), generator=torch.Generator().manual_seed(0))
    return int((out[:, 0] == 0).sum(dim=-1).max())


@pytest.mark.parametrize(("fraction", "frames"), [(0.29, 100), (0.57, 100), (0.58, 50), (0.7, 90), (0.35, 180)])
def test_a_time_mask_reaches_the_fraction_of_frames_asked_for(fraction: float, frames: int) -> None:
    # the float product falls just short of a whole number here (0.29 * 100 = 28.999999999999996): int() capped the
    # masks one frame below max_time_fraction * frames
    expected = int(Fraction(str(fraction)) * frames)
    assert _widest_time_mask(fraction, frames) == expected


def test_the_lfb_front_end_config_is_exported_like_its_siblings() -> None:
    import sddkit.frontends.spectral as spectral

    names = {"LogMelFrontendConfig", "LogSpecFrontendConfig", "LFCCFrontendConfig", "LogLinearFilterbankFrontendConfig"}
    assert names <= set(spectral.__all__)
    namespace: dict[str, object] = {}
    exec("from sddkit.frontends.spectral import *", namespace)
    assert namespace["LogLinearFilterbankFrontendConfig"] is spectral.LogLinearFilterbankFrontendConfig
