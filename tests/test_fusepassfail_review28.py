"""Review fusepassfail: ``sdd fuse`` of score files holding ``sdd score`` error rows.

A file a system could not score has no fused score. The fused file used to hold no row for it, so ``sdd eval`` of
the fused file counted it among the protocol files no system was given (``n_unmatched_protocol``), not as one that
could not be scored (``n_failed_scores``, with a warning): the fused file now carries an error row for it, as
``sdd score`` writes one, naming the system that failed and its message.
"""

from __future__ import annotations

import csv
import json

import pytest
from test_fuseapply22_review22 import _corpus

from sddkit.cli.main import main
from sddkit.evaluation.scores import read_scores

MESSAGE = "AudioError: cannot decode the file (truncated header)"


def _with_error_row(a_csv, failed: str) -> None:
    """Make ``a_csv`` (an sdd score CSV of paths ``../clips/...``) hold an error row for ``failed``: an ``error``
    column, the file's score empty and the message there."""
    lines = a_csv.read_text().splitlines()
    out = [lines[0] + ",error"]
    for line in lines[1:]:
        path = line.split(",")[0]
        out.append(f"{path},,{MESSAGE}" if path == f"../{failed}" else line + ",")
    a_csv.write_text("\n".join(out) + "\n")


def _evaluated(tmp_path, protocol, fused, name: str) -> dict:
    out = tmp_path / name
    assert (
        main(["eval", "--scores", str(fused), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]) == 0
    )
    return json.loads((out / "report.json").read_text())


def _fit(tmp_path, capsys, suffix: str = ".csv"):
    protocol, a, b, test = _corpus(tmp_path)
    failed = next(iter(test))  # a test file system a could not score
    _with_error_row(a, failed)
    out = tmp_path / "fit" / f"fused{suffix}"
    assert main(["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    return protocol, a, b, test, failed, out, captured


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_file_a_system_could_not_score_is_an_error_row_of_the_fused_file_and_sdd_eval_counts_it_failed(
    tmp_path, capsys, suffix
):
    protocol, a, b, test, failed, out, captured = _fit(tmp_path, capsys, suffix)
    assert "1 error row(s)" in captured.err
    fused = read_scores(out)
    assert len(fused) == 39  # every other file fused
    assert fused.failed == (str(tmp_path / failed),)
    assert fused.failed_errors == (f"not fused: could not be scored by system 'a' ({a}): {MESSAGE}",)
    # the record is the one of the fit on the fused files alone
    record = json.loads(out.with_name(out.name + ".fusion.json").read_text())
    assert (record["n_fused"], record["n_missing"]) == (39, 1)
    report = _evaluated(tmp_path, protocol, out, "eval")
    assert report["inputs"]["fusion"] is not None  # still read as the fit's output (n_fused rows scored)
    match = report["matching"]
    assert (match["n_failed_scores"], match["n_unmatched_protocol"], match["n_matched"]) == (1, 0, 39)
    assert any("could not be scored" in w and failed.rsplit("/", 1)[-1] in w for w in report["warnings"])


def test_the_fused_scores_and_the_record_are_those_of_a_fusion_without_the_failed_file(tmp_path, capsys):
    protocol, a, b, test, failed, out, _ = _fit(tmp_path, capsys)
    # the same fit with the failed file left out of both systems: no error row, and the same scores and record
    other = tmp_path / "other"
    other.mkdir()
    protocol2, a2, b2, _ = _corpus(other)
    keep = [line for line in a2.read_text().splitlines() if not line.startswith(f"../{failed},")]
    a2.write_text("\n".join(keep) + "\n")
    out2 = other / "fused.csv"
    assert main(["fuse", "--protocol", str(protocol2), "--scores", str(a2), str(b2), "--out", str(out2)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out2, newline="") as f:
        rows2 = list(csv.DictReader(f))
    assert [r["score"] for r in rows[:-1]] == [r["score"] for r in rows2]
    assert rows[-1]["path"] == str(tmp_path / failed) and rows[-1]["score"] == "" and rows[-1]["decision"] == ""
    assert {r["error"] for r in rows[:-1]} == {""}
    record = json.loads((out.parent / "fused.csv.fusion.json").read_text())
    record2 = json.loads((other / "fused.csv.fusion.json").read_text())
    for r in (record, record2):
        for s in r["systems"]:
            s.pop("file")
    assert record == record2 | {"n_missing": 1}


@pytest.mark.parametrize("with_protocol", [True, False])
def test_applied_the_fused_file_carries_the_error_rows_too(tmp_path, capsys, monkeypatch, with_protocol):
    protocol, a, b, test, failed, fitted, _ = _fit(tmp_path, capsys)
    record = fitted.with_name(fitted.name + ".fusion.json")
    out = tmp_path / "applied" / "fused.jsonl"
    monkeypatch.chdir(tmp_path)  # the protocol's relative paths, and b's absolute ones, meet from here
    argv = ["fuse", "--apply", str(record), "--scores", str(a), str(b), "--out", str(out)]
    assert main(argv + (["--protocol", str(protocol)] if with_protocol else [])) == 0
    assert "1 error row(s)" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40
    assert rows[-1]["path"] == str(tmp_path / failed) and rows[-1]["score"] is None
    assert rows[-1]["error"].endswith(MESSAGE)
    assert all(r["error"] == "" for r in rows[:-1])
    fitted_scores = {r["path"]: r["score"] for r in map(json.loads, _jsonl_of(fitted))}
    assert all(fitted_scores[r["path"]] == r["score"] for r in rows[:-1])  # the fit's fused scores, exactly
    report = _evaluated(tmp_path, protocol, out, "eval")
    assert (report["matching"]["n_failed_scores"], report["matching"]["n_unmatched_protocol"]) == (1, 0)


def _jsonl_of(fused_csv) -> list[str]:
    with open(fused_csv, newline="") as f:
        return [json.dumps({"path": r["path"], "score": float(r["score"])}) for r in csv.DictReader(f) if r["score"]]
