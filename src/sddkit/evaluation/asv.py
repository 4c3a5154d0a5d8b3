"""ASV score files: the scores of the automatic speaker verification system a countermeasure sits before.

The t-DCF weighs a countermeasure's errors by what they cost the ASV system behind it, so its official figures
use the challenge organisers' ASV scores: ASVspoof 2019's ``ASVspoof2019.LA.asv.eval.gi.trl.scores.txt`` holds
one trial per line, ``SOURCE KEY SCORE`` (``bonafide target 1.53``, ``A07 spoof -2.90``), where ``KEY`` is
``target``, ``nontarget`` or ``spoof``. :func:`read_asv_scores` reads that layout and its relatives: fields
separated by white space or commas, the key in any one field, the score in the last; a header line and lines
starting with ``#`` are skipped. It reads the ASVspoof 5 evaluation package's layouts too: its README's SASV score
file, ``SPEAKER UTT SCORE KIND`` (``LA_0015 LA_E_1103494 6.96 target``, the kind after the score), and a table
whose header names the kind column ``asv-label`` and a score column (``asv-score``, else ``sasv-score``, else
``score``), as its SASV key (``spk filename cm-label asv-label``) joined with its scores makes. The
:class:`ASVScores` read feed the t-DCF's ASV rates, the t-EER and, for an SASV system's scores, the a-DCF
(:func:`sddkit.metrics.a_dcf` of ``target``, ``nontarget`` and ``spoof``). :func:`asv_rates` turns them into
the ASV error rates the t-DCF takes, as the official scripts do (:func:`sddkit.metrics.asv_rates_from_scores`);
the t-EER (:func:`sddkit.metrics.t_eer`) takes the scores themselves. They are read by trial kind; the trials of
the layouts that name their files (a keyed table; a table with ``asv-label`` and ``filename`` columns; ``SPEAKER UTT
SCORE KIND`` lines) keep them, whose lines in the CM protocol name their attack and codec where the key does not
(:meth:`ASVScores.with_protocol`), and whose CM scores the t-EER joins with each trial, as the ASVspoof 5 package
does (``sddkit.evaluation.report``); the other layouts (ASVspoof 2019's and 2021's) name no file of the CM
protocol, and the t-EER takes each CM utterance once.
:func:`read_sasv_system_scores` reads an SASV system's scores to be evaluated alone, without a countermeasure's
(``sdd eval --asv-scores`` without ``--scores``: their a-DCF).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sddkit.data.protocols.asvspoof import (
    ASV2021_TRIAL_ID,
    KEY_ATTACK_COLUMNS,
    KEY_CODEC_COLUMNS,
    PA2021_HIDDEN_TRACKS,
)
from sddkit.data.text import not_text, read_text
from sddkit.errors import ProtocolError
from sddkit.evaluation.scores import DECIMAL_COMMA
from sddkit.metrics import ASVRates, asv_rates_from_scores

ASV_KEYS = ("target", "nontarget", "spoof")
# spellings of a trial kind some files use (the ASVspoof 5 protocol reader takes `non-target` too)
_KIND_SPELLINGS = {"non-target": "nontarget"}


def _kind(token: str) -> str:
    """A field as a trial kind would read: lower case, ``non-target`` as ``nontarget``."""
    low = token.lower()
    return _KIND_SPELLINGS.get(low, low)


_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class ASVScores:
    """An ASV system's scores (higher = more likely the claimed speaker), by trial kind.

    ``n_unscored``: the trials of the SASV key (its dummy trials aside) that a keyed score table
    (:func:`read_keyed_asv_scores`) holds no score of, left out of every figure of these scores; 0 otherwise."""

    target: np.ndarray
    nontarget: np.ndarray
    spoof: np.ndarray
    n_unscored: int = 0
    # each trial's ASVspoof 2021 phase (eval/progress/hidden), by kind, aligned with the scores: the lines of the 2021
    # ASV key with their scores appended carry it (:data:`ASV2021_PHASES`); None when no line does
    phases: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    # each spoof trial's attack, aligned with ``spoof``: the field before the kind (ASVspoof 2019's ``A07 spoof -2.90``,
    # the 2021 key's ``... A07 spoof notrim eval -4.87``; '' where a line has none); None when no line names one
    spoof_attacks: np.ndarray | None = None
    # each trial's codec condition, by kind, aligned with the scores: the CODEC field of the 2021 LA ASV key's lines
    # with their scores appended (``... alaw ita_tx bonafide target notrim eval 1.53``: :func:`_line_codec`), whose
    # per-condition t-DCFs (LA-C1..C7) take each condition's own ASV trials; None when no line names one
    codecs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    # each trial's file (the key's FLAC_FILE_NAME / filename), by kind, aligned with the scores: the trials of a keyed
    # table (read_keyed_asv_scores), of a table with asv-label and filename columns and of SPEAKER UTT SCORE KIND
    # lines, whose attack and codec the CM protocol names where the key does not (:meth:`with_protocol`) and whose CM
    # scores the t-EER joins with each trial; None for the other layouts
    files: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def with_protocol(self, ids: object, attacks: object, codecs: object = None) -> ASVScores:
        """These scores with what the ASV key leaves unnamed of a keyed table's trials taken from the CM protocol, by
        each trial's file: a spoof trial's attack (``attacks``, the protocol's attack column, aligned with ``ids``,
        its utt_id) and each trial's codec condition (``codecs``, its codec column; None where it has none). The
        ASVspoof 5 package's SASV key (``spk filename cm-label asv-label``, ``evaluation-package/util.py`` of
        ``asvspoof-challenge/asvspoof5``) names neither, and the database README (``jungjee/asvspoof5`` on Hugging
        Face, ``README.txt``, section 3, note c) sends a trial's other information to the ``ASVspoof5.*.track_1.tsv``
        line of its file: without them, every attack's t-DCF took the pooled ASV rates. What the key names is kept; a
        file the protocol lacks, or keys bona fide, names nothing. ``self`` for scores of another layout."""
        if self.files is None:
            return self
        ids = np.asarray(ids, dtype=object).ravel()
        attack_of = {f: a for f, a in zip(ids, np.asarray(attacks, dtype=object).ravel()) if a != "bonafide"}
        held = [""] * self.spoof.size if self.spoof_attacks is None else self.spoof_attacks.tolist()
        joined = [a or str(attack_of.get(f, "") or "") for a, f in zip(held, self.files[2].tolist())]
        found_codecs = self.codecs
        if codecs is not None:
            codec_of = dict(zip(ids, np.asarray(codecs, dtype=object).ravel()))
            held_codecs = self.codecs or tuple(np.full(f.size, "", dtype=object) for f in self.files)
            filled = tuple(
                np.asarray([c or str(codec_of.get(f, "") or "") for c, f in zip(cs.tolist(), fs.tolist())], object)
                for cs, fs in zip(held_codecs, self.files)
            )
            found_codecs = filled if any(c for cs in filled for c in cs) else None
        return dataclasses.replace(
            self,
            spoof_attacks=np.asarray(joined, dtype=object) if any(joined) else None,
            codecs=found_codecs,
        )

    def protocol_disagreements(
        self, ids: object, attacks: object, codecs: object = None
    ) -> dict[str, list[tuple[str, str, str]]]:
        """The files whose attack (of a spoof trial) or codec condition (of any trial) these scores' key names and
        the protocol's line of the file names otherwise (``ids``, ``attacks``, ``codecs`` as :meth:`with_protocol`
        takes them): ``{"attack": [(file, key's, protocol's), ...], "codec": [...]}``, one entry per file, by file.
        :meth:`with_protocol` keeps the key's there, so the figures of such a file's group are the key's grouping:
        said, not silent (``sdd eval`` warns, :func:`protocol_disagreement_notes`). Empty lists for scores of a
        layout that names no file."""
        found: dict[str, list[tuple[str, str, str]]] = {"attack": [], "codec": []}
        if self.files is None:
            return found
        ids = np.asarray(ids, dtype=object).ravel()
        attack_of = dict(zip(ids, np.asarray(attacks, dtype=object).ravel()))
        if self.spoof_attacks is not None:
            found["attack"] = _disagreeing(zip(self.files[2].tolist(), self.spoof_attacks.tolist()), attack_of)
        if codecs is not None and self.codecs is not None:
            codec_of = dict(zip(ids, np.asarray(codecs, dtype=object).ravel()))
            pairs = [p for fs, cs in zip(self.files, self.codecs) for p in zip(fs.tolist(), cs.tolist())]
            found["codec"] = _disagreeing(pairs, codec_of)
        return found

    def rates(self) -> ASVRates:
        """The error rates at the ASV system's EER threshold (:func:`sddkit.metrics.asv_rates_from_scores`)."""
        return asv_rates_from_scores(self.target, self.nontarget, self.spoof)

    def attack_rates(self, attack: str) -> ASVRates | None:
        """The error rates at the ASV system's EER threshold (set by the target and non-target trials, as
        :meth:`rates`), ``pfa_spoof`` that of the spoof trials of ``attack`` alone: the ASV rates of an attack's
        t-DCF, as the per-attack t-DCFs of ASVspoof 2019 take them. None when the lines name no attack or none of
        ``attack``."""
        return self.spoof_rates([attack])

    def spoof_rates(self, attacks: object) -> ASVRates | None:
        """:meth:`attack_rates` of the spoof trials of several ``attacks`` together (those a per-vocoder or
        per-attack-type row's spoofs are of): ``pfa_spoof`` that of their ASV spoof trials pooled, as the pooled
        figure pools every attack's. None when the lines name no attack, or none of one of ``attacks`` (a rate of
        the others' alone would be another group's)."""
        if self.spoof_attacks is None:
            return None
        wanted = list(dict.fromkeys(str(a) for a in np.asarray(attacks, dtype=object).ravel()))
        if not wanted or any(not np.any(self.spoof_attacks == a) for a in wanted):
            return None
        spoof = self.spoof[np.isin(self.spoof_attacks, wanted)]
        return asv_rates_from_scores(self.target, self.nontarget, spoof)

    def of_codec(self, codec: str) -> ASVScores | None:
        """These scores restricted to the target, non-target and spoof trials of codec condition ``codec`` (the 2021
        LA ASV key's CODEC field), as the official 2021 package takes a condition's ASV trials for its t-DCF
        (``eval-package/main.py``, ``compute_tDCF_C012``: the codec a factor of every trial kind); None when the lines
        name no codec, or hold no trial of one kind of it."""
        if self.codecs is None:
            return None
        masks = [codecs == codec for codecs in self.codecs]
        if not all(m.any() for m in masks):
            return None
        return self._masked(masks)

    def of_codecs(self, codecs: object) -> ASVScores:
        """These scores without the trials whose codec condition is named and not among ``codecs`` (the conditions of
        the evaluated CM trials: a reader's ``codecs=[...]`` narrowed them), as the official packages take a
        condition's figure from its own CM and ASV trials; a trial that names no codec ('') is kept, as is
        ``n_unscored`` (the key's trials without a score). ``self`` when the lines name no codec or every named one
        is among ``codecs``."""
        if self.codecs is None:
            return self
        wanted = [str(c) for c in np.asarray(codecs, dtype=object).ravel()] + [""]
        masks = [np.isin(c.astype(str), wanted) for c in self.codecs]
        if all(m.all() for m in masks):
            return self
        return dataclasses.replace(self._masked(masks), n_unscored=self.n_unscored)

    def of_attack(self, attack: str) -> ASVScores | None:
        """These scores with every target and non-target trial and the spoof trials of ``attack`` alone, the trials
        the ASVspoof 5 package's full evaluation takes for an attack's t-EER and min a-DCF; None when the spoof lines
        name no attack, or none of ``attack``."""
        if self.spoof_attacks is None:
            return None
        of_attack = self.spoof_attacks == attack
        if not of_attack.any():
            return None
        return self._masked([np.ones(self.target.size, bool), np.ones(self.nontarget.size, bool), of_attack])

    def _masked(self, masks: Sequence[np.ndarray]) -> ASVScores:
        """The trials each of ``masks`` (target, non-target, spoof) keeps, with what each trial carries: its phase,
        attack, codec and file (a group's t-EER joins each trial with its file's CM score)."""
        target, nontarget, spoof = (s[m] for s, m in zip((self.target, self.nontarget, self.spoof), masks))
        return ASVScores(
            target,
            nontarget,
            spoof,
            phases=None if self.phases is None else tuple(p[m] for p, m in zip(self.phases, masks)),
            spoof_attacks=None if self.spoof_attacks is None else self.spoof_attacks[masks[2]],
            codecs=None if self.codecs is None else tuple(c[m] for c, m in zip(self.codecs, masks)),
            files=None if self.files is None else tuple(f[m] for f, m in zip(self.files, masks)),
        )

    def of_phases(self, partitions: object, path: str | Path = "ASV scores") -> tuple[ASVScores, list[str] | None]:
        """These scores restricted to the trials of the ASVspoof 2021 phases evaluated (``partitions``: the values of
        the evaluated protocol rows' ``partition`` column, a 2021 key's PHASE), and the phases kept; ``(self, None)``
        when the lines carry no phase or every phase they carry is evaluated. The official 2021 scripts take the ASV
        error rates of the evaluated phase's trials alone: taken over every phase of the file, the min t-DCF of
        ``sdd eval --partitions eval`` was another figure, silently. ``hidden_track`` (the stage-1 CM keys' name)
        is ``hidden`` (the full keys'); a PA key line's hidden phase is its official track (``hidden_track_1``,
        ``hidden_track_2``, by TRIM), and partition ``hidden`` takes both tracks' trials. Partitions of no 2021 phase
        (another corpus's) select nothing; evaluated phases none of the lines carry are a ProtocolError."""
        if self.phases is None:
            return self, None
        wanted = {_PHASE_NAMES.get(str(v), str(v)) for v in np.asarray(partitions, dtype=object).ravel()}
        if "hidden" in wanted:  # the PA keys' hidden phase evaluated as one partition: the trials of both its tracks
            wanted |= set(PA2021_HIDDEN_TRACKS)
        present = sorted(set().union(*(set(p.tolist()) for p in self.phases)) - {""})
        if set(present) <= wanted or not wanted & set(ASV2021_PHASES):
            return self, None  # every phase evaluated, or trials of no 2021 phase (another corpus's partitions)
        kept = [phase for phase in present if phase in wanted]
        if not kept:
            raise ProtocolError(
                f"{path}: its ASV trials are of the ASVspoof 2021 phase(s) {', '.join(present)}, the evaluated trials "
                f"of {', '.join(sorted(wanted)) or '(none)'}: none in common; give the ASV scores of the phase "
                "evaluated (the official scripts take the ASV error rates of its trials alone)"
            )
        masks = [np.isin(phases, kept) for phases in self.phases]
        found = {kind: s[m].tolist() for kind, s, m in zip(ASV_KEYS, (self.target, self.nontarget, self.spoof), masks)}
        # each kept trial's phase kept too: a selection of several phases is restricted again per phase (each
        # partition's per-attack t-DCFs take its own phase's ASV trials); without them, those rows took the ASV
        # trials of every phase selected
        phases = {kind: p[m].tolist() for kind, p, m in zip(ASV_KEYS, self.phases, masks)}
        attacks = None if self.spoof_attacks is None else self.spoof_attacks[masks[2]].tolist()
        # and each kept trial's codec: the per-condition t-DCFs of the phase evaluated take its trials of the condition
        codecs = None if self.codecs is None else {k: c[m].tolist() for k, c, m in zip(ASV_KEYS, self.codecs, masks)}
        which = f" of phase(s) {', '.join(kept)}"
        selected = _by_kind(Path(path), found, which, phases=phases, attacks=attacks, codecs=codecs)
        return selected, kept


