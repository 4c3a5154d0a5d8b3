"""Concurrent tandem EER (t-EER) against the ASVspoof 5 evaluation package, and its place in ``sdd eval``.

Pinned values: asvspoof-challenge/asvspoof5, evaluation-package/calculate_modules.py (commit 8db95086),
``compute_teer`` fed by ``compute_det_curve`` (CM) and ``compute_Pmiss_Pfa_Pspoof_curves`` (ASV) as
``calculate_aDCF_tdcf_tEER`` in calculate_metrics.py feeds it; that function returns percent (sddkit a fraction)
and records the highest *rejected* score as each threshold (sddkit the lowest accepted one).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_support import labelled_table

from sddkit.evaluation.asv import ASVScores, read_asv_scores
from sddkit.evaluation.report import evaluate, render_markdown
from sddkit.metrics import MetricError, TEERResult, t_eer

# (cm bona fide, cm spoof, asv target, asv non-target, asv spoof): compute_teer's value in percent, at rho 0.5 (the
# package now) and rho 0 (its first release)
TIES = ([1.0, 2.0, 2.0, 3.0], [0.0, 2.0, 2.5], [3.0, 4.0, 5.0], [1.0, 2.0, 3.5], [0.0, 2.5, 4.5, 6.0])
ONE_EACH = ([0.3], [-0.2], [1.0], [0.0], [0.5])
SMALL = (
    [1.0, 1.3, 0.73, 0.11, 0.55, 0.01],
    [-0.94, 0.34, -1.49, -1.62, -0.51],
    [2.36, 2.11, 1.07, 1.97, 2.7],
    [-2.34, -1.46, -2.9, -2.29],
    [-0.84, 0.76, -0.27, 1.27, 1.16, 0.81],
)


@pytest.mark.parametrize(
    ("sets", "rho", "percent"),
    [
        (TIES, 0.5, 50.0),
        (TIES, 0.0, 50.0),
        (ONE_EACH, 0.5, 0.0),
        (ONE_EACH, 0.0, 100.0),  # the first release's rho finds another crossing on one trial per kind
        (SMALL, 0.5, 20.0),
        (SMALL, 0.0, 20.0),
    ],
)
def test_hand_sets_give_the_official_compute_teer_values(sets, rho, percent):
    result = t_eer(*sets, rho=rho)
    assert isinstance(result, TEERResult) and 100 * result.teer == percent and float(result) == result.teer


def test_the_thresholds_are_the_lowest_accepted_scores_of_the_official_point():
    # compute_teer's point on TIES: CM 2.0 (highest rejected; the point lies inside the run of tied 2.0s, named by
    # that value), ASV 0.0 (highest rejected, the lowest score): sddkit names the next scores up, 2.0 and 1.0
    assert t_eer(*TIES) == TEERResult(teer=0.5, cm_threshold=2.0, asv_threshold=1.0)
    # SMALL: compute_teer records CM 0.01 and ASV -2.29; the next scores up are 0.11 and -1.46
    result = t_eer(*SMALL)
    assert (result.cm_threshold, result.asv_threshold) == (0.11, -1.46)


def test_a_seeded_set_with_many_ties_gives_the_official_value():
    rng = np.random.default_rng(17)
    sets = [
        np.round(rng.normal(1, 1, 1200), 1),
        np.round(rng.normal(-1, 1.2, 800), 1),
        np.round(rng.normal(2, 1, 900), 1),
        np.round(rng.normal(-2, 1, 700), 1),
        np.round(rng.normal(0.5, 1.5, 600), 1),
    ]
    assert 100 * t_eer(*sets).teer == 16.479375  # compute_teer at rho 0.5 and 0 alike


def test_only_the_order_of_each_system_s_scores_matters():
    rng = np.random.default_rng(3)
    sets = [rng.normal(m, 1.0, n) for m, n in ((1.0, 300), (-1.0, 200), (2.0, 250), (-2.0, 150), (0.5, 100))]
    base = t_eer(*sets)
    cm_moved = t_eer(*(np.exp(s) for s in sets[:2]), *sets[2:])
    asv_moved = t_eer(*sets[:2], *(3.0 * s - 7.0 for s in sets[2:]))
    assert cm_moved.teer == base.teer == asv_moved.teer
    assert asv_moved.cm_threshold == base.cm_threshold and cm_moved.asv_threshold == base.asv_threshold


def test_better_systems_give_a_lower_t_eer():
    rng = np.random.default_rng(5)
    asv = [rng.normal(2.0, 1.0, 400), rng.normal(-2.0, 1.0, 400), rng.normal(1.0, 1.0, 400)]
    weak = t_eer(rng.normal(0.5, 1.0, 800), rng.normal(-0.5, 1.0, 400), *asv).teer
    strong = t_eer(rng.normal(3.0, 1.0, 800), rng.normal(-3.0, 1.0, 400), *asv).teer
    assert 0.0 <= strong < weak <= 1.0


def test_asvspoof5_sized_sets_run():
    # hundreds of thousands of trials: compute_teer's walk over every CM point per ASV point would take hours
    rng = np.random.default_rng(0)
    n = 200_000
    sets = [
        rng.normal(1, 1, n),
        rng.normal(-1, 1, n // 2),
        rng.normal(2, 1, n),
        rng.normal(-2, 1, n),
        rng.normal(0, 1, n),
    ]
    assert 0.0 < t_eer(*sets).teer < 0.5


@pytest.mark.parametrize("empty", range(5))
def test_an_empty_set_is_refused_by_name(empty):
    sets = [[1.0], [0.0], [1.0], [0.0], [0.5]]
    sets[empty] = []
    name = ("CM bona fide", "CM spoof", "ASV target", "ASV non-target", "ASV spoof")[empty]
    with pytest.raises(MetricError, match=f"no {name} scores"):
        t_eer(*sets)


def test_non_finite_scores_bad_shapes_and_a_bad_rho_are_refused():
    with pytest.raises(MetricError, match="ASV spoof scores contain 1 non-finite"):
        t_eer([1.0], [0.0], [1.0], [0.0], [np.nan])
    with pytest.raises(MetricError, match=r"CM bona fide scores must be a 1-D array, got shape \(2, 1\)"):
        t_eer([[1.0], [2.0]], [0.0], [1.0], [0.0], [0.5])
    for rho in (1.5, float("nan"), "half"):
        with pytest.raises(MetricError, match="rho must be a number in"):
            t_eer(*ONE_EACH, rho=rho)


def test_an_undefined_t_eer_is_refused():
    # compute_teer fails here (UnboundLocalError: no ASV point gets a finite distance to the crossing): both
    # systems are inverted, and the CM point nearest every path rejects all bona fide trials
    with pytest.raises(MetricError, match="t-EER is undefined"):
        t_eer([0.0], [1.0], [1.0], [2.0], [3.0])


# --- the report and sdd eval -----------------------------------------------------------------------------------------


def test_evaluate_reports_the_t_eer_only_with_asv_scores():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(60, dtype=int), np.zeros(40, dtype=int)]
    scores = np.r_[rng.normal(1, 1, 60), rng.normal(-1, 1, 40)]
    asv = ASVScores(rng.normal(2, 1, 50), rng.normal(-2, 1, 50), rng.normal(0.5, 1, 50))
    table = labelled_table(labels)
    plain = evaluate(table, scores)
    assert plain.pooled["t_eer"] is None and "t-EER" not in render_markdown(plain)
    report = evaluate(table, scores, asv_scores=asv)
    expected = t_eer(scores[:60], scores[60:], asv.target, asv.nontarget, asv.spoof)
    assert report.pooled["t_eer"] == 100 * expected.teer
    assert (report.pooled["t_eer_cm_threshold"], report.pooled["t_eer_asv_threshold"]) == (
        expected.cm_threshold,
        expected.asv_threshold,
    )
    assert f"the given ASV scores); CM threshold {expected.cm_threshold:.4f}" in render_markdown(report)
    # an undefined t-EER leaves the rest of the report standing, with the reason
    inverted = evaluate(
        labelled_table(np.array([1, 0])), np.array([0.0, 1.0]), asv_scores=ASVScores(*np.array([[1.0], [2.0], [3.0]]))
    )
    assert inverted.pooled["t_eer"] is None and "t-EER is undefined" in inverted.pooled["t_eer_note"]
    assert "t-EER is undefined" in render_markdown(inverted)


def test_sdd_eval_with_asv_scores_reports_the_t_eer(tmp_path):
    from test_asv_scores import _asvspoof2019_file
    from test_cli_eval import _write_inputs

    from sddkit.cli.main import main

    protocol, score_file, labels, scores = _write_inputs(tmp_path)
    asv_file = _asvspoof2019_file(tmp_path / "asv.txt")
    argv = ["eval", "--scores", str(score_file), "--protocol", str(protocol), "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "with"), "--asv-scores", str(asv_file)]) == 0
    assert main([*argv, "--out", str(tmp_path / "without")]) == 0
    asv = read_asv_scores(asv_file)
    expected = t_eer(scores[labels == 1], scores[labels == 0], asv.target, asv.nontarget, asv.spoof)
    pooled = json.loads((tmp_path / "with" / "report.json").read_text())["pooled"]
    assert pooled["t_eer"] == pytest.approx(100 * expected.teer)
    assert "| t-EER % (concurrent, before the ASV of asv.txt)" in (tmp_path / "with" / "report.md").read_text()
    assert json.loads((tmp_path / "without" / "report.json").read_text())["pooled"]["t_eer"] is None
    assert "t-EER" not in (tmp_path / "without" / "report.md").read_text()
