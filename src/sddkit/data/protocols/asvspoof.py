"""ASVspoof protocol readers: 2019 LA/PA CM protocols, 2021 LA/DF/PA keys, ASVspoof 5 metadata.

Formats (whitespace-separated, one trial per line):

- 2019 LA CM (``ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt``)::

      SPEAKER UTTERANCE - ATTACK KEY          LA_0079 LA_T_1138215 - - bonafide

  audio ``<root>/ASVspoof2019_LA_{train,dev,eval}/flac/<utt>.flac``. The 2019 PA CM protocols
  (``PA_0079 PA_T_0000001 aaa - bonafide``: the third field is the replay environment, the attack
  is the replay configuration ``AA``..``CC``) are read by the same reader: corpus ``asvspoof2019_pa``,
  an ``environment`` column, audio in ``ASVspoof2019_PA_{train,dev,eval}/flac``.
- 2021 LA key (``keys/LA/CM/trial_metadata.txt``)::

      SPEAKER UTT CODEC TRANSMISSION ATTACK KEY TRIM PHASE
      LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval

- 2021 DF key (``keys/DF/CM/trial_metadata.txt``)::

      SPEAKER UTT CODEC SOURCE ATTACK KEY TRIM PHASE VOCODER TASK TEAM GENDER_PAIR LANGUAGE
      LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -

  audio ``<root>/ASVspoof2021_{LA,DF}_eval/flac/<utt>.flac`` (also one level deeper,
  ``ASVspoof2021_LA_eval/ASVspoof2021_LA_eval/flac``, as an archive unpacked into its own name leaves it);
  PHASE (``eval``/``progress``/``hidden``; ``hidden_track`` in the stage-1 keys) -> partition.
  The stage-1 keys of both tracks (``keys/CM/trial_metadata.txt``) hold only the key and the phase:
  ``- DF_E_2000011 - - - spoof - progress`` (8 fields, the unknown ones '-', read as ''). The DF eval
  audio comes in four archives (``ASVspoof2021_DF_eval_part00..03``); unpacked each into its own folder
  (``ASVspoof2021_DF_eval_part00/ASVspoof2021_DF_eval/flac`` or ``.../part00/flac``), every part is searched.
- 2021 PA key (``keys/PA/CM/trial_metadata.txt``; the evaluation package's ``ConfigPA.p_names``)::

      SPEAKER UTT ASV_ROOM ASV_MIC DIS_TO_ASV ATT_ROOM ATT_MIC ATT_D ATT_TO_SPK KEY TRIM PHASE
      PA_0010 PA_E_1000001 R3 M3 d4 r1 m1 s4 c4 spoof notrim eval

  each factor a column of its lower-cased name; a spoof's ``attack`` is its attacker-side factors
  (``r1_m1_s4_c4``), ``attack_type`` ``replay``. The hidden phase holds the two hidden tracks, told apart by
  TRIM (``notrim``: track 1, ``trim``: track 2), which the official evaluation scores apart, each with the ASV rates
  of its own ASV trials (the evaluation package's ``hidden1_PA``/``hidden2_PA``, the stage-1 keys' phases
  ``hidden_track_1``/``hidden_track_2``). Its trials are of partition ``hidden``, as the key writes the phase
  (``phases=["hidden"]``, ``--partitions hidden``: both tracks, as one partition); ``phases=["hidden_track_1"]``
  (or ``_2``) keeps one track, its trials then of partition ``hidden_track_1`` (``_2``), so that its figures, and
  the ASV trials of its t-DCF (:meth:`sddkit.evaluation.asv.ASVScores.of_phases`), are that track's alone.
  The stage-1 key (``keys/CM/trial_metadata.txt``) has 7 fields,
  ``- PA_E_1000004 - - bonafide - progress`` (KEY fifth, PHASE last: ``hidden_track_1``/``hidden_track_2``),
  the factors unknown. Audio ``<root>/ASVspoof2021_PA_eval/flac`` (or the archive's part folders, as for DF).
- ASVspoof 5 (``ASVspoof5.train.tsv``, ``ASVspoof5.dev.track_1.tsv``, ``ASVspoof5.eval.track_1.tsv``;
  space-separated despite the suffix)::

      SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP
      T_4850 T_0000000000 F - - - AC3 A05 spoof -

  audio ``<root>/flac_{T,D,E_eval}/<utt>.flac``. The 6-column pre-release layout
  ``SPEAKER UTT GENDER CODEC ATTACK KEY`` is read too.

Without ``root`` the reader looks for the audio folders next to the protocol (its folder and the
one above; for a 2021 key at ``keys/<track>/CM/`` also the folder holding ``keys/``); when none is
there, ``path`` is ''. Files are ``<utt>.flac``, or ``<utt>.wav`` where a
partition's folder holds a WAV copy (told once per partition, from its first trial's file). An audio folder found
under ``root`` that lacks a partition's first trial but holds another partition's files (``root`` at
``ASVspoof2019_LA_dev`` for the train protocol) is an error. The ASVspoof 2019 ASV protocols
(``SPEAKER UTTERANCE SYSTEM KEY``) are refused as such.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sddkit.data import PROTOCOLS
from sddkit.data.protocols._common import (
    ASVSPOOF2019_ATTACK_TYPES,
    ASVSPOOF_LABELS,
    Words,
    audio_path,
    build_table_rows,
    check_selected,
    holds_suffix,
    iter_lines,
    located,
    map_label,
    require_file,
    resolve_audio_dir,
    split_fields,
    table_columns,
)
from sddkit.data.table import UtteranceTable
from sddkit.errors import ProtocolError

_PARTITION_CODE = re.compile(r"(?:^|_)([TDE])_[0-9A-Za-z]")
_PARTITIONS = {"T": "train", "D": "dev", "E": "eval"}
# the folder the 2021 key archives (LA-keys-full.tar.gz, DF-keys-stage-1.tar.gz, ...) are often unpacked into
_KEYS_ARCHIVE = re.compile(r"^(LA|DF|PA)-keys", re.IGNORECASE)


def partition_from_id(utt_id: str) -> str:
    """ASVspoof ids carry the partition: LA_T_* / T_* = train, *_D_* = dev, *_E_* = eval ('' if none)."""
    m = _PARTITION_CODE.search(utt_id)
    return _PARTITIONS[m.group(1)] if m else ""


_ASV_KEYS = ("target", "nontarget")


def _cm_label(key: str, proto: Path, lineno: int) -> str:
    """A CM key (bonafide/spoof) -> label; an ASV key (target/nontarget) says which file this is instead."""
    if key.strip().lower() in _ASV_KEYS:
        raise located(
            proto,
            lineno,
            f"key {key!r} is a speaker-verification (ASV) key: this is an ASV trial list, not a countermeasure (CM) "
            "protocol; read the CM protocol (ASVspoof 2019 *.cm.*.txt, ASVspoof 2021 "
            "keys/<track>/CM/trial_metadata.txt, ASVspoof 5 *.track_1.tsv or ASVspoof5.train.tsv)",
        )
    return map_label(key, ASVSPOOF_LABELS, proto, lineno)


_ASV2019_ID = re.compile(r"^(LA|PA)_[TDE]_\d+$")
_ASV2019_SYSTEM = re.compile(r"^(bonafide|[AB]\d\d|[A-C]{2})$", re.IGNORECASE)


def asv2019_trial_error(path: Path, lineno: int, fields: list[str]) -> ProtocolError | None:
    """The error for a line of an ASVspoof 2019 ASV protocol (``ASVspoof2019.LA.asv.eval.gi.trl.txt``:
    ``LA_0007 LA_E_1012823 A07 spoof``, SPEAKER UTTERANCE SYSTEM KEY), None for any other line: such a file sits
    next to the CM protocols, and was "cannot tell the format" or "expected 5 fields, got 4"."""
    if len(fields) != 4 or not _ASV2019_ID.match(fields[1]) or is_keyed_score_line(fields):
        return None  # a number third: the ASVspoof 5 package's keyed score file (SPEAKER UTT SCORE KEY), read
    key = fields[3].lower()
    if key in _ASV_KEYS or (key == "spoof" and _ASV2019_SYSTEM.match(fields[2])):
        return located(
            path,
            lineno,
            "an ASVspoof 2019 speaker-verification (ASV) protocol (SPEAKER UTTERANCE SYSTEM KEY), not a "
            "countermeasure (CM) protocol; read ASVspoof2019.<LA|PA>.cm.<train.trn|dev.trl|eval.trl>.txt instead",
        )
    return None


class _AudioDirs:
    """Per-partition audio folder and suffix lookup, resolved once per partition (not per file).

    The suffix is ``.flac`` (as distributed) unless the folder holds the partition's first utterance,
    or else only files, as ``.wav`` (a copy converted in place).
    """

    def __init__(self, root: str | None, protocol: Path, candidates):
        self.root, self.protocol, self.candidates = root, protocol, candidates
        self._cache: dict[str, str] = {}
        self._suffix: dict[str, str] = {}

    def path(self, partition: str, lineno: int, utt: str) -> str:
        """The audio path of ``utt`` ('' when no audio folder is known)."""
        folder = self._cache.get(partition)  # a lookup per trial; resolving the folder, once per partition
        if folder is None:
            folder = self(partition, lineno)
        if not folder:
            return ""
        suffix = self._suffix.get(partition)
        if suffix is None:
            suffix = self._suffix[partition] = _audio_suffix(folder, utt)
            if self.root is not None:  # a folder found next to the protocol may serve a score-only evaluation
                _check_partition_folder(folder, utt, self.protocol, lineno)
        return audio_path(folder, utt, suffix)

    def __call__(self, partition: str, lineno: int) -> str:
        if partition not in self._cache:
            if not partition and self.root is not None:
                raise located(self.protocol, lineno, "cannot tell the partition of this trial; set `partition`")
            self._cache[partition] = resolve_audio_dir(
                self.root, self.candidates(partition), _fallback_roots(self.protocol)
            )
        return self._cache[partition]


def _fallback_roots(protocol: Path) -> list[Path]:
    """Folders searched for the audio folders when no ``root`` is given: the protocol's folder, the
    one above and, for a 2021 key at its official place (``keys/<track>/CM/trial_metadata.txt`` in the
    full keys, ``keys/CM/trial_metadata.txt`` in the stage-1 keys; unpacked next to
    ``ASVspoof2021_<track>_eval/``), the folder holding ``keys/`` and, when that is the archive's own
    folder (``LA-keys-full/keys/...``, ``DF-keys-stage-1/keys/...``, as a GUI extractor unpacks it), the one above."""
    # the folder above, lexically: Path("x.txt").parent.parent is "." again, not ".."
    roots = [protocol.parent, Path(os.path.normpath(protocol.parent / ".."))]
    parents = Path(os.path.abspath(protocol)).parents
    for depth in (1, 2):  # keys/CM/<file> (stage 1), keys/<track>/CM/<file> (full)
        if len(parents) > depth + 1 and parents[depth].name == "keys":
            holder = parents[depth + 1]
            roots.append(holder)
            if _KEYS_ARCHIVE.match(holder.name) and holder.parent != holder:
                roots.append(holder.parent)
            break
    return roots


def _check_partition_folder(folder: str, utt: str, protocol: Path, lineno: int) -> None:
    """A ProtocolError when the audio folder found under ``root`` lacks the partition's first trial and holds another
    partition's files instead: ``root`` set to ``ASVspoof2019_LA_dev`` for the train protocol (a recipe's spec
    copied) resolved to that folder's ``flac/``, and every path pointed at a file that is not there, found only when
    training loaded it."""
    code = partition_from_id(utt)
    if not code or any(os.path.isfile(os.path.join(folder, utt + s)) for s in (".flac", ".wav")):
        return
    others: set[str] = set()
    with os.scandir(folder) as entries:
        for e in itertools.islice(entries, 64):
            stem, ext = os.path.splitext(e.name)
            if ext.lower() in (".flac", ".wav") and partition_from_id(stem):
                others.add(partition_from_id(stem))
    if others and code not in others:
        raise located(
            protocol,
            lineno,
            f"the audio folder {folder} holds {'/'.join(sorted(others))} files, not this protocol's {code} trials "
            f"({utt}); the audio root must be the folder holding the partitions' folders (e.g. the LA folder "
            "holding ASVspoof2019_LA_train/, or the ASVspoof 5 folder holding flac_T/), and `partition`, when set, the "
            "trials' own",
        )


def _audio_suffix(folder: str, utt: str) -> str:
    for suffix in (".flac", ".wav"):
        if os.path.isfile(os.path.join(folder, utt + suffix)):
            return suffix
    if not holds_suffix(Path(folder), ".flac") and holds_suffix(Path(folder), ".wav"):
        return ".wav"
    return ".flac"


# --- ASVspoof 2019 LA ------------------------------------------------------------------------


@dataclass
class ASVspoof2019Config:
    """protocol: a CM protocol file; root: the LA (PA) folder (or a folder holding flac/ or the .flac files)."""

    protocol: str
    root: str | None = None
    partition: str | None = None  # train/dev/eval; by default read from the utterance id (LA_T_/LA_D_/LA_E_)
    corpus: str | None = None  # default asvspoof2019_la, or asvspoof2019_pa for PA_ utterances


def _dirs_2019(scenario: str):
    def candidates(partition: str) -> list[str]:
        name = f"ASVspoof2019_{scenario}_{partition}/flac"
        return [name, f"{scenario}/{name}", "flac", "."]

    return candidates


_LAYOUT_2019 = "SPEAKER UTTERANCE - ATTACK KEY"
# a row per trial as a tuple, not a dict: the large protocols (the 2021 DF key's 611,829 trials) took 1.3 GB that way
_COLUMNS_2019 = (
    *("utt_id", "path", "label", "attack", "source", "speaker", "corpus"),
    *("partition", "attack_type", "environment"),
)


@PROTOCOLS.register("asvspoof2019_la", config=ASVspoof2019Config)
@table_columns(*_COLUMNS_2019)
def read_asvspoof2019_la(cfg: ASVspoof2019Config, **_: object) -> UtteranceTable:
    """ASVspoof 2019 LA (or PA) CM protocol: SPEAKER UTTERANCE -|ENVIRONMENT ATTACK KEY."""
    proto = require_file(cfg.protocol, "ASVspoof 2019 protocol")
    dirs = {s: _AudioDirs(cfg.root, proto, _dirs_2019(s)) for s in ("LA", "PA")}
    words, same = Words(), Words(dash="-")
    rows, lines, any_physical = [], [], False
    for lineno, line in iter_lines(proto):
        fields = line.split()
        if len(fields) != 5:
            asv = asv2019_trial_error(proto, lineno, fields)
            if asv is not None:
                raise asv
            fields = split_fields(proto, lineno, line, 5, _LAYOUT_2019)  # raises: the field count is wrong
        speaker, utt, env, attack, key = fields
        label = ASVSPOOF_LABELS.get(key) or _cm_label(key, proto, lineno)
        partition = cfg.partition or partition_from_id(utt)
        attack = "bonafide" if label == "bonafide" else words[attack]
        physical = utt.startswith("PA_")  # PA trials: replay attacks, third field = environment
        any_physical = any_physical or physical
        corpus = cfg.corpus or ("asvspoof2019_pa" if physical else "asvspoof2019_la")
        path = dirs["PA" if physical else "LA"].path(partition, lineno, utt)
        attack_type = ("replay" if label == "spoof" else "") if physical else ASVSPOOF2019_ATTACK_TYPES.get(attack, "")
        environment = words[env] if physical else ""
        rows.append((utt, path, label, attack, corpus, same[speaker], corpus, partition, attack_type, environment))
        lines.append(lineno)
    # the environment column only where PA trials are read
    return build_table_rows(_COLUMNS_2019, rows, proto, lines, omit=() if any_physical else ("environment",))


# --- ASVspoof 2021 LA / DF --------------------------------------------------------------------


@dataclass
class ASVspoof2021Config:
    """protocol: keys/{LA,DF,PA}/CM/trial_metadata.txt (stage 1: keys/CM/...); root: folder holding
    ASVspoof2021_{LA,DF,PA}_eval/flac (or the part folders ASVspoof2021_<track>_eval_part00.. of the eval audio)."""

    protocol: str
    root: str | None = None
    # keep only these PHASE values (eval, progress, hidden; stage-1 keys: hidden_track, PA's hidden_track_1/2; the full
    # PA key's hidden_track_1/2: one of its hidden phase's two official tracks, by TRIM)
    phases: list[str] | None = None
    corpus: str | None = None  # default asvspoof2021_la / asvspoof2021_df / asvspoof2021_pa


def _dirs_2021(track: str):
    def candidates(_: str) -> list[str]:
        name = f"ASVspoof2021_{track}_eval"
        # the nested copy before the bare folder: that one exists too, and would hold no audio
        return [f"{name}/flac", f"{name}/{name}/flac", name, "flac", "."]

    return candidates


def _part_folders(base: Path, track: str) -> list[Path]:
    """The audio folders of the eval archive parts unpacked each into its own folder under ``base``
    (``ASVspoof2021_<track>_eval_partNN/flac`` or ``.../ASVspoof2021_<track>_eval/flac``), in part order."""
    name = f"ASVspoof2021_{track}_eval"
    found = []
    for part in sorted(base.glob(f"{name}_part*")):
        for sub in ("flac", f"{name}/flac"):
            if (part / sub).is_dir():
                found.append(part / sub)
                break
    return found


class _EvalAudioDirs(_AudioDirs):
    """The 2021 eval audio: one folder (as :class:`_AudioDirs`), or the folders of the eval archive's parts, each
    unpacked into its own folder; a trial's file is then looked up in all of them (together with the merged
    folder, if one exists too). A trial found in none points into the first part's folder."""

    def __init__(self, root: str | None, protocol: Path, track: str):
        super().__init__(root, protocol, _dirs_2021(track))
        self.track = track
        self._parts: list[str] | None = None
        self._index: dict[str, str] = {}

    def _find_parts(self) -> list[str]:
        bases = [Path(self.root)] if self.root is not None else _fallback_roots(self.protocol)
        for base in bases:
            parts = _part_folders(base, self.track) if base.is_dir() else []
            if parts:
                merged = [base / c for c in self.candidates("eval")[:2] if (base / c).is_dir()]
                return [str(p) for p in merged[:1] + parts]
        return []

    def path(self, partition: str, lineno: int, utt: str) -> str:
        if self._parts is None:
            self._parts = self._find_parts()
            for folder in reversed(self._parts):  # the first folder holding a trial wins
                with os.scandir(folder) as entries:
                    for e in entries:
                        stem, ext = os.path.splitext(e.name)
                        if ext.lower() in (".flac", ".wav"):
                            self._index[stem] = os.path.join(folder, e.name)
        if not self._parts:
            return super().path(partition, lineno, utt)
        return self._index.get(utt) or audio_path(self._parts[0], utt, ".flac")


