"""Channel-like degradations without memory of the signal's content: resampling, band limits, gain, clipping."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sddkit.augment import AUGMENTATIONS
from sddkit.augment.base import LEVEL_DB_LIMITS, Augmentation, Range, check_probability, check_range, power, uniform
from sddkit.augment.dsp import FilterKind, ResampleQuality, band_pass, butter_filter, resample_roundtrip

# The lowest intermediate rate of ``resample``: 1 kHz keeps the band below 500 Hz, already well below any telephone
# channel; a lower rate is a rate written in kHz.
MIN_RESAMPLE_RATE = 1000


@dataclass
class ResampleConfig:
    """sample_rates: intermediate rates in Hz (at least 1000) to pick from (uniformly); quality: soxr quality ("QQ"
    is a quick, aliasing-prone resampler, "VHQ" the best); p: probability. Down to the chosen rate and back up."""

    sample_rates: list[int] = field(default_factory=lambda: [8000, 11025, 12000])
    quality: ResampleQuality = "HQ"
    p: float = 1.0

    def __post_init__(self) -> None:
        if not self.sample_rates:
            raise ValueError("sample_rates must name at least one intermediate rate in Hz, e.g. [8000, 11025]")
        # before: any positive rate passed, so rates written in kHz ([8]) round-tripped the clip through 8 Hz: what
        # was left (below 4 Hz, near silence) became the training input, without a word
        low = [r for r in self.sample_rates if r < MIN_RESAMPLE_RATE]
        if low:
            raise ValueError(
                f"sample_rates are in Hz and must be >= {MIN_RESAMPLE_RATE} (a round trip through {low[0]} Hz leaves "
                f"only the band below {low[0] / 2:g} Hz), got {self.sample_rates}"
            )
        check_probability(self.p)


class Resample(Augmentation):
    """Down-sample to a random intermediate rate and back: removes the band above half that rate."""

    cfg: ResampleConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        mid = self.cfg.sample_rates[int(rng.integers(len(self.cfg.sample_rates)))]
        return resample_roundtrip(x, sr, mid, self.cfg.quality)


@dataclass
class BandFilterConfig:
    """kind: lowpass / highpass / bandpass / bandstop Butterworth (zero-phase, so time-aligned);
    low_hz: range of the lower cut-off (highpass, bandpass, bandstop); high_hz: range of the upper
    cut-off (lowpass, bandpass, bandstop); each cut-off is a -3 dB point of the applied response;
    order: filter order per pass (applied forward and backward, so the slope is 2 x order x 6
    dB/octave); p: probability."""

    kind: FilterKind = "bandpass"
    low_hz: Range = (100.0, 400.0)
    high_hz: Range = (3000.0, 7000.0)
    order: int = 4
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("low_hz", self.low_hz, lo=0.0)
        check_range("high_hz", self.high_hz, lo=0.0)
        if self.kind in ("bandpass", "bandstop") and self.low_hz[1] >= self.high_hz[0]:
            raise ValueError(f"{self.kind}: low_hz {self.low_hz} must lie below high_hz {self.high_hz}")
        if not 1 <= self.order <= 12:
            raise ValueError(f"order must be in [1, 12], got {self.order}")
        check_probability(self.p)


def band_limit(x: np.ndarray, sr: int, kind: FilterKind, low_hz: float, high_hz: float, order: int = 4) -> np.ndarray:
    """Apply a zero-phase Butterworth of ``kind`` with the relevant cut-off(s). (T,) -> (T,).

    Cut-offs at or beyond Nyquist leave that edge open (a 9 kHz low-pass at 16 kHz passes
    everything), so one config works at any sample rate; a band that passes no frequency below
    Nyquist (a 9 kHz high-pass at 16 kHz, a band-stop from 0 Hz to Nyquist) gives silence.
    """
    if kind == "lowpass":
        return band_pass(x, sr, 0.0, high_hz, order)
    if kind == "highpass":
        return band_pass(x, sr, low_hz, np.inf, order)
    if kind == "bandpass":
        return band_pass(x, sr, low_hz, high_hz, order)
    nyq = sr / 2.0
    if low_hz <= 0.0 and high_hz >= nyq:  # the stop band covers every frequency: nothing is left
        return np.zeros_like(x)
    if 0.0 < low_hz < nyq and 0.0 < high_hz < nyq:
        return butter_filter(x, sr, "bandstop", (low_hz, high_hz), order)
    if 0.0 < low_hz < nyq:  # the stop band reaches Nyquist: a low-pass at its lower edge
        return butter_filter(x, sr, "lowpass", (low_hz,), order)
    if 0.0 < high_hz < nyq:  # the stop band starts at DC: a high-pass at its upper edge
        return butter_filter(x, sr, "highpass", (high_hz,), order)
    return x


class BandFilter(Augmentation):
    """Low-, high-, band-pass or band-stop Butterworth filtering with random cut-offs."""

    cfg: BandFilterConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        low = uniform(rng, self.cfg.low_hz)
        high = uniform(rng, self.cfg.high_hz)
        return band_limit(x, sr, self.cfg.kind, low, high, self.cfg.order)


@dataclass
class GainConfig:
    """gain_db: range of the gain in dB; p: probability. No clipping (see ``clipping``)."""

    gain_db: Range = (-12.0, 6.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("gain_db", self.gain_db, *LEVEL_DB_LIMITS)
        check_probability(self.p)


class Gain(Augmentation):
    """Multiply by a random gain in dB."""

    cfg: GainConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return x * np.float32(10.0 ** (uniform(rng, self.cfg.gain_db) / 20.0))


@dataclass
class ClippingConfig:
    """threshold_db: range of the clipping level in dB relative to the signal's peak (-6 = clip at half
    the peak); soft: tanh saturation (knee at the threshold, never exceeding it) instead of hard
    clipping; p: probability."""

    threshold_db: Range = (-20.0, -3.0)
    soft: bool = False
    p: float = 1.0

    def __post_init__(self) -> None:
        check_range("threshold_db", self.threshold_db, lo=LEVEL_DB_LIMITS[0], hi=0.0)
        check_probability(self.p)


def clip(x: np.ndarray, threshold: float, soft: bool = False) -> np.ndarray:
    """Clip ``x`` to ``[-threshold, threshold]``; soft: ``threshold * tanh(x / threshold)``. (T,) -> (T,)."""
    if threshold <= 0:
        return np.zeros_like(x)
    if soft:
        return threshold * np.tanh(x / threshold)
    return np.clip(x, -threshold, threshold)


class Clipping(Augmentation):
    """Hard or soft clipping at a random level below the peak (over-driven recording)."""

    cfg: ClippingConfig

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        rel_db = uniform(rng, self.cfg.threshold_db)
        if power(x) == 0.0:
            return x.copy()
        peak = float(np.max(np.abs(x)))
        return clip(x, peak * 10.0 ** (rel_db / 20.0), self.cfg.soft)


@AUGMENTATIONS.register("resample", config=ResampleConfig)
def build_resample(cfg: ResampleConfig, **_: object) -> Resample:
    """Resample down to a random rate (e.g. 8 kHz) and back up: removes the upper band."""
    return Resample(cfg)


@AUGMENTATIONS.register("band_filter", config=BandFilterConfig)
def build_band_filter(cfg: BandFilterConfig, **_: object) -> BandFilter:
    """Zero-phase Butterworth low/high/band-pass or band-stop with random cut-offs."""
    return BandFilter(cfg)


@AUGMENTATIONS.register("gain", config=GainConfig)
def build_gain(cfg: GainConfig, **_: object) -> Gain:
    """Random gain in dB."""
    return Gain(cfg)


@AUGMENTATIONS.register("clipping", config=ClippingConfig)
def build_clipping(cfg: ClippingConfig, **_: object) -> Clipping:
    """Hard or soft clipping at a random level relative to the peak."""
    return Clipping(cfg)
