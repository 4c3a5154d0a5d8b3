"""FakeAVCeleb (Khalid et al., 2021): audio-visual deepfakes, read here for their AUDIO track.

Layout: ``<root>/{RealVideo-RealAudio,RealVideo-FakeAudio,FakeVideo-RealAudio,FakeVideo-FakeAudio}/
<race>/<gender>/<id>/*.mp4`` plus ``meta_data.csv`` (header
``source,target1,target2,method,category,type,race,gender,path,``: the ``path`` column holds the
file name and an unnamed last column the folder, so rows are read by position).

The label comes from the audio: ``*-FakeAudio`` = spoof, ``*-RealAudio`` = bona fide, whatever the
video. Every fake audio track of FakeAVCeleb was made with SV2TTS real-time voice cloning, so
``attack`` is ``rtvc``; the per-file manipulation ``method`` of ``meta_data.csv`` (wav2lip,
faceswap-wav2lip, ...) is kept in a ``method`` column. ``source`` is the category folder.
The reader only lists the MP4 files; :func:`sddkit.audio.io.load_audio` decodes their audio.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    build_table,
    check_selected,
    list_audio_files,
    located,
    relative_id,
    require_dir,
    skip_preamble,
    table_columns,
)
from sddkit.data.table import UtteranceTable
from sddkit.data.text import not_text, open_text
from sddkit.errors import ProtocolError

FAKEAVCELEB_CATEGORIES: dict[str, str] = {
    "RealVideo-RealAudio": "bonafide",
    "FakeVideo-RealAudio": "bonafide",
    "RealVideo-FakeAudio": "spoof",
    "FakeVideo-FakeAudio": "spoof",
}
FAKEAVCELEB_AUDIO_GENERATOR = "rtvc"
_VIDEO_EXTENSIONS = (".mp4",)
FAKEAVCELEB_META_COLUMNS = ("source", "target1", "target2", "method", "category", "type", "race", "gender", "path")


@dataclass
class FakeAVCelebConfig:
    root: str
    categories: list[str] | None = None  # a subset of the four category folders
    corpus: str = "fakeavceleb"

    def __post_init__(self) -> None:
        bad = sorted(set(self.categories or ()) - set(FAKEAVCELEB_CATEGORIES))
        if bad:
            raise ValueError(f"unknown FakeAVCeleb categories {bad}; valid: {sorted(FAKEAVCELEB_CATEGORIES)}")


def read_fakeavceleb_meta(meta: Path) -> dict[tuple[str, ...], dict[str, str]]:
    """(type, race, gender, source id, file name) -> row of ``meta_data.csv`` (read by position)."""
    out: dict[tuple[str, ...], dict[str, str]] = {}
    try:
        with open_text(meta, strict=True) as fh:
            # blank and '#' lines before the header are skipped, as format detection (which took this file for
            # FakeAVCeleb's) and the other headed readers skip them; line numbers still count them
            skipped, lines = skip_preamble(fh)
            reader = csv.reader(lines)
            header = [h.strip() for h in next(reader, [])]
            if tuple(header[: len(FAKEAVCELEB_META_COLUMNS)]) != FAKEAVCELEB_META_COLUMNS:
                raise located(
                    meta,
                    skipped + 1,
                    f"expected the header {','.join(FAKEAVCELEB_META_COLUMNS)}, got {','.join(header)}",
                )
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) < len(FAKEAVCELEB_META_COLUMNS):
                    raise located(
                        meta,
                        skipped + reader.line_num,
                        f"expected at least {len(FAKEAVCELEB_META_COLUMNS)} fields, got {len(row)}",
                    )
                rec = dict(zip(FAKEAVCELEB_META_COLUMNS, (c.strip() for c in row)))
                out[(rec["type"], rec["race"], rec["gender"], rec["source"], rec["path"])] = rec
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{meta}: {not_text(exc)}") from None
    except csv.Error as exc:
        raise ProtocolError(f"{meta}: malformed CSV: {exc}") from None
    return out


@PROTOCOLS.register("fakeavceleb", config=FakeAVCelebConfig)
@table_columns("attack_type", "race", "gender", "method")
def read_fakeavceleb(cfg: FakeAVCelebConfig, **_: object) -> UtteranceTable:
    """FakeAVCeleb category/race/gender/id/*.mp4; label from the audio (FakeAudio = spoof)."""
    root = require_dir(cfg.root, "FakeAVCeleb")
    meta_path = root / "meta_data.csv"
    meta = read_fakeavceleb_meta(meta_path) if meta_path.is_file() else {}
    categories = cfg.categories or list(FAKEAVCELEB_CATEGORIES)
    if cfg.categories is not None:
        # a category asked for by name but not unpacked would be missing from the table without a word
        check_selected(root, "categories", cfg.categories, (c for c in FAKEAVCELEB_CATEGORIES if (root / c).is_dir()))
    records = []
    for category in categories:
        folder = root / category
        if not folder.is_dir():
            continue
        label = FAKEAVCELEB_CATEGORIES[category]
        for f in list_audio_files(folder, _VIDEO_EXTENSIONS):
            parts = f.relative_to(folder).parts
            race, gender, speaker = parts[:3] if len(parts) >= 4 else ("", "", "")
            row = meta.get((category, race, gender, speaker, f.name), {})
            records.append(
                {
                    "utt_id": relative_id(f, root),
                    "path": str(f),
                    "label": label,
                    "attack": "bonafide" if label == "bonafide" else FAKEAVCELEB_AUDIO_GENERATOR,
                    "source": category,
                    "speaker": speaker,
                    "corpus": cfg.corpus,
                    "attack_type": "" if label == "bonafide" else "tts",  # SV2TTS: speaker-adaptive TTS
                    "race": race,
                    "gender": gender,
                    "method": row.get("method", ""),
                }
            )
    if not records:
        raise ProtocolError(f"{root}: no .mp4 files in the FakeAVCeleb category folders {categories}")
    return build_table(records, root)