_TRACK_ID = re.compile(r"^(LA|DF|PA)_E_")


def _check_track(proto: Path, lineno: int, utt: str, track: str) -> None:
    """A trial of another 2021 track (a DF_E_ id in the LA reader): the stage-1 keys of LA and DF share their
    layout, and read by the other track's reader its corpus and audio folder were silently wrong."""
    m = _TRACK_ID.match(utt)
    if m and m.group(1) != track:
        other = m.group(1)
        hint = f"read it with asvspoof2021_{other.lower()}"
        raise located(proto, lineno, f"trial {utt!r} is an ASVspoof 2021 {other} trial, not {track}; {hint}")


def _trial_label(proto: Path, lineno: int, utt: str, key: str, track: str) -> str:
    """The CM label of a 2021 ``track`` key's trial ``utt`` (KEY ``key`` as written), another track's trial refused."""
    if not utt.startswith(f"{track}_E_"):
        _check_track(proto, lineno, utt, track)
    return ASVSPOOF_LABELS.get(key) or _cm_label(key, proto, lineno)


def _in_phases(cfg: ASVspoof2021Config, seen: set[str], phase: str) -> bool:
    """Whether a trial of PHASE ``phase`` is kept (``cfg.phases``); ``seen`` collects every phase, for
    :func:`check_selected`."""
    seen.add(phase)
    return cfg.phases is None or phase in cfg.phases


