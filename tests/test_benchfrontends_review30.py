"""benchmarks/bench_frontends.py: each front-end under the default recipe's LCNN, timed in PyTorch and ONNX Runtime."""

from __future__ import annotations

import json
import sys

import pytest
from script_support import load_script


def test_bench_frontends_times_a_frontend_and_measures_its_export(tmp_path, monkeypatch, capsys):
    bench = load_script("benchmarks/bench_frontends.py")
    out = tmp_path / "frontends.json"
    argv = ["bench_frontends.py", "--only", "lfcc", "--batch", "1", "--repeats", "1", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--json", str(out)])
    bench.main()
    table = capsys.readouterr().out
    assert "| lfcc |" in table and "logmel" not in table  # --only ran that one alone
    row = json.loads(out.read_text())["lfcc"]
    assert row["torch_s"] > 0 and row["onnx_s"] > 0 and row["onnx_mb"] > 0
    assert row["parity"] is not None and row["parity"] < 1e-4  # the export passed sdd export-onnx's own check
    assert 50_000 < row["params"] < 500_000  # the default recipe's LCNN-16, not another back-end


def test_bench_frontends_refuses_an_only_that_matches_no_frontend(tmp_path, monkeypatch, capsys):
    bench = load_script("benchmarks/bench_frontends.py")
    out = tmp_path / "frontends.json"
    monkeypatch.setattr(sys, "argv", ["bench_frontends.py", "--only", "CQT", "--json", str(out)])
    with pytest.raises(SystemExit) as exc:
        bench.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--only 'CQT' matches no front-end" in err and "cqt (863 bins)" in err
    assert not out.exists()
