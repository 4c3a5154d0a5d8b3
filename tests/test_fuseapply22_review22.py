"""Review fuseapply22: ``sdd fuse --apply RECORD``, a fitted fusion applied later to new score files.

A practitioner fits the fusion on labelled val trials, then scores recordings no protocol lists: ``--apply`` reads
the fit's ``OUT.fusion.json`` and fuses the new files with its weights and bias, joined by path (or with
``--protocol`` as the fit joins them), writing the rows and a record of the same form. Nothing is fitted, so the
fit's options are refused; the weights belong to the recorded systems in their order, so other names or another
count of score files are refused.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from cli_support import one_line_error

from sddkit.cli.main import main
from sddkit.evaluation.fusion import Fusion


def _corpus(tmp_path, n: int = 10):
    """A labelled protocol (val and test), and the two systems' scores of its files: a as an sdd score CSV written
    from ``run/`` (paths relative to it, its run record's cwd), b as a JSONL of absolute paths. Returns the
    protocol, the two files, and each test file's scores (path -> (a, b))."""
    rng = np.random.default_rng(3)
    proto, a, b, test = ["path,label,partition"], ["path,score"], [], {}
    for partition in ("val", "test"):
        for label in ("bonafide", "spoof"):
            for i in range(n):
                path = f"clips/{label}/{partition}_{i:02d}.wav"
                proto.append(f"{path},{label},{partition}")
                y = float(label == "bonafide")
                sa, sb = round(y + rng.normal(), 6), round(2 * y + 2 * rng.normal() - 1, 6)
                a.append(f"../{path},{sa}")
                b.append(json.dumps({"path": str(tmp_path / path), "score": sb}))
                if partition == "test":
                    test[path] = (sa, sb)
    (tmp_path / "run").mkdir()
    (tmp_path / "protocol.csv").write_text("\n".join(proto) + "\n")
    (tmp_path / "run" / "a.csv").write_text("\n".join(a) + "\n")
    (tmp_path / "run" / "a.csv.run.json").write_text(json.dumps({"cwd": str(tmp_path / "run")}))
    (tmp_path / "b.jsonl").write_text("\n".join(b) + "\n")
    return tmp_path / "protocol.csv", tmp_path / "run" / "a.csv", tmp_path / "b.jsonl", test


def _fit(tmp_path, capsys):
    protocol, a, b, test = _corpus(tmp_path)
    out = tmp_path / "fit" / "fused.csv"
    assert main(["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--out", str(out)]) == 0
    capsys.readouterr()
    return out, test


def _rows(path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def _new_files(tmp_path, test: dict[str, tuple[float, float]]):
    """The test files' scores as new, unlabelled score files: a's written by an sdd score run in ``new/run2/``
    (paths relative to it, as its run record says), b's with paths relative to ``tmp_path`` and no run record
    (read from the current folder); one file left out of b."""
    run2 = tmp_path / "new" / "run2"
    run2.mkdir(parents=True)
    paths = list(test)
    (run2 / "a.csv").write_text("path,score\n" + "".join(f"../../{p},{test[p][0]!r}\n" for p in paths))
    (run2 / "a.csv.run.json").write_text(json.dumps({"cwd": str(run2)}))
    (tmp_path / "new" / "b.csv").write_text("path,score\n" + "".join(f"{p},{test[p][1]!r}\n" for p in paths[1:]))
    return run2 / "a.csv", tmp_path / "new" / "b.csv", paths[0]


def test_applied_to_new_files_by_path_the_fused_scores_are_the_fits_and_weights_dot_scores_plus_bias(
    tmp_path, monkeypatch, capsys
):
    fitted, test = _fit(tmp_path, capsys)
    record = json.loads((tmp_path / "fit" / "fused.csv.fusion.json").read_text())
    a, b, left_out = _new_files(tmp_path, test)
    # b's relative paths are read from the current folder; a's from the folder its run record names, not this one
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "applied" / "new.csv"
    argv = ["fuse", "--apply", "fit/fused.csv.fusion.json", "--scores", str(a), "new/b.csv", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == "fused 2 systems on 19 files with the fusion of fit/fused.csv.fusion.json\n"
    assert "1 file(s) scored by some of the 2 systems but not by all are not fused" in captured.err
    assert str(tmp_path / left_out) in captured.err
    rows = _rows(out)
    # every path absolute (a's joined with its recorded folder), the file b lacks not fused
    assert sorted(rows) == sorted(str(tmp_path / p) for p in test if p != left_out)
    weights = [s["weight"] for s in record["systems"]]
    fit_rows = _rows(fitted)
    for path, row in rows.items():
        sa, sb = test[os.path.relpath(path, tmp_path)]
        assert (float(row["score_a"]), float(row["score_b"])) == (sa, sb)
        # exactly: the same sum, in the same order
        assert float(row["score"]) == weights[0] * sa + weights[1] * sb + record["bias"]
        # and the fitting mode's row for this file, to the last bit
        assert row == fit_rows[path]
    new_record = json.loads((tmp_path / "applied" / "new.csv.fusion.json").read_text())
    assert set(record) <= set(new_record)  # the keys of the fitting mode's record kept
    changed = {k for k in record if new_record[k] != record[k]}
    assert changed == {"n_fused", "n_missing"}
    assert (new_record["n_fused"], new_record["n_missing"]) == (19, 1)
    assert new_record["applied_from"] == "fit/fused.csv.fusion.json"
    assert new_record["applied_files"] == [str(a), "new/b.csv"] and new_record["applied_column"] == "score"
    # from another folder, b's scores as paths relative to it: a's are still read from its recorded folder
    monkeypatch.chdir(tmp_path / "new")
    here = [line.split(",") for line in (tmp_path / "new" / "b.csv").read_text().splitlines()[1:]]
    (tmp_path / "new" / "b_here.csv").write_text("path,score\n" + "".join(f"../{p},{s}\n" for p, s in here))
    again = tmp_path / "applied" / "again.jsonl"
    argv = ["fuse", "--apply", str(tmp_path / "fit" / "fused.csv.fusion.json"), "--scores", str(a), "b_here.csv"]
    assert main([*argv, "--names", "a", "b", "--out", str(again)]) == 0
    capsys.readouterr()
    jsonl = {r["path"]: r for r in map(json.loads, again.read_text().splitlines())}
    assert jsonl.keys() == rows.keys()
    assert all(jsonl[p]["score"] == float(rows[p]["score"]) for p in rows)


def test_applied_with_the_protocol_it_gives_the_fitting_modes_rows(tmp_path, monkeypatch, capsys):
    fitted, _ = _fit(tmp_path, capsys)
    out = tmp_path / "again.csv"
    monkeypatch.chdir(tmp_path)
    argv = ["fuse", "--apply", "fit/fused.csv.fusion.json", "--protocol", "protocol.csv"]
    assert main([*argv, "--scores", "run/a.csv", "b.jsonl", "--out", str(out)]) == 0
    capsys.readouterr()
    assert out.read_text() == fitted.read_text()


def test_one_file_fused_with_a_recorded_fusion_is_that_file_fused_among_many():
    """Fusion.apply sums w_k * s_k in order: a BLAS product's rounding of a row depends on the rows beside it."""
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(1001, 3)) * [1.0, 1e3, 1e-3]
    fusion = Fusion(names=("a", "b", "c"), weights=(0.3, -1.7e-3, 41.0), bias=0.123, prior=0.5, n_bonafide=1, n_spoof=1)
    together = fusion.apply(scores)
    for i in range(0, 1001, 7):
        alone = fusion.apply(scores[i : i + 1])[0]
        s = scores[i].tolist()
        assert alone == together[i] == 0.3 * s[0] + -1.7e-3 * s[1] + 41.0 * s[2] + 0.123


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--names", "a", "c"],
            "--names a c are not the systems of --apply {rec} (a b): its weights belong to those, in that order",
        ),
        (["--fit-partitions", "val"], "--fit-partitions cannot go with --apply: the recorded fusion is applied"),
        (["--prior", "0.3"], "--prior cannot go with --apply"),
    ],
)
def test_names_other_than_the_records_and_fit_options_are_refused(tmp_path, capsys, extra, message):
    _, test = _fit(tmp_path, capsys)
    a, b, _ = _new_files(tmp_path, test)
    rec = tmp_path / "fit" / "fused.csv.fusion.json"
    out = tmp_path / "new.csv"
    assert main(["fuse", "--apply", str(rec), "--scores", str(a), str(b), *extra, "--out", str(out)]) == 2
    assert message.format(rec=rec) in one_line_error(capsys, "fuse")
    assert not out.exists()