_COLUMNS_2021 = ("utt_id", "path", "label", "attack", "source", "speaker", "corpus", "partition", "codec")
_LA_COLUMNS = ("transmission", "trim", "attack_type")


@PROTOCOLS.register("asvspoof2021_la", config=ASVspoof2021Config)
@table_columns(*_COLUMNS_2021, *_LA_COLUMNS)
def read_asvspoof2021_la(cfg: ASVspoof2021Config, **_: object) -> UtteranceTable:
    """ASVspoof 2021 LA key: SPEAKER UTT CODEC TRANSMISSION ATTACK KEY TRIM PHASE."""
    proto = require_file(cfg.protocol, "ASVspoof 2021 LA key")
    corpus = cfg.corpus or "asvspoof2021_la"
    dirs = _EvalAudioDirs(cfg.root, proto, "LA")
    layout = "SPEAKER UTT CODEC TRANSMISSION ATTACK KEY TRIM PHASE"
    words, same = Words(), Words(dash="-")
    rows, phases, lines = [], set(), []
    for lineno, line in iter_lines(proto):
        fields = line.split()
        if len(fields) != 8:
            if len(fields) > 1:  # another track's key (the DF key's 13 fields, the PA key's 12): said as such
                _check_track(proto, lineno, fields[1], "LA")
            fields = split_fields(proto, lineno, line, 8, layout)  # raises: the field count is wrong
        speaker, utt, codec, transmission, attack, key, trim, phase = fields
        label = _trial_label(proto, lineno, utt, key, "LA")
        if not _in_phases(cfg, phases, phase):
            continue
        attack = "bonafide" if label == "bonafide" else words[attack]
        path = dirs.path("eval", lineno, utt)
        attack_type = ASVSPOOF2019_ATTACK_TYPES.get(attack, "")
        rows.append(
            (
                utt,
                path,
                label,
                attack,
                corpus,
                words[speaker],
                corpus,
                same[phase],
                words[codec],
                words[transmission],
                words[trim],
                attack_type,
            )
        )
        lines.append(lineno)
    check_selected(proto, "phases", cfg.phases, phases)
    return build_table_rows(_COLUMNS_2021 + _LA_COLUMNS, rows, proto, lines)


