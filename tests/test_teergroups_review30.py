"""Review 30 (teergroups): the t-EER of ASVspoof 5 track 2 per attack and per codec condition.

The ASVspoof 5 evaluation package's full evaluation (``asvspoof-challenge/asvspoof5``,
``evaluation-package/calculate_metrics_full.py``, ``calculate_aDCF_tdcf_tEER_full``) gives the t-EER of each attack
(every target and non-target trial with that attack's spoof trials: the CM scores of the target and non-target trials
as the bona fide set, those of the attack's spoof trials as the spoof set, the ASV scores of the same trials by kind)
and of each codec condition (the condition's own target, non-target and spoof trials); ``sdd eval`` gave the pooled
t-EER alone.

The expected figures are computed here by the t-EER's definition in exact arithmetic (:func:`_concurrent_teer`), from
the trials the package takes, listed by hand: not by sddkit's ``t_eer``.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from eval_support import labelled_table

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.evaluation.asv import ASVScores
from sddkit.evaluation.report import evaluate, render_markdown


def _concurrent_teer(bona, spoof, target, nontarget, spoofed) -> float:
    """The concurrent t-EER in percent (Kinnunen et al. 2023), as the package's ``compute_teer`` defines it, of
    scores without ties, in fractions: at each ASV threshold (accept iff score >= it) whose tandem path exists
    (Pmiss_asv < (Pfa_non + Pfa_spf) / 2) the CM threshold nearest the path at rho 0.5; of those pairs, the one nearest
    the crossing (|Pfa_non / Pfa_spf - Pfa_cm / (1 - Pmiss_cm)|) gives Pfa_cm Pfa_spf. Data that put a point on the
    path's edge, or two at the same least distance, are refused: rounding would decide there."""
    assert len(set(bona + spoof)) == len(bona + spoof) and len(set(target + nontarget + spoofed)) == len(
        target + nontarget + spoofed
    )

    def rates(t, accepted, rejected):
        miss = Fraction(sum(x < t for x in accepted), len(accepted))
        return (miss, *(Fraction(sum(x >= t for x in r), len(r)) for r in rejected))

    cm = [rates(t, bona, [spoof]) for t in [*sorted(bona + spoof), float("inf")]]
    pairs = []
    for t in [*sorted(target + nontarget + spoofed), float("inf")]:
        p_miss, p_non, p_spf = rates(t, target, [nontarget, spoofed])
        assert p_miss != (p_non + p_spf) / 2, "an ASV point on the path's edge: choose other scores"
        if not p_miss < (p_non + p_spf) / 2:
            continue
        gaps = [abs(m + (1 - m) * p_miss - ((1 - m) * p_non + fa * p_spf) / 2) for m, fa in cm]
        assert gaps.count(min(gaps)) == 1, "two CM points as near the path: choose other scores"
        m, fa = cm[gaps.index(min(gaps))]
        if p_spf and m < 1:
            pairs.append((abs(p_non / p_spf - fa / (1 - m)), fa * p_spf))
    nearest = min(d for d, _ in pairs)
    values = [v for d, v in pairs if d == nearest]
    assert len(values) == 1, "two pairs as near the crossing: choose other scores"
    return float(100 * values[0])


# an ASVspoof 5 eval set of 13 files: (file, speaker, codec, attack or bonafide, CM score)
FILES = [
    ("01", "E_0001", "-", "bonafide", -5),
    ("02", "E_0001", "-", "bonafide", 21),
    ("03", "E_0001", "-", "bonafide", 10),
    ("04", "E_0001", "C01", "bonafide", 16),
    ("05", "E_0001", "C01", "bonafide", -3),
    ("06", "E_0001", "C01", "bonafide", 35),
    ("07", "E_0002", "-", "A17", -6),
    ("08", "E_0002", "-", "A17", -4),
    ("09", "E_0002", "C01", "A17", -8),
    ("10", "E_0002", "C01", "A17", -26),
    ("11", "E_0002", "-", "A18", -18),
    ("12", "E_0002", "C01", "A18", 29),
    ("13", "E_0002", "C01", "A18", -7),
]
BONA = ["01", "02", "03", "04", "05", "06"]
# the SASV key's trials: (claimed speaker, file, asv-label, ASV score): each bona fide file a target trial and two
# non-target ones, each spoof file a spoof trial
TRIALS = [
    *(("E_0001", f, "target", s) for f, s in zip(BONA, [5, -4, -6, 42, 10, -16])),
    *(("E_0009", f, "nontarget", s) for f, s in zip(BONA, [19, -30, 28, -8, 6, 7])),
    *(("E_0010", f, "nontarget", s) for f, s in zip(BONA, [-14, -26, 9, 15, 23, -15])),
    *(
        ("E_0002", f, "spoof", s)
        for f, s in zip(["07", "08", "09", "10", "11", "12", "13"], [-20, 16, -3, -22, 4, 8, -17])
    ),
]


