"""t-DCF per ASVspoof 2021 phase, per attack group and per PA hidden track (tdcfphase review, session 47).

1. A per-attack row of an ASVspoof 2021 phase whose ASV trials hold none of that attack's spoofs took the pooled ASV
   rates of every phase evaluated (another phase's ASV trials mixed in), not that phase's own pooled rates, the ones
   each other figure of the phase takes (the official 2021 package, ``eval-package/main.py``, computes C0/C1/C2 of
   the phase's ASV trials alone and has no figure there).
2. The per-attack-type, per-vocoder and spoof ``--by`` rows had no t-DCF at all, though it is defined as an attack's
   is when the ASV rates of their spoofs exist: the ASV spoof trials of the attacks the group's spoofs are of.
3. The official 2021 PA hidden phase is two tracks told apart by TRIM (``eval-package/config.py``: ``hidden1_PA`` =
   ``trim == "notrim" and subset == "hidden"``, ``hidden2_PA`` = ``trim == "trim" ...``; the stage-1 keys'
   ``hidden_track_1``/``hidden_track_2`` phases), each with the C0/C1/C2 of its own ASV trials: the stage-1 ASV
   lines' track phases were not read as phases (the t-DCF of ``--partitions hidden_track_1`` took the ASV trials of
   every phase), and the full keys' tracks could not be evaluated apart.

Every figure is checked against an independent transcription of the official formulas (``compute_eer``,
``obtain_asv_error_rates``, ``compute_tDCF`` / ``compute_tDCF_legacy``) on tiny protocols and ASV scores built here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.protocols import read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.evaluation.asv import read_asv_scores
from sddkit.evaluation.report import write_report

# --- the official formulas, transcribed independently --------------------------------------------------------------

P_SPOOF = 0.05
P_TAR, P_NON = (1 - P_SPOOF) * 0.99, (1 - P_SPOOF) * 0.01
C_MISS, C_FA, C_FA_SPOOF = 1.0, 10.0, 10.0


def _asv_threshold(tar: np.ndarray, non: np.ndarray) -> float:
    """``compute_eer``'s threshold: the first candidate where the target miss and non-target false-alarm rates,
    counted with targets sorted before non-targets of equal score, are closest."""
    scores = np.concatenate((tar, non))
    is_tar = np.concatenate((np.ones(tar.size), np.zeros(non.size)))
    order = np.argsort(scores, kind="mergesort")
    is_tar = is_tar[order]
    frr = np.concatenate(([0.0], np.cumsum(is_tar) / tar.size))
    far = np.concatenate(([1.0], (non.size - (np.arange(1, scores.size + 1) - np.cumsum(is_tar))) / non.size))
    candidates = np.concatenate(([scores[order[0]] - 0.001], scores[order]))
    return float(candidates[np.argmin(np.abs(frr - far))])


def _cm_det(bona: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate((bona, spoof))
    is_bona = np.concatenate((np.ones(bona.size), np.zeros(spoof.size)))[np.argsort(scores, kind="mergesort")]
    pmiss = np.concatenate(([0.0], np.cumsum(is_bona) / bona.size))
    pfa = np.concatenate(([1.0], (spoof.size - (np.arange(1, scores.size + 1) - np.cumsum(is_bona))) / spoof.size))
    return pmiss, pfa


def official(bona, spoof, tar, non, spoof_asv) -> dict[str, float | None]:
    """min t-DCF, legacy (2019) and revised (2021), of CM scores ``bona``/``spoof`` before the ASV of those scores."""
    t = _asv_threshold(tar, non)
    pfa_asv, pmiss_asv = float(np.mean(non >= t)), float(np.mean(tar < t))
    pfa_spoof_asv = float(np.mean(spoof_asv >= t))
    pmiss_cm, pfa_cm = _cm_det(np.asarray(bona, float), np.asarray(spoof, float))
    c1 = P_TAR * (C_MISS - C_MISS * pmiss_asv) - P_NON * C_FA * pfa_asv
    c2 = C_FA_SPOOF * P_SPOOF * (1 - (1 - pfa_spoof_asv))
    legacy = None if c2 == 0 else float(np.min((c1 * pmiss_cm + c2 * pfa_cm) / min(c1, c2)))
    c0 = P_TAR * C_MISS * pmiss_asv + P_NON * C_FA * pfa_asv
    r1, r2 = P_TAR * C_MISS - c0, P_SPOOF * C_FA_SPOOF * pfa_spoof_asv
    revised = float(np.min((c0 + r1 * pmiss_cm + r2 * pfa_cm) / (c0 + min(r1, r2))))
    return {"2019": legacy, "2021": revised, "pfa_spoof": pfa_spoof_asv}


def _approx(row: dict, expected: dict) -> None:
    for form in ("2019", "2021"):
        if expected[form] is None:
            assert row["min_tdcf"][form] is None
        else:
            assert row["min_tdcf"][form] == pytest.approx(expected[form], abs=1e-12), (form, row)
    assert row["min_tdcf_asv_pfa_spoof"] == pytest.approx(expected["pfa_spoof"], abs=1e-12)


# --- 1. a phase without an attack's ASV spoofs ------------------------------------------------------------------------


def _asv_line(trial: str, attack: str, kind: str, phase: str, score: float, trim: str = "notrim") -> str:
    """A line of the 2021 LA ASV key with its score appended (the layout docs/cli.md says to give)."""
    return f"LA_0007-alaw-ita_tx {trial}-alaw-ita_tx alaw ita_tx {attack} {kind} {trim} {phase} {score}"


def _two_phase_asv(tmp_path: Path) -> tuple[Path, dict]:
    """ASV trials of eval and progress: eval holds spoofs of A07 and A08, progress of A07 alone. Progress's ASV is
    far weaker (its spoofs mostly accepted), so its pooled rates are not eval+progress's."""
    rng = np.random.default_rng(11)
    lines, arrays = [], {}
    n = 0
    for phase, spoof_means in (("eval", {"A07": -2.0, "A08": 0.5}), ("progress", {"A07": 2.5})):
        tar = np.round(rng.normal(3, 1, 30), 4)
        non = np.round(rng.normal(-3, 1, 40), 4)
        spoofs = {a: np.round(rng.normal(m, 1, 25), 4) for a, m in spoof_means.items()}
        arrays[phase] = {"tar": tar, "non": non, "spoof": spoofs}
        for kind, values, attack in (("target", tar, "bonafide"), ("nontarget", non, "bonafide")):
            for v in values:
                lines.append(_asv_line(f"LA_E_{5000000 + n}", attack, kind, phase, v))
                n += 1
        for attack, values in spoofs.items():
            for v in values:
                lines.append(_asv_line(f"LA_E_{5000000 + n}", attack, "spoof", phase, v))
                n += 1
    path = tmp_path / "asv_eval_progress.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, arrays


