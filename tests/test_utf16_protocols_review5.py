"""Protocol files saved as UTF-16 with a BOM (Excel's "Unicode Text" export: tab separated; PowerShell's ``>``) are
read like their UTF-8 form; score files and manifests already were, protocols were refused as "not UTF-8"."""

from __future__ import annotations

from pathlib import Path

import pytest

from sddkit.data.protocols import read_protocol


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_labels_file_reads_as_its_utf8_form(tmp_path: Path, encoding: str):
    for name in ("a.wav", "b.wav"):
        (tmp_path / name).write_bytes(b"\0")
    text = "path\tlabel\tattack\na.wav\tbonafide\t\nb.wav\tspoof\tA01\n"
    bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[encoding]
    (tmp_path / "u16.txt").write_bytes(bom + text.encode(encoding))
    (tmp_path / "u8.txt").write_text(text, encoding="utf-8")
    # detected as labels_csv and read to the same table
    wide, narrow = read_protocol(tmp_path / "u16.txt"), read_protocol(tmp_path / "u8.txt")
    assert wide.column("label").tolist() == narrow.column("label").tolist() == ["bonafide", "spoof"]
    assert wide.column("attack").tolist() == narrow.column("attack").tolist()
    assert [Path(p).name for p in wide.column("path")] == ["a.wav", "b.wav"]


def test_bytes_that_are_not_utf8_still_make_a_protocol_unreadable(tmp_path: Path):
    (tmp_path / "bad.csv").write_bytes(b"path,label\n\xff\xfeabc.wav,spoof\n")
    with pytest.raises(Exception, match="not a UTF-8"):
        read_protocol(tmp_path / "bad.csv", "labels_csv")
