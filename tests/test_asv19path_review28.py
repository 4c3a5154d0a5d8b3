"""Review 28 (ASVspoof 2019 LA / 2021 LA+DF / In-the-Wild path): the 2021 LA t-DCF of one phase from ASV scores of
every phase (the official scripts take the ASV rates of the evaluated phase's trials alone), the 2021 ASV files as
distributed (trial ids with their condition, LA_E_5013670-alaw-ita_tx), and the errors for an ASVspoof score file
given as the protocol or a protocol read with another format than its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.protocols import read_protocol
from sddkit.errors import ProtocolError
from sddkit.evaluation.asv import read_asv_scores
from sddkit.evaluation.report import EvalConfig, evaluate

PHASES = ("progress", "eval", "hidden")


def _official_2021(bona, spoof, tar, non, spf):
    """(EER %, min t-DCF) as the ASVspoof 2021 LA script computes them: compute_eer's threshold for the ASV, its
    error rates counted with >= / <, the revised t-DCF along the CM's per-trial DET walk."""

    def det(pos, neg):
        scores = np.concatenate([pos, neg])
        order = np.argsort(scores, kind="mergesort")
        is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])[order]
        miss = np.concatenate([[0], np.cumsum(is_pos) / pos.size])
        fa = np.concatenate([[1], (neg.size - (np.arange(1, scores.size + 1) - np.cumsum(is_pos))) / neg.size])
        return miss, fa, np.concatenate([[scores[order[0]] - 0.001], scores[order]])

    miss, fa, th = det(tar, non)
    t = th[np.argmin(np.abs(miss - fa))]
    pfa, pmiss, pfa_spf = np.mean(non >= t), np.mean(tar < t), np.mean(spf >= t)
    pmiss_cm, pfa_cm, _ = det(bona, spoof)
    k = np.argmin(np.abs(pmiss_cm - pfa_cm))
    ptar, pnon, pspoof = 0.95 * 0.99, 0.95 * 0.01, 0.05
    c0 = ptar * pmiss + pnon * 10 * pfa
    c1, c2 = ptar - c0, pspoof * 10 * pfa_spf
    return 100 * (pmiss_cm[k] + pfa_cm[k]) / 2, np.min((c0 + c1 * pmiss_cm + c2 * pfa_cm) / (c0 + min(c1, c2)))


