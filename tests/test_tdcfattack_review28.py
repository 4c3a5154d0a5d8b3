"""Per-attack min t-DCF in ``sdd eval``'s report (tdcfattack review, session 46).

The ASVspoof 2019 per-attack tables give, for each attack, the EER and the min t-DCF of that attack's spoofs against
all bona fide trials, the t-DCF's ASV Pfa_spoof taken from the ASV spoof trials of that attack alone (the organisers'
``ASVspoof2019.LA.asv.eval.gi.trl.scores.txt`` names each spoof line's attack: ``A07 spoof -2.90``). sddkit's
per-attack rows had EER, minDCF, actDCF, AUC and Cllr but no t-DCF, so that table could not be reproduced; and the
ASV score reader dropped each spoof line's attack. The rows now carry ``min_tdcf`` (2019 and 2021 forms) with the
attack's own ASV rates, else the pooled ones with a note. Checked here against a few-line transcription of the
official scripts' per-attack computation (``compute_eer``, ``obtain_asv_error_rates``, ``compute_tDCF``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.evaluation.asv import read_asv_scores
from sddkit.metrics import ASVRates, TDCFCost, min_tdcf_2019, min_tdcf_2021

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
ATTACKS = {"A07": -2.0, "A08": 0.5, "A09": 1.5}  # CM spoof score means (bona fide at 2)
ASV_SPOOF = {"A07": -1.0, "A08": 1.0, "A09": 2.5}  # ASV spoof score means (targets at 3, non-targets at -3)


# --- an independent transcription of the official per-attack computation (ASVspoof 2019 eval_metrics.py) ----------


def _official_eer(target: np.ndarray, nontarget: np.ndarray) -> tuple[float, float]:
    scores = np.concatenate((target, nontarget))
    labels = np.concatenate((np.ones(target.size), np.zeros(nontarget.size)))
    order = np.argsort(scores, kind="mergesort")
    labels = labels[order]
    tar_sums = np.cumsum(labels)
    non_sums = nontarget.size - (np.arange(1, scores.size + 1) - tar_sums)
    frr = np.concatenate(([0], tar_sums / target.size))
    far = np.concatenate(([1], non_sums / nontarget.size))
    thresholds = np.concatenate(([scores[order[0]] - 0.001], scores[order]))
    i = np.argmin(np.abs(frr - far))
    return float(np.mean((frr[i], far[i]))), float(thresholds[i])


def _official_tdcfs(bona, spoof, tar_asv, non_asv, spoof_asv) -> dict[str, float | None]:
    cost = TDCFCost()  # Pspoof 0.05, Ptar 0.95 * 0.99, Pnon 0.95 * 0.01, Cmiss 1, Cfa 10, Cfa_spoof 10
    _, t = _official_eer(tar_asv, non_asv)
    pfa, pmiss, pmiss_spoof = np.mean(non_asv >= t), np.mean(tar_asv < t), np.mean(spoof_asv < t)
    scores = np.concatenate((bona, spoof))
    labels = np.concatenate((np.ones(bona.size), np.zeros(spoof.size)))[np.argsort(scores, kind="mergesort")]
    pmiss_cm = np.concatenate(([0], np.cumsum(labels) / bona.size))
    pfa_cm = np.concatenate(([1], (spoof.size - (np.arange(1, scores.size + 1) - np.cumsum(labels))) / spoof.size))
    # legacy (ASVspoof 2019): C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv, C2 = Cfa_cm Pspoof (1 -
    # Pmiss_spoof_asv), normalised by min(C1, C2)
    c1 = cost.p_tar * (cost.c_miss - cost.c_miss * pmiss) - cost.p_non * cost.c_fa * pfa
    c2 = cost.c_fa_spoof * cost.p_spoof * (1 - pmiss_spoof)
    legacy = None if c2 == 0 else float(np.min((c1 * pmiss_cm + c2 * pfa_cm) / min(c1, c2)))
    # revised (ASVspoof 2021): C0 + C1 Pmiss_cm + C2 Pfa_cm over C0 + min(C1, C2)
    c0 = cost.p_tar * cost.c_miss * pmiss + cost.p_non * cost.c_fa * pfa
    r1, r2 = cost.p_tar * cost.c_miss - c0, cost.p_spoof * cost.c_fa_spoof * (1 - pmiss_spoof)
    revised = float(np.min((c0 + r1 * pmiss_cm + r2 * pfa_cm) / (c0 + min(r1, r2))))
    return {"2019": legacy, "2021": revised}


# --- a tiny ASVspoof 2019 LA protocol, CM scores and organisers'-layout ASV scores ------------------------------------


def _files(tmp_path: Path, asv_attacks=ASV_SPOOF, rejected: str | None = None):
    """protocol, CM scores, ASV scores; ``rejected``: an attack whose ASV spoof trials all score far below the
    ASV threshold (the ASV accepts none of them: its 2019 t-DCF is undefined)."""
    rng = np.random.default_rng(7)
    protocol, cm = [], []
    bona_cm, spoof_cm = [], {}
    for i in range(60):
        utt, score = f"LA_E_{1000000 + i}", round(float(rng.normal(2, 1)), 5)
        protocol.append(f"LA_0001 {utt} - - bonafide")
        cm.append(f"{utt} {score}")
        bona_cm.append(score)
    k = 0
    for attack, mean in ATTACKS.items():
        for _ in range(40):
            utt, score = f"LA_E_{2000000 + k}", round(float(rng.normal(mean, 1)), 5)
            k += 1
            protocol.append(f"LA_0002 {utt} - {attack} spoof")
            cm.append(f"{utt} {score}")
            spoof_cm.setdefault(attack, []).append(score)
    tar = np.round(rng.normal(3, 1, 80), 5)
    non = np.round(rng.normal(-3, 1, 120), 5)
    spoof_asv = {a: np.round(rng.normal(-30.0 if a == rejected else m, 1.5, 50), 5) for a, m in asv_attacks.items()}
    lines = [f"bonafide target {v}" for v in tar] + [f"bonafide nontarget {v}" for v in non]
    lines += [f"{a} spoof {v}" for a, values in spoof_asv.items() for v in values]
    paths = tmp_path / "protocol.txt", tmp_path / "cm.txt", tmp_path / "asv.txt"
    for path, text in zip(paths, (protocol, cm, lines), strict=True):
        path.write_text("\n".join(text) + "\n")
    arrays = {"bona": np.array(bona_cm), "spoof": {a: np.array(v) for a, v in spoof_cm.items()}}
    arrays |= {"tar": tar, "non": non, "spoof_asv": spoof_asv}
    return paths, arrays


def _eval(tmp_path: Path, *extra: str, **kwargs) -> tuple[dict, dict, Path]:
    (protocol, cm, asv), arrays = _files(tmp_path, **kwargs)
    out = tmp_path / "r"
    argv = ["eval", "--scores", str(cm), "--protocol", str(protocol), "--bootstrap", "0", "--out", str(out)]
    assert main([*argv, *(extra and ["--asv-scores", str(asv)])]) == 0
    return json.loads((out / "report.json").read_text()), arrays, out


def test_per_attack_min_tdcf_is_the_official_per_attack_figure(tmp_path):
    report, a, out = _eval(tmp_path, "asv")
    rows = {r["attack"]: r for r in report["per_attack"]}
    assert set(rows) == set(ATTACKS)
    pooled_rates = ASVRates(**report["config"]["asv"])
    for attack, row in rows.items():
        expected = _official_tdcfs(a["bona"], a["spoof"][attack], a["tar"], a["non"], a["spoof_asv"][attack])
        assert row["min_tdcf"]["2019"] == pytest.approx(expected["2019"], abs=1e-12)
        assert row["min_tdcf"]["2021"] == pytest.approx(expected["2021"], abs=1e-12)
        assert row["min_tdcf_asv"] == "attack" and row["min_tdcf_asv_note"] == ""
        _, t = _official_eer(a["tar"], a["non"])
        assert row["min_tdcf_asv_pfa_spoof"] == pytest.approx(np.mean(a["spoof_asv"][attack] >= t))
        if attack != "A07":  # (A07's CM errors cost alike under either rate: the CM separates it all but perfectly)
            # the attack's own Pfa_spoof, not the pooled one: A08's ASV spoofs are accepted less often than A09's
            labels = np.r_[np.ones(a["bona"].size), np.zeros(a["spoof"][attack].size)]
            with_pooled = min_tdcf_2019(labels, np.r_[a["bona"], a["spoof"][attack]], pooled_rates).tdcf
            assert row["min_tdcf"]["2019"] != pytest.approx(with_pooled, abs=1e-6)
    # the existing row keys stand, in their order, before the new ones
    assert list(rows["A07"])[:12] == [
        "attack", "n", "n_bonafide", "n_spoof", "eer", "threshold", "auc", "min_dcf", "act_dcf", "cllr", "note",
        "min_tdcf",
    ]  # fmt: skip
    with open(out / "per_attack.csv", newline="") as f:
        csv_rows = {r["attack"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["A08"]["min_tdcf_2019"]) == pytest.approx(rows["A08"]["min_tdcf"]["2019"])
    assert float(csv_rows["A08"]["min_tdcf_2021"]) == pytest.approx(rows["A08"]["min_tdcf"]["2021"])
    md = (out / "report.md").read_text()
    assert "| attack | min-tDCF 2019 | min-tDCF 2021 | ASV Pfa_spoof | ASV rates |" in md
    a09 = rows["A09"]
    cells = f"{a09['min_tdcf']['2019']:.4f} | {a09['min_tdcf']['2021']:.4f} | {a09['min_tdcf_asv_pfa_spoof']:.4g}"
    assert f"| A09 | {cells} | the attack's own |" in md
    assert "Pfa_spoof of that attack's ASV spoof trials alone" in md


def test_an_attack_the_asv_accepts_none_of_has_no_2019_figure_and_the_rest_stands(tmp_path):
    report, a, out = _eval(tmp_path, "asv", rejected="A07")
    rows = {r["attack"]: r for r in report["per_attack"]}
    assert rows["A07"]["min_tdcf"]["2019"] is None and "min(C1, C2) is 0" in rows["A07"]["min_tdcf_notes"]["2019"]
    expected = _official_tdcfs(a["bona"], a["spoof"]["A07"], a["tar"], a["non"], a["spoof_asv"]["A07"])
    assert expected["2019"] is None and rows["A07"]["min_tdcf"]["2021"] == pytest.approx(expected["2021"])
    assert rows["A08"]["min_tdcf"]["2019"] is not None and "min_tdcf_notes" not in rows["A08"]
    assert "Undefined (-)" in (out / "report.md").read_text()


def test_without_asv_scores_the_pooled_rates_are_taken_and_said(tmp_path):
    report, a, out = _eval(tmp_path)
    for row in report["per_attack"]:
        labels = np.r_[np.ones(a["bona"].size), np.zeros(a["spoof"][row["attack"]].size)]
        scores = np.r_[a["bona"], a["spoof"][row["attack"]]]
        assert row["min_tdcf"]["2019"] == pytest.approx(min_tdcf_2019(labels, scores).tdcf)
        assert row["min_tdcf"]["2021"] == pytest.approx(min_tdcf_2021(labels, scores).tdcf)
        assert row["min_tdcf_asv"] == "pooled" and "no ASV scores were given" in row["min_tdcf_asv_note"]
        assert row["min_tdcf_asv_pfa_spoof"] == pytest.approx(ASVRates().pfa_spoof)
    md = (out / "report.md").read_text()
    assert "the pooled figure's ASV rates" in md and "no ASV scores were given" in md


def test_asv_scores_of_other_attacks_take_the_pooled_rates_with_a_warning(tmp_path, capsys):
    # ASVspoof 2019's dev ASV scores (A01-A06) beside the eval protocol (A07-A19)
    other = {"A01": -1.0, "A02": 1.0, "A08": 1.0}
    report, _, _ = _eval(tmp_path, "asv", asv_attacks=other)
    rows = {r["attack"]: r for r in report["per_attack"]}
    assert rows["A08"]["min_tdcf_asv"] == "attack"
    for attack in ("A07", "A09"):
        assert rows[attack]["min_tdcf_asv"] == "pooled"
        assert rows[attack]["min_tdcf_asv_pfa_spoof"] == pytest.approx(report["config"]["asv"]["pfa_spoof"])
    (warning,) = [w for w in report["warnings"] if "no spoof trial of attack" in w]
    assert "A07, A09" in warning and "A01, A02, A08" in warning
    assert "A07, A09" in capsys.readouterr().err


def _asv2021(tmp_path: Path, phases: tuple[str, ...] = ("eval", "progress")) -> Path:
    """ASVspoof 2021's ASV key lines with their scores appended, of ``phases``: A08's ASV spoofs score low in eval (the
    ASV accepts none) and high in every other phase (it accepts all)."""
    key = tmp_path / "asv2021.txt"
    lines, speaker = [], "LA_0007-alaw-ita_tx"
    for phase, shift in ((phase, 0.0 if phase == "eval" else 5.0) for phase in phases):
        for i, score in enumerate((3.0, 2.5, 2.0)):
            lines.append(
                f"{speaker} LA_E_1{i}{len(phase)}-alaw-ita_tx alaw ita_tx bonafide target notrim {phase} {score}"
            )
        for i, score in enumerate((-1.0, 0.0, 2.2)):
            lines.append(
                f"{speaker} LA_E_9{i}{len(phase)}-alaw-ita_tx alaw ita_tx bonafide nontarget notrim {phase} {score}"
            )
        for attack, score in (("A07", 2.4), ("A07", -2.0), ("A08", 1.0 + shift)):
            trial = f"LA_E_8{attack[1:]}{len(phase)}-alaw-ita_tx"
            lines.append(f"{speaker} {trial} alaw ita_tx {attack} spoof notrim {phase} {score}")
    key.write_text("\n".join(lines) + "\n")
    return key


def test_the_reader_keeps_each_spoof_lines_attack_and_its_phase(tmp_path):
    # and ASVspoof 5's SASV score lines name no attack
    asv = read_asv_scores(_asv2021(tmp_path))
    assert asv.spoof_attacks.tolist() == ["A07", "A07", "A08"] * 2
    evaluated, _ = asv.of_phases(["progress"])
    assert evaluated.spoof_attacks.tolist() == ["A07", "A07", "A08"]
    assert evaluated.attack_rates("A08").pfa_spoof == 1.0 and evaluated.attack_rates("A01") is None
    sasv = tmp_path / "sasv.txt"
    sasv.write_text("LA_0015 LA_E_1 6.9 target\nLA_0015 LA_E_2 -3.0 nontarget\nLA_0015 LA_E_3 1.0 spoof\n")
    assert read_asv_scores(sasv).spoof_attacks is None


def test_per_attack_rows_of_several_2021_phases_take_their_phases_asv_trials(tmp_path):
    asv = read_asv_scores(_asv2021(tmp_path))
    rng = np.random.default_rng(3)
    records, scores = [], []
    for partition in ("eval", "progress"):
        for i, kind in enumerate(["bonafide"] * 12 + ["A07"] * 8 + ["A08"] * 8):
            label = "bonafide" if kind == "bonafide" else "spoof"
            records.append({"utt_id": f"{partition}{i}", "label": label, "attack": kind, "partition": partition})
            scores.append(round(float(rng.normal(1.0 if kind == "bonafide" else -0.5, 1.0)), 4))
    table, scores = UtteranceTable.from_records(records), np.array(scores)
    report = evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=asv)
    rows = {(r["partition"], r["attack"]): r for r in report.per_attack}
    y, attacks, parts = table.labels == 1, table.column("attack"), table.column("partition")
    for (partition, attack), row in rows.items():
        phase, _ = asv.of_phases([partition])
        bona, spoof = scores[y & (parts == partition)], scores[(attacks == attack) & (parts == partition)]
        spoof_asv = phase.spoof[phase.spoof_attacks == attack]
        expected = _official_tdcfs(bona, spoof, phase.target, phase.nontarget, spoof_asv)
        assert row["min_tdcf_asv"] == "attack", row
        assert row["min_tdcf"]["2019"] == pytest.approx(expected["2019"], abs=1e-12)
        assert row["min_tdcf"]["2021"] == pytest.approx(expected["2021"], abs=1e-12)
    # A08's ASV spoofs: all rejected in eval (its 2019 form undefined), all accepted in progress
    assert rows["eval", "A08"]["min_tdcf"]["2019"] is None and rows["eval", "A08"]["min_tdcf_asv_pfa_spoof"] == 0.0
    assert rows["progress", "A08"]["min_tdcf_asv_pfa_spoof"] == 1.0


def test_docs_name_the_per_attack_tdcf_keys(tmp_path):
    report, _, _ = _eval(tmp_path, "asv", rejected="A07")
    docs = DOCS.read_text(encoding="utf-8")
    keys = {k for row in report["per_attack"] for k in row}
    missing = sorted(k for k in keys if f"`{k}`" not in docs)
    assert missing == [] and "`min_tdcf_2019`" in docs
