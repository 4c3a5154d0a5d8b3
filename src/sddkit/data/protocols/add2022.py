"""ADD 2022 and ADD 2023 (Audio Deep synthesis Detection challenges) label files.

Each label file has one line per file, ``<file name> genuine|fake`` (``ADD_T_00000000.wav genuine``).
As distributed, the training and development labels are ``ADD_train_dev/label/{train,dev}_label.txt`` with
the audio in ``ADD_train_dev/{train,dev}/``. The audio is in a ``wav/`` folder next to the label file if there
is one, else, for a ``<part>_label.txt`` in a ``label/`` folder, in the sibling ``<part>/`` folder, else in the
label file's folder. A ``root`` holding the ``<part>/`` folder of a ``label/<part>_label.txt``
(``ADD_train_dev``, the corpus folder, as an ASVspoof root is) and not the first file listed means its ``<part>/``
folder. ``source`` is ``add2022/<part>`` for a ``label/<part>_label.txt`` (wherever its audio is,
``root`` given or not), else ``add2022/<folder of the label file>``.
Generators are not disclosed, so ``attack`` is '' for fakes. ``partition`` is told from the file id as in ASVspoof
(``ADD_T_`` train, ``ADD_D_`` dev, ``ADD_E_`` eval), else from a ``label/<part>_label.txt`` name; ``partition`` sets it.

ADD 2023 (track 1.2 as distributed): ``<part>/label.txt`` lines ``ADD2023_T1.2_T_00000001.wav genuine`` with
the audio in ``<part>/wav/``; the ids carry the partition as ADD 2022's do (``_T_``, ``_D_``, ``_E_``; the test
rounds' ``ADD2023_T1.2R2_E_``), and the corpus (and ``source``'s first part) is ``add2023`` unless ``corpus`` says
otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    build_table,
    iter_lines,
    map_label,
    require_dir,
    require_file,
    split_fields,
    table_columns,
)
from sddkit.data.protocols.asvspoof import partition_from_id
from sddkit.data.table import UtteranceTable

ADD_LABELS = {"genuine": "bonafide", "fake": "spoof"}


@dataclass
class ADD2022Config:
    """protocol: a label file; root: the audio folder (default: wav/ next to it, else <part>/ beside
    label/<part>_label.txt, else its folder)."""

    protocol: str
    root: str | None = None
    track: str | None = None  # -> source; default "add2022/<part>" (label/<part>_label.txt), else "add2022/<folder>"
    partition: str | None = None  # default: from the id (ADD_T_/ADD_D_/ADD_E_), else <part> of <part>_label.txt
    corpus: str | None = None  # default: add2023 for ADD 2023's ids (ADD2023_T1.2_T_...), else add2022


@PROTOCOLS.register("add2022", config=ADD2022Config)
@table_columns("partition")
def read_add2022(cfg: ADD2022Config, **_: object) -> UtteranceTable:
    """ADD 2022 or ADD 2023 track 1.2 label file: <file> genuine|fake."""
    labels = require_file(cfg.protocol, "ADD label")
    # the folder's real name, also for "label.txt" (parent ".") or "../label.txt" (parent "..")
    folder = Path(os.path.abspath(labels)).parent.name
    # the official layout: ADD_train_dev/label/train_label.txt, audio in ADD_train_dev/train/ (the label folder
    # holds no audio: every path pointed into it)
    part = labels.name[: -len("_label.txt")] if labels.name.lower().endswith("_label.txt") else ""
    sibling = Path(os.path.normpath(labels.parent / ".." / part)) if part and folder.lower() == "label" else None
    if sibling is not None:  # the source names the part whether or not its audio is in the sibling folder
        folder = part
    if cfg.root is not None:
        root = _part_root(require_dir(cfg.root, "audio root"), part, labels)
    elif (labels.parent / "wav").is_dir():
        root = labels.parent / "wav"
    else:
        root = sibling if sibling is not None and sibling.is_dir() else labels.parent
    corpus = cfg.corpus if cfg.corpus is not None else _corpus_of(labels)
    source = cfg.track if cfg.track is not None else (f"{corpus}/{folder}" if folder else corpus)
    records, lines = [], []
    for lineno, line in iter_lines(labels):
        name, key = split_fields(labels, lineno, line, 2, "<file> genuine|fake")
        label = map_label(key, ADD_LABELS, labels, lineno)
        stem, ext = os.path.splitext(name)
        # the partition column was '' unless set: a table of train and dev (or of ADD and ASVspoof) lost which is which
        partition = cfg.partition if cfg.partition is not None else (partition_from_id(stem) or part)
        records.append(
            {
                "utt_id": stem,
                "path": str(root / (name if ext else name + ".wav")),
                "label": label,
                "attack": "bonafide" if label == "bonafide" else "",
                "source": source,
                "speaker": "",
                "corpus": corpus,
                "partition": partition,
            }
        )
        lines.append(lineno)
    return build_table(records, labels, lines)


def _corpus_of(labels: Path) -> str:
    """``add2023`` for a label file of ADD 2023 (its ids ``ADD2023_T1.2_T_00000001``), else ``add2022``: the two
    challenges' tables stay apart when read together."""
    first = next((line.split()[0] for _, line in iter_lines(labels)), "")
    return "add2023" if first.upper().startswith("ADD2023_") else "add2022"


def _part_root(root: Path, part: str, labels: Path) -> Path:
    """``root/<part>`` when ``root`` is the corpus folder (``ADD_train_dev``, holding ``train/`` and ``dev/``) rather
    than the audio folder: every path pointed at ``ADD_train_dev/ADD_T_*.wav``, which is not there, found only when
    training loaded it. A ``root`` holding the first file listed (or no ``<part>/`` holding it) is kept as given."""
    if not part or not (root / part).is_dir():
        return root
    first = next((line.split()[0] for _, line in iter_lines(labels)), "")
    if not first:
        return root
    name = first if os.path.splitext(first)[1] else first + ".wav"
    if (root / name).exists() or not (root / part / name).exists():
        return root
    return root / part