# a protocol cell that names no attack or codec: nothing to disagree with
_UNNAMED = ("", "-", "bonafide")


def _disagreeing(
    pairs: Iterable[tuple[object, object]], protocol_of: Mapping[object, object]
) -> list[tuple[str, str, str]]:
    """(file, key's, protocol's) of each file of ``pairs`` ((file, the key's value), '' where the key names none)
    whose value ``protocol_of`` names otherwise; the first of a file's trials, by file."""
    seen: dict[str, tuple[str, str, str]] = {}
    for file, held in pairs:
        other = str(protocol_of.get(file, "") or "")
        if held and other not in _UNNAMED and other != held and str(file) not in seen:
            seen[str(file)] = (str(file), str(held), other)
    return [seen[f] for f in sorted(seen)]


# how many disagreeing files a warning names
_DISAGREEMENT_EXAMPLES = 3


def protocol_disagreement_notes(found: Mapping[str, Sequence[tuple[str, str, str]]]) -> list[str]:
    """The warnings on :meth:`ASVScores.protocol_disagreements`' ``found``: one per field (attack, codec) naming how
    many files the ASV trials' key (``--asv-key``, or the ASV score lines themselves) and the protocol disagree on,
    with a few of them. The key's are taken, as before; taken silently, they hid a key of another set or release."""
    notes = []
    for name, rows in found.items():
        if not rows:
            continue
        what = "spoof file(s)" if name == "attack" else "file(s)"
        examples = "; ".join(f"{f}: key {k}, protocol {p}" for f, k, p in rows[:_DISAGREEMENT_EXAMPLES])
        more = "; ..." if len(rows) > _DISAGREEMENT_EXAMPLES else ""
        notes.append(
            f"the ASV trials' key and the protocol name a different {name} for {len(rows)} {what} (e.g. {examples}"
            f"{more}): the key's {name} is taken for their trials (the per-{name} ASV and SASV figures group them by "
            "it); check that the key and the protocol are of the same set and release"
        )
    return notes