_DF_LAYOUT = "SPEAKER UTT CODEC SOURCE ATTACK KEY TRIM PHASE VOCODER TASK TEAM GENDER_PAIR LANGUAGE"
_DF_COLUMNS = ("vocoder", "trim", "attack_type", "vcc_task", "vcc_team", "vcc_gender_pair", "vcc_language")


@PROTOCOLS.register("asvspoof2021_df", config=ASVspoof2021Config)
@table_columns(*_COLUMNS_2021, *_DF_COLUMNS)
def read_asvspoof2021_df(cfg: ASVspoof2021Config, **_: object) -> UtteranceTable:
    """ASVspoof 2021 DF key: SPEAKER UTT CODEC SOURCE ATTACK KEY TRIM PHASE VOCODER + 4 VCC (stage 1: 8 first)."""
    proto = require_file(cfg.protocol, "ASVspoof 2021 DF key")
    corpus = cfg.corpus or "asvspoof2021_df"
    dirs = _EvalAudioDirs(cfg.root, proto, "DF")
    layout = _DF_LAYOUT + ", or its first 8 (stage-1 keys)"
    words, same = Words(), Words(dash="-")
    rows, phases, lines = [], set(), []
    for lineno, line in iter_lines(proto):
        fields = line.split()
        if len(fields) != 13:
            if len(fields) not in (8, 13) and len(fields) > 1:  # the PA key's 12 fields: said as such
                _check_track(proto, lineno, fields[1], "DF")
            fields = split_fields(proto, lineno, line, (13, 8), layout) + ["-"] * 5
        speaker, utt, codec, source, attack, key, trim, phase, vocoder, task, team, pair, lang = fields
        label = _trial_label(proto, lineno, utt, key, "DF")
        if not _in_phases(cfg, phases, phase):
            continue
        attack = "bonafide" if label == "bonafide" else words[attack]
        path = dirs.path("eval", lineno, utt)
        # VCC attacks are voice-conversion systems ("Task1-team20"); ASVspoof ones use the 2019 table
        attack_type = "vc" if source.startswith("vcc") and label == "spoof" else ""
        attack_type = ASVSPOOF2019_ATTACK_TYPES.get(attack, attack_type)
        rows.append(
            (
                utt,
                path,
                label,
                attack,
                words[source] or corpus,
                words[speaker],
                corpus,
                same[phase],
                words[codec],
                words[vocoder],
                words[trim],
                attack_type,
                words[task],
                words[team],
                words[pair],
                words[lang],
            )
        )
        lines.append(lineno)
    check_selected(proto, "phases", cfg.phases, phases)
    return build_table_rows(_COLUMNS_2021 + _DF_COLUMNS, rows, proto, lines)


