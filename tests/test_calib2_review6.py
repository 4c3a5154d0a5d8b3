"""Review 6 (calib2): the logistic calibration fit at priors far from 0.5, and its penalty argument."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sddkit.errors import ProtocolError
from sddkit.scoring.calibration import fit_calibration, logit


def _newton_fit(tar: np.ndarray, non: np.ndarray, prior: float) -> tuple[float, float]:
    """Unpenalised prior-weighted logistic regression (BOSARIS ``train_binary_classifier``) by Newton's method."""
    x = np.r_[tar, non]
    y = np.r_[np.ones(tar.size), np.zeros(non.size)]
    w = np.where(y == 1, prior / tar.size, (1 - prior) / non.size)
    design = np.c_[x, np.ones_like(x)]
    theta = np.zeros(2)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(design @ theta + logit(prior))))
        grad = design.T @ (w * (p - y))
        hess = (design * (w * p * (1 - p))[:, None]).T @ design
        theta -= np.linalg.solve(hess, grad)
    return float(theta[0]), float(theta[1])


@pytest.mark.parametrize("prior", [1e-4, 1e-3, 0.5, 0.999, 0.9999])
def test_the_penalty_does_not_pull_an_overlapping_fit_at_any_prior(prior):
    """The slope penalty (l2=1e-6) was not scaled to the objective, which shrinks with the prior's entropy: at
    prior 1e-4 it pulled the fit of overlapping (non-separable) scores to a=3.03, b=-0.98 instead of the
    unpenalised a=3.41, b=-1.52, far from "a small penalty that only keeps separable fits finite"."""
    rng = np.random.default_rng(0)
    tar, non = rng.normal(2, 1.5, 300), rng.normal(-1, 1, 1000)
    a_ref, b_ref = _newton_fit(tar, non, prior)
    cal = fit_calibration(np.r_[tar, non], np.r_[np.ones(300), np.zeros(1000)], prior=prior)
    assert cal.a == pytest.approx(a_ref, rel=1e-3)
    assert cal.b == pytest.approx(b_ref, abs=5e-3)


def test_separable_scores_stay_finite_at_an_extreme_prior():
    cal = fit_calibration([0.0, 1.0, 2.0, 3.0], [0, 0, 1, 1], prior=1e-4)
    assert math.isfinite(cal.a) and math.isfinite(cal.b) and cal.a > 0
    llr = cal.apply(np.array([0.0, 1.0, 2.0, 3.0]))
    assert (llr[2:] > 0).all() and (llr[:2] < 0).all()


@pytest.mark.parametrize("l2", [-1.0, float("nan"), float("inf")])
def test_a_negative_or_non_finite_penalty_is_refused(l2):
    """A negative l2 made the objective unbounded below (it returned a slope of ~5e154), a NaN or infinite one
    stopped the optimiser at its starting point (a = 1 / std of the scores): each a map without a word; now the
    bad value is named."""
    with pytest.raises(ProtocolError, match="l2"):
        fit_calibration([0.0, 1.0, 0.5, 2.0], [0, 1, 0, 1], l2=l2)
