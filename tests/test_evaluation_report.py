from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sddkit.config import from_dict
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError, SddkitError
from sddkit.evaluation import EvalConfig, ScoreFile, evaluate, write_report
from sddkit.evaluation.synthetic import write_synthetic_example
from sddkit.metrics import eer, min_dcf, roc_auc


def _dataset(seed=0, codec=True):
    """Two sources; attacks A01 (easy) and A02 (hard); a codec column when asked."""
    rng = np.random.default_rng(seed)
    records, scores = [], []
    for i in range(360):
        kind = ("bonafide", "A01", "A02")[i % 3]
        rec = {
            "utt_id": f"u{i:04d}",
            "label": "bonafide" if kind == "bonafide" else "spoof",
            "attack": kind,
            "source": ("web", "studio")[i % 2],
            "corpus": "toy",
        }
        if codec:
            rec["codec"] = ("", "mp3", "opus")[(i // 3) % 3]
        records.append(rec)
        scores.append(rng.normal({"bonafide": 2.0, "A01": -2.0, "A02": 1.0}[kind], 1.0))
    return UtteranceTable.from_records(records), np.array(scores)


def test_pooled_metrics_match_the_metric_functions():
    table, scores = _dataset()
    report = evaluate(table, scores, EvalConfig(bootstrap=50))
    y = table.labels
    p = report.pooled
    assert p["eer"] == pytest.approx(100 * eer(y, scores).eer)  # percent
    assert p["threshold"] == pytest.approx(eer(y, scores).threshold)
    assert p["min_dcf"] == pytest.approx(min_dcf(y, scores).dcf)
    assert p["auc"] == pytest.approx(roc_auc(y, scores))
    assert (p["n"], p["n_bonafide"], p["n_spoof"]) == (360, 120, 240)
    low, high = p["eer_ci"]
    assert low <= p["eer"] <= high and p["eer_ci_level"] == pytest.approx(0.95)
    assert set(p["min_tdcf"]) == {"2019", "2021"} and p["min_cllr"] <= p["cllr"]
    assert "pooled EER" in report.summary() and f"{p['eer']:.2f}%" in report.summary()


def test_breakdowns():
    table, scores = _dataset()
    report = evaluate(table, scores, EvalConfig(bootstrap=0))
    assert report.pooled["eer_ci"] is None
    y, attacks = table.labels, table.column("attack")
    rows = {r["attack"]: r for r in report.per_attack}
    assert set(rows) == {"A01", "A02"}  # bona fide is the reference, not an attack
    for name, row in rows.items():
        m = (attacks == name) | (y == 1)  # each attack against all bona fide trials
        assert row["eer"] == pytest.approx(100 * eer(y[m], scores[m]).eer)
        assert (row["n_bonafide"], row["n_spoof"]) == (120, 120)
    assert rows["A01"]["eer"] < rows["A02"]["eer"]  # A02 was generated closer to bona fide
    sources = {r["source"]: r for r in report.per_source}
    assert set(sources) == {"web", "studio"}
    mean = report.mean_over_sources
    assert mean["n_groups"] == 2 and mean["eer"] == pytest.approx(
        (sources["web"]["eer"] + sources["studio"]["eer"]) / 2
    )
    codecs = {r["codec"]: r["n"] for r in report.per_codec}
    assert codecs == {"unknown": 120, "mp3": 120, "opus": 120}
    assert evaluate(*_dataset(codec=False), EvalConfig(bootstrap=0)).per_codec is None
    assert set(report.curves) == {"pooled", "web", "studio"}


def test_single_class_source_is_reported_not_fatal():
    table, scores = _dataset(codec=False)
    df = table.df
    df.loc[(df["label"] == "spoof") & (df["source"] == "web"), "source"] = "demo_page"  # spoof only
    report = evaluate(UtteranceTable(df), scores, EvalConfig(bootstrap=0))
    row = next(r for r in report.per_source if r["source"] == "demo_page")
    assert row["eer"] is None and "both" in row["note"]
    # "web" kept only its bona fide trials: skipped too; the mean is over "studio" alone
    studio = next(r for r in report.per_source if r["source"] == "studio")
    mean = report.mean_over_sources
    assert (mean["n_skipped"], mean["n_groups"]) == (2, 1) and mean["eer"] == pytest.approx(studio["eer"])
    assert report.pooled["n"] == 360  # pooled still uses every trial


def test_write_report_files(tmp_path):
    table, scores = _dataset()
    report = evaluate(table, scores, EvalConfig(bootstrap=20))
    paths = write_report(report, tmp_path / "out")
    expected = {
        "report.json",
        "report.md",
        "per_attack.csv",
        "per_source.csv",
        "per_codec.csv",
        "det.png",
        "roc.png",
        "scores.png",
    }
    assert set(paths) == expected
    for name in expected:
        assert (tmp_path / "out" / name).stat().st_size > 0
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["pooled"]["eer"] == pytest.approx(report.pooled["eer"])
    assert data["units"]["eer"] == "percent" and data["config"]["bootstrap"] == 20
    assert len(data["per_attack"]) == 2
    csv = pd.read_csv(tmp_path / "out" / "per_attack.csv")
    assert list(csv["attack"]) == ["A01", "A02"] and "eer" in csv.columns
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Per attack" in md and "| A02 |" in md and "![DET](det.png)" in md
    assert (tmp_path / "out" / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_with_score_file_and_errors():
    table, scores = _dataset(codec=False)
    ids = table.column("utt_id")
    sf = ScoreFile(path="s.txt", format="asvspoof2021", ids=ids[::-1].copy(), scores=scores[::-1].copy())
    report = evaluate(table, sf, EvalConfig(bootstrap=0))
    assert report.pooled["eer"] == pytest.approx(100 * eer(table.labels, scores).eer)
    assert report.matching["matched_by"] == "utt_id" and report.warnings == []
    with pytest.raises(SddkitError, match="360 protocol rows"):
        evaluate(table, scores[:10])
    bad = scores.copy()
    bad[3] = np.nan
    with pytest.raises(SddkitError, match="non-finite"):
        evaluate(table, bad)
    with pytest.raises(ConfigError, match="bootstrap"):
        from_dict(EvalConfig, {"bootstrap": -1})


def test_synthetic_example_is_seeded(tmp_path):
    a = write_synthetic_example(tmp_path / "a", n_bonafide=20, n_per_attack=10, seed=3)
    b = write_synthetic_example(tmp_path / "b", n_bonafide=20, n_per_attack=10, seed=3)
    assert a[0].read_text() == b[0].read_text() and a[1].read_text() == b[1].read_text()
    lines = a[0].read_text().splitlines()
    assert len(lines) == 20 + 10 * 6 and all(len(line.split()) == 5 for line in lines)
