"""Analysis review 24: the tables a researcher reads after training (sdd eval, sdd compare, gate weights)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from sddkit.cli.main import main
from sddkit.data.table import UtteranceTable
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.evaluation.compare import compare_scores
from sddkit.evaluation.scores import read_scores

# utt_id, label, attack, attack_type, source, score
ROWS = [
    ("b1", "bonafide", "", "-", "web", 2.0),
    ("b2", "bonafide", "", "-", "studio", 1.5),
    ("b3", "bonafide", "", "-", "web", -0.5),
    ("s1", "spoof", "A01", "tts", "web", -1.0),
    ("s2", "spoof", "A02", "tts", "studio", 0.5),
    ("s3", "spoof", "A05", "vc", "web", -2.0),
    ("s4", "spoof", "A06", "vc", "studio", 1.0),
]


def _protocol(tmp_path, rows=ROWS):
    path = tmp_path / "protocol.csv"
    lines = ["path,label,attack,attack_type,source"]
    lines += [f"{u}.wav,{y},{a},{t},{s}" for u, y, a, t, s, _ in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _scores(path, scores):
    path.write_text("path,score\n" + "".join(f"{u}.wav,{s}\n" for (u, *_), s in zip(ROWS, scores)))
    return path


def _pooled_eer(attack_type: str) -> float:
    """The pooled EER (%) of the bona fide trials and the spoofs of ``attack_type`` alone."""
    kept = [r for r in ROWS if r[3] in ("-", attack_type)]
    table = UtteranceTable.from_records(
        {"utt_id": u, "path": f"{u}.wav", "label": y, "attack": a, "source": s} for u, y, a, _, s, _ in kept
    )
    return evaluate(table, np.array([r[-1] for r in kept]), EvalConfig(bootstrap=0)).pooled["eer"]


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row: split at the pipes that are not escaped."""
    return re.split(r"(?<!\\)\|", line.strip().strip("|"))


