"""ASV error rates from an ASV score file, for the official ASVspoof 2019/2021 t-DCF."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.errors import ProtocolError
from sddkit.evaluation.asv import asv_rates, read_asv_scores
from sddkit.metrics import ASVRates, MetricError, asv_rates_from_scores, min_tdcf_2019


def test_rates_at_the_asv_eer_threshold_match_a_hand_computation():
    # sorted (a target before a non-target of equal score): 1n 2n 3t 3.5n 4t 5t; candidates 0.999 1 2 3 3.5 4 5;
    # miss 0 0 0 1/3 1/3 2/3 1, false alarm 1 2/3 1/3 1/3 0 0 0: closest (equal) at 3
    rates = asv_rates_from_scores([3.0, 4.0, 5.0], [1.0, 2.0, 3.5], [0.0, 2.5, 4.5, 6.0])
    assert rates.pfa == pytest.approx(1 / 3)  # 3.5 >= 3
    assert rates.pmiss == 0.0  # no target below 3
    assert rates.pfa_spoof == pytest.approx(0.5)  # 4.5 and 6 accepted


def test_a_tie_takes_the_first_closest_candidate_and_counts_scores_at_it_as_accepted():
    # sorted: 1t 1n 2n 2t; miss 0 .5 .5 .5 1, false alarm 1 1 .5 0 0: first closest at index 2 (score 1, the non-target)
    rates = asv_rates_from_scores([1.0, 2.0], [1.0, 2.0], [1.0, 0.5])
    assert (rates.pfa, rates.pmiss, rates.pfa_spoof) == (1.0, 0.0, 0.5)


def test_separable_asv_scores_put_the_threshold_at_the_highest_non_target_which_counts_as_accepted():
    # the official scripts' quirk, kept: the EER point is at the highest non-target score, and ">=" accepts it
    rng = np.random.default_rng(0)
    target, nontarget = rng.normal(5, 1, 200), rng.normal(-5, 1, 300)
    spoof = np.concatenate([rng.normal(5, 0.5, 30), rng.normal(-5, 0.5, 70)])
    rates = asv_rates_from_scores(target, nontarget, spoof)
    assert rates.pfa == pytest.approx(1 / 300) and rates.pmiss == 0.0
    assert rates.pfa_spoof == pytest.approx(0.3)


@pytest.mark.parametrize("empty", ["target", "nontarget", "spoof"])
def test_a_missing_trial_kind_is_refused(empty):
    kinds = {"target": [1.0], "nontarget": [0.0], "spoof": [0.5], empty: []}
    with pytest.raises(MetricError, match=empty.replace("nontarget", "non-target")):
        asv_rates_from_scores(**kinds)


def test_non_finite_asv_scores_are_refused():
    with pytest.raises(MetricError, match="ASV spoof scores contain 1 non-finite"):
        asv_rates_from_scores([1.0], [0.0], [np.nan])


def _asvspoof2019_file(path):
    path.write_text(
        "bonafide target 3\nbonafide target 4\nbonafide target 5\n"
        "bonafide nontarget 1\nbonafide nontarget 2\nbonafide nontarget 3.5\n"
        "A07 spoof 0\nA08 spoof 2.5\nA19 spoof 4.5\nA19 spoof 6\n"
    )
    return path


def test_the_asvspoof2019_layout_reads_into_the_hand_computed_rates(tmp_path):
    scores = read_asv_scores(_asvspoof2019_file(tmp_path / "asv.txt"))
    assert scores.target.tolist() == [3, 4, 5] and scores.nontarget.tolist() == [1, 2, 3.5]
    assert scores.spoof.tolist() == [0, 2.5, 4.5, 6]
    assert asv_rates(tmp_path / "asv.txt") == ASVRates(pfa=1 / 3, pmiss=0.0, pfa_spoof=0.5)


def test_csv_with_a_header_comments_and_the_key_elsewhere_reads_the_same(tmp_path):
    path = tmp_path / "asv.csv"
    path.write_text(
        "# organiser ASV, eval\nspeaker,utterance,key,score\n"
        + "".join(
            f"LA_0001,u{i},{key},{score}\n"
            for i, (key, score) in enumerate(
                [
                    ("TARGET", 3),
                    ("target", 4),
                    ("target", 5),
                    ("nontarget", 1),
                    ("nontarget", 2),
                    ("nontarget", 3.5),
                    ("spoof", 0),
                    ("spoof", 2.5),
                    ("spoof", 4.5),
                    ("spoof", 6),
                ]
            )
        )
    )
    assert asv_rates(path) == asv_rates(_asvspoof2019_file(tmp_path / "asv.txt"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bonafide target high", r"line 2: 'bonafide target high': the last field 'high' is not a finite score"),
        ("bonafide target nan", "the last field 'nan' is not a finite score"),
        ("bonafide 1.5", "line 2: 'bonafide 1.5': no field is target, nontarget or spoof"),
        ("target spoof 1.5", r"several fields are trial kinds \(target, spoof\)"),
    ],
)
def test_a_bad_line_is_named(tmp_path, line, message):
    path = tmp_path / "asv.txt"
    path.write_text(f"bonafide target 1\n{line}\n")
    with pytest.raises(ProtocolError, match=message):
        read_asv_scores(path)


def test_a_file_without_spoof_trials_is_refused_with_the_counts(tmp_path):
    path = tmp_path / "asv.txt"
    path.write_text("bonafide target 1\nbonafide target 2\nbonafide nontarget 0\n")
    with pytest.raises(ProtocolError, match=r"no spoof trials \(2 target, 1 nontarget, 0 spoof\)"):
        read_asv_scores(path)


def test_the_rates_change_the_t_dcf_as_the_official_form_says():
    # with an ASV that accepts every spoof, the legacy t-DCF's C2 is largest: the CM's false alarms cost most
    rng = np.random.default_rng(1)
    bona, spoof = rng.normal(1, 1, 500), rng.normal(-1, 1, 500)
    lax = asv_rates_from_scores([2.0, 3.0], [0.0, 1.0], [2.5, 3.5])
    strict = asv_rates_from_scores([2.0, 3.0], [0.0, 1.0], [0.5, 3.5])
    assert (lax.pfa_spoof, strict.pfa_spoof) == (1.0, 0.5)
    labels = np.r_[np.ones(500), np.zeros(500)]
    scores = np.r_[bona, spoof]
    assert min_tdcf_2019(labels, scores, lax).tdcf != min_tdcf_2019(labels, scores, strict).tdcf


# --- sdd eval --asv-scores -----------------------------------------------------------------------------------------


def _eval_inputs(tmp_path):
    from test_cli_eval import _write_inputs

    return _write_inputs(tmp_path)


def test_sdd_eval_takes_the_t_dcf_asv_rates_from_asv_scores(tmp_path):
    import json

    from sddkit.cli.main import main
    from sddkit.documents import file_digest
    from sddkit.metrics import min_tdcf_2021

    protocol, score_file, labels, scores = _eval_inputs(tmp_path)
    asv_file = _asvspoof2019_file(tmp_path / "asv.txt")
    argv = ["eval", "--scores", str(score_file), "--protocol", str(protocol), "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "with"), "--asv-scores", str(asv_file)]) == 0
    assert main([*argv, "--out", str(tmp_path / "without")]) == 0
    data = json.loads((tmp_path / "with" / "report.json").read_text())
    rates = ASVRates(pfa=1 / 3, pmiss=0.0, pfa_spoof=0.5)
    assert data["config"]["asv"] == pytest.approx({"pfa": 1 / 3, "pmiss": 0.0, "pfa_spoof": 0.5})
    assert data["pooled"]["min_tdcf"]["2019"] == pytest.approx(min_tdcf_2019(labels, scores, rates).tdcf)
    assert data["pooled"]["min_tdcf"]["2021"] == pytest.approx(min_tdcf_2021(labels, scores, rates).tdcf)
    assert data["inputs"]["asv_scores"] == str(asv_file) and data["inputs"]["asv_scores_sha256"] == file_digest(
        asv_file
    )
    default = json.loads((tmp_path / "without" / "report.json").read_text())
    assert default["pooled"]["min_tdcf"]["2019"] != data["pooled"]["min_tdcf"]["2019"]
    assert default["inputs"]["asv_scores"] is None and default["config"]["asv"] == pytest.approx(vars(ASVRates()))
    assert "Pfa_spoof 0.5, at the EER threshold of asv.txt" in (tmp_path / "with" / "report.md").read_text()
    assert "the ASVspoof 5 organisers' pooled rates" in (tmp_path / "without" / "report.md").read_text()


def test_sdd_eval_refuses_a_bad_asv_score_file_before_evaluating(tmp_path, capsys):
    from sddkit.cli.main import main

    protocol, score_file, _, _ = _eval_inputs(tmp_path)
    bad = tmp_path / "asv.txt"
    bad.write_text("bonafide target 1\nbonafide nontarget 0\n")
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(score_file), "--protocol", str(protocol), "--out", str(out)]
    assert main([*argv, "--asv-scores", str(bad)]) == 2
    assert "no spoof trials" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--asv-scores", ""]) == 2
    assert "--asv-scores is an empty string" in capsys.readouterr().err
    assert main([*argv, "--asv-scores", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read the ASV score file" in capsys.readouterr().err
