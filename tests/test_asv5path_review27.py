"""Review 27 (ASVspoof 5 / 2019 / 2021 official-metric paths): the t-DCFs of evaluate() given ASV scores, and the
errors of --asv-key given a score file that carries its kinds or ASVspoof 2021's pair of ASV files."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation.asv import ASVScores, read_asv_scores
from sddkit.evaluation.report import EvalConfig, evaluate, render_markdown
from sddkit.metrics import ASVRates, TDCFCost


def _official_min_tdcfs(bona, spoof, tar, non, spf):
    """The ASVspoof 2019 (legacy) and 2021 (revised) min t-DCFs as the official scripts compute them: the ASV rates
    at the threshold compute_eer returns, counted with >= / <, and the CM's per-trial DET walk."""
    all_asv = np.concatenate([tar, non])
    order = np.argsort(all_asv, kind="mergesort")
    is_tar = np.concatenate([np.ones(tar.size), np.zeros(non.size)])[order]
    frr = np.concatenate([[0], np.cumsum(is_tar) / tar.size])
    far = np.concatenate([[1], (non.size - (np.arange(1, all_asv.size + 1) - np.cumsum(is_tar))) / non.size])
    thresholds = np.concatenate([[all_asv[order[0]] - 0.001], all_asv[order]])
    t = thresholds[np.argmin(np.abs(frr - far))]
    pfa, pmiss = np.sum(non >= t) / non.size, np.sum(tar < t) / tar.size
    pmiss_spf, pfa_spf = np.sum(spf < t) / spf.size, np.sum(spf >= t) / spf.size
    cm = np.concatenate([bona, spoof])
    order = np.argsort(cm, kind="mergesort")
    is_bona = np.concatenate([np.ones(bona.size), np.zeros(spoof.size)])[order]
    pmiss_cm = np.concatenate([[0], np.cumsum(is_bona) / bona.size])
    pfa_cm = np.concatenate([[1], (spoof.size - (np.arange(1, cm.size + 1) - np.cumsum(is_bona))) / spoof.size])
    ptar, pnon, pspoof = 0.95 * 0.99, 0.95 * 0.01, 0.05
    c1 = ptar * (1 - pmiss) - pnon * 10 * pfa
    c2 = 10 * pspoof * (1 - pmiss_spf)
    legacy = np.min((c1 * pmiss_cm + c2 * pfa_cm) / min(c1, c2))
    c0 = ptar * pmiss + pnon * 10 * pfa
    r1, r2 = ptar - c0, pspoof * 10 * pfa_spf
    revised = np.min((c0 + r1 * pmiss_cm + r2 * pfa_cm) / (c0 + min(r1, r2)))
    return legacy, revised


def _table(labels):
    return UtteranceTable.from_records(
        {"utt_id": f"u{i}", "path": f"u{i}.wav", "label": "bonafide" if y else "spoof", "attack": "-" if y else "A07"}
        for i, y in enumerate(labels)
    )


