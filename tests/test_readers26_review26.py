"""Review 26 of the non-ASVspoof protocol readers: empty selections, partition spelling, In-the-Wild's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_support import touch

from sddkit.data.protocols.bonafide import CommonVoiceConfig, LibriSpeechConfig, read_common_voice, read_librispeech
from sddkit.data.protocols.fake_or_real import FakeOrRealConfig, read_fake_or_real
from sddkit.data.protocols.in_the_wild import InTheWildConfig, read_in_the_wild
from sddkit.data.protocols.mlaad import MLAADConfig, read_mlaad
from sddkit.errors import ProtocolError


def _for_tree(tmp_path: Path) -> Path:
    root = tmp_path / "for"
    touch(root / "for-norm" / "for-norm" / "training" / "real" / "r.wav")
    touch(root / "for-2seconds" / "testing" / "fake" / "f.wav")
    return root


@pytest.mark.parametrize("option", ["partitions", "versions"])
def test_fake_or_real_empty_selection_names_the_option(tmp_path: Path, option: str) -> None:
    root = _for_tree(tmp_path)
    with pytest.raises(ProtocolError, match=rf"{option} \[\] keeps nothing"):
        read_fake_or_real(FakeOrRealConfig(root=str(root), **{option: []}))


@pytest.mark.parametrize("asked", ["Testing", "TEST"])
def test_fake_or_real_partitions_any_case(tmp_path: Path, asked: str) -> None:
    # the folders are matched in any case; the partition asked for by the folder's own word (Testing) too
    table = read_fake_or_real(FakeOrRealConfig(root=str(_for_tree(tmp_path)), partitions=[asked]))
    assert list(table.df["partition"]) == ["test"]
    assert list(table.df["label"]) == ["spoof"]


def test_mlaad_empty_languages_is_not_no_model_folders(tmp_path: Path) -> None:
    touch(tmp_path / "MLAAD" / "fake" / "de" / "tts_models_de_thorsten_vits" / "a.wav")
    with pytest.raises(ProtocolError, match=r"languages \[\] keeps no language"):
        read_mlaad(MLAADConfig(root=str(tmp_path / "MLAAD"), languages=[]))


def test_in_the_wild_folder_holding_the_release(tmp_path: Path) -> None:
    release = tmp_path / "release_in_the_wild"
    touch(release / "0.wav")
    touch(release / "1.wav")
    (release / "meta.csv").write_text("file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n")
    table = read_in_the_wild(InTheWildConfig(protocol=str(tmp_path)))
    assert list(table.df["label"]) == ["spoof", "bonafide"]
    assert list(table.df["path"]) == [str(release / "0.wav"), str(release / "1.wav")]


def test_librispeech_empty_splits_names_the_option(tmp_path: Path) -> None:
    chapter = tmp_path / "LibriSpeech" / "test-clean" / "61" / "70968"
    touch(chapter / "61-70968-0000.flac")
    (chapter / "61-70968.trans.txt").write_text("61-70968-0000 HE BEGAN A CONFUSED COMPLAINT\n")
    with pytest.raises(ProtocolError, match=r"splits \[\] keeps no split.*test-clean"):
        read_librispeech(LibriSpeechConfig(root=str(tmp_path / "LibriSpeech"), splits=[]))


def test_common_voice_empty_splits_names_the_option(tmp_path: Path) -> None:
    touch(tmp_path / "de" / "clips" / "a.mp3")
    (tmp_path / "de" / "validated.tsv").write_text("client_id\tpath\tsentence\nc1\ta.mp3\tHallo\n")
    with pytest.raises(ProtocolError, match=r"splits \[\] keeps no split.*validated"):
        read_common_voice(CommonVoiceConfig(root=str(tmp_path / "de"), splits=[]))