def _text(path: Path, what: str = "ASV score file") -> str:
    try:
        return read_text(path)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{path}: {not_text(exc)}; an {what} is text") from None
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None


def read_asv_scores(
    path: str | Path,
    key: str | Path | None = None,
    *,
    score_columns: tuple[str, ...] | None = None,
    kinds: Mapping[tuple[str, str], str] | None = None,
) -> ASVScores:
    """The trials of an ASV score file (module docstring); ``ProtocolError`` names the first bad line.

    ``key``: the trials' kinds of a score table that names its trials but not their kinds (ASVspoof 5's
    ``spk filename ... asv-score ...``), joined on the target speaker and the file as the ASVspoof 5 package joins
    them (:func:`read_keyed_asv_scores`). ``score_columns``: the header names of the score column of a table, in
    order of preference (default ``asv-score``, else ``sasv-score``, else ``score``). ``kinds``: ``key`` as
    :func:`read_asv_key` read it already (a large key is read once for several columns)."""
    path = Path(path)
    wanted = score_columns or _SCORE_COLUMNS
    if key is not None:
        return read_keyed_asv_scores(path, Path(key), score_columns=wanted, kinds=kinds)
    text = _text(path)
    found: dict[str, list[float]] = {key: [] for key in ASV_KEYS}
    phases: dict[str, list[str]] = {key: [] for key in ASV_KEYS}  # each line's 2021 phase ('' where none)
    codecs: dict[str, list[str]] = {key: [] for key in ASV_KEYS}  # each line's 2021 LA codec ('' where none)
    attacks: list[str] = []  # each spoof line's attack ('' where none)
    # each line's file, where the layout names it (ASVspoof 5's: a table's filename column, SPEAKER UTT SCORE KIND's
    # UTT; '' where not): the t-EER joins each trial with its file's CM score, as the ASVspoof 5 package does
    files: dict[str, list[str]] = {key: [] for key in ASV_KEYS}
    first = True
    columns: tuple[int, int] | None = None  # (kind, score) columns named by a header (ASVspoof 5's tables)
    width = 0  # the number of columns that header names
    file_at: int | None = None  # the file column that header names
    for number, line in enumerate(text.splitlines(), 1):
        fields = [f for f in _SPLIT.split(line.strip()) if f]
        if not fields or fields[0].startswith("#"):
            continue
        if "," in line:
            _refuse_decimal_comma(path, number, line)
        if first and columns is None:
            columns = _header_columns(path, number, fields, wanted)
            if columns is not None:
                first, width = False, len(fields)
                file_at = _header_index([f.lower() for f in fields], _TRIAL_COLUMNS)
                continue
        if columns is not None:
            if len(fields) > width:
                # e.g. a comma-separated row whose score has a decimal comma (target,1,5): its columns shift
                raise ProtocolError(
                    f"{path}, line {number}: {line.strip()[:120]!r}: {len(fields)} fields where the header names "
                    f"{width} columns (a score written with a decimal comma, 1,5, is two fields in a comma-separated "
                    "table: write scores with a decimal point)"
                )
            kind = _kind_cell(path, number, line, fields, columns[0])
            found[kind].append(_score_cell(path, number, line, fields, columns[1]))
            files[kind].append(fields[file_at] if file_at is not None and file_at < len(fields) else "")
            phases[kind].append("")
            codecs[kind].append("")
            if kind == "spoof":
                attacks.append("")
            continue
        keys = [_kind(f) for f in fields[:-1] if _kind(f) in found]
        score = _number(fields[-1])
        utt = ""
        if not keys and score is None and len(fields) >= 3 and _kind(fields[-1]) in found:
            # SPEAKER UTT SCORE KIND: the ASVspoof 5 package's SASV score file, the kind after the score
            keys, score = [_kind(fields[-1])], _number(fields[-2])
            utt = fields[1] if len(fields) == 4 else ""
        if first and score is None and not keys:  # a header line (e.g. "source,key,score")
            first = False
            continue
        first = False
        if len(keys) != 1 or score is None:
            what = (
                f"the last field {fields[-1]!r} is not a finite score"
                if score is None
                else "no field is target, nontarget or spoof"
                if not keys
                else f"several fields are trial kinds ({', '.join(keys)})"
            )
            raise ProtocolError(
                f"{path}, line {number}: {line.strip()[:120]!r}: {what}; an ASV score line holds one of "
                "target/nontarget/spoof and ends with the score (e.g. 'bonafide target 1.53')" + _asv2021_hint(fields)
            )
        found[keys[0]].append(score)
        files[keys[0]].append(utt)
        phases[keys[0]].append(_line_phase(fields))
        codecs[keys[0]].append(_line_codec(fields))
        if keys[0] == "spoof":
            attacks.append(_line_attack(fields))
    read = _by_kind(path, found, phases=phases, attacks=attacks, codecs=codecs)
    if all(f for key in ASV_KEYS for f in files[key]):  # every line names its file
        return dataclasses.replace(read, files=tuple(np.asarray(files[key], dtype=object) for key in ASV_KEYS))
    return read


