from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sddkit.data.table import REQUIRED_COLUMNS, UtteranceTable
from sddkit.errors import ProtocolError


def _table():
    return UtteranceTable.from_records(
        [
            {"utt_id": "a", "path": "a.wav", "label": "bonafide", "attack": "bonafide", "duration_s": 1.5},
            {"utt_id": "b", "path": "b.wav", "label": "spoof", "attack": "A01", "source": "x"},
            {"utt_id": "c", "path": "c.wav", "label": "spoof", "attack": "A02", "codec": "mp3"},
        ]
    )


def test_columns_filled_and_labels():
    t = _table()
    assert list(t.df.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert t.labels.tolist() == [1, 0, 0]
    assert np.isnan(t.df["duration_s"][1])
    assert t.df["speaker"].tolist() == ["", "", ""]
    assert t.has_column("codec") and not t.has_column("speaker")
    assert len(t.where(attack=["A01", "A02"])) == 2
    assert len(t.where(label="bonafide")) == 1
    assert "1 bonafide, 2 spoof" in repr(t)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_roundtrip(tmp_path, suffix):
    t = _table()
    back = UtteranceTable.load(t.save(tmp_path / f"t{suffix}"))
    pd.testing.assert_frame_equal(back.df, t.df, check_dtype=False)


def test_validation_errors(tmp_path):
    with pytest.raises(ProtocolError, match="bonafide"):
        UtteranceTable.from_records([{"utt_id": "a", "label": "fake"}])
    with pytest.raises(ProtocolError, match="duplicate"):
        UtteranceTable.from_records([{"utt_id": "a", "label": "spoof"}, {"utt_id": "a", "label": "spoof"}])
    with pytest.raises(ProtocolError, match="required column 'label'"):
        UtteranceTable(pd.DataFrame({"utt_id": ["a"]}))
    with pytest.raises(ProtocolError, match="no such"):
        UtteranceTable.load(tmp_path / "missing.csv")
