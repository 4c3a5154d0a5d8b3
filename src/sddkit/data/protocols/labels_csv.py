"""A plain labels file: a CSV with ``path`` and ``label`` columns, what a practitioner writes by hand.

    path,label
    calls/0001.wav,bonafide
    calls/0002.wav,spoof

``label`` is ``bonafide`` / ``bona-fide`` / ``real`` or ``spoof`` / ``fake``. Optional columns ``attack``,
``source`` and ``speaker`` become the table's columns of those names (the evaluation's per-attack and
per-source tables). ``utt_id`` is the path as written, so the ``path`` column of ``sdd score``'s output
(scored with the same paths) matches it directly; relative paths are read from ``root`` (default: the
CSV's folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import build_table, iter_csv, located, map_label, require_dir
from sddkit.data.table import UtteranceTable

LABELS_CSV_LABELS = {
    "bonafide": "bonafide",
    "bona-fide": "bonafide",
    "real": "bonafide",
    "spoof": "spoof",
    "fake": "spoof",
}
_EXTRA_COLUMNS = ("attack", "source", "speaker")  # optional; empty when absent


@dataclass
class LabelsCSVConfig:
    protocol: str  # the CSV file
    root: str | None = None  # folder of relative paths (default: the CSV's folder)
    corpus: str = "labels_csv"


@PROTOCOLS.register("labels_csv", config=LabelsCSVConfig)
def read_labels_csv(cfg: LabelsCSVConfig, **_: object) -> UtteranceTable:
    """CSV with path,label (bonafide/spoof, real/fake) and optional attack, source, speaker columns."""
    meta = Path(cfg.protocol)
    root = require_dir(cfg.root, "audio root") if cfg.root is not None else meta.parent
    records = []
    for lineno, row in iter_csv(meta, required=("path", "label"), what="labels CSV"):
        written = row["path"].strip()
        if not written:
            raise located(meta, lineno, "empty path")
        label = map_label(row["label"], LABELS_CSV_LABELS, meta, lineno)
        extra = {col: row.get(col, "").strip() for col in _EXTRA_COLUMNS}
        records.append(
            {
                "utt_id": written,
                "path": written if os.path.isabs(written) else str(root / written),
                "label": label,
                "attack": extra["attack"] or ("bonafide" if label == "bonafide" else ""),
                "source": extra["source"] or cfg.corpus,
                "speaker": extra["speaker"],
                "corpus": cfg.corpus,
            }
        )
    return build_table(records, meta)
