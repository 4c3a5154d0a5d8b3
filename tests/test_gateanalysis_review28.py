"""Review 28 of a mixture's gate-weight analysis as a researcher reads it: the tables and heatmaps of `sdd eval`."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from sddkit.data.table import UtteranceTable
from sddkit.evaluation.report import evaluate, write_report


def _capture_heatmaps(monkeypatch) -> dict[str, Figure]:
    """The figures plot_gate_heatmap saves, by file name (it saves with Figure.savefig, not plots._save)."""
    drawn: dict[str, Figure] = {}
    save = Figure.savefig

    def keep(fig, path, *args, **kwargs):
        drawn[str(path).rsplit("/", 1)[-1]] = fig
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return drawn


def _many_sources(n_sources: int, partitions: tuple[str, ...] = ("",)) -> tuple[UtteranceTable, np.ndarray]:
    # source s000 has 5 files (the largest group), every other one file; one bona fide and one spoof of each size
    records = []
    for p in partitions:
        for s in range(n_sources):
            for k in range(5 if s == 0 else 1):
                label = "bonafide" if (s + k) % 2 else "spoof"
                records.append(
                    {"utt_id": f"{p}{s}_{k}", "label": label, "source": f"s{s:03d}", "attack": "A1", "partition": p}
                )
    table = UtteranceTable.from_records(records)
    weights = np.random.default_rng(0).dirichlet([1.0, 1.0], len(table))
    return table, weights


def test_a_heatmap_of_many_groups_draws_the_largest_and_says_so(tmp_path, monkeypatch):
    drawn = _capture_heatmaps(monkeypatch)
    table, w = _many_sources(70)
    report = evaluate(table, np.linspace(-1, 1, len(table)), gate_weights=w, expert_names=["lcnn", "resnet"])
    assert len(report.gate_weights["by_source"]) == 71  # the table keeps every source and the `all` row
    write_report(report, tmp_path)
    ax = drawn["gate_weights_by_source.png"].axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    # before: a row per source, 0.4 in each: 1,500 sources drew a PNG 72,000 px tall, over a browser's limit, in
    # minutes; now 60 groups (the largest first in line) and the total row, in the table's order
    assert len(rows) == 61 and rows[0] == "s000" and rows[-1] == "all"
    assert rows[1:60] == [f"s{s:03d}" for s in range(1, 60)]
    assert "60 of 70 groups" in ax.get_title()
    fig = drawn["gate_weights_by_source.png"]
    assert fig.get_size_inches()[1] < 30
    title = ax.title.get_window_extent(fig.canvas.get_renderer())  # its two lines inside the picture
    assert title.x0 >= fig.bbox.x0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1
    md = (tmp_path / "report.md").read_text()
    assert "The heatmap shows the 60 of these 70 groups with the most files" in md
    assert "`gate_weights_by_source.csv` hold every group" in md
    # the attack table has two groups: drawn whole, no note
    assert [t.get_text() for t in drawn["gate_weights_by_attack.png"].axes[0].get_yticklabels()] == [
        "A1",
        "bonafide",
        "all",
    ]
    assert "gate_weights_by_attack.csv` hold every group" not in md


def test_a_capped_heatmap_of_several_partitions_keeps_each_partitions_total(monkeypatch, tmp_path):
    drawn = _capture_heatmaps(monkeypatch)
    table, w = _many_sources(40, partitions=("dev", "eval"))
    report = evaluate(table, np.linspace(-1, 1, len(table)), gate_weights=w)
    write_report(report, tmp_path)
    ax = drawn["gate_weights_by_source.png"].axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    totals = [r for r in rows if r.endswith("/ all")]
    assert totals == ["dev / all", "eval / all", "all / all"]
    assert len(rows) == 63 and {"dev / s000", "eval / s000"} <= set(rows)
    assert "60 of 80 groups" in ax.get_title()
    # each drawn cell is its row's mean in report.json
    means = {f"{r['partition']} / {r['source']}": r["expert0"] for r in report.gate_weights["by_source"]}
    cells = [t.get_text() for t in ax.texts][::2]  # expert0's cell of each drawn row
    assert cells == [f"{means[r]:.2f}" for r in rows]
    assert rows.index("dev / all") < rows.index("eval / s000")  # in the table's order, the partitions apart


def test_a_heatmap_of_at_most_60_groups_draws_every_row(monkeypatch, tmp_path):
    from sddkit.evaluation.gate_weights import HEATMAP_MAX_GROUPS, gate_weight_table, heatmap_rows

    assert HEATMAP_MAX_GROUPS == 60
    for n_sources in (60, 61):
        table, w = _many_sources(n_sources)
        frame = gate_weight_table(table, w)
        shown = heatmap_rows(frame)
        assert len(shown) == min(n_sources, 60) + 1 and shown.index[-1] == "all"
        assert shown.index[0] == "s000"  # the group of 5 files is kept, one of the 1-file groups left out
    drawn = _capture_heatmaps(monkeypatch)
    table, w = _many_sources(60)
    write_report(evaluate(table, np.linspace(-1, 1, len(table)), gate_weights=w), tmp_path)
    ax = drawn["gate_weights_by_source.png"].axes[0]
    assert len(ax.get_yticklabels()) == 61 and ax.get_title() == "mean gate weight per source"
    assert "The heatmap shows" not in (tmp_path / "report.md").read_text()


def _three_files() -> UtteranceTable:
    return UtteranceTable.from_records(
        [{"utt_id": str(i), "label": "bonafide" if i % 2 else "spoof", "source": "s", "attack": "A1"} for i in range(3)]
    )


def test_gate_weights_of_rows_of_other_lengths_are_a_protocol_error():
    from sddkit.errors import ProtocolError
    from sddkit.evaluation.gate_weights import gate_weight_table

    table = _three_files()
    # gathered from the results of two mixtures (2 and 3 experts), or with a model's result that has none: numpy's
    # bare ValueError ("inhomogeneous shape") escaped sddkit's error handling
    mixed = [[0.5, 0.5], [0.2, 0.3, 0.5], [0.5, 0.5]]
    with pytest.raises(ProtocolError, match=r"^gate weights must be rows of one length; row 0 holds 2 value\(s\) and "):
        evaluate(table, [1.0, 2.0, 3.0], gate_weights=mixed)
    with pytest.raises(ProtocolError, match=r"row 1 a NoneType \(one value per expert"):
        evaluate(table, [1.0, 2.0, 3.0], gate_weights=[[0.5, 0.5], None, [0.5, 0.5]])
    with pytest.raises(ProtocolError, match=r"^router weights must be rows of one length"):
        gate_weight_table(table, mixed, what="router weights")
    with pytest.raises(ProtocolError, match=r"^gate weights must be numbers: could not convert string to float"):
        evaluate(table, [1.0, 2.0, 3.0], gate_weights=[["0.5", "x"]] * 3)
    with pytest.raises(ProtocolError, match=r"^scores must be numbers: could not convert string to float: 'ab'"):
        evaluate(table, ["ab", "c", "d"])
    # rows of one length still tabulate
    assert evaluate(table, [1.0, 2.0, 3.0], gate_weights=[[0.5, 0.5]] * 3).gate_weights["experts"] == [
        "expert0",
        "expert1",
    ]