def _cm_table(partitions=("eval", "progress"), attacks=("A07", "A08"), seed=5, **columns):
    """A CM table of ``partitions``, each with bona fide trials and spoofs of ``attacks``; ``columns``: an extra
    protocol column per name, {attack: value} for the spoofs (bona fide trials: '')."""
    rng = np.random.default_rng(seed)
    records, scores = [], []
    for partition in partitions:
        for i, kind in enumerate(["bonafide"] * 20 + [a for a in attacks for _ in range(15)]):
            label = "bonafide" if kind == "bonafide" else "spoof"
            extra = {name: ("" if label == "bonafide" else of[kind]) for name, of in columns.items()}
            records.append(
                {"utt_id": f"{partition}_{i}", "label": label, "attack": kind, "partition": partition, **extra}
            )
            mean = 1.0 if label == "bonafide" else {"A07": -1.0, "A08": 0.3, "A09": -0.2}[kind]
            scores.append(round(float(rng.normal(mean, 1.0)), 4))
    return UtteranceTable.from_records(records), np.array(scores)


def _cm_arrays(table: UtteranceTable, scores: np.ndarray, partition: str | None, attacks) -> tuple:
    inside = np.ones(len(table), dtype=bool) if partition is None else table.column("partition") == partition
    bona = scores[inside & (table.labels == 1)]
    spoof = scores[inside & np.isin(table.column("attack"), list(attacks))]
    return bona, spoof


