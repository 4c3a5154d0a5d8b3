"""Shared set-ups of the evaluation tests: a protocol table of labels, Gaussian trials, the figures drawn."""

from __future__ import annotations

import numpy as np

from sddkit.data.table import UtteranceTable
from sddkit.evaluation import plots as plots_module


def labelled_table(labels: np.ndarray) -> UtteranceTable:
    """A protocol table of trials ``u0, u1, ...``: bona fide where ``labels`` is 1, else spoof of attack A01."""
    return UtteranceTable.from_records(
        {"utt_id": f"u{i}", "label": "bonafide" if y else "spoof", "attack": "-" if y else "A01"}
        for i, y in enumerate(labels)
    )


def gaussian_trials(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of ``n`` alternating trials, bona fide scores shifted up by 1.5."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int64)
    return labels, rng.normal(size=n) + 1.5 * labels


def keep_drawn_figures(monkeypatch) -> dict:
    """A dict whose ``"fig"`` is the last figure the plots saved."""
    drawn: dict = {}
    save = plots_module._save

    def keep(fig, path):
        drawn["fig"] = fig
        return save(fig, path)

    monkeypatch.setattr(plots_module, "_save", keep)
    return drawn
