"""The progress bars of ``sdd score``, ``sdd train`` (and the folds of ``sdd cv``) and ``sdd robustness``.

On a terminal (and in a notebook) a tqdm bar, redrawn in place. When standard error is not a terminal (``sdd score
... 2> log``, ``nohup``, a batch system's log file) tqdm's redraws were written into the log as thousands of
carriage-return-separated copies of the bar on one line; there the progress is a plain line every
:data:`LOG_INTERVAL_S` seconds instead (``sdd score: 1200/5000 files (24%), 41.3 files/s, 29s elapsed``), and a
last one where the run ends (done or stopped); nothing for a run shorter than that interval. Without a standard
error (a closed ``2>&-``, ``pythonw``: ``sys.stderr`` is None) nothing is written.
"""

from __future__ import annotations

import sys
import time
from typing import Any

LOG_INTERVAL_S = 60.0  # seconds between the progress lines written to a log


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` (where the progress goes) is a terminal."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError, OSError):  # None (pythonw), a closed stream, a stream without isatty
        return False


def progress_bar(*, total: int | None, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True) -> Any:
    """A progress bar counting ``unit`` up to ``total`` (from ``initial``, a resumed run's part): tqdm's on a
    terminal or in a notebook, a :class:`LogProgress` of plain periodic lines on any other standard error; a
    disabled tqdm bar when not ``enabled``. Each has ``update(n)``, ``set_postfix(refresh=..., **values)`` and
    ``close()``."""
    from tqdm.auto import tqdm

    # in a Jupyter kernel tqdm.auto's bar is the notebook widget, which draws no carriage returns
    notebook = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)
    if not enabled or notebook or stderr_is_terminal():
        return tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=not enabled, dynamic_ncols=True)
    return LogProgress(total=total, desc=desc, unit=unit, initial=initial, interval=LOG_INTERVAL_S)


class LogProgress:
    """Progress for a log: one plain line (no carriage return, no redraw) every ``interval`` seconds, written to
    ``sys.stderr`` as it is when the line is due."""

    def __init__(
        self, *, total: int | None, desc: str, unit: str = "it", initial: int = 0, interval: float = LOG_INTERVAL_S
    ):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.n = self.initial = initial
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._written = None  # the count of the last line written; None: none yet

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write(now)

    def set_postfix(self, *, refresh: bool = False, **values: Any) -> None:
        """Show ``values`` after the count (none: clear it). ``refresh``: also write the line now if one is due
        (as tqdm redraws its bar), for progress that moves between updates (the windows of a long file); without
        it the postfix waits for the next update's line."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if refresh:
            self.update(0)

    def close(self) -> None:
        # where the run ended (done, or stopped by an error): the last periodic line was up to `interval` old. A run
        # shorter than that stays silent (the commands print their own summary at the end)
        if self._written is not None and self._written != self.n:
            self._write(time.monotonic())

    def line(self, now: float | None = None) -> str:
        """The progress as one line: ``DESC: N/TOTAL UNITs (P%), R UNITs/s, S elapsed[, POSTFIX]``."""
        elapsed = (time.monotonic() if now is None else now) - self._start
        units = self.unit if self.unit == "it" else f"{self.unit}s"  # tqdm's default unit: "it/s"
        done = f"{self.n}/{self.total} {units} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        words = f"{self.desc}: {done}, {rate:.3g} {units}/s, {_duration(elapsed)} elapsed"
        return words + (f", {self.postfix}" if self.postfix else "")

    def _write(self, now: float) -> None:
        self._written = self.n
        stream = sys.stderr
        if stream is None:  # print(file=None) writes to stdout: into sdd robustness's table, a piped output
            return
        try:
            print(self.line(now), file=stream, flush=True)
        except (OSError, ValueError, AttributeError):  # a closed or missing stderr: progress is no reason to fail
            pass


def _duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