def _package_trials(attack: str | None = None, codec: str | None = None, own_asv: bool = True):
    """The CM bona fide and spoof scores and the ASV target, non-target and spoof scores of the trials the package's
    full evaluation takes for an attack's cell (every codec) or a codec condition's (every attack): the group's trials,
    each bona fide file's CM score once (sddkit counts each protocol utterance once, the package once per trial).
    ``own_asv`` False: the ASV scores of every trial instead (the figure the group's own trials correct)."""
    of = {f: (c if c != "-" else "none", a, s) for f, _, c, a, s in FILES}
    kept = [t for t in TRIALS if codec is None or of[t[1]][0] == codec]
    kept = [t for t in kept if t[2] != "spoof" or attack is None or of[t[1]][1] == attack]
    bona = sorted({of[t[1]][2] for t in kept if t[2] != "spoof"})
    spoof = [of[t[1]][2] for t in kept if t[2] == "spoof"]
    asv = kept if own_asv else TRIALS
    return bona, spoof, *([t[3] for t in asv if t[2] == k] for k in ("target", "nontarget", "spoof"))


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _asvspoof5_track2(tmp_path):
    """The set's track-1 protocol, a CM score file, the package's SASV key (no attack or codec: the protocol's lines
    of the files name them) and a track-2 submission (its asv-score column the ASV's; cm-score and sasv-score too)."""
    protocol = _write(
        tmp_path / "ASVspoof5.eval.track_1.tsv",
        [
            f"{spk} E_00000000{f} F {c} {'-' if c == '-' else 1} - {'-' if a == 'bonafide' else 'AC1'} {a} "
            f"{'bonafide' if a == 'bonafide' else 'spoof'} -"
            for f, spk, c, a, _ in FILES
        ],
    )
    cm = _write(tmp_path / "cm.tsv", ["filename\tcm-score", *(f"E_00000000{f}\t{s}" for f, *_, s in FILES)])
    cm_of = {f: s for f, *_, s in FILES}
    key = _write(
        tmp_path / "sasv_keys.tsv",
        [
            "spk\tfilename\tcm-label\tasv-label",
            *(f"{spk}\tE_00000000{f}\t{'spoof' if k == 'spoof' else 'bonafide'}\t{k}" for spk, f, k, _ in TRIALS),
        ],
    )
    scores = _write(
        tmp_path / "sasv_scores.tsv",
        [
            "spk\tfilename\tcm-score\tasv-score\tsasv-score",
            *(f"{spk}\tE_00000000{f}\t{cm_of[f]}\t{s}\t{s + cm_of[f]}" for spk, f, _, s in TRIALS),
        ],
    )
    return protocol, cm, scores, key


