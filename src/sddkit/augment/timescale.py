"""Time stretching (WSOLA) and pitch shifting (WSOLA stretch + resampling), keeping ``T`` samples.

WSOLA (waveform-similarity overlap-add, Verhelst & Roelands 1993) copies whole windowed
segments of the input and only chooses *where* to take each one from (within +-10 ms of
its nominal position) so that it continues the previous segment's waveform. Unlike a phase
vocoder it invents no phases, so it adds no phasiness: the local waveform shape of the
speech — what a deepfake detector looks at — stays that of the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import signal

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import Augmentation, Range, check_probability, check_range, fit_length, uniform
from sddkit.augment.dsp import resample

_FRAME_SECONDS = 0.032  # analysis window: ~3 pitch periods of a low voice
_TOLERANCE_SECONDS = 0.010  # search range around the nominal position


def wsola(x: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """Time-stretch ``x`` by ``rate`` (>1 faster/shorter, <1 slower/longer) at constant pitch.

    x: (T,) -> (round(T / rate),) float32, start-aligned with the input.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    n_out = int(round(len(x) / rate))
    if abs(rate - 1.0) < 1e-9:
        return x.astype(np.float32, copy=True)
    n = max(2 * int(_FRAME_SECONDS * sr / 2), 4)
    hs = n // 2
    delta = int(_TOLERANCE_SECONDS * sr)
    ha = hs * rate
    win = signal.windows.hann(n, sym=False)  # periodic: overlaps at 50% sum to exactly 1
    n_frames = int(np.ceil(n_out / hs)) + 2
    pad_front = n // 2 + delta
    last_start = int(round((n_frames - 1) * ha)) + 2 * delta + n + hs
    xp = np.zeros(pad_front + max(len(x), last_start) + n, dtype=np.float64)
    xp[pad_front : pad_front + len(x)] = x
    yp = np.zeros(n_frames * hs + n, dtype=np.float64)
    prev = None
    for k in range(n_frames):
        # frame k is nominally centred on input time k*ha, i.e. starts at xp index delta + k*ha
        nominal = delta + int(round(k * ha))
        if prev is None:
            start = nominal
        else:
            ref = xp[prev + hs : prev + hs + n]  # the natural continuation of the previous frame
            region = xp[nominal - delta : nominal + delta + n]
            # normalised by each candidate's energy (a cross-correlation coefficient): the raw product favoured
            # louder candidates, i.e. later ones at an onset, which put every onset after a pause up to delta early
            # (9-10 ms, even at rates near 1)
            score = np.correlate(region, ref, mode="valid") / _window_norms(region, n)
            # of equal scores the one nearest the nominal position: after silence every score is 0, and
            # argmax's first (earliest) offset put each onset up to delta/rate late
            best = np.flatnonzero(np.isclose(score, score.max(), rtol=1e-9, atol=1e-12))
            start = nominal - delta + int(best[np.argmin(np.abs(best - delta))])
        yp[k * hs : k * hs + n] += win * xp[start : start + n]
        prev = start
    return yp[n // 2 : n // 2 + n_out].astype(np.float32)


def _window_norms(region: np.ndarray, n: int) -> np.ndarray:
    """The L2 norm of every length-``n`` window of ``region`` ((len(region) - n + 1,)), floored so that silent
    windows (score 0) stay 0 rather than dividing by rounding noise."""
    power = np.concatenate([[0.0], np.cumsum(region * region)])
    energy = power[n:] - power[:-n]
    return np.sqrt(np.maximum(energy, 1e-12 * power[-1] + 1e-30))


def time_stretch(x: np.ndarray, sr: int, rate: float, fill: Literal["zeros", "loop"] = "zeros") -> np.ndarray:
    """WSOLA stretch, then back to ``T`` samples: crop the end (rate < 1) or fill it (rate > 1)
    with silence or by looping the stretched signal. (T,) -> (T,)."""
    y = wsola(x, sr, rate)
    if len(y) >= len(x) or fill == "zeros" or len(y) == 0:
        return fit_length(y, len(x))
    return np.tile(y, int(np.ceil(len(x) / len(y))))[: len(x)]


def pitch_shift(x: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift the pitch by ``semitones`` keeping the duration: stretch the time axis by
    ``r = 2**(semitones/12)`` (WSOLA), then resample by ``1/r`` (which scales every frequency by r).
    (T,) -> (T,)."""
    if semitones == 0.0:
        return x.astype(np.float32, copy=True)
    r = 2.0 ** (semitones / 12.0)
    stretched = wsola(x, sr, 1.0 / r)
    return fit_length(resample(stretched, sr * r, sr), len(x))


@dataclass
class TimeStretchConfig:
    """rate: speed factor range (>1 faster); fill: how the freed end of a sped-up clip is filled
    (silence or looping); p: probability. The output always has the input's length."""

    rate: Range = (0.9, 1.1)
    fill: Literal["zeros", "loop"] = "zeros"
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("rate", self.rate, lo=0.25, hi=4.0)
        check_probability(self.p)


class TimeStretch(Augmentation):
    """Change the speaking rate without changing the pitch (WSOLA)."""

    cfg: TimeStretchConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return time_stretch(x, sr, uniform(rng, self.cfg.rate), self.cfg.fill)

    def apply_whole(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        """The whole stretched utterance, (round(T / rate),), before ``fill`` or a crop: the same rate draw."""
        return wsola(x, sr, uniform(rng, self.cfg.rate))


@dataclass
class PitchShiftConfig:
    """semitones: pitch shift range (+12 = one octave up); p: probability."""

    semitones: Range = (-2.0, 2.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("semitones", self.semitones, lo=-12.0, hi=12.0)
        check_probability(self.p)


class PitchShift(Augmentation):
    """Change the pitch (and formants) without changing the duration."""

    cfg: PitchShiftConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return pitch_shift(x, sr, uniform(rng, self.cfg.semitones))


@AUGMENTATIONS.register("time_stretch", config=TimeStretchConfig)
def build_time_stretch(cfg: TimeStretchConfig, **_: object) -> TimeStretch:
    """Speed change at constant pitch (WSOLA), output cropped/filled to the input length."""
    return TimeStretch(cfg)


@AUGMENTATIONS.register("pitch_shift", config=PitchShiftConfig)
def build_pitch_shift(cfg: PitchShiftConfig, **_: object) -> PitchShift:
    """Pitch shift in semitones at constant duration (WSOLA stretch + resampling)."""
    return PitchShift(cfg)
