"""Review 6 (eval3): `sdd eval` and the evaluation report / score matching."""

from __future__ import annotations

import json
import warnings

import numpy as np

from sddkit.cli.main import main


def _asvspoof2021(tmp_path, extra_scores=()):
    """An ASVspoof 2021 LA key (eval/progress/hidden phases) and a submission-style score file for every trial."""
    rng = np.random.default_rng(1)
    key, score = [], []
    i = 0
    for phase in ("eval", "progress", "hidden"):
        for k in range(12):
            bona = k < 4
            utt = f"LA_E_{i:07d}"
            i += 1
            attack = "bonafide" if bona else f"A{7 + k % 2:02d}"
            key.append(f"LA_0001 {utt} alaw ita_tx {attack} {'bonafide' if bona else 'spoof'} notrim {phase}")
            score.append(f"{utt} {rng.normal(2.0 if bona else 0.0):.4f}")
    protocol = tmp_path / "trial_metadata.txt"
    protocol.write_text("\n".join(key) + "\n")
    scores = tmp_path / "score.txt"
    scores.write_text("\n".join([*score, *extra_scores]) + "\n")
    return protocol, scores


def test_sdd_eval_partitions_does_not_call_other_phases_scores_strays(tmp_path, capsys):
    # the official ASVspoof 2021 figure: a whole submission evaluated on the eval phase. The progress and hidden
    # trials' scores are in the protocol; calling them "scores with no protocol entry" sends one hunting for a
    # wrong score file
    protocol, scores = _asvspoof2021(tmp_path, extra_scores=["LA_E_9999999 0.5"])
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out), "--bootstrap", "0"]
    assert main([*argv, "--partitions", "eval"]) == 0
    err = capsys.readouterr().err
    assert "24 of 37 scores are of protocol utterances outside the selected partitions" in err
    assert "1 of 37 scores have no protocol entry" in err
    matching = json.loads((out / "report.json").read_text())["matching"]
    assert matching["n_scores_outside"] == 24 and matching["n_unmatched_scores"] == 1
    assert matching["n_matched"] == 12 and matching["unmatched_score_examples"] == ["LA_E_9999999"]


def test_match_scores_outside_by_path(tmp_path):
    from sddkit.data.table import UtteranceTable
    from sddkit.evaluation.scores import match_scores, read_scores

    table = UtteranceTable.from_records(
        [
            {
                "utt_id": f"u{i}",
                "path": f"/data/{p}/u{i}.wav",
                "label": "bonafide" if i % 2 else "spoof",
                "partition": p,
            }
            for i, p in enumerate(["a", "a", "a", "a", "b", "b"])
        ]
    )
    rows = "\n".join(f"/data/{p}/u{i}.wav,{i}" for i, p in enumerate(["a", "a", "a", "a", "b", "b"]))
    (tmp_path / "s.csv").write_text(f"path,score\n{rows}\n/x/y.wav,1\n")
    scores = read_scores(tmp_path / "s.csv")
    picked = np.array([p == "a" for p in table.column("partition")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        match = match_scores(table.subset(picked), scores, outside=table.subset(~picked))
        plain = match_scores(table.subset(picked), scores)
    assert match.matched_by == "path" and len(match.table) == 4
    assert match.n_scores_outside == 2 and match.n_unmatched_scores == 1
    assert plain.n_scores_outside == 0 and plain.n_unmatched_scores == 3  # without outside: as before


def test_markdown_tables_keep_odd_attack_names_in_their_row():
    # a line break in an attack name (a quoted CSV cell) ended the table row mid-name; a backslash before a pipe
    # turned the pair into an escaped pipe, so the name rendered without its backslash
    from sddkit.data.table import UtteranceTable
    from sddkit.evaluation.groups import markdown_cell
    from sddkit.evaluation.report import EvalConfig, evaluate, render_markdown

    names = ["A\nB", "C\r\nD", "x\\|y", "A|1"]
    records = [{"utt_id": f"b{i}", "path": f"b{i}.wav", "label": "bonafide", "attack": ""} for i in range(4)]
    records += [{"utt_id": f"s{i}", "path": f"s{i}.wav", "label": "spoof", "attack": names[i % 4]} for i in range(8)]
    table = UtteranceTable.from_records(records)
    scores = np.r_[np.arange(4.0) + 1.0, np.arange(8.0) - 4.0]
    text = render_markdown(evaluate(table, scores, EvalConfig(bootstrap=0)))
    section = text.split("## Per attack")[1].split("##")[0].strip().splitlines()[2:]
    assert len(section) == 2 + 4  # header, rule, one row per attack
    assert all(line.startswith("| ") and line.endswith(" |") for line in [section[0], *section[2:]]), section
    assert markdown_cell("A\nB") == "A B" and markdown_cell("C\r\nD") == "C D"
    assert markdown_cell("x\\|y") == "x\\\\\\|y" and markdown_cell("A|1") == "A\\|1"
    for line in section[2:]:  # 8 cells, split at pipes that no backslash escapes
        import re

        assert len(re.split(r"(?<!\\)\|", line)) == 8 + 2, line
