"""The bootstraps' fast path for DET-curve metrics gives exactly the values of resampling and sorting again."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.metrics import (
    CurveMetric,
    bootstrap_ci,
    eer,
    eer_from_curve,
    min_dcf,
    min_dcf_from_curve,
    paired_bootstrap,
)
from sddkit.metrics.bootstrap import _SortedTrials
from sddkit.metrics.det import det_curve

PAIRS = [(eer, eer_from_curve), (min_dcf, min_dcf_from_curve)]


def _trials(seed: int, n: int = 300, runs: int = 1):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    y[:2] = [True, False]
    # rounded to 1 decimal: many ties, within and across classes
    a = np.round(rng.normal(y * 1.0, 1.0, size=(runs, n)), 1)
    b = np.round(rng.normal(y * 1.2, 1.0, size=(runs, n)), 1)
    return y, a, b


def test_a_curve_metric_is_the_metric():
    y, a, _ = _trials(0)
    for metric, from_curve in PAIRS:
        assert float(CurveMetric(from_curve)(y, a[0])) == float(metric(y, a[0]))


@pytest.mark.parametrize("seed", range(4))
def test_the_curve_of_counts_equals_the_curve_of_the_expanded_resample(seed):
    y, a, _ = _trials(seed)
    rng = np.random.default_rng(seed)
    trials = _SortedTrials(y, a[0])
    for _ in range(20):
        counts = rng.multinomial(y.size, np.full(y.size, 1.0 / y.size))
        if counts[y].sum() == 0 or counts[~y].sum() == 0:
            continue
        idx = np.repeat(np.arange(y.size), counts)
        fast, slow = trials.curve(counts), det_curve(y[idx], a[0][idx])
        for _, from_curve in PAIRS:
            assert float(from_curve(fast)) == float(from_curve(slow))


@pytest.mark.parametrize("stratified", [True, False])
def test_bootstrap_ci_is_unchanged_by_the_fast_path(stratified):
    y, a, _ = _trials(1)
    for metric, from_curve in PAIRS:
        slow = bootstrap_ci(metric, y, a[0], n=60, seed=3, stratified=stratified)
        fast = bootstrap_ci(CurveMetric(from_curve), y, a[0], n=60, seed=3, stratified=stratified)
        assert fast == slow


@pytest.mark.parametrize("runs", [1, 3])
def test_paired_bootstrap_is_unchanged_by_the_fast_path(runs):
    y, a, b = _trials(2, runs=runs)
    for metric, from_curve in PAIRS:
        slow = paired_bootstrap(metric, y, a, b, n=60, seed=5)
        fast = paired_bootstrap(CurveMetric(from_curve), y, a, b, n=60, seed=5)
        assert fast == slow