def test_an_attack_a_phase_holds_no_asv_spoof_of_takes_that_phases_pooled_rates(tmp_path):
    path, a = _two_phase_asv(tmp_path)
    table, scores = _cm_table()
    report = evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=read_asv_scores(path))
    rows = {(r["partition"], r["attack"]): r for r in report.per_attack}
    # its own ASV spoofs where its phase holds them
    for partition, attack in (("eval", "A07"), ("eval", "A08"), ("progress", "A07")):
        phase = a[partition]
        bona, spoof = _cm_arrays(table, scores, partition, [attack])
        _approx(rows[partition, attack], official(bona, spoof, phase["tar"], phase["non"], phase["spoof"][attack]))
        assert rows[partition, attack]["min_tdcf_asv"] == "attack"
    # progress holds no A08 ASV spoof: progress's pooled ASV rates (its targets, non-targets and every spoof of it),
    # not those of eval and progress together
    row = rows["progress", "A08"]
    progress = a["progress"]
    bona, spoof = _cm_arrays(table, scores, "progress", ["A08"])
    expected = official(bona, spoof, progress["tar"], progress["non"], np.concatenate(list(progress["spoof"].values())))
    _approx(row, expected)
    assert row["min_tdcf_asv"] == "pooled"
    assert row["min_tdcf_asv_note"].startswith("the ASV scores hold no spoof trial of attack A08 in phase progress")
    both = report.config.asv  # the pooled figure's: eval and progress together
    assert row["min_tdcf_asv_pfa_spoof"] != pytest.approx(both.pfa_spoof, abs=1e-3)
    md = _markdown(report, tmp_path)
    assert "the pooled ASV rates of its partition's ASVspoof 2021 phase" in md
    # the warning naming the attacks names the phase: the file holds A08's ASV spoofs, of eval
    assert any("no spoof trial of attack(s) A08 in phase progress" in w for w in report.warnings)


def test_a_phase_the_asv_scores_hold_no_trial_of_takes_no_other_phases_spoofs_as_its_own(tmp_path):
    path, a = _two_phase_asv(tmp_path)
    eval_only = tmp_path / "asv_eval.txt"
    eval_only.write_text("".join(line + "\n" for line in path.read_text().splitlines() if " eval " in line))
    table, scores = _cm_table()
    report = evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=read_asv_scores(eval_only))
    rows = {(r["partition"], r["attack"]): r for r in report.per_attack}
    for attack in ("A07", "A08"):
        # eval's ASV spoofs of the attack were taken as progress's own ("attack", no note)
        row = rows["progress", attack]
        assert row["min_tdcf_asv"] == "pooled"
        assert (
            row["min_tdcf_asv_note"] == "the ASV scores hold no target, non-target and spoof trials of phase progress"
        )
        assert row["min_tdcf_asv_pfa_spoof"] == pytest.approx(report.config.asv.pfa_spoof)
        assert rows["eval", attack]["min_tdcf_asv"] == "attack"


def _markdown(report, tmp_path: Path) -> str:
    out = tmp_path / "out"
    write_report(report, out)
    return (out / "report.md").read_text()


# --- 2. per attack type, per vocoder, --by -------------------------------------------------------------------------


def _one_phase_asv(tmp_path: Path, spoof_means: dict[str, float]) -> tuple[Path, dict]:
    """ASVspoof 2019's layout (``A07 spoof -2.90``), one set of trials."""
    rng = np.random.default_rng(17)
    tar, non = np.round(rng.normal(3, 1, 40), 4), np.round(rng.normal(-3, 1, 50), 4)
    spoofs = {a: np.round(rng.normal(m, 1.2, 30), 4) for a, m in spoof_means.items()}
    lines = [f"bonafide target {v}" for v in tar] + [f"bonafide nontarget {v}" for v in non]
    lines += [f"{a} spoof {v}" for a, values in spoofs.items() for v in values]
    path = tmp_path / "asv2019.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, {"tar": tar, "non": non, "spoof": spoofs}