def _line_attack(fields: list[str]) -> str:
    """The attack of a spoof line: the field before its kind (``A07 spoof -2.90``), '' when the kind comes first or
    after the score (``SPEAKER UTT SCORE spoof``) or that field is ``-``; of a 2021 PA ASV key line, its attacker
    factors joined (``r1_m1_s4_c4``), as the PA key reader names a replay attack."""
    if len(fields) == 13 and fields[1].startswith("PA_") and ASV2021_TRIAL_ID.match(fields[1]):
        # the 2021 PA ASV key's line with its score (SPEAKER UTT ASV_ROOM ASV_MIC DIS_TO_ASV ATT_ROOM ATT_MIC ATT_D
        # ATT_TO_SPK KEY TRIM PHASE SCORE): its attack is its four attacker-side factors, as the PA key reader names
        # a CM trial's (r1_m1_s4_c4); the field before the kind, ATT_TO_SPK alone, matched no CM attack
        return "_".join(f for f in fields[5:9] if f != "-")
    at = next((i for i, f in enumerate(fields[:-1]) if _kind(f) == "spoof"), 0)
    return fields[at - 1] if at > 0 and fields[at - 1] != "-" else ""


def _refuse_decimal_comma(path: Path, number: int, line: str) -> None:
    """A ProtocolError for a line of white-space separated fields one of which is a number written with a decimal
    comma (``bonafide target 1,53``): split at commas too, its fields read as ``1`` and ``53``, and the last of them,
    or the header's score column, was taken as the score, silently (the CM score readers refuse such a score)."""
    tokens = line.split()
    comma = next((t for t in tokens if DECIMAL_COMMA.fullmatch(t)), None) if len(tokens) > 1 else None
    if comma is not None:
        raise ProtocolError(
            f"{path}, line {number}: {line.strip()[:120]!r}: the score {comma!r} is written with a decimal comma; "
            f"write scores with a decimal point (e.g. {comma.replace(',', '.')!r})"
        )


