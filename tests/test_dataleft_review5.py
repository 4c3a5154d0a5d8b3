"""Leftovers of the data layer (review 5): a misspelt ``exclude`` value or column, one shared UTF-16 BOM reader for
score files and manifests, an unclosed quote in an MLAAD ``meta.csv``, Windows backslash paths in a labels CSV."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest
from test_train_support import one_thread, write_corpus  # noqa: F401  (autouse fixture)

from sddkit.config import from_dict, to_dict
from sddkit.data.protocols import read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError, ProtocolError
from sddkit.training.recipe import ProtocolSpec

# --- 1. exclude values and columns are checked against the protocol --------------------------------------------


def _table_csv(path: Path, sources: list[str], prefix: str = "u") -> str:
    records = [
        {"utt_id": f"{prefix}{i}", "label": "bonafide" if i % 2 else "spoof", "source": s}
        for i, s in enumerate(sources * 2)
    ]
    UtteranceTable.from_records(records).save(path)
    return str(path)


def _spec(protocol: str, **keys) -> ProtocolSpec:
    return from_dict(ProtocolSpec, {"protocol": protocol, "format": "utterance_table", **keys})


def test_a_misspelt_exclude_value_is_an_error_naming_column_value_and_closest(tmp_path):
    """``exclude: {source: [resemblyzr]}`` excluded nothing, silently: the model trained on the source the recipe
    says it leaves out."""
    from sddkit.training.data import read_tables

    csv = _table_csv(tmp_path / "t.csv", ["resemblyzer", "tortoise", "vits_demo"])
    ok = read_tables([_spec(csv, exclude={"source": ["resemblyzer"]})], "data.train")
    assert ok is not None and "resemblyzer" not in set(ok.column("source"))
    with pytest.raises(ConfigError) as exc:
        read_tables([_spec(csv, exclude={"source": ["resemblyzr", "tortoise"]})], "data.train")
    text = str(exc.value)
    assert text.startswith("data.train[0]: ")
    assert "exclude {source: ['resemblyzr']}: no row has it, so it excludes nothing" in text
    assert "closest: 'resemblyzer' for 'resemblyzr'" in text
    # how to run the recipe on a protocol without the source: an empty exclude, which is accepted
    assert text.endswith("; on a protocol without them, drop them or the whole exclude (exclude: {})")
    assert len(read_tables([_spec(csv, exclude={})], "data.train")) == len(read_tables([_spec(csv)], "data.train"))
    # where's own check says which value is closest too
    with pytest.raises(ConfigError, match=r"where \{source: \['tortoyse'\]\}.*closest: 'tortoise' for 'tortoyse'"):
        read_tables(_spec(csv, where={"source": ["tortoyse"]}), "data.val")


def test_an_unknown_exclude_column_is_an_error_naming_the_spec_and_column(tmp_path):
    from sddkit.training.data import read_tables

    csv = _table_csv(tmp_path / "t.csv", ["a", "b"])
    with pytest.raises(
        ConfigError,
        match=r"^data.train: .*exclude \{sorce: \.\.\.\}: the protocol has no column "
        r"'sorce' \(did you mean 'source'\?\)",
    ):
        read_tables(_spec(csv, exclude={"sorce": ["a"]}), "data.train")


def _cv_recipe(tmp_path, train, val):
    from sddkit.training.recipe import TrainRecipe

    model = {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 4}}
    return from_dict(
        TrainRecipe,
        {
            "model": model,
            "data": {"train": train, "val": val, "crop_samples": 4000, "batch_size": 2},
            "trainer": {"max_steps": 1, "out_dir": str(tmp_path / "unused"), "progress": False},
        },
    )


def test_cv_folds_exclude_values_a_spec_lacks_without_tripping_the_check(tmp_path):
    """sdd cv adds every fold value to every spec's exclude: a value of another corpus of the list, or one that only
    val holds, is absent from that spec's protocol. Those values pass; the recipe's own misspelt ones do not."""
    from sddkit.training.crossval import HeldOut, check_fold_data, fold_recipe, held_out_table
    from sddkit.training.data import read_tables, read_train_table, read_val_table

    a = _table_csv(tmp_path / "a.csv", ["s0", "s1"], "a")
    b = _table_csv(tmp_path / "b.csv", ["corpus_b"], "b")
    val = _table_csv(tmp_path / "v.csv", ["s0", "s1", "only_val"], "v")
    spec = lambda p, **k: {"protocol": p, "format": "utterance_table", **k}  # noqa: E731
    recipe = _cv_recipe(tmp_path, [spec(a), spec(b)], spec(val))

    corpus_out = HeldOut("source", ("corpus_b",))  # leave-one-corpus-out: A's and val's specs lack corpus_b
    check_fold_data(recipe, corpus_out)
    r = fold_recipe(recipe, corpus_out, tmp_path / "f")
    assert len(read_train_table(r.data)) == 4 and read_val_table(r.data) is not None
    assert set(held_out_table(recipe, corpus_out).column("source")) == {"corpus_b"}

    val_only = HeldOut("source", ("only_val",))  # no train spec has it
    check_fold_data(recipe, val_only)
    r2 = fold_recipe(fold_recipe(recipe, val_only, tmp_path / "g"), corpus_out, tmp_path / "h")  # chained
    assert set(read_tables(r2.data.train, "data.train").column("source")) == {"s0", "s1"}
    # each spec excludes only the values its protocol holds (A holds neither only_val nor corpus_b)
    assert to_dict(r2.data.train[0])["exclude"] == {}
    assert to_dict(r2.data.val[0])["exclude"] == {"source": ["only_val"]}

    # a misspelt exclude of the recipe itself still fails in a fold, naming the spec
    recipe.data.train[0].exclude = {"source": ["s9"]}
    with pytest.raises(ConfigError, match=r"data.train\[0\]: .*exclude \{source: \['s9'\]\}"):
        check_fold_data(recipe, corpus_out)


# --- 2. one UTF-16 BOM reader for score files and manifests ----------------------------------------------------

_ENCODINGS = {
    "utf-16-le": lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
    "utf-16-be": lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
    "utf-8-sig": lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
}


@pytest.mark.parametrize("encoding", sorted(_ENCODINGS))
def test_score_files_and_manifests_read_utf16_and_utf8_bom_through_one_helper(tmp_path, monkeypatch, encoding):
    import sddkit.data.text as text
    from sddkit.evaluation.scores import read_scores
    from sddkit.scoring.batch import read_manifest

    seen: list[bytes] = []
    real = text.text_encoding

    def spy(head: bytes) -> str:
        seen.append(head)
        return real(head)

    monkeypatch.setattr(text, "text_encoding", spy)
    scores = tmp_path / "scores.txt"
    scores.write_bytes(_ENCODINGS[encoding]("# comment\r\nutt_1 0.5\r\nutt_2 -1.25\r\n"))
    read = read_scores(scores)
    assert list(read.ids) == ["utt_1", "utt_2"] and list(read.scores) == [0.5, -1.25]
    (tmp_path / "sub dir").mkdir()
    for name in ("a.wav", "sub dir/b é.wav", "c.wav"):
        (tmp_path / name).write_bytes(b"")  # listed paths resolve against the manifest's folder when they exist
    listed = tmp_path / "list.txt"
    listed.write_bytes(_ENCODINGS[encoding]("a.wav\r\nsub dir/b é.wav\r\n"))
    assert read_manifest(listed) == [str(tmp_path / "a.wav"), str(tmp_path / "sub dir" / "b é.wav")]
    table = tmp_path / "m.csv"
    table.write_bytes(_ENCODINGS[encoding]("path,label\r\nc.wav,spoof\r\n"))
    assert read_manifest(table) == [str(tmp_path / "c.wav")]
    assert len(seen) >= 3  # both callers went through the shared helper


def test_a_broken_utf16_file_is_one_error_in_both_callers(tmp_path):
    from sddkit.data.text import read_text
    from sddkit.evaluation.scores import read_scores
    from sddkit.scoring.batch import read_manifest

    bad = tmp_path / "bad.txt"
    bad.write_bytes(codecs.BOM_UTF16_LE + "a.wav 0.5\n".encode("utf-16-le") + b"\x00\xd8")  # a lone high surrogate
    with pytest.raises(ProtocolError, match="not a readable UTF-16 manifest"):
        read_manifest(bad)
    with pytest.raises(ProtocolError, match="not readable UTF-16 text"):
        read_scores(bad, format="asvspoof2021")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"a\r\nb\rc\xff\n")  # UTF-8 reads as Path.read_text does: line ends as \n, bad bytes escaped
    assert read_text(plain) == plain.read_text(encoding="utf-8-sig", errors="surrogateescape")


# --- 3. an unclosed quote in an MLAAD meta.csv ------------------------------------------------------------------

_MLAAD_HEADER = (
    "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript"
)


def _mlaad(tmp_path: Path, transcripts: list[str]) -> Path:
    root = tmp_path / "MLAAD"
    model = root / "fake" / "de" / "tts_models_de_thorsten_vits"
    model.mkdir(parents=True)
    rows = [
        f"./fake/de/tts_models_de_thorsten_vits/{i}.wav|de_DE/by_book/female/eva_k/b/wavs/f{i}.wav|de|True|1.5|"
        f"thorsten|tts_models/de/thorsten/vits|VITS|{t}"
        for i, t in enumerate(transcripts)
    ]
    (model / "meta.csv").write_text(_MLAAD_HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_an_unclosed_quote_in_an_mlaad_transcript_loses_no_row(tmp_path):
    """As CSV, a transcript opening a quote it never closes ran on over the following lines: the rows after it became
    part of its transcript and were lost, silently (the row count still matched the header)."""
    root = _mlaad(tmp_path, ['"Hallo, sagte er', "Noch ein Test.", 'Er sagte "ja" und ging.', '"Zitat" Ende'])
    table = read_protocol(root, format="mlaad")
    assert len(table) == 4
    assert sorted(Path(p).name for p in table.column("path")) == ["0.wav", "1.wav", "2.wav", "3.wav"]


def test_an_unclosed_quote_in_an_inner_mlaad_field_fails_naming_its_line(tmp_path):
    root = tmp_path / "MLAAD"
    model = root / "fake" / "de" / "m"
    model.mkdir(parents=True)
    (model / "meta.csv").write_text(
        _MLAAD_HEADER + "\n./fake/de/m/0.wav|x|de|True|1.5|t|m|VITS|ok\n"
        './fake/de/m/1.wav|x|de|True|1.5|"t|m|VITS|Hallo\n./fake/de/m/2.wav|x|de|True|1.5|t|m|VITS|ok\n',
        encoding="utf-8",
    )
    with pytest.raises(ProtocolError, match=r"meta.csv:3: expected 9 fields, got 6 \(a quote opened"):
        read_protocol(root, format="mlaad")


# --- 4. Windows backslash paths in a labels CSV ------------------------------------------------------------------


@pytest.mark.skipif(os.sep == "\\", reason="a backslash is the separator there")
def test_labels_csv_reads_windows_backslash_paths_that_exist_with_slashes(tmp_path):
    (tmp_path / "audio" / "sub").mkdir(parents=True)
    (tmp_path / "audio" / "sub" / "x.wav").write_bytes(b"")
    (tmp_path / "odd\\name.wav").write_bytes(b"")  # a POSIX file name holding a backslash: kept as written
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "name.wav").write_bytes(b"")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\naudio\\sub\\x.wav,bonafide\nodd\\name.wav,spoof\nmissing\\y.wav,spoof\n")
    table = read_protocol(csv, format="labels_csv")
    assert table.column("path").tolist() == [
        str(tmp_path / "audio" / "sub" / "x.wav"),
        str(tmp_path / "odd\\name.wav"),
        str(tmp_path / "missing\\y.wav"),  # neither form exists: as written (the missing file is reported later)
    ]
    assert table.column("utt_id").tolist() == ["audio\\sub\\x.wav", "odd\\name.wav", "missing\\y.wav"]
    # the same file under both spellings is listed twice
    csv.write_text("path,label\naudio\\sub\\x.wav,bonafide\naudio/sub/x.wav,spoof\n")
    with pytest.raises(ProtocolError, match=r"labels.csv:3: 'audio/sub/x.wav' is the file of line 2"):
        read_protocol(csv, format="labels_csv")
