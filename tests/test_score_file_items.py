"""Score files read as JSON lists: messages name a row by its item."""

from __future__ import annotations

import json

import pytest

from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import read_jsonl_scores


def test_a_json_list_score_file_names_a_repeated_id_by_its_items(tmp_path):
    """The items of a JSON list share a line: its duplicate-id message said "line 3 ... (first on line 1)"."""
    path = tmp_path / "scores.json"
    rows = [{"path": "a.wav", "score": 1.0}, {"path": "b.wav", "score": 0.5}, {"path": "a.wav", "score": 2.0}]
    path.write_text(json.dumps(rows))
    with pytest.raises(ProtocolError, match=r"scores\.json: item 3: duplicate id 'a\.wav' \(first on item 1\)"):
        read_jsonl_scores(path)
    lines = tmp_path / "scores.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(ProtocolError, match=r"scores\.jsonl:3: duplicate id 'a\.wav' \(first on line 1\)"):
        read_jsonl_scores(lines)


def test_the_score_format_help_names_every_reader():
    from sddkit.cli.options import SCORE_FORMATS
    from sddkit.evaluation.scores import SCORE_READERS

    assert set(SCORE_FORMATS) == set(SCORE_READERS)


@pytest.mark.parametrize("command", ["eval", "compare", "fuse"])
def test_score_format_help_lists_the_formats(command, capsys):
    from sddkit.cli.main import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "asvspoof2019, asvspoof2021, asvspoof5, asvspoof5_keyed, csv, tsv, jsonl" in text