# --- ASVspoof 2021 PA -------------------------------------------------------------------------

# the 12 fields of the full PA keys (CM and ASV alike), named as the 2021 evaluation package names them
# (eval-package/config.py, ConfigPA.p_names): the ASV side's room, microphone and talker-to-ASV distance (D1-D6 on
# a bona fide trial, d1-d6 on a spoofed one), then the attacker's room, microphone and the two other replay factors
_PA_LAYOUT = "SPEAKER UTT ASV_ROOM ASV_MIC DIS_TO_ASV ATT_ROOM ATT_MIC ATT_D ATT_TO_SPK KEY TRIM PHASE"
_PA_FACTORS = ("asv_room", "asv_mic", "dis_to_asv", "att_room", "att_mic", "att_d", "att_to_spk")
_PA_COLUMNS = (
    *("utt_id", "path", "label", "attack", "source", "speaker", "corpus"),
    *("partition", "attack_type", "trim", *_PA_FACTORS),
)


def _pa_fields(proto: Path, lineno: int, line: str) -> tuple[str, str, list[str], str, str, str]:
    """(speaker, trial, the 7 replay factors, key, trim, phase) of a PA key's line: the full key's 12 fields, or the
    stage-1 key's 7 (``- PA_E_1000004 - - bonafide - progress``: trial second, key fifth, phase last, as
    package-stage-1/evaluate.py reads them; the factors unknown)."""
    fields = line.split()
    if len(fields) not in (12, 7) and len(fields) > 1:  # the LA key's 8 fields, the DF key's 13: said as such
        _check_track(proto, lineno, fields[1], "PA")
    fields = split_fields(proto, lineno, line, (12, 7), _PA_LAYOUT + ", or the stage-1 keys' 7 fields")
    if len(fields) == 7:
        return fields[0], fields[1], ["-"] * 7, fields[4], fields[5], fields[6]
    return fields[0], fields[1], fields[2:9], fields[9], fields[10], fields[11]


