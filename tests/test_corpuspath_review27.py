"""Review corpuspath (27): corpora laid out as distributed, read through the protocol readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_support import touch

from sddkit.data.protocols import read_protocol
from sddkit.errors import ProtocolError


def test_a_fake_or_real_tree_read_as_mlaad_is_refused_not_its_real_files_labelled_spoof(tmp_path: Path) -> None:
    """`format: mlaad` on a Fake-or-Real tree (the wrong format named) read every file, real/ ones included, as an
    MLAAD spoof of the "model" training/validation/testing: bona fide speech labelled spoof, without a word."""
    root = tmp_path / "FoR"
    for split in ("training", "testing"):
        touch(root / "for-norm" / split / "real" / "file1.wav")
        touch(root / "for-norm" / split / "fake" / "file1.wav")
    with pytest.raises(ProtocolError, match=r"for-norm/testing/real: a bona fide folder.*fake_or_real"):
        read_protocol(root, "mlaad")
    assert read_protocol(root, "fake_or_real").df["label"].value_counts().to_dict() == {"bonafide": 2, "spoof": 2}
    # the check looks at folder names only: MLAAD's own model folders without meta.csv read as before
    touch(tmp_path / "MLAAD" / "fake" / "de" / "griffin_lim" / "griffin_lim_1.wav")
    touch(tmp_path / "MLAAD" / "fake" / "en" / "tts_models_en_ljspeech_vits" / "x_1.wav")
    df = read_protocol(tmp_path / "MLAAD").df
    assert df["label"].tolist() == ["spoof", "spoof"]
    assert df["attack"].tolist() == ["griffin_lim", "tts_models_en_ljspeech_vits"]


def test_a_bonafide_spoof_folder_read_as_mlaad_is_refused(tmp_path: Path) -> None:
    """A generic bonafide/<speaker>/ + spoof/<attack>/ tree named `format: mlaad` read bonafide/ as a language."""
    touch(tmp_path / "data" / "bonafide" / "spk1" / "a.wav")
    touch(tmp_path / "data" / "spoof" / "A01" / "b.wav")
    with pytest.raises(ProtocolError, match=r"data/bonafide: a bona fide folder.*folder for bonafide/ \+ spoof/"):
        read_protocol(tmp_path / "data", "mlaad")
    assert read_protocol(tmp_path / "data", "folder").df["label"].tolist() == ["bonafide", "spoof"]


@pytest.mark.parametrize(
    ("folder", "files"),
    [
        ("ADD_train_dev", ["label/train_label.txt", "label/dev_label.txt"]),
        ("ADD_train_dev/label", ["train_label.txt"]),
        ("ADD2023", ["train/label.txt"]),
        ("PA", ["ASVspoof2019_PA_cm_protocols/ASVspoof2019.PA.cm.train.trn.txt"]),
        ("ASVspoof2019", ["PA/ASVspoof2019_PA_cm_protocols/ASVspoof2019.PA.cm.dev.trl.txt"]),
        ("LA-keys-full", ["keys/LA/CM/trial_metadata.txt"]),
    ],
)
def test_a_corpus_folder_given_for_its_protocol_file_names_the_files_to_pass(
    tmp_path: Path, folder: str, files: list[str]
) -> None:
    """ADD's folders, the ASVspoof 2019 PA folder and the 2021 keys folder given as the protocol were "cannot tell
    the corpus layout ... (no manifest.csv, bonafide/+spoof/, ...)": formats these are none of, and no file named."""
    d = tmp_path / folder
    for f in files:
        (d / f).parent.mkdir(parents=True, exist_ok=True)
        (d / f).write_text("ADD_T_00000000.wav genuine\n")
    with pytest.raises(ProtocolError, match="a folder of protocol files; pass one of them") as err:
        read_protocol(d)
    assert all(str(d / f) in str(err.value) for f in files)


def test_sdd_eval_given_the_add_folder_names_its_label_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sddkit.cli.main import main

    d = tmp_path / "ADD_train_dev"
    (d / "label").mkdir(parents=True)
    (d / "label" / "dev_label.txt").write_text("ADD_D_00000000.wav genuine\nADD_D_00000001.wav fake\n")
    scores = tmp_path / "s.csv"
    scores.write_text("utt_id,score\nADD_D_00000000,1\nADD_D_00000001,0\n")
    assert main(["eval", "--scores", str(scores), "--protocol", str(d), "--out", str(tmp_path / "r")]) == 2
    assert f"pass one of them (its audio folder is found from it, or give it as the `root` option): {d}" in (
        capsys.readouterr().err
    )


def _mlaad_de(tmp_path: Path) -> Path:
    model = tmp_path / "MLAAD" / "fake" / "de" / "tts_models_de_thorsten_vits"
    model.mkdir(parents=True)
    (model / "meta.csv").write_text(
        "path|original_file|language|is_original_language|duration|training_data|model_name|architecture|transcript\n"
        "./fake/de/tts_models_de_thorsten_vits/f1.wav|de_DE/by_book/female/eva_k/grune_haus/wavs/g_f1.wav|German|"
        "True|3.2|thorsten|tts_models/de/thorsten/vits|vits|Hallo\n"
    )
    touch(model / "f1.wav")
    return tmp_path / "MLAAD"


def test_an_mlaad_bonafide_root_that_is_not_m_ailabs_is_refused_not_its_spoofs_labelled_bonafide(
    tmp_path: Path,
) -> None:
    """bonafide_root named Fake-or-Real (or LJSpeech, or a folder holding several corpora) read every audio file
    under it as M-AILABS bona fide speech: FoR's fake/ files labelled bonafide, its version folders as languages."""
    mlaad = _mlaad_de(tmp_path)
    wrong = tmp_path / "FoR"
    touch(wrong / "for-norm" / "testing" / "fake" / "file1.wav")
    touch(wrong / "for-norm" / "testing" / "real" / "file1.wav")
    with pytest.raises(ProtocolError, match=r"fake/file1.wav: not in an M-AILABS book folder.*bonafide_root"):
        read_protocol(mlaad, bonafide_root=str(wrong))
    # the M-AILABS folder, or one of its language folders, reads as before
    mailabs = tmp_path / "M-AILABS"
    touch(mailabs / "de_DE" / "by_book" / "female" / "eva_k" / "grune_haus" / "wavs" / "g_f1.wav")
    for root in (mailabs, mailabs / "de_DE"):
        df = read_protocol(mlaad, bonafide_root=str(root), bonafide="referenced").df
        assert df["label"].tolist() == ["spoof", "bonafide"]
        assert df["pair_id"].tolist() == ["de_DE/eva_k", "de_DE/eva_k"]
