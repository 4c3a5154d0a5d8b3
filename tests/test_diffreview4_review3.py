"""Review of the day's changes (diffreview4): regressions they introduced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sddkit.config import apply_overrides, from_dict
from sddkit.data import table as table_module
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError
from sddkit.training.data import read_tables
from sddkit.training.recipe import DataConfig


def _frame(n: int) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame(
        {
            "utt_id": [f"u{k}" for k in i],
            "label": np.where(i % 2 == 0, "bonafide", "spoof"),
            "speaker": i % 7,  # int64
            "pair_id": np.where(i % 3 == 0, np.nan, i // 2).astype(float),  # integral floats with gaps
            "gain": np.where(i % 4 == 0, 0.1, 2.0).astype(np.float32),
            "flag": i % 5 == 0,
        }
    )


def test_numeric_columns_become_text_without_a_python_call_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Integer and integral-float columns convert as arrays: per value in Python, a 1M-row table took seconds."""
    calls = 0
    real = table_module._cell_text

    def counting(value: object) -> str:
        nonlocal calls
        calls += 1
        return real(value)

    df = _frame(3000)
    monkeypatch.setattr(table_module, "_cell_text", counting)
    t = UtteranceTable(df, validate=False)
    assert calls <= 3000 // 4 + 1  # only the non-integral floats (gain 0.1) take the per-value rule
    monkeypatch.setattr(table_module, "_cell_text", real)
    got = t.df
    assert list(got["speaker"][:3]) == ["0", "1", "2"]
    assert list(got["pair_id"][:4]) == ["", "0", "1", ""]
    assert list(got["gain"][:2]) == ["0.1", "2"]
    assert list(got["flag"][:2]) == ["True", "False"]
    for col in ("speaker", "pair_id", "gain", "flag"):  # exactly the per-value rule's text
        assert list(got[col]) == [real(v) for v in df[col].to_numpy()]
        assert all(type(v) is str for v in got[col])


def test_numeric_text_matches_the_per_value_rule_on_edge_values() -> None:
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 1e20, 2.0**62, 2.0**62 - 1024, 0.5, 1e-300, -3.0, 3e15 + 0.5])
    for dtype in (np.float64, np.float32, np.float16):
        with np.errstate(over="ignore"):
            column = pd.Series(values.astype(dtype))
        want = [table_module._cell_text(v) for v in column.to_numpy()]
        assert list(table_module._numeric_text(column)) == want
    for column in (pd.Series([1, None, 3], dtype="Int64"), pd.Series([np.iinfo(np.uint64).max], dtype=np.uint64)):
        assert list(table_module._numeric_text(column)) == [table_module._cell_text(v) for v in column.to_numpy()]


def test_single_spec_errors_name_the_key_an_override_takes(tmp_path: Path) -> None:
    """A recipe whose data.train is one mapping: its errors name ``data.train`` (``data.train[0]`` as an
    override is refused there: "[0] indexes a list, but data.train is a mapping")."""
    protocol = tmp_path / "p.csv"
    pd.DataFrame(
        {"utt_id": ["a", "b"], "path": ["a.wav", "b.wav"], "label": ["bonafide", "spoof"], "source": ["x", "x"]}
    ).to_csv(protocol, index=False)
    raw = {"train": {"protocol": str(protocol), "format": "utterance_table", "where": {"source": ["y"]}}}
    data = from_dict(DataConfig, raw, "data")
    with pytest.raises(ConfigError) as exc:
        read_tables(data.train, "data.train")
    key = str(exc.value).split(":", 1)[0]
    assert key == "data.train"
    fixed = apply_overrides({"data": raw}, [f"{key}.where={{source: [x]}}"])["data"]
    assert len(read_tables(from_dict(DataConfig, fixed, "data").train, "data.train")) == 2
    listed = from_dict(DataConfig, {"train": [raw["train"]]}, "data")
    with pytest.raises(ConfigError, match=r"^data\.train\[0\]: "):  # in a list: its index, as before
        read_tables(listed.train, "data.train")


def test_where_and_exclude_match_numbers_as_the_column_holds_them() -> None:
    """A float column of an in-memory frame is text now ('1'): ``where(pair_id=1.0)`` compared '1.0' and kept
    nothing (it matched the float before the column became text)."""
    t = UtteranceTable(_frame(12), validate=False)
    assert list(t.where(pair_id=[1.0, 2.0]).column("utt_id")) == ["u2", "u4", "u5"]
    assert list(t.where(pair_id=np.float32(1.0)).column("utt_id")) == ["u2"]
    assert len(t.where(speaker=[3]).column("utt_id")) == 2  # ints as before
    assert len(t.exclude(pair_id=[1.0])) == 11
    assert list(t.where(gain=[0.1]).column("utt_id")) == ["u0", "u4", "u8"]
