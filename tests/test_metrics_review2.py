"""Second metrics/calibration review: edge cases of the logistic calibration and the a-DCF cost model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sddkit.errors import ProtocolError
from sddkit.metrics import ADCFCost, MetricError, eer
from sddkit.scoring.calibration import fit_calibration, logit, weighted_cllr


def _newton_calibration(scores, labels, prior, l2=1e-6):
    """Reference minimiser of fit_calibration's objective (same standardisation and penalty), by Newton."""
    l2 = l2 * -(prior * math.log2(prior) + (1 - prior) * math.log2(1 - prior))  # scaled by the prior's entropy
    s, y = np.asarray(scores, float), np.asarray(labels) == 1
    mu, sigma = s.mean(), s.std()
    x = np.c_[(s - mu) / sigma, np.ones(s.size)]
    weights = np.where(y, prior / y.sum(), (1 - prior) / (~y).sum())
    theta = np.zeros(2)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ theta + logit(prior))))
        grad = x.T @ (weights * (p - y)) + np.r_[2 * l2 * theta[0], 0.0]
        hess = (x * (weights * p * (1 - p))[:, None]).T @ x + np.diag([2 * l2, 0.0])
        theta -= np.linalg.solve(hess, grad)
    w, c = theta
    return w / sigma, c - w * mu / sigma


@pytest.mark.parametrize("value, n", [(0.1, 3), (0.7, 3), (123.456, 10)])
def test_fit_calibration_refuses_equal_scores_whose_mean_rounds(value, n):
    """All-equal scores used to pass the ``std == 0`` check whenever the float mean of the equal values
    rounded away from them (std ~1e-17), and the fit then returned a slope of ~1e16: an absurd
    calibration stored without complaint. Equality is now tested on the values themselves."""
    scores = np.full(n, value)
    labels = np.r_[1, np.zeros(n - 1, int)]
    with pytest.raises(ProtocolError, match="all equal"):
        fit_calibration(scores, labels)


def test_fit_calibration_accepts_object_dtype_string_labels():
    """'bonafide'/'spoof' labels in an object array (what a pandas column of strings gives) were sent
    down the numeric branch and refused with "numeric labels must be 1 (bona fide) or 0 (spoof)"."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(50, int), np.zeros(50, int)]
    scores = rng.normal(size=100) + 2.0 * labels
    names = np.where(labels == 1, "bonafide", "spoof").astype(object)
    expected = fit_calibration(scores, labels)
    got = fit_calibration(scores, names)
    assert (got.a, got.b) == pytest.approx((expected.a, expected.b))
    with pytest.raises(ProtocolError, match="labels must be"):
        fit_calibration(scores, np.array([*names[:-1], "maybe"], dtype=object))


@pytest.mark.parametrize("prior", [0.01, 0.5])
def test_fit_calibration_reaches_the_minimum_of_its_objective(prior):
    """With scipy's default L-BFGS-B tolerances (gtol 1e-5) the fit stopped early on the flat objective:
    on these scores the returned LLRs were ~0.03 nats (prior 0.01) and ~5e-4 nats (prior 0.5) away from
    the objective's minimiser. The fit now runs to tight tolerances."""
    rng = np.random.default_rng(7)
    labels = np.r_[np.ones(2500, int), np.zeros(2000, int)]
    scores = rng.normal(size=labels.size) + 3.0 * labels
    cal = fit_calibration(scores, labels, prior=prior)
    a, b = _newton_calibration(scores, labels, prior)
    assert np.abs((cal.a - a) * scores + (cal.b - b)).max() < 1e-4


def test_weighted_cllr_refuses_a_degenerate_prior_or_an_empty_class():
    """``weighted_cllr`` returned NaN (with numpy warnings) for prior 0 or 1 (logit = -inf/inf, 0 * inf)
    and for an empty class (mean of nothing); both are now a ProtocolError."""
    assert weighted_cllr([math.log(3)], [-math.log(3)], 0.5) == pytest.approx(math.log2(4 / 3))
    for prior in (0.0, 1.0, math.nan):
        with pytest.raises(ProtocolError, match="prior"):
            weighted_cllr([1.0], [-1.0], prior)
    with pytest.raises(ProtocolError, match="both classes"):
        weighted_cllr([], [-1.0])


@pytest.mark.parametrize("priors", [(1.0, 0.0, 0.0), (0.0, 0.5, 0.5)])
def test_adcf_cost_refuses_priors_with_a_zero_normaliser(priors):
    """With p_tar = 0, or p_non = p_spf = 0, one trivial system costs nothing, the normaliser is 0 and
    ``a_dcf`` returned NaN for every score set; the cost model now refuses such priors."""
    p_tar, p_non, p_spf = priors
    with pytest.raises(ValueError, match="p_tar > 0"):
        ADCFCost(p_tar=p_tar, p_non=p_non, p_spf=p_spf)


def test_unsortable_bad_labels_give_a_metric_error():
    """A label array mixing types (here None among 0/1, as an object column with a missing value gives)
    crashed the error message itself: ``np.unique`` cannot sort None against ints, so the caller got a
    bare TypeError instead of the MetricError naming the bad labels."""
    with pytest.raises(MetricError, match="0 \\(spoof\\) or 1.*None"):
        eer([1, 0, None], [1.0, 0.0, 0.5])
