"""Readers of In-the-Wild, Fake-or-Real, MLAAD(+M-AILABS), ADD 2022, FakeAVCeleb, bona fide corpora,
the generic folder, the sddbench manifest and utterance tables, on tiny trees in the official layouts.
Folder readers only list files, so empty files stand in for audio."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sddkit.data.protocols import read_protocol
from sddkit.data.table import REQUIRED_COLUMNS, UtteranceTable
from sddkit.errors import ConfigError, ProtocolError

SDDBENCH_HEADER = (
    "path,label,partition,system,attack_type,source,speaker,pair_id,language,origin_corpus,variant,"
    "orig_format,sample_rate,channels,duration_s,source_repo,source_path,source_commit"
)


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _required(table):
    df = table.df
    assert list(df.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert df["label"].isin(["bonafide", "spoof"]).all() and (df["utt_id"] != "").all()
    return df


def test_in_the_wild(tmp_path):
    meta = _write(
        tmp_path / "release_in_the_wild" / "meta.csv",
        "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n2.wav,Barack Obama,spoof\n",
    )
    df = _required(read_protocol(meta))
    assert df["utt_id"].tolist() == ["0", "1", "2"]
    assert df["label"].tolist() == ["spoof", "bonafide", "spoof"]
    assert df["attack"].tolist() == ["", "bonafide", ""]
    assert df["speaker"].tolist() == ["Alec Guinness", "Alec Guinness", "Barack Obama"]
    assert df["path"][1] == str(meta.parent / "1.wav")
    assert read_protocol(meta.parent).df["utt_id"].tolist() == ["0", "1", "2"]  # the folder works too
    bad = _write(tmp_path / "bad" / "meta.csv", "file,speaker,label\n0.wav,A,spoof\n1.wav,B,fake\n")
    with pytest.raises(ProtocolError, match=r"meta\.csv:3: unknown label 'fake'"):
        read_protocol(bad)
    ragged = _write(tmp_path / "ragged" / "meta.csv", "file,speaker,label\n0.wav,A\n")
    with pytest.raises(ProtocolError, match=r"meta\.csv:2: expected 3 fields"):
        read_protocol(ragged, format="in_the_wild")


def test_fake_or_real(tmp_path):
    root = tmp_path / "FoR"
    for version in ("for-norm", "for-2seconds"):
        for split in ("training", "validation", "testing"):
            _write(root / version / split / "real" / f"file1.wav_16k.wav_norm.wav_mono.wav_silence{split}.wav")
            _write(root / version / split / "fake" / f"file2.mp3.wav_16k.wav_norm.wav_{split}.wav")
    df = _required(read_protocol(root))
    assert len(df) == 12
    assert set(df["partition"]) == {"train", "val", "test"}
    assert set(df["source"]) == {"for-norm", "for-2seconds"}
    assert (df.groupby("label").size() == 6).all()
    first = df.iloc[0]
    assert first["utt_id"] == Path(first["path"]).relative_to(root).with_suffix("").as_posix()
    only = read_protocol(root, format="fake_or_real", versions=["for-norm"], partitions=["training"]).df
    assert len(only) == 2 and set(only["partition"]) == {"train"}
    # a version folder nested once more, as the archives unpack
    nested = tmp_path / "for-rerec" / "for-rerecorded"
    _write(nested / "training" / "fake" / "recording1.wav")
    assert read_protocol(tmp_path / "for-rerec").df["source"].tolist() == ["for-rerecorded"]


def _mlaad_tree(tmp_path):
    mlaad = tmp_path / "MLAAD"
    header = (
        "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript"
    )
    model = mlaad / "fake" / "de" / "tts_models_de_thorsten_vits"
    rows = [
        "./fake/de/tts_models_de_thorsten_vits/grune_haus_01_f000001.wav|"
        "de_DE/by_book/female/eva_k/grune_haus/wavs/grune_haus_01_f000001.wav|de|True|3.25|thorsten|"
        "tts_models/de/thorsten/vits|vits|Das ist ein Test.",
        "./fake/de/tts_models_de_thorsten_vits/grune_haus_01_f000002.wav|"
        "de_DE/by_book/female/eva_k/grune_haus/wavs/grune_haus_01_f000002.wav|de|True|2.5|thorsten|"
        "tts_models/de/thorsten/vits|vits|Noch ein Test.",
    ]
    _write(model / "meta.csv", header + "\n" + "\n".join(rows) + "\n")
    _write(mlaad / "fake" / "en" / "facebook_mms-tts-eng" / "a.wav")  # no meta.csv: listed from files
    mailabs = tmp_path / "M-AILABS"
    for n in (1, 2, 3):
        _write(
            mailabs / "de_DE" / "by_book" / "female" / "eva_k" / "grune_haus" / "wavs" / f"grune_haus_01_f00000{n}.wav"
        )
    _write(mailabs / "en_US" / "by_book" / "mix" / "some_book" / "wavs" / "x.wav")
    return mlaad, mailabs


def test_mlaad_with_mailabs(tmp_path):
    mlaad, mailabs = _mlaad_tree(tmp_path)
    df = _required(read_protocol(mlaad))
    assert df["label"].tolist() == ["spoof"] * 3
    vits = df[df["language"] == "de"]
    assert vits["attack"].tolist() == ["tts_models/de/thorsten/vits"] * 2
    assert vits["duration_s"].tolist() == [3.25, 2.5]
    assert vits["architecture"].tolist() == ["vits", "vits"]
    assert vits["utt_id"].tolist()[0] == "fake/de/tts_models_de_thorsten_vits/grune_haus_01_f000001"
    assert vits["path"].tolist()[0] == str(mlaad / "fake/de/tts_models_de_thorsten_vits/grune_haus_01_f000001.wav")
    en = df[df["language"] == "en"]
    assert en["attack"].tolist() == ["facebook_mms-tts-eng"] and math.isnan(en["duration_s"].iloc[0])
    every = read_protocol(mlaad, bonafide_root=mailabs).df
    bona = every[every["label"] == "bonafide"]
    assert len(bona) == 4 and set(bona["corpus"]) == {"m-ailabs"}
    assert sorted(bona["speaker"]) == ["", "eva_k", "eva_k", "eva_k"]
    assert sorted(bona["language"]) == ["de", "de", "de", "en"]
    ref = read_protocol(mlaad, bonafide_root=mailabs, bonafide="referenced").df
    ref_bona = ref[ref["label"] == "bonafide"]
    assert sorted(Path(p).name for p in ref_bona["path"]) == ["grune_haus_01_f000001.wav", "grune_haus_01_f000002.wav"]
    de_only = read_protocol(mlaad, bonafide_root=mailabs, languages=["de"]).df
    assert set(de_only["language"]) == {"de"} and len(de_only) == 5
    with pytest.raises(ConfigError):
        read_protocol(mlaad, bonafide="some")


def test_mlaad_malformed_meta(tmp_path):
    mlaad = tmp_path / "MLAAD"
    _write(mlaad / "fake" / "de" / "m" / "meta.csv", "path|model_name|duration\n./fake/de/m/a.wav|m|long\n")
    with pytest.raises(ProtocolError, match=r"meta\.csv:2: duration 'long'"):
        read_protocol(mlaad, format="mlaad")
    _write(mlaad / "fake" / "de" / "m" / "meta.csv", "file|model\n")
    with pytest.raises(ProtocolError, match=r"meta\.csv:1: header lacks column"):
        read_protocol(mlaad, format="mlaad")


def test_add2022(tmp_path):
    labels = _write(tmp_path / "track1" / "train" / "label.txt", "ADD_T_00001.wav genuine\nADD_T_00002.wav fake\n")
    (tmp_path / "track1" / "train" / "wav").mkdir()
    df = _required(read_protocol(labels, partition="train"))
    assert df["utt_id"].tolist() == ["ADD_T_00001", "ADD_T_00002"]
    assert df["label"].tolist() == ["bonafide", "spoof"]
    assert df["path"][1] == str(tmp_path / "track1" / "train" / "wav" / "ADD_T_00002.wav")
    assert df["source"].tolist() == ["add2022/train"] * 2 and df["partition"].tolist() == ["train"] * 2
    bad = _write(tmp_path / "bad.txt", "ADD_T_00001.wav genuine\nADD_T_00002.wav spoofed\n")
    with pytest.raises(ProtocolError, match=r"bad\.txt:2: unknown label 'spoofed'"):
        read_protocol(bad, format="add2022")


def test_fakeavceleb(tmp_path):
    root = tmp_path / "FakeAVCeleb_v1.2"
    files = [
        "RealVideo-RealAudio/African/men/id00076/00109.mp4",
        "RealVideo-FakeAudio/African/men/id00076/00109_id00476.mp4",
        "FakeVideo-RealAudio/Asian/women/id00080/00110_3_id00477_wavtolip.mp4",
        "FakeVideo-FakeAudio/African/men/id00076/00109_10_id00476_wavtolip.mp4",
    ]
    for f in files:
        _write(root / f)
    _write(
        root / "meta_data.csv",
        "source,target1,target2,method,category,type,race,gender,path,\n"
        "id00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,FakeAVCeleb/RealVideo-RealAudio/African/men/id00076\n"
        "id00076,id00476,-,rtvc,B,RealVideo-FakeAudio,African,men,00109_id00476.mp4,"
        "FakeAVCeleb/RealVideo-FakeAudio/African/men/id00076\n"
        "id00076,id00476,10,wav2lip,D,FakeVideo-FakeAudio,African,men,00109_10_id00476_wavtolip.mp4,"
        "FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076\n",
    )
    df = _required(read_protocol(root)).set_index("source")
    assert df.loc["RealVideo-RealAudio", "label"] == "bonafide"
    assert df.loc["FakeVideo-RealAudio", "label"] == "bonafide"  # fake video, real audio
    assert df.loc["RealVideo-FakeAudio", "label"] == "spoof"
    assert df.loc["FakeVideo-FakeAudio", "attack"] == "rtvc"
    assert df.loc["FakeVideo-FakeAudio", "method"] == "wav2lip"
    assert df.loc["FakeVideo-RealAudio", "method"] == ""  # not in meta_data.csv
    assert df.loc["FakeVideo-RealAudio", "speaker"] == "id00080" and df.loc["FakeVideo-RealAudio", "gender"] == "women"
    assert df.loc["RealVideo-RealAudio", "utt_id"] == "RealVideo-RealAudio/African/men/id00076/00109"
    assert df.loc["RealVideo-RealAudio", "path"].endswith(".mp4")
    audio_only = read_protocol(root / "meta_data.csv", categories=["RealVideo-FakeAudio"]).df
    assert audio_only["label"].tolist() == ["spoof"]
    with pytest.raises(ConfigError, match="unknown FakeAVCeleb categories"):
        read_protocol(root, categories=["RealVideo"])


def test_librispeech(tmp_path):
    root = tmp_path / "LibriSpeech"
    for split, spk, chap in (("test-clean", "1089", "134686"), ("dev-other", "116", "288045")):
        d = root / split / spk / chap
        _write(d / f"{spk}-{chap}.trans.txt", f"{spk}-{chap}-0000 HE HOPED\n{spk}-{chap}-0001 STUFF IT INTO YOU\n")
        for n in ("0000", "0001"):
            _write(d / f"{spk}-{chap}-{n}.flac")
    df = _required(read_protocol(root))
    assert len(df) == 4 and set(df["label"]) == {"bonafide"} and set(df["attack"]) == {"bonafide"}
    row = df[df["utt_id"] == "1089-134686-0001"].iloc[0]
    assert row["speaker"] == "1089" and row["partition"] == "test-clean"
    assert row["path"] == str(root / "test-clean" / "1089" / "134686" / "1089-134686-0001.flac")
    assert len(read_protocol(root, splits="dev-other")) == 2
    assert len(read_protocol(root / "test-clean")) == 2  # a split folder directly
    _write(root / "test-clean" / "1089" / "134686" / "1089-134686.trans.txt", "9999-1-0000 WRONG SPEAKER\n")
    with pytest.raises(ProtocolError, match=r"trans\.txt:1: utterance '9999-1-0000'"):
        read_protocol(root, format="librispeech")


def test_ljspeech(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    _write(
        root / "metadata.csv",
        'LJ001-0001|Printing, in the only sense "with which" we are|Printing, in the only sense with which we are\n'
        "LJ001-0002|in being comparatively modern.|in being comparatively modern.\n",
    )
    (root / "wavs").mkdir()
    df = _required(read_protocol(root))
    assert df["utt_id"].tolist() == ["LJ001-0001", "LJ001-0002"]
    assert df["path"][0] == str(root / "wavs" / "LJ001-0001.wav") and set(df["speaker"]) == {"LJ"}
    assert len(read_protocol(root / "metadata.csv")) == 2
    _write(root / "metadata.csv", "LJ001-0001\n")
    with pytest.raises(ProtocolError, match=r"metadata\.csv:1: expected id\|transcription"):
        read_protocol(root, format="ljspeech")


def test_vctk_both_releases(tmp_path):
    new = tmp_path / "VCTK-Corpus-0.92"
    for spk in ("p225", "p226"):
        for mic in ("mic1", "mic2"):
            _write(new / "wav48_silence_trimmed" / spk / f"{spk}_001_{mic}.flac")
    df = _required(read_protocol(new))
    assert df["utt_id"].tolist() == ["p225_001_mic1", "p226_001_mic1"] and df["speaker"].tolist() == ["p225", "p226"]
    assert len(read_protocol(new, mic="both")) == 4
    old = tmp_path / "VCTK-Corpus"
    _write(old / "wav48" / "p225" / "p225_001.wav")
    _write(old / "wav48" / "p225" / "p225_002.wav")
    assert read_protocol(old).df["utt_id"].tolist() == ["p225_001", "p225_002"]


def test_common_voice(tmp_path):
    root = tmp_path / "cv-corpus" / "de"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    _write(
        root / "validated.tsv",
        header
        + 'abc\tcommon_voice_de_1.mp3\tEin "Satz".\t2\t0\t\t\t\tde\t\n'
        + "def\tcommon_voice_de_2.mp3\tNoch einer.\t3\t0\tthirties\tmale\t\tde\t\n",
    )
    _write(root / "train.tsv", header + 'abc\tcommon_voice_de_1.mp3\tEin "Satz".\t2\t0\t\t\t\tde\t\n')
    (root / "clips").mkdir()
    df = _required(read_protocol(root))
    assert df["utt_id"].tolist() == ["common_voice_de_1", "common_voice_de_2"]
    assert df["speaker"].tolist() == ["abc", "def"] and set(df["language"]) == {"de"}
    assert df["path"][0] == str(root / "clips" / "common_voice_de_1.mp3")
    train = read_protocol(root / "train.tsv").df
    assert train["utt_id"].tolist() == ["common_voice_de_1"] and train["partition"].tolist() == ["train"]
    both = read_protocol(root, format="common_voice", splits=["train", "validated"])
    assert len(both) == 2  # validated.tsv repeats train.tsv's clip: kept once


def test_generic_folder(tmp_path):
    root = tmp_path / "mycorpus"
    _write(root / "bonafide" / "a.wav")
    _write(root / "bonafide" / "vctk" / "b.flac")
    _write(root / "spoof" / "c.wav")
    _write(root / "spoof" / "xtts" / "d.mp3")
    _write(root / "spoof" / "xtts" / "sub" / "e.wav")
    _write(root / "spoof" / "notes.txt")  # not audio
    df = _required(read_protocol(root)).set_index("utt_id")
    assert sorted(df.index) == ["bonafide/a", "bonafide/vctk/b", "spoof/c", "spoof/xtts/d", "spoof/xtts/sub/e"]
    assert df.loc["spoof/xtts/sub/e", "attack"] == "xtts" and df.loc["spoof/c", "attack"] == ""
    assert df.loc["bonafide/vctk/b", "source"] == "vctk" and df.loc["bonafide/a", "source"] == "mycorpus"
    assert set(df["corpus"]) == {"mycorpus"}
    no_attack = read_protocol(root, format="folder", attack_from_subfolder=False).df
    assert set(no_attack[no_attack["label"] == "spoof"]["attack"]) == {""}
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ProtocolError, match="bonafide/ and spoof/"):
        read_protocol(tmp_path / "nothing", format="folder")


def test_folder_links_are_followed_once_and_loops_end(tmp_path):
    root = tmp_path / "mycorpus"
    _write(root / "bonafide" / "a.wav")
    _write(tmp_path / "elsewhere" / "b.wav")
    _write(root / "spoof" / "tts" / "c.wav")
    (root / "spoof" / "linked").symlink_to(tmp_path / "elsewhere")  # a folder on another disk, say
    (root / "spoof" / "tts" / "up").symlink_to(root / "spoof")  # a loop
    (root / "spoof" / "again").symlink_to(root / "spoof" / "tts")  # a second way into one folder
    df = _required(read_protocol(root, format="folder"))
    assert sorted(df["utt_id"]) == ["bonafide/a", "spoof/again/c", "spoof/linked/b"]


def _tiny_manifest(tmp_path):
    rows = [
        "audio/yourtts_demo/spoof_YourTTS/a.flac,spoof,train,YourTTS,tts,yourtts_demo,vctk_p225,p1,en,,v,"
        "WAV/PCM_16,16000,1,4.784,Edresson/YourTTS,x.wav,abc",
        "audio/vctk/bonafide/b.flac,bonafide,train,bonafide,-,yourtts_demo,vctk_p225,p1,en,VCTK,,FLAC,48000,1,3.5,r,y,c",
        "audio/styletts2_demo/spoof/c.flac,spoof,test_unseen,StyleTTS2,tts,styletts2_demo,s1,p2,en,,,MP3,24000,1,,r,z,c",
        'audio/wild/d.mp3,bonafide,test_wild,bonafide,-,wild,"Doe, J",p3,en,,,MP3,44100,2,2.0,r,w,c',
    ]
    return _write(tmp_path / "sddbench" / "manifest.csv", SDDBENCH_HEADER + "\n" + "\n".join(rows) + "\n")


def test_sddbench_manifest(tmp_path):
    manifest = _tiny_manifest(tmp_path)
    df = _required(read_protocol(manifest))
    assert df["utt_id"].tolist() == ["a", "b", "c", "d"]
    assert df["attack"].tolist() == ["YourTTS", "bonafide", "StyleTTS2", "bonafide"]
    assert df["source"].tolist() == ["yourtts_demo", "yourtts_demo", "styletts2_demo", "wild"]
    assert df["partition"].tolist() == ["train", "train", "test_unseen", "test_wild"]
    assert df["speaker"][3] == "Doe, J"
    assert df["path"][0] == str(manifest.parent / "audio/yourtts_demo/spoof_YourTTS/a.flac")
    assert df["duration_s"][0] == pytest.approx(4.784) and math.isnan(df["duration_s"][2])
    assert df["orig_format"][2] == "MP3" and df["pair_id"][1] == "p1"
    assert read_protocol(manifest.parent, partitions="train").df["utt_id"].tolist() == ["a", "b"]
    assert len(read_protocol(manifest, partitions=["train", "test_wild"])) == 3
    with pytest.raises(ProtocolError, match="partitions present"):
        read_protocol(manifest, partitions=["nope"])
    bad = _write(tmp_path / "bad" / "manifest.csv", manifest.read_text().replace(",spoof,train,", ",fake,train,", 1))
    with pytest.raises(ProtocolError, match=r"manifest\.csv:2: unknown label 'fake'"):
        read_protocol(bad)


def test_sddbench_duplicate_stems_fall_back_to_relative_paths(tmp_path):
    text = _tiny_manifest(tmp_path).read_text().replace("styletts2_demo/spoof/c.flac", "styletts2_demo/spoof/a.flac")
    manifest = _write(tmp_path / "dup" / "manifest.csv", text)
    ids = read_protocol(manifest).df["utt_id"].tolist()
    assert ids[0] == "audio/yourtts_demo/spoof_YourTTS/a" and ids[2] == "audio/styletts2_demo/spoof/a"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_utterance_table_file(tmp_path, suffix):
    t = UtteranceTable.from_records(
        [
            {"utt_id": "a", "path": "a.wav", "label": "bonafide", "attack": "bonafide"},
            {"utt_id": "b", "path": "/abs/b.wav", "label": "spoof", "attack": "A01"},
        ]
    )
    path = t.save(tmp_path / f"table{suffix}")
    back = read_protocol(path)
    assert back.df["utt_id"].tolist() == ["a", "b"] and back.labels.tolist() == [1, 0]
    rooted = read_protocol(path, root=tmp_path).df
    assert rooted["path"].tolist() == [str(tmp_path / "a.wav"), "/abs/b.wav"]


def test_in_the_wild_root_that_holds_none_of_its_files_is_an_error(tmp_path):
    folder = tmp_path / "release_in_the_wild"
    meta = _write(folder / "meta.csv", "file,speaker,label\n0.wav,A,spoof\n1.wav,B,bona-fide\n")
    (folder / "0.wav").write_bytes(b"x")
    (folder / "1.wav").write_bytes(b"x")
    table = read_protocol(meta, format="in_the_wild", root=str(folder))  # the right folder
    assert table.df["path"].tolist() == [str(folder / "0.wav"), str(folder / "1.wav")]
    # the parent of release_in_the_wild/: before, every path pointed nowhere and nothing said so
    with pytest.raises(ProtocolError, match=r"holds none of the first files meta\.csv lists \(0\.wav, 1\.wav\)"):
        read_protocol(meta, format="in_the_wild", root=str(tmp_path))


def test_hidden_files_and_folders_are_not_audio_of_the_corpus(tmp_path):
    # `.hidden.wav` was skipped but `.ipynb_checkpoints/a.wav` (a notebook's copy) or `.git/...` were read
    from sddkit.audio.files import list_audio_files

    root = tmp_path / ".corpus"  # the folder given may itself be hidden
    _write(root / "a.wav")
    _write(root / ".b.wav")
    _write(root / ".ipynb_checkpoints" / "a.wav")
    _write(root / "sub" / ".cache" / "c.wav")
    _write(root / "sub" / "d.wav")
    assert list_audio_files(root) == [root / "a.wav", root / "sub" / "d.wav"]
