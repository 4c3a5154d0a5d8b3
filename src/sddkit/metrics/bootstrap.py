"""Percentile bootstrap confidence intervals for any ``metric_fn(labels, scores)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from sddkit.metrics.inputs import MetricError, check_binary

_BLOCK_DRAWS = 4_000_000  # resampling draws held in memory at once


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], object],
    labels: object,
    scores: object,
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
) -> tuple[float, float, float]:
    """``(point, low, high)``: the metric on all trials and its ``1 - alpha`` percentile interval.

    ``metric_fn`` returns a number or anything ``float()`` accepts (e.g. :class:`EERResult`);
    it must not depend on the order of the trials. Stratified resampling draws bona fide and
    spoof trials separately, keeping the class counts fixed (so every replicate has both
    classes); unstratified replicates that happen to miss a class are redrawn.

    Speed: the trials are sorted by score once, and each replicate is drawn as per-trial
    counts (vectorised over blocks of replicates) and expanded in that sorted order, so the
    sort inside a curve-based metric (EER, minDCF) runs on already-sorted input.
    """
    if n < 1:
        raise MetricError(f"bootstrap needs n >= 1 replicates, got {n}")
    if not 0.0 < alpha < 1.0:
        raise MetricError(f"alpha must be in (0, 1), got {alpha}")
    y, s = check_binary(labels, scores)
    point = float(metric_fn(y.astype(np.int64), s))
    order = np.argsort(s, kind="stable")
    y_sorted, s_sorted = y[order], s[order]
    y_int = y_sorted.astype(np.int64)
    positions = np.arange(y.size)
    rng = np.random.default_rng(seed)
    values = np.fromiter(
        (
            float(metric_fn(y_int[idx], s_sorted[idx]))
            for counts in _replicate_counts(rng, y_sorted, n, stratified)
            for idx in (np.repeat(positions, counts),)
        ),
        np.float64,
        count=n,
    )
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return point, float(low), float(high)


def _counts(rng: np.random.Generator, size: int, m: int) -> np.ndarray:
    """(m, size) how often each of ``size`` items is drawn in ``size`` draws with replacement."""
    draws = rng.integers(0, size, size=(m, size)) + (np.arange(m) * size)[:, None]
    return np.bincount(draws.ravel(), minlength=m * size).reshape(m, size)


def _replicate_counts(rng: np.random.Generator, y: np.ndarray, n: int, stratified: bool) -> Iterator[np.ndarray]:
    """Yield ``n`` per-trial count vectors (N,), drawn in blocks of at most ~4M draws."""
    block = max(1, min(n, _BLOCK_DRAWS // y.size))
    bona = np.flatnonzero(y)
    spoof = np.flatnonzero(~y)
    for start in range(0, n, block):
        m = min(block, n - start)
        if stratified:
            counts = np.zeros((m, y.size), dtype=np.int64)
            counts[:, bona] = _counts(rng, bona.size, m)
            counts[:, spoof] = _counts(rng, spoof.size, m)
        else:
            counts = _plain_counts(rng, y, m)
        yield from counts


def _plain_counts(rng: np.random.Generator, y: np.ndarray, m: int) -> np.ndarray:
    counts = _counts(rng, y.size, m)
    for _ in range(100):  # a replicate without one class is rare unless a class is tiny
        n_bona = counts[:, y].sum(axis=1)
        bad = np.flatnonzero((n_bona == 0) | (n_bona == y.size))
        if bad.size == 0:
            return counts
        counts[bad] = _counts(rng, y.size, bad.size)
    raise MetricError("unstratified bootstrap keeps drawing one-class replicates; use stratified=True")