TYPES = {"A07": "tts", "A08": "tts", "A09": "vc"}
VOCODERS = {"A07": "neural_vocoder_autoregressive", "A08": "traditional_vocoder", "A09": "traditional_vocoder"}


def test_attack_type_vocoder_and_by_rows_take_the_asv_spoofs_of_their_attacks(tmp_path):
    path, a = _one_phase_asv(tmp_path, {"A07": -1.0, "A08": 1.0, "A09": 2.5})
    table, scores = _cm_table(("eval",), ("A07", "A08", "A09"), attack_type=TYPES, vocoder=VOCODERS, family=TYPES)
    report = evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=read_asv_scores(path), by=["family"])
    tables = {
        "attack_type": report.per_attack_type,
        "vocoder": report.per_vocoder,
        "family": report.per_column["family"],
    }
    for column, rows in tables.items():
        of = TYPES if column != "vocoder" else VOCODERS
        assert {r[column] for r in rows} == set(of.values())
        for row in rows:
            attacks = sorted(k for k, v in of.items() if v == row[column])
            bona, spoof = _cm_arrays(table, scores, None, attacks)
            spoof_asv = np.concatenate([a["spoof"][k] for k in attacks])
            _approx(row, official(bona, spoof, a["tar"], a["non"], spoof_asv))
            assert row["min_tdcf_asv"] == "attack" and row["min_tdcf_asv_note"] == ""
    # a group of one attack has that attack's figure
    vc = next(r for r in report.per_attack_type if r["attack_type"] == "vc")
    a09 = next(r for r in report.per_attack if r["attack"] == "A09")
    assert vc["min_tdcf"] == a09["min_tdcf"]
    out = tmp_path / "out"
    write_report(report, out)
    with open(out / "per_attack_type.csv", newline="") as f:
        tts = next(r for r in csv.DictReader(f) if r["attack_type"] == "tts")
    expected = next(r for r in report.per_attack_type if r["attack_type"] == "tts")["min_tdcf"]
    assert float(tts["min_tdcf_2021"]) == pytest.approx(expected["2021"])
    md = (out / "report.md").read_text()
    for column in ("attack_type", "vocoder", "family"):
        assert f"### Per-{column} min-tDCF" in md
    assert md.count("### Per-attack min-tDCF") == 1
    assert "the ASV spoof trials of the attacks its spoofs are of" in md


def test_a_group_with_an_attack_the_asv_lacks_takes_the_pooled_rates_and_says_which(tmp_path):
    path, a = _one_phase_asv(tmp_path, {"A07": -1.0, "A09": 2.5})  # no A08 ASV spoof
    table, scores = _cm_table(("eval",), ("A07", "A08", "A09"), attack_type=TYPES)
    report = evaluate(table, scores, EvalConfig(bootstrap=0), asv_scores=read_asv_scores(path))
    rows = {r["attack_type"]: r for r in report.per_attack_type}
    # tts is A07 and A08: A07's ASV spoofs alone would be another group's rate
    assert rows["tts"]["min_tdcf_asv"] == "pooled"
    assert rows["tts"]["min_tdcf_asv_note"] == "the ASV scores hold no spoof trial of attack A08"
    bona, spoof = _cm_arrays(table, scores, None, ["A07", "A08"])
    pooled_spoofs = np.concatenate(list(a["spoof"].values()))
    _approx(rows["tts"], official(bona, spoof, a["tar"], a["non"], pooled_spoofs))
    bona, spoof = _cm_arrays(table, scores, None, ["A09"])
    _approx(rows["vc"], official(bona, spoof, a["tar"], a["non"], a["spoof"]["A09"]))


