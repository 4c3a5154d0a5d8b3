"""`sdd eval`'s report checked number by number against the metric functions and the ASVspoof conventions:
each attack's spoofs against ALL bona fide of its partition, each codec condition (and source,
partition) on its own bona fide and spoof trials, and every EER in report.json in percent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.metrics import (
    act_dcf,
    bootstrap_ci,
    cllr,
    eer,
    min_cllr,
    min_dcf,
    min_tdcf_2019,
    min_tdcf_2021,
    roc_auc,
)


def _table() -> tuple[UtteranceTable, np.ndarray]:
    rng = np.random.default_rng(11)
    records, scores = [], []
    for i in range(240):
        kind = ("bonafide", "A1", "A2", "bonafide")[i % 4]
        records.append(
            {
                "utt_id": f"u{i:03d}",
                "label": "bonafide" if kind == "bonafide" else "spoof",
                "attack": "-" if kind == "bonafide" else kind,
                "source": ("web", "studio", "phone")[i % 3],
                "codec": ("none", "mp3")[(i // 4) % 2],
                "partition": ("eval", "progress")[(i // 8) % 2],
            }
        )
        scores.append(round(float(rng.normal({"bonafide": 1.5, "A1": -1.0, "A2": 0.8}[kind], 1.0)), 2))
    return UtteranceTable.from_records(records), np.array(scores)


def test_every_table_follows_the_asvspoof_convention_and_is_in_percent():
    table, s = _table()
    report = evaluate(table, s, EvalConfig(bootstrap=0))
    y = table.labels
    bona = y == 1
    part = table.column("partition")
    assert {(r["partition"], r["attack"]) for r in report.per_attack} == {
        (p, a) for p in ("eval", "progress") for a in ("A1", "A2")
    }
    for row in report.per_attack:  # the attack's spoofs against every bona fide trial of its partition
        here = part == row["partition"]
        m = here & (bona | (table.column("attack") == row["attack"]))
        assert (row["n_bonafide"], row["n_spoof"]) == (int((here & bona).sum()), int((m & ~bona).sum()))
        assert row["eer"] == pytest.approx(100 * eer(y[m], s[m]).eer)
        assert row["min_dcf"] == pytest.approx(min_dcf(y[m], s[m]).dcf)
    for key, rows in (("codec", report.per_codec), ("source", report.per_source), ("partition", report.per_partition)):
        for row in rows:  # each condition on its own bona fide and spoof trials
            m = table.column(key) == row[key]
            assert row["n"] == int(m.sum())
            assert row["eer"] == pytest.approx(100 * eer(y[m], s[m]).eer)
            assert row["act_dcf"] == pytest.approx(act_dcf(y[m], s[m]).dcf)
            assert row["cllr"] == pytest.approx(cllr(y[m], s[m]))
    p = report.pooled
    assert p["eer"] == pytest.approx(100 * eer(y, s).eer)
    assert (p["min_dcf"], p["act_dcf"]) == pytest.approx((min_dcf(y, s).dcf, act_dcf(y, s).dcf))
    assert (p["cllr"], p["min_cllr"], p["auc"]) == pytest.approx((cllr(y, s), min_cllr(y, s), roc_auc(y, s)))
    assert p["min_tdcf"]["2019"] == pytest.approx(min_tdcf_2019(y, s).tdcf)
    assert p["min_tdcf"]["2021"] == pytest.approx(min_tdcf_2021(y, s).tdcf)
    sources = report.per_source
    assert report.mean_over_sources["eer"] == pytest.approx(np.mean([r["eer"] for r in sources]))


def test_pooled_eer_ci_is_the_stratified_bootstrap_in_percent():
    table, s = _table()
    report = evaluate(table, s, EvalConfig(bootstrap=60, seed=4, alpha=0.1))
    _, low, high = bootstrap_ci(lambda y, x: eer(y, x).eer, table.labels, s, n=60, alpha=0.1, seed=4)
    assert report.pooled["eer_ci"] == pytest.approx([100 * low, 100 * high])
    assert report.pooled["eer_ci_level"] == pytest.approx(0.9)


def test_sdd_eval_per_attack_uses_the_bona_fide_of_the_selected_partition(tmp_path):
    table, s = _table()
    protocol = table.save(tmp_path / "meta.csv")
    (tmp_path / "s.txt").write_text("".join(f"{u} {x}\n" for u, x in zip(table.column("utt_id"), s)))
    argv = ["eval", "--scores", str(tmp_path / "s.txt"), "--protocol", str(protocol), "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "ev"), "--partitions", "eval"]) == 0
    data = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert data["units"]["eer"] == "percent"
    y, part, attack = table.labels, table.column("partition"), table.column("attack")
    in_eval = part == "eval"
    for row in data["per_attack"]:
        m = in_eval & ((y == 1) | (attack == row["attack"]))
        assert row["n_bonafide"] == int((in_eval & (y == 1)).sum())
        assert row["eer"] == pytest.approx(100 * eer(y[m], s[m]).eer)
    assert data["pooled"]["eer"] == pytest.approx(100 * eer(y[in_eval], s[in_eval]).eer)


def test_per_attack_rows_of_a_single_partition_have_no_partition_key_and_use_all_bona_fide():
    table, s = _table()
    keep = np.flatnonzero(table.column("partition") == "eval")
    one = table.subset(keep)
    report = evaluate(one, s[keep], EvalConfig(bootstrap=0))
    y, bona = one.labels, one.labels == 1
    assert [r["attack"] for r in report.per_attack] == ["A1", "A2"]
    for row in report.per_attack:
        assert "partition" not in row
        m = bona | (one.column("attack") == row["attack"])
        assert row["eer"] == pytest.approx(100 * eer(y[m], s[keep][m]).eer)