# the official 2021 PA hidden tracks of the full keys' hidden phase, by TRIM (eval-package/config.py, ConfigPA.hidden:
# hidden1_PA 'trim == "notrim" and subset == "hidden"', hidden2_PA 'trim == "trim" ...'), named as the stage-1 keys'
# phases name them
_PA_HIDDEN_TRACKS = {"notrim": "hidden_track_1", "trim": "hidden_track_2"}
# track -> TRIM: the ASV side reads the ASV keys' lines by it (sddkit.evaluation.asv)
PA2021_HIDDEN_TRACKS = {track: trim for trim, track in _PA_HIDDEN_TRACKS.items()}


@PROTOCOLS.register("asvspoof2021_pa", config=ASVspoof2021Config)
@table_columns(*_PA_COLUMNS)
def read_asvspoof2021_pa(cfg: ASVspoof2021Config, **_: object) -> UtteranceTable:
    """ASVspoof 2021 PA key: SPEAKER UTT + 7 replay factors + KEY TRIM PHASE (stage 1: 7 fields, KEY fifth)."""
    proto = require_file(cfg.protocol, "ASVspoof 2021 PA key")
    corpus = cfg.corpus or "asvspoof2021_pa"
    dirs = _EvalAudioDirs(cfg.root, proto, "PA")
    words, same = Words(), Words(dash="-")
    rows, phases, lines = [], set(), []
    for lineno, line in iter_lines(proto):
        speaker, utt, factors, key, trim, phase = _pa_fields(proto, lineno, line)
        label = _trial_label(proto, lineno, utt, key, "PA")
        track = _PA_HIDDEN_TRACKS.get(trim) if phase == "hidden" else None
        if track is not None:
            phases.add(track)  # selectable by its track's name (check_selected)
            if cfg.phases is not None and track in cfg.phases and phase not in cfg.phases:
                # one official hidden track asked for by name: its trials a partition of their own, whose ASV trials
                # (the ASV key's lines of that phase and TRIM) give its t-DCF, as the official package scores it
                phase = track
        if not _in_phases(cfg, phases, phase):
            continue
        values = [words[f] for f in factors]
        # a replay attack is its attacker-side factors (room, microphone and the other two): as the 2019 PA
        # attacks AA..CC name theirs; unknown ('') in the stage-1 keys
        attack = "bonafide" if label == "bonafide" else words["_".join(v for v in values[3:] if v) or "-"]
        path = dirs.path("eval", lineno, utt)
        attack_type = "replay" if label == "spoof" else ""
        rows.append(
            (utt, path, label, attack, corpus, words[speaker], corpus, same[phase], attack_type, words[trim], *values)
        )
        lines.append(lineno)
    check_selected(proto, "phases", cfg.phases, phases)
    return build_table_rows(_PA_COLUMNS, rows, proto, lines)


# --- ASVspoof 5 -------------------------------------------------------------------------------


@dataclass
class ASVspoof5Config:
    """protocol: ASVspoof5.{train,dev.track_1,eval.track_1}.tsv; root: folder holding flac_T/flac_D/flac_E_eval."""

    protocol: str
    root: str | None = None
    partition: str | None = None  # train/dev/eval; by default from the id prefix (T_/D_/E_)
    corpus: str = "asvspoof5"
    codecs: list[str] | None = field(default=None)  # keep only these CODEC values ('none' or '-' = uncoded)


_ASV5_DIRS = {"train": ["flac_T"], "dev": ["flac_D"], "eval": ["flac_E_eval", "flac_E"]}


def _dirs_asv5(partition: str) -> list[str]:
    names = _ASV5_DIRS.get(partition, [])
    return [p for n in names for p in (f"{n}/{n}", n)] + ["flac", "."]


_ASV5_LAYOUT = "SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP"
_ASV5_COLUMNS = (
    *("utt_id", "path", "label", "attack", "source", "speaker", "corpus"),
    *("partition", "codec", "codec_q", "codec_seed", "attack_tag", "gender"),
)


@PROTOCOLS.register("asvspoof5", config=ASVspoof5Config)
@table_columns(*_ASV5_COLUMNS)
def read_asvspoof5(cfg: ASVspoof5Config, **_: object) -> UtteranceTable:
    """ASVspoof 5 metadata TSV: SPEAKER_ID FLAC_FILE_NAME GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK KEY TMP."""
    proto = require_file(cfg.protocol, "ASVspoof 5 protocol")
    dirs = _AudioDirs(cfg.root, proto, _dirs_asv5)
    # the protocol writes an uncoded trial's CODEC as '-', the table as 'none': both select it
    wanted = None if cfg.codecs is None else ["none" if c == "-" else c for c in cfg.codecs]
    words, same = Words(), Words(dash="-")
    rows, codecs, lines = [], set(), []
    for lineno, line in iter_lines(proto):
        fields = line.split()
        if len(fields) == 10:
            speaker, utt, gender, codec, codec_q, codec_seed, attack_tag, attack, key, _tmp = fields
        else:  # pre-release layout: SPEAKER UTT GENDER CODEC ATTACK KEY
            speaker, utt, gender, codec, attack, key = split_fields(proto, lineno, line, (10, 6), _ASV5_LAYOUT)
            codec_q = codec_seed = attack_tag = "-"
        label = ASVSPOOF_LABELS.get(key) or _cm_label(key, proto, lineno)
        codec = "none" if codec == "-" else same[codec]
        codecs.add(codec)
        if wanted is not None and codec not in wanted:
            continue
        partition = cfg.partition or partition_from_id(utt)
        path = dirs.path(partition, lineno, utt)
        attack = "bonafide" if label == "bonafide" else words[attack]
        rows.append(
            (
                utt,
                path,
                label,
                attack,
                cfg.corpus,
                same[speaker],
                cfg.corpus,
                partition,
                codec,
                words[codec_q],
                words[codec_seed],
                words[attack_tag],
                words[gender],
            )
        )
        lines.append(lineno)
    check_selected(proto, "codecs", wanted, codecs)
    return build_table_rows(_ASV5_COLUMNS, rows, proto, lines)


