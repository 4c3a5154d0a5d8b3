"""Groups of trials: what `sdd eval`'s per-group tables and `sdd compare --by` evaluate together.

The per-attack rule of the field (the ASVspoof evaluation packages): an attack's group is its spoof trials
together with the bona fide trials, since a bona fide trial has no attack. When the trials span several
partitions (a whole sddbench manifest, ASVspoof 2021's phases), each attack meets its own partition's bona fide:
bona fide pooled from training and test partitions would make an EER that describes no evaluation condition.
"""

from __future__ import annotations

import re

import numpy as np


def named(values: np.ndarray, empty: str = "unknown") -> np.ndarray:
    """(N,) str values with the empty ones named ``empty``, so they form a group of their own."""
    values = np.asarray(values).astype(str)
    return np.where(values == "", empty, values)


def groups(values: np.ndarray, empty: str = "unknown") -> list[tuple[str, np.ndarray]]:
    """(value, mask) for each distinct value, sorted; empty values are named ``empty``."""
    values = named(values, empty)
    return [(name, values == name) for name in sorted(set(values.tolist()))]


def markdown_cell(value: object) -> str:
    """A group's name (an attack, a source, an expert) as a Markdown table cell that renders as written: a ``|`` in
    it would split the cell (escaped; a backslash before it is doubled, else the pair read as an escaped pipe
    loses the backslash) and a line break would end the table's row (written as a space). Shared by `sdd eval`'s
    and `sdd compare`'s tables."""
    text = re.sub(r"\r\n|[\r\n]", " ", str(value))
    return re.sub(r"(\\*)\|", lambda m: m.group(1) * 2 + "\\|", text)


def partition_groups(partitions: np.ndarray | None) -> list[tuple[str, np.ndarray]] | None:
    """(partition, mask) when the trials hold more than one partition, else None."""
    if partitions is None:
        return None
    found = groups(partitions)
    return found if len(found) > 1 else None


# what a bona fide trial's value of a spoof-only column reads (an attack column's `-`, `bonafide`, or nothing)
_NO_SPOOF_VALUE = frozenset({"", "-", "bonafide", "bona-fide", "bona fide", "none", "nan"})


def names_spoofs_only(values: np.ndarray, labels: np.ndarray) -> bool:
    """Whether a column's ``values`` (N,) name something for spoof trials only (labels (N,), 1 = bona fide): every
    bona fide trial's value names nothing (empty, ``-``, ``bonafide``) and some spoof's does, as MLAAD's
    ``architecture`` or ``model_name``. Such a column is grouped as the attack column is (each value's spoofs with
    the bona fide trials): grouped by value alone, every group would hold spoofs only, without an EER."""
    bona = np.asarray(labels) == 1
    text = np.char.lower(np.char.strip(np.asarray(values, dtype=str)))
    return bool(
        bona.any()
        and (~bona).any()
        and np.isin(text[bona], list(_NO_SPOOF_VALUE)).all()
        and not np.isin(text[~bona], list(_NO_SPOOF_VALUE)).all()
    )


def attack_groups(
    attacks: np.ndarray, labels: np.ndarray, partitions: np.ndarray | None = None
) -> list[tuple[str | None, str, np.ndarray]]:
    """(partition or None, attack, mask) per attack of the spoof trials (per partition when there are several):
    the mask holds that attack's spoofs and the bona fide trials of the same partition. attacks, labels (1 = bona
    fide), partitions: (N,); an empty attack is named ``unknown``."""
    bona = np.asarray(labels) == 1
    attacks = named(attacks)
    parts = partition_groups(partitions) or [(None, np.ones(bona.size, dtype=bool))]
    out: list[tuple[str | None, str, np.ndarray]] = []
    for partition, inside in parts:
        for attack in sorted(set(attacks[inside & ~bona].tolist())):
            out.append((partition, attack, inside & (bona | (attacks == attack))))
    return out
