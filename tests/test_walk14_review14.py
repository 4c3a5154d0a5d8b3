"""README walkthrough (review 14): the errors a new user meets on a hand-written protocol, manifest or recipe."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_support import one_line_error
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.data.protocols import read_protocol
from sddkit.errors import ConfigError, ProtocolError
from sddkit.scoring.batch import read_manifest
from sddkit.training.crossval import HeldOut, held_out_table
from sddkit.training.recipe import TrainRecipe


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_misspelt_label_column_is_named_not_an_unknown_format(tmp_path):
    # `path,lable,...` read "cannot tell the protocol format from this line (1 fields)": a comma-separated
    # header counted as one field, and nothing said that the label column was misspelt
    typo = _write(tmp_path / "meta.csv", "path,lable,source\na.wav,bonafide,x\n")
    with pytest.raises(
        ProtocolError,
        match=r"meta\.csv:1: a table header .* without column\(s\) \['label'\]; is "
        r"'lable' meant to be 'label'\? rename it in the header",
    ):
        read_protocol(typo)
    both = _write(tmp_path / "semi.csv", "Pth;Lable\na.wav;bonafide\n")
    with pytest.raises(
        ProtocolError,
        match=r"is 'Pth' meant to be 'path'\? is 'Lable' meant to be 'label'\? rename "
        "them",
    ):
        read_protocol(both)


def test_a_labels_csv_without_header_says_so(tmp_path):
    headerless = _write(tmp_path / "list.csv", "a.wav,bonafide\nb.wav,spoof\n")
    with pytest.raises(
        ProtocolError,
        match=r"list\.csv:1: the first line 'a.wav,bonafide' holds a label but is not a "
        "header; .* e.g. path,label",
    ):
        read_protocol(headerless)


def test_unknown_csv_line_counts_fields_by_its_separator(tmp_path):
    odd = _write(tmp_path / "odd.csv", "alpha,beta,gamma,delta\n")
    with pytest.raises(ProtocolError, match=r"odd\.csv:1: cannot tell the protocol format from this line \(4 fields\)"):
        read_protocol(odd)
    with pytest.raises(ProtocolError, match="`sdd calibrate` and `sdd fuse`"):  # the commands that take the flag
        read_protocol(odd)


def test_named_format_names_the_misspelt_column(tmp_path):
    typo = _write(tmp_path / "meta.csv", "path,lable\na.wav,bonafide\n")
    with pytest.raises(
        ProtocolError, match=r"header lacks column\(s\) \['label'\]; .*is 'lable' meant to be 'label'\?"
    ):
        read_protocol(typo, format="labels_csv")


def test_sdd_eval_on_a_misspelt_protocol_is_one_line(tmp_path, capsys):
    (tmp_path / "a.wav").touch()
    protocol = _write(tmp_path / "meta.csv", "path,lable\na.wav,bonafide\n")
    scores = _write(tmp_path / "scores.csv", "path,score\na.wav,1.0\n")
    assert main(["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(tmp_path / "r")]) == 2
    assert "is 'lable' meant to be 'label'?" in one_line_error(capsys, "eval")


def test_a_manifest_with_a_misspelt_path_column_says_so(tmp_path):
    manifest = _write(tmp_path / "m.csv", "pth,label\na.wav,bonafide\n")
    with pytest.raises(ProtocolError, match=r"not a manifest sddkit understands .*; is 'pth' meant to be 'path'\?"):
        read_manifest(manifest)


def test_a_held_out_group_of_one_class_says_what_to_do(tmp_path):
    recipe = _recipe(tmp_path)
    for csv in (recipe.data.train.protocol, recipe.data.val.protocol):  # type: ignore[union-attr]
        df = pd.read_csv(csv, keep_default_na=False)
        df.loc[df["label"] == "bonafide", "source"] = "bona_only"
        df.to_csv(csv, index=False)
    with pytest.raises(
        ConfigError,
        match=r"only bona fide files: .*hold it out together with values that have spoof "
        r"files \(--hold-out bona_only,OTHER\)",
    ):
        held_out_table(recipe, HeldOut("source", ("bona_only",)))


def test_recipe_errors_at_top_level_say_recipe_not_the_class_name():
    with pytest.raises(ConfigError, match=r"^recipe: unknown key\(s\) 'trainr' \(did you mean 'trainer'\?\)"):
        from_dict(TrainRecipe, {"trainr": {}})
    with pytest.raises(ConfigError, match=r"^seed must be non-negative"):
        from_dict(TrainRecipe, {"seed": -1, "model": {"frontend": {"name": "logmel"}, "backend": {"name": "lcnn"}}})


def test_a_labelled_folder_without_audio_says_where_it_looked(tmp_path):
    for sub in ("bonafide", "spoof"):
        (tmp_path / "corpus" / sub).mkdir(parents=True)
    (tmp_path / "corpus" / "spoof" / "notes.txt").write_text("x")
    with pytest.raises(ProtocolError, match=r"corpus: no audio file under bonafide/ and spoof/ \(names ending \.wav "):
        read_protocol(tmp_path / "corpus")
