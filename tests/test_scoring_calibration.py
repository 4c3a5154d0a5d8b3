from __future__ import annotations

import json

import numpy as np
import pytest

from sddkit.errors import CheckpointError, ProtocolError
from sddkit.metrics import cllr
from sddkit.scoring.calibration import Calibration, fit_calibration, logit, weighted_cllr
from sddkit.scoring.inference import InferenceConfig, parse_inference


def _gaussian_scores(n_bona: int, n_spoof: int, seed: int = 0):
    """x ~ N(+2, 1) bona fide / N(-2, 1) spoof has LLR(x) = 4x exactly.

    The detector's raw score is raw = (x - 1) / 2, so LLR = 4 (2 raw + 1) = 8 raw + 4: a = 8, b = 4.
    """
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(2.0, 1.0, n_bona), rng.normal(-2.0, 1.0, n_spoof)])
    labels = np.concatenate([np.ones(n_bona, int), np.zeros(n_spoof, int)])
    return (x - 1.0) / 2.0, labels


@pytest.mark.parametrize("prior", [0.5, 0.1, 0.9])
def test_fit_recovers_known_llr_whatever_the_prior_and_class_balance(prior):
    raw, labels = _gaussian_scores(6000, 18000)  # 1:3 class balance must not shift the LLR
    cal = fit_calibration(raw, labels, prior=prior)
    assert cal.a == pytest.approx(8.0, rel=0.04)
    assert cal.b == pytest.approx(4.0, abs=0.15)
    assert cal.prior == prior and cal.n_bonafide == 6000 and cal.n_spoof == 18000


def test_unweighted_logistic_regression_would_be_biased_by_class_balance():
    # sanity check of the test itself: plain logistic regression absorbs log(n_bona / n_spoof) into b
    from sklearn.linear_model import LogisticRegression

    raw, labels = _gaussian_scores(6000, 18000)
    lr = LogisticRegression(C=1e6).fit(raw[:, None], labels)
    assert lr.intercept_[0] == pytest.approx(4.0 + np.log(6000 / 18000), abs=0.3)
    assert fit_calibration(raw, labels).b == pytest.approx(4.0, abs=0.25)


def test_calibration_lowers_cllr_to_near_its_minimum():
    from sddkit.metrics import min_cllr

    raw, labels = _gaussian_scores(3000, 3000, seed=1)
    raw = raw * 0.05 - 3.0  # badly scaled and shifted raw scores: same ranking, poor calibration
    cal = fit_calibration(raw, labels)
    before, after = cllr(labels, raw), cllr(labels, cal.apply(raw))
    assert after < before
    assert after < min_cllr(labels, raw) + 0.02  # affine calibration is near-optimal for Gaussian scores
    # the objective at prior 0.5 is exactly Cllr
    llr = cal.apply(raw)
    assert weighted_cllr(llr[labels == 1], llr[labels == 0], 0.5) == pytest.approx(cllr(labels, llr), rel=1e-12)


def test_string_labels_and_apply_on_arrays():
    raw, labels = _gaussian_scores(500, 500)
    names = np.where(labels == 1, "bonafide", "spoof")
    a = fit_calibration(raw, labels)
    b = fit_calibration(raw, names)
    assert (a.a, a.b) == pytest.approx((b.a, b.b))
    np.testing.assert_allclose(a.apply(np.array([0.0, 1.0])), [a.b, a.a + a.b])
    assert logit(0.5) == 0.0 and logit(0.9) == pytest.approx(np.log(9.0))


def test_separable_scores_give_a_finite_fit():
    cal = fit_calibration([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1])
    assert np.isfinite(cal.a) and cal.a > 0 and abs(cal.b) < 1e-3 * cal.a


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([1.0, 2.0], [1, 1], "both classes"),
        ([1.0, np.nan], [1, 0], "finite"),
        ([1.0, 2.0], [1, 2], "1 \\(bona fide\\) or 0"),
        ([1.0, 2.0, 3.0], [1, 0], "3 scores but 2 labels"),
        ([1.0, 1.0], [1, 0], "all equal"),
        ([2.0, 1.5, -1.0, -2.0], [0, 0, 1, 1], "non-positive slope"),
        ([1.0, 2.0], ["bonafide", "maybe"], "labels must be"),
    ],
)
def test_fit_errors(scores, labels, match):
    with pytest.raises(ProtocolError, match=match):
        fit_calibration(scores, labels)


def test_calibration_rejects_inverting_or_bad_values():
    with pytest.raises(ValueError, match="positive"):
        Calibration(a=-1.0)
    with pytest.raises(ValueError, match="prior"):
        Calibration(prior=1.0)
    with pytest.raises(ProtocolError, match="prior"):
        fit_calibration([0.0, 1.0], [0, 1], prior=0.0)


def test_inference_section_defaults_roundtrip_and_strictness():
    cfg = parse_inference({})
    assert (cfg.sample_rate, cfg.window_samples, cfg.hop_samples, cfg.aggregation) == (16000, 64600, 32300, "mean")
    assert cfg.calibration.is_identity and cfg.threshold == 0.0
    d = InferenceConfig(window_samples=8000, hop_samples=4000, calibration=Calibration(a=2.0, b=-1.0)).to_dict()
    again = parse_inference(json.loads(json.dumps(d)))
    assert again.calibration == Calibration(a=2.0, b=-1.0) and again.hop_samples == 4000
    with pytest.raises(CheckpointError, match="unknown key"):
        parse_inference({"windw": 3})
    with pytest.raises(CheckpointError, match="hop_samples"):
        parse_inference({"window_samples": 100, "hop_samples": 200})
    with pytest.raises(CheckpointError, match="aggregation"):
        parse_inference({"aggregation": "sum"})
    with pytest.raises(CheckpointError, match="slope"):
        parse_inference({"calibration": {"a": 0.0}})
