"""An sddkit utterance table written by :meth:`UtteranceTable.save` (CSV or Parquet), as a protocol.

A relative ``path`` is joined to ``root`` when that option is given; without it, it is read against the table's
folder when the file is there, else as written (against the working directory, where a table saved with the paths a
reader gave holds them), as ``sdd score`` reads the same table as a manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.audio.files import resolve_in_folder, resolve_written_path
from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import require_dir
from sddkit.data.table import UtteranceTable


@dataclass
class UtteranceTableConfig:
    protocol: str  # a .csv / .parquet table with at least utt_id and label columns
    # joined in front of relative audio paths (default: the table's folder where the file is there, else as written)
    root: str | None = None


@PROTOCOLS.register("utterance_table", config=UtteranceTableConfig)
def read_utterance_table(cfg: UtteranceTableConfig, **_: object) -> UtteranceTable:
    """An sddkit utterance table (CSV/Parquet with utt_id, label, ...)."""
    table = UtteranceTable.load(cfg.protocol)
    df = table.df
    if cfg.root is not None:
        root = str(require_dir(cfg.root, "audio root"))
        df["path"] = [p if (not p or os.path.isabs(p)) else os.path.join(root, p) for p in df["path"]]
    else:
        # a hand-written table beside its audio (data/table.csv listing sub/a.wav): sdd score found its files, while
        # sdd train, calibrate and robustness looked for them under the working directory and refused every one
        folder = Path(cfg.protocol).parent
        paths = [resolve_written_path(p, lambda w: resolve_in_folder(w, folder)) for p in df["path"]]
        if paths == df["path"].tolist():
            return table
        df["path"] = paths
    return UtteranceTable(df)
