"""The augmentation contract, its base class, and small helpers shared by every augmentation.

An augmentation is a picklable object ``aug(x, sr, rng) -> y`` with

* ``x``: (T,) float32 mono waveform at ``sr`` Hz (16 kHz in sddkit; a positive whole number, else a ValueError),
* ``y``: (T,) float32, the same length and sample rate, finite,
* ``rng``: a ``np.random.Generator``; every random choice is drawn from it, so the output
  is a pure function of ``(x, sr, rng state)``. Except for ``compose`` (and so the pipeline):
  it spawns its children from ``rng``'s SeedSequence, so its output depends on that seed
  sequence and how many children it already spawned, not on the state alone. Pass generators
  from ``np.random.default_rng(seed)``, not ``jumped()`` ones (whose seed sequence is fresh OS
  entropy) or restored states.

Each one is registered in ``AUGMENTATIONS`` with a typed config dataclass whose random
parameters are ``(low, high)`` ranges sampled uniformly with ``rng``, plus a probability
``p`` of being applied at all. Feature-domain augmentations (SpecAugment) set
``domain = "features"`` and follow their own call signature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sddkit.config import check_probability, check_range  # noqa: F401  (re-exported: augmentations use them)

Range = tuple[float, float]

# Silence has no level to match an SNR or RMS against; treat anything quieter than this
# power (-100 dBFS) as silent so divisions stay finite.
SILENCE_POWER = 1e-10

# The (low, high) bounds of every SNR range (additive noise of any kind, RawBoost's SSI noise) and of every
# direct-to-reverberant ratio range, in dB. Beyond them the level factors 10 ** (dB / 20) overflow float32 (an SNR
# of -1000 dB) or float64 (a DRR of -8000 dB), and a config that asked for them stopped training at its first item
# with "<augmentation> produced non-finite samples" (or an OverflowError) instead of being refused when parsed.
SNR_DB_LIMITS = (-30.0, 100.0)
DRR_DB_LIMITS = (-40.0, 60.0)
# The bounds of other levels in dB: a gain, a clipping threshold, a filter's gain, an engine's level relative to the
# road noise.
LEVEL_DB_LIMITS = (-120.0, 60.0)


@dataclass
class ProbabilityConfig:
    """The config of augmentations whose only parameter is ``p``, the probability of applying them."""

    p: float = 1.0

    def __post_init__(self) -> None:
        check_probability(self.p)


def uniform(rng: np.random.Generator, value: Sequence[float]) -> float:
    """One draw from a ``(low, high)`` range. Always consumes one number, even when low == high,
    so the random stream (and thus every later draw) does not depend on whether a range is fixed."""
    lo, hi = float(value[0]), float(value[1])
    u = float(rng.random())
    return lo + (hi - lo) * u


def uniform_int(rng: np.random.Generator, value: Sequence[float]) -> int:
    """An integer uniformly drawn from the inclusive range ``[low, high]`` (one draw)."""
    lo, hi = int(value[0]), int(value[1])
    return int(rng.integers(lo, hi + 1))


def as_waveform(x: Any) -> np.ndarray:
    """``x`` as a (T,) float32 contiguous array (no copy when it already is one); rejects non-mono shapes and
    integer, boolean or complex samples."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"an augmentation takes a mono (T,) waveform, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        # before: int16 PCM (scipy.io.wavfile.read's default) was taken as floats 32768 times too loud, and a
        # complex array lost its imaginary part, both without a word
        pcm = arr.dtype.kind == "i" and arr.dtype.itemsize in (2, 4)
        hint = f" (for {arr.dtype} PCM divide by {2 ** (8 * arr.dtype.itemsize - 1)})" if pcm else ""
        raise TypeError(f"an augmentation takes float samples in [-1, 1], got dtype {arr.dtype}{hint}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def sample_rate_hz(sr: Any) -> int:
    """``sr`` as a positive whole number of Hz (``16000.0`` is 16000); a ValueError otherwise (a TypeError for what is
    no number). Before, a rate of 0 or below failed deep in a filter design or a resampler ("Sample rate should be
    over 0", a ZeroDivisionError, "could not broadcast input array") or passed unnoticed (gain, clipping), and a
    fractional rate was truncated without a word."""
    try:
        if isinstance(sr, (bool, str, bytes)):
            raise TypeError
        value = float(sr)
    except (TypeError, ValueError):
        raise TypeError(f"sr must be the sample rate in Hz (a positive integer), got {sr!r}") from None
    if not (math.isfinite(value) and value > 0 and value == int(value)):
        raise ValueError(f"sr must be the sample rate in Hz (a positive integer), got {sr!r}")
    return int(value)


def fit_length(y: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad the end of ``y`` to exactly ``length`` samples."""
    if len(y) >= length:
        return y[:length]
    return np.concatenate([y, np.zeros(length - len(y), dtype=y.dtype)])


def power(x: np.ndarray) -> float:
    """Mean square of ``x`` (float64 accumulation)."""
    if len(x) == 0:
        return 0.0
    return float(np.mean(np.square(x, dtype=np.float64)))


def to_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a Generator (used as is) or an int seed; ``None`` is refused because it would be irreproducible."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"augmentations need a np.random.Generator (or an int seed), got {type(rng).__name__}")


def item_rng(seed: int, index: int, epoch: int = 0) -> np.random.Generator:
    """The generator for one dataset item: independent streams per (seed, epoch, index).

    Seeding by item (not by worker) makes the augmented data identical whatever the number of
    DataLoader workers or the order in which they pick items, and new at every epoch.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]))