def _by_kind(
    path: Path,
    found: dict[str, list[float]],
    which: str = "",
    phases: dict[str, list[str]] | None = None,
    attacks: list[str] | None = None,
    codecs: dict[str, list[str]] | None = None,
) -> ASVScores:
    missing = [key for key in ASV_KEYS if not found[key]]
    if missing:
        counts = ", ".join(f"{len(found[key])} {key}" for key in ASV_KEYS)
        raise ProtocolError(
            f"{path}: no {' or '.join(missing)} trials{which} ({counts}); the t-DCF's ASV error rates, the t-EER and "
            "the a-DCF need all three"
        )
    carried = phases is not None and any(ph for key in ASV_KEYS for ph in phases[key])
    coded = codecs is not None and any(c for key in ASV_KEYS for c in codecs[key])
    return ASVScores(
        *(np.asarray(found[key], dtype=np.float64) for key in ASV_KEYS),
        phases=tuple(np.asarray(phases[key], dtype=object) for key in ASV_KEYS) if carried else None,
        spoof_attacks=np.asarray(attacks, dtype=object) if attacks and any(attacks) else None,
        codecs=tuple(np.asarray(codecs[key], dtype=object) for key in ASV_KEYS) if coded else None,
    )


# the PHASE field of the ASVspoof 2021 ASV keys (keys/<track>/ASV/trial_metadata.txt), its last field: the one before
# the score on a line of the key with its score appended (``LA_0007-alaw-ita_tx LA_E_5013670-alaw-ita_tx alaw ita_tx
# bonafide nontarget notrim eval -4.87``)
# (the PA keys' hidden phase is two official tracks, told apart by TRIM and scored apart, each with the ASV rates of
# its own trials: the stage-1 PA keys' phases hidden_track_1 and hidden_track_2)
ASV2021_PHASES = ("eval", "progress", "hidden", "hidden_track", *PA2021_HIDDEN_TRACKS)
_PHASE_NAMES = {"hidden_track": "hidden"}


def _line_phase(fields: list[str]) -> str:
    """The ASVspoof 2021 phase of an ASV score line of the 2021 key's layout with its score appended ('' for any
    other line), ``hidden_track`` named ``hidden``; a line of the full PA key's hidden phase named by its track
    (TRIM, the field before the phase: ``notrim`` ``hidden_track_1``, ``trim`` ``hidden_track_2``), as the stage-1 PA
    key names its phase: the official package takes each track's ASV rates from that track's trials alone."""
    if len(fields) >= 4 and ASV2021_TRIAL_ID.match(fields[1]) and fields[-2] in ASV2021_PHASES:
        if fields[-2] == "hidden" and fields[1].startswith("PA_") and fields[-3] in PA2021_HIDDEN_TRACKS.values():
            return next(track for track, trim in PA2021_HIDDEN_TRACKS.items() if trim == fields[-3])
        return _PHASE_NAMES.get(fields[-2], fields[-2])
    return ""


def _line_codec(fields: list[str]) -> str:
    """The codec condition of a line of the ASVspoof 2021 LA ASV key with its score appended (``SPEAKER UTT CODEC
    TRANSMISSION ATTACK KEY TRIM PHASE SCORE``: its third field, the CM key's CODEC, ``none`` .. ``opus`` = LA-C1 ..
    LA-C7); '' for any other line (the DF track has no ASV key, the PA key no codec) or a ``-``."""
    if len(fields) == 9 and fields[1].startswith("LA_") and ASV2021_TRIAL_ID.match(fields[1]):
        if fields[-2] in ASV2021_PHASES and fields[2] != "-":
            return fields[2]
    return ""


_KIND_COLUMNS = ("asv-label", "asv_label")
_SCORE_COLUMNS = ("asv-score", "asv_score", "sasv-score", "sasv_score", "score")


def _header_columns(
    path: Path, number: int, fields: list[str], score_columns: tuple[str, ...] = _SCORE_COLUMNS
) -> tuple[int, int] | None:
    """(kind column, score column) of a header naming ``asv-label`` (ASVspoof 5's SASV keys and tables), None for a
    line that is no such header; a header of ASVspoof 5 SASV scores without their kinds, or of a key without
    scores, is refused saying what to join."""
    names = [f.lower() for f in fields]
    kind = next((names.index(c) for c in _KIND_COLUMNS if c in names), None)
    score = next((names.index(c) for c in score_columns if c in names), None)
    if kind is not None and score is not None:
        return kind, score
    names_trials = any(c in names for c in (*_SPEAKER_COLUMNS, *_TRIAL_COLUMNS))
    if kind is None and (score is None or names[score] == "score" or not names_trials):
        # no header, or another layout's ("source,key,score", "source key asv_score": the kind in a field of every
        # line, skipped as a header as ever); an ASVspoof 5 score table names its trials (spk, filename)
        return None
    what = (
        "names the trials' kinds (asv-label) but no score column (asv-score, sasv-score or score): the ASVspoof 5 "
        "SASV key holds no scores"
        if score is None
        else f"names a score column ({names[score]}) but not the trials' kinds (asv-label): an ASVspoof 5 SASV score "
        "file, whose kinds are in the SASV key (spk filename cm-label asv-label)"
    )
    raise ProtocolError(
        f"{path}, line {number}: the header {fields} {what}; give the scores with the key (sdd eval --asv-scores "
        "SCORES --asv-key KEY: joined on spk and filename as the ASVspoof 5 evaluation package joins them), one table "
        "of both (the key's asv-label column beside the scores), or 'SPEAKER UTT SCORE KIND' lines"
    )


