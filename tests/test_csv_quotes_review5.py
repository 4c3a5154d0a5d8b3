"""A quote left open in a headed protocol CSV swallowed the following rows into one field without a word when the
field was the last column (the field count still matched): it is now an error naming the line the quote opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from sddkit.data.protocols import read_protocol
from sddkit.errors import ProtocolError


def _audio(root: Path, *names: str) -> None:
    for name in names:
        (root / name).write_bytes(b"\0")


def test_labels_csv_with_an_unclosed_quote_in_its_last_column_names_the_line(tmp_path: Path):
    _audio(tmp_path, "a.wav", "b.wav", "c.wav")
    meta = tmp_path / "labels.csv"
    meta.write_text('path,label,attack\na.wav,spoof,"A01\nb.wav,bonafide,\nc.wav,spoof,A02\n', encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"labels.csv:2: a field runs on from this line to line 4"):
        read_protocol(meta, "labels_csv")


def test_in_the_wild_meta_with_an_unclosed_quote_in_a_speaker_names_the_line(tmp_path: Path):
    _audio(tmp_path, "0.wav", "1.wav", "2.wav")
    meta = tmp_path / "meta.csv"
    meta.write_text(
        'file,speaker,label\n0.wav,"Alec Guinness,spoof\n1.wav,Bob,bona-fide\n2.wav,Bob,spoof\n', encoding="utf-8"
    )
    with pytest.raises(ProtocolError, match=r"meta.csv:2: a field runs on"):
        read_protocol(tmp_path, "in_the_wild")


def test_closed_quotes_still_read(tmp_path: Path):
    _audio(tmp_path, "a,b.wav", "c.wav")
    meta = tmp_path / "labels.csv"
    meta.write_text('path,label,attack\n"a,b.wav",spoof,"A01"\nc.wav,bonafide,\n', encoding="utf-8")
    table = read_protocol(meta, "labels_csv")
    assert sorted(Path(p).name for p in table.column("path")) == ["a,b.wav", "c.wav"]