class Augmentation:
    """Base class of waveform augmentations: handles ``p``, input checks and the output contract.

    Subclasses hold their config in ``self.cfg`` and implement :meth:`apply`, which may
    return any float array of about the right length; ``__call__`` casts it to float32
    and checks that it has exactly ``T`` samples and only finite values.
    """

    domain: ClassVar[str] = "waveform"

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def __call__(
        self, x: np.ndarray, sr: int, rng: np.random.Generator | int, *, keep_length: bool = True
    ) -> np.ndarray:
        """x: (T,) float32 at ``sr`` Hz -> (T,) float32 at ``sr`` Hz.

        ``keep_length=False``: an augmentation that changes the duration (a time stretch) gives its whole output,
        (T',) (see :meth:`apply_whole`), as a robustness condition scores it; the rest give (T,) either way."""
        x = as_waveform(x)
        sr = sample_rate_hz(sr)
        rng = to_generator(rng)
        # Always draw the gate so the stream consumed does not depend on p.
        if rng.random() >= getattr(self.cfg, "p", 1.0) or len(x) == 0:
            return x.copy()
        if not np.isfinite(x).all():
            # checked before applying, not only when the output is non-finite: integer-PCM codecs (mulaw, g722, amrnb)
            # turned a NaN into finite noise, and libmp3lame aborted the whole process (an assertion in C)
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise ValueError(
                f"{type(self).__name__} got a waveform with {bad} non-finite (NaN or inf) samples of {len(x)}; "
                "fix the audio (or its decoding) upstream"
            )
        y = np.asarray(self.apply(x, sr, rng) if keep_length else self.apply_whole(x, sr, rng))
        if y.shape != x.shape if keep_length else y.ndim != 1:
            raise RuntimeError(f"{type(self).__name__} returned shape {y.shape} for input {x.shape}")
        y = y.astype(np.float32, copy=False)
        if np.shares_memory(y, x):
            # before: a band filter with both edges open (or an empty compose) returned the caller's own array, so
            # writing into the output changed the input; a skipped augmentation and ``clean`` return copies
            y = y.copy()
        if not np.isfinite(y).all():
            raise RuntimeError(f"{type(self).__name__} produced non-finite samples")
        return y

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def apply_whole(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        """What :meth:`apply` computes before fitting it back to ``T`` samples, (T',): the same as ``apply`` for an
        augmentation that keeps the duration; one that changes it (a time stretch) overrides this, drawing from
        ``rng`` as ``apply`` does."""
        return self.apply(x, sr, rng)

    def prepare(self, sr: int) -> None:
        """Do now, in this process, the set-up that calls at ``sr`` Hz would otherwise do lazily (the codec delays
        of every bit rate the config can draw): DataLoader workers forked afterwards inherit it instead of each
        redoing it. Changes no output. Nothing to do by default."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg!r})"
