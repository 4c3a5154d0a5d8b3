"""Review 15: the progress of ``sdd score`` inside a long file (the bar counts files; one long recording left it at
0/1, and a log without a line, until the whole file was scored)."""

from __future__ import annotations

import io
import sys

import numpy as np
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit import progress
from sddkit.cli.main import main
from sddkit.scoring import batch
from sddkit.scoring.api import ScoringDetector
from sddkit.scoring.inference import InferenceConfig

W, HOP = 4000, 2000


def _mean_runner(windows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    m = windows.mean(axis=1, dtype=np.float64)
    return np.stack([-m, m], axis=1), {}


def test_score_prepared_reports_each_batch_of_windows_as_it_finishes():
    det = ScoringDetector(_mean_runner, InferenceConfig(window_samples=W, hop_samples=HOP), batch_size=3)
    rng = np.random.default_rng(0)
    inputs = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (10 * W + 7, W // 2, 3 * W)]
    prepared = [det.prepare(x) for x in inputs]
    seen: list[int] = []
    with_callback = det.score_prepared(prepared, on_windows=seen.append)
    total = sum(p.n_windows for p in prepared)
    assert total > 3 * det.batch_size
    assert seen == [3] * (total // 3) + ([total % 3] if total % 3 else [])
    assert with_callback == det.score_prepared(prepared)  # the results are the same without it


def _score_one_long_file(tmp_path, capsys, name: str, extra: list[str]) -> str:
    args = ["score", str(tmp_path / "long.wav"), "--model", str(tmp_path / "m"), "--out", str(tmp_path / name)]
    assert main([*args, "--batch-size", "2", "--windows", *extra]) == 0
    return capsys.readouterr().err  # captured: not a terminal, so the progress is LogProgress's lines


def test_a_log_shows_the_windows_of_a_long_file_before_it_ends_and_the_rows_are_unchanged(
    tmp_path, capsys, monkeypatch
):
    save_tiny_lcnn(tmp_path / "m", inference={"window_samples": W, "hop_samples": HOP})
    write_noise_wav(tmp_path / "long.wav", 2.0, seed=1)  # 15 windows: 8 batches of 2
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # every due line is written
    err = _score_one_long_file(tmp_path, capsys, "p.csv", [])
    lines = [ln for ln in err.splitlines() if ln.startswith("sdd score: ")]
    inside = [ln for ln in lines if ln.startswith("sdd score: 0/1 files (0%), ")]
    assert [ln.rsplit(", windows=", 1)[-1] for ln in inside] == [f"{k}/15" for k in (*range(0, 15, 2), 15)]
    assert lines[-1].startswith("sdd score: 1/1 files (100%), ") and "windows=" not in lines[-1]  # cleared
    quiet = _score_one_long_file(tmp_path, capsys, "q.csv", ["--quiet"])
    assert "windows=" not in quiet
    for out in ("p.csv", "q.csv"):
        assert batch.read_rows(tmp_path / out)[1][0]["n_windows"] == "15"
    assert batch.read_rows(tmp_path / "p.csv") == batch.read_rows(tmp_path / "q.csv")
    assert batch.read_rows(batch.windows_path(tmp_path / "p.csv")) == batch.read_rows(
        batch.windows_path(tmp_path / "q.csv")
    )


def test_a_postfix_writes_a_due_line_only_when_asked_and_at_most_one_an_interval(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    clock = iter([0.0, 5.0, 30.0, 61.0, 70.0, 125.0])
    monkeypatch.setattr(progress, "time", type("T", (), {"monotonic": staticmethod(lambda: next(clock))}))
    bar = progress.LogProgress(total=1, desc="sdd score", unit="file", interval=60.0)  # starts at 0 s
    bar.set_postfix(windows="2/10", refresh=True)  # 5 s: not due
    bar.set_postfix(windows="4/10", refresh=True)  # 30 s: not due
    bar.set_postfix(windows="6/10")  # no refresh: no clock reading, no line (as sdd train's val_eer)
    bar.set_postfix(windows="8/10", refresh=True)  # 61 s: due
    bar.set_postfix(windows="9/10", refresh=True)  # 70 s: one line an interval
    assert log.getvalue().splitlines() == ["sdd score: 0/1 files (0%), 0 files/s, 1m01s elapsed, windows=8/10"]
    bar.set_postfix()
    bar.update(1)  # 125 s
    assert log.getvalue().splitlines()[-1] == "sdd score: 1/1 files (100%), 0.008 files/s, 2m05s elapsed"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_bar_is_redrawn_with_the_windows_of_a_long_file(tmp_path, monkeypatch):
    save_tiny_lcnn(tmp_path / "m", inference={"window_samples": W, "hop_samples": HOP})
    write_noise_wav(tmp_path / "long.wav", 2.0, seed=1)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    args = ["score", str(tmp_path / "long.wav"), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "s.csv")]
    assert main([*args, "--batch-size", "2"]) == 0
    draws = sys.stderr.getvalue().split("\r")
    at = [i for i, d in enumerate(draws) if "0/1 " in d and "windows=14/15" in d]
    assert at and any("1/1 " in d and "windows=" not in d for d in draws[at[0] :])  # redrawn, then cleared