def test_evaluate_given_asv_scores_takes_the_t_dcfs_asv_rates_from_them_as_sdd_eval_does():
    # evaluate(..., asv_scores=asv) took the t-EER from those scores but the t-DCFs from the ASVspoof 5 organisers'
    # pooled rates: two ASV systems in one report, and a t-DCF that was not the official one of the ASV given (sdd eval
    # --asv-scores, with the same scores, reported the official figure)
    rng = np.random.default_rng(3)
    bona, spoof = np.round(rng.normal(1.5, 1, 60), 1), np.round(rng.normal(-1.0, 1.2, 140), 1)
    asv = ASVScores(rng.normal(3, 1.5, 80), rng.normal(-3, 1.5, 120), rng.normal(0.5, 2, 90))
    labels = np.r_[np.ones(bona.size, dtype=int), np.zeros(spoof.size, dtype=int)]
    report = evaluate(_table(labels), np.r_[bona, spoof], EvalConfig(bootstrap=0), asv_scores=asv)
    legacy, revised = _official_min_tdcfs(bona, spoof, asv.target, asv.nontarget, asv.spoof)
    assert report.pooled["min_tdcf"]["2019"] == pytest.approx(legacy, abs=1e-12)
    assert report.pooled["min_tdcf"]["2021"] == pytest.approx(revised, abs=1e-12)
    assert report.to_dict()["config"]["asv"] == {
        "pfa": asv.rates().pfa,
        "pmiss": asv.rates().pmiss,
        "pfa_spoof": asv.rates().pfa_spoof,
    }
    tdcf_rows = [line for line in render_markdown(report).splitlines() if "min t-DCF" in line]
    assert len(tdcf_rows) == 2
    assert all("at the EER threshold of the given ASV scores" in row for row in tdcf_rows)
    assert not any("organisers" in row for row in tdcf_rows)
    # rates named in the config are kept (the caller chose them), and so are the defaults without ASV scores
    chosen = ASVRates(pfa=0.05, pmiss=0.05, pfa_spoof=0.3)
    kept = evaluate(_table(labels), np.r_[bona, spoof], EvalConfig(bootstrap=0, asv=chosen), asv_scores=asv)
    assert kept.config.asv == chosen and "as given" in render_markdown(kept)
    plain = evaluate(_table(labels), np.r_[bona, spoof], EvalConfig(bootstrap=0))
    assert plain.config.asv == ASVRates() and "organisers' pooled rates" in render_markdown(plain)
    assert plain.config.tdcf == TDCFCost()


def test_asv_key_with_a_score_file_whose_lines_carry_their_kinds_says_to_drop_it(tmp_path):
    # ASVspoof 2019's ASV scores given with --asv-key were told "the header ['bonafide', 'target', '3.2'] has no
    # target speaker column": a data line called a header, and no word that the file needs no key
    scores = tmp_path / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"
    scores.write_text("bonafide target 3.2\nbonafide nontarget -2.5\nA07 spoof 0.4\n")
    key = tmp_path / "sasv_key.tsv"
    key.write_text("spk\tfilename\tcm-label\tasv-label\nE_0001\tE_0000000001\tbonafide\ttarget\n")
    with pytest.raises(ProtocolError) as info:
        read_asv_scores(scores, key)
    message = str(info.value)
    assert "'bonafide target 3.2' is no header" in message and "read without --asv-key" in message
    assert "the header" not in message
    # without the key the file reads as ever
    assert read_asv_scores(scores).target.tolist() == [3.2]


def test_asvspoof2021_asv_score_file_and_key_given_as_asv_scores_and_asv_key_get_the_join_hint(tmp_path):
    # ASVspoof 2021's score.txt (SPEAKER UTT SCORE) and its ASV key (kinds, no scores) given as --asv-scores and
    # --asv-key, as their names invite, were refused as "expected 5 columns (the SASV key's header ...)" with no word
    # of how the official script pairs the two
    key = tmp_path / "trial_metadata.txt"
    key.write_text(
        "LA_0015 LA_E_1103494 alaw ita_tx bonafide target notrim eval\n"
        "LA_0015 LA_E_1103495 alaw ita_tx bonafide nontarget notrim eval\n"
        "LA_0007 LA_E_5013670 alaw ita_tx A07 spoof notrim eval\n"
    )
    scores = tmp_path / "score.txt"
    scores.write_text("LA_0015 LA_E_1103494 3.5\nLA_0015 LA_E_1103495 -4.25\nLA_0007 LA_E_5013670 1.5\n")
    with pytest.raises(ProtocolError) as info:
        read_asv_scores(scores, key)
    assert "this is an ASVspoof 2021 ASV key" in str(info.value)
    assert "paste -d' ' keys/LA/ASV/trial_metadata.txt" in str(info.value) and "without --asv-key" in str(info.value)
    # the score file with an ASVspoof 5 key: said to be no header, and what it is
    sasv_key = tmp_path / "sasv_key.tsv"
    sasv_key.write_text("spk\tfilename\tcm-label\tasv-label\nLA_0015\tLA_E_1103494\tbonafide\ttarget\n")
    with pytest.raises(ProtocolError) as info:
        read_asv_scores(scores, sasv_key)
    assert "is no header" in str(info.value) and "this is an ASVspoof 2021 ASV score file" in str(info.value)


