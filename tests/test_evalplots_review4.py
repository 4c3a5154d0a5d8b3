"""Review 4 of the evaluation outputs: report tables and summary, DET plot, ``sdd compare`` groups and JSON."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from scipy.stats import norm

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.evaluation import EvalConfig, evaluate, render_markdown
from sddkit.evaluation import plots as plots_module
from sddkit.evaluation.compare import compare_scores
from sddkit.evaluation.scores import read_scores
from sddkit.metrics import det_curve, eer_from_curve


def _table(sources: list[str], labels: np.ndarray, attacks: list[str] | None = None) -> UtteranceTable:
    attacks = attacks or ["" if y else "A01" for y in labels]
    return UtteranceTable.from_records(
        [
            {"utt_id": f"u{i}", "label": "bonafide" if y else "spoof", "attack": a, "source": s, "path": f"u{i}.wav"}
            for i, (s, y, a) in enumerate(zip(sources, labels, attacks))
        ]
    )


def _gaussian(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 3 == 0).astype(np.int64)
    return labels, rng.normal(0, 1, n) + 2.0 * labels


def _table_rows(markdown: str, header_start: str) -> list[list[str]]:
    """The rows of the Markdown table whose header starts with ``header_start``, split on unescaped pipes."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.replace("\\|", "\0").strip("|").split("|")]
        rows.append([c.replace("\0", "|") for c in cells])
    return rows


def test_a_pipe_in_a_group_or_expert_name_does_not_split_markdown_cells():
    labels, scores = _gaussian(60)
    sources = ["x|y" if i % 2 else "plain" for i in range(60)]
    attacks = ["" if y else ("A|01" if i % 4 else "A02") for i, y in enumerate(labels)]
    gates = np.full((60, 2), 0.5)
    report = evaluate(
        _table(sources, labels, attacks),
        scores,
        EvalConfig(bootstrap=0),
        gate_weights=gates,
        expert_names=["hu|bert", "w2v"],
    )
    md = render_markdown(report)
    for header in ("| source | bona fide", "| attack | bona fide", "| source | hu", "| attack | hu"):
        rows = _table_rows(md, header)
        widths = {len(r) for r in rows}
        assert len(widths) == 1, (header, rows)  # every row has as many cells as the header
    assert ["x|y"] == [r[0] for r in _table_rows(md, "| source | bona fide") if r[0] == "x|y"]
    assert _table_rows(md, "| source | hu")[0][1] == "hu|bert"
    assert "A|01" in [r[0] for r in _table_rows(md, "| attack | bona fide")]


@pytest.mark.parametrize(("alpha", "label"), [(0.05, "95%"), (0.001, "99.9%"), (0.1, "90%")])
def test_the_eer_interval_is_labelled_with_its_level_in_the_summary_and_the_markdown(alpha, label):
    labels, scores = _gaussian(90)
    # 2000 replicates: enough for each level (fewer are not labelled a CI of it)
    report = evaluate(_table(["s"] * 90, labels), scores, EvalConfig(bootstrap=2000, alpha=alpha))
    low, high = report.pooled["eer_ci"]
    # the one-line summary that `sdd eval` prints said "[low, high]" with no level at all
    assert f"({label} CI {low:.2f} to {high:.2f})" in report.summary()
    # the Markdown rounded the level to a whole percent: a 99.9 % interval read "100% CI"
    assert f"({label} CI {low:.3f} to {high:.3f})" in render_markdown(report)


