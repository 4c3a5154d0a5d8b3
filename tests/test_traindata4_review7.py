"""Review 7 of training data plumbing: sdd cv's held-out rows (each file once, never trained on)."""

from __future__ import annotations

import pandas as pd
import pytest
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.errors import ConfigError
from sddkit.training.crossval import HeldOut, check_fold_data, held_out_table
from sddkit.training.recipe import ProtocolSpec


def _second_reader(tmp_path, recipe, edit):
    """The recipe's train protocol listed again under prefixed utt_ids (another reader of the same files)."""
    df = pd.read_csv(recipe.data.train.protocol, keep_default_na=False)
    df["utt_id"] = "b_" + df["utt_id"].astype(str)
    df = edit(df)
    csv = tmp_path / "again.csv"
    df.to_csv(csv, index=False)
    recipe.data.train = [recipe.data.train, ProtocolSpec(protocol=str(csv), format="utterance_table")]
    return recipe


def test_a_held_out_file_listed_by_two_specs_is_scored_and_counted_once(tmp_path):
    recipe = _second_reader(tmp_path, _recipe(tmp_path), lambda df: df[df["source"] == "s1"].iloc[:2])
    held = held_out_table(recipe, HeldOut("source", ("s1",)))
    paths = [str(p) for p in held.column("path")]
    assert len(paths) == len(set(paths)) == 12  # 6 s1 files in train, 6 in val
    assert not any(str(u).startswith("b_") for u in held.column("utt_id"))  # the first spec's rows are kept


def test_a_held_out_file_the_fold_trains_on_under_another_value_is_refused(tmp_path):
    def relabel(df):
        df = df[df["source"] == "s1"].iloc[:1].copy()
        df["source"] = "s0"
        return df

    recipe = _second_reader(tmp_path, _recipe(tmp_path), relabel)
    with pytest.raises(ConfigError, match=r"fold s1: 1 held-out audio file\(s\) are in the fold's training data"):
        check_fold_data(recipe, HeldOut("source", ("s1",)))
    check_fold_data(recipe, HeldOut("source", ("s2",)))  # a fold without such a file runs


def test_a_mixed_object_column_holds_text_as_where_and_folds_compare_it():
    from sddkit.data.table import UtteranceTable

    df = pd.DataFrame(
        {
            "utt_id": ["a", "b", "c", "d"],
            "label": ["bonafide", "spoof", "spoof", "bonafide"],
            "pair_id": [1, "x", None, 2.0],  # records with a number, a text and a gap
            "speaker": [1.0, "s", "001", None],
        }
    )
    table = UtteranceTable(df)
    assert list(table.column("pair_id")) == ["1", "x", "", "2"]
    assert list(table.column("speaker")) == ["1", "s", "001", ""]  # a float 1.0 is '1', as in a float column
    assert list(table.where(pair_id=1).column("utt_id")) == ["a"]
    assert list(table.where(pair_id="2").column("utt_id")) == ["d"]
    assert table.absent_values("pair_id", [1, "x"]) == []
    assert list(table.exclude(speaker=["1"]).column("utt_id")) == ["b", "c", "d"]
    # the same folds as the table's CSV copy read back (every cell text there)
    as_csv = UtteranceTable(table.df.astype({"pair_id": str}))
    assert table.group_folds(["pair_id"], 3).tolist() == as_csv.group_folds(["pair_id"], 3).tolist()


def test_folds_by_columns_the_protocol_lacks_name_the_spec_and_the_key(tmp_path):
    from test_crossval import _corpus

    from sddkit.training.data import read_tables
    from sddkit.training.recipe import FoldSpec

    csv = str(_corpus(tmp_path, "train", 0))
    other = tmp_path / "other.csv"
    df = pd.read_csv(csv, keep_default_na=False)
    df["utt_id"] = "b_" + df["utt_id"].astype(str)
    df.to_csv(other, index=False)
    specs = [
        ProtocolSpec(protocol=csv, format="utterance_table"),
        ProtocolSpec(protocol=str(other), format="utterance_table", folds=FoldSpec(n=2, keep=[0], by=["spekaer"])),
    ]
    with pytest.raises(ConfigError, match=r"data.train\[1\]: .*folds.by \['spekaer'\].*did you mean 'speaker'"):
        read_tables(specs, "data.train")


def test_a_protocol_listing_a_file_twice_with_its_label_is_warned_of(tmp_path, caplog):
    from test_crossval import _corpus

    from sddkit.training.data import read_tables

    csv = _corpus(tmp_path, "train", 0)
    df = pd.read_csv(csv, keep_default_na=False)
    again = df.iloc[:1].copy()
    again["utt_id"] = "again_" + again["utt_id"].astype(str)
    pd.concat([df, again]).to_csv(csv, index=False)
    with caplog.at_level("WARNING", logger="sddkit.training"):
        table = read_tables(ProtocolSpec(protocol=str(csv), format="utterance_table"), "data.train")
    assert len(table) == len(df) + 1  # accepted, as two specs listing one file are
    assert "data.train: " in caplog.text and "lists 1 audio file(s) again under another utt_id" in caplog.text
