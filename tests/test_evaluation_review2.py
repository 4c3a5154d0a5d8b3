"""Second review of `sdd eval` and sddkit.evaluation: joins, one-class results, CIs, report files, gate weights."""

from __future__ import annotations

import json
import warnings

import matplotlib
import numpy as np
import pytest

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation import EvalConfig, evaluate, read_scores, write_report
from sddkit.evaluation.gate_weights import gate_weight_table, plot_gate_heatmap
from sddkit.metrics import eer


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _table(n=60, codec=True, partitions=("eval", "progress")):
    rng = np.random.default_rng(1)
    records, scores = [], []
    for i in range(n):
        label = "bonafide" if i % 3 == 0 else "spoof"
        rec = {
            "utt_id": f"u{i:03d}",
            "path": f"data/u{i:03d}.wav",
            "label": label,
            "attack": "bonafide" if label == "bonafide" else ("A1", "A2")[i % 2],
            "source": ("web", "studio")[i % 2],
            "partition": partitions[(i // 3) % len(partitions)],
        }
        if codec:
            rec["codec"] = ("mp3", "opus")[(i // 6) % 2]
        records.append(rec)
        scores.append(rng.normal(1.0 if label == "bonafide" else -1.0, 1.0))
    return UtteranceTable.from_records(records), np.round(np.array(scores), 6)


# --- reading score files --------------------------------------------------------------------------


def test_tsv_rows_keep_empty_trailing_cells(tmp_path):
    """An ASVspoof 5 TSV row with empty asv/sasv cells (``E_1<TAB>0.5<TAB><TAB>``) was refused as having
    2 columns: every line was ``strip()``-ed, which removed the trailing tab delimiters."""
    text = "filename\tcm-score\tasv-score\tsasv-score\nE_1\t0.5\t\t\nE_2\t-1.25\t1\t2\n"
    sf = read_scores(_write(tmp_path / "score.tsv", text))
    assert list(sf.ids) == ["E_1", "E_2"] and list(sf.scores) == [0.5, -1.25]


def test_empty_label_cell_means_no_label(tmp_path):
    """A CSV (or JSONL) whose optional label is empty on some rows stopped the evaluation with
    "key '' is not 'bonafide' or 'spoof'", while a JSONL row without the label was accepted."""
    sf = read_scores(_write(tmp_path / "s.csv", "utt_id,score,label\nu1,1,bonafide\nu2,2,\n"))
    assert list(sf.ids) == ["u1", "u2"] and sf.keys is None
    jl = read_scores(_write(tmp_path / "s.jsonl", '{"utt_id": "u1", "score": 1, "label": ""}\n'))
    assert list(jl.ids) == ["u1"] and jl.keys is None


# --- joining ----------------------------------------------------------------------------------------


def test_same_file_under_two_path_spellings_is_named(tmp_path, monkeypatch):
    """One file scored twice as 'data/a.wav' and './data/a.wav' (with different scores) made path and stem
    matching ambiguous, so the join failed with "none of its score ids matches the protocol", hiding
    the duplicate. Now the duplicate is named."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "data" / "labels.csv", "path,label\na.wav,bonafide\nb.wav,spoof\n")
    _write(tmp_path / "s.csv", "path,score,error\ndata/a.wav,1.0,\n./data/a.wav,-5.0,\ndata/b.wav,-1,\n")
    code = main(["eval", "--scores", "s.csv", "--protocol", "data/labels.csv", "--out", "o", "--bootstrap", "0"])
    assert code == 2
    from sddkit.data.protocols import read_protocol
    from sddkit.evaluation.scores import match_scores

    with pytest.raises(ProtocolError, match=r"more than once .* 'data/a.wav' and './data/a.wav'"):
        match_scores(read_protocol("data/labels.csv"), read_scores("s.csv"))


def test_one_class_after_the_join_says_why(tmp_path):
    """When every spoof file was an error row of `sdd score`, `sdd eval` stopped with "need both bona fide
    and spoof trials; only bona fide given" and no word of the error rows (their warning was suppressed)."""
    table, _ = _table(n=6, codec=False)
    rows = [
        f"{p},{1.0 if lab == 'bonafide' else ''},{'' if lab == 'bonafide' else 'cannot decode'}"
        for p, lab in zip(table.column("path"), table.column("label"))
    ]
    sf = read_scores(_write(tmp_path / "s.csv", "path,score,error\n" + "\n".join(rows) + "\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ProtocolError, match=r"all bona fide.*4 file\(s\) could not be scored"):
            evaluate(table, sf, EvalConfig(bootstrap=0))


# --- metrics ----------------------------------------------------------------------------------------


def test_no_bootstrap_ci_from_a_single_trial_class():
    """With one bona fide trial the stratified bootstrap redraws that trial in every replicate, so the
    "95 % CI" left its class's uncertainty out (zero width for 1 + 1 trials). Now none is given, with a note."""
    labels = ["bonafide"] + ["spoof"] * 20
    table = UtteranceTable.from_records({"utt_id": f"u{i}", "label": lab} for i, lab in enumerate(labels))
    scores = np.linspace(-1.0, 1.0, 21)[::-1].copy()
    report = evaluate(table, scores, EvalConfig(bootstrap=50))
    assert report.pooled["eer_ci"] is None and "at least 2" in report.pooled["eer_ci_note"]
    two = UtteranceTable.from_records({"utt_id": f"u{i}", "label": lab} for i, lab in enumerate(["bonafide", "spoof"]))
    assert evaluate(two, np.array([0.0, 1.0]), EvalConfig(bootstrap=20)).pooled["eer_ci"] is None
    table2, s2 = _table(codec=False)
    assert evaluate(table2, s2, EvalConfig(bootstrap=20)).pooled["eer_ci"] is not None


def test_per_partition_breakdown_and_eval_partitions(tmp_path, capsys):
    """A protocol spanning partitions (e.g. ASVspoof 2021's eval/progress/hidden_track phases) was pooled with
    no per-partition figures and no way to evaluate one partition, so the official eval-phase EER could not
    be had from `sdd eval`."""
    table, scores = _table(codec=False)
    protocol = table.save(tmp_path / "meta.csv")
    ids = table.column("utt_id")
    _write(tmp_path / "s.txt", "".join(f"{u} {s}\n" for u, s in zip(ids, scores)))
    argv = ["eval", "--scores", str(tmp_path / "s.txt"), "--protocol", str(protocol), "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "all")]) == 0
    data = json.loads((tmp_path / "all" / "report.json").read_text())
    rows = {r["partition"]: r for r in data["per_partition"]}
    y, part = table.labels, table.column("partition")
    for name in ("eval", "progress"):
        m = part == name
        assert rows[name]["eer"] == pytest.approx(100 * eer(y[m], scores[m]).eer)
    assert (tmp_path / "all" / "per_partition.csv").is_file()
    assert "## Per partition" in (tmp_path / "all" / "report.md").read_text()
    assert main([*argv, "--out", str(tmp_path / "ev"), "--partitions", "eval"]) == 0
    pooled = json.loads((tmp_path / "ev" / "report.json").read_text())["pooled"]
    m = part == "eval"
    assert pooled["n"] == int(m.sum()) and pooled["eer"] == pytest.approx(100 * eer(y[m], scores[m]).eer)
    assert main([*argv, "--out", str(tmp_path / "x"), "--partitions", "evl"]) == 2  # a typo is refused
    assert "evl" in capsys.readouterr().err


# --- report files -----------------------------------------------------------------------------------


def test_rerun_into_the_same_folder_removes_tables_it_does_not_write(tmp_path):
    """A rerun into the same --out without a codec column left the first run's per_codec.csv beside the
    new report.json, passing for this evaluation's results."""
    out = tmp_path / "out"
    write_report(evaluate(*_table(codec=True), EvalConfig(bootstrap=0)), out)
    assert (out / "per_codec.csv").is_file()
    paths = write_report(evaluate(*_table(codec=False), EvalConfig(bootstrap=0)), out)
    assert "per_codec.csv" not in paths and not (out / "per_codec.csv").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(paths)  # no staging folder left behind


def test_crash_while_writing_keeps_the_previous_report(tmp_path, monkeypatch):
    """report.json was overwritten first, then the tables and plots one by one: a crash in between (here in
    the ROC plot) left the new report.json beside the previous run's files. Now all files are staged and
    moved in only when complete."""
    out = tmp_path / "out"
    write_report(evaluate(*_table(), EvalConfig(bootstrap=0)), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr("sddkit.evaluation.plots.plot_roc", boom)
    table, scores = _table()
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(evaluate(table, scores + 0.5, EvalConfig(bootstrap=10)), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- gate weights -----------------------------------------------------------------------------------


def test_gate_table_refuses_names_that_collide():
    """A source named 'all' gave two rows named 'all' (the group and the total: .loc['all'] ambiguous);
    an expert named 'n' or two equal expert names crashed in pandas instead of a ProtocolError."""
    table = UtteranceTable.from_records(
        {"utt_id": str(i), "label": "spoof", "source": s} for i, s in enumerate(["all", "x", "x"])
    )
    w = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    with pytest.raises(ProtocolError, match="'all'"):
        gate_weight_table(table, w, "source")
    ok = UtteranceTable.from_records({"utt_id": str(i), "label": "spoof", "source": "x"} for i in range(3))
    for names in (["a", "n"], ["a", "a"]):
        with pytest.raises(ProtocolError, match="expert names"):
            gate_weight_table(ok, w, "source", names)


def test_gate_heatmap_leaves_the_matplotlib_backend_alone(tmp_path):
    """plot_gate_heatmap called matplotlib.use("Agg"), switching the caller's backend (e.g. a notebook's
    inline plots) as a side effect."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        ok = UtteranceTable.from_records({"utt_id": str(i), "label": "spoof", "source": "x"} for i in range(2))
        png = plot_gate_heatmap(gate_weight_table(ok, np.array([[0.3, 0.7], [0.5, 0.5]])), tmp_path / "g.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.get_backend().lower() == "svg"
    finally:
        matplotlib.use(before)