# --- ASVspoof 5 evaluation-package keys ---------------------------------------------------------


@dataclass
class ASVspoof5KeyConfig:
    """protocol: a key of the ASVspoof 5 evaluation package (module docstring of :func:`read_asvspoof5_key`);
    root: folder holding flac_T/flac_D/flac_E_eval."""

    protocol: str
    root: str | None = None
    partition: str | None = None  # train/dev/eval; by default from the id prefix (T_/D_/E_)
    corpus: str = "asvspoof5"
    codecs: list[str] | None = field(default=None)  # keep only these codec values (a key with a codec column)


# a header's names of a column, as the package's util.load_tsv renames them (trial_anon -> filename, ...)
_KEY_ID_COLUMNS = ("filename", "trial_anon")
_KEY_LABEL_COLUMNS = ("cm-label", "cm_label")
# (the ASV key reader, sddkit.evaluation.asv.read_asv_key, takes a full key table's attack and codec by these names too)
KEY_ATTACK_COLUMNS = ("attack_anon", "attack", "attack_label")
KEY_CODEC_COLUMNS = ("codec",)
# an SASV trial's kind: a target or non-target trial is of a bona fide utterance, a spoof trial of a spoofed one
SASV_CM_LABELS = {"target": "bonafide", "nontarget": "bonafide", "non-target": "bonafide", "spoof": "spoof"}
_KEYED_LAYOUT = "SPEAKER UTTERANCE SCORE KEY, KEY bonafide/spoof or target/nontarget/spoof"


# an ASVspoof 2021 trial: LA_E_9332881 in the CM keys; the ASV key and its score file name it with its condition,
# LA_E_5013670-alaw-ita_tx (the plain id alone matched, and the real files got no hint and no phase); the protocol
# detection and the ASV score reader (sddkit.evaluation.asv) both take it from here
ASV2021_TRIAL_ID = re.compile(r"^(LA|PA|DF)_E_\d+(?:-\S+)?$")


def is_number(token: str) -> bool:
    """Whether a field reads as a number (a score)."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def asvspoof5_key_header(line: str) -> list[str] | None:
    """The lower-cased column names of a header line of an ASVspoof 5 package key (a ``filename`` or
    ``trial_anon`` column and a ``cm-label`` one, tab- or space-separated), None for any other line."""
    names = [n.strip().lower() for n in re.split(r"[\t ]+", line.strip()) if n.strip()]
    if any(c in names for c in _KEY_ID_COLUMNS) and any(c in names for c in _KEY_LABEL_COLUMNS):
        return names
    return None


def is_keyed_score_line(tokens: list[str]) -> bool:
    """``SPEAKER UTTERANCE SCORE KEY`` with KEY bonafide/spoof (a CM score file) or target/nontarget/spoof (an SASV
    score file): the ASVspoof 5 package README's score files, which carry their trials' keys."""
    key = tokens[3].lower() if len(tokens) == 4 else ""
    return (key in ASVSPOOF_LABELS or key in SASV_CM_LABELS) and is_number(tokens[2])


@dataclass
class _KeyRows:
    """One row per utterance of a key that may list an utterance in several SASV trials (each with its target
    speaker): the trials of an utterance must agree on its CM label; the first trial's line stands for it."""

    proto: Path
    rows: list[tuple] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    first: dict[str, tuple[int, str]] = field(default_factory=dict)  # utt -> (line, label)

    def add(self, lineno: int, utt: str, label: str, row: tuple) -> None:
        seen = self.first.get(utt)
        if seen is None:
            self.first[utt] = (lineno, label)
            self.rows.append(row)
            self.lines.append(lineno)
        elif seen[1] != label:
            raise located(
                self.proto,
                lineno,
                f"utterance {utt!r} is {label} here and {seen[1]} on line {seen[0]}; an utterance's trials share its "
                "CM key",
            )


_KEY_COLUMNS = (
    *("utt_id", "path", "label", "attack", "source", "speaker", "corpus"),
    *("partition", "codec"),
)