def _kind_cell(path: Path, number: int, line: str, fields: list[str], at: int) -> str:
    kind = _kind(fields[at]) if at < len(fields) else ""
    if kind not in ASV_KEYS:
        raise ProtocolError(
            f"{path}, line {number}: {line.strip()[:120]!r}: the asv-label {kind or '(none)'!r} is not target, "
            "nontarget or spoof"
        )
    return kind


def _score_cell(path: Path, number: int, line: str, fields: list[str], at: int) -> float:
    score = _number(fields[at]) if at < len(fields) else None
    if score is None:
        cell = fields[at] if at < len(fields) else "(none)"
        dash = (
            " (an end-to-end SASV system's submission has no ASV score: its sasv-score, the a-DCF's input, is "
            "evaluated alone by sdd eval --asv-scores FILE [--asv-key KEY] without --scores and --protocol)"
            if cell == "-"
            else f" (written with a decimal comma: write {cell.replace(',', '.')!r})"
            if DECIMAL_COMMA.fullmatch(cell)
            else ""
        )
        raise ProtocolError(
            f"{path}, line {number}: {line.strip()[:120]!r}: the score {cell!r} is not a finite number{dash}"
        )
    return score


_SPEAKER_COLUMNS = ("spk", "tar_spk_anon")
_TRIAL_COLUMNS = ("filename", "trial_anon")
_TRACK2_LAYOUT = "TARGET_SPEAKER FLAC_FILE_NAME TARGET_GENDER ATTACK_LABEL ASV_KEY"


