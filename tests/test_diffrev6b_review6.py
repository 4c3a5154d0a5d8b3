"""Review 6 (diffrev6b): a second reading of the later review-6 changes."""

from __future__ import annotations

from pathlib import Path

from sddkit.data.protocols import read_protocol


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_add2022_part_source_does_not_depend_on_where_the_audio_is(tmp_path):
    """label/<part>_label.txt gave source add2022/<part> only when a sibling <part>/ folder existed: with the audio
    elsewhere (a root given, as the MELE recipes give one) train and dev both became 'add2022/label', one source."""
    labels = tmp_path / "ADD_train_dev" / "label"
    train = _write(labels / "train_label.txt", "ADD_T_00000000.wav genuine\n")
    dev = _write(labels / "dev_label.txt", "ADD_D_00000000.wav fake\n")
    audio = tmp_path / "elsewhere"
    audio.mkdir()
    assert read_protocol(train, root=audio).df["source"].tolist() == ["add2022/train"]
    assert read_protocol(dev, root=audio).df["source"].tolist() == ["add2022/dev"]
    # the same source as with the official layout's sibling folder present
    (tmp_path / "ADD_train_dev" / "train").mkdir()
    assert read_protocol(train, root=audio).df["source"].tolist() == ["add2022/train"]
    # no sibling folder and no root: the audio is looked for beside the label file, as before
    assert read_protocol(dev).df["path"].tolist() == [str(labels / "ADD_D_00000000.wav")]
