"""Review evalby (session 46): ``sdd eval --by COLUMN`` and ``evaluate(..., by=[...])``.

Researchers break results down by protocol columns other than attack/source/codec: In-the-Wild per speaker, MLAAD per
language, ASVspoof 5 per codec condition. ``sdd compare`` had ``--by COLUMN``; ``sdd eval`` had only its fixed tables.
Now ``--by`` (repeatable) adds ``per_column.COLUMN`` to report.json and a section to report.md, each row computed by
the fixed tables' own code (so ``--by source`` gives per_source's rows), and an unknown column is refused in one line
that lists the protocol's columns, before the scores are read.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation.report import EvalConfig, evaluate

# alice: bona fide 3, 1, 0.5 and spoof 2, -1, -2 -> at threshold 1 one bona fide of 3 is rejected (0.5) and one
# spoof of 3 accepted (2): miss = fa = 1/3, the EER 33.33 %; bob holds one bona fide, carol one spoof (one class)
ROWS = [
    ("a1", "bonafide", "alice", "s1", 3.0),
    ("a2", "bonafide", "alice", "s1", 1.0),
    ("a3", "bonafide", "alice", "s2", 0.5),
    ("a4", "spoof", "alice", "s1", 2.0),
    ("a5", "spoof", "alice", "s2", -1.0),
    ("a6", "spoof", "alice", "s2", -2.0),
    ("b1", "bonafide", "bob", "s1", -3.0),
    ("c1", "spoof", "carol", "s2", 5.0),
]
NO_CI = EvalConfig(bootstrap=0)


def _table() -> UtteranceTable:
    frame = pd.DataFrame(
        {
            "utt_id": [r[0] for r in ROWS],
            "path": [f"{r[0]}.wav" for r in ROWS],
            "label": [r[1] for r in ROWS],
            "speaker": [r[2] for r in ROWS],
            "source": [r[3] for r in ROWS],
            "attack": ["bonafide" if r[1] == "bonafide" else f"A{i % 2}" for i, r in enumerate(ROWS)],
        }
    )
    return UtteranceTable(frame)


def _scores() -> np.ndarray:
    return np.array([r[4] for r in ROWS])


def _files(tmp_path):
    """An utterance-table protocol (its `speaker` column kept) and its path,score file."""
    protocol, scores = tmp_path / "table.csv", tmp_path / "scores.csv"
    _table().df.to_csv(protocol, index=False)
    pd.DataFrame({"path": [f"{r[0]}.wav" for r in ROWS], "score": _scores()}).to_csv(scores, index=False)
    return protocol, scores


def test_per_speaker_eer_is_the_hand_computed_one_and_one_class_groups_are_null():
    report = evaluate(_table(), _scores(), NO_CI, by=["speaker"])
    rows = {r["speaker"]: r for r in report.per_column["speaker"]}
    assert list(rows) == ["alice", "bob", "carol"]
    alice = rows["alice"]
    assert (alice["n"], alice["n_bonafide"], alice["n_spoof"]) == (6, 3, 3)
    assert alice["eer"] == pytest.approx(100 / 3)
    assert alice["threshold"] == pytest.approx(1.0)
    assert alice["note"] == ""
    for name in ("bob", "carol"):
        assert rows[name]["eer"] is None and rows[name]["min_dcf"] is None
        assert rows[name]["note"] == "needs both bona fide and spoof trials"
    # a single column name is that column, not its letters
    assert list(evaluate(_table(), _scores(), NO_CI, by="speaker").per_column) == ["speaker"]


def test_by_an_already_tabulated_column_gives_its_fixed_table():
    report = evaluate(_table(), _scores(), NO_CI, by=["source", "attack", "corpus"])
    assert report.per_column["source"] == report.per_source
    assert report.per_column["attack"] == report.per_attack  # each attack's spoofs vs the bona fide, not alone
    assert report.per_column["corpus"] == report.per_corpus
    assert evaluate(_table(), _scores(), NO_CI).per_column == {}


def test_unknown_column_is_refused_before_anything_is_computed():
    # the scores' shape is wrong too: the column is said first, not the shape
    with pytest.raises(ProtocolError, match=r"by='spekaer'.*did you mean 'speaker'.*columns as read: utt_id, path"):
        evaluate(_table(), _scores()[:3], NO_CI, by=["spekaer"])


def test_cli_unknown_column_is_one_line_listing_the_columns(tmp_path, capsys):
    protocol, scores = _files(tmp_path)
    out = tmp_path / "report"
    args = ["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]
    assert main([*args, "--by", "spekaer"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--by spekaer" in err and "no column 'spekaer'" in err and "utt_id, path, label" in err
    assert "Traceback" not in err
    assert not out.exists()  # refused before the report


def test_cli_writes_per_column_to_json_and_markdown(tmp_path):
    protocol, scores = _files(tmp_path)
    out = tmp_path / "report"
    args = ["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]
    assert main([*args, "--by", "speaker", "--by", "source"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["per_column"]) == ["speaker", "source"]
    assert report["per_column"]["source"] == report["per_source"]
    alice = report["per_column"]["speaker"][0]
    assert alice["speaker"] == "alice" and alice["eer"] == pytest.approx(100 / 3)
    markdown = (out / "report.md").read_text()
    assert "## Per speaker (--by speaker: the trials of each value)" in markdown
    assert "| alice | 3 | 3 | 33.333 |" in markdown
    assert "## Per source (--by source: the trials of each value)" in markdown
    # without --by the key is there, empty
    assert main(args) == 0
    assert json.loads((out / "report.json").read_text())["per_column"] == {}


def test_attack_and_partition_breakdowns_match_their_tables_across_partitions():
    frame = _table().df.assign(partition=["val", "test", "test", "val", "test", "test", "val", "test"])
    table = UtteranceTable(frame)
    report = evaluate(table, _scores(), NO_CI, by=["attack", "partition"])
    # each attack's spoofs against its own partition's bona fide, named by partition, as per_attack
    assert report.per_column["attack"] == report.per_attack
    assert {r["partition"] for r in report.per_column["attack"]} == {"val", "test"}
    assert report.per_column["partition"] == report.per_partition


def test_an_empty_column_and_a_row_key_are_refused():
    with pytest.raises(ProtocolError, match="empty 'codec' column"):
        evaluate(UtteranceTable(_table().df.assign(codec="")), _scores(), NO_CI, by=["codec"])
    # a column named like a row key would have its values overwritten by that metric
    with pytest.raises(ProtocolError, match="'note'.*key of every row"):
        evaluate(UtteranceTable(_table().df.assign(note="x")), _scores(), NO_CI, by=["note"])


def test_a_column_naming_spoofs_only_is_grouped_as_the_attack_column():
    """MLAAD's `architecture` names nothing for a bona fide trial: grouped by value, every group held spoofs only
    and each row was null (in sdd compare --by too). Such a column now groups as `attack` does: each value's spoofs
    with the bona fide trials."""
    from sddkit.evaluation.compare import compare_scores
    from sddkit.evaluation.report import render_markdown
    from sddkit.evaluation.scores import ScoreFile
    from sddkit.metrics import eer

    table = _table()
    labels = table.labels.astype(int)
    table = UtteranceTable(
        table.df.assign(architecture=["" if y else ("vits" if i % 2 else "xtts") for i, y in enumerate(labels)])
    )
    report = evaluate(table, _scores(), NO_CI, by=["architecture"])
    rows = {row["architecture"]: row for row in report.per_column["architecture"]}
    assert set(rows) == {"vits", "xtts"}
    for name, row in rows.items():
        keep = (labels == 1) | (table.column("architecture") == name)
        assert row["n_bonafide"] == int(labels.sum()) and row["eer"] == pytest.approx(
            100 * eer(labels[keep], _scores()[keep]).eer
        )
    assert "Per architecture (--by architecture: each value's spoofs vs all bona fide)" in render_markdown(report)

    ids = table.column("utt_id").astype(str)
    files = [ScoreFile(path=f"s{k}.csv", ids=ids, scores=_scores() + k, id_kind="utt_id", format="csv") for k in (0, 1)]
    compared = compare_scores(table, files[:1], files[1:], by="architecture", n_bootstrap=20)
    assert [value for value, _ in compared.groups] == ["vits", "xtts"]
