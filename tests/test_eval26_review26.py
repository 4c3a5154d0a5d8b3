"""Review eval26: evaluating score files (``sdd eval``, ``sdd compare``, ``sdd fuse``) as a researcher does.

- ``sdd eval --partitions train`` (or ``sdd compare``) of a score file of val and test files said that none of its
  score ids matched the protocol "by utt_id, path or file stem", listing protocol paths unlike the scores': a join
  failure, where the file's scores are all of the protocol's trials the selection left out;
- ``sdd compare`` warned that an ``sdd fuse`` output's figures were fit figures whenever the protocol held the
  fusion's fit partition, also when the trials compared (those every file scores) held none of it: a baseline
  scored on the test files only;
- ``report.json``'s keys (the pooled EER's interval ``pooled.eer_ci`` among them) were not in docs/cli.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import test_fuse22_review22 as fuse_support

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError
from sddkit.evaluation.compare import compare_scores
from sddkit.evaluation.scores import match_scores, read_scores

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _partition_files(tmp_path):
    """fuse_support's protocol (val, test, dev_spoof) and system a's scores, with a copy of a's test rows alone."""
    protocol, a, b = fuse_support._files(tmp_path)
    table = pd.read_csv(protocol)
    scores = pd.read_csv(a)
    test_paths = set(table.loc[table["partition"] == "test", "path"])
    a_test = tmp_path / "a_test.csv"
    scores[scores["path"].isin(test_paths)].to_csv(a_test, index=False)
    return protocol, a, b, a_test


# --- a selection that holds none of the scored files -------------------------------------------------------------


def test_a_selection_holding_none_of_the_scored_files_says_so_not_that_nothing_matched(tmp_path, capsys):
    protocol, _, _, a_test = _partition_files(tmp_path)
    argv = ["eval", "--scores", str(a_test), "--protocol", str(protocol), "--bootstrap", "0"]
    assert main([*argv, "--partitions", "val", "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "none of its 40 scores is of the protocol's 60 utterances inside the selected partitions" in err, err
    assert "40 of them are of its utterances outside it (partitions test: e.g. --partitions test)" in err, err
    assert "by utt_id, path or file stem" not in err
    assert not (tmp_path / "ev").exists()

    # sdd compare joins the same way, and says the same of the file that scores none of the selection
    compare = ["compare", "--protocol", str(protocol), "--baseline", str(a_test), "--system", str(a_test)]
    assert main([*compare, "--partitions", "val", "dev_spoof", "--bootstrap", "50"]) == 2
    assert "(partitions test: e.g. --partitions test)" in capsys.readouterr().err


def test_scores_of_no_protocol_row_keep_the_join_failure_and_a_reader_selection_names_no_partitions(tmp_path):
    protocol, _, _, a_test = _partition_files(tmp_path)
    table = UtteranceTable.from_records(
        [{"utt_id": f"u{i}", "label": "bonafide" if i % 2 else "spoof", "partition": "val"} for i in range(4)]
    )
    rest = UtteranceTable.from_records(
        [{"utt_id": f"w{i}", "label": "bonafide" if i % 2 else "spoof", "partition": "test"} for i in range(4)]
    )
    (tmp_path / "s.txt").write_text("w0 0.1\nw1 0.9\nw2 0.2\n")
    scores = read_scores(tmp_path / "s.txt")
    with pytest.raises(ProtocolError, match=r"partitions test: e\.g\. --partitions test") as info:
        match_scores(table, scores, outside=rest)
    assert "3 of them are of its utterances outside it" in str(info.value)
    # left out by a reader's option, not by partitions: no --partitions to suggest
    selection = "the selection --protocol-option codecs=[C01]"
    with pytest.raises(ProtocolError, match=r"inside the selection --protocol-option codecs=\[C01\]: 3 of") as info:
        match_scores(table, scores, outside=rest, selection=selection)
    assert "--partitions" not in str(info.value)
    # scores of no row of the protocol at all: the join failure, as before
    (tmp_path / "z.txt").write_text("z0 0.1\nz1 0.9\n")
    with pytest.raises(ProtocolError, match="none of its 2 score ids matches the protocol's 4 utterances"):
        match_scores(table, read_scores(tmp_path / "z.txt"), outside=rest)


# --- sdd compare of a fused file: the fit partitions of the trials compared ------------------------------------


def test_compare_warns_of_fit_trials_only_when_the_compared_trials_hold_them(tmp_path, capsys):
    protocol, a, b, a_test = _partition_files(tmp_path)
    fused = tmp_path / "fused.csv"
    fuse = ["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--column", "score", "raw_score"]
    assert main([*fuse, "--names", "a", "b", "--out", str(fused)]) == 0
    capsys.readouterr()

    # a baseline scored on the test files only: every compared trial is a test trial, none a fit (val) one
    compare = ["compare", "--protocol", str(protocol), "--system", str(fused), "--bootstrap", "50"]
    assert main([*compare, "--baseline", str(a_test)]) == 0
    out, err = capsys.readouterr()
    assert "on 40 trials" in out
    assert "fit figures" not in err, err
    # a baseline of every file: the val trials are compared, and the warning stands
    assert main([*compare, "--baseline", str(a)]) == 0
    assert f"sdd compare: warning: {fused}: these are sdd fuse scores" in capsys.readouterr().err

    table = UtteranceTable.from_records(
        [
            {"utt_id": f"u{i}", "label": "bonafide" if i % 2 else "spoof", "partition": ("val", "test")[i // 4]}
            for i in range(8)
        ]
    )
    (tmp_path / "x.txt").write_text("".join(f"u{i} {i % 2 + 0.1 * i}\n" for i in range(4, 8)))
    (tmp_path / "y.txt").write_text("".join(f"u{i} {0.3 * i}\n" for i in range(8)))
    comparison = compare_scores(
        table, [read_scores(tmp_path / "x.txt")], [read_scores(tmp_path / "y.txt")], n_bootstrap=40
    )
    assert comparison.partitions == ("test",)
    assert comparison.n_trials == 4


# --- report.json's keys, documented -----------------------------------------------------------------------------


def _report(tmp_path) -> dict:
    """report.json of sdd eval on a protocol of three partitions, with a bootstrap interval."""
    protocol, a, _, _ = _partition_files(tmp_path)
    argv = ["eval", "--scores", str(a), "--protocol", str(protocol), "--bootstrap", "50", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    return json.loads((tmp_path / "r" / "report.json").read_text())


def test_every_key_of_report_json_is_in_the_docs(tmp_path):
    report = _report(tmp_path)
    assert report["pooled"]["eer_ci"] is not None and report["matching"] is not None
    row_keys = [k for k in report["per_source"][0] if k != "source"]
    docs = DOCS.read_text(encoding="utf-8")
    missing = [k for k in report if f"`{k}`" not in docs]
    missing += [f"pooled.{k}" for k in report["pooled"] if f"`{k}`" not in docs and f"`pooled.{k}`" not in docs]
    missing += [f"at_threshold.{k}" for k in report["pooled"]["at_threshold"] if f"`{k}`" not in docs]
    missing += [f"mean_over_sources.{k}" for k in report["mean_over_sources"] if f"`{k}`" not in docs]
    missing += [f"per_source[].{k}" for k in row_keys if f"`{k}`" not in docs]
    missing += [f"matching.{k}" for k in report["matching"] if f"`{k}`" not in docs]
    missing += [f"inputs.{k}" for k in report["inputs"] if f"`{k}`" not in docs]
    missing += [f"config.{k}" for k in report["config"] if f"`{k}`" not in docs]
    assert missing == [], missing