def test_sdd_eval_breaks_the_eer_down_per_attack_type(tmp_path, capsys):
    # the readers fill attack_type (ASVspoof 2019's A01-A19 as tts/vc, sddbench's tts/vc/vocoder) and sdd compare
    # groups by it, but sdd eval's report had no per-attack-type table: the TTS-vs-VC breakdown papers give was
    # nowhere in it
    scores = _scores(tmp_path / "s.csv", [s for *_, s in ROWS])
    out = tmp_path / "report"
    argv = ["eval", "--scores", str(scores), "--protocol", str(_protocol(tmp_path)), "--out", str(out)]
    assert main([*argv, "--bootstrap", "0"]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    rows = {r["attack_type"]: r for r in report["per_attack_type"]}
    assert set(rows) == {"tts", "vc"}  # the bona fide's '-' names no type
    # each type's spoofs against every bona fide trial, as per attack
    assert (rows["tts"]["n_bonafide"], rows["tts"]["n_spoof"]) == (3, 2)
    for kind in ("tts", "vc"):  # each the pooled EER of that type's spoofs and the bona fide alone
        assert rows[kind]["eer"] == pytest.approx(_pooled_eer(kind))
    csv = pd.read_csv(out / "per_attack_type.csv")
    assert list(csv["attack_type"]) == ["tts", "vc"] and list(csv["n_spoof"]) == [2, 2]
    assert csv.set_index("attack_type").loc["vc", "eer"] == pytest.approx(rows["vc"]["eer"])
    assert "## Per attack type (each type's spoofs vs all bona fide)" in (out / "report.md").read_text()
    # one type for every spoof would be a table of one row, the pooled figures again: none, and a rerun into the
    # same folder removes the earlier run's
    one_type = [(u, y, a, "tts" if y == "spoof" else t, s, sc) for u, y, a, t, s, sc in ROWS]
    argv = ["eval", "--scores", str(scores), "--protocol", str(_protocol(tmp_path, one_type)), "--out", str(out)]
    assert main([*argv, "--bootstrap", "0"]) == 0
    assert json.loads((out / "report.json").read_text())["per_attack_type"] is None
    assert not (out / "per_attack_type.csv").exists()


def test_sdd_compare_tables_keep_their_columns_with_a_pipe_in_a_systems_name(tmp_path):
    # --names "w2v|lora" ...: the name was written into the Markdown tables as it is, and its `|` split the row
    # (and the per-group header) into one cell more than the header has
    protocol = _protocol(tmp_path)
    from sddkit.data.protocols import read_protocol

    table = read_protocol(protocol)
    base = read_scores(_scores(tmp_path / "a.csv", [2.0, 1.5, -0.5, -1.0, 0.5, -2.0, 1.0]))
    system = read_scores(_scores(tmp_path / "b.csv", [2.0, 1.5, 0.5, -1.0, -0.5, -2.0, 0.0]))
    comparison = compare_scores(
        table, [base], [system], n_bootstrap=40, names=("w2v|lora", "new\\|x"), by="attack_type"
    )
    text = comparison.summary()
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert len(tables) == 2 + 2 + 2 + 2  # two tables: header, rule and two rows each
    widths = {len(_cells(line)) for line in tables[:4]}, {len(_cells(line)) for line in tables[4:]}
    assert widths == ({5}, {6})
    assert r"w2v\|lora" in tables[2] and r"new\\\|x" in tables[3]
    assert comparison.to_dict()["baseline"]["name"] == "w2v|lora"  # the JSON keeps the name as given


def test_evaluate_takes_a_models_outputs_as_they_come(tmp_path):
    # evaluate(table, out.score, gate_weights=out.stats["gate_weights"]): gate_weight_table takes such tensors (on
    # the GPU, bfloat16, with autograd history), but evaluate read them with np.asarray first and raised
    # "Can't call numpy() on Tensor that requires grad" or "Got unsupported ScalarType BFloat16"
    table = UtteranceTable.from_records(
        {"utt_id": u, "path": f"{u}.wav", "label": y, "attack": a, "source": s} for u, y, a, _, s, _ in ROWS
    )
    logits = torch.randn(len(ROWS), 3, requires_grad=True)
    weights = torch.softmax(logits, dim=-1)
    scores = torch.tensor([s for *_, s in ROWS], requires_grad=True) * 1.0
    expected = evaluate(table, scores.detach().numpy(), EvalConfig(bootstrap=0), gate_weights=weights.detach().numpy())
    got = evaluate(table, scores, EvalConfig(bootstrap=0), gate_weights=weights)
    assert got.pooled["eer"] == expected.pooled["eer"]
    assert got.gate_weights == expected.gate_weights
    half = evaluate(table, scores.bfloat16(), EvalConfig(bootstrap=0), gate_weights=weights.bfloat16())
    by_source = {r["source"]: r for r in half.gate_weights["by_source"]}
    want = {r["source"]: r for r in expected.gate_weights["by_source"]}
    assert by_source["web"]["expert1"] == pytest.approx(want["web"]["expert1"], abs=1e-2)


def test_report_md_pooled_table_keeps_two_cells_with_a_pipe_in_the_asv_file_name(tmp_path):
    # the ASV score file's name is written into the t-DCF and t-EER rows' cells: `asv|v2.txt` split them in three
    from sddkit.evaluation.asv import ASVScores
    from sddkit.evaluation.report import render_markdown

    table = UtteranceTable.from_records(
        {"utt_id": u, "path": f"{u}.wav", "label": y, "attack": a, "source": s} for u, y, a, _, s, _ in ROWS
    )
    asv = ASVScores(target=np.array([3.0, 2.5, 2.0]), nontarget=np.array([-1.0, 0.0, 2.2]), spoof=np.array([1.0, 2.4]))
    report = evaluate(table, np.array([s for *_, s in ROWS]), EvalConfig(bootstrap=0), asv_scores=asv)
    report.inputs = {"asv_scores": str(tmp_path / "asv|v2.txt")}
    text = render_markdown(report)
    pooled = text.split("## Pooled")[1].split("\n\n")[1].splitlines()
    assert any("t-EER" in line for line in pooled) and sum("t-DCF" in line for line in pooled) == 2
    assert {len(_cells(line)) for line in pooled} == {2}
    assert r"asv\|v2.txt" in text
