"""`sdd eval` on inputs a researcher brings: `sdd score` JSONL output, absolute score paths."""

from __future__ import annotations

import json

import numpy as np

from sddkit.cli.main import main


def _labels_protocol(folder):
    """A labels_csv protocol whose bona fide and spoof folders reuse the same file names (stems collide)."""
    rng = np.random.default_rng(0)
    rows, scores = [], {}
    for i in range(12):
        key = "bonafide" if i % 2 == 0 else "spoof"
        rel = f"{'real' if key == 'bonafide' else 'fake'}/{i // 2}.wav"
        rows.append(f"{rel},{key}")
        scores[rel] = float(f"{rng.normal(1.0 if key == 'bonafide' else -1.0, 1.0):.4f}")
    folder.mkdir()
    (folder / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return folder / "labels.csv", scores


def test_eval_reads_sdd_score_jsonl_with_error_rows(tmp_path, capsys):
    protocol, scores = _labels_protocol(tmp_path / "data")
    lines = [json.dumps({"path": str(tmp_path / "data" / rel), "score": s, "error": ""}) for rel, s in scores.items()]
    lines[0] = json.dumps({"path": str(tmp_path / "data" / "real/0.wav"), "score": None, "error": "decode failed"})
    score_file = tmp_path / "scores.jsonl"
    score_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["eval", "--scores", str(score_file), "--protocol", str(protocol), "--out", str(out)]) == 0
    matching = json.loads((out / "report.json").read_text())["matching"]
    assert (matching["n_matched"], matching["n_failed_scores"], matching["n_unmatched_protocol"]) == (11, 1, 0)


def test_eval_jsonl_bad_score_names_the_line(tmp_path, capsys):
    protocol, scores = _labels_protocol(tmp_path / "data")
    lines = [json.dumps({"path": f"data/{rel}", "score": s, "error": ""}) for rel, s in scores.items()]
    lines[2] = json.dumps({"path": "data/fake/0.wav", "score": "NaN", "error": ""})
    score_file = tmp_path / "scores.jsonl"
    score_file.write_text("\n".join(lines) + "\n")
    assert main(["eval", "--scores", str(score_file), "--protocol", str(protocol), "--out", str(tmp_path / "o")]) == 2
    assert "scores.jsonl:3" in capsys.readouterr().err


def test_eval_matches_absolute_score_paths_to_relative_protocol_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    protocol, scores = _labels_protocol(tmp_path / "data")
    score_file = tmp_path / "scores.csv"  # `sdd score /abs/data ...` writes absolute paths
    score_file.write_text("path,score,error\n" + "".join(f"{tmp_path}/data/{r},{s},\n" for r, s in scores.items()))
    out = tmp_path / "out"
    assert main(["eval", "--scores", "scores.csv", "--protocol", "data/labels.csv", "--out", "out"]) == 0
    matching = json.loads((out / "report.json").read_text())["matching"]
    assert (matching["matched_by"], matching["n_matched"]) == ("path", 12)
