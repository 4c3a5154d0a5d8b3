"""Gate-weight tables refuse NaN or inf weights instead of averaging them inconsistently."""

from __future__ import annotations

import numpy as np
import pytest

from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation.gate_weights import gate_weight_table


def test_non_finite_gate_weights_are_refused():
    table = UtteranceTable.from_records(
        [{"utt_id": str(i), "label": "spoof", "source": s} for i, s in enumerate(["x", "x", "y"])]
    )
    # before: source x reported mean 0.2 with n = 2 (the NaN row silently skipped) and the `all` row NaN
    w = np.array([[0.2, 0.8], [np.nan, np.nan], [1.0, 0.0]])
    with pytest.raises(ProtocolError, match="finite"):
        gate_weight_table(table, w, "source")
    with pytest.raises(ProtocolError, match="finite"):
        gate_weight_table(table, np.array([[0.2, 0.8], [np.inf, 0.0], [1.0, 0.0]]), "source")