@PROTOCOLS.register("asvspoof5_key", config=ASVspoof5KeyConfig)
@table_columns(*_KEY_COLUMNS)
def read_asvspoof5_key(cfg: ASVspoof5KeyConfig, **_: object) -> UtteranceTable:
    """ASVspoof 5 evaluation-package key: filename<TAB>cm-label, the SASV key, or SPEAKER UTT SCORE KEY lines.

    The keys of the ASVspoof 5 evaluation package (``asvspoof-challenge/asvspoof5``, ``evaluation-package/``):

    - the CM key its ``evaluation.py --cm_keys`` takes, a TSV with a header: ``filename<TAB>cm-label``
      (``E_000001<TAB>bonafide``); the SASV key (``--sasv_keys``: ``spk filename cm-label asv-label``) and the full
      key tables (space-separated, ``trial_anon``/``filename``, ``cm-label``, ``attack_anon``, ``codec``, ...) by
      the same header names, in any order (rows whose ``track_2_tag`` is ``dummy`` are left out, as the package's
      readers leave them); other columns are ignored;
    - the score files its README shows, which carry their keys: ``SPEAKER UTTERANCE SCORE KEY`` with KEY
      ``bonafide``/``spoof`` (a CM score file) or ``target``/``nontarget``/``spoof`` (an SASV score file, whose
      target and non-target trials are of bona fide utterances); the score is not read here.

    An utterance listed in several SASV trials is one row (its trials must agree on its CM key). ``codecs`` keeps
    the trials of those codecs (a key with a codec column, ``-`` = uncoded, read as ``none``).
    """
    proto = require_file(cfg.protocol, "ASVspoof 5 key")
    dirs = _AudioDirs(cfg.root, proto, _dirs_asv5)
    wanted = None if cfg.codecs is None else ["none" if c == "-" else c for c in cfg.codecs]
    words = Words()
    out = _KeyRows(proto)
    codecs: set[str] = set()
    header: list[str] | None = None
    at: dict[str, int | None] = {}
    sasv = first = False
    for lineno, line in iter_lines(proto):
        if not first:
            first = True
            header = asvspoof5_key_header(line)
            if header is not None or wanted is not None:
                at = _key_columns(header, proto, lineno, wanted)
            if header is not None:
                continue
        speaker, utt, key, attack, codec, tag = _key_fields(line, header, at, proto, lineno)
        if tag.lower() == "dummy":
            # a full key's track_2_tag dummy trials: in the trial list (a submission scores them), out of the metrics,
            # as the package's readers drop them (their scores are then strays of no protocol entry)
            continue
        kind = key.strip().lower()
        sasv = sasv or kind in ("target", "nontarget", "non-target")
        label = ASVSPOOF_LABELS.get(kind) or SASV_CM_LABELS.get(kind)
        if label is None:
            raise located(proto, lineno, f"key {key!r} is not bonafide/spoof (CM) or target/nontarget/spoof (SASV)")
        codec = "none" if codec in ("-", "none") else words[codec]
        if at.get("codec") is not None:
            codecs.add(codec)
        if wanted is not None and codec not in wanted:
            continue
        partition = cfg.partition or partition_from_id(utt)
        attack = "bonafide" if label == "bonafide" else words[attack]
        row = (utt, "", label, attack, cfg.corpus, speaker, cfg.corpus, partition, codec)
        out.add(lineno, utt, label, row)
    check_selected(proto, "codecs", wanted, codecs)
    # paths once per utterance; an SASV trial's first field is its target speaker, not the utterance's
    rows = [
        (r[0], dirs.path(r[7], n, r[0]), *r[2:5], "" if sasv else r[5], *r[6:]) for r, n in zip(out.rows, out.lines)
    ]
    omit = [] if at.get("codec") is not None else ["codec"]
    return build_table_rows(_KEY_COLUMNS, rows, proto, out.lines, omit=omit)


def _key_fields(
    line: str, header: list[str] | None, at: dict[str, int | None], proto: Path, lineno: int
) -> tuple[str, str, str, str, str, str]:
    """(speaker, utterance, key, attack, codec, track-2 tag) of a key's line: by the header's columns (``at``), or of
    a ``SPEAKER UTTERANCE SCORE KEY`` line (no attack, no codec, no tag)."""
    if header is None:
        fields = line.split()
        if len(fields) != 4 or not is_keyed_score_line(fields):
            raise located(proto, lineno, f"expected {_KEYED_LAYOUT}, got {line!r}")
        speaker, utt, _score, key = fields
        return speaker, utt, key, "", "", ""
    cells = [c.strip() for c in (line.split("\t") if "\t" in line else line.split())]
    if len(cells) != len(header):
        raise located(proto, lineno, f"expected {len(header)} columns like the header, got {len(cells)}: {line!r}")

    def cell(name: str) -> str:
        i = at[name]
        return cells[i] if i is not None else ""

    return "", cell("id"), cell("label"), cell("attack"), cell("codec"), cell("tag")


def _key_columns(header: list[str] | None, proto: Path, lineno: int, wanted: list[str] | None) -> dict[str, int | None]:
    """Where a key's header puts the id, label, attack and codec columns (None: not there); ``wanted`` (the codecs
    option) needs a codec column."""

    def find(names: tuple[str, ...]) -> int | None:
        return next((header.index(n) for n in names if n in header), None) if header else None

    if wanted is not None and find(KEY_CODEC_COLUMNS) is None:
        raise located(
            proto,
            lineno,
            f"codecs={wanted}: this key has no codec column to select by (read the full key, or the "
            "ASVspoof5.<dev|eval>.track_1.tsv protocol, whose CODEC column the asvspoof5 reader selects by)",
        )
    if header is None:
        return {}
    if len(set(header)) != len(header):
        raise located(proto, lineno, f"the header {header} names a column twice")
    return {
        "id": find(_KEY_ID_COLUMNS),
        "label": find(_KEY_LABEL_COLUMNS),
        "attack": find(KEY_ATTACK_COLUMNS),
        "codec": find(KEY_CODEC_COLUMNS),
        "tag": find(("track_2_tag",)),
    }
