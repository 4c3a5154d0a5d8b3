"""Review 4 (diffrev): a second reading of the changes of 2026-12-03."""

from __future__ import annotations

import errno
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sddkit.data.table import UtteranceTable
from sddkit.errors import ConfigError
from sddkit.evaluation import robustness as rb
from sddkit.scoring.api import ScoringDetector
from sddkit.scoring.inference import InferenceConfig


def _join(prefix: str, timeout: float = 3.0) -> None:
    for t in threading.enumerate():
        if t.name.startswith(prefix):
            t.join(timeout)


def test_robustness_interrupt_drops_the_queued_files(monkeypatch):
    """Ctrl-C in the model's batch of sdd robustness (whose journal makes Ctrl-C and rerun the way to pause it):
    the files queued ahead (2 per worker), each decoded and degraded under every condition, were all still
    processed before the process could end (the pool was shut down, waiting, only when the generator was
    collected). Now the queued ones are dropped, as sdd score's decodes are."""
    table = UtteranceTable.from_records(
        [{"utt_id": f"u{i}", "path": f"/nowhere/u{i}.wav", "label": ("bonafide", "spoof")[i % 2]} for i in range(10)]
    )
    release = threading.Event()
    started: list[int] = []
    lock = threading.Lock()

    class Prepared:
        n_windows = 1

    def slow(detector, row, index, cfg):  # type: ignore[no-untyped-def]
        with lock:
            started.append(index)
        if index != 0:
            release.wait(10)  # a slow decode + degradation
        return rb._Utterance(index, [(rb.CLEAN, Prepared())])

    class Interrupted:
        batch_size = 1

        def score_prepared(self, items, on_windows=None):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt  # Ctrl-C while the model scores the first batch

    monkeypatch.setattr(rb, "_process", slow)
    cfg = rb.RobustnessConfig(conditions=[rb.CLEAN], workers=2)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        rb.run_robustness(Interrupted(), table, cfg, progress=False)
    waited = time.monotonic() - t0
    release.set()
    _join("sdd-robust")
    assert waited < 5  # not held by the two files still being processed
    # the first file, and at most the two running when it was interrupted (before: the 5 submitted)
    assert len(started) <= 3 and set(started) <= {0, 1, 2}


def _mean_runner(windows):  # type: ignore[no-untyped-def]
    m = windows.mean(axis=1, dtype=np.float64)
    return np.stack([-m, m], axis=1), {}


def test_prepare_refuses_a_signal_that_is_not_one_dimensional():
    """A (T, 2) stereo array given to prepare: fixed_windows refused it there ("expects a 1-D signal"); since
    windows are cut at scoring time it was accepted and score_prepared failed later with numpy's words about
    sliding_window_view, failing the whole batch it was in. Now prepare refuses it, naming the shape."""
    det = ScoringDetector(_mean_runner, InferenceConfig(window_samples=4000, hop_samples=2000), batch_size=3)
    x = (0.1 * np.random.default_rng(0).standard_normal((9000, 2))).astype(np.float32)
    with pytest.raises(ValueError, match=r"1-D.*\(9000, 2\)"):
        det.prepare(x)
    mono = np.ascontiguousarray(x[:, 0])
    assert det.score_prepared([det.prepare(mono)])[0].n_windows == 4


class _FullDisk(io.RawIOBase):
    """A file on a full disk: every write raises ENOSPC (as /dev/full, without writing to a device file)."""

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def, override]
        raise OSError(errno.ENOSPC, "No space left on device")


def test_robustness_journal_on_a_full_disk_fails_with_its_own_message(tmp_path, monkeypatch):
    """A full disk while a batch is journaled: append raised the one-line ConfigError, but closing the journal
    retried the failed flush and its OSError replaced it (a traceback at the CLI, which prints SddkitErrors
    only). Now the ConfigError naming the journal comes out."""
    table = UtteranceTable.from_records(
        [{"utt_id": f"u{i}", "path": f"/nowhere/u{i}.wav", "label": ("bonafide", "spoof")[i % 2]} for i in range(4)]
    )
    det = ScoringDetector(_mean_runner, InferenceConfig(window_samples=4000, hop_samples=2000), batch_size=1)
    x = (0.1 * np.random.default_rng(0).standard_normal(6000)).astype(np.float32)

    def process(detector, row, index, cfg):  # type: ignore[no-untyped-def]
        return rb._Utterance(index, [(rb.CLEAN, detector.prepare(x))])

    real_append = rb.RobustnessJournal.append

    def append_to_a_full_disk(self, files, errors):  # type: ignore[no-untyped-def]
        self._file.close()
        self._file = io.TextIOWrapper(io.BufferedWriter(_FullDisk()), encoding="utf-8")  # every flush: ENOSPC
        return real_append(self, files, errors)

    monkeypatch.setattr(rb, "_process", process)
    monkeypatch.setattr(rb.RobustnessJournal, "append", append_to_a_full_disk)
    cfg = rb.RobustnessConfig(conditions=[rb.CLEAN], workers=0)
    journal = tmp_path / rb.JOURNAL_NAME
    with pytest.raises(ConfigError, match="cannot write the robustness journal"):
        rb.run_robustness(det, table, cfg, progress=False, journal=journal)
    assert not Path(f"{journal}.lock").exists()  # released
