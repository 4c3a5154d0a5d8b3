"""Fixed-length crops and sliding windows of waveforms.

All functions work on the last axis of a numpy array or a torch tensor and return the same
kind (numpy in, numpy out); ``fixed_windows`` takes a 1-D signal. A signal shorter than the
target length is *repeat-padded* (tiled) rather than zero-padded, as in the AASIST/SSL-AASIST
recipes, so a model never sees long runs of digital silence it could learn as a cue.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

from sddkit.errors import EmptyAudioError

__all__ = ["center_crop", "fixed_windows", "random_crop", "repeat_pad", "window_starts"]

Signal = TypeVar("Signal", np.ndarray, torch.Tensor)


def repeat_pad(x: Signal, length: int) -> Signal:
    """Tile ``x`` (..., T) to exactly ``length`` samples along the last axis.

    T == length: ``x`` itself is returned unchanged; T > length: the first ``length`` samples.
    """
    _check_length(length)
    n = x.shape[-1]
    if n == 0:
        raise EmptyAudioError("cannot repeat-pad an empty signal")
    if n == length:
        return x
    if n > length:
        return x[..., :length]
    reps = math.ceil(length / n)
    if isinstance(x, torch.Tensor):
        tiled = x.repeat(*([1] * (x.dim() - 1)), reps)
    else:
        tiled = np.tile(x, (1,) * (x.ndim - 1) + (reps,))
    return tiled[..., :length]


def random_crop(x: Signal, length: int, rng: np.random.Generator) -> Signal:
    """A random window of ``length`` samples of ``x`` (..., T); repeat-padded when T <= length.

    The start is drawn from ``rng`` only when there is a choice (T > length), uniformly over
    every valid start, so the result is a pure function of ``x`` and the generator's state.
    """
    _check_length(length)
    n = x.shape[-1]
    if n <= length:
        return repeat_pad(x, length)
    start = int(rng.integers(0, n - length + 1))
    return x[..., start : start + length]


def center_crop(x: Signal, length: int) -> Signal:
    """The middle ``length`` samples of ``x`` (..., T) (start ``(T - length) // 2``); repeat-padded when shorter."""
    _check_length(length)
    n = x.shape[-1]
    if n <= length:
        return repeat_pad(x, length)
    start = (n - length) // 2
    return x[..., start : start + length]


def window_starts(num_samples: int, length: int, hop: int) -> np.ndarray:
    """Start sample of every window of :func:`fixed_windows`: (N,) int64.

    Starts are ``0, hop, 2*hop, ...``; when those leave a tail uncovered, one more window is
    aligned to the end (start ``num_samples - length``). A signal of at most ``length`` samples
    has the single start 0. Divide by the sample rate to map per-window scores to seconds.
    """
    _check_length(length)
    # an integer: a fractional hop (1.5) made np.arange's int64 starts step by 1, and a bool is no step
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop <= 0 or hop > length:
        raise ValueError(f"hop must be in [1, length={length}] (an integer) so windows cover the signal, got {hop!r}")
    if num_samples <= 0:
        raise EmptyAudioError("cannot window an empty signal")
    if num_samples <= length:
        return np.zeros(1, dtype=np.int64)
    last = num_samples - length
    starts = np.arange(0, last + 1, hop, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, np.int64(last))
    return starts


def fixed_windows(x: Signal, length: int, hop: int) -> Signal:
    """Overlapping windows covering all of a 1-D signal: (T,) -> (N, length).

    Windows start at :func:`window_starts` ``(T, length, hop)``; the last one ends at the last
    sample. A signal of at most ``length`` samples gives one repeat-padded window.
    """
    if x.ndim != 1:
        raise ValueError(f"fixed_windows expects a 1-D signal, got shape {tuple(x.shape)}")
    starts = window_starts(x.shape[0], length, hop)
    if x.shape[0] <= length:
        return repeat_pad(x, length)[None]
    if isinstance(x, torch.Tensor):
        return torch.stack([x[s : s + length] for s in starts.tolist()])
    return np.stack([x[s : s + length] for s in starts])


def _check_length(length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length <= 0:
        raise ValueError(f"length must be a positive integer, got {length!r}")
