"""Review 8 (calib3): the logistic calibration fit against closed forms, and its errors on degenerate scores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sddkit.errors import CheckpointError, ProtocolError
from sddkit.scoring.calibration import Calibration, fit_calibration, weighted_cllr
from sddkit.scoring.inference import parse_inference


@pytest.mark.parametrize("prior", [1e-3, 0.05, 0.5, 0.95])
def test_equal_variance_gaussians_give_the_closed_form_llr_at_any_prior(prior):
    """N(m1, s) bona fide vs N(m0, s) spoof: LLR(x) = (m1 - m0) / s^2 * x - (m1^2 - m0^2) / (2 s^2), i.e. a = 1,
    b = -1 here; prior-weighted logistic regression is consistent for it at every prior and class balance."""
    rng = np.random.default_rng(0)
    tar, non = rng.normal(3.0, 2.0, 100_000), rng.normal(-1.0, 2.0, 300_000)
    cal = fit_calibration(np.r_[tar, non], np.r_[np.ones(tar.size), np.zeros(non.size)], prior=prior)
    assert cal.a == pytest.approx(1.0, abs=0.03)
    assert cal.b == pytest.approx(-1.0, abs=0.05)


def test_ties_give_the_empirical_llr_of_each_tied_group():
    """Two distinct scores: the affine map passes through both groups' empirical LLRs, log(1/2) and log(2)."""
    cal = fit_calibration([0.0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 0])
    np.testing.assert_allclose(cal.apply(np.array([0.0, 1.0])), [-np.log(2.0), np.log(2.0)], atol=1e-5)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_scores_whose_spread_is_beyond_float64_are_refused_saying_so(scale):
    """Distinct, finite scores whose standard deviation under- or overflows float64: tiny ones crashed with
    ZeroDivisionError (after RuntimeWarnings), huge ones were told "non-positive slope ... wrong labels" (or,
    at prior 1e-4, Calibration's ValueError "slope a must be positive, got 0.0")."""
    scores = np.r_[np.arange(5.0), -np.arange(1.0, 6.0)] * scale
    labels = np.r_[np.ones(5), np.zeros(5)]
    for prior in (0.5, 1e-4):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ProtocolError, match=r"spread.*float64.*rescale"):
                fit_calibration(scores, labels, prior=prior)


def test_one_far_outlier_is_named_as_such_not_as_wrong_labels():
    """One spoof scored 1000 among well-separated scores turns the logistic slope negative; the error said the
    scores "are not higher for bona fide speech (wrong labels, or an untrained/inverted model)", which they are."""
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(2, 1, 60), rng.normal(-2, 1, 100), [1000.0]]
    labels = np.r_[np.ones(60), np.zeros(101)]
    with pytest.raises(ProtocolError, match=r"non-positive slope.*higher in the median.*outliers") as info:
        fit_calibration(scores, labels)
    assert "wrong labels" not in str(info.value)
    # scores really lower for bona fide keep the message about labels and inverted models
    with pytest.raises(ProtocolError, match=r"wrong labels"):
        fit_calibration(-scores[:-1], labels[:-1])


def test_scores_that_are_not_numbers_are_a_protocol_error():
    # numpy's bare ValueError "could not convert string to float" escaped the SddkitError handlers
    with pytest.raises(ProtocolError, match=r"calibration scores are not numbers"):
        fit_calibration(["0.1", "high"], [0, 1])


def test_weighted_cllr_refuses_nan_llrs():
    # it returned nan, a number that reads like a result
    with pytest.raises(ProtocolError, match=r"NaN"):
        weighted_cllr([1.0, np.nan], [-1.0])
    with pytest.raises(ProtocolError, match=r"NaN"):
        weighted_cllr([1.0], [np.nan], prior=0.1)
    # infinite LLRs are still costed (0 on the right side, infinite on the wrong one)
    assert weighted_cllr([np.inf], [-np.inf]) == 0.0


def test_negative_score_counts_in_a_stored_calibration_are_refused():
    with pytest.raises(CheckpointError, match=r"n_bonafide and n_spoof.*-5"):
        parse_inference({"calibration": {"a": 2.0, "b": 0.1, "prior": 0.5, "n_bonafide": -5, "n_spoof": 10}})
    with pytest.raises(ValueError, match=r"n_bonafide and n_spoof"):
        Calibration(n_spoof=-1)


