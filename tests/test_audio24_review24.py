"""Review 24 of audio input and protocol readers: an utterance table's relative paths name the same files for every
command (the table's folder where the file is there, as ``sdd score`` reads it), and VCTK's ``mic`` option is not
silently ignored on the 0.80 release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sddkit.data.protocols import read_protocol
from sddkit.errors import ProtocolError
from sddkit.scoring.batch import expand_inputs
from sddkit.training.data import unusable_audio

SR = 16000


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(SR // 4)).astype(np.float32), SR)
    return path


def _table(path: Path, paths: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"u{i},{p},{'bonafide' if i % 2 else 'spoof'}" for i, p in enumerate(paths)]
    path.write_text("utt_id,path,label\n" + "\n".join(rows) + "\n")
    return path


def test_table_paths_beside_the_table_are_found_from_another_folder(tmp_path, monkeypatch):
    # data/table.csv lists sub/a.wav (beside it): sdd score found the files, while sdd train, calibrate and
    # robustness (read_protocol) looked for sub/a.wav under the working directory and refused every one
    for name in ("a", "b"):
        _wav(tmp_path / "data" / "sub" / f"{name}.wav")
    table_path = _table(tmp_path / "data" / "table.csv", ["sub/a.wav", "sub/b.wav"])
    monkeypatch.chdir(tmp_path)
    table = read_protocol("data/table.csv")
    paths = [str(p) for p in table.column("path")]
    assert [unusable_audio(p) for p in paths] == [None, None]
    assert paths == [str(Path("data") / "sub" / "a.wav"), str(Path("data") / "sub" / "b.wav")]
    # the same files sdd score lists from the same table read as a manifest
    scored = expand_inputs([str(table_path.relative_to(tmp_path))])
    assert [Path(p).resolve() for p in scored] == [Path(p).resolve() for p in paths]
    assert list(table.column("utt_id")) == ["u0", "u1"]  # the ids are the table's


def test_table_paths_relative_to_the_working_directory_still_read(tmp_path, monkeypatch):
    # a table saved with the paths a reader gave (relative to the folder it ran in) keeps them
    _wav(tmp_path / "data" / "sub" / "a.wav")
    _table(tmp_path / "runs" / "table.csv", ["data/sub/a.wav", "data/sub/missing.wav"])
    monkeypatch.chdir(tmp_path)
    table = read_protocol("runs/table.csv")
    assert list(table.column("path")) == ["data/sub/a.wav", "data/sub/missing.wav"]  # a missing one as written


def test_table_root_option_still_joins(tmp_path):
    _wav(tmp_path / "audio" / "a.wav")
    table_path = _table(tmp_path / "t" / "table.csv", ["a.wav", str(tmp_path / "abs.wav")])
    table = read_protocol(table_path, root=str(tmp_path / "audio"))
    assert list(table.column("path")) == [str(tmp_path / "audio" / "a.wav"), str(tmp_path / "abs.wav")]


def test_vctk_080_refuses_a_mic_choice_it_cannot_make(tmp_path):
    # VCTK 0.80 (wav48/) has one recording per utterance: mic=mic2 read all of them as if it had chosen mic2
    _wav(tmp_path / "VCTK" / "wav48" / "p225" / "p225_001.wav")
    assert len(read_protocol(tmp_path / "VCTK", format="vctk")) == 1
    for mic in ("mic2", "both"):
        with pytest.raises(ProtocolError, match=r"0\.80 release \(wav48/\).*mic1/mic2 choice is the 0\.92"):
            read_protocol(tmp_path / "VCTK", format="vctk", mic=mic)
