"""Plain bona fide speech corpora, read as they ship (every row is ``bonafide``).

- LibriSpeech: ``<root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` lists the
  utterances (``<utt id> TEXT``) of ``<utt id>.flac`` in the same folder. ``root`` is the
  ``LibriSpeech`` folder (holding split folders) or one split folder.
- LJSpeech: ``<root>/metadata.csv`` (``id|transcription|normalized transcription``, no header)
  and ``<root>/wavs/<id>.wav``; one speaker, ``LJ``. An M-AILABS book folder
  (``de_DE/by_book/female/<speaker>/<book>/``) has the same layout: read with ``format: ljspeech``, its speaker
  and language come from its path (format detection refuses it, naming the MLAAD reader's ``bonafide_root``).
- VCTK: 0.92 ``wav48_silence_trimmed/<spk>/<spk>_<n>_mic{1,2}.flac`` or 0.80 ``wav48/<spk>/*.wav``.
- Common Voice: ``<root>/{validated,train,dev,test,...}.tsv`` (tab-separated, header with
  ``client_id`` and ``path``; ``locale`` when present) and ``<root>/clips/<path>`` (MP3).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    build_table,
    check_selected,
    iter_csv,
    iter_lines,
    list_audio_files,
    located,
    require_dir,
    require_file,
    table_columns,
)
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError


def _bona(utt_id: str, path: str, speaker: str, source: str, corpus: str, **extra: str) -> dict:
    return {
        "utt_id": utt_id,
        "path": path,
        "label": "bonafide",
        "attack": "bonafide",
        "source": source,
        "speaker": speaker,
        "corpus": corpus,
        **extra,
    }


def _check_not_empty(root: Path, splits: list[str], present: Iterable[str]) -> None:
    """``splits: []`` reads nothing: said so, where it was "no LibriSpeech split found" (or "no utterances found")
    beside the split folders."""
    if not splits:
        raise ProtocolError(
            f"{root}: splits [] keeps no split; list those to read ({', '.join(present) or 'none found'})"
        )


# --- LibriSpeech ------------------------------------------------------------------------------


@dataclass
class LibriSpeechConfig:
    root: str
    splits: list[str] | None = None  # e.g. ["test-clean"]; default every split folder found
    corpus: str = "librispeech"


def _is_librispeech_split(d: Path) -> bool:
    return any(d.glob("*/*/*.trans.txt"))


@PROTOCOLS.register("librispeech", config=LibriSpeechConfig)
@table_columns("partition", "language")
def read_librispeech(cfg: LibriSpeechConfig, **_: object) -> UtteranceTable:
    """LibriSpeech <split>/<speaker>/<chapter>/*.flac listed by *.trans.txt."""
    root = require_dir(cfg.root, "LibriSpeech")
    if _is_librispeech_split(root):
        split_dirs = [root]
    else:
        split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _is_librispeech_split(d)]
    if cfg.splits is not None:
        _check_not_empty(root, cfg.splits, (d.name for d in split_dirs))
        check_selected(root, "splits", cfg.splits, (d.name for d in split_dirs))
        split_dirs = [d for d in split_dirs if d.name in cfg.splits]
    if not split_dirs:
        raise ProtocolError(f"{root}: no LibriSpeech split (<split>/<speaker>/<chapter>/*.trans.txt) found")
    records = []
    for split_dir in split_dirs:
        for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
            speaker = trans.parent.parent.name
            for lineno, line in iter_lines(trans):
                utt = line.split(maxsplit=1)[0]
                if not utt.startswith(f"{speaker}-"):
                    raise located(trans, lineno, f"utterance {utt!r} does not belong to speaker {speaker}")
                records.append(
                    _bona(
                        utt,
                        str(trans.parent / f"{utt}.flac"),
                        speaker,
                        split_dir.name,
                        cfg.corpus,
                        partition=split_dir.name,
                        language="en",
                    )
                )
    return build_table(records, root)


# --- LJSpeech ---------------------------------------------------------------------------------


@dataclass
class LJSpeechConfig:
    root: str
    corpus: str = "ljspeech"


class MailabsBook(NamedTuple):
    """Where an M-AILABS book folder (``de_DE/by_book/female/eva_k/<book>``) sits: its speaker ('' for a
    ``by_book/mix/<book>``), language code (``de``) and language folder (``de_DE``)."""

    speaker: str
    language: str
    locale: str


def mailabs_book(root: Path) -> MailabsBook | None:
    """The M-AILABS book a folder laid out as LJSpeech is, None for any other folder: read as LJSpeech, every German
    or French reader was the one English speaker ``LJ`` (format detection refuses such a folder)."""
    parts = Path(os.path.abspath(root)).parts
    if "by_book" not in parts or parts.index("by_book") == 0:
        return None
    i = parts.index("by_book")
    below = parts[i + 1 :]  # <gender>/<speaker>/<book>, or mix/<book>
    speaker = below[1] if len(below) == 3 and below[0] != "mix" else ""
    return MailabsBook(speaker, parts[i - 1].split("_")[0].lower(), parts[i - 1])


def is_ljspeech_layout(d: Path) -> bool:
    """Whether folder ``d`` is laid out as LJSpeech: ``metadata.csv`` beside ``wavs/`` (an M-AILABS book too)."""
    return (d / "metadata.csv").is_file() and (d / "wavs").is_dir()


@PROTOCOLS.register("ljspeech", config=LJSpeechConfig)
@table_columns("language")
def read_ljspeech(cfg: LJSpeechConfig, **_: object) -> UtteranceTable:
    """LJSpeech metadata.csv (id|text|normalized text) + wavs/<id>.wav."""
    root = require_dir(cfg.root, "LJSpeech")
    meta = require_file(root / "metadata.csv", "LJSpeech metadata.csv")
    book = mailabs_book(root)
    speaker, language = (book.speaker, book.language) if book is not None else ("LJ", "en")
    records = []
    # split on '|' by hand: transcripts contain quotes that a CSV reader would interpret
    for lineno, line in iter_lines(meta):
        fields = line.split("|")
        if len(fields) not in (2, 3) or not fields[0]:
            raise located(meta, lineno, f"expected id|transcription|normalized transcription, got {line!r}")
        utt = fields[0]
        records.append(
            _bona(utt, str(root / "wavs" / f"{utt}.wav"), speaker, cfg.corpus, cfg.corpus, language=language)
        )
    return build_table(records, meta)


# --- VCTK -------------------------------------------------------------------------------------


@dataclass
class VCTKConfig:
    root: str
    mic: Literal["mic1", "mic2", "both"] = "mic1"  # 0.92 release only: which microphone
    corpus: str = "vctk"


@PROTOCOLS.register("vctk", config=VCTKConfig)
@table_columns("language")
def read_vctk(cfg: VCTKConfig, **_: object) -> UtteranceTable:
    """VCTK wav48_silence_trimmed/<spk>/*_mic1.flac (0.92) or wav48/<spk>/*.wav (0.80)."""
    root = require_dir(cfg.root, "VCTK")
    if (root / "wav48_silence_trimmed").is_dir():
        audio, mics = root / "wav48_silence_trimmed", ("mic1", "mic2") if cfg.mic == "both" else (cfg.mic,)
    elif (root / "wav48").is_dir():
        if cfg.mic != "mic1":
            # 0.80 has one recording per utterance: mic2 (or both) read its files as if chosen, without a word
            raise ProtocolError(
                f"{root}: mic {cfg.mic!r}: this VCTK copy is the 0.80 release (wav48/), one recording per utterance; "
                "the mic1/mic2 choice is the 0.92 release's (wav48_silence_trimmed/): leave mic at mic1"
            )
        audio, mics = root / "wav48", None
    else:
        raise ProtocolError(f"{root}: no wav48_silence_trimmed/ or wav48/ folder (VCTK)")
    records = []
    for f in list_audio_files(audio):
        if mics is not None and not any(f.stem.endswith(f"_{m}") for m in mics):
            continue
        speaker = f.parent.name
        records.append(_bona(f.stem, str(f), speaker, cfg.corpus, cfg.corpus, language="en"))
    return build_table(records, audio)


# --- Common Voice -----------------------------------------------------------------------------


@dataclass
class CommonVoiceConfig:
    root: str  # a language folder (holding clips/ and the .tsv files)
    splits: list[str] = field(default_factory=lambda: ["validated"])  # tsv names without .tsv
    corpus: str = "common_voice"


@PROTOCOLS.register("common_voice", config=CommonVoiceConfig)
@table_columns("partition", "language")
def read_common_voice(cfg: CommonVoiceConfig, **_: object) -> UtteranceTable:
    """Common Voice <split>.tsv (client_id, path, ...) + clips/<path>; duplicates across splits kept once."""
    root = require_dir(cfg.root, "Common Voice")
    clips = root / "clips"
    # releases without a locale column: the language folder's real name, also for "." (reading from inside it)
    language_folder = Path(os.path.abspath(root)).name
    _check_not_empty(root, cfg.splits, (p.stem for p in sorted(root.glob("*.tsv"))))
    records, seen = [], set()
    for split in cfg.splits:
        tsv = root / f"{split}.tsv"
        rows = iter_csv(
            tsv, delimiter="\t", required=("client_id", "path"), what="Common Voice tsv", quoting=csv.QUOTE_NONE
        )
        for lineno, row in rows:
            name = row["path"]
            if not name:
                raise located(tsv, lineno, "empty path")
            utt = os.path.splitext(name)[0]
            if utt in seen:  # validated.tsv contains train/dev/test
                continue
            seen.add(utt)
            language = row.get("locale") or language_folder
            records.append(
                _bona(
                    utt, str(clips / name), row["client_id"], cfg.corpus, cfg.corpus, partition=split, language=language
                )
            )
    return build_table(records, root)