def test_finalize_whose_fit_fails_leaves_out_as_it_was(tmp_path):
    """The script copied the new weights and config into --out (the bundled default model by default) before it
    fitted the calibration: a fit that failed left --out holding the new weights with the trained folder's
    uncalibrated config. Now nothing is written until the fit succeeded."""
    import shutil
    from pathlib import Path

    import soundfile as sf
    from script_support import load_script

    from sddkit.errors import SddkitError
    from sddkit.scoring.api import load_detector

    default_model = Path(__file__).resolve().parents[1] / "src" / "sddkit" / "assets" / "default_model"
    model = tmp_path / "model"
    shutil.copytree(default_model, model)
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(16000)).astype(np.float32) for _ in range(6)]
    raw = np.array([r.raw_score for r in load_detector(model).score_many(waves)])
    labels = np.empty(6, dtype=int)
    labels[np.argsort(raw)] = [1, 1, 0, 1, 0, 0]  # bona fide scored lower: the fit's slope is negative
    (tmp_path / "audio").mkdir()
    rows = ["path,label,partition,system,attack_type,source,speaker,duration_s"]
    for i, (x, y) in enumerate(zip(waves, labels)):
        sf.write(tmp_path / "audio" / f"f{i}.wav", x, 16000)
        rows.append(f"audio/f{i}.wav,{'bonafide' if y else 'spoof'},val,{'-' if y else 'A01'},tts,src,spk{i},1.0")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"the weights installed before")
    (out / "config.json").write_text('{"installed": "before"}\n')
    args = [str(model), "--out", str(out), "--manifest", str(manifest), "--threads", "1"]
    with pytest.raises(SddkitError, match=r"non-positive slope"):
        load_script("scripts/finalize_default_model.py").main(args)
    assert (out / "model.safetensors").read_bytes() == b"the weights installed before"
    assert (out / "config.json").read_text() == '{"installed": "before"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize(
    ("scores", "labels"), [([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1]), ([-2.0, 0.0, 0.0, 2.0], [0, 0, 1, 1])]
)
def test_separable_scores_without_a_penalty_are_refused(scores, labels):
    """With l2=0 separable scores have no finite optimum: the fit returned whatever slope the optimiser stopped at
    (a = 26.5 here, 24.3 at prior 1e-3), as if it were the calibration."""
    for prior in (0.5, 1e-3):
        with pytest.raises(ProtocolError, match=r"separate the classes.*l2=0.*l2 > 0"):
            fit_calibration(scores, labels, prior=prior, l2=0.0)
    assert fit_calibration(scores, labels).a > 0  # the default penalty keeps them finite


def test_an_unpenalised_fit_of_overlapping_scores_is_the_logistic_optimum():
    """l2=0 on overlapping scores: the fit's gradient (prior-weighted, as BOSARIS) vanishes at the result."""
    rng = np.random.default_rng(2)
    tar, non = rng.normal(1.0, 1.0, 50), rng.normal(-1.0, 1.5, 80)
    prior = 0.2
    cal = fit_calibration(np.r_[tar, non], np.r_[np.ones(50), np.zeros(80)], prior=prior, l2=0.0)
    lo = np.log(prior / (1 - prior))
    st, sn = cal.apply(tar) + lo, cal.apply(non) + lo
    rt, rn = -prior / tar.size / (1 + np.exp(st)), (1 - prior) / non.size / (1 + np.exp(-sn))
    assert abs(rt.sum() + rn.sum()) < 1e-9 and abs((rt * tar).sum() + (rn * non).sum()) < 1e-9


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("threshold", float("inf"), "threshold"),
        ("calibration.a", 0.0, "slope"),
        ("calibration.b", float("nan"), r"calibration\.b"),
    ],
)
def test_write_inference_refuses_settings_set_invalid_after_they_were_made(tmp_path, field, value, match):
    """An InferenceConfig whose fields were set afterwards (cfg.threshold = ...) was written unchecked: the model
    directory then failed to load ("threshold must be finite"), far from the write that broke it."""
    import shutil
    from pathlib import Path

    from sddkit.scoring.inference import read_inference, write_inference

    model = tmp_path / "model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "src" / "sddkit" / "assets" / "default_model", model)
    before = (model / "config.json").read_bytes()
    cfg = read_inference(model)
    if field == "threshold":
        cfg.threshold = value
    else:
        setattr(cfg.calibration, field.split(".")[1], value)
    with pytest.raises(CheckpointError, match=match):
        write_inference(model, cfg)
    assert (model / "config.json").read_bytes() == before
    read_inference(model)  # still loads
    cfg = read_inference(model)
    cfg.threshold = 0.25
    assert write_inference(model, cfg).threshold == 0.25 and read_inference(model).threshold == 0.25


def test_numpy_numbers_make_a_calibration_that_can_be_stored(tmp_path):
    """A prior given as np.float32 was stored as such: write_inference then failed ("Object of type float32 is not
    JSON serializable"), as did a Calibration made of numpy scalars."""
    import json
    import shutil
    from pathlib import Path

    from sddkit.scoring.inference import calibrate_model_dir, read_inference

    model = tmp_path / "model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "src" / "sddkit" / "assets" / "default_model", model)
    rng = np.random.default_rng(0)
    scores, labels = np.r_[rng.normal(1, 1, 50), rng.normal(-1, 1, 50)], np.r_[np.ones(50), np.zeros(50)]
    cfg = calibrate_model_dir(model, scores, labels, prior=np.float32(0.25))
    assert type(cfg.calibration.prior) is float and read_inference(model).calibration == cfg.calibration
    cal = Calibration(a=np.float32(2.0), b=np.float64(0.5), prior=np.float32(0.5), n_bonafide=np.int64(3), n_spoof=4)
    assert json.loads(json.dumps(vars(cal))) == {"a": 2.0, "b": 0.5, "prior": 0.5, "n_bonafide": 3, "n_spoof": 4}
    with pytest.raises(TypeError):
        Calibration(n_bonafide=2.5)
    for bad in ("2", True):
        with pytest.raises(TypeError, match=r"calibration a must be a number"):
            Calibration(a=bad)
