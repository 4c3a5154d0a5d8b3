"""Review 24 of the corpus protocol readers."""

from __future__ import annotations

from pathlib import Path

from sddkit.data.protocols import read_protocol


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_add2022_root_at_the_corpus_folder_reads_the_part_folder(tmp_path):
    """root=ADD_train_dev (the corpus folder, as an ASVspoof root is) pointed every path at ADD_train_dev/<file>,
    which is not there: the audio is in ADD_train_dev/{train,dev}/; found only when training loaded it."""
    corpus = tmp_path / "ADD_train_dev"
    train = _write(corpus / "label" / "train_label.txt", "ADD_T_00000000.wav genuine\nADD_T_00000001 fake\n")
    dev = _write(corpus / "label" / "dev_label.txt", "ADD_D_00000000.wav fake\n")
    for name in ("train/ADD_T_00000000.wav", "train/ADD_T_00000001.wav", "dev/ADD_D_00000000.wav"):
        _write(corpus / name)
    got = read_protocol(train, root=corpus).df
    assert got["path"].tolist() == [
        str(corpus / "train" / "ADD_T_00000000.wav"),
        str(corpus / "train" / "ADD_T_00000001.wav"),
    ]
    assert got["source"].tolist() == ["add2022/train"] * 2
    assert read_protocol(dev, root=corpus).df["path"].tolist() == [str(corpus / "dev" / "ADD_D_00000000.wav")]
    # the audio folder itself as root: kept as given
    assert read_protocol(dev, root=corpus / "dev").df["path"].tolist() == [str(corpus / "dev" / "ADD_D_00000000.wav")]


def test_add2022_root_holding_the_files_is_kept_even_with_a_part_folder(tmp_path):
    """A root that holds the listed files is the audio folder, even when it also holds a folder named like the part."""
    labels = _write(tmp_path / "label" / "train_label.txt", "ADD_T_00000000.wav genuine\n")
    audio = tmp_path / "audio"
    _write(audio / "ADD_T_00000000.wav")
    _write(audio / "train" / "ADD_T_00000000.wav")
    assert read_protocol(labels, root=audio).df["path"].tolist() == [str(audio / "ADD_T_00000000.wav")]
    # an empty root (audio elsewhere, not yet there): kept as given
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    assert read_protocol(labels, root=empty).df["path"].tolist() == [str(empty / "ADD_T_00000000.wav")]
