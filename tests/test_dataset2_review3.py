"""Data pipeline review (third pass): ``where`` values that silently matched nothing, and tables built in
memory (numeric ``speaker`` / ``pair_id`` columns) whose where/exclude/folds disagreed with their CSV copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError, ProtocolError
from sddkit.training.data import read_tables
from sddkit.training.recipe import ProtocolSpec


def _labels_csv(tmp_path) -> str:
    rows = ["path,label,source"]
    for source in ("tortoise", "yourtts"):
        rows += [f"{source}_b{i}.wav,bonafide,{source}" for i in range(2)]
        rows += [f"{source}_s{i}.wav,spoof,{source}" for i in range(2)]
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_a_where_value_no_row_has_is_an_error_naming_it(tmp_path):
    """``where: {source: [tortoise, yourts]}`` (a typo) trained on tortoise alone without a word; ``partitions``
    and ``sdd cv`` already refuse a value absent from the data."""
    protocol = _labels_csv(tmp_path)
    spec = ProtocolSpec(protocol=protocol, format="labels_csv", where={"source": ["tortoise", "yourts"]})
    with pytest.raises(ConfigError, match=r"data.train\[0\]: .*where \{source: \['yourts'\]\}.*'tortoise', 'yourtts'"):
        read_tables([spec], "data.train")
    # every listed value present: unchanged, also when another key leaves one of them without rows
    ok = ProtocolSpec(
        protocol=protocol, format="labels_csv", where={"source": ["tortoise", "yourtts"], "label": "spoof"}
    )
    table = read_tables([ok], "data.train")
    assert table is not None and len(table) == 4


def test_an_unknown_where_or_exclude_column_lists_the_columns():
    table = UtteranceTable.from_records([{"utt_id": "a", "label": "spoof", "source": "s"}])
    with pytest.raises(ProtocolError, match=r"no column 'sorce' \(did you mean 'source'\?\); columns: \[.*'source'"):
        table.exclude(sorce="s")


def _in_memory() -> UtteranceTable:
    # as pd.read_csv infers them: integer ids, a float column where some rows are blank
    df = pd.DataFrame(
        {
            "utt_id": [f"u{i}" for i in range(8)],
            "label": ["bonafide", "spoof"] * 4,
            "speaker": [1, 1, 2, 2, np.nan, np.nan, 3, 3],
            "pair_id": [10, 10, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
        }
    )
    return UtteranceTable(df)


def test_a_numeric_speaker_column_holds_the_text_of_its_csv_copy(tmp_path):
    """A float ``speaker`` (blank cells) became '1.0': ``where: {speaker: [1]}`` matched nothing, while the
    same table saved and read back holds '1'."""
    table = _in_memory()
    assert table.column("speaker").tolist() == ["1", "1", "2", "2", "", "", "3", "3"]
    assert len(table.where(speaker=1)) == 2
    again = UtteranceTable.load(table.save(tmp_path / "t.csv"))
    assert again.column("speaker").tolist() == table.column("speaker").tolist()


def test_where_and_exclude_on_a_numeric_extra_column_compare_as_text():
    """``exclude: {pair_id: ['10']}`` (recipe text) on an int/float ``pair_id`` excluded nothing."""
    table = _in_memory()
    assert len(table.exclude(pair_id="10")) == 6
    assert len(table.exclude(pair_id=[10])) == 6
    assert sorted(table.where(pair_id=["10"]).column("utt_id")) == ["u0", "u1"]
    assert len(table.where(duration_s=[])) == 0  # duration_s stays numeric


def test_nan_gaps_of_a_numeric_group_column_are_empty_not_one_group(tmp_path):
    """Every row whose float ``pair_id`` was NaN got the key 'pair_id=nan': different speakers (and rows
    with no group at all) were one group, held in one fold, and the folds differed from the CSV copy's."""
    table = _in_memory()
    folds = table.group_folds(["pair_id", "speaker"], 1000)
    assert folds[0] == folds[1] and folds[2] == folds[3] and folds[6] == folds[7]
    assert len({folds[2], folds[4], folds[5], folds[6]}) == 4  # speaker 2, two ungrouped rows, speaker 3
    again = UtteranceTable.load(table.save(tmp_path / "t.csv"))
    np.testing.assert_array_equal(again.group_folds(["pair_id", "speaker"], 1000), folds)
