"""Fake-or-Real (FoR, Reimao & Tzerpos 2019): a folder tree, no protocol file.

Layout: ``<version>/{training,validation,testing}/{real,fake}/*.wav`` with versions ``for-norm``,
``for-2sec`` (``for-2seconds``), ``for-rerec`` (``for-rerecorded``) and ``for-original``, possibly
nested one level more (``for-norm/for-norm/training/...``) as the archives unpack. ``root`` may be
one version folder, a folder holding several, or one split folder (``for-norm/testing``; with
``format: fake_or_real``, since detection takes a folder of ``real/`` + ``fake/`` for the generic layout).
Partitions are named train/val/test; ``source`` is the version folder name; the generators are not
labelled per file (``attack`` = '').
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    build_table,
    check_selected,
    list_audio_files,
    relative_id,
    require_dir,
    table_columns,
)
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

FOR_SPLITS = {"training": "train", "validation": "val", "testing": "test"}
FOR_LABELS = {"real": "bonafide", "fake": "spoof"}
# archive name -> the folder it unpacks to; ``versions`` accepts either
FOR_VERSION_FOLDERS = {"for-2sec": "for-2seconds", "for-rerec": "for-rerecorded"}
_MAX_DEPTH = 3


@dataclass
class FakeOrRealConfig:
    root: str
    versions: list[str] | None = None  # keep only these versions (e.g. ["for-norm"]; for-2sec = for-2seconds)
    partitions: list[str] | None = None  # train/val/test (or training/validation/testing)
    corpus: str = "fake_or_real"


def _is_split_dir(d: Path) -> bool:
    # label folders in any case (Real/, Fake/), as the reader takes them
    return _folder_name(d).lower() in FOR_SPLITS and any(
        p.is_dir() and p.name.lower() in FOR_LABELS for p in d.iterdir()
    )


def find_for_splits(root: Path, max_depth: int = _MAX_DEPTH) -> list[Path]:
    """Every training/validation/testing folder (holding real/ or fake/) at most ``max_depth`` below root."""
    found: list[Path] = []
    frontier = [root]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in frontier:
            if _is_split_dir(d):
                found.append(d)
            else:
                nxt.extend(sorted(p for p in d.iterdir() if p.is_dir()))
        frontier = nxt
    return found


def _canonical(version: str) -> str:
    return FOR_VERSION_FOLDERS.get(version, version)


def _folder_name(d: Path) -> str:
    """A folder's real name, also for ``.`` or ``..`` (whose ``Path.name`` is '')."""
    return Path(os.path.abspath(d)).name


def _version_of(split_dir: Path) -> str:
    """The version folder of a split: the one holding it, by its real name (also for a split read as ``.``)."""
    return Path(os.path.abspath(split_dir)).parent.name


def _version_names(split_dir: Path, root: Path) -> set[str]:
    """Canonical names of the folders from ``root`` (inclusive) down to ``split_dir``'s parent; for ``root`` the
    split folder itself (``for-norm/testing``), the name of the folder holding it."""
    parent = split_dir.parent
    if split_dir == root:
        names = {_version_of(split_dir)}
    elif parent != root:
        names = {parent.name, *parent.relative_to(root).parts}
    else:
        names = {_folder_name(root)}
    return {_canonical(n) for n in names}


@PROTOCOLS.register("fake_or_real", config=FakeOrRealConfig)
@table_columns("partition")
def read_fake_or_real(cfg: FakeOrRealConfig, **_: object) -> UtteranceTable:
    """Fake-or-Real folder tree: <version>/{training,validation,testing}/{real,fake}/*.wav."""
    root = require_dir(cfg.root, "Fake-or-Real")
    splits = find_for_splits(root)
    if not splits:
        raise ProtocolError(f"{root}: no training/validation/testing folder with real/ or fake/ inside")
    for option, value in (("partitions", cfg.partitions), ("versions", cfg.versions)):
        if value is not None and not value:  # was "no utterances found", with the tree's files all there
            raise ProtocolError(f"{root}: {option} [] keeps nothing; list those to read, or give null for every one")
    # folder names are matched in any case (Training/, Real/), so are the partitions asked for (Testing, TEST)
    wanted = None if cfg.partitions is None else [FOR_SPLITS.get(p.lower(), p.lower()) for p in cfg.partitions]
    check_selected(root, "partitions", wanted, (FOR_SPLITS[_folder_name(d).lower()] for d in splits))
    # a split's version: any folder between root and it (for-norm/for-norm/training), by either name
    split_versions = [_version_names(d, root) for d in splits]
    if cfg.versions is not None:
        unknown = [v for v in cfg.versions if not any(_canonical(v) in names for names in split_versions)]
        present = sorted({n for names in split_versions for n in names})
        if unknown:
            raise ProtocolError(f"{root}: no versions {unknown} in this tree; versions present: {', '.join(present)}")
    records = []
    for split_dir, names in zip(splits, split_versions):
        partition = FOR_SPLITS[_folder_name(split_dir).lower()]
        version = _version_of(split_dir)
        if (wanted is not None and partition not in wanted) or (
            cfg.versions is not None and not any(_canonical(v) in names for v in cfg.versions)
        ):
            continue
        for label_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and p.name.lower() in FOR_LABELS):
            label = FOR_LABELS[label_dir.name.lower()]
            for f in list_audio_files(label_dir):
                records.append(
                    {
                        "utt_id": relative_id(f, root),
                        "path": str(f),
                        "label": label,
                        "attack": "bonafide" if label == "bonafide" else "",
                        "source": version,
                        "speaker": "",
                        "corpus": cfg.corpus,
                        "partition": partition,
                    }
                )
    return build_table(records, root)
