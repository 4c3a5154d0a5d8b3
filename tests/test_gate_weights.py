from __future__ import annotations

import numpy as np
import pytest

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation.gate_weights import gate_weight_table, plot_gate_heatmap


def test_gate_weight_table_means_and_heatmap(tmp_path):
    table = UtteranceTable.from_records(
        [
            {"utt_id": str(i), "label": "spoof", "source": s, "attack": a}
            for i, (s, a) in enumerate([("x", "A1"), ("x", "A2"), ("y", "A1")])
        ]
    )
    w = np.array([[0.2, 0.8], [0.4, 0.6], [1.0, 0.0]])
    by_source = gate_weight_table(table, w, "source", ["lcnn", "resnet"])
    assert by_source.loc["x", "lcnn"] == pytest.approx(0.3) and by_source.loc["x", "n"] == 2
    assert by_source.loc["y", "resnet"] == pytest.approx(0.0)
    assert by_source.loc["all", "lcnn"] == pytest.approx(1.6 / 3)
    by_attack = gate_weight_table(table, w, "attack")
    assert by_attack.loc["A1", "expert0"] == pytest.approx(0.6)
    png = plot_gate_heatmap(by_source, tmp_path / "g.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ProtocolError):
        gate_weight_table(table, w[:2], "source")
