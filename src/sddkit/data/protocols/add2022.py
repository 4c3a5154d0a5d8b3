"""ADD 2022 (Audio Deep synthesis Detection challenge) label files.

Each track's label file (e.g. ``track1/train/label.txt``) has one line per file,
``<file name> genuine|fake`` (``ADD_T_00001.wav genuine``); the audio is in a ``wav/`` folder next
to it. Generators are not disclosed, so ``attack`` is '' for fakes; ``source`` is the track.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import build_table, iter_lines, map_label, require_dir, require_file, split_fields
from sddkit.data.table import UtteranceTable

ADD_LABELS = {"genuine": "bonafide", "fake": "spoof"}


@dataclass
class ADD2022Config:
    """protocol: a label file; root: the audio folder (default: wav/ next to it, else its folder)."""

    protocol: str
    root: str | None = None
    track: str | None = None  # -> source; default "add2022/<folder of the label file>"
    partition: str = ""
    corpus: str = "add2022"


@PROTOCOLS.register("add2022", config=ADD2022Config)
def read_add2022(cfg: ADD2022Config, **_: object) -> UtteranceTable:
    """ADD 2022 label file: <file> genuine|fake."""
    labels = require_file(cfg.protocol, "ADD label")
    if cfg.root is not None:
        root = require_dir(cfg.root, "audio root")
    else:
        root = labels.parent / "wav" if (labels.parent / "wav").is_dir() else labels.parent
    # the folder's real name, also for "label.txt" (parent ".") or "../label.txt" (parent "..")
    folder = Path(os.path.abspath(labels)).parent.name
    source = cfg.track if cfg.track is not None else (f"{cfg.corpus}/{folder}" if folder else cfg.corpus)
    records, lines = [], []
    for lineno, line in iter_lines(labels):
        name, key = split_fields(labels, lineno, line, 2, "<file> genuine|fake")
        label = map_label(key, ADD_LABELS, labels, lineno)
        stem, ext = os.path.splitext(name)
        records.append(
            {
                "utt_id": stem,
                "path": str(root / (name if ext else name + ".wav")),
                "label": label,
                "attack": "bonafide" if label == "bonafide" else "",
                "source": source,
                "speaker": "",
                "corpus": cfg.corpus,
                "partition": cfg.partition,
            }
        )
        lines.append(lineno)
    return build_table(records, labels, lines)
