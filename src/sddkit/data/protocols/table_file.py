"""An sddkit utterance table written by :meth:`UtteranceTable.save` (CSV or Parquet), as a protocol."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import require_dir
from sddkit.data.table import UtteranceTable


@dataclass
class UtteranceTableConfig:
    protocol: str  # a .csv / .parquet table with at least utt_id and label columns
    root: str | None = None  # joined in front of relative audio paths


@PROTOCOLS.register("utterance_table", config=UtteranceTableConfig)
def read_utterance_table(cfg: UtteranceTableConfig, **_: object) -> UtteranceTable:
    """An sddkit utterance table (CSV/Parquet with utt_id, label, ...)."""
    table = UtteranceTable.load(cfg.protocol)
    if cfg.root is None:
        return table
    root = str(require_dir(cfg.root, "audio root"))
    df = table.df
    df["path"] = [p if (not p or os.path.isabs(p)) else os.path.join(root, p) for p in df["path"]]
    return UtteranceTable(df)
