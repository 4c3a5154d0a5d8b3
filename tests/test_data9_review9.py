"""Review 9 of the dataset protocol readers and data loading (data9)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sddkit.config import from_dict
from sddkit.data import detect_format, read_protocol
from sddkit.errors import ConfigError, ProtocolError


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_add2022_partition_comes_from_the_ids_or_the_label_file_name(tmp_path):
    # the partition column was '' unless set: train and dev read together (the MiLE recipes) could not be told apart
    base = tmp_path / "ADD_train_dev"
    train = _write(base / "label" / "train_label.txt", "ADD_T_00000000.wav genuine\nADD_T_00000001.wav fake\n")
    dev = _write(base / "label" / "dev_label.txt", "ADD_D_00000000.wav genuine\n")
    (base / "train").mkdir()
    assert read_protocol(train).df["partition"].tolist() == ["train", "train"]
    assert read_protocol(dev).df["partition"].tolist() == ["dev"]
    # ids without the partition code: the <part> of <part>_label.txt
    other = _write(base / "label" / "dev_label.txt", "x1.wav genuine\n")
    assert read_protocol(other).df["partition"].tolist() == ["dev"]
    # set explicitly, it wins (also as '')
    assert read_protocol(train, partition="val").df["partition"].tolist() == ["val", "val"]
    assert read_protocol(train, partition="").df["partition"].tolist() == ["", ""]


def test_fakeavceleb_meta_with_a_quoted_header_is_detected(tmp_path):
    # the reader parses meta_data.csv as CSV, detection split the header on commas: quoted names were not FakeAVCeleb
    root = tmp_path / "FakeAVCeleb_v1.2"
    _write(root / "RealVideo-RealAudio" / "African" / "men" / "id00076" / "00109.mp4")
    meta = _write(
        root / "meta_data.csv",
        '"source","target1","target2","method","category","type","race","gender","path",""\n'
        "id00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,FakeAVCeleb/RealVideo-RealAudio/African/men/id00076\n",
    )
    assert detect_format(meta) == "fakeavceleb"
    df = read_protocol(meta).df
    assert df["method"].tolist() == ["real"] and df["label"].tolist() == ["bonafide"]


def _mailabs_book(base: Path, below: str) -> Path:
    book = base / "de_DE" / "by_book" / below
    _write(book / "metadata.csv", "grune_haus_01_f000001|Ein Satz.|Ein Satz.\ngrune_haus_01_f000002|Zwei.|Zwei.\n")
    (book / "wavs").mkdir()
    return book


def test_an_mailabs_book_folder_is_not_detected_as_ljspeech(tmp_path):
    # same layout (metadata.csv + wavs/): read as LJSpeech its German readers became the English speaker LJ
    book = _mailabs_book(tmp_path / "M-AILABS", "female/eva_k/grune_haus")
    with pytest.raises(ProtocolError, match=r"an M-AILABS book folder \(de_DE/by_book/\.\.\.\).*bonafide_root"):
        detect_format(book)
    with pytest.raises(ProtocolError, match=r"an M-AILABS book folder"):
        detect_format(book / "metadata.csv")
    # LJSpeech itself is still detected
    lj = tmp_path / "LJSpeech-1.1"
    _write(lj / "metadata.csv", "LJ001-0001|a|a\n")
    (lj / "wavs").mkdir()
    assert detect_format(lj) == "ljspeech"


def test_an_mailabs_book_read_as_ljspeech_takes_its_speaker_and_language_from_its_path(tmp_path):
    book = _mailabs_book(tmp_path / "M-AILABS", "female/eva_k/grune_haus")
    df = read_protocol(book, format="ljspeech", corpus="m-ailabs").df
    assert set(df["speaker"]) == {"eva_k"} and set(df["language"]) == {"de"} and set(df["corpus"]) == {"m-ailabs"}
    mix = _mailabs_book(tmp_path / "M-AILABS", "mix/some_book")
    df = read_protocol(mix, format="ljspeech").df
    assert set(df["speaker"]) == {""} and set(df["language"]) == {"de"}
    lj = tmp_path / "LJSpeech-1.1"
    _write(lj / "metadata.csv", "LJ001-0001|a|a\n")
    df = read_protocol(lj, format="ljspeech").df
    assert df["speaker"].tolist() == ["LJ"] and df["language"].tolist() == ["en"]


@pytest.mark.parametrize(
    ("augment", "where"),
    [
        ("[spec_augment]", r"data\.augment\[0\]"),
        (
            "[rawboost, {name: compose, augmentations: [rawboost, {name: one_of, choices: [clean, spec_augment]}]}]",
            r"data\.augment\[1\]\.augmentations\[1\]\.choices\[1\]",
        ),
    ],
)
def test_a_feature_augmentation_in_data_augment_is_refused_when_the_recipe_is_read(augment, where):
    # it was refused only when training started, after the data had been read (and a preload decoded)
    from sddkit.training.recipe import DataConfig

    with pytest.raises(ConfigError, match=where + r": augmentation 'spec_augment' works on features.*model\.frontend"):
        from_dict(DataConfig, {"augment": yaml.safe_load(augment)}, "data")
    assert from_dict(DataConfig, {"augment": ["rawboost", {"name": "noise", "snr_db": [5, 30]}]}, "data").augment


def test_a_root_option_naming_another_folder_than_a_folder_corpus_path_is_refused(tmp_path):
    # a folder reader's root is the path it is given: options.root replaced it, and the path was ignored unsaid
    for name in ("a", "b"):
        _write(tmp_path / name / "bonafide" / "x.wav")
        _write(tmp_path / name / "spoof" / "y.wav")
    with pytest.raises(ConfigError, match=r"root .*format 'folder' reads the corpus folder given as the path"):
        read_protocol(tmp_path / "a", format="folder", root=str(tmp_path / "b"))
    with pytest.raises(ConfigError, match=r"root .*reads the corpus folder"):
        read_protocol(tmp_path / "a", root=str(tmp_path / "b"))
    # the same folder, however written, is fine
    table = read_protocol(tmp_path / "a", format="folder", root=str(tmp_path / "b" / ".." / "a"))
    assert all(p.startswith(str(tmp_path / "b" / ".." / "a")) for p in table.df["path"])
    # a metadata file standing for its folder: root is that folder
    lj = tmp_path / "LJSpeech-1.1"
    _write(lj / "metadata.csv", "LJ001-0001|a|a\n")
    assert len(read_protocol(lj / "metadata.csv", root=str(lj))) == 1
    with pytest.raises(ConfigError, match=r"reads the corpus folder"):
        read_protocol(lj / "metadata.csv", root=str(tmp_path / "a"))


def test_a_utf16_utterance_table_reads_as_its_utf8_form(tmp_path):
    # detection read the UTF-16 copy (Windows PowerShell's `>`) and called it an utterance table, whose reader then
    # refused it as not UTF-8
    from sddkit.data.table import UtteranceTable

    text = "utt_id,path,label,speaker\na,x.wav,bonafide,001\nb,y.wav,spoof,002\n"
    (tmp_path / "u8.csv").write_text(text, encoding="utf-8")
    (tmp_path / "u16.csv").write_text(text, encoding="utf-16")
    assert detect_format(tmp_path / "u16.csv") == "utterance_table"
    expected = read_protocol(tmp_path / "u8.csv").df
    assert read_protocol(tmp_path / "u16.csv").df.equals(expected)
    assert UtteranceTable.load(tmp_path / "u16.csv").df.equals(expected)


def test_a_recipe_spec_whose_root_option_replaces_its_folder_corpus_is_refused_when_read(tmp_path):
    from sddkit.training.recipe import ProtocolSpec

    spec = {"protocol": str(tmp_path / "for-norm"), "format": "fake_or_real", "options": {"root": str(tmp_path / "x")}}
    with pytest.raises(ConfigError, match=r"data\.train\.options\.root: .* would replace this spec's protocol"):
        from_dict(ProtocolSpec, spec, "data.train")
    # the same folder, or a metadata file's own folder, is fine; so is an audio root of a protocol file's reader
    from_dict(ProtocolSpec, {**spec, "options": {"root": str(tmp_path / "for-norm" / ".")}}, "data.train")
    lj = {"protocol": str(tmp_path / "LJ" / "metadata.csv"), "format": "ljspeech"}
    from_dict(ProtocolSpec, {**lj, "options": {"root": str(tmp_path / "LJ")}}, "data.train")
    la = {"protocol": str(tmp_path / "p.txt"), "format": "asvspoof2019_la", "options": {"root": str(tmp_path / "LA")}}
    from_dict(ProtocolSpec, la, "data.train")
