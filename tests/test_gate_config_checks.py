"""Gate configs are checked when a recipe is parsed: one clear ConfigError, not a traceback after the experts load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError
from sddkit.evaluation.gate_weights import gate_weight_table
from sddkit.registry import get_registry


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"heads": 0}, "heads=0"),  # before: ZeroDivisionError in __post_init__
        ({"d_model": 0}, "d_model=0"),  # before: torch's ValueError from MultiheadAttention at build time
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),  # before: torch's ValueError from Dropout at build time
        ({"layers": 0}, "layers=0"),  # before: built a gate without attention (no expert sees the others)
        ({"ff_dim": 0}, "ff_dim=0"),  # before: built with a zero-width feed-forward
    ],
)
def test_attention_gate_config_is_checked_when_parsed(bad, match):
    with pytest.raises(ConfigError, match=match):
        get_registry("gate").parse({"name": "attention", "d_model": 16, "heads": 2, **bad}, "mixture.gate")


def test_gate_weight_table_keeps_rows_whose_group_is_missing():
    table = UtteranceTable(pd.DataFrame({"utt_id": ["0", "1", "2"], "label": "spoof", "snr": [10.0, np.nan, 10.0]}))
    w = np.array([[0.2, 0.8], [0.4, 0.6], [1.0, 0.0]])
    got = gate_weight_table(table, w, "snr")
    # before: the NaN row vanished from the groups (their n summed to 2) while the `all` row counted 3
    assert got.loc[got.index != "all", "n"].sum() == got.loc["all", "n"] == 3
    # a table holds text: the missing value is the empty group, as in a table read from a protocol file
    assert list(got.index) == ["", "10", "all"]
    missing = got[got.index == ""]
    assert len(missing) == 1 and missing["expert0"].iloc[0] == pytest.approx(0.4)
