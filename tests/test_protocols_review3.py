"""Third review of the protocol readers: CSV preambles, MLAAD language names, duplicate ids by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ProtocolError


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_headed_csv_readers_skip_blank_and_comment_lines_before_the_header(tmp_path):
    """Format detection skips blank and '#' lines before a header, but the CSV readers took the first
    line as the header: a detected labels CSV then failed with "header lacks column(s) ... header is []"."""
    blank = _write(tmp_path / "blank.csv", "\npath,label\nx.wav,bonafide\ny.wav,spoof\n")
    assert detect_format(blank) == "labels_csv"
    assert len(read_protocol(blank)) == 2
    semicolon = _write(tmp_path / "semi.csv", "# exported 2026-12-03\npath;label\nx.wav;real\ny.wav;fake\n")
    assert detect_format(semicolon) == "labels_csv"
    assert read_protocol(semicolon).df["label"].tolist() == ["bonafide", "spoof"]
    itw = _write(tmp_path / "itw" / "meta.csv", "\r\n\r\nfile,speaker,label\r\n0.wav,A,spoof\r\n1.wav,B,bona-fide\r\n")
    assert detect_format(itw.parent) == "in_the_wild"
    assert read_protocol(itw).df["utt_id"].tolist() == ["0", "1"]
    # line numbers still count the skipped lines
    bad = _write(tmp_path / "bad.csv", "# comment\n\npath,label\nx.wav,bonafide\ny.wav,maybe\n")
    with pytest.raises(ProtocolError, match=r"bad\.csv:5: unknown label 'maybe'"):
        read_protocol(bad)
    only_comments = _write(tmp_path / "empty.csv", "# nothing here\n\n")
    with pytest.raises(ProtocolError, match=r"empty\.csv:2: empty labels CSV file"):
        read_protocol(only_comments, format="labels_csv")


def _mlaad_with_named_folders(tmp_path: Path) -> tuple[Path, Path]:
    mlaad, mailabs = tmp_path / "MLAAD", tmp_path / "M-AILABS"
    _write(
        mlaad / "fake" / "de" / "vits_de" / "meta.csv",
        "path|original_file|language|model_name\n"
        "./fake/de/vits_de/a.wav|de_DE/by_book/female/eva/buch/wavs/b_f1.wav|German|vits_de\n",
    )
    _write(mlaad / "fake" / "de" / "vits_de" / "a.wav")
    _write(mlaad / "fake" / "English" / "tacotron" / "c.wav")  # a copy whose folder is named, not coded
    _write(mailabs / "de_DE" / "by_book" / "female" / "eva" / "buch" / "wavs" / "b_f1.wav")
    _write(mailabs / "en_US" / "by_book" / "female" / "judy" / "book" / "wavs" / "e_f1.wav")
    return mlaad, mailabs


def test_mlaad_languages_by_name_or_code_select_the_same_files(tmp_path):
    """A language folder named ``English`` could only be selected as ``English``, and then every
    M-AILABS file (language ``en``) was dropped: "no M-AILABS bona fide files selected"; ``german``
    for the ``de`` folder was an error; and the language column mixed ``German`` (meta.csv) with ``de``."""
    mlaad, mailabs = _mlaad_with_named_folders(tmp_path)
    every = read_protocol(mlaad, bonafide_root=mailabs).df
    assert sorted(every["language"]) == ["de", "de", "en", "en"]
    for wanted in (["en"], ["English"], "english"):
        df = read_protocol(mlaad, bonafide_root=mailabs, languages=wanted).df
        assert sorted(zip(df["label"], df["language"])) == [("bonafide", "en"), ("spoof", "en")], wanted
    for wanted in (["de"], ["German"], ["DE"]):
        df = read_protocol(mlaad, bonafide_root=mailabs, languages=wanted).df
        assert sorted(zip(df["label"], df["language"])) == [("bonafide", "de"), ("spoof", "de")], wanted
    with pytest.raises(ProtocolError, match=r"no languages \['french'\].*languages present: English, de"):
        read_protocol(mlaad, languages=["de", "french"])


def test_duplicate_ids_name_both_lines_of_the_protocol(tmp_path):
    """A trial listed twice was reported as "<file>: duplicate utt_id(s): [...]" with no line to open."""
    la = _write(
        tmp_path / "la.txt",
        "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n\nLA_0079 LA_T_1138215 - - bonafide\n",
    )
    with pytest.raises(ProtocolError, match=r"la\.txt:4: duplicate utt_id 'LA_T_1138215' \(first at line 1\)"):
        read_protocol(la)
    asv5 = _write(
        tmp_path / "ASVspoof5.train.tsv",
        "T_4850 T_0000000000 F - - - AC3 A05 spoof -\nT_4850 T_0000000000 F - - - - bonafide bonafide -\n",
    )
    with pytest.raises(ProtocolError, match=r"train\.tsv:2: duplicate utt_id 'T_0000000000' \(first at line 1\)"):
        read_protocol(asv5)
    itw = _write(
        tmp_path / "itw" / "meta.csv", "file,speaker,label\n0.wav,A,spoof\n1.wav,B,bona-fide\n0.flac,A,spoof\n"
    )
    with pytest.raises(ProtocolError, match=r"meta\.csv:4: duplicate utt_id '0' \(first at line 2\)"):
        read_protocol(itw)
    add = _write(tmp_path / "add" / "label.txt", "ADD_T_1.wav genuine\nADD_T_1.wav fake\n")
    with pytest.raises(ProtocolError, match=r"label\.txt:2: duplicate utt_id 'ADD_T_1' \(first at line 1\)"):
        read_protocol(add)
