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


def _grouped_table(n: int = 200) -> UtteranceTable:
    # pairs of 4 rows share pair_id; every 10th row has no pair but a speaker; row 7 has neither
    records = []
    for i in range(n):
        pair = f"p{i // 4}" if i % 10 else ""
        speaker = "" if i == 7 else f"s{i // 20}"
        records.append(
            {"utt_id": f"u{i}", "label": "spoof" if i % 3 else "bonafide", "pair_id": pair, "speaker": speaker}
        )
    return UtteranceTable.from_records(records)


def test_group_folds_keep_groups_together_and_ignore_row_order():
    t = _grouped_table()
    folds = t.group_folds(["pair_id", "speaker"], 4)
    assert folds.shape == (len(t),) and set(folds.tolist()) <= {0, 1, 2, 3}
    assert len(set(folds.tolist())) == 4  # 50 groups are spread over all folds
    df = t.df.assign(fold=folds)
    paired = df[df["pair_id"] != ""]
    assert (paired.groupby("pair_id")["fold"].nunique() == 1).all()
    unpaired = df[(df["pair_id"] == "") & (df["speaker"] != "")]
    assert (unpaired.groupby("speaker")["fold"].nunique() == 1).all()
    # the fold of a row depends on its key only: reversed and truncated tables agree row by row
    rev = UtteranceTable(t.df.iloc[::-1])
    assert dict(zip(rev.df["utt_id"], rev.group_folds(["pair_id", "speaker"], 4))) == dict(zip(df["utt_id"], folds))
    head = UtteranceTable(t.df.iloc[:37])
    assert head.group_folds(["pair_id", "speaker"], 4).tolist() == folds[:37].tolist()
    with pytest.raises(ValueError, match="n >= 2"):
        t.group_folds(["pair_id"], 1)
    with pytest.raises(ProtocolError, match="no column"):
        t.group_folds(["nope"], 2)
