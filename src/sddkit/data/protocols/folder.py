"""Generic labelled folder: ``<root>/bonafide/**`` and ``<root>/spoof/**``.

Spoofs in a sub-folder ``<root>/spoof/<attack>/...`` get that folder's name as ``attack``; files
directly in ``spoof/`` get ''. Bona fide files in ``<root>/bonafide/<source>/...`` get that
sub-folder as ``source`` (else the corpus name: by default the root folder's name, also for ``.``).
``real``/``fake`` are accepted as folder names too, and so are ``bona-fide``/``bona_fide``/``bona fide``
(In-the-Wild's spelling) and ``genuine`` (ADD's and ASVspoof 2017's) for bona fide speech: the words a labels
CSV takes as labels. Ids are the paths relative to ``root`` without the suffix, so they are unique and stable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    AUDIO_EXTENSIONS,
    BONAFIDE_SPOOF_WORDS,
    build_table,
    list_audio_files,
    relative_id,
    require_dir,
    table_columns,
)
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

# a bona fide folder under another common name beside spoof/ was skipped without a word: the table held only spoofs
FOLDER_LABELS = BONAFIDE_SPOOF_WORDS  # the words a labels CSV takes as labels


@dataclass
class FolderConfig:
    root: str
    corpus: str | None = None  # default: the root folder's name
    attack_from_subfolder: bool = True


def label_folders(root: Path) -> list[tuple[Path, str]]:
    """(folder, label) for each bonafide/real/spoof/fake child of ``root``."""
    return [
        (p, FOLDER_LABELS[p.name.lower()])
        for p in sorted(root.iterdir())
        if p.is_dir() and p.name.lower() in FOLDER_LABELS
    ]


@PROTOCOLS.register("folder", config=FolderConfig)
@table_columns()
def read_folder(cfg: FolderConfig, **_: object) -> UtteranceTable:
    """Generic folder: <root>/bonafide/** and <root>/spoof/[<attack>/]**."""
    root = require_dir(cfg.root, "labelled")
    # the folder's real name, also when it is given as "." or ".."
    corpus = cfg.corpus or Path(os.path.abspath(root)).name
    folders = label_folders(root)
    if not folders:
        raise ProtocolError(f"{root}: expected bonafide/ and spoof/ sub-folders")
    records = []
    for folder, label in folders:
        for f in list_audio_files(folder):
            parts = f.relative_to(folder).parts
            sub = parts[0] if len(parts) > 1 else ""
            if label == "spoof":
                attack, source = (sub if cfg.attack_from_subfolder else ""), corpus
            else:
                attack, source = "bonafide", sub or corpus
            records.append(
                {
                    "utt_id": relative_id(f, root),
                    "path": str(f),
                    "label": label,
                    "attack": attack,
                    "source": source,
                    "speaker": "",
                    "corpus": corpus,
                }
            )
    if not records:  # else "no utterances found", which left the user to look for the reason
        names = " and ".join(f"{f.name}/" for f, _ in folders)
        raise ProtocolError(
            f"{root}: no audio file under {names} (names ending {' '.join(AUDIO_EXTENSIONS)}); put the labelled "
            "recordings there"
        )
    return build_table(records, root)
