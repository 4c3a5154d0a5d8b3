"""Review 26 of the benchmark scripts: bad arguments refused before any output, with a message naming the cause."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from script_support import REPO, load_script


def test_mixture_summary_refuses_zero_bootstrap_before_the_table(tmp_path, capsys):
    # --bootstrap 0 printed the EER table, then ended in paired_bootstrap's MetricError traceback
    sys.path.insert(0, str(REPO / "benchmarks"))  # mixture_summary imports bench_mixtures by name
    try:
        summary = load_script("benchmarks/mixture_summary.py")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    rng = np.random.default_rng(0)
    models = ["joint_lcnn_logmel", "mele_gate_enhanced_mlp"]
    eers = [{"seed": 0, "model": m, "eer_val": 0.1, "eer_test_unseen": 0.2} for m in models]
    pd.DataFrame(eers).to_csv(tmp_path / "eer_per_seed.csv", index=False)
    rows = [
        {"seed": 0, "model": m, "partition": "test_unseen", "utt_id": f"u{i}", "label": i % 2, "score": rng.normal()}
        for m in models
        for i in range(20)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "scores_per_file.csv", index=False)
    with pytest.raises(SystemExit) as exc:
        summary.main([str(tmp_path), "--bootstrap", "0"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert "--bootstrap must be positive, got 0" in err
    assert out == ""  # refused before the EER table, not after it
    summary.main([str(tmp_path), "--bootstrap", "20"])  # a positive count still runs the paired comparison
    assert "mele_gate_enhanced_mlp" in capsys.readouterr().out


def _fusion_inputs(tmp_path: Path) -> tuple[Path, list[str]]:
    """A sddbench-style manifest with val (both classes) and test_unseen (bona fide only), and two score files."""
    rows = [(f"audio/v{i}.flac", "bonafide" if i % 2 else "spoof", "val") for i in range(20)]
    rows += [(f"audio/t{i}.flac", "bonafide", "test_unseen") for i in range(6)]
    manifest = tmp_path / "manifest.csv"
    table = pd.DataFrame(rows, columns=["path", "label", "partition"])
    table = table.assign(system="s", attack_type="tts", source="src", speaker="spk", duration_s=1.0)
    table.to_csv(manifest, index=False)
    rng = np.random.default_rng(0)
    models = []
    for name in ("a", "b"):
        scores = pd.DataFrame(
            {"path": [str(tmp_path / p) for p, _, _ in rows], "raw_score": rng.normal(size=len(rows))}
        )
        scores.to_csv(tmp_path / f"{name}.csv", index=False)
        models.append(f"{name}={tmp_path / f'{name}.csv'}")
    return manifest, models


def test_score_fusion_names_a_partition_without_both_classes_before_any_output(tmp_path, capsys):
    # a reported partition with one class (or none scored) printed the calibrations and the table's header, then
    # ended in "need both bona fide and spoof trials" naming no partition
    fusion = load_script("benchmarks/bench_score_fusion.py")
    manifest, models = _fusion_inputs(tmp_path)
    with pytest.raises(SystemExit) as exc:
        fusion.main([*models, "--manifest", str(manifest), "--partitions", "val", "test_unseen"])
    message = str(exc.value.code)
    assert "partition test_unseen: 6 bona fide and 0 spoof" in message
    assert "--partitions" in message
    assert capsys.readouterr().out == ""
    fusion.main([*models, "--manifest", str(manifest), "--partitions", "val"])  # val alone: the table
    assert "| sum of LLRs |" in capsys.readouterr().out


def test_bench_models_refuses_an_only_substring_that_matches_no_model(tmp_path, monkeypatch, capsys):
    # `--only lcnn` (the names say "LCNN") timed nothing: an empty table, exit status 0, and {} in --json
    bench = load_script("benchmarks/bench_models.py")
    out = tmp_path / "models.json"
    monkeypatch.setattr(sys, "argv", ["bench_models.py", "--only", "lcnn", "--json", str(out)])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--only 'lcnn' matches no model" in err and "LCNN (log-Mel)" in err
    assert not out.exists()
