"""The WaveFake reader: generator folders, the TTS folder's repeated ``generated/`` copies, LJSpeech and JSUT bona
fide speech, selections and detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_support import touch

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ConfigError, ProtocolError
from sddkit.training.recipe import ProtocolSpec

TTS = "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech"


def _wavefake(tmp_path: Path) -> Path:
    gen = tmp_path / "WaveFake" / "generated_audio"
    for utt in ("LJ001-0001", "LJ001-0002"):
        touch(gen / "ljspeech_melgan" / f"{utt}_gen.wav")
        touch(gen / "ljspeech_hifiGAN" / f"{utt}_gen.wav")
    touch(gen / "jsut_parallel_wavegan" / "BASIC5000_0001_gen.wav")
    # the release's TTS folder repeats its files in generated/
    for name in ("gen_0.wav", "gen_1.wav"):
        touch(gen / TTS / name)
        touch(gen / TTS / "generated" / name)
    (gen.parent / "readme.txt").write_text("WaveFake\n")
    return gen.parent


def _ljspeech(tmp_path: Path) -> Path:
    lj = tmp_path / "LJSpeech-1.1"
    lj.mkdir()
    (lj / "metadata.csv").write_text("LJ001-0001|Printing, in the only sense|Printing\nLJ001-0002|in being|in being\n")
    for utt in ("LJ001-0001", "LJ001-0002"):
        touch(lj / "wavs" / f"{utt}.wav")
    return lj


def _jsut(tmp_path: Path) -> Path:
    jsut = tmp_path / "jsut_ver1.1"
    touch(jsut / "basic5000" / "wav" / "BASIC5000_0001.wav")
    touch(jsut / "onomatopee300" / "wav" / "ONOMATOPEE300_001.wav")
    return jsut


def test_spoofs_of_every_generator_folder_with_their_columns(tmp_path):
    root = _wavefake(tmp_path)
    df = read_protocol(root).df.set_index("utt_id")  # detected from the folder holding generated_audio/
    assert detect_format(root) == detect_format(root / "generated_audio") == "wavefake"
    # 4 LJSpeech copies, 1 JSUT copy, 2 TTS files: the generated/ repeats are not read twice
    assert len(df) == 7 and set(df["label"]) == {"spoof"}
    row = df.loc["ljspeech_melgan/LJ001-0001_gen"]
    assert (row["attack"], row["vocoder"], row["attack_type"], row["reference"]) == (
        "ljspeech_melgan", "melgan", "vocoder", "ljspeech"
    )  # fmt: skip
    assert (row["pair_id"], row["speaker"], row["language"], row["source"]) == ("LJ001-0001", "LJ", "en", "wavefake")
    jsut = df.loc["jsut_parallel_wavegan/BASIC5000_0001_gen"]
    assert (jsut["vocoder"], jsut["language"], jsut["speaker"], jsut["pair_id"]) == (
        "parallel_wavegan", "ja", "JSUT", "BASIC5000_0001"
    )  # fmt: skip
    tts = df[df["attack"] == TTS]
    assert sorted(tts.index) == [f"{TTS}/gen_0", f"{TTS}/gen_1"]
    assert set(tts["attack_type"]) == {"tts"} and list(tts["pair_id"]) == list(tts.index)  # each prompt its own group


def test_a_generated_file_the_folder_does_not_repeat_is_read(tmp_path):
    root = _wavefake(tmp_path)
    touch(root / "generated_audio" / TTS / "generated" / "gen_2.wav")
    df = read_protocol(root, format="wavefake").df
    assert f"{TTS}/generated/gen_2" in set(df["utt_id"])
    assert (df["attack"] == TTS).sum() == 3


def test_bona_fide_ljspeech_and_jsut_pair_with_their_copies(tmp_path):
    root, lj, jsut = _wavefake(tmp_path), _ljspeech(tmp_path), _jsut(tmp_path)
    df = read_protocol(root, ljspeech_root=str(lj), jsut_root=str(jsut)).df
    bona = df[df["label"] == "bonafide"].set_index("utt_id")
    # jsut_subsets keeps basic5000 (the texts WaveFake re-synthesised) unless told otherwise
    assert sorted(bona.index) == ["LJ001-0001", "LJ001-0002", "jsut/basic5000/BASIC5000_0001"]
    assert set(bona["attack"]) == {"bonafide"}
    assert bona.loc["LJ001-0001", "path"] == str(lj / "wavs" / "LJ001-0001.wav")
    assert (bona.loc["jsut/basic5000/BASIC5000_0001", "source"], bona.loc["LJ001-0001", "source"]) == (
        "jsut",
        "ljspeech",
    )
    # a bona fide utterance and its vocoded copies share a pair_id (group folds keep them together)
    assert set(df[df["pair_id"] == "LJ001-0001"]["label"]) == {"bonafide", "spoof"}
    assert (df["pair_id"] == "LJ001-0001").sum() == 3
    every = read_protocol(root, jsut_root=str(jsut), jsut_subsets=None).df
    assert {"jsut/basic5000/BASIC5000_0001", "jsut/onomatopee300/ONOMATOPEE300_001"} <= set(every["utt_id"])


def test_selections_name_what_is_missing(tmp_path):
    root, jsut = _wavefake(tmp_path), _jsut(tmp_path)
    df = read_protocol(root, generators="ljspeech_melgan").df  # one string: a list of one
    assert set(df["attack"]) == {"ljspeech_melgan"} and len(df) == 2
    with pytest.raises(ProtocolError, match=r"no generators \['ljspeech_melgna'\].*ljspeech_melgan"):
        read_protocol(root, generators=["ljspeech_melgna"])
    with pytest.raises(ProtocolError, match=r"no jsut_subsets \['basic500'\].*basic5000"):
        read_protocol(root, jsut_root=str(jsut), jsut_subsets=["basic500"])
    with pytest.raises(ProtocolError, match="no JSUT subset folders"):
        read_protocol(root, jsut_root=str(tmp_path / "WaveFake"))
    with pytest.raises(ConfigError, match="unknown key.*'bonafide_root'.*ljspeech_root"):
        read_protocol(root, bonafide_root=str(tmp_path))


def test_a_folder_without_generator_folders_is_refused(tmp_path):
    other = tmp_path / "other"
    touch(other / "melgan" / "a.wav")
    with pytest.raises(ProtocolError, match="no WaveFake generator folders"):
        read_protocol(other, format="wavefake")
    empty = tmp_path / "empty" / "generated_audio" / "ljspeech_melgan"
    empty.mkdir(parents=True)
    with pytest.raises(ProtocolError, match="hold no audio files"):
        read_protocol(empty.parent.parent, format="wavefake")


def test_a_recipe_expands_home_in_the_bona_fide_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = ProtocolSpec(
        protocol="~/WaveFake", format="wavefake", options={"ljspeech_root": "~/LJSpeech-1.1", "generators": ["x"]}
    )
    assert spec.options["ljspeech_root"] == str(tmp_path / "LJSpeech-1.1")
    assert spec.protocol == str(tmp_path / "WaveFake") and spec.options["generators"] == ["x"]


def test_add2023_track_1_2_reads_as_its_own_corpus(tmp_path):
    """ADD 2023 track 1.2: <part>/label.txt beside <part>/wav/, ids ADD2023_T1.2_T_..., read by the ADD reader with
    corpus add2023 (add2022 before: the two challenges' tables could not be told apart)."""
    train = tmp_path / "Track1.2" / "train"
    (train / "wav").mkdir(parents=True)
    (train / "label.txt").write_text("ADD2023_T1.2_T_00000001.wav genuine\nADD2023_T1.2_T_00000002.wav fake\n")
    test = tmp_path / "Track1.2" / "testR2"
    (test / "wav").mkdir(parents=True)
    (test / "label.txt").write_text("ADD2023_T1.2R2_E_00000003.wav fake\n")
    df = read_protocol(train / "label.txt").df
    assert set(df["corpus"]) == {"add2023"} and set(df["source"]) == {"add2023/train"}
    assert set(df["partition"]) == {"train"} and list(df["label"]) == ["bonafide", "spoof"]
    assert df["path"].iloc[0] == str(train / "wav" / "ADD2023_T1.2_T_00000001.wav")
    ev = read_protocol(test / "label.txt").df
    assert (ev["partition"].iloc[0], ev["source"].iloc[0]) == ("eval", "add2023/testR2")
    assert set(read_protocol(test / "label.txt", corpus="mine").df["corpus"]) == {"mine"}
    add22 = tmp_path / "ADD_train_dev" / "label" / "train_label.txt"
    add22.parent.mkdir(parents=True)
    add22.write_text("ADD_T_00000000.wav genuine\n")
    assert set(read_protocol(add22).df["corpus"]) == {"add2022"}


def test_sdd_eval_of_wavefake_without_its_bona_fide_names_the_roots(tmp_path, capsys):
    from sddkit.cli.main import main

    root = _wavefake(tmp_path)
    scores = tmp_path / "s.csv"
    df = read_protocol(root).df
    scores.write_text("path,score\n" + "".join(f"{p},0.5\n" for p in df["path"]))
    assert main(["eval", "--scores", str(scores), "--protocol", str(root), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "WaveFake holds only spoofs" in err and "ljspeech_root=DIR" in err