def _official_eer(bona, spoof):
    """compute_eer of the ASVspoof packages: the per-trial walk of the sorted scores (bona fide first on ties)."""
    scores = np.concatenate([bona, spoof])
    order = np.argsort(scores, kind="mergesort")
    is_bona = np.concatenate([np.ones(bona.size), np.zeros(spoof.size)])[order]
    frr = np.concatenate([[0], np.cumsum(is_bona) / bona.size])
    far = np.concatenate([[1], (spoof.size - (np.arange(1, scores.size + 1) - np.cumsum(is_bona))) / spoof.size])
    i = np.argmin(np.abs(frr - far))
    return float(np.mean((frr[i], far[i])))


def test_tied_scores_that_move_the_eer_off_the_official_compute_eer_are_warned_of_with_its_figure(tmp_path, capsys):
    # ASVspoof 2019 LA scores written to one decimal: the pooled EER was 22.17 % where the official compute_eer gives
    # 23.17 %, and nothing in the report said that, or why
    from sddkit.cli.main import main

    rng = np.random.default_rng(7)
    bona, spoof = np.round(rng.normal(1.5, 1, 100), 1), np.round(rng.normal(-0.6, 1.2, 300), 1)
    labels = np.r_[np.ones(bona.size, dtype=int), np.zeros(spoof.size, dtype=int)]
    report = evaluate(_table(labels), np.r_[bona, spoof], EvalConfig(bootstrap=0))
    official = 100 * _official_eer(bona, spoof)
    assert abs(report.pooled["eer"] - official) > 0.1  # the documented departure on ties
    (note,) = [w for w in report.warnings if "compute_eer" in w]
    assert f"gives {official:.3f} %" in note and f"the pooled EER, {report.pooled['eer']:.3f} %" in note
    # through sdd eval: printed, and in report.json and report.md
    protocol = tmp_path / "ASVspoof2019.LA.cm.eval.trl.txt"
    protocol.write_text(
        "".join(
            f"LA_0001 LA_E_{i:07d} - {'-' if y else 'A07'} {'bonafide' if y else 'spoof'}\n"
            for i, y in enumerate(labels)
        )
    )
    scores = tmp_path / "scores.txt"
    scores.write_text("".join(f"LA_E_{i:07d} {s}\n" for i, s in enumerate(np.r_[bona, spoof])))
    assert (
        main(
            [
                "eval",
                "--scores",
                str(scores),
                "--protocol",
                str(protocol),
                "--out",
                str(tmp_path / "r"),
                "--bootstrap",
                "0",
            ]
        )
        == 0
    )
    assert f"gives {official:.3f} %" in capsys.readouterr().err
    import json

    written = json.loads((tmp_path / "r" / "report.json").read_text())
    assert any(f"gives {official:.3f} %" in w for w in written["warnings"])
    assert f"gives {official:.3f} %" in (tmp_path / "r" / "report.md").read_text()
    # no note where the ties leave the EER as the official one, nor without ties across the classes
    assert not [
        w
        for w in evaluate(
            _table(labels), np.r_[bona, spoof] + np.r_[np.zeros(100), np.full(300, 1e-6)], EvalConfig(bootstrap=0)
        ).warnings
        if "compute_eer" in w
    ]
    # a tie across the classes (at 1.0) that leaves the EER as the official one: 25 % both
    same_bona, same_spoof = np.array([2.0, 1.0, 1.0, -1.0]), np.array([1.0, 0.0, -2.0, -3.0])
    tied = evaluate(_table([1] * 4 + [0] * 4), np.r_[same_bona, same_spoof], EvalConfig(bootstrap=0))
    assert tied.pooled["eer"] == pytest.approx(100 * _official_eer(same_bona, same_spoof)) == pytest.approx(25.0)
    assert not [w for w in tied.warnings if "compute_eer" in w]
    # and the smallest case: one tie, 12.5 % here (a threshold takes or leaves both), 25 % there
    small = evaluate(
        _table([1] * 4 + [0] * 4), np.r_[[3.0, 2.0, 1.0, 0.0], [0.0, -1.0, -2.0, -3.0]], EvalConfig(bootstrap=0)
    )
    (note,) = [w for w in small.warnings if "compute_eer" in w]
    assert note.startswith("2 trials share their score") and "gives 25.000 %" in note and "EER, 12.500 %" in note
