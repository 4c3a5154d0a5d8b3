"""RawBoost's FIR length range is bounded when parsed (MAX_FIR_TAPS): a range of a million taps stalled training
at its first augmented item instead of being refused; the longest allowed still gives finite audio of the input's
length."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.rawboost import MAX_FIR_TAPS
from sddkit.errors import ConfigError

SR = 16000


@pytest.mark.parametrize("taps", [[10, 1_000_000], [10, MAX_FIR_TAPS + 1]])
def test_fir_lengths_beyond_the_limit_are_refused_when_parsed(taps):
    with pytest.raises(ConfigError, match=f"fir_taps.*<= {MAX_FIR_TAPS}"):
        AUGMENTATIONS.build({"name": "rawboost", "algo": 1, "fir_taps": taps})


@pytest.mark.parametrize("algo", [1, 5])
def test_the_longest_fir_allowed_gives_finite_audio(algo):
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    aug = AUGMENTATIONS.build(
        {"name": "rawboost", "algo": algo, "n_bands": 2, "fir_taps": [MAX_FIR_TAPS - 2, MAX_FIR_TAPS]}
    )
    y = aug(x, SR, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.any(y != x)
