"""`sdd eval` on a mixture's scores: the gate_w* columns become mean gate weights per source and per attack."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation import EvalConfig, evaluate, write_report
from sddkit.evaluation.scores import read_scores

# utt_id, label, attack, source, score, gate_w0, gate_w1
ROWS = [
    ("b1", "bonafide", "", "web", 2.0, 0.9, 0.1),
    ("b2", "bonafide", "", "studio", 1.5, 0.7, 0.3),
    ("s1", "spoof", "A01", "web", -1.0, 0.2, 0.8),
    ("s2", "spoof", "A01", "studio", 0.5, 0.4, 0.6),
    ("s3", "spoof", "A02", "web", -2.0, 0.5, 0.5),
]


def _table() -> UtteranceTable:
    return UtteranceTable.from_records(
        [{"utt_id": u, "label": y, "attack": a, "source": s, "path": f"{u}.wav"} for u, y, a, s, *_ in ROWS]
    )


def _write_csv(path, rows=ROWS, extra_header=""):
    lines = [f"utt_id,score,gate_w0,gate_w1,error{extra_header}"]
    lines += [f"{u},{sc},{w0},{w1}," for u, _, _, _, sc, w0, w1 in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_gate_columns_give_hand_computed_means_per_source_and_attack(tmp_path):
    scores = read_scores(_write_csv(tmp_path / "s.csv"))
    np.testing.assert_allclose(scores.gate_weights, [[w0, w1] for *_, w0, w1 in ROWS])
    report = evaluate(_table(), scores, EvalConfig(bootstrap=0))
    gates = report.gate_weights
    assert gates["experts"] == ["expert0", "expert1"]
    by_source = {r["source"]: r for r in gates["by_source"]}
    assert by_source["web"]["expert0"] == pytest.approx((0.9 + 0.2 + 0.5) / 3)
    assert by_source["studio"]["expert1"] == pytest.approx((0.3 + 0.6) / 2)
    assert by_source["all"]["n"] == 5 and by_source["all"]["expert0"] == pytest.approx(2.7 / 5)
    by_attack = {r["attack"]: r for r in gates["by_attack"]}
    assert set(by_attack) == {"A01", "A02", "bonafide", "all"}  # bona fide files get a row of their own
    assert by_attack["bonafide"]["expert0"] == pytest.approx(0.8)
    assert by_attack["A01"]["expert1"] == pytest.approx(0.7) and by_attack["A01"]["n"] == 2


def test_gate_weights_follow_the_protocol_order_not_the_score_file_order(tmp_path):
    scores = read_scores(_write_csv(tmp_path / "s.csv", rows=ROWS[::-1]))
    report = evaluate(_table(), scores, EvalConfig(bootstrap=0))
    by_attack = {r["attack"]: r for r in report.gate_weights["by_attack"]}
    assert by_attack["A02"]["expert0"] == pytest.approx(0.5) and by_attack["bonafide"]["expert1"] == pytest.approx(0.2)


def test_jsonl_gate_fields_and_error_rows(tmp_path):
    lines = [
        json.dumps({"utt_id": u, "score": sc, "gate_w0": w0, "gate_w1": w1, "error": ""}) for u, *_, sc, w0, w1 in ROWS
    ]
    # an error row of `sdd score` has neither score nor gate weights: it is skipped, not refused
    lines.append(json.dumps({"utt_id": "broken", "score": None, "gate_w0": None, "gate_w1": None, "error": "bad"}))
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    scores = read_scores(path)
    assert scores.gate_weights.shape == (5, 2) and scores.failed == ("broken",)
    assert evaluate(_table(), scores, EvalConfig(bootstrap=0)).gate_weights["by_source"][-1]["n"] == 5


def test_scores_without_gate_columns_have_no_gate_tables(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("utt_id,score\n" + "".join(f"{u},{sc}\n" for u, *_, sc, _, _ in ROWS))
    report = evaluate(_table(), read_scores(path), EvalConfig(bootstrap=0))
    assert report.gate_weights is None and report.to_dict()["gate_weights"] is None


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        ("utt_id,score,gate_w0,gate_w2", "b1,1.0,0.5,0.5", r"gate_w0 \.\. gate_w<E-1>, got \[0, 2\]"),
        ("utt_id,score,gate_w0,gate_w1", "b1,1.0,0.5,", "gate_w1 '' is not a number"),
        ("utt_id,score,gate_w0,gate_w1", "b1,1.0,0.5,nan", "finite and >= 0"),
        ("utt_id,score,gate_w0,gate_w1", "b1,1.0,-0.5,1.5", "finite and >= 0"),
    ],
)
def test_malformed_gate_columns_are_refused_with_the_line(tmp_path, header, row, message):
    path = tmp_path / "s.csv"
    path.write_text(f"{header}\n{row}\n")
    with pytest.raises(ProtocolError, match=message):
        read_scores(path)


def test_jsonl_rows_with_different_numbers_of_experts_are_refused(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        json.dumps({"utt_id": "a", "score": 1, "gate_w0": 0.5, "gate_w1": 0.5})
        + "\n"
        + json.dumps({"utt_id": "b", "score": 1, "gate_w0": 1.0})
        + "\n"
    )
    with pytest.raises(ProtocolError, match=r"s.jsonl:2: 1 gate weights, where the rows before have 2"):
        read_scores(path)
    path.write_text(
        json.dumps({"utt_id": "a", "score": 1}) + "\n" + json.dumps({"utt_id": "b", "score": 1, "gate_w0": 1.0}) + "\n"
    )
    with pytest.raises(ProtocolError, match="gate weights on 1 of 2 scored rows"):
        read_scores(path)


def test_array_scores_take_gate_weights_as_an_argument():
    table = _table()
    scores = np.array([r[4] for r in ROWS])
    weights = np.array([[r[5], r[6]] for r in ROWS])
    report = evaluate(table, scores, EvalConfig(bootstrap=0), gate_weights=weights)
    assert report.gate_weights["by_source"][-1]["expert1"] == pytest.approx(weights[:, 1].mean())
    with pytest.raises(ProtocolError, match=r"\(N=5, E >= 1\)"):
        evaluate(table, scores, EvalConfig(bootstrap=0), gate_weights=weights[:, 0])


def test_write_report_adds_gate_tables_and_heatmaps_and_a_rerun_without_them_removes_them(tmp_path):
    out = tmp_path / "report"
    scores = read_scores(_write_csv(tmp_path / "s.csv"))
    paths = write_report(evaluate(_table(), scores, EvalConfig(bootstrap=0)), out)
    gate_files = {"gate_weights_by_source.csv", "gate_weights_by_attack.csv"}
    gate_files |= {"gate_weights_by_source.png", "gate_weights_by_attack.png"}
    assert gate_files <= set(paths)
    for name in gate_files:
        assert (out / name).stat().st_size > 0
    assert (out / "gate_weights_by_source.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "gate_weights_by_attack.csv")
    assert list(table.columns) == ["attack", "expert0", "expert1", "n"]
    assert table.set_index("attack").loc["A02", "expert1"] == pytest.approx(0.5)
    md = (out / "report.md").read_text()
    assert "## Mean gate weight" in md and "| bonafide | 0.800 | 0.200 | 2 |" in md
    data = json.loads((out / "report.json").read_text())
    assert data["gate_weights"]["experts"] == ["expert0", "expert1"]

    plain = evaluate(_table(), np.array([r[4] for r in ROWS]), EvalConfig(bootstrap=0))
    write_report(plain, out)
    assert not any((out / name).exists() for name in gate_files)  # no stale tables from the mixture's run


def test_sdd_eval_writes_gate_tables_for_a_mixtures_scores(tmp_path, capsys):
    protocol = tmp_path / "protocol.csv"
    protocol.write_text("path,label,attack,source\n" + "".join(f"{u}.wav,{y},{a},{s}\n" for u, y, a, s, *_ in ROWS))
    scores = tmp_path / "scores.csv"  # as `sdd score` writes it for a two-expert mixture
    scores.write_text(
        "path,score,probability,decision,duration_s,n_windows,raw_score,gate_w0,gate_w1,expert_score0,"
        "expert_score1,error\n"
        + "".join(f"{u}.wav,{sc},0.5,bonafide,4,1,{sc},{w0},{w1},0,0,\n" for u, *_, sc, w0, w1 in ROWS)
    )
    out = tmp_path / "report"
    assert (
        main(["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]) == 0
    )
    by_source = pd.read_csv(out / "gate_weights_by_source.csv").set_index("source")
    assert by_source.loc["studio", "expert0"] == pytest.approx(0.55) and by_source.loc["all", "n"] == 5


def _record(scores, names):
    """The run record `sdd score` writes beside its output (only the key sdd eval reads is needed here)."""
    scores.with_name(scores.name + ".run.json").write_text(json.dumps({"model": "m", "expert_names": names}))


def test_experts_are_named_as_sdd_score_recorded_them_beside_the_scores(tmp_path):
    path = _write_csv(tmp_path / "s.csv")
    _record(path, ["lcnn_logmel", "lcnn_logspec"])
    scores = read_scores(path)
    assert scores.expert_names == ("lcnn_logmel", "lcnn_logspec")
    report = evaluate(_table(), scores, EvalConfig(bootstrap=0))
    assert report.gate_weights["experts"] == ["lcnn_logmel", "lcnn_logspec"]
    by_source = {r["source"]: r for r in report.gate_weights["by_source"]}
    assert by_source["web"]["lcnn_logmel"] == pytest.approx((0.9 + 0.2 + 0.5) / 3)
    out = tmp_path / "report"
    write_report(report, out)
    columns = list(pd.read_csv(out / "gate_weights_by_attack.csv").columns)
    assert columns == ["attack", "lcnn_logmel", "lcnn_logspec", "n"]
    assert "`lcnn_logmel`, `lcnn_logspec`" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "record",
    [
        '{"model": "m"}',  # written before expert names were recorded
        '{"expert_names": ["only_one"]}',  # does not fit these two columns
        '{"expert_names": ["same", "same"]}',
        '{"expert_names": ["n", "other"]}',  # would clash with the count column
        "not json",
        "[1, 2]",
    ],
)
def test_a_record_without_usable_names_leaves_the_experts_numbered(tmp_path, record):
    path = _write_csv(tmp_path / "s.csv")
    (tmp_path / "s.csv.run.json").write_text(record)
    report = evaluate(_table(), read_scores(path), EvalConfig(bootstrap=0))
    assert report.gate_weights["experts"] == ["expert0", "expert1"]


def test_array_scores_take_expert_names_with_their_gate_weights():
    table, scores = _table(), np.array([r[4] for r in ROWS])
    weights = np.array([[r[5], r[6]] for r in ROWS])
    report = evaluate(table, scores, EvalConfig(bootstrap=0), gate_weights=weights, expert_names=["a", "b"])
    assert report.gate_weights["experts"] == ["a", "b"]
    with pytest.raises(ProtocolError, match="give both"):
        evaluate(table, scores, EvalConfig(bootstrap=0), expert_names=["a", "b"])
    with pytest.raises(ProtocolError, match="2 expert names for 3 experts"):
        three = np.c_[weights, weights[:, :1]]
        evaluate(table, scores, EvalConfig(bootstrap=0), gate_weights=three, expert_names=["a", "b"])


def test_a_source_named_all_is_quoted_in_the_gate_tables_not_fatal_to_the_report(tmp_path):
    # the tables' total row is `all`; a source of that name aborted the whole evaluation
    rows = [(u, y, a, "all" if s == "web" else s, *rest) for u, y, a, s, *rest in ROWS]
    table = UtteranceTable.from_records(
        [{"utt_id": u, "label": y, "attack": a, "source": s, "path": f"{u}.wav"} for u, y, a, s, *_ in rows]
    )
    report = evaluate(table, read_scores(_write_csv(tmp_path / "s.csv", rows)), EvalConfig(bootstrap=0))
    by_source = {r["source"]: r for r in report.gate_weights["by_source"]}
    assert by_source["'all'"]["n"] == 3 and by_source["all"]["n"] == 5


def test_a_source_named_pooled_does_not_replace_the_pooled_curve():
    rows = [(u, y, a, "pooled" if s == "web" else s, sc) for u, y, a, s, sc, *_ in ROWS]
    table = UtteranceTable.from_records(
        [{"utt_id": u, "label": y, "attack": a, "source": s, "path": f"{u}.wav"} for u, y, a, s, _ in rows]
    )
    report = evaluate(table, np.array([r[4] for r in rows]), EvalConfig(bootstrap=0))
    assert set(report.curves) == {"pooled", "source pooled", "studio"}
    assert report.curves["pooled"].n_bonafide == 2 and report.curves["source pooled"].n_spoof == 2
