"""Tell a protocol's format from a file's first line or a folder's layout.

Files: an sddkit utterance table (``utt_id`` and ``label`` columns, or Parquet), the sddbench
manifest, a plain ``path,label`` CSV (also ``;``- or tab-separated), In-the-Wild ``meta.csv``,
FakeAVCeleb ``meta_data.csv``, Common Voice ``*.tsv``, LJSpeech ``metadata.csv`` and, by their
whitespace-separated field layout, ASVspoof 2019 LA/PA (5 fields), 2021 LA (8) / DF (13; the stage-1 keys of
both tracks have 8, told apart by the trial id) / PA (12; its stage-1 key 7),
ASVspoof 5 (10, or the 6-field pre-release), the ASVspoof 5 evaluation package's keys (a ``filename<TAB>cm-label``
header, or ``SPEAKER UTT SCORE KEY`` lines with KEY bonafide/spoof or target/nontarget/spoof) and ADD 2022
(``<file> genuine|fake``). Folders:
sddbench (``manifest.csv``), generic ``bonafide/``+``spoof/``, FakeAVCeleb, In-the-Wild, LJSpeech,
VCTK, Common Voice, MLAAD, WaveFake (``generated_audio/``), LibriSpeech, Fake-or-Real.
Anything else is a :class:`ProtocolError` that says what was seen and lists the formats; ASVspoof files
no reader takes (ASVspoof 5 track-2 trial lists, the 2021 LA and PA ASV keys, ASV enrolment lists, the CM and
ASV score files of ASVspoof 2019/2021 given as a protocol) and a ``meta.csv`` of another format in a folder are
named as such.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from sddkit.data.protocols._common import BONAFIDE_SPOOF_WORDS, header_fields, misspelt_columns
from sddkit.data.protocols.asvspoof import (
    ASV2021_TRIAL_ID,
    asv2019_trial_error,
    asvspoof5_key_header,
    is_keyed_score_line,
    is_number,
)
from sddkit.data.protocols.bonafide import is_ljspeech_layout, mailabs_book
from sddkit.data.protocols.fake_or_real import find_for_splits
from sddkit.data.protocols.fakeavceleb import FAKEAVCELEB_CATEGORIES, FAKEAVCELEB_META_COLUMNS
from sddkit.data.protocols.folder import label_folders
from sddkit.data.protocols.labels_csv import labels_csv_delimiter
from sddkit.data.protocols.sddbench import SDDBENCH_REQUIRED
from sddkit.data.protocols.wavefake import wavefake_generated_dir
from sddkit.data.text import open_text
from sddkit.errors import ProtocolError

_LABELS = {"bonafide", "spoof"}
_TRIM = {"trim", "notrim"}
_ASV5_ID = re.compile(r"^[TDE]_\d+$")
# folders of the ASVspoof 5 release: the audio archives unpack into flac_T/, flac_D/, flac_E_eval/
_ASV5_FOLDERS = ("flac_T", "flac_D", "flac_E_eval", "ASVspoof5_protocols")
_NAME_THE_FORMAT = (
    "name the format explicitly (`format:` in recipes and read_protocol, `--protocol-format` in `sdd eval`, "
    "`sdd compare`, `sdd robustness`, `sdd calibrate` and `sdd fuse`; `sdd list protocol` lists them)"
)


def _first_line(path: Path) -> tuple[int, str] | None:
    try:
        with open_text(path, strict=True) as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if line and not line.startswith("#"):
                    return lineno, line
    except UnicodeDecodeError:
        raise ProtocolError(f"{path}: not a UTF-8 text protocol (and not .parquet); cannot tell its format") from None
    return None


def _csv_header(line: str, delimiter: str) -> set[str]:
    return {h.strip() for h in next(csv.reader([line], delimiter=delimiter))}


def _is_mlaad_header(line: str) -> bool:
    return {"path", "model_name"} <= {h.strip() for h in line.split("|")}


def _mlaad_meta_error(path: Path) -> ProtocolError:
    return ProtocolError(f"{path}: an MLAAD meta.csv; read the MLAAD root folder (holding fake/) instead")


class MailabsBookError(ProtocolError):
    """Detection's refusal of an M-AILABS book folder (or its ``metadata.csv``) as LJSpeech: its labels would be
    wrong, its files are right (``sdd score`` lists them from it, read with ``format="ljspeech"``)."""


def _refuse_mailabs_book(d: Path) -> None:
    """An M-AILABS book folder (``<lang>/by_book/<gender>/<speaker>/<book>/``) holds ``metadata.csv`` and ``wavs/``
    as LJSpeech does: read as LJSpeech, its German or French readers became one English speaker ``LJ`` of corpus
    ``ljspeech``."""
    book = mailabs_book(d)
    if book is not None:
        lang = book.locale
        raise MailabsBookError(
            f"{d}: an M-AILABS book folder ({lang}/by_book/...), not LJSpeech: read M-AILABS as MLAAD's bona fide "
            "speech (format mlaad, options {bonafide_root: <the folder holding " + lang + "/>}), or this book alone "
            "with format ljspeech (speaker and language then come from its path; set options {corpus: m-ailabs})"
        )


def _detect_headed(path: Path, line: str) -> str | None:
    if asvspoof5_key_header(line) is not None:  # filename<TAB>cm-label: the ASVspoof 5 package's CM key
        return "asvspoof5_key"
    comma = _csv_header(line, ",")
    if {"utt_id", "label"} <= comma:
        return "utterance_table"
    if set(SDDBENCH_REQUIRED) <= comma:
        return "sddbench"
    if {"file", "speaker", "label"} <= comma:
        return "in_the_wild"
    # parsed as CSV, as its reader parses it: a header with quoted names ("source","target1",...) is one too
    names = [h.strip() for h in next(csv.reader([line]))]
    if names[: len(FAKEAVCELEB_META_COLUMNS)] == list(FAKEAVCELEB_META_COLUMNS):
        return "fakeavceleb"
    if {"path", "label"} <= comma:
        return "labels_csv"
    if "score" in comma and comma & {"path", "utt_id"}:  # e.g. `sdd eval --scores P --protocol S`, swapped
        raise ProtocolError(
            f"{path}: a score file (columns {line[:80]!r}), not a protocol: it has no label column; a protocol "
            "labels each file (`sdd eval`/`sdd compare` take score files as --scores/--baseline/--system)"
        )
    if {"client_id", "path"} <= set(line.split("\t")):
        return "common_voice"
    if _is_mlaad_header(line):
        raise _mlaad_meta_error(path)
    if path.name == "metadata.csv" and len(line.split("|")) in (2, 3):
        _refuse_mailabs_book(path.parent)
        return "ljspeech"
    if labels_csv_delimiter(line) is not None:  # path;label (spreadsheet export) or path<TAB>label
        return "labels_csv"
    return None


_ASV_KEYS = {"target", "nontarget"}
# an ASVspoof 2019 / ASVspoof 5 utterance id (LA_D_1047731, D_A0000000316: ASVspoof 5's enrolment utterances)
_UTTERANCE_ID = re.compile(r"^(?:(?:LA|PA)_)?[TDE]_A?\d+$")


def _pa2021_key(tokens: list[str]) -> str:
    """The KEY of a line of an ASVspoof 2021 PA key, lower-cased ('' for any other line): the full CM or ASV key
    (12 fields, KEY tenth, TRIM eleventh) or a stage-1 key (7 fields: the trial second, KEY fifth, PHASE last)."""
    if len(tokens) == 12 and tokens[10] in _TRIM:
        key = tokens[9].lower()
    elif len(tokens) == 7 and tokens[1].startswith("PA_E_"):
        key = tokens[4].lower()
    else:
        return ""
    return key if key in _LABELS | _ASV_KEYS else ""


def _is_enrolment_list(tokens: list[str]) -> bool:
    """``SPEAKER UTT,UTT,...``: an ASV enrolment list (ASVspoof5.dev.enroll.txt, ASVspoof 2019's *.trn.txt)."""
    if len(tokens) != 2 or "," not in tokens[1]:
        return False
    ids = [u for u in tokens[1].split(",") if u]
    return bool(ids) and all(_UTTERANCE_ID.match(u) for u in ids)  # all() of no ids: "x.wav ," is no list


def _refuse_unreadable(path: Path, lineno: int, tokens: list[str]) -> None:
    """Known ASVspoof files that no reader takes: a clear error, not the wrong reader or "cannot tell".

    ASVspoof 5's track-2 lists (``TARGET_SPEAKER FLAC GENDER ATTACK ASV_KEY``, ``D_0062 D_0000000001 F A11 spoof``)
    have the 2019 CM protocol's five fields and, on a ``spoof`` line, its last one. The ASVspoof 2019 ASV protocols
    (``LA_0007 LA_E_1012823 A07 spoof``), the 2021 LA and PA ASV keys (the CM keys' layouts, KEY
    ``target``/``nontarget``/``spoof``; the PA CM keys, ``PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spoof notrim
    eval`` and the stage-1 key's 7 fields, read as ``asvspoof2021_pa``) and the ASV enrolment lists
    (``D_4660 D_A0000000316,D_A0000000725``) are not CM protocols. The layouts are those the ASVspoof 2021
    evaluation package reads (``eval-package/config.py``, ``package-stage-1/evaluate.py``) and ASVspoof 5's README
    describes."""
    asv2019 = asv2019_trial_error(path, lineno, tokens)
    if asv2019 is not None:
        raise asv2019
    pa_key = _pa2021_key(tokens)
    if pa_key in _ASV_KEYS:
        raise ProtocolError(
            f"{path}:{lineno}: an ASVspoof 2021 PA speaker-verification (ASV) key (KEY {pa_key!r}), not a "
            "countermeasure (CM) key; read keys/PA/CM/trial_metadata.txt (stage-1 keys: keys/CM/trial_metadata.txt) "
            "instead"
        )
    if len(tokens) == 8 and tokens[5].lower() in _ASV_KEYS and tokens[6] in _TRIM | {"-"}:
        # the CM key's layout: a first line with a `spoof` key is taken for the CM key, and its reader names the
        # file at the first target/nontarget line; a first line with one of those was "cannot tell the format"
        raise ProtocolError(
            f"{path}:{lineno}: an ASVspoof 2021 speaker-verification (ASV) key (KEY {tokens[5]!r}), not a "
            "countermeasure (CM) key; read keys/LA/CM/trial_metadata.txt (stage-1 keys: keys/CM/trial_metadata.txt) "
            "instead"
        )
    if _is_enrolment_list(tokens):
        raise ProtocolError(
            f"{path}:{lineno}: an ASV enrolment list (SPEAKER UTTERANCE,UTTERANCE,...: a speaker's enrolment "
            "utterances, no bona fide/spoof keys), not a countermeasure protocol; read the CM protocol "
            "(ASVspoof 2019 *.cm.*.txt, ASVspoof5.<train|dev.track_1|eval.track_1>.tsv) instead"
        )
    if (
        len(tokens) == 5
        and _ASV5_ID.match(tokens[1])
        and tokens[2] in ("F", "M")
        and tokens[4].lower() in ("target", "nontarget", "spoof")
    ):
        raise ProtocolError(
            f"{path}:{lineno}: an ASVspoof 5 track-2 (SASV) trial list (TARGET_SPEAKER FLAC_FILE_NAME GENDER "
            "ATTACK_LABEL ASV_KEY), not a countermeasure protocol; read ASVspoof5.<dev|eval>.track_1.tsv or "
            "ASVspoof5.train.tsv instead"
        )


def _detect_fields(tokens: list[str]) -> str | None:
    n = len(tokens)
    if n == 5 and tokens[4].lower() in _LABELS:
        return "asvspoof2019_la"
    if _pa2021_key(tokens) in _LABELS:  # SPEAKER UTT + 7 replay factors + KEY TRIM PHASE, or stage 1's 7 fields
        return "asvspoof2021_pa"
    if n in (8, 13) and tokens[5].lower() in _LABELS and tokens[6] in _TRIM | {"-"}:
        # the stage-1 keys of both tracks: '- DF_E_2000011 - - - spoof - progress' (TRIM unknown, '-'); the track
        # is in the trial id
        return "asvspoof2021_df" if n == 13 or tokens[1].startswith("DF_") else "asvspoof2021_la"
    if n == 10 and tokens[8].lower() in _LABELS:
        return "asvspoof5"
    if n == 6 and tokens[5].lower() in _LABELS and _ASV5_ID.match(tokens[1]):
        return "asvspoof5"
    if n == 2 and tokens[1].lower() in {"genuine", "fake"}:
        return "add2022"
    if is_keyed_score_line(tokens):  # SPEAKER UTT SCORE KEY: the ASVspoof 5 package's CM or SASV score file
        return "asvspoof5_key"
    return None


def _table_header_error(path: Path, lineno: int, fields: list[str], separator: str) -> ProtocolError | None:
    """A hand-written table the detection cannot take because of its header: one of the key columns misspelt
    (``path,lable``) or missing, or no header at all (``a.wav,bonafide`` on the first line). Said as such, rather
    than as a line of an unknown format."""
    names = [f.lower() for f in fields]
    # a line naming a column is a header even with a label word among its names (`path,spoof`: a 0/1 column)
    if any(n in BONAFIDE_SPOOF_WORDS for n in names) and not {"path", "label", "utt_id"} & set(names):
        return ProtocolError(
            f"{path}:{lineno}: the first line {separator.join(fields)!r} holds a label but is not a header; a plain "
            "labels CSV starts with a header line naming its columns, e.g. path,label"
        )
    missing = [c for c in ("path", "label") if c not in names]
    if "utt_id" in names:
        missing = [c for c in missing if c != "path"]  # an utterance table: utt_id + label
    typo = misspelt_columns(missing, fields)
    if not missing or (not typo and len(missing) == 2):
        return None  # names nothing a labels table has: another format, said by the caller's message
    return ProtocolError(
        f"{path}:{lineno}: a table header {fields} without column(s) {missing}{typo}; a plain labels CSV "
        "(labels_csv) needs the columns path and label (an utterance table utt_id and label)"
    )


_GIVE_AS_SCORES = (
    "sdd eval takes a score file as --scores, and the protocol labelling its trials as --protocol (ASVspoof 2019: "
    "ASVspoof2019.<LA|PA>.cm.eval.trl.txt; 2021: keys/<track>/CM/trial_metadata.txt)"
)


def _score_file_error(path: Path, lineno: int, tokens: list[str]) -> ProtocolError | None:
    """A ProtocolError for a first line of an ASVspoof score file given as a protocol (``--scores`` and
    ``--protocol`` swapped, the organisers' ASV scores for the CM key), None for any other line. Such a line was
    "cannot tell the protocol format", advising to name one: none reads it, as it labels no trial (or a CM score
    file's, whose labels its protocol has)."""
    where = f"{path}:{lineno}: {' '.join(tokens)[:120]!r}"
    kind = tokens[1].lower() if len(tokens) == 3 else ""
    if kind in ("target", "nontarget", "non-target", "spoof") and is_number(tokens[2]):
        return ProtocolError(
            f"{where}: an ASV score file (SOURCE KEY SCORE, as ASVspoof 2019's ASVspoof2019.LA.asv.eval.gi.trl.scores."
            "txt), the speaker-verification system's scores, not a countermeasure protocol; sdd eval takes it as "
            "--asv-scores, with the CM protocol (ASVspoof2019.<LA|PA>.cm.eval.trl.txt) as --protocol"
        )
    if len(tokens) == 3 and ASV2021_TRIAL_ID.match(tokens[1]) and is_number(tokens[2]):
        return ProtocolError(
            f"{where}: an ASVspoof 2021 ASV score file (SPEAKER UTT SCORE, keys/<track>/ASV/ASVTorch_Kaldi/score.txt), "
            "not a countermeasure key; the CM key is keys/<track>/CM/trial_metadata.txt, and sdd eval takes these ASV "
            "scores as --asv-scores, each appended to its line of the ASV key keys/<track>/ASV/trial_metadata.txt "
            "(docs/cli.md, sdd eval)"
        )
    if len(tokens) == 2 and is_number(tokens[1]):
        return ProtocolError(
            f"{where}: a score file (UTT SCORE), not a protocol: it labels no trial; {_GIVE_AS_SCORES}"
        )
    if len(tokens) == 4 and tokens[2].lower() in _LABELS and is_number(tokens[3]):
        return ProtocolError(
            f"{where}: a countermeasure score file (UTT SOURCE KEY SCORE, ASVspoof 2019's score layout), not a "
            f"protocol; {_GIVE_AS_SCORES}"
        )
    return None


def detect_file_format(path: Path) -> str:
    if path.suffix.lower() in (".parquet", ".pq"):
        return "utterance_table"
    first = _first_line(path)
    if first is None:
        raise ProtocolError(f"{path}: empty file; cannot tell its protocol format")
    lineno, line = first
    fmt = _detect_headed(path, line)
    if fmt is None:
        _refuse_unreadable(path, lineno, line.split())
        fmt = _detect_fields(line.split())
    if fmt is None:
        fields, separator = header_fields(line)
        header_error = _table_header_error(path, lineno, fields, separator) if separator is not None else None
        if header_error is not None:
            raise header_error
        score_error = _score_file_error(path, lineno, line.split())
        if score_error is not None:
            raise score_error
        raise ProtocolError(
            f"{path}:{lineno}: cannot tell the protocol format from this line ({len(fields)} fields): "
            f"{line[:120]!r}; {_NAME_THE_FORMAT}"
        )
    return fmt


def _is_mlaad(d: Path) -> bool:
    # the MLAAD root holding fake/, or that fake/ folder itself (the reader takes either)
    # by its real name, also when read as "." from inside fake/
    fake = d if Path(os.path.abspath(d)).name == "fake" else d / "fake"
    if not fake.is_dir() or (Path(os.path.abspath(fake)).parent / "real").is_dir():
        return False
    return any(m.is_dir() for lang in fake.iterdir() if lang.is_dir() for m in lang.iterdir())


def _is_librispeech(d: Path) -> bool:
    return any(d.glob("*/*/*.trans.txt")) or any(d.glob("*/*/*/*.trans.txt"))


# protocol files of the corpora distributed as audio folders plus label files, relative to their corpus folder:
# ASVspoof 2019 LA/PA CM protocols, the ASVspoof 2021 keys (full and stage-1), ADD 2022 and ADD 2023 label files
_LABEL_FILE_GLOBS = (
    "ASVspoof2019_*_cm_protocols/ASVspoof2019.*.cm.*.txt",
    "*/ASVspoof2019_*_cm_protocols/ASVspoof2019.*.cm.*.txt",
    "ASVspoof2019.*.cm.*.txt",
    "keys/*/CM/trial_metadata.txt",
    "keys/CM/trial_metadata.txt",
    "*-keys-*/keys/*/CM/trial_metadata.txt",
    "label/*_label.txt",
    "*_label.txt",
    "label.txt",
    "*/label.txt",
)


def _label_files(d: Path) -> list[Path]:
    """The protocol files of a known corpus folder in ``d`` (see :data:`_LABEL_FILE_GLOBS`), in a stable order."""
    return sorted({f for pattern in _LABEL_FILE_GLOBS for f in d.glob(pattern) if f.is_file()})


def detect_folder_format(d: Path) -> str:
    manifest = d / "manifest.csv"
    if manifest.is_file():
        first = _first_line(manifest)
        if first is not None and set(SDDBENCH_REQUIRED) <= _csv_header(first[1], ","):
            return "sddbench"
    names = {label for _, label in label_folders(d)}
    has_generic = (d / "bonafide").is_dir() or (d / "spoof").is_dir() or {"bonafide", "spoof"} <= names
    if has_generic:
        return "folder"
    if any((d / c).is_dir() for c in FAKEAVCELEB_CATEGORIES):
        return "fakeavceleb"
    meta = d / "meta.csv"
    if meta.is_file():
        # an MLAAD model folder holds a (pipe-separated) meta.csv too
        first = _first_line(meta)
        if first is not None and _is_mlaad_header(first[1]):
            raise _mlaad_meta_error(meta)
        other = _detect_headed(meta, first[1]) if first is not None else None
        if other not in (None, "in_the_wild"):
            # a hand-written path,label list saved as meta.csv: In-the-Wild's reader would refuse its header
            raise ProtocolError(
                f"{meta}: a {other} file, not In-the-Wild's meta.csv (file,speaker,label); pass the file itself"
            )
        return "in_the_wild"
    if is_ljspeech_layout(d):
        _refuse_mailabs_book(d)
        return "ljspeech"
    if (d / "wav48_silence_trimmed").is_dir() or (d / "wav48").is_dir():
        return "vctk"
    if (d / "clips").is_dir() and any(d.glob("*.tsv")):
        return "common_voice"
    if _is_mlaad(d):
        return "mlaad"
    if wavefake_generated_dir(d) is not None:
        return "wavefake"
    if _is_librispeech(d):
        return "librispeech"
    if find_for_splits(d):
        return "fake_or_real"
    if (d / "ASVspoof2019_LA_cm_protocols").is_dir() or (d / "LA").is_dir():
        raise ProtocolError(f"{d}: an ASVspoof folder; pass a protocol file (e.g. ASVspoof2019.LA.cm.train.trn.txt)")
    label_files = _label_files(d)
    if label_files:
        # a corpus of protocol files the folder reader cannot take (ASVspoof 2019 PA, the 2021 keys, ADD): the
        # generic "cannot tell the corpus layout" listed formats these are none of, and named no file to pass
        raise ProtocolError(
            f"{d}: a folder of protocol files; pass one of them (its audio folder is found from it, or give it "
            f"as the `root` option): {', '.join(str(f) for f in label_files[:4])}"
        )
    if any((d / n).is_dir() for n in _ASV5_FOLDERS) or any(d.glob("ASVspoof5.*.tsv")):
        raise ProtocolError(
            f"{d}: an ASVspoof 5 folder; pass a protocol file (ASVspoof5.train.tsv, ASVspoof5.dev.track_1.tsv or "
            "ASVspoof5.eval.track_1.tsv) and this folder as the audio root"
        )
    raise ProtocolError(
        f"{d}: cannot tell the corpus layout of this folder (no manifest.csv, bonafide/+spoof/, meta.csv, "
        "FakeAVCeleb, LJSpeech, VCTK, Common Voice, MLAAD, WaveFake, LibriSpeech or Fake-or-Real structure); "
        f"{_NAME_THE_FORMAT}"
    )


def detect_format(path: str | Path) -> str:
    """The registered protocol name that reads ``path`` (a file or a folder)."""
    p = Path(path)
    if p.is_dir():
        return detect_folder_format(p)
    if not p.is_file():
        raise ProtocolError(f"{p}: no such protocol file or folder")
    return detect_file_format(p)
