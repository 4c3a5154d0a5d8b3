"""Review 26 of the gate-weight / MoLEx expert-use tables of `sdd eval` reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from sddkit.data.table import UtteranceTable
from sddkit.evaluation.gate_weights import gate_weight_table, plot_gate_heatmap
from sddkit.evaluation.report import evaluate, write_report


def _two_partition_table() -> tuple[UtteranceTable, np.ndarray, np.ndarray]:
    # source `shared` in both partitions, with opposite gates: pooled it reads 0.5 / 0.5, which neither partition is
    rows = [
        ("train", "shared", "bonafide", ""),
        ("train", "shared", "spoof", "A1"),
        ("test", "shared", "bonafide", ""),
        ("test", "shared", "spoof", "A1"),
        ("test", "other", "spoof", "A1"),
    ]
    table = UtteranceTable.from_records(
        [
            {"utt_id": str(i), "label": lab, "partition": p, "source": s, "attack": a}
            for i, (p, s, lab, a) in enumerate(rows)
        ]
    )
    w = np.array([[0.9, 0.1], [0.7, 0.3], [0.1, 0.9], [0.3, 0.7], [0.5, 0.5]])
    scores = np.array([2.0, -1.0, 1.5, -2.0, -0.5])
    return table, w, scores


def test_gate_tables_of_several_partitions_are_per_partition(tmp_path):
    table, w, scores = _two_partition_table()
    report = evaluate(table, scores, gate_weights=w, expert_names=["lcnn", "resnet"])
    by_source = report.gate_weights["by_source"]
    got = {(r["partition"], r["source"]): (round(r["lcnn"], 6), r["n"]) for r in by_source}
    assert got[("train", "shared")] == (0.8, 2)
    assert got[("test", "shared")] == (0.2, 2)
    assert got[("test", "other")] == (0.5, 1)
    assert got[("test", "all")] == (0.3, 3)  # the partition's own mean
    assert by_source[-1] == {"partition": "all", "source": "all", "lcnn": pytest.approx(0.5), "resnet": 0.5, "n": 5}
    by_attack = {(r["partition"], r["attack"]): round(r["lcnn"], 6) for r in report.gate_weights["by_attack"]}
    assert by_attack[("train", "A1")] == 0.7 and by_attack[("test", "A1")] == 0.4
    assert by_attack[("test", "bonafide")] == 0.1

    write_report(report, tmp_path)
    csv = pd.read_csv(tmp_path / "gate_weights_by_source.csv", keep_default_na=False)
    assert list(csv.columns) == ["partition", "source", "lcnn", "resnet", "n"]
    md = (tmp_path / "report.md").read_text()
    assert "| partition | source | lcnn | resnet | n |" in md
    assert "| train | shared | 0.800 | 0.200 | 2 |" in md
    assert (tmp_path / "gate_weights_by_attack.png").read_bytes()[:4] == b"\x89PNG"

    # one partition: no partition column, as before
    keep = table.column("partition") == "test"
    report = evaluate(table.subset(keep), scores[keep], gate_weights=w[keep])
    assert [list(r) for r in report.gate_weights["by_source"]] == [["source", "expert0", "expert1", "n"]] * 3


def test_an_expert_named_partition_does_not_overwrite_the_partition_column():
    table, w, scores = _two_partition_table()
    report = evaluate(table, scores, gate_weights=w, expert_names=["partition", "lfb"])
    assert report.gate_weights["experts"] == ["expert0", "expert1"]
    assert [r["partition"] for r in report.gate_weights["by_source"]] == ["test"] * 3 + ["train"] * 2 + ["all"]


def test_heatmap_leaves_room_for_long_row_labels_and_the_title(tmp_path, monkeypatch):
    drawn: list[Figure] = []
    save = Figure.savefig

    def keep(fig, *args, **kwargs):
        drawn.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    labels = ["test_wild / YouTube-voice-clone-unknown", "bonafide", "x"]
    table = UtteranceTable.from_records(
        [{"utt_id": str(i), "label": "spoof", "source": s, "attack": "A"} for i, s in enumerate(labels)]
    )
    frame = gate_weight_table(table, np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]]), "source", ["logmel", "lfb"])
    plot_gate_heatmap(frame, tmp_path / "g.png", title="mean gate weight per source")
    fig = drawn[0]
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    ax = fig.axes[0]
    # everything of the heatmap inside the picture: the title was cut off at the right edge
    for text in [ax.title, *ax.get_yticklabels()]:
        extent = text.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, text.get_text()
    # and each expert's column at least half an inch wide: a long label squeezed two columns to slivers
    assert ax.get_window_extent(renderer).width / fig.dpi / 2 >= 0.5
