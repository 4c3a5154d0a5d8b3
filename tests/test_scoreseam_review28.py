"""Score files crossing tools (review scoreseam, 28): another toolkit's score files brought to ``sdd compare``,
``sdd eval`` and ``sdd fuse``, and ``sdd score``'s output carried through them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_compare import _protocol as compare_protocol

from sddkit.cli.main import main
from sddkit.data.protocols import read_protocol
from sddkit.errors import ProtocolError
from sddkit.evaluation.compare import compare_scores
from sddkit.evaluation.scores import read_scores

N_BONA, N_SPOOF = 20, 20


def _protocol(tmp_path):
    """An ASVspoof 2019 LA protocol of N_BONA bona fide then N_SPOOF spoof trials, LA_E_1000000.."""
    return compare_protocol(tmp_path, N_BONA, N_SPOOF)


def _separated(seed: int) -> np.ndarray:
    """Scores higher for bona fide (AUC well above 0.5), rounded as a score file writes them."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(N_BONA), np.zeros(N_SPOOF)]
    return np.round(rng.normal(0, 1, N_BONA + N_SPOOF) + 2.0 * labels, 6)


def _write(tmp_path, name: str, values: np.ndarray):
    path = tmp_path / f"{name}.txt"
    path.write_text("".join(f"LA_E_{1000000 + i} {v:.6f}\n" for i, v in enumerate(values)))
    return path


def test_compare_says_when_a_side_scores_spoofness(tmp_path, capsys):
    # another tool's file (higher = spoof) against sddkit's: its EER above 50 % handed the system a verdict in
    # silence, where sdd eval of the same file warns that its scores look inverted
    protocol = _protocol(tmp_path)
    theirs = _write(tmp_path, "theirs", -_separated(0))
    ours = _write(tmp_path, "ours", _separated(1))
    table = read_protocol(protocol)
    c = compare_scores(table, [read_scores(theirs)], [read_scores(ours)], n_bootstrap=100)
    assert c.baseline.values[0] > 0.5 and c.verdict == "system better"
    inverted = [n for n in c.notes if "below 0.5" in n]
    assert len(inverted) == 1 and str(theirs) in inverted[0] and "negate" in inverted[0]

    # the CLI prints it and the JSON keeps it; a file given once per run of the other side is named once
    out = tmp_path / "compare.json"
    args = ["compare", "--protocol", str(protocol), "--bootstrap", "100", "--json", str(out)]
    assert main([*args, "--baseline", str(theirs), str(theirs), "--system", str(ours), str(ours)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "below 0.5" in line]
    assert len(printed) == 1 and printed[0].startswith(f"note: {theirs}: ROC AUC")
    assert sum("below 0.5" in n for n in json.loads(out.read_text())["notes"]) == 1


def test_compare_of_two_systems_scored_the_right_way_round_adds_no_such_note(tmp_path):
    table = read_protocol(_protocol(tmp_path))
    a, b = (read_scores(_write(tmp_path, n, _separated(s))) for n, s in (("a", 0), ("b", 1)))
    assert not any("below 0.5" in n for n in compare_scores(table, [a], [b], n_bootstrap=50).notes)


def test_a_label_column_of_numbers_does_not_block_the_evaluation(tmp_path, capsys):
    # another tool's `utt_id,label,score` with label 1/0: the whole file was refused ("key '1' is not 'bonafide' or
    # 'spoof'") over a column that only cross-checks the protocol's labels, and whose class 1 it does not say
    protocol = _protocol(tmp_path)
    values = _separated(2)
    rows = [f"LA_E_{1000000 + i},{int(i < N_BONA)},{v:.6f}" for i, v in enumerate(values)]
    csv_file = tmp_path / "theirs.csv"
    csv_file.write_text("utt_id,label,score\n" + "\n".join(rows) + "\n")
    jsonl = tmp_path / "theirs.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"utt_id": f"LA_E_{1000000 + i}", "label": 1.0 * (i >= N_BONA), "score": v}) + "\n"
            for i, v in enumerate(values)
        )
    )
    for path in (csv_file, jsonl):
        read = read_scores(path)
        assert read.keys is None and np.array_equal(read.scores, values)
        out = tmp_path / f"report_{path.suffix[1:]}"
        assert (
            main(["eval", "--scores", str(path), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"])
            == 0
        )
        report = json.loads((out / "report.json").read_text())
        assert report["pooled"]["n"] == N_BONA + N_SPOOF and report["matching"]["n_key_disagreements"] == 0
    capsys.readouterr()


def test_a_label_column_of_words_is_still_checked(tmp_path):
    # bona fide/spoof words are the file's keys; a number or a misspelt word among them is refused, as before
    good = tmp_path / "good.csv"
    good.write_text("utt_id,label,score\nu1,bonafide,1.0\nu2,fake,-1.0\n")
    assert read_scores(good).keys.tolist() == ["bonafide", "spoof"]
    for text, bad in (("u1,bonafide,1.0\nu2,0,-1.0\n", "'0'"), ("u1,1,1.0\nu2,spof,-1.0\n", "'spof'")):
        path = tmp_path / "mixed.csv"
        path.write_text("utt_id,label,score\n" + text)
        with pytest.raises(ProtocolError, match=f"mixed.csv:3: key {bad} is not 'bonafide' or 'spoof'"):
            read_scores(path)


def test_fuse_names_the_system_that_scores_none_of_the_fit_trials(tmp_path, capsys):
    # a system scored on the test files alone leaves no val trial every system scored: the refusal said "0 bona fide
    # and 0 spoof among them" and named no system, whichever of several it was
    protocol = tmp_path / "protocol.csv"
    n = N_BONA + N_SPOOF
    protocol.write_text(
        "path,label,partition\n"
        + "".join(
            f"a/u{i}.wav,{'bonafide' if i % 2 else 'spoof'},{'val' if i < n // 2 else 'test'}\n" for i in range(n)
        )
    )
    values = _separated(3)
    every = tmp_path / "every.txt"
    every.write_text("".join(f"u{i} {v:.6f}\n" for i, v in enumerate(values)))
    test_only = tmp_path / "test_only.txt"
    test_only.write_text("".join(f"u{i} {v:.6f}\n" for i, v in enumerate(values) if i >= n // 2))
    args = [
        "fuse",
        "--protocol",
        str(protocol),
        "--scores",
        str(every),
        str(test_only),
        "--out",
        str(tmp_path / "f.csv"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "0 bona fide and 0 spoof among them" in err and f"{test_only} scores none of them" in err
    assert str(every) not in err.split("it needs both")[1]
