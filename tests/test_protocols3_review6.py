"""Sixth review of the protocol readers (third look): the ASVspoof 2021 stage-1 keys and the DF eval audio
unpacked part by part."""

from __future__ import annotations

from pathlib import Path

import pytest

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ProtocolError


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# the stage-1 keys (DF-keys-stage-1.tar.gz, LA-keys-stage-1.tar.gz: keys/CM/trial_metadata.txt) hold only the trial,
# the key and the phase; the other fields are '-'
_DF_STAGE1 = "- DF_E_2000011 - - - spoof - progress\n- DF_E_2000012 - - - bonafide - hidden_track\n"
_LA_STAGE1 = "- LA_E_9332881 - - - spoof - eval\n- LA_E_5013670 - - - bonafide - progress\n"


def test_stage1_df_key_is_detected_and_read_as_df(tmp_path):
    """The 8-field stage-1 DF key was not detected ("cannot tell the format": its TRIM is '-'), the DF reader
    refused it (13 fields expected) and the LA reader, named explicitly, took it as asvspoof2021_la with '-' as
    speaker, codec and trim."""
    key = _write(tmp_path / "DF-keys-stage-1" / "keys" / "CM" / "trial_metadata.txt", _DF_STAGE1)
    assert detect_format(key) == "asvspoof2021_df"
    df = read_protocol(key).df
    assert df["corpus"].tolist() == ["asvspoof2021_df"] * 2
    assert df["label"].tolist() == ["spoof", "bonafide"]
    assert df["partition"].tolist() == ["progress", "hidden_track"]
    assert df["attack"].tolist() == ["", "bonafide"]
    for col in ("speaker", "codec", "trim", "vocoder"):
        assert df[col].tolist() == ["", ""], col
    assert len(read_protocol(key, phases=["progress"])) == 1
    with pytest.raises(ProtocolError, match=r"trial_metadata\.txt:1: .*DF trial, not LA; read it with asvspoof2021_df"):
        read_protocol(key, format="asvspoof2021_la")


def test_stage1_la_key_is_detected_and_reads_dashes_as_unknown(tmp_path):
    key = _write(tmp_path / "keys" / "CM" / "trial_metadata.txt", _LA_STAGE1)
    assert detect_format(key) == "asvspoof2021_la"
    df = read_protocol(key).df
    assert df["corpus"].tolist() == ["asvspoof2021_la"] * 2
    for col in ("speaker", "codec", "transmission", "trim"):
        assert df[col].tolist() == ["", ""], col
    with pytest.raises(ProtocolError, match=r"trial_metadata\.txt:1: .*LA trial, not DF; read it with asvspoof2021_la"):
        read_protocol(key, format="asvspoof2021_df")


def test_full_2021_keys_still_map_their_columns(tmp_path):
    la = _write(tmp_path / "la.txt", "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n")
    row = read_protocol(la).df.iloc[0]
    assert (row["speaker"], row["codec"], row["transmission"], row["attack"], row["trim"], row["partition"]) == (
        "LA_0009",
        "alaw",
        "ita_tx",
        "A07",
        "notrim",
        "eval",
    )
    df_key = _write(
        tmp_path / "df.txt",
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n"
        "TEF2 DF_E_2000013 low_m4a vcc2020 Task1-team20 spoof notrim eval neural_vocoder_nonautoregressive "
        "Task1 team20 FF E\n",
    )
    df = read_protocol(df_key).df
    assert df["codec"].tolist() == ["nocodec", "low_m4a"]
    assert df["source"].tolist() == ["asvspoof", "vcc2020"]
    assert df["attack"].tolist() == ["A14", "Task1-team20"]
    assert df["vocoder"].tolist() == ["traditional_vocoder", "neural_vocoder_nonautoregressive"]
    assert df["partition"].tolist() == ["progress", "eval"]
    assert df["attack_type"].tolist() == ["tts+vc", "vc"]