def _rows(path: Path, what: str):
    """(line number, cells) of each non-blank, non-``#`` line of a tab- or space-separated table."""
    for number, line in enumerate(_text(path, what).splitlines(), 1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, [c.strip() for c in (text.split("\t") if "\t" in text else text.split())]


def _column(path: Path, number: int, names: list[str], wanted: tuple[str, ...], what: str) -> int:
    at = next((names.index(c) for c in wanted if c in names), None)
    if at is None:
        raise ProtocolError(f"{path}, line {number}: the header {names} has no {what} column ({' or '.join(wanted)})")
    return at


# the kind read_asv_key gives the trials of its full key tables' ``track_2_tag`` ``dummy`` rows: scored by a submission
# (the trial list holds them), left out of the metrics
DUMMY_TRIAL = "dummy"


class ASVKey(dict):
    """{(target speaker, file): kind} of an SASV key (:func:`read_asv_key`), with what it names of its trials besides:
    ``attacks``, {trial: attack} of its spoof trials whose attack it names, and ``codecs``, {trial: codec condition}
    of its trials whose codec it names ('-' read as ``none``, as the ASVspoof 5 protocol readers read it)."""

    def __init__(self) -> None:
        super().__init__()
        self.attacks: dict[tuple[str, str], str] = {}
        self.codecs: dict[tuple[str, str], str] = {}


def _header_index(names: list[str], wanted: tuple[str, ...]) -> int | None:
    return next((names.index(c) for c in wanted if c in names), None)


def read_asv_key(key: Path) -> ASVKey:
    """{(target speaker, file): kind} of an ASVspoof 5 SASV key: the package's (a header naming ``spk`` or
    ``tar_spk_anon``, ``filename`` or ``trial_anon``, and ``asv-label``; its full key tables' ``dummy`` rows of
    ``track_2_tag`` are of kind :data:`DUMMY_TRIAL`, whose scores are left out, as its readers leave them) or the
    database's ``ASVspoof5.<dev|eval>.track_2.trial.tsv`` (``TARGET_SPEAKER FLAC_FILE_NAME TARGET_GENDER
    ATTACK_LABEL ASV_KEY``, no header). Each spoof trial's attack is kept (:class:`ASVKey`) where the key names it:
    the track-2 list's ATTACK_LABEL (``A** or bonafide``, as the database README, ``jungjee/asvspoof5`` on Hugging
    Face, ``README.txt`` section 3, lists its five columns), a full key table's ``attack_anon`` column (the name
    ``evaluation-package/util.py`` of ``asvspoof-challenge/asvspoof5`` reads it by); and each trial's codec from a
    full key table's ``codec`` column. The package's SASV key (``spk filename cm-label asv-label``) names neither:
    the CM protocol gives them (:meth:`ASVScores.with_protocol`)."""
    kinds = ASVKey()
    # (target speaker, file, kind, track_2_tag, attack, codec) columns (None: not there) and the row width: the
    # track-2 list's by default
    at: tuple[int, int, int, int | None, int | None, int | None] = (0, 1, 4, None, 3, None)
    width = 5
    first = True
    for number, cells in _rows(key, "SASV key"):
        names = [c.lower() for c in cells]
        if first and any(c in names for c in _KIND_COLUMNS):
            at = (
                _column(key, number, names, _SPEAKER_COLUMNS, "target speaker"),
                _column(key, number, names, _TRIAL_COLUMNS, "file"),
                _column(key, number, names, _KIND_COLUMNS, "trial kind"),
                names.index("track_2_tag") if "track_2_tag" in names else None,
                _header_index(names, KEY_ATTACK_COLUMNS),
                _header_index(names, KEY_CODEC_COLUMNS),
            )
            width, first = len(names), False
            continue
        first = False
        if len(cells) != width:
            raise ProtocolError(
                f"{key}, line {number}: expected {width} columns (the SASV key's header, e.g. spk filename cm-label "
                f"asv-label, or {_TRACK2_LAYOUT} lines), got {' '.join(cells)[:120]!r}"
                # ASVspoof 2021's ASV key beside its score.txt reads as the key of those scores: say how they join
                + _asv2021_hint(cells, keyed=True)
            )
        spk, utt, kind, dummy, attack, codec = at
        trial, value = (cells[spk], cells[utt]), _kind(cells[kind])
        if dummy is not None and cells[dummy].lower() == "dummy":
            # a submission scores these trials too (the package joins its scores with the full key, then drops them):
            # kept as such, so that their scores are left out rather than refused as trials the key lacks
            value = DUMMY_TRIAL
        elif value not in ASV_KEYS:
            raise ProtocolError(
                f"{key}, line {number}: the trial kind {cells[kind]!r} is not target, nontarget or spoof"
            )
        if kinds.setdefault(trial, value) != value:
            raise ProtocolError(f"{key}, line {number}: trial {trial} is {value} here and {kinds[trial]} above")
        if value == "spoof" and attack is not None and cells[attack] not in ("-", "bonafide"):
            kinds.attacks[trial] = cells[attack]
        if codec is not None and value != DUMMY_TRIAL:  # (a dummy trial's scores are left out)
            kinds.codecs[trial] = "none" if cells[codec] in ("-", "none") else cells[codec]
    if all(kind == DUMMY_TRIAL for kind in kinds.values()):
        raise ProtocolError(f"{key}: no trials in the SASV key" + (" but dummy ones" if kinds else ""))
    return kinds


def read_keyed_asv_scores(
    path: Path,
    key: Path,
    *,
    score_columns: tuple[str, ...] = _SCORE_COLUMNS,
    kinds: Mapping[tuple[str, str], str] | None = None,
) -> ASVScores:
    """The ASV scores of a table naming each trial's target speaker (``spk``) and file (``filename``) with a score
    column (``asv-score``, else ``sasv-score``, else ``score``), such as ASVspoof 5's SASV score files, by the kinds
    :func:`read_asv_key` reads from ``key`` (or ``kinds``, as it read them already); a trial the key does not list is
    an error, one of its dummy trials is left out, and so is a trial scored twice; the key's trials without a score
    are counted (``n_unscored``; ``sdd eval`` warns of them), where the package's ``util.py`` refuses a score file that
    does not cover its SASV key."""
    kinds = read_asv_key(key) if kinds is None else kinds
    found: dict[str, list[float]] = {kind: [] for kind in ASV_KEYS}
    # each scored trial's file and codec (by kind) and each spoof trial's attack, as the key names them ('' where not)
    files: dict[str, list[str]] = {kind: [] for kind in ASV_KEYS}
    codecs: dict[str, list[str]] = {kind: [] for kind in ASV_KEYS}
    attacks: list[str] = []
    named_attacks = kinds.attacks if isinstance(kinds, ASVKey) else {}
    named_codecs = kinds.codecs if isinstance(kinds, ASVKey) else {}
    at: tuple[int, int, int] | None = None
    scored: dict[tuple[str, str], int] = {}  # each trial's line
    for number, cells in _rows(path, "ASV score file"):
        if at is None:
            names = [c.lower() for c in cells]
            if not any(c in names for c in (*_SPEAKER_COLUMNS, *_TRIAL_COLUMNS, *score_columns)):
                _refuse_headerless(path, number, cells)
            at = (
                _column(path, number, names, _SPEAKER_COLUMNS, "target speaker"),
                _column(path, number, names, _TRIAL_COLUMNS, "file"),
                _column(path, number, names, score_columns, "score"),
            )
            continue
        line = "\t".join(cells)
        if len(cells) <= max(at):
            raise ProtocolError(f"{path}, line {number}: {line[:120]!r}: fewer columns than the header")
        trial = (cells[at[0]], cells[at[1]])
        kind = kinds.get(trial)
        if kind is None:
            raise ProtocolError(
                f"{path}, line {number}: the trial ({cells[at[0]]}, {cells[at[1]]}) is not in the SASV key {key}"
            )
        if scored.setdefault(trial, number) != number:
            # counted twice, it weighed twice in the ASV error rates, the t-EER and the a-DCF
            raise ProtocolError(
                f"{path}, line {number}: the trial ({cells[at[0]]}, {cells[at[1]]}) is scored a second time (first on "
                f"line {scored[trial]}); a score table holds one row per trial"
            )
        if kind == DUMMY_TRIAL:  # scored, and left out of the metrics, as the package leaves it
            continue
        found[kind].append(_score_cell(path, number, line, cells, at[2]))
        files[kind].append(trial[1])
        codecs[kind].append(named_codecs.get(trial, ""))
        if kind == "spoof":
            attacks.append(named_attacks.get(trial, ""))
    if at is None:
        raise ProtocolError(f"{path}: empty ASV score file")
    unscored = sum(1 for trial, kind in kinds.items() if kind != DUMMY_TRIAL and trial not in scored)
    by_kind = _by_kind(path, found, attacks=attacks, codecs=codecs)
    trial_files = tuple(np.asarray(files[kind], dtype=object) for kind in ASV_KEYS)
    return dataclasses.replace(by_kind, n_unscored=unscored, files=trial_files)


def _refuse_headerless(path: Path, number: int, cells: list[str]) -> None:
    """A ProtocolError for an ``--asv-key`` score file whose first line is no header: the file's lines carry their
    kinds already (ASVspoof 2019's ``bonafide target 1.53``), or it is ASVspoof 2021's ``score.txt``. Its first line
    was called "the header" and found to lack a target speaker column, which left the user to guess why."""
    raise ProtocolError(
        f"{path}, line {number}: {' '.join(cells)[:120]!r} is no header naming the trials' columns (spk or "
        "tar_spk_anon, filename or trial_anon, and a score column such as asv-score): --asv-key gives the kinds of a "
        "score table with such a header (the ASVspoof 5 package's); an ASV score file whose lines hold their own "
        "kinds (ASVspoof 2019's 'bonafide target 1.53', 'SPEAKER UTT SCORE KIND' lines) is read without --asv-key"
        + _asv2021_hint(cells, keyed=True)
    )


_SASV_COLUMNS = ("sasv-score", "sasv_score")


def read_sasv_scores(
    path: str | Path, key: str | Path | None = None, *, kinds: Mapping[tuple[str, str], str] | None = None
) -> ASVScores | None:
    """The ``sasv-score`` column of an ASV score table that has one (an ASVspoof 5 track-2 submission or SASV score
    file: ``spk filename cm-score asv-score sasv-score``), by trial kind as :func:`read_asv_scores` reads the ASV
    scores (``key`` likewise): the a-DCF's input; None for a file without such a column (its scores are an ASV
    system's alone, whose a-DCF says nothing of a countermeasure). ``kinds``: as :func:`read_asv_scores`'s."""
    path = Path(path)
    if _sasv_column(path) != "scores":
        return None  # no sasv-score column, or the package's '-' in every row: ASV scores alone (the organisers')
    return read_asv_scores(path, key, score_columns=_SASV_COLUMNS, kinds=kinds)


def _sasv_column(path: Path) -> str:
    """What the ``sasv-score`` column of the table ``path`` holds: ``"none"`` (no such column), ``"dashes"`` (the
    package's ``-`` in every row) or ``"scores"``."""
    lines = (line.strip() for line in _text(path).splitlines())
    rows = ([f for f in _SPLIT.split(line) if f] for line in lines if line and not line.startswith("#"))
    header = [c.lower() for c in next(rows, [])]
    at = next((header.index(c) for c in _SASV_COLUMNS if c in header), None)
    if at is None:
        return "none"
    return "dashes" if all(len(cells) > at and cells[at] == "-" for cells in rows) else "scores"


def read_sasv_system_scores(path: str | Path, key: str | Path | None = None) -> ASVScores:
    """An SASV system's scores by trial kind, evaluated alone (``sdd eval --asv-scores`` without ``--scores``: the
    a-DCF, as the ASVspoof 5 package's ``t2_single`` mode): the ``sasv-score`` column of a table that has one (a
    track-2 submission, an end-to-end system's with ``-`` as its ``cm-score`` and ``asv-score``), else the score of
    every trial as :func:`read_asv_scores` reads it (the package README's SASV score file, ``SPEAKER UTT SCORE
    KIND``; a ``spk filename score`` table with ``key``). A ``sasv-score`` column of ``-`` alone is refused: such a
    table holds an ASV system's scores, no SASV system's."""
    path = Path(path)
    kinds = read_asv_key(Path(key)) if key is not None else None
    held = _sasv_column(path)
    if held == "dashes":
        raise ProtocolError(
            f"{path}: its sasv-score column holds '-' in every row (the organisers' ASV scores, no SASV system's): "
            "the a-DCF of an SASV system needs its scores; give its score file"
        )
    if held == "scores":
        return read_asv_scores(path, key, score_columns=_SASV_COLUMNS, kinds=kinds)
    return read_asv_scores(path, key, kinds=kinds)


def read_asv_and_sasv_scores(path: str | Path, key: str | Path | None = None) -> tuple[ASVScores, ASVScores | None]:
    """:func:`read_asv_scores` and :func:`read_sasv_scores` of one file, its ``key`` read once (ASVspoof 5's SASV key
    holds some 700k trials: read for each, it took a second more)."""
    kinds = read_asv_key(Path(key)) if key is not None else None
    return read_asv_scores(path, key, kinds=kinds), read_sasv_scores(path, key, kinds=kinds)


def asv_rates(path: str | Path) -> ASVRates:
    """The ASV error rates, at the ASV system's EER threshold, of the score file ``path``."""
    return read_asv_scores(path).rates()


# how the ASVspoof 2021 organisers' ASV scores become lines of the 2019 layout: their score file names the trials
# and their ASV key the kinds, line by line in the same order (the official evaluate.py pairs them by position)
_JOIN_2021 = (
    "paste -d' ' keys/LA/ASV/trial_metadata.txt <(cut -d' ' -f3 keys/LA/ASV/ASVTorch_Kaldi/score.txt) "
    "| awk '$8 == \"eval\"' > asv_eval.txt"
)


def _asv2021_hint(fields: list[str], keyed: bool = False) -> str:
    """For a line of ASVspoof 2021's ASV score file (``LA_0007-alaw-ita_tx LA_E_5013670-alaw-ita_tx -4.87``: no
    trial kind) or of its ASV key (``... bonafide nontarget notrim eval``: no score), how to join the two into lines
    this reader takes;
    ``keyed``: the two were given as ``--asv-scores`` and ``--asv-key``, which joins only ASVspoof 5's tables."""
    if len(fields) < 3 or not ASV2021_TRIAL_ID.match(fields[1]):
        return ""
    if len(fields) == 3 and _number(fields[2]) is not None:
        what = "an ASVspoof 2021 ASV score file (keys/<track>/ASV/ASVTorch_Kaldi/score.txt), which names no trial kind"
    elif fields[-1] in ASV2021_PHASES:
        what = "an ASVspoof 2021 ASV key (keys/<track>/ASV/trial_metadata.txt), which holds no score"
    else:
        return ""
    return (
        f"; this is {what}: give the key's lines with the scores appended, of the phase evaluated, e.g. "
        f"{_JOIN_2021} (the official scripts take the ASV rates of the phase's trials alone)"
        + (", and give that file as --asv-scores, without --asv-key" if keyed else "")
    )


def _number(field: str) -> float | None:
    try:
        value = float(field)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
