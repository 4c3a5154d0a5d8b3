"""ASVspoof 2019 LA / 2021 LA+DF / ASVspoof 5 readers on tiny files in the official layouts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sddkit.data.protocols import read_protocol
from sddkit.data.protocols.asvspoof import partition_from_id
from sddkit.data.table import REQUIRED_COLUMNS
from sddkit.errors import ConfigError, ProtocolError

LA2019_TRAIN = "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n"
LA2019_DEV = "LA_0070 LA_D_1047731 - A05 spoof\nLA_0069 LA_D_1105538 - - bonafide\n"

LA2021 = (
    "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
    "LA_0020 LA_E_7294490 g722 loc_tx bonafide bonafide notrim progress\n"
    "LA_0031 LA_E_5013670 none sin_tx A17 spoof trim hidden\n"
)
DF2021 = (
    "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n"
    "TEF2 DF_E_2000013 low_m4a vcc2020 Task1-team20 spoof notrim eval neural_vocoder_nonautoregressive "
    "Task1 team20 FF E\n"
    "LA_0031 DF_E_2000026 mp3m4a asvspoof - bonafide notrim eval bonafide - - - -\n"
)
ASV5_TRAIN = "T_4850 T_0000000000 F - - - AC3 A05 spoof -\nT_3734 T_0000000011 F - - - - bonafide bonafide -\n"
ASV5_EVAL = "E_0001 E_0000000005 M C05 3 1234 AC1 A17 spoof -\nE_0002 E_0000000006 F - 0 - - bonafide bonafide -\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _check_required(table):
    df = table.df
    assert list(df.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert (df["utt_id"] != "").all() and df["label"].isin(["bonafide", "spoof"]).all()


@pytest.fixture()
def la2019(tmp_path):
    la = tmp_path / "LA"
    protos = la / "ASVspoof2019_LA_cm_protocols"
    train = _write(protos / "ASVspoof2019.LA.cm.train.trn.txt", LA2019_TRAIN)
    dev = _write(protos / "ASVspoof2019.LA.cm.dev.trl.txt", LA2019_DEV)
    (la / "ASVspoof2019_LA_train" / "flac").mkdir(parents=True)
    (la / "ASVspoof2019_LA_dev" / "flac").mkdir(parents=True)
    return la, train, dev


def test_asvspoof2019_la_columns_and_paths(la2019):
    la, train, dev = la2019
    t = read_protocol(train, root=la)
    _check_required(t)
    df = t.df
    assert df["utt_id"].tolist() == ["LA_T_1138215", "LA_T_1271820"]
    assert df["label"].tolist() == ["bonafide", "spoof"]
    assert df["attack"].tolist() == ["bonafide", "A01"]
    assert df["speaker"].tolist() == ["LA_0079", "LA_0079"]
    assert df["partition"].tolist() == ["train", "train"]
    assert df["attack_type"].tolist() == ["", "tts"]
    assert df["corpus"].unique().tolist() == ["asvspoof2019_la"]
    assert df["path"][1] == str(la / "ASVspoof2019_LA_train" / "flac" / "LA_T_1271820.flac")
    assert all(math.isnan(d) for d in df["duration_s"])
    d = read_protocol(dev, format="asvspoof2019_la", root=str(la)).df
    assert d["partition"].tolist() == ["dev", "dev"] and d["attack"].tolist() == ["A05", "bonafide"]
    assert d["attack_type"].tolist() == ["vc", ""]
    assert d["path"][0].endswith("ASVspoof2019_LA_dev/flac/LA_D_1047731.flac")


def test_asvspoof2019_audio_found_next_to_protocol_or_left_empty(la2019, tmp_path):
    _, train, _ = la2019
    # no root: the folder above the protocol holds ASVspoof2019_LA_train/flac
    assert read_protocol(train).df["path"][0].endswith("LA/ASVspoof2019_LA_train/flac/LA_T_1138215.flac")
    lone = _write(tmp_path / "a" / "b" / "proto.txt", LA2019_TRAIN)
    assert read_protocol(lone).df["path"].tolist() == ["", ""]
    # an explicit root without the audio folders is an error, not a silent ''
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProtocolError, match="no audio folder found"):
        read_protocol(lone, root=tmp_path / "empty")
    with pytest.raises(ProtocolError, match="no such audio root"):
        read_protocol(lone, root=tmp_path / "missing")


def test_asvspoof2019_flac_folder_as_root(tmp_path):
    flac = tmp_path / "flac"
    flac.mkdir()
    (flac / "LA_D_1047731.flac").touch()  # a root that directly holds the .flac files
    proto = _write(tmp_path / "p.txt", LA2019_DEV)
    t = read_protocol(proto, root=flac)
    assert t.df["path"][0] == str(flac / "LA_D_1047731.flac")


def test_asvspoof2019_errors_name_file_and_line(tmp_path):
    bad = _write(tmp_path / "bad.txt", "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1 - A01\n")
    with pytest.raises(ProtocolError, match=r"bad\.txt:2: expected 5 fields"):
        read_protocol(bad, format="asvspoof2019_la")
    label = _write(tmp_path / "label.txt", "LA_0079 LA_T_1138215 - - genuine\n")
    with pytest.raises(ProtocolError, match=r"label\.txt:1: unknown label 'genuine'"):
        read_protocol(label, format="asvspoof2019_la")
    dup = _write(tmp_path / "dup.txt", LA2019_TRAIN + LA2019_TRAIN)
    with pytest.raises(ProtocolError, match="duplicate utt_id"):
        read_protocol(dup)
    with pytest.raises(ConfigError, match="unknown key"):
        read_protocol(dup, partitoin="train")
    with pytest.raises(ProtocolError, match="no such"):
        read_protocol(tmp_path / "missing.txt", format="asvspoof2019_la")


def test_partition_from_id():
    assert partition_from_id("LA_T_1138215") == "train"
    assert partition_from_id("LA_D_1047731") == "dev"
    assert partition_from_id("DF_E_2000011") == "eval"
    assert partition_from_id("T_0000000000") == "train"
    assert partition_from_id("E_0000000005") == "eval"
    assert partition_from_id("p225_001") == ""


def test_asvspoof2021_la_key(tmp_path):
    key = _write(tmp_path / "keys" / "LA" / "CM" / "trial_metadata.txt", LA2021)
    audio = tmp_path / "ASVspoof2021_LA_eval" / "flac"
    audio.mkdir(parents=True)
    t = read_protocol(key, root=tmp_path)
    _check_required(t)
    df = t.df
    assert df["utt_id"].tolist() == ["LA_E_9332881", "LA_E_7294490", "LA_E_5013670"]
    assert df["codec"].tolist() == ["alaw", "g722", "none"]
    assert df["transmission"].tolist() == ["ita_tx", "loc_tx", "sin_tx"]
    assert df["partition"].tolist() == ["eval", "progress", "hidden"]
    assert df["attack"].tolist() == ["A07", "bonafide", "A17"]
    assert df["attack_type"].tolist() == ["tts", "", "vc"]
    assert df["trim"].tolist() == ["notrim", "notrim", "trim"]
    assert df["path"][0] == str(audio / "LA_E_9332881.flac")
    # without root: found next to keys/ (both archives unpacked in one folder), else unknown ('')
    assert read_protocol(key).df["path"].tolist() == df["path"].tolist()
    apart = _write(tmp_path / "elsewhere" / "keys" / "LA" / "CM" / "trial_metadata.txt", LA2021)
    assert read_protocol(apart).df["path"].tolist() == ["", "", ""]
    only_eval = read_protocol(key, phases="eval")
    assert only_eval.df["utt_id"].tolist() == ["LA_E_9332881"]
    bad = _write(tmp_path / "bad.txt", LA2021.replace("notrim eval\n", "notrim\n", 1))
    with pytest.raises(ProtocolError, match=r"bad\.txt:1: expected 8 fields"):
        read_protocol(bad, format="asvspoof2021_la")


def test_asvspoof2021_df_key(tmp_path):
    key = _write(tmp_path / "DF" / "CM" / "trial_metadata.txt", DF2021)
    (tmp_path / "ASVspoof2021_DF_eval" / "flac").mkdir(parents=True)
    t = read_protocol(key, root=tmp_path)
    _check_required(t)
    df = t.df
    assert df["label"].tolist() == ["spoof", "spoof", "bonafide"]
    assert df["codec"].tolist() == ["nocodec", "low_m4a", "mp3m4a"]
    assert df["source"].tolist() == ["asvspoof", "vcc2020", "asvspoof"]
    assert df["vocoder"].tolist() == ["traditional_vocoder", "neural_vocoder_nonautoregressive", "bonafide"]
    assert df["attack"].tolist() == ["A14", "Task1-team20", "bonafide"]
    assert df["attack_type"].tolist() == ["tts+vc", "vc", ""]
    assert df["partition"].tolist() == ["progress", "eval", "eval"]
    assert df["vcc_team"].tolist() == ["", "team20", ""]
    assert df["vcc_gender_pair"].tolist() == ["", "FF", ""]
    assert df["corpus"].unique().tolist() == ["asvspoof2021_df"]
    assert df["path"][1].endswith("ASVspoof2021_DF_eval/flac/DF_E_2000013.flac")


def test_asvspoof2021_df_dash_vocoder_is_unknown_like_the_other_dash_fields(tmp_path):
    key = _write(tmp_path / "DF" / "CM" / "trial_metadata.txt", DF2021.replace("eval bonafide -", "eval - -"))
    (tmp_path / "ASVspoof2021_DF_eval" / "flac").mkdir(parents=True)
    assert read_protocol(key, root=tmp_path).df["vocoder"].tolist()[2] == ""


def test_asvspoof5_tsv(tmp_path):
    train = _write(tmp_path / "ASVspoof5.train.tsv", ASV5_TRAIN)
    ev = _write(tmp_path / "ASVspoof5.eval.track_1.tsv", ASV5_EVAL)
    (tmp_path / "flac_T").mkdir()
    (tmp_path / "flac_E_eval").mkdir()
    t = read_protocol(train, root=tmp_path)
    _check_required(t)
    df = t.df
    assert df["utt_id"].tolist() == ["T_0000000000", "T_0000000011"]
    assert df["attack"].tolist() == ["A05", "bonafide"]
    assert df["attack_tag"].tolist() == ["AC3", ""]
    assert df["codec"].tolist() == ["none", "none"]
    assert df["gender"].tolist() == ["F", "F"]
    assert df["partition"].tolist() == ["train", "train"]
    assert df["path"][0] == str(tmp_path / "flac_T" / "T_0000000000.flac")
    e = read_protocol(ev, root=tmp_path).df
    assert e["codec"].tolist() == ["C05", "none"] and e["codec_q"].tolist() == ["3", "0"]
    assert e["partition"].tolist() == ["eval", "eval"]
    assert e["path"][1] == str(tmp_path / "flac_E_eval" / "E_0000000006.flac")
    assert read_protocol(ev, codecs=["C05"]).df["utt_id"].tolist() == ["E_0000000005"]
    # the 6-column pre-release layout
    old = _write(tmp_path / "old.txt", "T_4850 T_0000000000 F - A05 spoof\n")
    assert read_protocol(old).df["attack"].tolist() == ["A05"]
    bad = _write(tmp_path / "bad.tsv", ASV5_TRAIN + "T_1 T_0000000012 F - - - AC3 A05 maybe -\n")
    with pytest.raises(ProtocolError, match=r"bad\.tsv:3: unknown label 'maybe'"):
        read_protocol(bad, format="asvspoof5")
