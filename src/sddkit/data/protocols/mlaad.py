"""MLAAD (Multi-Language Audio Anti-Spoofing Dataset) plus optional M-AILABS bona fide speech.

MLAAD layout: ``<root>/fake/<language>/<model folder>/*.wav`` with a pipe-separated ``meta.csv``
per model folder, header ``path|original_file|language|is_original_language|duration|
training_data|model_name|architecture|transcript`` (newer releases append ``reference_speaker``).
``path`` is relative to the MLAAD root (``./fake/de/<model>/<file>.wav``); ``original_file`` is the
M-AILABS utterance whose text was synthesised (``de_DE/by_book/female/<speaker>/<book>/wavs/<f>.wav``).
``attack`` = ``model_name``; a model folder without ``meta.csv`` is listed from its files
(attack = folder name); a bona fide folder (``real/``, ``bonafide/``, ``genuine/``) in the tree is refused, as
another corpus (Fake-or-Real, a ``bonafide/`` + ``spoof/`` folder) named ``format: mlaad``. ``meta.csv`` is read one
row per line: a transcript that opens a quote and never closes it (``"Hallo``) ends with its line instead of taking
the rows after it into its text.

MLAAD holds only spoofs: its bona fide counterpart is M-AILABS, laid out
``<lang>_<REGION>/by_book/{female,male}/<speaker>/<book>/wavs/*.wav`` (and ``by_book/mix/<book>/wavs``).
Pass it as ``bonafide_root`` (the folder holding ``<lang>_<REGION>/`` or one such folder; an audio file there outside
a ``by_book/`` folder is refused: every file under it is read as bona fide);
``bonafide: referenced`` keeps only the M-AILABS files some MLAAD row names as ``original_file``
(same texts on both sides), ``all`` keeps every file. ``pair_id`` is the M-AILABS reader
(``de_DE/<speaker>``, or ``de_DE/mix/<book>``) of a bona fide file and of the text a spoof
re-synthesises, so group folds keep a reader's recordings and every synthesis of their texts together.

Languages are ISO 639-1 codes (``de``, as MLAAD's folders and M-AILABS' ``de_DE`` name them); an English
language name (``German``, as some copies name their folders or ``meta.csv`` rows) means its code, in
``languages``, in a folder's name and in the ``language`` column alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    build_table,
    iter_csv,
    list_audio_files,
    located,
    relative_id,
    require_dir,
    table_columns,
)
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError


@dataclass
class MLAADConfig:
    root: str  # the MLAAD folder holding fake/ (or the fake/ folder itself)
    bonafide_root: str | None = None  # an M-AILABS root: <lang>/by_book/... (or one <lang> folder)
    bonafide: Literal["all", "referenced"] = "all"
    languages: list[str] | None = None  # ISO codes as MLAAD's folders ("de", "en", ...) or names ("German")
    corpus: str = "mlaad"


# English names of the languages of MLAAD (v1-v9) and M-AILABS -> ISO 639-1 code
LANGUAGE_CODES: dict[str, str] = {
    "arabic": "ar",
    "bengali": "bn",
    "bulgarian": "bg",
    "catalan": "ca",
    "chinese": "zh",
    "croatian": "hr",
    "czech": "cs",
    "danish": "da",
    "dutch": "nl",
    "english": "en",
    "estonian": "et",
    "farsi": "fa",
    "finnish": "fi",
    "french": "fr",
    "german": "de",
    "greek": "el",
    "gujarati": "gu",
    "hebrew": "he",
    "hindi": "hi",
    "hungarian": "hu",
    "icelandic": "is",
    "indonesian": "id",
    "irish": "ga",
    "italian": "it",
    "japanese": "ja",
    "korean": "ko",
    "latvian": "lv",
    "lithuanian": "lt",
    "malay": "ms",
    "maltese": "mt",
    "norwegian": "no",
    "persian": "fa",
    "polish": "pl",
    "portuguese": "pt",
    "romanian": "ro",
    "russian": "ru",
    "slovak": "sk",
    "slovenian": "sl",
    "spanish": "es",
    "swahili": "sw",
    "swedish": "sv",
    "tamil": "ta",
    "thai": "th",
    "turkish": "tr",
    "ukrainian": "uk",
    "urdu": "ur",
    "vietnamese": "vi",
    "welsh": "cy",
}


def language_code(name: str) -> str:
    """A language as its lower-case code: ``German``/``german``/``DE`` -> ``de``; an unknown name stays, lower-cased
    (``zh-CN`` -> ``zh-cn``), so a folder and a ``languages`` entry that differ in case still meet."""
    text = name.strip().lower()
    return LANGUAGE_CODES.get(text, text)


def mailabs_key(path: str | PurePosixPath) -> str:
    """Comparable key of an M-AILABS path: from the language folder on (``de_DE/by_book/...``)."""
    parts = [p for p in PurePosixPath(str(path).replace("\\", "/")).parts if p not in (".", "/")]
    if "by_book" in parts:
        i = parts.index("by_book")
        parts = parts[max(i - 1, 0) :]
    return "/".join(parts)


def mailabs_group(key: str) -> str:
    """The reader of an M-AILABS key: ``de_DE/<speaker>`` (``by_book/<gender>/<speaker>/<book>/wavs/f``),
    ``de_DE/mix/<book>`` for the mixed-speaker books, '' for any other path."""
    parts = key.split("/")
    if len(parts) < 5 or parts[1] != "by_book":
        return ""
    if parts[2] == "mix":
        return f"{parts[0]}/mix/{parts[3]}"
    return f"{parts[0]}/{parts[3]}" if len(parts) >= 7 else ""


def _float_or_nan(value: str, meta: Path, lineno: int) -> float:
    if value in ("", "-"):
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise located(meta, lineno, f"duration {value!r} is not a number") from None


def _fake_dir(root: Path) -> Path:
    return root / "fake" if (root / "fake").is_dir() else root


def _model_dirs(fake: Path, languages: set[str] | None) -> list[tuple[str, Path]]:
    """(language code, model folder) of every model folder in a selected language folder."""
    out = []
    for lang_dir in sorted(p for p in fake.iterdir() if p.is_dir()):
        lang = language_code(lang_dir.name)
        if languages is not None and lang not in languages:
            continue
        out.extend((lang, m) for m in sorted(p for p in lang_dir.iterdir() if p.is_dir()))
    return out


def _check_languages(fake: Path, wanted: list[str] | None) -> None:
    """Each wanted language (a code or a name) must have a language folder (named by code or by name)."""
    if wanted is None:
        return
    folders = sorted(p.name for p in fake.iterdir() if p.is_dir())
    present = {language_code(f) for f in folders}
    missing = [w for w in dict.fromkeys(wanted) if language_code(w) not in present]
    if missing:
        raise ProtocolError(
            f"{fake}: no languages {missing} in this protocol; languages present: {', '.join(folders) or 'none'}"
        )


def _read_model_meta(meta: Path, model_dir: Path, root: Path, lang: str, corpus: str) -> list[dict]:
    records = []
    first: dict[Path, int] = {}  # file -> line of meta.csv that listed it
    for lineno, row in iter_csv(
        meta, delimiter="|", required=("path", "model_name"), what="MLAAD meta.csv", one_line_records=True
    ):
        if not row["path"]:
            raise located(meta, lineno, "empty path")
        rel = PurePosixPath(row["path"].replace("\\", "/"))
        # `path` is relative to the MLAAD root; if it points elsewhere (moved copies), trust the folder
        candidate = root / Path(*[p for p in rel.parts if p != "."])
        path = candidate if candidate.parent == model_dir else model_dir / rel.name
        if path in first:
            raise located(meta, lineno, f"{row['path']!r} is the file of line {first[path]} again")
        first[path] = lineno
        records.append(
            {
                "utt_id": relative_id(path, root),
                "path": str(path),
                "label": "spoof",
                "attack": row["model_name"] or model_dir.name,
                "source": corpus,
                "speaker": row.get("reference_speaker", ""),
                "corpus": corpus,
                "duration_s": _float_or_nan(row.get("duration", ""), meta, lineno),
                "attack_type": "tts",
                "language": language_code(row.get("language") or lang),
                "architecture": row.get("architecture", ""),
                "training_data": row.get("training_data", ""),
                "is_original_language": row.get("is_original_language", ""),
                "original_file": row.get("original_file", ""),
                "pair_id": mailabs_group(mailabs_key(row["original_file"])) if row.get("original_file") else "",
            }
        )
    return records


# the columns MLAAD's tables add, from its meta.csv files (or the folder names) and M-AILABS' books
_MLAAD_COLUMNS = (
    *("attack_type", "language", "architecture", "training_data", "is_original_language", "original_file"),
    "pair_id",
)


# folder names that mean bona fide speech in the layouts beside MLAAD's (Fake-or-Real's real/, a bonafide/ folder)
_BONAFIDE_FOLDERS = {"real", "bonafide", "bona-fide", "bona_fide", "genuine"}


def _list_model_dir(model_dir: Path, root: Path, lang: str, corpus: str) -> list[dict]:
    files = list_audio_files(model_dir)
    # MLAAD holds only spoofs: a bona fide folder below a "model" folder is another corpus read as MLAAD (a
    # Fake-or-Real tree named `format: mlaad` labelled its real/ recordings spoof, attack "training", unsaid)
    for f in files:
        below = f.relative_to(model_dir.parent.parent).parts[:-1]  # <language>/<model>/... below fake/
        inner = [i for i, p in enumerate(below) if p.lower() in _BONAFIDE_FOLDERS]
        if inner:
            folder = model_dir.parent.parent.joinpath(*below[: inner[0] + 1])
            raise ProtocolError(
                f"{folder}: a bona fide folder where MLAAD has a model folder's synthesised files "
                "(fake/<language>/<model>/); this is not an MLAAD tree: read it with its own format (fake_or_real "
                "for Fake-or-Real, folder for bonafide/ + spoof/, or leave the format out to detect it)"
            )
    return [
        {
            "utt_id": relative_id(f, root),
            "path": str(f),
            "label": "spoof",
            "attack": model_dir.name,
            "source": corpus,
            "speaker": "",
            "corpus": corpus,
            "attack_type": "tts",
            "language": lang,
        }
        for f in files
    ]


def _mailabs_records(bona_root: Path, languages: set[str] | None, referenced: set[str] | None) -> list[dict]:
    records = []
    for f in list_audio_files(bona_root):
        # from the absolute path: bona_root may be one language's folder (de_DE, as each archive unpacks),
        # whose name is the language part of the key
        key = mailabs_key(f.as_posix())
        if "by_book" not in key.split("/"):
            key = mailabs_key(f.relative_to(bona_root).as_posix())
        if "by_book" not in key.split("/"):
            # every audio file under bonafide_root became bona fide: a wrong root (Fake-or-Real, LJSpeech, a folder
            # holding MLAAD's fake/ too) gave its spoofs the label bonafide and its folders as languages, unsaid
            raise ProtocolError(
                f"{f}: not in an M-AILABS book folder (<lang>_<REGION>/by_book/{{female,male,mix}}/...); "
                f"bonafide_root {str(bona_root)!r} must be the M-AILABS folder holding <lang>_<REGION>/ (de_DE/, "
                "en_US/, ...) or one such folder, holding no other corpus"
            )
        if referenced is not None and key not in referenced:
            continue
        parts = key.split("/")
        lang = parts[0].split("_")[0].lower()
        if languages is not None and lang not in languages:
            continue
        # <lang>/by_book/<gender>/<speaker>/<book>/wavs/<f> ; mix recordings have no speaker level
        speaker = parts[3] if len(parts) >= 7 and parts[1] == "by_book" and parts[2] != "mix" else ""
        records.append(
            {
                "utt_id": "m-ailabs/" + relative_id(f, bona_root),
                "path": str(f),
                "label": "bonafide",
                "attack": "bonafide",
                "source": "m-ailabs",
                "speaker": speaker,
                "corpus": "m-ailabs",
                "language": lang,
                "pair_id": mailabs_group(key),
            }
        )
    return records


@PROTOCOLS.register("mlaad", config=MLAADConfig)
@table_columns(*_MLAAD_COLUMNS)
def read_mlaad(cfg: MLAADConfig, **_: object) -> UtteranceTable:
    """MLAAD fake/<language>/<model>/ (+ meta.csv), optionally with M-AILABS bona fide speech."""
    root = require_dir(cfg.root, "MLAAD")
    fake = _fake_dir(root)
    base = fake.parent if fake != root else root
    languages = {language_code(w) for w in cfg.languages} if cfg.languages is not None else None
    if cfg.languages is not None and not cfg.languages:  # was "no MLAAD model folders found", beside the folders
        raise ProtocolError(
            f"{fake}: languages [] keeps no language; list those to read (e.g. [de, en]), or give null for every one"
        )
    if fake.is_dir():
        _check_languages(fake, cfg.languages)
    records: list[dict] = []
    for lang, model_dir in _model_dirs(fake, languages):
        meta = model_dir / "meta.csv"
        if meta.is_file():
            records.extend(_read_model_meta(meta, model_dir, base, lang, cfg.corpus))
        else:
            records.extend(_list_model_dir(model_dir, base, lang, cfg.corpus))
    if not records:
        raise ProtocolError(f"{fake}: no MLAAD model folders (fake/<language>/<model>/) found")
    if cfg.bonafide_root is not None:
        bona_root = require_dir(cfg.bonafide_root, "M-AILABS")
        referenced = None
        if cfg.bonafide == "referenced":
            referenced = {mailabs_key(r["original_file"]) for r in records if r.get("original_file")}
        bona = _mailabs_records(bona_root, languages, referenced)
        if not bona:
            raise ProtocolError(f"{bona_root}: no M-AILABS bona fide files selected (bonafide={cfg.bonafide!r})")
        records.extend(bona)
    return build_table(records, root)
