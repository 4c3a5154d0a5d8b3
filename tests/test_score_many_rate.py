"""``score_many(..., sample_rate=)``: waveforms at another rate than the model's are resampled as score() does."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

import sddkit
from sddkit.errors import SilentAudioError, UnsupportedSampleRateError


@pytest.fixture(scope="module")
def detector():
    return sddkit.load_detector()  # the bundled model (16 kHz)


def _speechlike(rate: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    return (
        0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.size)
    ).astype(np.float32)


def test_score_many_at_another_rate_equals_score(detector):
    xs = [_speechlike(44100, 2.5, 0), _speechlike(44100, 4.5, 1)]
    many = detector.score_many(xs, sample_rate=44100)
    one = [detector.score(x, 44100) for x in xs]
    assert [r.score for r in many] == pytest.approx([r.score for r in one], abs=1e-5)
    # without the rate the 44.1 kHz samples were read as 16 kHz ones: another (slowed-down) recording
    assert detector.score_many(xs)[0].score != pytest.approx(many[0].score, abs=1e-3)
    # at the model's rate the argument changes nothing
    at16 = [soxr.resample(x, 44100, 16000).astype(np.float32) for x in xs]
    assert [r.score for r in detector.score_many(at16, sample_rate=16000)] == [
        r.score for r in detector.score_many(at16)
    ]


def test_score_many_names_the_input_whose_rate_conversion_fails(detector):
    xs = [_speechlike(22050, 2.0, 0), np.zeros(44100, dtype=np.float32)]
    with pytest.raises(SilentAudioError, match=r"^b: .*silen"):
        detector.score_many(xs, names=["a", "b"], sample_rate=22050)
    with pytest.raises(UnsupportedSampleRateError, match=r"^waveforms\[0\]: sample_rate"):
        detector.score_many(xs, sample_rate=2**31)
