"""Format auto-detection of read_protocol for every file format and folder layout, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sddkit.data import PROTOCOLS
from sddkit.data.protocols import detect_format, read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError, ProtocolError, UnknownNameError

FILES = {
    "asvspoof2019_la": ("ASVspoof2019.LA.cm.train.trn.txt", "LA_0079 LA_T_1138215 - - bonafide\n"),
    "asvspoof2021_la": ("trial_metadata.txt", "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"),
    "asvspoof2021_df": (
        "trial_metadata.txt",
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n",
    ),
    "asvspoof5": ("ASVspoof5.train.tsv", "T_4850 T_0000000000 F - - - AC3 A05 spoof -\n"),
    "in_the_wild": ("meta.csv", "file,speaker,label\n0.wav,Alec Guinness,spoof\n"),
    "add2022": ("label.txt", "ADD_T_00001.wav genuine\n"),
    "sddbench": (
        "manifest.csv",
        "path,label,partition,system,attack_type,source,speaker,pair_id,language,origin_corpus,variant,"
        "orig_format,sample_rate,channels,duration_s,source_repo,source_path,source_commit\n"
        "audio/a.flac,spoof,train,YourTTS,tts,yourtts_demo,s,p,en,,,FLAC,16000,1,1.0,r,p,c\n",
    ),
    "utterance_table": ("table.csv", "utt_id,path,label\na,a.wav,bonafide\n"),
    "labels_csv": ("labels.csv", "path,label\na.wav,bonafide\n"),
}


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_detect_each_file_format(tmp_path, fmt):
    name, text = FILES[fmt]
    # whitespace protocols may start with comments and blank lines; headed CSVs start with the header
    prefix = "" if name.endswith(".csv") else "# a comment line first\n\n"
    path = _write(tmp_path / fmt / name, prefix + text)
    assert detect_format(path) == fmt
    table = read_protocol(path)  # and the detected reader parses it
    assert len(table) == 1


def test_detect_metadata_files_of_folder_corpora(tmp_path):
    lj = _write(tmp_path / "LJSpeech-1.1" / "metadata.csv", "LJ001-0001|Printing, in the only sense|Printing\n")
    assert detect_format(lj) == "ljspeech"
    fav = _write(tmp_path / "fav" / "meta_data.csv", "source,target1,target2,method,category,type,race,gender,path,\n")
    assert detect_format(fav) == "fakeavceleb"
    cv = _write(tmp_path / "cv" / "train.tsv", "client_id\tpath\tsentence\n")
    assert detect_format(cv) == "common_voice"
    parquet = UtteranceTable.from_records([{"utt_id": "a", "label": "spoof"}]).save(tmp_path / "t.parquet")
    assert detect_format(parquet) == "utterance_table"
    old_asv5 = _write(tmp_path / "old.txt", "T_4850 T_0000000000 F - A05 spoof\n")
    assert detect_format(old_asv5) == "asvspoof5"
    la7 = _write(tmp_path / "la.txt", "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim\n")
    with pytest.raises(ProtocolError, match=r"la\.txt:1: cannot tell .*7 fields"):  # a truncated 2021 LA line
        detect_format(la7)


def _folder_layouts(root: Path) -> dict[str, Path]:
    out = {}
    out["folder"] = root / "generic"
    _write(out["folder"] / "bonafide" / "a.wav")
    _write(out["folder"] / "spoof" / "b.wav")
    out["sddbench"] = root / "bench"
    _write(out["sddbench"] / "manifest.csv", FILES["sddbench"][1])
    out["fakeavceleb"] = root / "fav"
    _write(out["fakeavceleb"] / "RealVideo-RealAudio" / "African" / "men" / "id1" / "0.mp4")
    out["in_the_wild"] = root / "itw"
    _write(out["in_the_wild"] / "meta.csv", FILES["in_the_wild"][1])
    out["ljspeech"] = root / "lj"
    _write(out["ljspeech"] / "metadata.csv", "LJ001-0001|a|a\n")
    (out["ljspeech"] / "wavs").mkdir()
    out["vctk"] = root / "vctk"
    _write(out["vctk"] / "wav48_silence_trimmed" / "p225" / "p225_001_mic1.flac")
    out["common_voice"] = root / "cv"
    _write(out["common_voice"] / "validated.tsv", "client_id\tpath\nabc\tx.mp3\n")
    (out["common_voice"] / "clips").mkdir()
    out["mlaad"] = root / "mlaad"
    _write(out["mlaad"] / "fake" / "de" / "model" / "a.wav")
    out["librispeech"] = root / "LibriSpeech"
    _write(out["librispeech"] / "test-clean" / "1" / "2" / "1-2.trans.txt", "1-2-0000 HELLO\n")
    out["fake_or_real"] = root / "for"
    _write(out["fake_or_real"] / "for-norm" / "training" / "real" / "a.wav")
    out["wavefake"] = root / "WaveFake"
    _write(out["wavefake"] / "generated_audio" / "ljspeech_melgan" / "LJ001-0001_gen.wav")
    return out


def test_detect_each_folder_layout(tmp_path):
    for fmt, folder in _folder_layouts(tmp_path).items():
        assert detect_format(folder) == fmt, folder
        assert len(read_protocol(folder)) >= 1


def test_detection_errors(tmp_path):
    odd = _write(tmp_path / "odd.txt", "\n\nthis is not a protocol line at all\n")
    with pytest.raises(ProtocolError, match=r"odd\.txt:3: cannot tell the protocol format .*8 fields"):
        read_protocol(odd)
    with pytest.raises(ProtocolError, match="empty file"):
        read_protocol(_write(tmp_path / "empty.txt", "\n# only a comment\n"))
    with pytest.raises(ProtocolError, match="no such protocol file or folder"):
        read_protocol(tmp_path / "missing.txt")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(ProtocolError, match="not a UTF-8"):
        read_protocol(binary)
    mlaad_meta = _write(tmp_path / "m" / "meta.csv", "path|original_file|language|model_name\n")
    with pytest.raises(ProtocolError, match="MLAAD root"):
        read_protocol(mlaad_meta)
    (tmp_path / "plain").mkdir()
    _write(tmp_path / "plain" / "readme.txt", "hello")
    with pytest.raises(ProtocolError, match="cannot tell the corpus layout"):
        read_protocol(tmp_path / "plain")
    asv_root = tmp_path / "asvroot"
    (asv_root / "ASVspoof2019_LA_cm_protocols").mkdir(parents=True)
    with pytest.raises(ProtocolError, match="pass a protocol file"):
        read_protocol(asv_root)


def test_explicit_format_overrides_detection_and_unknown_names(tmp_path):
    path = _write(tmp_path / "p.txt", "LA_0079 LA_T_1138215 - - bonafide\n")
    with pytest.raises(UnknownNameError, match="unknown protocol 'asvspoof2077'"):
        read_protocol(path, format="asvspoof2077")
    # a wrong explicit format gives that reader's own file:line error
    with pytest.raises(ProtocolError, match=r"p\.txt:1: expected 8 fields"):
        read_protocol(path, format="asvspoof2021_la")
    with pytest.raises(ConfigError, match="valid keys"):
        read_protocol(path, bogus_option=1)


def test_every_registered_protocol_is_reachable():
    assert set(PROTOCOLS.names()) == {
        "add2022",
        "asvspoof2019_la",
        "asvspoof2021_df",
        "asvspoof2021_la",
        "asvspoof2021_pa",
        "asvspoof5",
        "asvspoof5_key",
        "common_voice",
        "fake_or_real",
        "fakeavceleb",
        "folder",
        "in_the_wild",
        "labels_csv",
        "librispeech",
        "ljspeech",
        "mlaad",
        "sddbench",
        "utterance_table",
        "vctk",
        "wavefake",
    }


def test_labels_csv_reads_a_hand_written_path_label_file(tmp_path):
    audio = tmp_path / "elsewhere"
    audio.mkdir()
    path = _write(
        tmp_path / "labels.csv",
        "path,label,attack\ncalls/1.wav,Real,\n/abs/2.flac,fake,VITS\ncalls/3.wav,bona-fide,\ncalls/4.wav,spoof,\n",
    )
    table = read_protocol(path)
    assert list(table.column("utt_id")) == ["calls/1.wav", "/abs/2.flac", "calls/3.wav", "calls/4.wav"]
    assert list(table.column("label")) == ["bonafide", "spoof", "bonafide", "spoof"]
    assert list(table.column("attack")) == ["bonafide", "VITS", "bonafide", ""]
    # relative paths are read from the CSV's folder, or from root=
    assert table.column("path")[0] == str(tmp_path / "calls" / "1.wav") and table.column("path")[1] == "/abs/2.flac"
    assert read_protocol(path, root=str(audio)).column("path")[2] == str(audio / "calls" / "3.wav")
    with pytest.raises(ProtocolError, match=r"bad\.csv:3: unknown label 'maybe'"):
        read_protocol(_write(tmp_path / "bad.csv", "path,label\na.wav,spoof\nb.wav,maybe\n"))
    with pytest.raises(ProtocolError, match=r"empty path"):
        read_protocol(_write(tmp_path / "empty.csv", "path,label\n,spoof\n"))
