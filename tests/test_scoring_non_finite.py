"""A result with a NaN anywhere it is reported is the model's failure on that input, not a row to write."""

from __future__ import annotations

import math

from sddkit.scoring.api import ScoreResult, non_finite_reason


def _result(**changes) -> ScoreResult:
    base = dict(
        score=1.0,
        probability=0.73,
        decision="bonafide",
        threshold=0.0,
        duration_s=4.0,
        raw_score=1.0,
        window_scores=[1.0, 1.0],
        window_starts_s=[0.0, 2.0],
        window_ends_s=[4.0, 6.0],
        weights={"gate_weights": [0.25, 0.75]},
    )
    return ScoreResult(**{**base, **changes})


def test_finite_results_are_reported():
    assert non_finite_reason(_result()) is None


def test_a_non_finite_score_or_window_is_refused():
    assert "1 of 2 window(s)" in non_finite_reason(_result(window_scores=[1.0, math.nan]))
    assert "0 of 2 window(s)" in non_finite_reason(_result(score=math.inf))


def test_non_finite_gate_weights_are_refused_even_beside_a_finite_score():
    reason = non_finite_reason(_result(weights={"gate_weights": [math.nan, 1.0], "other": [0.5]}))
    assert reason is not None and "gate_weights" in reason and "other" not in reason
