"""Named robustness conditions: every one builds, runs, and is deterministic under its seed."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.augment.conditions import (
    CONDITIONS,
    apply_condition,
    build_condition,
    condition_names,
    condition_spec,
    keeps_length,
)
from sddkit.augment.dsp import colored_noise
from sddkit.errors import UnknownNameError

SR = 16000
# Conditions with a random element left after fixing their parameters (noise, RIRs, preset draws).
PRESETS = {"rerecord", "car_cabin", "launder_chain"}
SEEDED = {n for n in CONDITIONS if n.startswith(("noise_", "reverb_")) or n in PRESETS}


def signal(seconds: float = 0.75) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    x = np.sin(2 * np.pi * (150 * t + 200 * t**2)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.4 * x + 0.02 * colored_noise(len(t), 1.0, np.random.default_rng(0))).astype(np.float32)


def test_required_conditions_exist():
    required = {
        "clean",
        "mp3_64k",
        "aac_32k",
        "opus_16k",
        "amrnb",
        "g722",
        "mulaw",
        "narrowband_8k",
        "noise_white_10db",
        "noise_pink_5db",
        "reverb_rt60_0.5",
        "rerecord",
        "car_cabin",
        "launder_chain",
        "pitch_+2",
        "stretch_1.1",
    }
    assert required <= set(condition_names())
    assert condition_names()[0] == "clean"


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_condition_runs_and_is_deterministic(name):
    x = signal()
    y = apply_condition(name, x, SR, seed=0)
    # a time stretch gives the whole stretched signal (before, it was cut or zero-padded back to the input's length)
    length = len(x) if keeps_length(name) else round(len(x) / CONDITIONS[name]["rate"][0])
    assert y.shape == (length,) and y.dtype == np.float32 and np.isfinite(y).all()
    np.testing.assert_array_equal(y, apply_condition(name, x, SR, seed=0))
    if name == "clean":
        np.testing.assert_array_equal(y, x)
    else:
        assert not np.array_equal(y, x)
    if name in SEEDED:
        assert not np.array_equal(y, apply_condition(name, x, SR, seed=1))


def test_condition_parameters_are_fixed():
    # Every range in a condition is collapsed to a point, so only the seed adds randomness.
    for name in CONDITIONS:
        for key, value in condition_spec(name).items():
            if isinstance(value, list) and len(value) == 2 and key != "sample_rates":
                assert value[0] == value[1], (name, key)
    assert build_condition("mp3_64k") is build_condition("mp3_64k")  # cached


def test_noise_condition_hits_its_snr():
    x = signal(1.0)
    y = apply_condition("noise_pink_5db", x, SR, seed=3)
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2))
    assert abs(snr - 5.0) < 0.5


def test_unknown_condition():
    with pytest.raises(UnknownNameError, match="unknown condition 'mp3_1k'"):
        apply_condition("mp3_1k", signal(), SR)
    spec = condition_spec("mp3_64k")
    spec["bitrate_kbps"][0] = 1.0  # a copy: the registry of conditions is not mutated
    assert CONDITIONS["mp3_64k"]["bitrate_kbps"] == [64, 64]


@pytest.mark.parametrize(("name", "db"), [("gain_-10db", -10.0), ("gain_-20db", -20.0), ("gain_-30db", -30.0)])
def test_gain_conditions_attenuate_and_change_nothing_else(name, db):
    x = signal()
    np.testing.assert_allclose(apply_condition(name, x, SR, seed=5), x * 10 ** (db / 20), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "bands",
    [
        {"speaker_low_hz": [2000, 5000], "speaker_high_hz": [4000, 7500]},
        {"mic_low_hz": [3000, 7000], "mic_high_hz": [6000, 7800]},
    ],
)
def test_rerecord_band_edges_that_can_cross_are_refused_when_built(bands):
    # accepted, then a draw with the low edge above the high one stopped training mid-epoch in a loader worker
    from sddkit.augment.pipeline import AugmentationPipeline
    from sddkit.errors import ConfigError

    with pytest.raises(ConfigError, match="overlap: every low edge must lie below every high edge"):
        AugmentationPipeline([{"name": "rerecord", **bands}])
    AugmentationPipeline([{"name": "rerecord"}])  # the defaults are fine


def test_keep_length_false_gives_the_whole_stretch_with_the_same_draws_and_checks():
    """``Augmentation.__call__(..., keep_length=False)``: a time stretch returns the whole WSOLA output that its
    length-keeping call crops (same gate and rate draws, so the kept part is its prefix); an augmentation that keeps
    the duration returns what it always does; the input checks (non-finite samples) still apply."""
    from sddkit.augment.pipeline import build_augmentation
    from sddkit.augment.timescale import wsola

    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    slow = build_augmentation({"name": "time_stretch", "rate": [0.8, 0.8]})
    whole = slow(x, 16000, 5, keep_length=False)
    assert whole.shape == (10000,) and np.array_equal(whole, wsola(x, 16000, 0.8))
    assert np.array_equal(slow(x, 16000, 5), whole[: len(x)])
    noise = build_augmentation({"name": "noise", "snr_db": [10, 10]})
    assert np.array_equal(noise(x, 16000, 7, keep_length=False), noise(x, 16000, 7))
    bad = x.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        slow(bad, 16000, 5, keep_length=False)
