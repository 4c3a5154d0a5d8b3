"""Robustness evaluation: a detector scored under named degradations (post-processing, laundering).

Every utterance of a protocol is decoded once; each named test condition of
:mod:`sddkit.augment.conditions` is applied to it and the result scored with a
:class:`~sddkit.scoring.api.ScoringDetector`. Two modes, as in the SAFE challenge's
post-processing and laundering tasks:

* ``all``: every utterance is degraded (the channel hits real and fake speech alike);
* ``spoof_only``: only spoofs are degraded and bona fide speech stays clean, so a detector
  cannot win by flagging "degraded" as "spoof" (an attacker launders fakes; real speech is as is).

``clean`` is always evaluated and is the reference row of both modes. Per (condition, mode) row:
EER (%) and minDCF (threshold-free), and balanced accuracy / TPR / TNR at the model's stored
decision threshold (the one deployment would use).

Determinism: condition ``c`` on utterance ``u`` draws its randomness from
``condition_seed(seed, c, u)``, a hash of the three (not Python's salted ``hash``), so a run is
reproducible and a degraded utterance does not depend on thread scheduling, on the subset or on
which other conditions run. Bona fide scores of ``spoof_only`` *are* the clean scores (not a
second scoring of the same audio), and spoof scores are shared by both modes.

Files written by :func:`write_robustness` into the output folder::

    robustness.csv / robustness.json / robustness.md   one row per (condition, mode)
    robustness.png                                     EER per condition, one bar per mode
    scores_<mode>.csv                                  utt_id, label, condition, score per trial

Resuming: with a ``journal`` (``sdd robustness`` keeps ``robustness.journal.jsonl`` in its output folder),
:func:`run_robustness` appends, after every batch the model has scored, one JSON line with that batch's
per-condition scores, condition errors and unreadable files, flushed to disk, so a crash or Ctrl-C loses at
most one batch. A rerun with the same journal reuses the files it holds and scores only the rest, in the same
batches, so its report is the one an uninterrupted run writes. The journal's first line records what the scores
depend on (the model: its weights digest, inference settings, scores of a probe signal and how silent windows are
scored, ``silent_windows``, which a journal of sddkit before 2026-12-06 lacks and is refused for; the conditions, in
any order, and each one's full configuration (``condition_configs``: not recorded by earlier sddkits, whose
journals are resumed unchecked on that point); the modes, seed, limit, fast codecs, maximum duration; the selected
utterances' ids, audio paths (made absolute, so a rerun may start in another folder; a journal of an earlier
sddkit, which took them as given, is resumed in the folder it was written in) and labels); a journal of another
run is refused, naming what differs, never
mixed in. ``--batch-size``, ``--workers``, ``--threads`` and ``--device`` may change between the runs (scores then
agree up to rounding), and so may package versions (``RobustnessResult.versions_changed`` says which) and the git
commit of sddkit's source (``RobustnessResult.git_changed``). A last line
cut off by a kill is dropped. :func:`write_robustness` removes the journal once the report it was scored for is
published.
With ``retry_errors`` (``sdd robustness --retry-errors``, as ``sdd score --retry-errors``) the files whose journaled
results hold an error (a file that could not be decoded, or a condition that failed or scored NaN on it) are first
removed from the journal (atomically), with their errors, and scored again under every condition; other files'
results stay.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from sddkit.config import to_dict
from sddkit.data.protocols._common import check_selected
from sddkit.data.protocols.asvspoof import PA2021_HIDDEN_TRACKS
from sddkit.data.table import UtteranceTable
from sddkit.documents import json_safe
from sddkit.errors import ConfigError, ProtocolError, SddkitError
from sddkit.locks import ExclusiveLock
from sddkit.metrics import DCFCost, det_curve, eer_from_curve, min_dcf_from_curve, threshold_metrics
from sddkit.outputs import publish_staged, why_unwritable

SCHEMA = "sddkit.robustness/1"
MODES: tuple[str, ...] = ("all", "spoof_only")
MODE_CHOICES: tuple[str, ...] = ("both", *MODES)
CLEAN = "clean"
ROW_COLUMNS: tuple[str, ...] = (
    "condition",
    "mode",
    "n",
    "n_bonafide",
    "n_spoof",
    "n_failed",
    "eer",
    "eer_delta",
    "balanced_accuracy",
    "tpr",
    "tnr",
    "min_dcf",
    "note",
)
MAX_REPORTED_ERRORS = 50  # error messages kept per kind in robustness.json (all are counted)
JOURNAL_NAME = "robustness.journal.jsonl"  # sdd robustness's journal in its output folder
JOURNAL_SCHEMA = "sddkit.robustness-journal/1"


# --- conditions -------------------------------------------------------------------------------


def resolve_conditions(value: str | Sequence[str] | None) -> list[str]:
    """``"all"``, ``"mp3_64k,noise_white_10db"`` or a list -> validated names, ``clean`` first.

    Duplicates are dropped; ``all`` expands to every condition. Unknown names raise
    :class:`~sddkit.errors.ConfigError` listing the valid ones.
    """
    from sddkit.augment.conditions import condition_names

    if value is None:
        value = "all"
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(v).strip() for v in items if str(v).strip()]
    if not names:
        raise ConfigError(f"no conditions given; use 'all' or some of: {', '.join(condition_names())}")
    valid = condition_names()
    resolved: list[str] = [CLEAN]
    for name in names:
        expanded = valid if name == "all" else [name]
        for n in expanded:
            if n not in valid:
                from sddkit.config import did_you_mean

                raise ConfigError(
                    f"unknown condition {n!r}{did_you_mean([n], ['all', *valid])}; valid conditions: all, "
                    f"{', '.join(valid)}"
                )
            if n not in resolved:
                resolved.append(n)
    return resolved


def condition_seed(seed: int, condition: str, utt_id: str) -> int:
    """A 63-bit seed that depends only on (seed, condition, utt_id), stable across processes."""
    digest = hashlib.blake2b(f"{seed}\x00{condition}\x00{utt_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def degrade(name: str, x: np.ndarray, sr: int, seed: int, *, fast_codecs: bool = False) -> np.ndarray:
    """Apply condition ``name`` to (T,) ``x``: :func:`~sddkit.augment.conditions.apply_condition` (``fast_codecs``:
    with the codecs' cheaper encoder search). Deterministic in its arguments. (T,) -> (T,) float32, except a time
    stretch, which gives the whole stretched utterance."""
    from sddkit.augment.base import as_waveform
    from sddkit.augment.conditions import apply_condition

    if name == CLEAN:
        return as_waveform(x)
    return apply_condition(name, x, sr, seed=seed, fast_codecs=fast_codecs)


# --- configuration ----------------------------------------------------------------------------


@dataclass
class RobustnessConfig:
    """What :func:`run_robustness` evaluates.

    conditions: names or ``"all"`` (resolved on construction, ``clean`` first); mode: ``both``,
    ``all`` or ``spoof_only``; seed: degradation seed; workers: decoding + degradation threads
    (0 = in the scoring thread); limit: evaluate a seeded, label-stratified subset of this many
    utterances; fast_codecs: cheaper codec encoder search (faster, not bit-identical to the
    named conditions); max_duration: longer files are counted as failures (None = no limit).
    """

    conditions: list[str] = field(default_factory=lambda: ["all"])
    mode: Literal["both", "all", "spoof_only"] = "both"
    seed: int = 0
    workers: int = 2
    limit: int | None = None
    fast_codecs: bool = False
    max_duration: float | None = 600.0
    dcf: DCFCost = field(default_factory=DCFCost)

    def __post_init__(self) -> None:
        self.conditions = resolve_conditions(self.conditions)
        if self.mode not in MODE_CHOICES:
            raise ConfigError(f"mode must be one of {list(MODE_CHOICES)}, got {self.mode!r}")
        if self.seed < 0:  # np.random.default_rng (the --limit draw) refuses negative seeds
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.limit is not None and self.limit < 2:
            raise ValueError(f"limit must be >= 2 (one bona fide and one spoof utterance), got {self.limit}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError(f"max_duration must be positive or None, got {self.max_duration}")

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.mode == "both" else (self.mode,)


def select_partitions(
    table: UtteranceTable, partitions: Sequence[str] | None, what: str = "the protocol"
) -> UtteranceTable:
    """The rows whose ``partition`` is listed (``None``: the whole table), for readers without a
    ``partitions`` option. A table without a partition column, or a listed partition that no row has,
    is a :class:`~sddkit.errors.ProtocolError` (a typo must not silently shrink the evaluation)."""
    if partitions is None:
        return table
    wanted = list(dict.fromkeys(str(p) for p in partitions))
    if not table.has_column("partition"):
        raise ProtocolError(f"{what} has no partition column, so --partitions {' '.join(wanted)} cannot select rows")
    present = set(table.column("partition").tolist()) - {""}
    check_selected(what, "partitions", wanted, present, hint=_phase_hint(table, wanted, present))
    return table.where(partition=wanted)


def _phase_hint(table: UtteranceTable, wanted: list[str], present: set[str]) -> str:
    """How to select an ASVspoof 2021 phase ``--partitions`` cannot ('' for anything else): one official hidden track
    of a full PA key, whose hidden phase holds both (partition ``hidden``, the tracks told apart by TRIM), is kept by
    the reader's ``phases`` option, its trials then of a partition of the track's name; the stage-1 keys'
    ``hidden_track`` is ``hidden`` in the full keys. A plain "no such partition" left the user to guess either."""
    missing = [w for w in wanted if w not in present]
    tracks = [w for w in missing if w in PA2021_HIDDEN_TRACKS]
    corpora = set(table.column("corpus").tolist()) if table.has_column("corpus") else set()
    if tracks and "hidden" in present and ("asvspoof2021_pa" in corpora or table.has_column("asv_room")):
        return (
            f"; the full ASVspoof 2021 PA key writes its two official hidden tracks as phase hidden (told apart by "
            f"TRIM: notrim track 1, trim track 2): select {' and '.join(tracks)} with --protocol-option "
            f"phases=[{', '.join(wanted)}] instead of --partitions (its trials are then of partition "
            f"{' and '.join(tracks)}, its t-DCFs of that track's ASV trials alone)"
        )
    if "hidden_track" in missing and "hidden" in present:
        return "; the full ASVspoof 2021 keys name the stage-1 keys' phase hidden_track hidden: --partitions hidden"
    return ""


def select_utterances(table: UtteranceTable, limit: int | None, seed: int = 0) -> UtteranceTable:
    """At most ``limit`` utterances, drawn with ``seed`` and stratified by label (both classes kept
    whenever the table has both), in protocol order. ``None`` or a large limit: the whole table."""
    if limit is None or limit >= len(table):
        return table
    labels = table.labels
    rng = np.random.default_rng(seed)
    bona, spoof = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_bona = int(round(limit * len(bona) / len(labels)))
    if len(bona) and len(spoof):
        n_bona = min(max(n_bona, 1), limit - 1)
    n_bona = min(n_bona, len(bona))
    n_spoof = min(limit - n_bona, len(spoof))
    chosen = np.concatenate([rng.permutation(bona)[:n_bona], rng.permutation(spoof)[:n_spoof]])
    mask = np.zeros(len(table), dtype=bool)
    mask[chosen] = True
    return table.subset(mask)


# --- running ----------------------------------------------------------------------------------


@dataclass
class RobustnessResult:
    """Scores and summary rows of one robustness run.

    utt_ids, labels: (N,) the selected utterances (1 = bona fide); scores: condition -> (N,)
    calibrated scores of the degraded audio (NaN where it was not needed or failed: bona fide
    utterances are only degraded for mode ``all``); failures: decode errors (whole utterance
    lost); condition_errors: condition -> errors of degrading/scoring one utterance; rows: one
    per (condition, mode), see ``ROW_COLUMNS``; info: model/protocol description for the report;
    journal: the journal the scores were recorded in (None: none), removed by :func:`write_robustness`
    once the report is published; n_resumed: files whose results this run read back from it; n_retried: files
    whose journaled errors this run dropped to score them again (``retry_errors``); versions_changed:
    ``"numpy 1.26.4 -> 2.1.0"`` for each package whose version differs from the one the journal's first run
    recorded (``info["versions"]``) when results were read back from it (``info["earlier_versions"]`` then keeps
    the versions those results were scored under); git_changed: ``"commit 1a2b3c4d5e6f -> commit 6f5e4d3c2b1a"``
    when the git commit of sddkit's source (``info["git"]``) differs from the journal's first run's (whose block
    ``info["earlier_git"]`` then keeps, as ``sdd score``'s run record does), else None; n_protocol: the utterances
    of the protocol ``config.limit`` drew ``utt_ids`` from (None: not known).
    """

    config: RobustnessConfig
    threshold: float
    utt_ids: list[str]
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    failures: list[str]
    condition_errors: dict[str, list[str]]
    rows: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    journal: Path | None = None
    n_resumed: int = 0
    n_retried: int = 0
    versions_changed: list[str] = field(default_factory=list)
    git_changed: str | None = None
    n_protocol: int | None = None

    @property
    def decoded(self) -> np.ndarray:
        """(N,) bool: utterances that were decoded (their clean score exists)."""
        return np.isfinite(self.scores[CLEAN])

    def mode_scores(self, mode: str, condition: str) -> np.ndarray:
        """(N,) scores of ``condition`` in ``mode`` (spoof_only: bona fide keep their clean score)."""
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
        degraded = self.scores[condition]
        if mode == "all":
            return degraded
        return np.where(self.labels == 1, self.scores[CLEAN], degraded)

    def row(self, condition: str, mode: str) -> dict[str, Any]:
        for r in self.rows:
            if r["condition"] == condition and r["mode"] == mode:
                return r
        raise KeyError(f"no row for condition {condition!r} in mode {mode!r}")

    def to_dict(self) -> dict[str, Any]:
        n_decoded = int(self.decoded.sum())
        return json_safe(
            {
                "schema": SCHEMA,
                "units": {
                    "eer": "percent",
                    "eer_delta": "percentage points",
                    "balanced_accuracy": "fraction",
                    "tpr": "fraction",
                    "tnr": "fraction",
                    "min_dcf": "normalised",
                    "decision": "score >= threshold",
                },
                "info": self.info,
                "threshold": self.threshold,
                "seed": self.config.seed,
                "modes": list(self.config.modes),
                "conditions": list(self.config.conditions),
                # what each name meant in this run: with --fast-codecs, the codecs' cheaper search ("fast": true)
                "condition_configs": condition_configs(self.config.conditions, fast_codecs=self.config.fast_codecs),
                "fast_codecs": self.config.fast_codecs,
                "limit": self.config.limit,  # a subset of the protocol (drawn with seed), or null: all of it
                "max_duration": self.config.max_duration,
                "dcf": to_dict(self.config.dcf),
                "n_utterances": len(self.utt_ids),
                "n_protocol": self.n_protocol,  # before --limit drew the n_utterances
                "n_decoded": n_decoded,
                "n_bonafide": int(self.labels[self.decoded].sum()),
                "n_spoof": int(n_decoded - self.labels[self.decoded].sum()),
                "n_failed_files": len(self.failures),
                "failed_files": self.failures[:MAX_REPORTED_ERRORS],
                "condition_errors": {
                    c: {"count": len(e), "examples": e[:MAX_REPORTED_ERRORS]} for c, e in self.condition_errors.items()
                },
                "rows": self.rows,
            }
        )


@dataclass
class _Utterance:
    """One decoded utterance: its index and, per needed condition, its windows or an error."""

    index: int
    variants: list[tuple[str, Any]]  # (condition, PreparedAudio | error message)


def _process(detector: Any, table_row: dict[str, Any], index: int, cfg: RobustnessConfig) -> _Utterance | str:
    """Decode one file and window every degradation of it; the error text if it cannot be decoded."""
    from sddkit.audio.io import load_audio

    path, utt_id = str(table_row["path"]), str(table_row["utt_id"])
    if not path:
        return f"{utt_id}: the protocol gives no audio path"
    try:
        x = load_audio(path, sample_rate=detector.sample_rate, max_duration=cfg.max_duration)
        detector.check_duration(x, path=path)  # too short to score is the file's failure, not each condition's
    except SddkitError as exc:
        return str(exc)
    except Exception as exc:  # any decoder failure is this file's problem, not the run's
        return f"{path}: {type(exc).__name__}: {exc}"
    bona = table_row["label"] == "bonafide"
    variants: list[tuple[str, Any]] = []
    for name in cfg.conditions:
        if bona and name != CLEAN and "all" not in cfg.modes:
            continue  # spoof_only alone never degrades bona fide speech
        try:
            y = degrade(
                name, x, detector.sample_rate, condition_seed(cfg.seed, name, utt_id), fast_codecs=cfg.fast_codecs
            )
            variants.append((name, detector.prepare(y)))
        except Exception as exc:  # e.g. a codec missing from this FFmpeg build: counted per condition
            variants.append((name, f"{utt_id}: {type(exc).__name__}: {exc}"))
    return _Utterance(index, variants)


def _processed_in_order(
    detector: Any, records: Sequence[dict[str, Any]], cfg: RobustnessConfig, todo: Sequence[int] | None = None
) -> Generator[tuple[int, _Utterance | str], None, None]:
    """(index, decoded utterance or error) of the ``todo`` indices (default: all) in protocol order,
    ``cfg.workers`` threads ahead of the model (bounded look-ahead: every condition's windows of few files in
    memory). Closed early (Ctrl-C), the files queued but not started are dropped, not degraded first."""
    from sddkit.threads import in_order_ahead

    order = list(range(len(records)) if todo is None else todo)
    return in_order_ahead(
        lambda i: _process(detector, records[i], i, cfg), order, cfg.workers, thread_name="sdd-robust"
    )


# --- the journal ------------------------------------------------------------------------------


def journal_header(
    detector: Any, records: Sequence[dict[str, Any]], cfg: RobustnessConfig, info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the scores of a run depend on, the first line of its journal: a journal is resumed only when this
    matches (see :func:`header_differences`). ``info`` (the model and protocol as named) is for messages only."""
    from sddkit.scoring.batch import run_info

    return json_safe(
        {
            "schema": JOURNAL_SCHEMA,
            "model": run_info(detector),  # weights digest, inference settings, scores of a probe signal
            "settings": {
                "conditions": list(cfg.conditions),
                "modes": list(cfg.modes),
                "seed": cfg.seed,
                "limit": cfg.limit,
                "fast_codecs": cfg.fast_codecs,
                "max_duration": cfg.max_duration,
                # what each named condition does: a resume after an upgrade that changed one (a default, a range)
                # would mix the audio of two definitions under one name. Without the fast search (fast_codecs says
                # whether it ran), as journals recorded them before the report gave it: theirs resume.
                "condition_configs": condition_configs(cfg.conditions),
            },
            # the audio file itself: a path relative to the folder the run was started in names another file when a
            # rerun starts elsewhere (and the same file named absolutely is the same utterance)
            "utterances": {"n": len(records), "digest": utterances_digest(records)},
            "info": dict(info or {}),
        }
    )


def utterances_digest(records: Sequence[dict[str, Any]], *, as_given: bool = False) -> str:
    """SHA-256 of the utterances' ids, audio paths (absolute; ``as_given``: as the protocol gave them, as
    journals written before sddkit named them absolutely hashed them) and labels."""
    rows = hashlib.sha256()
    for r in records:
        path = "" if not r["path"] else str(r["path"]) if as_given else os.path.abspath(str(r["path"]))
        rows.update(f"{r['utt_id']}\x00{path}\x00{r['label']}\n".encode())
    return rows.hexdigest()


def header_differences(earlier: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two :func:`journal_header` records, in words (empty: the same run)."""
    from sddkit.scoring.batch import run_differences, silent_windows_change

    if earlier.get("schema") != now.get("schema"):
        return [f"journal format: earlier {earlier.get('schema')!r}, now {now.get('schema')!r}"]
    diffs: list[str] = []
    model_then, model_now = earlier.get("model") or {}, now.get("model") or {}
    for what in run_differences(model_then, model_now):
        if what == "model weights":
            diffs.append(f"the model (earlier {model_then.get('model')}, now {model_now.get('model')})")
        elif what == "silent_windows":  # not a setting: a journal of an sddkit that averaged silent windows in
            diffs.append(silent_windows_change(model_then, model_now))
        else:
            diffs.append(f"the model's {what} settings: earlier {model_then.get(what)!r}, now {model_now.get(what)!r}")
    then, settings = earlier.get("settings") or {}, now.get("settings") or {}
    for key in settings:
        a, b = then.get(key), settings[key]
        if a == b:
            continue
        if key == "condition_configs":
            diffs += _definition_differences(a, b)
            continue
        if key == "conditions" and isinstance(a, list) and sorted(map(str, a)) == sorted(b):
            # the same conditions in another order (--conditions b,a after a,b): a degraded utterance's seed depends
            # on its condition's name, not its place, so the journaled scores are this run's; before, it was refused
            continue
        if key == "conditions" and isinstance(a, list) and set(a) != set(b):  # 41 names: say which changed
            added, dropped = [v for v in b if v not in a], [v for v in a if v not in b]
            change = ", ".join(filter(None, [added and f"added {added}", dropped and f"dropped {dropped}"]))
            diffs.append(f"{key}: {change}")
        else:
            diffs.append(f"{key}: earlier {a!r}, now {b!r}")
    if earlier.get("utterances") != now.get("utterances"):
        n_then, n_now = (earlier.get("utterances") or {}).get("n"), now["utterances"]["n"]
        diffs.append(
            f"the utterances: earlier {n_then}, now {n_now} "
            "(ids, audio paths or labels differ: another --protocol, --partitions, --limit or --seed?)"
        )
    return diffs


def condition_configs(names: Sequence[str], *, fast_codecs: bool = False) -> dict[str, Any]:
    """Condition name -> its full configuration (:func:`~sddkit.augment.conditions.condition_config`; ``fast_codecs``:
    as ``--fast-codecs`` runs it), ``clean`` left out (it has none)."""
    from sddkit.augment.conditions import condition_config

    return {name: condition_config(name, fast_codecs=fast_codecs) for name in names if name != CLEAN}


def _definition_differences(earlier: Any, now: dict[str, Any]) -> list[str]:
    """The conditions of both runs whose configurations differ, in words (a journal of an sddkit that did not record
    them: none)."""
    if not isinstance(earlier, dict):
        return []
    changed = [name for name in now if name in earlier and earlier[name] != now[name]]
    if not changed:
        return []
    first = changed[0]
    fields = [k for k in {**earlier[first], **now[first]} if earlier[first].get(k) != now[first].get(k)]
    said = ", ".join(f"{k} earlier {earlier[first].get(k)!r}, now {now[first].get(k)!r}" for k in fields)
    return [f"the definition of condition(s) {changed} ({first}: {said}; another sddkit?)"]


class RobustnessJournal:
    """An append-only JSON-lines record of the scored batches of one robustness run, held exclusively.

    Line 1 is the run's :func:`journal_header`; each further line one batch:
    ``{"files": [{"i": index, "utt_id": ..., "scores": {condition: score}} | {"i", "utt_id", "failure": error}],
    "errors": [[condition, error, index], ...]}`` (the condition errors in the order they arose, each with the
    index of its file; journals written before the index was recorded have ``[condition, error]``). Opening an
    existing journal checks its header against ``header`` (another run's is a ProtocolError saying what differs)
    and drops a last line cut off by a kill; ``batches`` are the lines read back. With ``retry_errors`` the files
    whose results hold an error (a failure, or a condition error) are first removed from the journal, with
    their errors (the file is rewritten atomically), so that they are scored again; ``retried`` counts them.
    """

    def __init__(
        self,
        path: str | Path,
        header: dict[str, Any],
        *,
        retry_errors: bool = False,
        digest_as_given: str | None = None,
    ):
        """``digest_as_given``: :func:`utterances_digest` of the records ``as_given``, which a journal of an
        earlier sddkit recorded (its paths as the protocol gave them): such a journal, written in the current
        working directory, is of the same utterances and is resumed."""
        self.path = Path(path)
        self._digest_as_given = digest_as_given
        self.retried = 0
        self._header: dict[str, Any] | None = None  # the header an existing journal holds
        self._file: Any = None
        self._lock = ExclusiveLock(
            f"{self.path}.lock",
            ProtocolError(
                f"{self.path} is being written by another sdd robustness run (it holds {self.path.name}.lock); "
                "wait for it to finish, or choose another --out"
            ),
        )
        try:
            self.batches = self._read(header)
            if retry_errors and self.batches:
                self._drop_errors()
            self._file = open(self.path, "a", encoding="utf-8")
            if self.path.stat().st_size == 0:
                self._write(header)
        except OSError as exc:
            self._lock.release()
            raise ConfigError(f"{self.path}: cannot write the robustness journal ({exc.strerror or exc})") from None
        except BaseException:
            self._lock.release()
            raise

    def _refuse(self, why: str) -> ProtocolError:
        return ProtocolError(
            f"{self.path} {why}; resuming would mix it with this run: delete it to start afresh, "
            "or choose another --out"
        )

    def _read(self, header: dict[str, Any]) -> list[dict[str, Any]]:
        """The batches of an existing journal (after checking its header); a cut-off last line is cut away."""
        if not self.path.is_file():
            return []
        lines: list[tuple[int, Any]] = []  # (offset after the line, its record or None when damaged)
        offset = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # cut off mid-write: the batch it held is scored again
                offset += len(raw)
                try:
                    lines.append((offset, json.loads(raw)))
                except ValueError:
                    lines.append((offset, None))  # damaged: at the end it was cut off too, else it is refused
        while lines and lines[-1][1] is None:
            lines.pop()
        whole = lines[-1][0] if lines else 0
        if whole != self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                f.truncate(whole)
        if not lines:
            return []
        earlier = self._header = lines[0][1]
        if not isinstance(earlier, dict) or not str(earlier.get("schema")).startswith("sddkit.robustness-journal/"):
            raise self._refuse("is not a robustness journal")
        diffs = header_differences(earlier, header)
        if diffs and self._written_before_absolute_paths(earlier, header):
            diffs = header_differences({**earlier, "utterances": header["utterances"]}, header)
        if diffs:
            raise self._refuse(f"holds the scores of another robustness run ({'; '.join(diffs)})")
        batches = [record for _, record in lines[1:]]
        for k, batch in enumerate(batches, start=2):
            if not isinstance(batch, dict) or not isinstance(batch.get("files"), list):
                raise self._refuse(f"is damaged at line {k}")
        return batches

    def _written_before_absolute_paths(self, earlier: dict[str, Any], header: dict[str, Any]) -> bool:
        """``earlier`` hashed the utterances' paths as given, in this working directory: the same audio files."""
        utterances = earlier.get("utterances") or {}
        cwd = (earlier.get("info") or {}).get("cwd") if isinstance(earlier.get("info"), dict) else None
        return (
            self._digest_as_given is not None
            and utterances == {"n": header["utterances"]["n"], "digest": self._digest_as_given}
            and isinstance(cwd, str)
            and os.path.abspath(cwd) == os.getcwd()
        )

    def _drop_errors(self) -> None:
        """Remove the files whose results hold an error, and their errors, from :attr:`batches` and the file."""
        from sddkit.detectors.model_dir import atomic_write_bytes

        kept: list[dict[str, Any]] = []
        for k, batch in enumerate(self.batches, start=2):
            try:
                ids = {int(e["i"]): str(e["utt_id"]) for e in batch["files"]}
                owners = [_error_file(e, ids) for e in batch["errors"]]
                retried = {int(e["i"]) for e in batch["files"] if "failure" in e} | {i for i in owners if i in ids}
            except (KeyError, TypeError, ValueError) as exc:
                raise self._refuse(f"is damaged at line {k} ({exc})") from None
            self.retried += len(retried)
            files = [e for e in batch["files"] if int(e["i"]) not in retried]
            errors = [e for e, i in zip(batch["errors"], owners) if i is None or i not in retried]
            if files or errors:
                kept.append({**batch, "files": files, "errors": errors})
        if not self.retried:
            return
        lines = [self._header, *kept]
        text = "".join(json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in lines)
        atomic_write_bytes(self.path, text.encode())
        self.batches = kept

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n")
        self._file.flush()  # a kill loses at most the batch being scored
        os.fsync(self._file.fileno())

    def append(self, files: list[dict[str, Any]], errors: Sequence[Sequence[Any]]) -> None:
        """Record one scored batch: its files (scores or failure) and the condition errors it raised."""
        try:
            self._write({"files": files, "errors": [list(e) for e in errors]})
        except OSError as exc:  # a full disk: stop now, with what was written kept
            raise ConfigError(f"{self.path}: cannot write the robustness journal ({exc.strerror or exc})") from None

    def close(self) -> None:
        try:
            if self._file is not None:
                self._file.close()
        except OSError:
            # every line was flushed as it was written, or its write raised already (a full disk: the ConfigError
            # of append, which close's retry of the same flush must not replace); a resume cuts a partial line
            pass
        finally:
            self._lock.release()


def _error_file(error: Any, ids: dict[int, str]) -> int | None:
    """The index of the file (of ``ids``: index -> utt_id, one batch's) a journaled condition error belongs to.

    ``[condition, error, index]``; a ``[condition, error]`` of an older journal by its text, which starts with
    the utt_id and ``": "`` (the longest such id of the batch); None when no file of the batch matches."""
    if len(error) > 2:
        return int(error[2])
    text = str(error[1])
    matches = [i for i, u in ids.items() if text.startswith(f"{u}: ")]
    return max(matches, key=lambda i: len(ids[i])) if matches else None


def run_robustness(
    detector: Any,
    table: UtteranceTable,
    config: RobustnessConfig | None = None,
    *,
    progress: bool = True,
    info: dict[str, Any] | None = None,
    journal: str | Path | None = None,
    retry_errors: bool = False,
) -> RobustnessResult:
    """Score ``table`` under every condition of ``config`` with ``detector`` (a ScoringDetector).

    Decoding and degradation run in ``config.workers`` threads while this thread runs the model
    on batches of ``detector.batch_size`` windows. Unreadable files are counted, not fatal; a
    ProtocolError is raised before any file is read when the (selected) protocol lacks a class, and after the
    scoring when no file can be decoded or the decoded ones lack a class.

    ``journal``: a file (:class:`RobustnessJournal`) to which every scored batch is appended; the files an
    earlier run with the same model, settings and utterances recorded there are read back, not scored again,
    and the result is the one an uninterrupted run gives. A journal of another run is a ProtocolError.
    ``retry_errors``: the files whose journaled results hold an error are scored again (see
    :class:`RobustnessJournal`).
    """
    from sddkit.progress import progress_bar

    cfg = config or RobustnessConfig()
    n_protocol = len(table)
    table = select_utterances(table, cfg.limit, cfg.seed)
    _check_evaluable(table)
    records = table.df[["utt_id", "path", "label"]].to_dict("records")
    n = len(records)
    scores = {name: np.full(n, np.nan) for name in cfg.conditions}
    failures: list[str] = []
    condition_errors: dict[str, list[str]] = {}
    log = None
    done: set[int] = set()
    versions_changed: list[str] = []
    git_changed: str | None = None
    if journal is not None:
        log = RobustnessJournal(
            journal,
            journal_header(detector, records, cfg, info),
            retry_errors=retry_errors,
            digest_as_given=utterances_digest(records, as_given=True),
        )
    try:
        if log is not None:
            done = _replay(log, records, scores, failures, condition_errors)
        todo = [i for i in range(n) if i not in done]
        if done:  # results read back: the journal's first run decoded, degraded and scored them
            info, versions_changed = _resumed_versions(log, info)
            info, git_changed = _resumed_git(log, info)
        bar = progress_bar(total=n, initial=len(done), unit="file", desc="sdd robustness", enabled=progress)
        processed = _processed_in_order(detector, records, cfg, todo)
        try:
            _score_processed(detector, records, processed, bar, scores, failures, condition_errors, log)
        finally:
            processed.close()  # now, not when the traceback is freed: an interruption drops the queued files
            bar.close()
    finally:
        if log is not None:
            log.close()

    labels = table.labels
    _check_scored(labels, scores, failures, n, log)
    result = RobustnessResult(
        config=cfg,
        threshold=float(detector.threshold),
        utt_ids=[str(r["utt_id"]) for r in records],
        labels=labels,
        scores=scores,
        failures=failures,
        condition_errors=condition_errors,
        rows=[],
        info=dict(info or {}),
        journal=None if log is None else log.path,
        n_resumed=len(done),
        n_retried=0 if log is None else log.retried,
        versions_changed=versions_changed,
        git_changed=git_changed,
        n_protocol=n_protocol,
    )
    result.rows = summarize(result)
    return result


def _check_evaluable(table: UtteranceTable) -> None:
    """A ProtocolError when the (selected) protocol has no utterances or only one class."""
    if len(table) == 0:
        raise ProtocolError("the protocol has no utterances to evaluate")
    n_bona = int(table.labels.sum())
    if n_bona in (0, len(table)):  # refused now, not after every file was scored under every condition
        which = "bona fide" if n_bona else "spoof"
        raise ProtocolError(
            f"the protocol holds only {which} utterances ({len(table)}); "
            "a robustness evaluation needs both bona fide and spoof speech"
        )


def _resumed_versions(log: RobustnessJournal, info: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """(``info``, the packages whose versions changed since the journal's first run); with such changes, ``info``
    gains the earlier versions."""
    from sddkit.training.provenance import changed_versions

    earlier_versions = ((log._header or {}).get("info") or {}).get("versions")
    versions_changed = changed_versions(earlier_versions, (info or {}).get("versions") or {})
    if versions_changed:  # not refused (an upgrade between interruption and resume is fine), but kept
        info = {**(info or {}), "earlier_versions": earlier_versions}
    return info, versions_changed


def _resumed_git(log: RobustnessJournal, info: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """(``info``, ``"<earlier> -> <now>"`` when the git commit of sddkit's source differs from the journal's first
    run's, else None); with such a change, ``info`` gains ``earlier_git`` (a list, as ``sdd score``'s record keeps
    it). Never refused: the code changing between an interruption and its resume is normal (what the scores depend
    on is compared by :func:`header_differences`). A journal of an sddkit that did not record the commit adds
    nothing."""
    from sddkit.training.provenance import changed_git, earlier_blocks

    earlier = (log._header or {}).get("info")
    if not isinstance(earlier, dict) or info is None or "git" not in info:
        return info, None
    kept = earlier_blocks(earlier, "git", info["git"])
    return ({**info, **kept} if kept else info), changed_git(earlier, info["git"])


def _score_processed(
    detector: Any,
    records: Sequence[dict[str, Any]],
    processed: Iterable[tuple[int, _Utterance | str]],
    bar: Any,
    scores: dict[str, np.ndarray],
    failures: list[str],
    condition_errors: dict[str, list[str]],
    log: RobustnessJournal | None,
) -> None:
    """Score the ``processed`` files' conditions in batches of ``detector.batch_size`` windows, journaling each
    batch to ``log`` once all its conditions are scored."""
    batches = _ConditionBatches(detector, records, scores, condition_errors, log)
    n_windows = 0
    for i, item in processed:
        bar.update(1)
        if isinstance(item, str):
            failures.append(item)
            batches.files.append({"i": i, "utt_id": str(records[i]["utt_id"]), "failure": item})
            continue
        batches.files.append({"i": i, "utt_id": str(records[i]["utt_id"])})
        for name, prepared in item.variants:
            if isinstance(prepared, str):
                batches.add_error(name, prepared, i)
                continue
            batches.pending.append((i, name, prepared))
            n_windows += prepared.n_windows
        if n_windows >= detector.batch_size:
            batches.flush()
            batches.commit()
            n_windows = 0
    if batches.pending:
        batches.flush()
    batches.commit()


@dataclass
class _ConditionBatches:
    """What :func:`_score_processed` holds between model calls and journal lines."""

    detector: Any
    records: Sequence[dict[str, Any]]
    scores: dict[str, np.ndarray]
    condition_errors: dict[str, list[str]]
    log: RobustnessJournal | None
    # (utterance index, condition, PreparedAudio) awaiting the model
    pending: list[tuple[int, str, Any]] = field(default_factory=list)
    # the files processed since the journal's last line, and the condition errors they raised, in order
    files: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str, int]] = field(default_factory=list)

    def add_error(self, name: str, error: str, i: int) -> None:
        self.condition_errors.setdefault(name, []).append(error)
        self.errors.append((name, error, i))

    def flush(self) -> None:
        """Run the model on the pending windows, and empty them."""
        from sddkit.scoring.api import non_finite_reason

        results = self.detector.score_prepared([p for _, _, p in self.pending])
        for (i, name, _), res in zip(self.pending, results):
            reason = non_finite_reason(res)
            if reason is not None:  # a NaN would otherwise pass for a score (and always read as "spoof")
                self.add_error(name, f"{self.records[i]['utt_id']}: {reason}", i)
                continue
            self.scores[name][i] = res.score
        self.pending.clear()

    def commit(self) -> None:
        """Journal the files processed since the last commit: all their conditions are scored by now."""
        if self.log is not None and self.files:
            for entry in self.files:
                if "failure" not in entry:
                    i = entry["i"]
                    entry["scores"] = {c: float(s[i]) for c, s in self.scores.items() if np.isfinite(s[i])}
            self.log.append(self.files, self.errors)
        self.files.clear()
        self.errors.clear()


def _check_scored(
    labels: np.ndarray, scores: dict[str, np.ndarray], failures: list[str], n: int, log: RobustnessJournal | None
) -> None:
    """A ProtocolError when none of the ``n`` files could be decoded and scored, or the scored ones lack a class."""
    decoded = np.isfinite(scores[CLEAN])
    # a rerun reads these files' results back from the journal: mended files are scored again only without it
    kept = (
        ""
        if log is None
        else f" (a rerun reads the files' results back from {log.path}: delete it to score them again, or rerun "
        "with --retry-errors to score again the files whose results hold an error)"
    )
    if not decoded.any():
        first = f"; first error: {failures[0]}" if failures else ""
        raise ProtocolError(f"none of the {n} files could be decoded and scored{first}{kept}")
    if labels[decoded].min() == labels[decoded].max():
        which = "bona fide" if labels[decoded][0] == 1 else "spoof"
        raise ProtocolError(
            f"only {which} utterances could be scored ({int(decoded.sum())} of {n}); "
            f"a robustness evaluation needs both bona fide and spoof speech{kept}"
        )


def _replay(
    log: RobustnessJournal,
    records: Sequence[dict[str, Any]],
    scores: dict[str, np.ndarray],
    failures: list[str],
    condition_errors: dict[str, list[str]],
) -> set[int]:
    """Fill in the results ``log`` holds, in the order they were recorded; returns the indices of its files."""
    done: set[int] = set()
    for k, batch in enumerate(log.batches, start=2):
        try:
            for entry in batch["files"]:
                i = int(entry["i"])
                if not 0 <= i < len(records) or str(records[i]["utt_id"]) != entry["utt_id"] or i in done:
                    raise ValueError(f"file {i} is not {entry['utt_id']!r} or is there twice")
                if "failure" in entry:
                    failures.append(str(entry["failure"]))
                else:
                    for name, value in entry["scores"].items():
                        scores[name][i] = float(value)
                done.add(i)
            for name, error, *_ in batch["errors"]:  # [condition, error, index]; older: [condition, error]
                condition_errors.setdefault(str(name), []).append(str(error))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(
                f"{log.path} is damaged at line {k} ({exc}); delete it to start afresh, or choose another --out"
            ) from None
    return done


# --- summarising ------------------------------------------------------------------------------


def condition_row(
    labels: np.ndarray, scores: np.ndarray, *, threshold: float, dcf: DCFCost | None = None
) -> dict[str, Any]:
    """Counts and metrics of one set of trials; NaN scores (failed trials) are left out."""
    ok = np.isfinite(scores)
    y, s = labels[ok], scores[ok]
    n_bona = int(y.sum())
    row: dict[str, Any] = {"n": int(y.size), "n_bonafide": n_bona, "n_spoof": int(y.size - n_bona)}
    metrics = ("eer", "balanced_accuracy", "tpr", "tnr", "min_dcf")
    if n_bona == 0 or n_bona == y.size:
        row.update({k: None for k in metrics})
        row["note"] = "needs both bona fide and spoof trials"
        return row
    curve = det_curve(y, s)
    at = threshold_metrics(y, s, threshold)
    row.update(
        eer=100.0 * eer_from_curve(curve).eer,
        balanced_accuracy=at.balanced_accuracy,
        tpr=at.tpr,
        tnr=at.tnr,
        min_dcf=min_dcf_from_curve(curve, dcf or DCFCost()).dcf,
        note="",
    )
    return row


def summarize(result: RobustnessResult) -> list[dict[str, Any]]:
    """One row per (condition, mode), conditions in config order.

    ``eer_delta`` is the condition's EER minus the clean EER of the same mode, both on the trials the two
    scored: when a condition could not score some utterances (``n_failed``), the clean EER it is compared with
    leaves them out too (and a file only the condition scored is left out of both), so the delta is the
    condition's effect, not that of another set of trials. ``n_failed`` counts the decoded files (all but
    ``result.failures``) the (condition, mode) has no score of, the clean row's own failures included.
    """
    n_decoded = len(result.utt_ids) - len(result.failures)  # a file not decoded has no score anywhere
    rows = []
    for name in result.config.conditions:
        for mode in result.config.modes:
            s = result.mode_scores(mode, name)
            metrics = condition_row(result.labels, s, threshold=result.threshold, dcf=result.config.dcf)
            if metrics["n"] == 0:
                metrics["note"] = "no trial could be scored"
            n_failed = max(n_decoded - metrics["n"], 0)  # decoded utterances this (condition, mode) did not score
            delta = None
            if metrics["eer"] is not None:
                delta = _eer_delta(result, mode, s)
            rows.append({"condition": name, "mode": mode, **metrics, "n_failed": n_failed, "eer_delta": delta})
    return [{k: r.get(k) for k in ROW_COLUMNS} for r in rows]


def _eer_delta(result: RobustnessResult, mode: str, scores: np.ndarray) -> float | None:
    """EER (%) of ``scores`` minus that of the clean scores of ``mode``, both on the trials both scored;
    None without both classes there."""
    clean = result.mode_scores(mode, CLEAN)
    both = np.isfinite(scores) & np.isfinite(clean)
    eers = [
        condition_row(result.labels, np.where(both, s, np.nan), threshold=result.threshold)["eer"]
        for s in (scores, clean)
    ]
    return None if None in eers else eers[0] - eers[1]


def score_rows(result: RobustnessResult, mode: str) -> pd.DataFrame:
    """Per-trial scores of ``mode``: utt_id, label, condition, score (failed trials left out)."""
    frames = []
    label_names = np.where(result.labels == 1, "bonafide", "spoof")
    ids = np.asarray(result.utt_ids, dtype=object)
    for name in result.config.conditions:
        s = result.mode_scores(mode, name)
        ok = np.isfinite(s)
        frames.append(pd.DataFrame({"utt_id": ids[ok], "label": label_names[ok], "condition": name, "score": s[ok]}))
    return pd.concat(frames, ignore_index=True)


# --- writing ----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The per-(condition, mode) rows as a Markdown table."""
    headers = ["condition", "mode", "n", "EER %", "ΔEER", "bal. acc.", "TPR", "TNR", "minDCF", "failed"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [
            r["condition"],
            r["mode"],
            str(r["n"]),
            _fmt(r["eer"], 2),
            _fmt(r["eer_delta"], 2, signed=True),
            _fmt(r["balanced_accuracy"], 4),
            _fmt(r["tpr"], 4),
            _fmt(r["tnr"], 4),
            _fmt(r["min_dcf"], 4),
            str(r["n_failed"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(result: RobustnessResult) -> str:
    d = result.to_dict()
    cfg = result.config
    subset = ""
    if result.n_protocol is not None and result.n_protocol > len(result.utt_ids):  # --limit drew a subset
        subset = (
            f" The {len(result.utt_ids)} utterances are a subset of the protocol's {result.n_protocol} (`--limit "
            f"{cfg.limit}`, drawn with seed {cfg.seed}, stratified by label)."
        )
    lines = ["# sddkit robustness report", ""]
    if result.info.get("model"):
        lines += [f"Model: `{result.info['model']}`.", ""]
    lines += [
        f"{d['n_decoded']} of {d['n_utterances']} utterances scored ({d['n_bonafide']} bona fide, "
        f"{d['n_spoof']} spoof) under {len(cfg.conditions)} conditions, seed {cfg.seed}"
        f"{', fast codecs' if cfg.fast_codecs else ''}.{subset}",
        "",
        "Modes: `all` degrades every utterance; `spoof_only` degrades only the spoofs (bona fide stays "
        "clean, as in SAFE). EER in percent, ΔEER relative to `clean` in the same mode on the same trials; "
        "balanced accuracy, "
        f"TPR (bona fide accepted) and TNR (spoof rejected) at the model's threshold {result.threshold:g}; "
        f"minDCF normalised (P_spoof {cfg.dcf.p_spoof}, C_miss {cfg.dcf.c_miss}, C_fa {cfg.dcf.c_fa}).",
        "",
        markdown_table(result.rows),
        "",
    ]
    if result.failures or result.condition_errors:
        lines += ["## Errors", ""]
        if result.failures:
            lines.append(  # not only undecodable: a silent, too short or too long file is left out too
                f"{len(result.failures)} file(s) could not be read or scored (unreadable, silent, too short or too "
                "long) and are left out of every row:"
            )
            lines += [f"- {e}" for e in result.failures[:10]]
            if len(result.failures) > MAX_REPORTED_ERRORS:  # robustness.json names only the first of them
                lines.append(
                    f"- ... ({len(result.failures) - 10} more; robustness.json names the first {MAX_REPORTED_ERRORS})"
                )
            elif len(result.failures) > 10:
                lines.append(f"- ... ({len(result.failures) - 10} more in robustness.json)")
            lines.append("")
        for name, errors in result.condition_errors.items():
            lines.append(f"- `{name}`: {len(errors)} utterance(s) failed, e.g. {errors[0]}")
        if result.condition_errors:
            lines.append("")
    lines += ["![EER per condition](robustness.png)", ""]
    return "\n".join(lines)


def plot_robustness(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "EER per condition") -> Path:
    """Grouped bars of EER (%) per condition, one bar per mode, with the clean EER as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    eer = {(r["condition"], r["mode"]): r["eer"] for r in rows}
    fig = Figure(figsize=(max(7.0, 0.22 * len(conditions) * len(modes) + 3.5), 4.8), layout="tight")
    ax = fig.add_subplot()
    x = np.arange(len(conditions))
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        heights = [np.nan if eer.get((c, mode)) is None else eer[(c, mode)] for c in conditions]
        ax.bar(x - 0.4 + width * (j + 0.5), heights, width, label=mode)
    clean = [eer.get((CLEAN, m)) for m in modes if eer.get((CLEAN, m)) is not None]
    if clean:
        ax.axhline(clean[0], color="0.4", lw=0.8, ls="--", label=f"clean ({clean[0]:.2f}%)")
    ax.set_xticks(x)
    ax.set_xticklabels(conditions, rotation=60, ha="right", fontsize="small")
    ax.set_xlim(-0.6, len(conditions) - 0.4)
    ax.set_ylabel("EER (%)")
    ax.set_title(title)
    ax.grid(True, axis="y", color="0.9")
    ax.set_axisbelow(True)
    # outside the axes: with many conditions any corner inside would hide bars
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return path


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder ``out_dir`` and check that files can be written into it; a path that cannot be
    one, or a folder that takes no files (no permission, a read-only file system), is a ConfigError, not a
    traceback.

    ``sdd robustness`` calls it before scoring, so an ``--out`` that cannot hold the report fails at once, not
    after every condition of every file has been scored.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{out}: cannot write the robustness report there: not a directory") from None
    except OSError as exc:  # a file above it (NotADirectoryError), no permission...
        raise ConfigError(f"{out}: cannot create the output folder ({(exc.strerror or str(exc)).lower()})") from None
    # a probe file, not robustness.json: a read-only report of an earlier run is replaced, not written to
    reason = why_unwritable(out / ".robustness-write-check")
    if reason is not None:  # no permission, a read-only file system
        raise ConfigError(f"{out}: cannot write the robustness report there ({reason})")
    return out


def write_robustness(result: RobustnessResult, out_dir: str | Path) -> dict[str, Path]:
    """Write robustness.{csv,json,md,png} and scores_<mode>.csv into ``out_dir``; returns name -> path.

    The files are published together (:func:`sddkit.outputs.publish_staged`, ``robustness.json`` last), so a
    crash, a full disk or Ctrl-C leaves no half-written file and no mix of this run's files with an earlier run's.
    A ``scores_<mode>.csv`` of a mode this run did not evaluate (left by an earlier run into the same folder) is
    removed: next to this run's report it would pass for this run's scores. The journal the result was scored
    with (``result.journal``) is removed after the report is in place, so a rerun into the same folder scores
    afresh; a crash before that keeps it, and the rerun then publishes the same report from it.
    """
    out = prepare_out_dir(out_dir)

    def write(staging: Path) -> list[str]:
        for mode in result.config.modes:  # full precision: exact re-analysis
            score_rows(result, mode).to_csv(staging / f"scores_{mode}.csv", index=False)
        pd.DataFrame(result.rows, columns=list(ROW_COLUMNS)).to_csv(staging / "robustness.csv", index=False)
        (staging / "robustness.md").write_text(render_markdown(result), encoding="utf-8")
        plot_robustness(result.rows, staging / "robustness.png")
        text = json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"
        (staging / "robustness.json").write_text(text, encoding="utf-8")
        modes = [f"scores_{mode}.csv" for mode in result.config.modes]
        return [*modes, "robustness.csv", "robustness.md", "robustness.png", "robustness.json"]  # the json last

    names = publish_staged(out, "robustness report", write, stale=[f"scores_{mode}.csv" for mode in MODES])
    if result.journal is not None:  # its scores are in the report now; a rerun starts afresh
        result.journal.unlink(missing_ok=True)
    return {name: out / name for name in names}
