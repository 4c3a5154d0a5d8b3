"""Review 30 (teertrials): the t-EER of an ASVspoof 5 keyed ASV table counts each CM score once per trial.

The ASVspoof 5 evaluation package (``asvspoof-challenge/asvspoof5``, ``evaluation-package/util.py``,
``load_sasv_scores_keys``) joins the SASV key with a score table holding one CM score per trial, and
``calculate_metrics.py`` (``calculate_aDCF_tdcf_tEER``) takes the CM scores of the target and non-target trials as
the bona fide set and those of the spoof trials as the spoof set: a bona fide file in five trials counts five times.
``sdd eval --asv-scores T --asv-key K`` counted each protocol utterance once, another figure wherever the files enter
different numbers of trials (here 8.3 % where the package gives 41.7 %).

The expected figures follow the package's join here, trial by trial, and its ``compute_teer`` walk in exact
arithmetic (:func:`_package_teer`), not sddkit's ``t_eer``.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from eval_support import labelled_table

from sddkit.cli.main import main
from sddkit.evaluation.asv import ASVScores
from sddkit.evaluation.report import evaluate


def _walk(groups: list[list[float]]) -> list[list[int]]:
    """Per group, how many of its scores lie among the first k of all scores sorted (ties: the earlier group first,
    as the package's mergesort of the concatenated groups), k = 0..K."""
    tagged = sorted((x, g) for g, xs in enumerate(groups) for x in xs)
    counts = [[0] for _ in groups]
    for _, g in tagged:
        for i, c in enumerate(counts):
            c.append(c[-1] + (g == i))
    return counts


def _package_teer(bona, spoof, target, nontarget, spoofed) -> float:
    """The concurrent t-EER in percent as the package's ``compute_teer`` walks it (rho 0.5), in fractions: one CM
    point per trial of the sorted CM scores (a tied run's inner points too), one ASV point per ASV trial; at each ASV
    point with a tandem path (Pmiss_asv < (Pfa_non + Pfa_spf) / 2) the first CM point nearest the path; of those pairs
    the one nearest the crossing gives Pfa_cm Pfa_spf. Data with two pairs as near are refused (rounding decides)."""
    n_bona, n_spoof = len(bona), len(spoof)
    bona_below, spoof_below = _walk([bona, spoof])
    cm = [(Fraction(b, n_bona), 1 - Fraction(s, n_spoof)) for b, s in zip(bona_below, spoof_below)]
    pairs = []
    for t, n, s in zip(*_walk([target, nontarget, spoofed])):
        p_miss, p_non, p_spf = Fraction(t, len(target)), 1 - Fraction(n, len(nontarget)), 1 - Fraction(s, len(spoofed))
        if not p_miss < (p_non + p_spf) / 2:
            continue
        gaps = [abs(m + (1 - m) * p_miss - ((1 - m) * p_non + fa * p_spf) / 2) for m, fa in cm]
        m, fa = cm[gaps.index(min(gaps))]  # the first as near (np.argmin)
        if p_spf and m < 1:
            pairs.append((abs(p_non / p_spf - fa / (1 - m)), fa * p_spf))
    nearest = min(d for d, _ in pairs)
    values = [v for d, v in pairs if d == nearest]
    assert len(values) == 1, "two pairs as near the crossing: choose other scores"
    return float(100 * values[0])


# an ASVspoof 5 eval set: file -> (speaker, codec, attack or bonafide, CM score)
FILES = {
    "01": ("E_0001", "-", "bonafide", -28),
    "02": ("E_0002", "C01", "bonafide", 2),
    "03": ("E_0003", "-", "bonafide", 26),
    "04": ("E_0004", "-", "bonafide", 34),
    "05": ("E_0005", "C01", "bonafide", 8),
    "06": ("E_0006", "-", "bonafide", 33),
    "07": ("E_0007", "-", "A18", -27),
    "08": ("E_0007", "-", "A17", 7),
    "09": ("E_0007", "C01", "A18", -7),
    "10": ("E_0007", "-", "A17", 0),
    "11": ("E_0007", "C01", "A17", -14),
    "12": ("E_0007", "C01", "A18", -6),
}
# the SASV key's trials with the organisers' ASV score: (claimed speaker, file, asv-label, ASV score); bona fide file
# 01 (which the CM rejects) enters five trials, 02 three, 06 two, the others one
TRIALS = [
    ("E_0001", "01", "target", 19),
    ("E_0011", "01", "nontarget", -43),
    ("E_0012", "01", "nontarget", -14),
    ("E_0013", "01", "nontarget", 18),
    ("E_0014", "01", "nontarget", 22),
    ("E_0002", "02", "target", 43),
    ("E_0011", "02", "nontarget", -44),
    ("E_0012", "02", "nontarget", 1),
    ("E_0003", "03", "target", 8),
    ("E_0004", "04", "target", 21),
    ("E_0011", "05", "nontarget", 41),
    ("E_0011", "06", "nontarget", 5),
    ("E_0012", "06", "nontarget", -18),
    *((FILES[f][0], f, "spoof", s) for f, s in zip(["07", "08", "09", "10", "11", "12"], [48, -7, -16, 24, -41, 27])),
]


def _package_cell(attack: str | None = None, codec: str | None = None, per_trial: bool = True) -> float:
    """The t-EER of the package's cell (``calculate_metrics_full.py``: an attack's every target and non-target trial
    with its spoof trials, a codec's own trials), each trial with the CM score of its file (the package's join);
    ``per_trial`` False: each bona fide file's CM score once instead (sddkit's figure before)."""
    codec_of = {f: "none" if c == "-" else c for f, (_, c, _, _) in FILES.items()}
    kept = [t for t in TRIALS if codec is None or codec_of[t[1]] == codec]
    kept = [t for t in kept if t[2] != "spoof" or attack is None or FILES[t[1]][2] == attack]
    bona_files = [f for _, f, k, _ in kept if k != "spoof"]
    bona = [FILES[f][3] for f in (bona_files if per_trial else dict.fromkeys(bona_files))]
    spoof = [FILES[f][3] for _, f, k, _ in kept if k == "spoof"]
    return _package_teer(
        bona,
        spoof,
        *([s for _, _, k, s in kept if k == kind] for kind in ("target", "nontarget")),
        [s for _, _, k, s in kept if k == "spoof"],
    )


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _asvspoof5(tmp_path):
    """The set's track-1 protocol, a CM score file, the package's SASV key and the organisers' ASV score table."""
    protocol = _write(
        tmp_path / "ASVspoof5.eval.track_1.tsv",
        [
            f"{spk} E_00000000{f} F {c} {'-' if c == '-' else 1} - {'-' if a == 'bonafide' else 'AC1'} {a} "
            f"{'bonafide' if a == 'bonafide' else 'spoof'} -"
            for f, (spk, c, a, _) in FILES.items()
        ],
    )
    cm = _write(tmp_path / "cm.tsv", ["filename\tcm-score", *(f"E_00000000{f}\t{v[3]}" for f, v in FILES.items())])
    key = _write(
        tmp_path / "sasv_keys.tsv",
        [
            "spk\tfilename\tcm-label\tasv-label",
            *(f"{spk}\tE_00000000{f}\t{'spoof' if k == 'spoof' else 'bonafide'}\t{k}" for spk, f, k, _ in TRIALS),
        ],
    )
    asv = _write(
        tmp_path / "asv_scores.tsv",
        [
            "spk\tfilename\tcm-score\tasv-score\tsasv-score",
            *(f"{spk}\tE_00000000{f}\t-\t{s}\t-" for spk, f, _, s in TRIALS),
        ],
    )
    return protocol, cm, asv, key


@pytest.mark.parametrize("layout", ["keyed", "sasv_lines", "joined_table"])
def test_sdd_eval_counts_each_cm_score_once_per_trial_of_an_asvspoof5_key(tmp_path, capsys, layout):
    # the organisers' ASV scores with the SASV key (--asv-key), the package README's SASV score lines (SPEAKER UTT
    # SCORE KIND) and the key joined with the scores in one table: each names every trial's file
    protocol, cm, asv, key = _asvspoof5(tmp_path)
    given = ["--asv-scores", str(asv), "--asv-key", str(key)]
    if layout == "sasv_lines":
        lines = [f"{spk} E_00000000{f} {s} {k}" for spk, f, k, s in TRIALS]
        given = ["--asv-scores", str(_write(tmp_path / "sasv_lines.txt", lines))]
    elif layout == "joined_table":
        rows = [f"{spk}\tE_00000000{f}\t{'spoof' if k == 'spoof' else 'bonafide'}\t{k}\t{s}" for spk, f, k, s in TRIALS]
        table = _write(tmp_path / "joined.tsv", ["spk\tfilename\tcm-label\tasv-label\tasv-score", *rows])
        given = ["--asv-scores", str(table)]
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(cm), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]
    assert main([*argv, *given]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    pooled = report["pooled"]
    expected = _package_cell()
    assert pooled["t_eer"] == pytest.approx(expected, abs=1e-9)
    assert pooled["t_eer_cm_counting"] == "per_trial"
    assert pooled["min_tdcf_cm_counting"] == "per_utterance"  # (the min t-DCFs, as the 2019/2021 scripts)
    # each utterance counted once, the figure sdd eval gave, is 33 points off the package's
    assert _package_cell(per_trial=False) == pytest.approx(expected - 33.333333333, abs=1e-6)
    # per attack and per codec condition, the package's full evaluation's cells, counted per trial too
    for rows, key_name, names in (
        (report["per_attack"], "attack", ("A17", "A18")),
        (report["per_codec"], "codec", ("none", "C01")),
    ):
        by_name = {r[key_name]: r for r in rows}
        assert set(by_name) == set(names)
        for name, row in by_name.items():
            cell = _package_cell(**{key_name: name})
            assert row["t_eer"] == pytest.approx(cell, abs=1e-9), name
            assert row["t_eer_cm_counting"] == "per_trial" and row["t_eer_note"] == "", name
    # the codec condition of file 01 (five trials) was another figure counted per utterance
    assert _package_cell(codec="none", per_trial=False) != pytest.approx(_package_cell(codec="none"))
    assert not report["warnings"]
    markdown = (out / "report.md").read_text()
    assert "each CM score once per ASV trial of its file" in markdown


def test_asv_scores_that_name_no_file_keep_each_utterance_once():
    # ASVspoof 2019's ASV file (`A07 spoof -2.90`) names no file: the t-EER takes each CM utterance once, as before
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([3.0, 0.5, 2.0, 1.0, -1.0, -2.0])
    target, nontarget, spoof = [4.0, 3.0, 0.5], [-1.0, 1.0, -3.0], [2.5, 0.0, 1.5]
    report = evaluate(labelled_table(labels), scores, asv_scores=ASVScores(*map(np.array, (target, nontarget, spoof))))
    assert report.pooled["t_eer_cm_counting"] == "per_utterance"
    expected = _package_teer([3.0, 0.5, 2.0], [1.0, -1.0, -2.0], target, nontarget, spoof)
    assert report.pooled["t_eer"] == pytest.approx(expected, abs=1e-9)
    assert "t_eer_cm_counting" not in evaluate(labelled_table(labels), scores).pooled  # no ASV scores: no t-EER


def _keyed(files: tuple[list[str], list[str], list[str]]) -> ASVScores:
    target, nontarget, spoof = [4.0, 3.0, 0.5], [-1.0, 1.0, -3.0, 2.0], [2.5, 0.0, 1.5]
    return ASVScores(*map(np.array, (target, nontarget, spoof)), files=tuple(np.array(f, dtype=object) for f in files))


def test_trials_of_files_without_a_cm_score_are_left_out_with_a_warning():
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([3.0, 0.5, 2.0, 1.0, -1.0, -2.0])
    table = labelled_table(labels)  # u0..u2 bona fide, u3..u5 spoof
    # u0 in two trials; the fourth non-target trial's file, u9, is not evaluated
    asv = _keyed((["u0", "u1", "u2"], ["u0", "u1", "u2", "u9"], ["u3", "u4", "u5"]))
    report = evaluate(table, scores, asv_scores=asv)
    expected = _package_teer(
        [3.0, 0.5, 2.0, 3.0, 0.5, 2.0], [1.0, -1.0, -2.0], [4.0, 3.0, 0.5], [-1.0, 1.0, -3.0], [2.5, 0.0, 1.5]
    )
    assert report.pooled["t_eer"] == pytest.approx(expected, abs=1e-9)
    assert report.pooled["t_eer_cm_counting"] == "per_trial"
    assert any(w.startswith("1 of the 10 ASV trials name a file without a CM score") for w in report.warnings)
    # trial kinds that contradict the protocol (another set's key): no figure, the reason said
    wrong = _keyed((["u0", "u1", "u3"], ["u0", "u1", "u2", "u2"], ["u3", "u4", "u5"]))
    pooled = evaluate(table, scores, asv_scores=wrong).pooled
    assert pooled["t_eer"] is None
    assert pooled["t_eer_note"].startswith("the ASV key's trial kinds contradict the protocol's labels of 1 trial(s)")
    assert "u3 (target trial, spoof in the protocol)" in pooled["t_eer_note"]
    # no trial's file among the utterances (another naming): each utterance once, as recorded, with a warning
    none = _keyed((["x0", "x1", "x2"], ["x0", "x1", "x2", "x3"], ["x4", "x5", "x6"]))
    report = evaluate(table, scores, asv_scores=none)
    assert report.pooled["t_eer_cm_counting"] == "per_utterance"
    per_utterance = _package_teer(
        [3.0, 0.5, 2.0], [1.0, -1.0, -2.0], *(list(a) for a in (none.target, none.nontarget, none.spoof))
    )
    assert report.pooled["t_eer"] == pytest.approx(per_utterance, abs=1e-9)
    assert any(w.startswith("none of the 10 ASV trials names a file among the evaluated") for w in report.warnings)
