"""Protocol readers on tiny corpora laid out as the official distributions unpack."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_support import touch

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

MLAAD_HEADER = (
    "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript\n"
)


def _mlaad(root: Path) -> Path:
    """MLAAD/fake/de/<model>/{meta.csv,0.wav}; returns the model folder."""
    model = root / "MLAAD" / "fake" / "de" / "tts_models_de_thorsten_vits"
    touch(model / "0.wav")
    (model / "meta.csv").write_text(
        MLAAD_HEADER + "./fake/de/tts_models_de_thorsten_vits/0.wav|de_DE/by_book/female/eva_k/b/wavs/f.wav"
        "|de|True|1.5|thorsten|tts_models/de/thorsten/vits|VITS|Hallo\n"
    )
    return model


def test_asvspoof2021_audio_found_from_the_official_keys_layout(tmp_path):
    # LA-keys-full.tar.gz / DF-keys-full.tar.gz unpack to keys/<track>/CM/trial_metadata.txt,
    # next to ASVspoof2021_<track>_eval/flac/ when both archives are unpacked in one folder
    la_key = tmp_path / "keys" / "LA" / "CM" / "trial_metadata.txt"
    la_key.parent.mkdir(parents=True)
    la_key.write_text("LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n")
    la_audio = touch(tmp_path / "ASVspoof2021_LA_eval" / "flac" / "LA_E_9332881.flac")
    df_key = tmp_path / "keys" / "DF" / "CM" / "trial_metadata.txt"
    df_key.parent.mkdir(parents=True)
    df_key.write_text("LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n")
    df_audio = touch(tmp_path / "ASVspoof2021_DF_eval" / "flac" / "DF_E_2000011.flac")

    assert read_protocol(la_key).df["path"].tolist() == [str(la_audio)]
    assert read_protocol(df_key).df["path"].tolist() == [str(df_audio)]


def test_mlaad_model_folder_is_not_detected_as_in_the_wild(tmp_path):
    model = _mlaad(tmp_path)
    # its meta.csv is MLAAD's: the In-the-Wild reader would fail on its header
    with pytest.raises(ProtocolError, match="MLAAD"):
        detect_format(model)


def test_mlaad_fake_folder_is_detected_as_mlaad(tmp_path):
    # the fake/ folder itself is a valid MLAAD root for the reader, so detection accepts it too
    fake = _mlaad(tmp_path).parent.parent
    assert detect_format(fake) == "mlaad"
    assert read_protocol(fake).df["attack"].tolist() == ["tts_models/de/thorsten/vits"]


def test_in_the_wild_folder_still_detected_from_its_meta_csv(tmp_path):
    itw = tmp_path / "release_in_the_wild"
    itw.mkdir()
    (itw / "meta.csv").write_bytes(b"\xef\xbb\xbffile,speaker,label\r\n0.wav,Alec Guinness,bona-fide \r\n")
    assert detect_format(itw) == "in_the_wild"
    table = read_protocol(itw)
    assert table.labels.tolist() == [1]
    assert table.df["speaker"].tolist() == ["Alec Guinness"]


def _asv5_eval(tmp_path: Path) -> Path:
    proto = tmp_path / "ASVspoof5.eval.track_1.tsv"
    proto.write_text(
        "E_0006 E_0000000001 M C05 2 1 AC1 A18 spoof -\n"
        "E_0007 E_0000000002 F - - - bonafide bonafide bonafide -\n"
        "E_0008 E_0000000003 F C11 1 3 AC2 A20 spoof -\n"
    )
    return proto


def test_asvspoof5_codec_typo_is_an_error_not_a_silent_drop(tmp_path):
    proto = _asv5_eval(tmp_path)
    # 'C5' next to the valid 'C05' would silently drop every C05 trial
    with pytest.raises(ProtocolError, match=r"no codecs \['C5'\].*C05"):
        read_protocol(proto, codecs=["C05", "C5"])
    assert read_protocol(proto, codecs=["C05", "none"]).df["codec"].tolist() == ["C05", "none"]


def test_asvspoof5_codec_dash_as_written_in_the_protocol_means_uncoded(tmp_path):
    proto = _asv5_eval(tmp_path)
    assert read_protocol(proto, codecs=["-"]).df["utt_id"].tolist() == ["E_0000000002"]


def test_utterance_table_errors_name_the_file(tmp_path):
    table = tmp_path / "eval_table.csv"
    table.write_text("utt_id,path,label\na,a.wav,bonafide\nb,b.wav,maybe\n")
    with pytest.raises(ProtocolError, match=r"eval_table\.csv: labels must be"):
        UtteranceTable.load(table)
    with pytest.raises(ProtocolError, match=r"eval_table\.csv: labels must be"):
        read_protocol(table)