def test_the_det_plot_marks_each_curve_eer_on_the_line_miss_equals_false_alarm(tmp_path, monkeypatch):
    drawn = {}
    save = plots_module._save

    def keep(fig, path):
        drawn["fig"] = fig
        return save(fig, path)

    monkeypatch.setattr(plots_module, "_save", keep)
    labels, scores = _gaussian(300)
    curves = {"pooled": det_curve(labels, scores), "half": det_curve(labels[:150], scores[:150])}
    path = plots_module.plot_det(curves, tmp_path / "det.png")
    assert path.is_file()
    ax = drawn["fig"].axes[0]
    markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(markers) == len(curves)
    for line, curve in zip(markers, curves.values()):
        at = norm.ppf(eer_from_curve(curve).eer)
        np.testing.assert_allclose(line.get_xdata(), [at])
        np.testing.assert_allclose(line.get_ydata(), [at])
    # the markers stay out of the legend: one entry per curve
    assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()] == ["pooled", "half"]


def _csv_scores(tmp_path, name: str, utts: list[str], values: np.ndarray):
    path = tmp_path / f"{name}.csv"
    path.write_text("utt_id,score\n" + "".join(f"{u},{v:.6f}\n" for u, v in zip(utts, values)))
    return read_scores(path)


def test_compare_by_a_column_names_empty_values_unknown_as_sdd_eval_does(tmp_path):
    labels, scores = _gaussian(120)
    sources = ["" if i % 2 else "web" for i in range(120)]
    table = _table(sources, labels)
    utts = [f"u{i}" for i in range(120)]
    a = _csv_scores(tmp_path, "a", utts, scores)
    b = _csv_scores(tmp_path, "b", utts, scores + np.random.default_rng(1).normal(0, 0.3, 120))
    c = compare_scores(table, [a], [b], by="source", n_bootstrap=50)
    eval_groups = {r["source"] for r in evaluate(table, scores, EvalConfig(bootstrap=0)).per_source}
    assert {value for value, _ in c.groups} == eval_groups == {"unknown", "web"}
    assert "| unknown |" in c.summary()


def test_compare_summary_escapes_a_pipe_in_a_group_value(tmp_path):
    labels, scores = _gaussian(120)
    table = _table(["a|b" if i % 2 else "c" for i in range(120)], labels)
    utts = [f"u{i}" for i in range(120)]
    a = _csv_scores(tmp_path, "a", utts, scores)
    c = compare_scores(table, [a], [a], by="source", n_bootstrap=20)
    row = next(line for line in c.summary().splitlines() if line.startswith("| a"))
    assert row.startswith("| a\\|b |") and len(row.replace("\\|", "").split("|")) == 8


