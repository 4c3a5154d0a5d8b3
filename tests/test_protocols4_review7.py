"""Review 7 of the protocol readers (dataset formats, auto-detection, label mapping)."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_support import touch

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ProtocolError


@pytest.mark.parametrize("bona_name", ["bona-fide", "bona_fide", "genuine", "Genuine"])
def test_generic_folder_with_a_bona_fide_folder_under_another_common_name_keeps_both_classes(
    tmp_path: Path, bona_name: str
):
    """``bona-fide/`` (In-the-Wild's spelling of the label) or ``genuine/`` (ADD's, ASVspoof 2017's) beside ``spoof/``:
    the folder was detected as the generic layout (from ``spoof/``) and read without its bona fide folder, so the
    table held only spoofs, without a word."""
    root = tmp_path / "my corpus"
    touch(root / bona_name / "a.wav")
    touch(root / "spoof" / "tts1" / "b.wav")
    assert detect_format(root) == "folder"
    table = read_protocol(root)
    rows = table.df.set_index("utt_id")
    assert sorted(rows["label"]) == ["bonafide", "spoof"]
    assert rows.loc[f"{bona_name}/a", "label"] == "bonafide"
    assert rows.loc[f"{bona_name}/a", "attack"] == "bonafide"
    assert rows.loc["spoof/tts1/b", "attack"] == "tts1"


def _fakeavceleb(tmp_path: Path, meta_text: str) -> Path:
    root = tmp_path / "FakeAVCeleb_v1.2"
    touch(root / "RealVideo-RealAudio" / "African" / "men" / "id00076" / "00109.mp4")
    touch(root / "FakeVideo-FakeAudio" / "African" / "men" / "id00076" / "00109_id00166_wavtolip.mp4")
    meta = root / "meta_data.csv"
    meta.write_bytes(meta_text.encode("utf-8"))
    return meta


_FAV_HEADER = "source,target1,target2,method,category,type,race,gender,path,"


def test_fakeavceleb_meta_with_blank_or_comment_lines_before_its_header_reads_as_detected(tmp_path: Path):
    """Format detection skips blank and '#' lines before a header and took such a ``meta_data.csv`` for FakeAVCeleb's,
    but its reader took the first line for the header and refused the file ("expected the header ..., got ")."""
    meta = _fakeavceleb(
        tmp_path,
        "\r\n# exported from the sheet\r\n"
        + _FAV_HEADER
        + "\r\nid00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,FakeAVCeleb/RealVideo-RealAudio\r\n"
        "id00076,id00166,-,wav2lip,D,FakeVideo-FakeAudio,African,men,00109_id00166_wavtolip.mp4,x\r\n",
    )
    assert detect_format(meta) == "fakeavceleb"
    rows = read_protocol(meta).df.set_index("source")
    assert rows.loc["RealVideo-RealAudio", "method"] == "real"
    assert rows.loc["FakeVideo-FakeAudio", "method"] == "wav2lip"
    assert rows.loc["FakeVideo-FakeAudio", "label"] == "spoof"


def test_fakeavceleb_meta_errors_count_the_lines_before_the_header(tmp_path: Path):
    meta = _fakeavceleb(tmp_path, "\n# note\n" + _FAV_HEADER + "\nid00076,-\n")
    with pytest.raises(ProtocolError, match=r"meta_data\.csv:4: expected at least 9 fields, got 2"):
        read_protocol(meta)
    bad_header = _fakeavceleb(tmp_path, "\n\nsource,target\n")
    with pytest.raises(ProtocolError, match=r"meta_data\.csv:3: expected the header source,target1"):
        read_protocol(bad_header.parent, format="fakeavceleb")


@pytest.mark.parametrize("layout", ["fake_or_real", "folder"])
def test_two_recordings_with_one_stem_name_both_files(tmp_path: Path, layout: str):
    """A folder corpus's ids are the paths without their suffix, so ``x.mp3`` beside ``x.wav`` (two recordings) made
    one id twice; the read failed with "duplicate utt_id(s): [...]" from the table, naming neither file nor why."""
    if layout == "fake_or_real":
        folder = tmp_path / "for-original" / "testing" / "fake"
        touch(tmp_path / "for-original" / "testing" / "real" / "file1.wav")
    else:
        folder = tmp_path / "spoof"
        touch(tmp_path / "bonafide" / "file1.wav")
    touch(folder / "file10.mp3")
    touch(folder / "file10.wav")
    assert detect_format(tmp_path) == layout
    with pytest.raises(ProtocolError) as err:
        read_protocol(tmp_path)
    message = str(err.value)
    assert "two files have the utterance id" in message
    assert str(folder / "file10.mp3") in message and str(folder / "file10.wav") in message


def test_a_folder_corpus_metadata_row_listed_twice_says_so(tmp_path: Path):
    root = tmp_path / "LJSpeech-1.1"
    touch(root / "wavs" / "LJ001-0001.wav")
    (root / "metadata.csv").write_text("LJ001-0001|Printing|Printing\nLJ001-0001|Printing|Printing\n")
    with pytest.raises(ProtocolError, match=r"duplicate utt_id 'LJ001-0001' \(.*LJ001-0001\.wav listed twice\)"):
        read_protocol(root)


@pytest.mark.parametrize("content", ["flac_T", "flac_E_eval", "ASVspoof5.train.tsv"])
def test_an_asvspoof5_folder_says_to_pass_its_protocol_file(tmp_path: Path, content: str):
    """The ASVspoof 5 release folder (flac_T/, flac_D/, flac_E_eval/, the .tsv protocols) read as a folder was
    "cannot tell the corpus layout" listing every other corpus; the 2019 folder already said what to pass."""
    root = tmp_path / "ASVspoof5"
    if content.endswith(".tsv"):
        root.mkdir()
        (root / content).write_text("T_4850 T_0000000000 F - - - AC3 A05 spoof -\n")
    else:
        touch(root / content / "T_0000000000.flac")
    with pytest.raises(ProtocolError, match=r"an ASVspoof 5 folder; pass a protocol file \(ASVspoof5\.train\.tsv"):
        detect_format(root)


def test_fake_or_real_root_may_be_one_split_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``root: .../for-norm/testing`` (only the test split) crashed with a bare ValueError from ``relative_to``, and
    read as ``.`` from inside it no split folder was found; its version is the folder holding it."""
    split = tmp_path / "for-rerecorded" / "testing"
    touch(split / "real" / "a.wav")
    touch(split / "fake" / "b.wav")
    table = read_protocol(split, format="fake_or_real", versions=["for-rerec"])
    rows = table.df.set_index("utt_id")
    assert rows.loc["real/a", ["label", "source", "partition"]].tolist() == ["bonafide", "for-rerecorded", "test"]
    assert rows.loc["fake/b", ["label", "source", "partition"]].tolist() == ["spoof", "for-rerecorded", "test"]
    monkeypatch.chdir(split)
    inside = read_protocol(".", format="fake_or_real", partitions=["testing"])
    assert inside.df["utt_id"].tolist() == table.df["utt_id"].tolist()
    assert set(inside.df["source"]) == {"for-rerecorded"}
    with pytest.raises(ProtocolError, match=r"no versions \['for-norm'\]"):
        read_protocol(split, format="fake_or_real", versions=["for-norm"])


def test_mlaad_fake_folder_read_as_dot_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Detection knew MLAAD's ``fake/`` folder by its ``Path.name``, which is '' for ``.``: from inside it the
    folder was "cannot tell", though the reader takes it; a ``real/`` folder beside it still means another layout."""
    fake = tmp_path / "MLAAD" / "fake"
    touch(fake / "de" / "vits" / "a.wav")
    monkeypatch.chdir(fake)
    assert detect_format(".") == "mlaad"
    assert read_protocol(".").df["utt_id"].tolist() == ["de/vits/a"]
    touch(tmp_path / "MLAAD" / "real" / "b.wav")
    assert detect_format("..") == "folder"
    with pytest.raises(ProtocolError, match="cannot tell the corpus layout"):
        detect_format(".")


def test_fake_or_real_label_folders_in_capitals_are_found(tmp_path: Path):
    """The reader takes ``Real/``/``Fake/`` (it lower-cases a label folder's name), but the split search looked for
    ``real/``/``fake/`` exactly: a copy with capitalised label folders had "no training/validation/testing folder"."""
    touch(tmp_path / "for-norm" / "Training" / "Real" / "a.wav")
    touch(tmp_path / "for-norm" / "Training" / "Fake" / "b.wav")
    assert detect_format(tmp_path) == "fake_or_real"
    table = read_protocol(tmp_path)
    assert sorted(zip(table.df["label"], table.df["partition"])) == [("bonafide", "train"), ("spoof", "train")]
