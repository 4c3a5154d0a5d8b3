"""Review 11 of the protocol readers and the utterance table."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus_support import touch

from sddkit.data.protocols import detect_format, read_protocol
from sddkit.errors import ProtocolError


def test_asvspoof_root_at_another_partitions_folder_is_an_error_not_wrong_paths(tmp_path: Path) -> None:
    """`root: .../ASVspoof2019_LA_dev` for the train protocol (a recipe's dev spec copied) resolved to that folder's
    flac/: every train path pointed into the dev audio, found only when training loaded a file."""
    la = tmp_path / "LA"
    touch(la / "ASVspoof2019_LA_dev" / "flac" / "LA_D_1000001.flac")
    touch(la / "ASVspoof2019_LA_train" / "flac" / "LA_T_1000001.flac")
    proto = tmp_path / "ASVspoof2019.LA.cm.train.trn.txt"
    proto.write_text("LA_0079 LA_T_1000001 - - bonafide\nLA_0079 LA_T_1000002 - A01 spoof\n")
    with pytest.raises(ProtocolError, match=r"train\.trn\.txt:1: .*ASVspoof2019_LA_dev.* holds dev files.*train"):
        read_protocol(proto, root=la / "ASVspoof2019_LA_dev")
    # the LA folder, or the train folder itself, still read; so does a partial copy missing the first trial
    table = read_protocol(proto, root=la)
    assert table.column("path")[0] == str(la / "ASVspoof2019_LA_train" / "flac" / "LA_T_1000001.flac")
    assert len(read_protocol(proto, root=la / "ASVspoof2019_LA_train")) == 2
    (la / "ASVspoof2019_LA_train" / "flac" / "LA_T_1000001.flac").rename(
        la / "ASVspoof2019_LA_train" / "flac" / "LA_T_1000003.flac"
    )
    assert len(read_protocol(proto, root=la)) == 2
    # without a root, a folder found next to the protocol is used as before (a score-only evaluation needs no audio)
    beside = tmp_path / "beside"
    touch(beside / "flac" / "LA_D_1000001.flac")
    (beside / "p.txt").write_text(proto.read_text())
    assert read_protocol(beside / "p.txt", format="asvspoof2019_la").column("path")[0] == str(
        beside / "flac" / "LA_T_1000001.flac"
    )

    # ASVspoof 5: the dev audio folder given as the root of the train protocol
    touch(tmp_path / "asv5" / "flac_D" / "D_0000000001.flac")
    tsv = tmp_path / "ASVspoof5.train.tsv"
    tsv.write_text("T_4850 T_0000000000 F - - - AC3 A05 spoof -\n")
    with pytest.raises(ProtocolError, match=r"flac_D holds dev files, not this protocol's train trials"):
        read_protocol(tsv, root=tmp_path / "asv5" / "flac_D")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_an_utterance_table_with_comment_lines_above_its_header_reads_as_detected(
    tmp_path: Path, encoding: str
) -> None:
    """Detection skips blank and '#' lines before a header and took this file for an utterance table; the table's
    reader took the comment for the header and said the table lacked utt_id."""
    table = tmp_path / "table.csv"
    text = "# made by hand\r\n\r\nutt_id,label,path\r\na,bonafide,a.wav\r\nb,spoof,b.wav\r\n"
    table.write_bytes(text.encode(encoding))
    assert detect_format(table) == "utterance_table"
    read = read_protocol(table)
    assert read.column("utt_id").tolist() == ["a", "b"]
    assert read.column("label").tolist() == ["bonafide", "spoof"]
    comments_only = tmp_path / "empty.csv"
    comments_only.write_text("# nothing\n")
    with pytest.raises(ProtocolError, match="cannot read utterance table"):
        read_protocol(comments_only, format="utterance_table")


@pytest.mark.parametrize("first", ["LA_0007 LA_E_1012823 bonafide target", "LA_0007 LA_E_1012824 A07 spoof"])
def test_an_asvspoof2019_asv_protocol_is_named_as_such(tmp_path: Path, first: str) -> None:
    """ASVspoof2019.LA.asv.*.trl.txt (SPEAKER UTTERANCE SYSTEM KEY) sits next to the CM protocols: detection said it
    could not tell the format, the CM reader that it expected 5 fields."""
    asv = tmp_path / "ASVspoof2019.LA.asv.eval.gi.trl.txt"
    asv.write_text(f"{first}\nLA_0007 LA_E_1012825 bonafide nontarget\n")
    with pytest.raises(ProtocolError, match=r"trl\.txt:1: an ASVspoof 2019 speaker-verification \(ASV\) protocol"):
        detect_format(asv)
    with pytest.raises(ProtocolError, match=r"trl\.txt:1: an ASVspoof 2019 speaker-verification \(ASV\) protocol"):
        read_protocol(asv, format="asvspoof2019_la")
    # a CM line short of a field is still the field-count error
    short = tmp_path / "short.txt"
    short.write_text("LA_0079 LA_T_1138215 - bonafide\n")
    with pytest.raises(ProtocolError, match=r"short\.txt:1: expected 5 fields"):
        read_protocol(short, format="asvspoof2019_la")
