"""Review 25 of score calibration and thresholds (sdd calibrate, scoring/calibration.py, scoring/calibrate.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from calibration_support import noise_protocol, while_scoring

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.scoring.calibration import fit_calibration
from sddkit.scoring.inference import read_inference, write_inference


@pytest.mark.parametrize("out", [False, True])
def test_a_model_directory_replaced_while_its_files_are_scored_is_not_stored_with_their_fit(
    tmp_path, tiny_stats, monkeypatch, capsys, out
):
    # sdd train exports a better best/ while sdd calibrate --model runs/X/best scores val: the fit of the old
    # weights' scores was stored for the new weights (and their uncalibrated config lost), without a word
    model = tiny_stats(tmp_path / "best", seed=0)
    protocol, _, _ = noise_protocol(tmp_path, model)
    while_scoring(monkeypatch, lambda: tiny_stats(model, seed=1))
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol)]
    target = tmp_path / "copy"
    assert main([*argv, "--out", str(target)] if out else argv) == 2
    err = capsys.readouterr().err
    assert f"{model} changed while its files were scored (its weights)" in err and "nothing was written" in err
    # the new export as it was written: uncalibrated, no record of a calibration it never had
    assert read_inference(model).calibration.is_identity
    assert "calibrated" not in (md.load_model_dir(model).metadata or {})
    assert not target.exists()


def test_windows_changed_while_its_files_are_scored_are_refused(tmp_path, tiny_stats, monkeypatch, capsys):
    model = tiny_stats(tmp_path / "model")
    protocol, _, _ = noise_protocol(tmp_path, model)

    def other_windows():
        inference = read_inference(model)
        inference.window_samples = 800
        write_inference(model, inference)

    while_scoring(monkeypatch, other_windows)
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol)]) == 2
    assert "(its inference settings (windows, aggregation))" in capsys.readouterr().err
    assert read_inference(model).window_samples == 800 and read_inference(model).calibration.is_identity


def test_a_calibration_stored_while_its_files_are_scored_is_superseded_not_refused(
    tmp_path, tiny_stats, monkeypatch, capsys
):
    # what raw scores do not depend on (another calibration stored in place meanwhile, its record) is no change
    model = tiny_stats(tmp_path / "model")
    protocol, raw, labels = noise_protocol(tmp_path, model)
    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol)]
    while_scoring(monkeypatch, lambda: main([*argv, "--threshold", "bayes"]))
    assert main(argv) == 0
    config = json.loads((model / md.CONFIG_NAME).read_text())
    expected = fit_calibration(raw, labels)
    assert config["inference"]["calibration"]["a"] == pytest.approx(expected.a)
    assert config["metadata"]["calibrated"]["threshold_rule"] == "eer"
    assert [r["threshold_rule"] for r in config["metadata"]["superseded_calibrations"]] == ["bayes"]


@pytest.mark.parametrize("prior", [1e-12, 1e-15, 1 - 1e-12])
def test_a_fit_at_an_extreme_prior_reaches_the_minimum_of_its_objective(prior):
    # the objective shrinks with the prior's entropy: at P = 1e-12 its gradients at the starting point were below the
    # optimiser's tolerance, and the fit returned that point (a = 1 / std of the scores) as the calibration
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    tar, non = rng.normal(2, 1, 500), rng.normal(-2, 1, 500)
    scores = np.r_[tar, non]
    cal = fit_calibration(scores, np.r_[np.ones(500), np.zeros(500)], prior=prior)
    mu, sigma = scores.mean(), scores.std()
    lo = np.log(prior) - np.log1p(-prior)
    entropy = -(prior * np.log2(prior) + (1 - prior) * np.log1p(-prior) / np.log(2))

    def objective(theta):  # the module docstring's, per unit of the prior's entropy, on standardised scores
        w, c = theta
        cost = prior * np.mean(np.logaddexp(0, -(w * (tar - mu) / sigma + c + lo)))
        cost += (1 - prior) * np.mean(np.logaddexp(0, w * (non - mu) / sigma + c + lo))
        return cost / entropy + 1e-6 * w * w

    w, c = cal.a * sigma, cal.b + cal.a * mu
    best = minimize(objective, [w, c], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-18})
    assert (w, c) == pytest.approx(tuple(best.x), rel=1e-6, abs=1e-6)
    assert cal.a > 4  # beyond the equal-variance LLR's slope, as the tail the fit looks at is empty


def test_calibrate_model_dir_records_its_calibration_as_the_one_in_force(tmp_path, tiny_stats, capsys):
    # it replaced the calibration but left sdd calibrate's record of the earlier one (its protocol, prior, counts)
    # as metadata.calibrated; and a run's next export of the same weights, which keeps a calibration only where such
    # a record is, dropped the API's calibration without a word
    from sddkit.scoring.inference import calibrate_model_dir
    from sddkit.training.exports import keep_calibration

    model = tiny_stats(tmp_path / "best")
    protocol, raw, labels = noise_protocol(tmp_path, model)
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol)]) == 0
    capsys.readouterr()
    cfg = calibrate_model_dir(model, raw, labels, prior=0.3)
    metadata = md.load_model_dir(model).metadata
    assert metadata["calibrated"] == {
        "fitted_by": "sddkit.scoring.calibrate_model_dir",
        "n_bonafide": int(labels.sum()),
        "n_spoof": int((labels == 0).sum()),
        "prior": 0.3,
        "threshold_rule": "keep",
    }
    assert [r["protocol"] for r in metadata["superseded_calibrations"]] == [str(protocol.resolve())]
    assert read_inference(model).calibration == cfg.calibration and cfg.calibration.prior == 0.3

    digest = md.load_model_dir(model).weights_digest
    inference, meta = {"window_samples": read_inference(model).window_samples}, {}
    keep_calibration(model, lambda: digest, inference, meta)  # sdd train exporting the same weights there again
    assert inference["calibration"] == vars(cfg.calibration) and meta["calibrated"] == metadata["calibrated"]


def _pav_min_cllr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Min Cllr (bits) by hand: the pool-adjacent-violators fit of the labels on the sorted scores (tied scores
    pooled first), its posteriors turned into LLRs by removing the empirical prior log-odds, scored by Cllr."""
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    blocks = []  # [mean of labels, trials]
    for start, n in zip(first, counts):
        blocks.append([labels[order][start : start + n].mean(), n])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            (m2, n2), (m1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    posterior = np.repeat([m for m, _ in blocks], [n for _, n in blocks])
    n_bona = labels.sum()
    with np.errstate(divide="ignore"):
        llr = np.log(posterior) - np.log1p(-posterior) - np.log(n_bona / (labels.size - n_bona))
    llr_as_given = np.empty_like(llr)
    llr_as_given[order] = llr
    tar, non = llr_as_given[labels == 1], llr_as_given[labels == 0]
    return float((np.mean(np.logaddexp(0, -tar)) + np.mean(np.logaddexp(0, non))) / 2 / np.log(2))


@pytest.mark.parametrize("prior", [0.5, 0.1])
def test_fitted_llrs_are_near_min_cllr_and_their_bayes_decisions_near_min_dcf(prior):
    # equal-variance Gaussian scores, badly scaled: an affine map is the optimal one, so the fitted LLRs should lose
    # little to the PAV bound, and deciding at -logit(prior) (sdd calibrate --threshold bayes) little to min DCF
    from sddkit.metrics import min_cllr

    rng = np.random.default_rng(5)
    labels = np.r_[np.ones(2000, int), np.zeros(3000, int)]
    raw = 0.05 * np.r_[rng.normal(1.5, 1, 2000), rng.normal(-1.5, 1, 3000)] - 3.0
    llr = fit_calibration(raw, labels, prior=prior).apply(raw)
    tar, non = llr[labels == 1], llr[labels == 0]
    cllr = (np.mean(np.logaddexp(0, -tar)) + np.mean(np.logaddexp(0, non))) / 2 / np.log(2)
    assert _pav_min_cllr(labels, raw) <= cllr < _pav_min_cllr(labels, raw) + 0.01
    assert _pav_min_cllr(labels, raw) == pytest.approx(min_cllr(labels, raw), rel=1e-9)  # sdd eval's, by hand
    tied = np.round(raw, 2)  # ties across the classes are pooled, not ordered by label
    assert _pav_min_cllr(labels, tied) == pytest.approx(min_cllr(labels, tied), rel=1e-9)

    def dcf(threshold):  # normalised Bayes risk at the prior, unit costs
        return (prior * np.mean(tar < threshold) + (1 - prior) * np.mean(non >= threshold)) / min(prior, 1 - prior)

    act = dcf(-np.log(prior / (1 - prior)))
    assert min(dcf(t) for t in np.r_[np.sort(llr), np.inf]) <= act < min(dcf(t) for t in np.sort(llr)) + 0.02
