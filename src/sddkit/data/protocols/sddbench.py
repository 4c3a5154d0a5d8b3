"""sddbench manifest (``manifest.csv`` of the sddbench-dev collection).

One row per file; columns ``path,label,partition,system,attack_type,source,speaker,pair_id,
language,origin_corpus,variant,orig_format,sample_rate,channels,duration_s,source_repo,
source_path,source_commit``. ``path`` is relative to the manifest's folder; ``system`` is the
generator family (``bonafide`` for real speech) and becomes ``attack``. Partitions: train, val,
test_unseen, test_wild, stress_narrowband. Ids are the file stems when those are unique in the
whole manifest (they are in sddbench-dev), else the relative paths without suffix, so an id never
depends on which partitions were selected.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    ASVSPOOF_LABELS,
    as_list,
    build_table,
    check_selected,
    iter_csv,
    located,
    map_label,
    table_columns,
)
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

SDDBENCH_REQUIRED = ("path", "label", "partition", "system", "attack_type", "source", "speaker", "duration_s")
SDDBENCH_KEPT = ("pair_id", "language", "origin_corpus", "variant", "orig_format", "sample_rate")


@dataclass
class SddbenchConfig:
    protocol: str  # manifest.csv, or the folder holding it
    partitions: list[str] | None = None  # e.g. ["train"]; default all
    corpus: str = "sddbench"


def _duration(value: str, manifest: Path, lineno: int) -> float:
    if value == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise located(manifest, lineno, f"duration_s {value!r} is not a number") from None


@PROTOCOLS.register("sddbench", config=SddbenchConfig)
@table_columns("partition", "attack_type", *SDDBENCH_KEPT)
def read_sddbench(cfg: SddbenchConfig, **_: object) -> UtteranceTable:
    """sddbench manifest.csv: path (relative), label, partition, system -> attack, source, speaker, ..."""
    manifest = Path(cfg.protocol)
    if manifest.is_dir():
        manifest = manifest / "manifest.csv"
    base = manifest.parent
    rows, row_lines = [], []
    for lineno, row in iter_csv(manifest, required=SDDBENCH_REQUIRED, what="sddbench manifest"):
        if not row["path"]:
            raise located(manifest, lineno, "empty path")
        row["label"] = map_label(row["label"], ASVSPOOF_LABELS, manifest, lineno)
        row["duration_s"] = _duration(row["duration_s"], manifest, lineno)
        rows.append(row)
        row_lines.append(lineno)
    stems = [os.path.splitext(os.path.basename(r["path"]))[0] for r in rows]
    unique_stems = len(set(stems)) == len(stems)
    wanted = as_list(cfg.partitions)
    check_selected(manifest, "partitions", wanted, (r["partition"] for r in rows))
    records, lines = [], []
    for row, stem, lineno in zip(rows, stems, row_lines):
        if wanted is not None and row["partition"] not in wanted:
            continue
        records.append(
            {
                "utt_id": stem if unique_stems else os.path.splitext(row["path"])[0],
                "path": str(base / row["path"]),
                "label": row["label"],
                "attack": row["system"],
                "source": row["source"],
                "speaker": row["speaker"],
                "corpus": cfg.corpus,
                "duration_s": row["duration_s"],
                "partition": row["partition"],
                "attack_type": row["attack_type"],
                **{k: row[k] for k in SDDBENCH_KEPT if k in row},
            }
        )
        lines.append(lineno)
    if not records:
        known = sorted({r["partition"] for r in rows})
        raise ProtocolError(f"{manifest}: no rows in partitions {wanted}; partitions present: {known}")
    return build_table(records, manifest, lines)
