"""In-the-Wild (Müller et al., 2022): ``release_in_the_wild/meta.csv`` next to the audio files.

``meta.csv`` is a comma-separated file with the header ``file,speaker,label``; ``label`` is
``bona-fide`` or ``spoof``, ``file`` is the audio file name (``0.wav`` ...) in the same folder.
The spoofs come from unknown generators, so ``attack`` is '' for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import build_table, iter_csv, located, map_label, require_dir, table_columns
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

ITW_LABELS = {"bona-fide": "bonafide", "bonafide": "bonafide", "spoof": "spoof"}


@dataclass
class InTheWildConfig:
    """protocol: meta.csv (or its folder, or the folder holding release_in_the_wild/); root: the audio folder
    (default: the folder of meta.csv)."""

    protocol: str
    root: str | None = None
    corpus: str = "in_the_wild"


@PROTOCOLS.register("in_the_wild", config=InTheWildConfig)
@table_columns()
def read_in_the_wild(cfg: InTheWildConfig, **_: object) -> UtteranceTable:
    """In-the-Wild meta.csv: file,speaker,label (bona-fide / spoof)."""
    meta = Path(cfg.protocol)
    if meta.is_dir():
        # the folder the archive was unpacked into (holding release_in_the_wild/) was "no such meta.csv file"
        nested = meta / "release_in_the_wild" / "meta.csv"
        meta = nested if not (meta / "meta.csv").is_file() and nested.is_file() else meta / "meta.csv"
    root = require_dir(cfg.root, "audio root") if cfg.root is not None else meta.parent
    records, lines = [], []
    for lineno, row in iter_csv(meta, required=("file", "speaker", "label"), what="In-the-Wild meta.csv"):
        name = row["file"]
        if not name:
            raise located(meta, lineno, "empty file name")
        label = map_label(row["label"], ITW_LABELS, meta, lineno)
        records.append(
            {
                "utt_id": os.path.splitext(name)[0],
                "path": str(root / name),
                "label": label,
                "attack": "bonafide" if label == "bonafide" else "",
                "source": cfg.corpus,
                "speaker": row["speaker"],
                "corpus": cfg.corpus,
            }
        )
        lines.append(lineno)
    if cfg.root is not None:
        _check_root(root, [r["path"] for r in records[:3]], meta)
    return build_table(records, meta, lines)


def _check_root(root: Path, first: list[str], meta: Path) -> None:
    """A ``root`` that holds none of the first files listed is the wrong folder (e.g. the parent of
    ``release_in_the_wild/``): every path would be wrong, and only the training run would find out."""
    if first and not any(os.path.exists(p) for p in first):
        names = ", ".join(os.path.basename(p) for p in first)
        raise ProtocolError(
            f"{root}: holds none of the first files {meta.name} lists ({names}); root must be the audio folder"
        )