def _la2021(tmp_path: Path, asv_phases=PHASES, cm_hidden: str = "hidden"):
    """A 2021 LA CM key, CM scores ('UTT SCORE'), and the ASV key's lines of ``asv_phases`` with their scores appended
    (as paste makes them), the ASV rates differing between phases; returns (key, scores, asv, cm, asv_rows)."""
    rng = np.random.default_rng(7)
    cm_lines, score_lines, cm = [], [], []
    for i in range(90):
        utt, phase = f"LA_E_{1000000 + i}", PHASES[i % 3]
        phase = cm_hidden if phase == "hidden" else phase
        bona = i % 5 < 2
        attack = "bonafide" if bona else ("A07", "A16")[i % 2]
        codec = ("none", "alaw", "gsm")[(i // 3) % 3]
        score = round(float(rng.normal(1.0 if bona else -1.0, 1.2)), 3)
        cm_lines.append(f"LA_00{10 + i % 4} {utt} {codec} - {attack} {'bonafide' if bona else 'spoof'} notrim {phase}")
        score_lines.append(f"{utt} {score}")
        cm.append((phase, bona, score))
    asv_lines, asv_rows = [], []
    shift = {"progress": 0.0, "eval": 2.5, "hidden": -1.5}  # the ASV's spoof scores differ between phases
    for i in range(120):
        phase, kind = asv_phases[i % len(asv_phases)], ("target", "nontarget", "spoof")[(i // 3) % 3]
        mean = {"target": 3.0, "nontarget": -3.0, "spoof": shift[phase]}[kind]
        score = round(float(rng.normal(mean, 1.5)), 3)
        attack = "A07" if kind == "spoof" else "bonafide"
        # the ASV key's trial ids carry their condition (LA_0007-alaw-ita_tx LA_E_5013670-alaw-ita_tx ...)
        trial = f"LA_00{10 + i % 4}-alaw-ita_tx LA_E_{2000000 + i}-alaw-ita_tx"
        asv_lines.append(f"{trial} alaw ita_tx {attack} {kind} notrim {phase} {score}")
        asv_rows.append((phase, kind, score))
    key = tmp_path / "keys" / "LA" / "CM" / "trial_metadata.txt"
    key.parent.mkdir(parents=True)
    key.write_text("\n".join(cm_lines) + "\n")
    scores = tmp_path / "scores.txt"
    scores.write_text("\n".join(score_lines) + "\n")
    asv = tmp_path / "asv_all.txt"
    asv.write_text("\n".join(asv_lines) + "\n")
    return key, scores, asv, cm, asv_rows


def _hand(cm, asv_rows, phase, asv_phase=None):
    """The official (EER %, min t-DCF) of the CM trials of ``phase`` before the ASV trials of ``asv_phase``."""
    bona = np.array([s for p, b, s in cm if p == phase and b])
    spoof = np.array([s for p, b, s in cm if p == phase and not b])
    kinds = ("target", "nontarget", "spoof")
    tar, non, spf = (np.array([s for p, k, s in asv_rows if p == (asv_phase or phase) and k == kind]) for kind in kinds)
    return _official_2021(bona, spoof, tar, non, spf)


def test_2021_la_eval_phase_takes_the_asv_rates_of_the_eval_phase_trials(tmp_path, capsys):
    # the ASV key's lines of every phase with their scores appended, and --partitions eval: the t-DCFs took the ASV
    # rates of all three phases' trials, silently, where the official 2021 script (and the awk of sddkit's own hint)
    # takes those of the eval phase: another min t-DCF than the challenge's
    key, scores, asv, cm, asv_rows = _la2021(tmp_path)
    out = tmp_path / "report"
    args = ["eval", "--scores", scores, "--protocol", key, "--partitions", "eval", "--asv-scores", asv]
    assert main([*map(str, args), "--out", str(out), "--bootstrap", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    eer, tdcf = _hand(cm, asv_rows, "eval")
    assert report["pooled"]["eer"] == pytest.approx(eer, abs=1e-9)
    assert report["pooled"]["min_tdcf"]["2021"] == pytest.approx(tdcf, abs=1e-12)
    assert report["inputs"]["asv_phases"] == ["eval"]
    tdcf_rows = [line for line in (out / "report.md").read_text().splitlines() if "min t-DCF" in line]
    assert len(tdcf_rows) == 2 and all("asv_all.txt (its trials of phase eval)" in row for row in tdcf_rows)
    eval_asv = read_asv_scores(asv).of_phases(["eval"])[0]
    assert report["config"]["asv"]["pfa_spoof"] == eval_asv.rates().pfa_spoof
    assert "its trials of the evaluated phase(s) eval (14 target, 13 non-target, 13 spoof)" in capsys.readouterr().err
    # the reader's phases option selects the same trials; so does the Python API given the selected table
    out2 = tmp_path / "report2"
    args2 = ["eval", "--scores", scores, "--protocol", key, "--protocol-option", "phases=eval", "--asv-scores", asv]
    assert main([*map(str, args2), "--out", str(out2), "--bootstrap", "0"]) == 0
    assert json.loads((out2 / "report.json").read_text())["pooled"]["min_tdcf"] == report["pooled"]["min_tdcf"]
    table = read_protocol(key, phases=["eval"])
    api = evaluate(
        table, np.array([s for p, _, s in cm if p == "eval"]), EvalConfig(bootstrap=0), asv_scores=read_asv_scores(asv)
    )
    assert api.pooled["min_tdcf"]["2021"] == pytest.approx(tdcf, abs=1e-12)
    # every phase evaluated: every ASV trial counts, as before
    whole = evaluate(
        read_protocol(key), np.array([s for _, _, s in cm]), EvalConfig(bootstrap=0), asv_scores=read_asv_scores(asv)
    )
    assert whole.config.asv == read_asv_scores(asv).rates()


def test_stage1_hidden_track_meets_the_full_asv_keys_hidden_and_no_common_phase_is_refused(tmp_path):
    # the stage-1 CM keys name the hidden phase hidden_track, the full ASV key hidden: one phase
    key, scores, asv, cm, asv_rows = _la2021(tmp_path, cm_hidden="hidden_track")
    out = tmp_path / "report"
    args = ["eval", "--scores", scores, "--protocol", key, "--partitions", "hidden_track", "--asv-scores", asv]
    assert main([*map(str, args), "--out", str(out), "--bootstrap", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"]["asv_phases"] == ["hidden"]
    assert report["pooled"]["min_tdcf"]["2021"] == pytest.approx(_hand(cm, asv_rows, "hidden_track", "hidden")[1])
    # ASV scores of the progress phase alone for the eval phase's trials: said, not taken as the eval phase's
    key2, scores2, asv2, _, _ = _la2021(tmp_path / "other", asv_phases=("progress",))
    table = read_protocol(key2).where(partition="eval")
    with pytest.raises(
        ProtocolError, match=r"ASVspoof 2021 phase\(s\) progress, the evaluated trials of eval: none in common"
    ):
        evaluate(table, np.zeros(len(table)), EvalConfig(bootstrap=0), asv_scores=read_asv_scores(asv2))


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("bonafide target 3.35449", r"an ASV score file \(SOURCE KEY SCORE.*as --asv-scores"),
        ("A07 spoof -1.204", r"an ASV score file \(SOURCE KEY SCORE.*as --asv-scores"),
        ("LA_0020 LA_E_1000169 4.05921", r"an ASVspoof 2021 ASV score file .*keys/<track>/CM/trial_metadata\.txt"),
        (
            "LA_0007-alaw-ita_tx LA_E_5013670-alaw-ita_tx -4.8546",
            r"an ASVspoof 2021 ASV score file .*keys/<track>/CM/trial_metadata\.txt",
        ),
        ("LA_E_1000109 0.1981", r"a score file \(UTT SCORE\), not a protocol: .*as --scores"),
        ("LA_E_1000073 - bonafide 0.1981", r"a countermeasure score file \(UTT SOURCE KEY SCORE.*as --scores"),
    ],
)
def test_an_asvspoof_score_file_given_as_the_protocol_is_named_as_such(tmp_path, line, said):
    # --scores and --protocol swapped, or the organisers' ASV scores given as the key: "cannot tell the protocol format
    # from this line ...; name the format explicitly", which no format would read
    path = tmp_path / "given.txt"
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(ProtocolError, match=said) as caught:
        read_protocol(path)
    assert "cannot tell" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text", "named", "detected"),
    [
        (
            "trial_metadata.txt",
            "LA_0020 LA_E_1000109 none - bonafide bonafide notrim eval\n",
            "asvspoof2019_la",
            "asvspoof2021_la",
        ),
        (
            "ASVspoof2019.LA.cm.eval.trl.txt",
            "LA_0010 LA_E_1000073 - - bonafide\n",
            "asvspoof2021_la",
            "asvspoof2019_la",
        ),
        ("meta.csv", "file,speaker,label\n0.wav,Alec Guinness,bona-fide\n", "asvspoof2019_la", "in_the_wild"),
    ],
)
def test_a_named_format_that_does_not_read_the_file_names_the_one_that_does(
    tmp_path, capsys, name, text, named, detected
):
    # --protocol-format asvspoof2019_la on the 2021 LA key: "expected 5 fields (...), got 8", and nothing said which
    # reader takes the file (detection, without the flag, reads it)
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ProtocolError, match=rf"this file reads as format '{detected}', not '{named}'"):
        read_protocol(path, format=named)
    argv = ["eval", "--scores", path, "--protocol", path, "--protocol-format", named, "--out", tmp_path / "r"]
    assert main([str(a) for a in argv]) == 2
    assert f"this file reads as format '{detected}'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("LA_0007-alaw-ita_tx LA_E_5013670-alaw-ita_tx -4.8546", "an ASVspoof 2021 ASV score file"),
        (
            "LA_0007-alaw-ita_tx LA_E_5013670-alaw-ita_tx alaw ita_tx bonafide nontarget notrim eval",
            "an ASVspoof 2021 ASV key",
        ),
    ],
)
def test_the_2021_asv_files_as_distributed_get_the_join_hint(tmp_path, line, what):
    # the ASV key and its score.txt name a trial with its condition (LA_E_5013670-alaw-ita_tx): the hint saying how to
    # join the two was given for plain ids (LA_E_5013670) only, which these files never hold
    path = tmp_path / "asv.txt"
    path.write_text(line + "\n")
    with pytest.raises(ProtocolError, match=rf"this is {what} .*paste -d' ' keys/LA/ASV/trial_metadata\.txt"):
        read_asv_scores(path)