def test_another_count_of_score_files_is_refused_naming_both(tmp_path, capsys):
    _, test = _fit(tmp_path, capsys)
    a, b, _ = _new_files(tmp_path, test)
    rec = tmp_path / "fit" / "fused.csv.fusion.json"
    assert main(["fuse", "--apply", str(rec), "--scores", str(a), "--out", str(tmp_path / "n.csv")]) == 2
    err = one_line_error(capsys, "fuse")
    assert f"--scores gives 1 score file(s) for the 2 systems of --apply {rec} (a, b)" in err
    assert main(["fuse", "--apply", str(rec), "--scores", str(a), str(b), str(a), "--out", "n.csv"]) == 2
    assert "--scores gives 3 score file(s) for the 2 systems" in one_line_error(capsys, "fuse")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"cwd": "/tmp", "command": "score"}',
            "not a fusion record of sdd fuse: it has no systems, bias, prior, column",
        ),
        ("[1, 2]", "not a fusion record (a JSON list, not an object)"),
        ("weights: 1", "not JSON (Expecting value)"),
        (
            '{"systems": [{"name": "a", "weight": 1}, {"name": "b"}], "bias": 0, "prior": 0.5, "column": "score"}',
            "systems[1] has no weight",
        ),
    ],
)
def test_a_file_that_is_not_a_fusion_record_is_refused_naming_what_is_missing(tmp_path, capsys, content, message):
    _, test = _fit(tmp_path, capsys)
    a, b, _ = _new_files(tmp_path, test)
    rec = tmp_path / "not.json"
    rec.write_text(content)
    out = tmp_path / "new.csv"
    assert main(["fuse", "--apply", str(rec), "--scores", str(a), str(b), "--out", str(out)]) == 2
    assert f"--apply {rec}: {message}" in one_line_error(capsys, "fuse")
    assert not out.exists()


def test_score_files_of_utt_ids_need_the_protocol(tmp_path, capsys):
    _, test = _fit(tmp_path, capsys)
    ids = tmp_path / "ids.txt"  # UTT SCORE lines: no paths
    ids.write_text("".join(f"{p.split('/')[1]}_{os.path.basename(p)[:-4]} {s[0]}\n" for p, s in test.items()))
    rec = tmp_path / "fit" / "fused.csv.fusion.json"
    out = tmp_path / "new.csv"
    assert main(["fuse", "--apply", str(rec), "--scores", str(ids), str(ids), "--out", str(out)]) == 2
    err = one_line_error(capsys, "fuse")
    assert f"--scores {ids}: its ids are not paths (e.g. 'bonafide_test_00')" in err
    assert "give --protocol P, the protocol that lists them" in err
    assert not out.exists()


def test_fitting_still_needs_the_protocol(tmp_path, capsys):
    _, a, b, _ = _corpus(tmp_path)
    out = tmp_path / "f.csv"
    assert main(["fuse", "--scores", str(a), str(b), "--out", str(out)]) == 2
    assert "--protocol is required to fit a fusion" in one_line_error(capsys, "fuse")
    assert not out.exists()
