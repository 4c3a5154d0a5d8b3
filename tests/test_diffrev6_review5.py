"""Review of the late training-data and text changes: UTF-16 protocol files holding a no-break space, an
ideographic space or a right-to-left mark were refused as "not UTF-8"; the file keys of a 200k-row protocol cost an
``os.path.abspath`` (a working-directory query) per row."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sddkit.data.protocols import read_protocol
from sddkit.data.table import UtteranceTable
from sddkit.data.text import is_utf16_text
from sddkit.training import data as training_data
from sddkit.training.crossval import _with_val_files


@pytest.mark.parametrize("odd", ["\u00a0", "\u3000", "\u200f", "\u200d"])
def test_a_utf16_protocol_with_spaces_and_marks_of_real_text_reads(tmp_path: Path, odd: str):
    for name in ("a.wav", "b.wav"):
        (tmp_path / name).write_bytes(b"\0")
    text = f"path\tlabel\tspeaker\na.wav\tbonafide\tTanaka{odd}Taro\nb.wav\tspoof\tx\n"
    (tmp_path / "u16.txt").write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    table = read_protocol(tmp_path / "u16.txt")
    assert table.column("label").tolist() == ["bonafide", "spoof"]
    assert table.column("speaker").tolist() == [f"Tanaka{odd}Taro", "x"]


def test_binary_data_behind_a_utf16_bom_is_still_not_text():
    rng = np.random.default_rng(0)
    for _ in range(20):
        head = b"\xff\xfe" + rng.integers(0, 256, 4094, dtype=np.uint8).tobytes()
        assert not is_utf16_text(head)
    assert is_utf16_text(b"\xff\xfe" + "a\u00a0b\u3000c\u200f\r\n".encode("utf-16-le"))


def _table(paths: list[str], prefix: str = "u") -> UtteranceTable:
    df = pd.DataFrame({"utt_id": [f"{prefix}{i}" for i in range(len(paths))], "path": paths, "label": "spoof"})
    return UtteranceTable(df, validate=False)


EDGE_PATHS = [
    "a.wav", "/x.wav", "//h/x.wav", "/a/../b/./c.wav", "a//b/c.wav", "./a.wav", "../a.wav", "a/", "a/.", "a/..",
    "", "/", "a.b.c/d.e.wav", "a/b/../../../c.wav", "/..", "///a/b.wav",
]  # fmt: skip


def test_file_keys_equal_file_key_of_each_row():
    assert training_data.file_keys(_table(EDGE_PATHS)) == [training_data.file_key(p) for p in EDGE_PATHS]


def test_file_keys_make_each_folder_absolute_once(monkeypatch):
    paths = [f"flac_T/T_{i:07d}.flac" for i in range(2000)] + [f"/data/flac_D/D_{i:07d}.flac" for i in range(2000)]
    calls = []
    abspath = os.path.abspath
    monkeypatch.setattr(os.path, "abspath", lambda p: calls.append(p) or abspath(p))
    keys = training_data.file_keys(_table(paths))
    assert len(calls) <= 2
    assert (
        keys[0] == os.path.join(os.getcwd(), "flac_T", "T_0000000.flac") and keys[-1] == "/data/flac_D/D_0001999.flac"
    )
    # cv's union of train and val files keys them the same way
    both = _with_val_files(_table(paths[:3000]), _table(paths[1000:], "v"))
    assert len(both) == len(paths) and len(calls) <= 8


def test_a_utf16_protocol_broken_past_its_head_is_said_not_utf16(tmp_path: Path):
    for i in range(300):
        (tmp_path / f"a{i:03d}.wav").write_bytes(b"\0")
    rows = "".join(f"a{i:03d}.wav\tbonafide\n" for i in range(300))  # > 4 KB of good UTF-16 before the bad unit
    text = "path\tlabel\n" + rows + "a\ud800.wav\tspoof\n"
    (tmp_path / "u16.txt").write_bytes(b"\xff\xfe" + text.encode("utf-16-le", "surrogatepass"))
    with pytest.raises(Exception, match="not a UTF-16 text file after its BOM"):
        read_protocol(tmp_path / "u16.txt", "labels_csv")
    (tmp_path / "u8.csv").write_bytes(b"path,label\n\xff\xfeabc.wav,spoof\n")
    with pytest.raises(Exception, match="not a UTF-8 text file"):
        read_protocol(tmp_path / "u8.csv", "labels_csv")
