"""Metric input checks: minCllr on tiny scores, non-finite costs and thresholds, empty or non-numeric input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sddkit.config import from_dict
from sddkit.errors import ConfigError
from sddkit.evaluation import EvalConfig
from sddkit.metrics import (
    ADCFCost,
    DCFCost,
    MetricError,
    TDCFCost,
    a_dcf,
    eer,
    min_cllr,
    threshold_metrics,
)


def test_min_cllr_does_not_pool_distinct_tiny_scores():
    # perfectly separated scores: minCllr is 0 whatever their magnitude (it is rank-based)
    assert min_cllr([1, 0], [2e-16, 1e-16]) == pytest.approx(0.0, abs=1e-12)
    # sorted: 0 s, 1e-16 b, 2e-16 s, 3e-16 b -> PAV posteriors 0, 1/2, 1/2, 1; prior log odds 0
    # -> LLRs -inf, 0, 0, +inf; each class has one trial at LLR 0 (cost ln 2) -> Cllr = 1/2
    labels, scale = [1, 1, 0, 0], np.array([3.0, 1.0, 2.0, 0.0])
    assert min_cllr(labels, scale) == pytest.approx(0.5)
    assert min_cllr(labels, scale * 1e-16) == pytest.approx(0.5)
    # a monotone map never changes minCllr, here one that squeezes all scores below 1e-15
    rng = np.random.default_rng(4)
    y = (rng.random(200) < 0.5).astype(int)
    s = rng.normal(size=200) + 1.5 * y
    assert min_cllr(y, np.exp(s - 60.0)) == pytest.approx(min_cllr(y, s))


@pytest.mark.parametrize(
    "make",
    [
        lambda: DCFCost(c_fa=math.inf),
        lambda: DCFCost(c_miss=math.nan),
        lambda: ADCFCost(p_tar=math.nan),
        lambda: ADCFCost(c_fa_spoof=math.inf),
        lambda: TDCFCost(p_non=math.nan),
        lambda: TDCFCost(c_fa=math.nan),
    ],
)
def test_non_finite_costs_are_refused(make):
    with pytest.raises(ValueError, match="finite"):
        make()


def test_infinite_dcf_cost_from_config_is_refused():
    # YAML `.inf` passes the config loader's NaN check; an infinite cost made minDCF NaN (0 * inf)
    with pytest.raises(ConfigError, match="finite"):
        from_dict(EvalConfig, {"dcf": {"c_fa": math.inf}})


def test_nan_thresholds_are_refused():
    labels, scores = [1, 0], [1.0, 0.0]
    with pytest.raises(MetricError, match="threshold"):
        threshold_metrics(labels, scores, threshold=math.nan)
    with pytest.raises(MetricError, match="threshold"):
        a_dcf([1.0], [0.0], [0.5], threshold=math.nan)
    # infinite thresholds stay valid: reject everything / accept everything
    assert threshold_metrics(labels, scores, threshold=math.inf).tpr == 0.0
    assert threshold_metrics(labels, scores, threshold=-math.inf).tnr == 0.0


def test_empty_and_non_numeric_inputs_raise_clear_metric_errors():
    with pytest.raises(MetricError, match="no trials"):
        eer([], [])
    with pytest.raises(MetricError, match="not numbers"):
        eer([1, 0], ["a", "b"])
