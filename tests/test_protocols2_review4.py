"""Fourth review of the protocol readers (second look): ASV trial lists, nested ASVspoof 2021 audio folders,
a non-In-the-Wild meta.csv, MLAAD duplicate rows, missing FakeAVCeleb categories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ProtocolError


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_asvspoof5_track2_trial_list_is_not_read_as_a_2019_cm_protocol(tmp_path):
    """ASVspoof 5's track-2 lists (TARGET_SPEAKER FLAC GENDER ATTACK ASV_KEY) have five fields, the last one
    ``spoof`` on a spoof line: they were detected as an ASVspoof 2019 CM protocol and failed only at the
    first ``target`` line with "unknown label 'target'"."""
    trial = _write(
        tmp_path / "ASVspoof5.dev.track_2.trial.tsv",
        "D_0062 D_0000000001 F A11 spoof\nD_0062 D_0000000002 F bonafide target\n",
    )
    with pytest.raises(ProtocolError, match=r"trial\.tsv:1: an ASVspoof 5 track-2 .*track_1\.tsv"):
        detect_format(trial)
    with pytest.raises(ProtocolError, match=r"track-2"):
        read_protocol(trial)
    # a 2019-layout protocol built from ASVspoof 5 ids ('-' as the third field) is still a CM protocol
    converted = _write(
        tmp_path / "converted.txt", "T_4850 T_0000000000 - A05 spoof\nT_4850 T_0000000001 - - bonafide\n"
    )
    assert detect_format(converted) == "asvspoof2019_la"
    assert read_protocol(converted).df["label"].tolist() == ["spoof", "bonafide"]


def test_asv_keys_in_a_cm_reader_say_it_is_an_asv_trial_list(tmp_path):
    """keys/LA/ASV/trial_metadata.txt has the CM key's 8 columns with target/nontarget/spoof keys; starting
    with a spoof line it is detected as a CM key and the reader stopped at "unknown label 'target'"."""
    asv = _write(
        tmp_path / "keys" / "LA" / "ASV" / "trial_metadata.txt",
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
        "LA_0009 LA_E_1000001 alaw ita_tx bonafide target notrim eval\n",
    )
    with pytest.raises(
        ProtocolError, match=r"trial_metadata\.txt:2: key 'target' is a speaker-verification \(ASV\) key"
    ):
        read_protocol(asv)
    with pytest.raises(ProtocolError, match=r"ASV trial list"):
        read_protocol(_write(tmp_path / "la.txt", "LA_0079 LA_T_1138215 - - nontarget\n"), format="asvspoof2019_la")


def test_asvspoof2021_pa_key_is_named_not_undetectable(tmp_path):
    pa = _write(tmp_path / "trial_metadata.txt", "PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spoof notrim eval\n")
    assert detect_format(pa) == "asvspoof2021_pa"  # read since asvspoof2021_pa was added


@pytest.mark.parametrize("track", ["LA", "DF"])
def test_asvspoof2021_audio_in_the_nested_eval_folder_is_found(tmp_path, track):
    """An eval archive unpacked into a folder of its own name leaves ASVspoof2021_<track>_eval/
    ASVspoof2021_<track>_eval/flac: the outer folder was taken as the audio folder and every path pointed at a
    missing file."""
    if track == "LA":
        line = "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
        utt = "LA_E_9332881"
    else:
        line = "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n"
        utt = "DF_E_2000011"
    key = _write(tmp_path / "keys" / track / "CM" / "trial_metadata.txt", line)
    name = f"ASVspoof2021_{track}_eval"
    audio = _write(tmp_path / name / name / "flac" / f"{utt}.flac")
    _write(tmp_path / name / "README.txt")
    for root in (tmp_path, None):  # given, or found from the key's place keys/<track>/CM/
        assert read_protocol(key, root=root).df["path"].tolist() == [str(audio)]
    # the flat layout is still preferred
    flat = _write(tmp_path / name / "flac" / f"{utt}.flac")
    assert read_protocol(key, root=tmp_path).df["path"].tolist() == [str(flat)]


def test_a_folder_whose_meta_csv_is_not_in_the_wild_says_so(tmp_path):
    """Any folder with a meta.csv was taken for In-the-Wild: a hand-written path,label list saved as meta.csv
    then failed with "header lacks column(s) ['file', 'speaker']"."""
    _write(tmp_path / "mine" / "meta.csv", "path,label\na.wav,spoof\n")
    with pytest.raises(
        ProtocolError, match=r"meta\.csv: a labels_csv file, not In-the-Wild's meta\.csv.*pass the file"
    ):
        detect_format(tmp_path / "mine")
    assert read_protocol(tmp_path / "mine" / "meta.csv").df["label"].tolist() == ["spoof"]
    # In-the-Wild's own meta.csv (and an unknown header, which its reader explains) still mean In-the-Wild
    _write(tmp_path / "itw" / "meta.csv", "file,speaker,label\n0.wav,A,bona-fide\n")
    assert detect_format(tmp_path / "itw") == "in_the_wild"
    _write(tmp_path / "odd" / "meta.csv", "name,who,label\n0.wav,A,bona-fide\n")
    assert detect_format(tmp_path / "odd") == "in_the_wild"


_MLAAD_HEADER = (
    "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript\n"
)


def test_mlaad_row_listed_twice_names_the_meta_csv_line(tmp_path):
    row = "./fake/de/tts_a/a.wav|de_DE/by_book/female/eva/b1/wavs/x.wav|de|True|1.5|thorsten|tts_a|vits|hallo\n"
    _write(tmp_path / "MLAAD" / "fake" / "de" / "tts_a" / "meta.csv", _MLAAD_HEADER + row + row)
    with pytest.raises(
        ProtocolError, match=r"tts_a/meta\.csv:3: '\./fake/de/tts_a/a\.wav' is the file of line 2 again"
    ):
        read_protocol(tmp_path / "MLAAD", format="mlaad")


def test_fakeavceleb_category_asked_for_but_not_unpacked_is_an_error(tmp_path):
    """A category named in ``categories`` whose folder is missing was skipped without a word."""
    _write(tmp_path / "RealVideo-RealAudio" / "African" / "men" / "id00076" / "00109.mp4")
    with pytest.raises(ProtocolError, match=r"no categories \['RealVideo-FakeAudio'\].*RealVideo-RealAudio"):
        read_protocol(tmp_path, categories=["RealVideo-RealAudio", "RealVideo-FakeAudio"])
    table = read_protocol(tmp_path, categories=["RealVideo-RealAudio"])
    assert table.df["label"].tolist() == ["bonafide"]
    assert os.path.basename(table.df["path"][0]) == "00109.mp4"


def test_asvspoof2021_key_unpacked_into_its_archive_folder_finds_the_audio(tmp_path):
    """LA-keys-full.tar.gz unpacks to keys/...; extracted into a folder of the archive's name (LA-keys-full/keys/LA/
    CM/trial_metadata.txt, the common layout) the audio folder next to LA-keys-full/ was not looked for: path ''."""
    key = _write(
        tmp_path / "LA-keys-full" / "keys" / "LA" / "CM" / "trial_metadata.txt",
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n",
    )
    audio = _write(tmp_path / "ASVspoof2021_LA_eval" / "flac" / "LA_E_9332881.flac")
    assert read_protocol(key).df["path"].tolist() == [str(audio)]


def test_folders_read_as_dot_keep_their_real_name(tmp_path, monkeypatch):
    """Read from inside (``sdd eval --protocol .``), ``Path('.').name`` is '': a generic folder's corpus and
    source were '', a Fake-or-Real version folder's source was '' and ``versions=[<its name>]`` was refused,
    and a Common Voice language without a locale column got language ''."""
    _write(tmp_path / "calls" / "bonafide" / "a.wav")
    _write(tmp_path / "calls" / "spoof" / "tts" / "b.wav")
    monkeypatch.chdir(tmp_path / "calls")
    df = read_protocol(".").df
    assert df["corpus"].tolist() == ["calls", "calls"]
    assert df["source"].tolist() == ["calls", "calls"]
    assert df["attack"].tolist() == ["bonafide", "tts"]

    _write(tmp_path / "for-norm" / "training" / "real" / "a.wav")
    _write(tmp_path / "for-norm" / "training" / "fake" / "b.wav")
    monkeypatch.chdir(tmp_path / "for-norm")
    assert detect_format(".") == "fake_or_real"
    assert read_protocol(".").df["source"].tolist() == ["for-norm", "for-norm"]
    assert len(read_protocol(".", versions=["for-norm"])) == 2

    _write(tmp_path / "cv" / "de" / "validated.tsv", "client_id\tpath\tsentence\nc1\tx.mp3\thallo\n")
    (tmp_path / "cv" / "de" / "clips").mkdir()
    monkeypatch.chdir(tmp_path / "cv" / "de")
    assert read_protocol("validated.tsv").df["language"].tolist() == ["de"]


def test_asvspoof2021_stage1_key_finds_the_audio_next_to_its_archive_folder(tmp_path):
    """The stage-1 keys (LA-keys-stage-1.tar.gz, used by the SSL/AASIST baselines) unpack to keys/CM/trial_metadata.txt,
    without the track level: the folder holding keys/ was not searched."""
    line = "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
    key = _write(tmp_path / "LA-keys-stage-1" / "keys" / "CM" / "trial_metadata.txt", line)
    audio = _write(tmp_path / "ASVspoof2021_LA_eval" / "flac" / "LA_E_9332881.flac")
    assert read_protocol(key).df["path"].tolist() == [str(audio)]
    bare = _write(tmp_path / "bare" / "keys" / "CM" / "trial_metadata.txt", line)
    bare_audio = _write(tmp_path / "bare" / "ASVspoof2021_LA_eval" / "flac" / "LA_E_9332881.flac")
    assert read_protocol(bare).df["path"].tolist() == [str(bare_audio)]