@pytest.mark.parametrize("inner", ["ASVspoof2021_DF_eval/flac", "flac"])
def test_df_eval_audio_is_found_in_every_part_folder(tmp_path, inner):
    """The DF eval audio comes as ASVspoof2021_DF_eval_part00..03; unpacked each into its own folder, no audio
    folder was found (with a root: an error; without: every path '')."""
    key = _write(tmp_path / "DF-keys-stage-1" / "keys" / "CM" / "trial_metadata.txt", _DF_STAGE1)
    a = _write(tmp_path / "ASVspoof2021_DF_eval_part00" / inner / "DF_E_2000011.flac")
    b = _write(tmp_path / "ASVspoof2021_DF_eval_part03" / inner / "DF_E_2000012.flac")
    assert read_protocol(key).df["path"].tolist() == [str(a), str(b)]
    assert read_protocol(key, root=tmp_path).df["path"].tolist() == [str(a), str(b)]


def test_df_eval_parts_next_to_a_merged_folder_and_a_missing_trial(tmp_path):
    """A merged ASVspoof2021_DF_eval/flac next to part folders: both are searched; a trial in none of them points
    into the first folder, so that the missing file is named where it was expected."""
    key = _write(
        tmp_path / "keys" / "DF" / "CM" / "trial_metadata.txt",
        _DF_STAGE1 + "- DF_E_2000099 - - - spoof - eval\n",
    )
    a = _write(tmp_path / "ASVspoof2021_DF_eval" / "flac" / "DF_E_2000011.flac")
    b = _write(tmp_path / "ASVspoof2021_DF_eval_part01" / "ASVspoof2021_DF_eval" / "flac" / "DF_E_2000012.wav")
    missing = tmp_path / "ASVspoof2021_DF_eval" / "flac" / "DF_E_2000099.flac"
    assert read_protocol(key, root=tmp_path).df["path"].tolist() == [str(a), str(b), str(missing)]


def test_add2022_official_layout_reads_the_audio_of_the_split_folder(tmp_path, monkeypatch):
    """ADD 2022 ships ADD_train_dev/label/{train,dev}_label.txt with the audio in ADD_train_dev/{train,dev}/: every
    path pointed into label/ (no file there) and both parts had the source 'add2022/label'."""
    base = tmp_path / "ADD_train_dev"
    train = _write(base / "label" / "train_label.txt", "ADD_T_00000000.wav genuine\nADD_T_00000001.wav fake\n")
    dev = _write(base / "label" / "dev_label.txt", "ADD_D_00000000.wav fake\n")
    for name in ("train/ADD_T_00000000.wav", "train/ADD_T_00000001.wav", "dev/ADD_D_00000000.wav"):
        _write(base / name)
    assert detect_format(train) == "add2022"
    df = read_protocol(train).df
    assert df["path"].tolist() == [
        str(base / "train" / "ADD_T_00000000.wav"),
        str(base / "train" / "ADD_T_00000001.wav"),
    ]
    assert df["label"].tolist() == ["bonafide", "spoof"]
    assert df["source"].tolist() == ["add2022/train"] * 2
    assert read_protocol(dev).df["source"].tolist() == ["add2022/dev"]
    monkeypatch.chdir(base / "label")
    assert read_protocol("dev_label.txt").df["path"].tolist() == [str(Path("..") / "dev" / "ADD_D_00000000.wav")]
    # a root given still wins; a label file elsewhere keeps its folder as before
    assert read_protocol(train, root=base / "dev").df["path"].iloc[0] == str(base / "dev" / "ADD_T_00000000.wav")
    other = _write(tmp_path / "track1" / "label.txt", "a.wav genuine\n")
    assert read_protocol(other).df["path"].tolist() == [str(tmp_path / "track1" / "a.wav")]
    assert read_protocol(other).df["source"].tolist() == ["add2022/track1"]