def test_without_asv_scores_the_group_rows_take_the_pooled_rates_as_the_attack_rows_do(tmp_path):
    table, scores = _cm_table(("eval",), ("A07", "A08", "A09"), attack_type=TYPES)
    report = evaluate(table, scores, EvalConfig(bootstrap=0))
    for row in report.per_attack_type:
        assert row["min_tdcf_asv"] == "pooled" and "no ASV scores were given" in row["min_tdcf_asv_note"]
        assert row["min_tdcf"]["2021"] is not None


def test_docs_name_the_group_rows_tdcf():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "The per-vocoder and per-attack-type rows have no t-DCF." not in docs
    assert "per-attack-type" in docs and "attack column" in docs


# --- 3. the ASVspoof 2021 PA hidden tracks ---------------------------------------------------------------------------

PA_ATTACKS = {"r1_m1_s4_c4": -1.0, "r9_m3_s2_c2": 0.4}  # CM spoof score means (bona fide at 1)


def _pa_key_files(tmp_path: Path) -> tuple[Path, Path, Path, dict, dict]:
    """The full 2021 PA CM key of eval and hidden (both tracks), its CM scores, and the PA ASV key's lines with their
    scores appended; the ASV of hidden track 2 (trim) accepts far more spoofs than track 1's."""
    rng = np.random.default_rng(23)
    cm_lines, cm_scores, asv_lines = [], [], []
    cm, asv = {}, {}
    n = 0
    for phase, trim, spoof_shift in (("eval", "notrim", 0.0), ("hidden", "notrim", -2.0), ("hidden", "trim", 3.0)):
        part = phase if phase == "eval" else {"notrim": "hidden_track_1", "trim": "hidden_track_2"}[trim]
        bona = np.round(rng.normal(1.0, 1.0, 20), 4)
        spoofs = {a: np.round(rng.normal(m, 1.0, 12), 4) for a, m in PA_ATTACKS.items()}
        cm[part] = {"bona": bona, "spoof": spoofs}
        for v in bona:
            cm_lines.append(f"PA_0010 PA_E_{1000000 + n} R3 M3 D4 - - - - bonafide {trim} {phase}")
            cm_scores.append(f"PA_E_{1000000 + n} {v}")
            n += 1
        for attack, values in spoofs.items():
            factors = " ".join(attack.split("_"))
            for v in values:
                cm_lines.append(f"PA_0010 PA_E_{1000000 + n} R3 M3 d4 {factors} spoof {trim} {phase}")
                cm_scores.append(f"PA_E_{1000000 + n} {v}")
                n += 1
        tar, non = np.round(rng.normal(3, 1, 25), 4), np.round(rng.normal(-3, 1, 30), 4)
        spoof_asv = {a: np.round(rng.normal(spoof_shift + i, 1.0, 15), 4) for i, a in enumerate(PA_ATTACKS)}
        asv[part] = {"tar": tar, "non": non, "spoof": spoof_asv}
        for kind, values in (("target", tar), ("nontarget", non)):
            for v in values:
                asv_lines.append(f"PA_0010 PA_E_{1000000 + n} R3 M3 D4 - - - - {kind} {trim} {phase} {v}")
                n += 1
        for attack, values in spoof_asv.items():
            factors = " ".join(attack.split("_"))
            for v in values:
                asv_lines.append(f"PA_0010 PA_E_{1000000 + n} R3 M3 d4 {factors} spoof {trim} {phase} {v}")
                n += 1
    key, scores, asv_path = tmp_path / "pa_key.txt", tmp_path / "pa_cm.txt", tmp_path / "pa_asv.txt"
    key.write_text("\n".join(cm_lines) + "\n")
    scores.write_text("\n".join(cm_scores) + "\n")
    asv_path.write_text("\n".join(asv_lines) + "\n")
    return key, scores, asv_path, cm, asv