def test_sdd_compare_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch, capsys):
    labels, scores = _gaussian(60)
    protocol = tmp_path / "protocol.csv"
    protocol.write_text(
        "path,label\n" + "".join(f"u{i}.wav,{'bonafide' if y else 'spoof'}\n" for i, y in enumerate(labels))
    )
    score_file = tmp_path / "s.csv"
    score_file.write_text("path,score\n" + "".join(f"u{i}.wav,{v:.6f}\n" for i, v in enumerate(scores)))
    out = tmp_path / "cmp.json"
    out.write_text('{"earlier": "run"}\n')
    real_write_text = pathlib.Path.write_text

    def disk_fills(self, data, *args, **kwargs):  # half the JSON reaches the disk, then it is full
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    argv = ["compare", "--protocol", str(protocol), "--baseline", str(score_file), "--system", str(score_file)]
    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "write_text", disk_fills)
        code = main([*argv, "--bootstrap", "10", "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert json.loads(out.read_text()) == {"earlier": "run"}  # the earlier file is intact, not cut in half
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert main([*argv, "--bootstrap", "10", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["verdict"] == "no difference shown"


def test_the_markdown_mean_over_sources_says_which_sources_it_leaves_out():
    _, scores = _gaussian(90)
    sources = ["a", "b", "only_real"] * 30
    # sources a and b alternate bona fide and spoof in turns of three trials; only_real holds bona fide alone
    labels = np.where(np.array(sources) == "only_real", 1, (np.arange(90) // 3) % 2)
    report = evaluate(_table(sources, labels), scores, EvalConfig(bootstrap=0))
    assert report.mean_over_sources["n_groups"] == 2 and report.mean_over_sources["n_skipped"] == 1
    assert "Mean over 2 source(s) (1 more left out: one class only):" in render_markdown(report)


def _capture_figures(monkeypatch) -> list:
    drawn = []
    save = plots_module._save

    def keep(fig, path):
        drawn.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots_module, "_save", keep)
    return drawn


def test_class_score_counts_read_the_per_class_counts_back_from_the_det_curve():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(0, 1, 500) + labels, 1)  # many ties, within and across classes
    values, bona, spoof = plots_module.class_score_counts(det_curve(labels, scores))
    distinct = np.unique(scores)
    np.testing.assert_array_equal(values, distinct)
    np.testing.assert_array_equal(bona, [np.sum((scores == v) & (labels == 1)) for v in distinct])
    np.testing.assert_array_equal(spoof, [np.sum((scores == v) & (labels == 0)) for v in distinct])


def test_sdd_eval_writes_score_histograms_per_class_normalised_and_robust_to_a_stray_score(tmp_path, monkeypatch):
    drawn = _capture_figures(monkeypatch)
    labels, scores = _gaussian(300)
    scores[5] = 1e9  # one stray score must not squash the histograms into one bin
    report = evaluate(_table(["s"] * 300, labels), scores, EvalConfig(bootstrap=0))
    from sddkit.evaluation import write_report

    paths = write_report(report, tmp_path / "out")
    assert paths["scores.png"].is_file() and "![scores per class](scores.png)" in paths["report.md"].read_text()
    ax = next(fig.axes[0] for fig in drawn if fig.axes[0].get_title() == "scores per class")
    bars = {p.get_label().split(" (")[0]: p for p in ax.patches}
    assert set(bars) == {"bona fide", "spoof"}
    for patch in bars.values():  # each class's histogram sums to 1: classes of unequal size stay comparable
        assert patch.get_data().values.sum() == pytest.approx(1.0)
    assert ax.get_xlim()[1] < 20 and "1 score(s) beyond the axis" in ax.get_xlabel()
    threshold_line = next(line for line in ax.get_lines() if line.get_label() == "EER threshold")
    assert threshold_line.get_xdata()[0] == pytest.approx(report.pooled["threshold"])


def test_score_histograms_of_all_tied_scores_are_drawn(tmp_path):
    labels = np.array([1, 0, 1, 0])
    path = plots_module.plot_score_histogram(det_curve(labels, np.zeros(4)), tmp_path / "s.png", threshold=0.0)
    assert path.is_file() and path.stat().st_size > 0


@pytest.mark.parametrize("name", ["tts$\\x$", "$5 & $10 calls"])
def test_dollar_signs_in_group_and_expert_names_are_drawn_as_text_not_math(tmp_path, monkeypatch, name):
    """matplotlib reads ``$...$`` as math: one name failed the whole report's write (``\\x`` is no symbol),
    another lost its dollars. Names are drawn literally in the DET/ROC legends and the heatmap labels."""
    from matplotlib.figure import Figure

    drawn = []
    savefig = Figure.savefig

    def keep(fig, *args, **kwargs):
        drawn.append(fig)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    labels, scores = _gaussian(120)
    sources = [name if i % 2 else "plain" for i in range(120)]
    report = evaluate(
        _table(sources, labels),
        scores,
        EvalConfig(bootstrap=0),
        gate_weights=np.full((120, 2), 0.5),
        expert_names=[name, "w2v"],
    )
    from sddkit.evaluation import write_report

    paths = write_report(report, tmp_path / "out")
    assert all(p.is_file() for p in paths.values())
    texts = [t for fig in drawn for t in fig.findobj(lambda a: hasattr(a, "_preprocess_math"))]
    shown = [t._preprocess_math(t.get_text()) for t in texts if name.split("$")[1] in t.get_text()]
    # the DET and ROC legends, both heatmaps' expert labels and the per-source heatmap's row label
    assert len(shown) >= 5 and all(not is_math and name in text for text, is_math in shown)