def test_sdd_eval_gives_the_t_eer_per_attack_and_per_codec_of_the_packages_trials(tmp_path, capsys):
    protocol, cm, scores, key = _asvspoof5_track2(tmp_path)
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(cm), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]
    assert main([*argv, "--asv-scores", str(scores), "--asv-key", str(key)]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    # the figures of the package's cells (each bona fide file's CM score counted once)
    expected = {
        "pooled": _concurrent_teer(*_package_trials()),
        "A17": _concurrent_teer(*_package_trials(attack="A17")),
        "A18": _concurrent_teer(*_package_trials(attack="A18")),
        "none": _concurrent_teer(*_package_trials(codec="none")),
        "C01": _concurrent_teer(*_package_trials(codec="C01")),
    }
    # every cell a figure of its own
    assert len({round(v, 9) for v in expected.values()}) == 5
    assert report["pooled"]["t_eer"] == pytest.approx(expected["pooled"])
    attacks = {r["attack"]: r for r in report["per_attack"]}
    codecs = {r["codec"]: r for r in report["per_codec"]}
    for name, row in [*attacks.items(), *codecs.items()]:
        assert row["t_eer"] == pytest.approx(expected[name], abs=1e-9), name
        assert row["t_eer_note"] == "" and row["t_eer_cm_threshold"] is not None, name
    # an attack's row takes its own ASV spoof trials alone, a condition's its own ASV trials of each kind: with every
    # ASV spoof trial (every ASV trial) theirs were other figures
    bona, spoof, *_ = _package_trials(attack="A17")
    assert _concurrent_teer(bona, spoof, *_package_trials(own_asv=False)[2:]) != pytest.approx(expected["A17"])
    bona, spoof, *_ = _package_trials(codec="C01")
    assert _concurrent_teer(bona, spoof, *_package_trials(own_asv=False)[2:]) != pytest.approx(expected["C01"])
    markdown = (out / "report.md").read_text()
    assert "### Per-attack t-EER (concurrent, before the ASV of sasv_scores.tsv)" in markdown
    assert "### Per-codec t-EER (concurrent, before the ASV of sasv_scores.tsv)" in markdown
    row = attacks["A18"]
    cells = f"| A18 | 44.444 | {row['t_eer_cm_threshold']:.4f} | {row['t_eer_asv_threshold']:.4f} |"
    assert cells in markdown
    for name in ("per_attack.csv", "per_codec.csv"):
        header = (out / name).read_text().splitlines()[0].split(",")
        assert {"t_eer", "t_eer_cm_threshold", "t_eer_asv_threshold", "t_eer_note"} <= set(header), name
    # --by codec is the per-codec rows, t-EER and all
    by = tmp_path / "by"
    argv = [*argv[:-4], "--out", str(by), "--bootstrap", "0", "--by", "codec"]
    assert main([*argv, "--asv-scores", str(scores), "--asv-key", str(key)]) == 0
    rows = json.loads((by / "report.json").read_text())["per_column"]["codec"]
    assert {r["codec"]: r["t_eer"] for r in rows} == pytest.approx({k: expected[k] for k in ("none", "C01")})


def test_a_group_without_its_trials_has_a_null_t_eer_with_the_reason():
    labels = np.array([1, 1, 0, 0])
    scores = np.array([2.0, 1.0, 0.0, -1.0])
    table = labelled_table(labels)  # spoofs of attack A01
    target, nontarget, spoof = np.array([2.0, 1.5]), np.array([0.0, -1.0]), np.array([1.0, 0.5])
    # an ASV file whose spoof lines name no attack (ASVspoof 2019's without the attack field)
    row = evaluate(table, scores, asv_scores=ASVScores(target, nontarget, spoof)).per_attack[0]
    assert row["t_eer"] is None and row["t_eer_cm_threshold"] is None and row["t_eer_asv_threshold"] is None
    assert row["t_eer_note"].startswith("the ASV scores name no spoof trials' attacks")
    # one naming another attack's spoofs alone
    other = ASVScores(target, nontarget, spoof, spoof_attacks=np.array(["A02", "A02"], object))
    report = evaluate(table, scores, asv_scores=other)
    assert report.per_attack[0]["t_eer_note"] == "the ASV scores hold no spoof trial of attack A01"
    assert report.pooled["t_eer"] is not None  # the pooled figure takes every spoof trial, as before
    markdown = render_markdown(report)
    assert "| A01 | - (the ASV scores hold no spoof trial of attack A01) | - | - |" in markdown
    # without ASV scores the rows carry no t-EER keys
    assert "t_eer" not in evaluate(table, scores).per_attack[0]


def test_a_codec_condition_without_its_asv_or_cm_trials_has_a_null_t_eer():
    # bona fide and spoof trials of C01; bona fide alone of C02 (no spoof: no CM spoof set)
    records = [
        ("u0", "bonafide", "-", "C01", 1.5),
        ("u1", "bonafide", "-", "C01", 0.0),
        ("u2", "bonafide", "-", "C01", 2.5),
        ("u3", "spoof", "A01", "C01", -4.0),
        ("u4", "spoof", "A01", "C01", 1.0),
        ("u5", "spoof", "A01", "C01", 2.0),
        ("u6", "bonafide", "-", "C02", 0.5),
    ]
    table = UtteranceTable.from_records(
        {"utt_id": u, "label": label, "attack": attack, "codec": codec} for u, label, attack, codec, _ in records
    )
    scores = np.array([r[-1] for r in records])
    # ASV trials: C01's target 6.0, 6.5, 2.0, non-target -3.5, -2.5, -1.5, spoof 1.5, 4.5, -3.0; C02's target 5.0 and
    # non-target 0.0 (no spoof trial)
    asv = ASVScores(
        np.array([6.0, 6.5, 2.0, 5.0]),
        np.array([-3.5, -2.5, -1.5, 0.0]),
        np.array([1.5, 4.5, -3.0]),
        codecs=(
            np.array(["C01"] * 3 + ["C02"], object),
            np.array(["C01"] * 3 + ["C02"], object),
            np.array(["C01"] * 3, object),
        ),
    )
    codecs = {r["codec"]: r for r in evaluate(table, scores, asv_scores=asv).per_codec}
    expected = _concurrent_teer(
        [1.5, 0.0, 2.5], [-4.0, 1.0, 2.0], [6.0, 6.5, 2.0], [-3.5, -2.5, -1.5], [1.5, 4.5, -3.0]
    )
    assert codecs["C01"]["t_eer"] == pytest.approx(expected, abs=1e-9) and codecs["C01"]["t_eer_note"] == ""
    assert codecs["C02"]["t_eer"] is None
    assert codecs["C02"]["t_eer_note"] == "the ASV scores hold no target, non-target and spoof trials of codec C02"
    # ASV lines that name no codec (ASVspoof 2019's): no condition's own ASV trials
    plain = ASVScores(asv.target, asv.nontarget, asv.spoof)
    rows = evaluate(table, scores, asv_scores=plain).per_codec
    assert all(r["t_eer"] is None and r["t_eer_note"].startswith("the ASV scores name no trials' codecs") for r in rows)


def test_each_partitions_attack_takes_the_asv_trials_of_its_asvspoof_2021_phase():
    # progress and eval trials evaluated together (ASVspoof 2021 LA): each partition's A07 row takes the CM trials of
    # its partition and the ASV trials of its phase, as its min t-DCFs do
    cm = {"progress": ([5.5, -1.5, -1.0], [1.0, -3.0, -0.5]), "eval": ([0.5, -0.5, 7.5], [0.0, 3.5, 3.0])}
    phase = {
        "progress": ([2.0, 16.5, 12.0], [-12.0, 14.0, -10.0, -9.5], [-14.0, 8.0, 3.0]),
        "eval": ([13.5, 6.5, -0.5], [7.5, 11.5, 4.5, -8.0], [0.5, 7.0, -4.5]),
    }
    table = UtteranceTable.from_records(
        {"utt_id": f"{part}{i}{k}", "label": label, "attack": attack, "partition": part}
        for part, sets in cm.items()
        for k, (label, attack) in enumerate([("bonafide", "-"), ("spoof", "A07")])
        for i in range(len(sets[k]))
    )
    scores = np.array([x for sets in cm.values() for xs in sets for x in xs])
    target, nontarget, spoof = (np.array(phase["progress"][k] + phase["eval"][k]) for k in range(3))
    phases = tuple(
        np.array(["progress"] * len(phase["progress"][k]) + ["eval"] * len(phase["eval"][k]), object) for k in range(3)
    )
    asv = ASVScores(target, nontarget, spoof, phases=phases, spoof_attacks=np.array(["A07"] * 6, object))
    rows = {r["partition"]: r for r in evaluate(table, scores, asv_scores=asv).per_attack}
    for part in ("progress", "eval"):
        expected = _concurrent_teer(*cm[part], *phase[part])
        assert rows[part]["t_eer"] == pytest.approx(expected, abs=1e-9), part
    # with every phase's ASV trials the progress row was another figure
    everything = _concurrent_teer(*cm["progress"], list(target), list(nontarget), list(spoof))
    assert everything != pytest.approx(rows["progress"]["t_eer"])
