"""Review 5 of the waveform augmentations: band edges beyond Nyquist, non-finite input."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment.dsp import band_pass
from sddkit.augment.filters import band_limit
from sddkit.augment.pipeline import build_augmentation


def _noise(n: int = 8000) -> np.ndarray:
    return np.random.default_rng(3).standard_normal(n).astype(np.float32)


@pytest.mark.parametrize(
    ("kind", "low", "high"),
    [
        ("highpass", 5000.0, 0.0),  # the pass band starts above Nyquist (4 kHz)
        ("bandpass", 4500.0, 6000.0),  # the whole pass band lies above Nyquist
        ("lowpass", 0.0, 0.0),  # a low-pass at 0 Hz
        ("bandstop", 0.0, 5000.0),  # the stop band covers 0 Hz .. Nyquist
    ],
)
def test_a_band_that_passes_nothing_below_nyquist_gives_silence(kind, low, high):
    # before: the out-of-range edge was "left open", so a 5 kHz high-pass at 8 kHz returned the input unchanged
    # (while a 3.9 kHz one removed nearly everything)
    y = band_limit(_noise(), 8000, kind, low, high, order=4)
    assert y.shape == (8000,)
    assert not np.any(y)


def test_open_edges_still_pass_everything_and_high_pass_just_below_nyquist_still_filters():
    x = _noise()
    np.testing.assert_array_equal(band_pass(x, 8000, 0.0, np.inf), x)  # 0..inf: no-op
    np.testing.assert_array_equal(band_limit(x, 8000, "lowpass", 0.0, 9000.0), x)  # 9 kHz low-pass at 8 kHz
    np.testing.assert_array_equal(band_limit(x, 8000, "bandstop", 4500.0, 6000.0), x)  # stop band above Nyquist
    y = band_limit(x, 8000, "highpass", 3900.0, 0.0)
    assert 0.0 < np.std(y) < 0.3 * np.std(x)


def test_band_filter_config_drawing_above_nyquist_is_consistent_with_just_below():
    aug = build_augmentation({"name": "band_filter", "kind": "highpass", "low_hz": [3000.0, 5000.0]})
    x = _noise()
    for seed in range(8):
        y = aug(x, 8000, seed)
        assert np.std(y) < 0.75 * np.std(x)  # before: about one draw in two returned x itself (std ratio 1)


def test_non_finite_input_is_named_as_the_input_fault():
    x = np.full(1000, 0.1, dtype=np.float32)
    x[5] = np.nan
    x[7] = np.inf
    for spec in ({"name": "gain"}, {"name": "rawboost"}, {"name": "noise"}):
        # before: RuntimeError "Gain produced non-finite samples", blaming the augmentation
        with pytest.raises(ValueError, match="2 non-finite"):
            build_augmentation(spec)(x, 16000, 0)


def test_skipped_augmentation_still_passes_input_through_untouched():
    x = np.full(100, 0.1, dtype=np.float32)
    x[3] = np.nan
    y = build_augmentation({"name": "gain", "p": 0.0})(x, 16000, 0)
    assert np.isnan(y[3]) and y.dtype == np.float32