def _pa_eval(tmp_path: Path, *extra: str) -> tuple[dict, dict, dict]:
    key, scores, asv, cm_arrays, asv_arrays = _pa_key_files(tmp_path)
    out = tmp_path / "r"
    argv = ["eval", "--scores", str(scores), "--protocol", str(key), "--protocol-format", "asvspoof2021_pa"]
    assert main([*argv, "--asv-scores", str(asv), "--bootstrap", "0", "--out", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text()), cm_arrays, asv_arrays


def test_the_pa_reader_keeps_one_hidden_track_by_its_name(tmp_path):
    key, *_ = _pa_key_files(tmp_path)
    one = read_protocol(key, format="asvspoof2021_pa", phases=["hidden_track_2"]).df
    assert set(one["partition"]) == {"hidden_track_2"} and set(one["trim"]) == {"trim"} and len(one) == 44
    both = read_protocol(key, format="asvspoof2021_pa", phases=["hidden"]).df
    assert set(both["partition"]) == {"hidden"} and len(both) == 88  # as the key writes it: both tracks
    assert set(read_protocol(key, format="asvspoof2021_pa").df["partition"]) == {"eval", "hidden"}


def test_one_pa_hidden_track_is_the_official_figure_of_its_own_asv_trials(tmp_path):
    report, cm, asv = _pa_eval(tmp_path, "--protocol-option", "phases=[hidden_track_1]")
    assert report["inputs"]["asv_phases"] == ["hidden_track_1"]
    c, a = cm["hidden_track_1"], asv["hidden_track_1"]
    spoof = np.concatenate(list(c["spoof"].values()))
    expected = official(c["bona"], spoof, a["tar"], a["non"], np.concatenate(list(a["spoof"].values())))
    assert report["pooled"]["min_tdcf"]["2019"] == pytest.approx(expected["2019"], abs=1e-12)
    assert report["pooled"]["min_tdcf"]["2021"] == pytest.approx(expected["2021"], abs=1e-12)
    assert report["config"]["asv"]["pfa_spoof"] == pytest.approx(expected["pfa_spoof"], abs=1e-12)
    # each replay attack's row takes its own ASV spoofs (the PA ASV key's four attacker factors name its attack)
    for row in report["per_attack"]:
        assert row["min_tdcf_asv"] == "attack", row
        _approx(row, official(c["bona"], c["spoof"][row["attack"]], a["tar"], a["non"], a["spoof"][row["attack"]]))
    assert not any("two official tracks" in w for w in report["warnings"])


def test_the_hidden_phase_as_one_partition_says_it_mixes_the_two_tracks(tmp_path):
    report, _, _ = _pa_eval(tmp_path, "--partitions", "hidden")
    assert report["inputs"]["asv_phases"] == ["hidden_track_1", "hidden_track_2"]
    assert any("two official tracks" in w and "phases=[hidden_track_1]" in w for w in report["warnings"])


def test_stage1_pa_asv_lines_of_a_hidden_track_are_that_tracks_trials(tmp_path):
    # the stage-1 keys' layout (trial second, key fifth, phase last) with the ASV score appended
    rng = np.random.default_rng(29)
    lines, arrays = [], {}
    n = 0
    for phase, shift in (("progress", 4.0), ("hidden_track_1", 0.0), ("hidden_track_2", 3.0)):
        tar, non = np.round(rng.normal(3, 1, 20), 4), np.round(rng.normal(-3, 1, 20), 4)
        spoof = np.round(rng.normal(shift - 1, 1, 20), 4)
        arrays[phase] = (tar, non, spoof)
        for kind, values in (("target", tar), ("nontarget", non), ("spoof", spoof)):
            for v in values:
                lines.append(f"- PA_E_{2000000 + n} - - {kind} - {phase} {v}")
                n += 1
    path = tmp_path / "asv_stage1.txt"
    path.write_text("\n".join(lines) + "\n")
    selected, kept = read_asv_scores(path).of_phases(["hidden_track_1"])
    assert kept == ["hidden_track_1"]
    tar, non, spoof = arrays["hidden_track_1"]
    assert selected.target.tolist() == tar.tolist() and selected.spoof.tolist() == spoof.tolist()
    assert selected.rates().pfa_spoof == pytest.approx(official([1, 2], [0, 1.5], tar, non, spoof)["pfa_spoof"])
