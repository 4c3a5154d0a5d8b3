"""Leave-domains-out cross-validation of a recipe (``sdd cv``).

A recipe's ``val`` shares its sources with ``train``, so it says how well a model fits the corpora it
was trained on, not how it does on a corpus it never saw. Leave-one-domain-out validation asks the
second question with training data alone: fold ``k`` holds out some values of a column (``source``,
say), trains the recipe on the rest (its ``val`` loses the held-out rows too, so checkpoint selection
sees none of them), and scores every held-out file of the recipe's ``train`` and ``val`` protocols with
the selected checkpoint, whole files, the way ``sdd score`` does (on the device the fold trained on, files up
to the recipe's ``data.max_duration_s`` long, or 600 s when that is shorter). The mean held-out EER over the
folds is the recipe's score.

Layout of ``out_dir``::

    fold_<values>/               the fold's training run (trainer.out_dir): checkpoints/, best/, final/, ...
                                 (a name over 255 bytes is cut short and ends in ``~`` and a hash of the values)
    fold_<values>/held_out.csv   ``sdd score`` rows of the held-out files (appended, so a restart resumes)
    fold_<values>/held_out.csv.run.json  the model that scored them (``best/``, its weights digest), as ``sdd score``
    fold_<values>/fold.json      the fold's figures, written last: a fold with it is done and is not rerun
    cv.json                      all folds and the mean; the recipe, package versions and git commit (+ dirty flag)

With several seeds (``cross_validate_seeds``) each seed's run is a folder of that layout,
``seed_<s>/``, and ``out_dir/cv.json`` holds each fold's EER averaged over the seeds, the per-seed means
and their spread: the figure to compare recipes with when seed-to-seed noise is as large as the
differences (as it is on small corpora).

Nothing is lost on a crash: a fold interrupted in training resumes from its latest checkpoint, one
interrupted while scoring skips the files already written. A rerun must be the same experiment: a fold
that has trained (or finished) under a recipe other than the rerun's, compared on what the run computes
(:data:`sddkit.training.recipe.RUN_SETTINGS` may change), is refused rather than resumed or reported under
the new recipe; so is one whose protocol file was edited since it trained (the SHA-256 its ``run.json`` records).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sddkit.data.table import UtteranceTable
from sddkit.detectors.model_dir import atomic_write_bytes
from sddkit.errors import ConfigError, ProtocolError
from sddkit.training.provenance import changed_protocols
from sddkit.training.recipe import SEED_LIMIT, FoldSpec, ProtocolSpec, TrainRecipe, as_specs, recipe_changes

if TYPE_CHECKING:
    import torch

    from sddkit.training.trainer import TrainResult

log = logging.getLogger(__name__)

CV_NAME = "cv.json"
FOLD_NAME = "fold.json"
SCORES_NAME = "held_out.csv"
RUN_NAME = "run.json"  # written by the fold's Trainer: the recipe it trained with
SCORE_MAX_DURATION_S = 600.0  # sdd score's default --max-duration-s
# the group columns of --bonafide-folds, as a recipe's folds.by default: a pair (an utterance and its re-syntheses),
# else a speaker
BONAFIDE_GROUPS = ("pair_id", "speaker")
MAX_DIR_NAME = 255  # bytes of one file name (NAME_MAX on Linux and macOS); a fold's folder name is ASCII


@dataclass(frozen=True)
class HeldOut:
    """One fold: the values of ``column`` held out of training and validation.

    ``bonafide_folds`` N: the rows of the last of N group folds (``UtteranceTable.group_folds`` over
    :data:`BONAFIDE_GROUPS`: an utterance, its re-syntheses and, without a pair, a speaker stay together) are held
    out too, in every fold, and their bona fide files are scored with the fold's: leave-one-attack-out
    (``column`` ``attack``), where a held-out attack has spoofs only, gets bona fide trials no fold trained on."""

    column: str
    values: tuple[str, ...]
    bonafide_folds: int | None = None

    @property
    def name(self) -> str:
        return "+".join(self.values)

    @property
    def dir_name(self) -> str:
        """``fold_<values>``, named by what it holds out so that reordering the folds cannot mix runs up.

        A name longer than a file name may be (``MAX_DIR_NAME`` bytes: many or long values held out together)
        keeps its first characters and ends in a hash of every value, ``fold_<start>~<hash>``, instead of
        failing with "File name too long" when the fold starts."""
        name = "fold_" + re.sub(r"[^A-Za-z0-9_.+-]", "_", self.name)
        if len(name) <= MAX_DIR_NAME:
            return name
        digest = hashlib.blake2b("\x00".join(self.values).encode(), digest_size=8).hexdigest()
        return f"{name[: MAX_DIR_NAME - len(digest) - 1]}~{digest}"


def parse_folds(column: str, groups: Sequence[str], bonafide_folds: int | None = None) -> list[HeldOut]:
    """``["tortoise", "hifigan_demo,vits_demo"]`` -> one ``HeldOut`` per group (values comma-separated), each
    with ``bonafide_folds`` (see :class:`HeldOut`)."""
    if bonafide_folds is not None and (isinstance(bonafide_folds, bool) or not int(bonafide_folds) >= 2):
        raise ConfigError(
            f"--bonafide-folds must be an integer >= 2 (the last of N groups is held out), got {bonafide_folds!r}"
        )
    folds = [HeldOut(column, tuple(v.strip() for v in g.split(",") if v.strip()), bonafide_folds) for g in groups]
    if len(folds) < 2:
        raise ConfigError(f"cross-validation needs at least 2 held-out groups, got {len(folds)}")
    seen: set[str] = set()
    for fold in folds:
        if not fold.values:
            raise ConfigError(f"an empty held-out group in {list(groups)}")
        again = seen.intersection(fold.values)
        if again:
            raise ConfigError(f"{sorted(again)} held out in more than one fold")
        seen.update(fold.values)
    dirs: dict[str, HeldOut] = {}
    for fold in folds:  # two folds in one folder would resume each other's checkpoints
        other = dirs.setdefault(fold.dir_name, fold)
        if other is not fold:
            raise ConfigError(f"held-out groups {other.name!r} and {fold.name!r} share the folder {fold.dir_name}")
    return folds


def _excluding(
    specs: ProtocolSpec | list[ProtocolSpec] | None, fold: HeldOut, *, every_value: bool = False
) -> list[ProtocolSpec]:
    """``specs`` with the fold's values excluded. Each spec's ``exclude`` gets only the fold values its protocol
    holds (a leave-one-corpus-out fold's values are absent from the other corpora's protocols, and ``exclude``
    refuses a value no row has: a typo's guard), so the fold's recorded recipe runs alone under ``sdd train``.
    Of several specs, one whose every row the fold holds out (a corpus held out whole) leaves the list instead
    of failing the fold as empty, and one whose table lacks the fold's column (an optional column such as
    ``language`` that only another corpus of the list has) holds none of its rows and is kept as it is.
    ``every_value``: every fold value to every spec that has the column, as sdd cv did before 2026-12-04 (the
    fold recipes its runs recorded)."""
    given = as_specs(specs)
    excluded, whole = [], []
    for spec in given:
        present, held_whole = _fold_coverage(spec, fold)
        if every_value and present is not None:
            present = list(fold.values)
        spec = copy.deepcopy(spec)
        if present:
            already = spec.exclude.get(fold.column, [])
            already = [already] if isinstance(already, str) else list(already)
            spec.exclude[fold.column] = already + [v for v in present if v not in already]
        excluded.append(spec)
        whole.append(held_whole)
    if len(given) < 2:
        return excluded
    kept = [spec for spec, held_whole in zip(excluded, whole) if not held_whole]
    return kept or excluded  # nothing left at all: the trainer's own error names the empty spec


def _fold_coverage(spec: ProtocolSpec, fold: HeldOut) -> tuple[list[str] | None, bool]:
    """(the fold's values that ``spec``'s protocol holds, as read: None where it lacks the fold's column; whether
    the fold takes every row ``spec`` keeps), from one read of its protocol. A spec that cannot be read gets all
    the fold's values (the trainer then says what is wrong with it, naming it). A row's fold group is its own, so
    excluding the fold after the spec's ``folds`` equals excluding it before."""
    from sddkit.data.protocols import read_protocol
    from sddkit.training.data import select_rows

    try:
        table = read_protocol(spec.protocol, spec.format, **spec.options)
    except (ConfigError, ProtocolError):
        return list(fold.values), False
    if fold.column not in table.columns:
        return None, False
    absent = {str(v) for v in table.absent_values(fold.column, list(fold.values))}
    present = [v for v in fold.values if str(v) not in absent]
    try:
        rows = select_rows(table, spec)
    except (ConfigError, ProtocolError):  # e.g. a misspelt value of the spec's own where/exclude
        return present, False
    rest = rows.exclude(**{fold.column: present}) if present else rows
    return present, len(rows) > 0 and len(rest) == 0


def _without_bonafide_fold(specs: list[ProtocolSpec], fold: HeldOut, section: str) -> list[ProtocolSpec]:
    """``specs`` keeping group folds 0..N-2 of N (``fold.bonafide_folds``): the last one's rows, whose bona fide files
    every fold scores, train and validate no fold."""
    n = fold.bonafide_folds
    if n is None:
        return specs
    out = []
    for k, spec in enumerate(specs):
        if spec.folds is not None:  # two fold selections of one spec would not be the held-out group said
            where = f"{section}[{k}]" if len(specs) > 1 else section
            raise ConfigError(
                f"--bonafide-folds: {where} ({spec.protocol}) already keeps folds {spec.folds.keep} of "
                f"{spec.folds.n}; drop its folds, or cross-validate without --bonafide-folds"
            )
        spec = copy.deepcopy(spec)
        spec.folds = FoldSpec(n=n, keep=list(range(n - 1)), by=list(BONAFIDE_GROUPS))
        out.append(spec)
    return out


def fold_recipe(recipe: TrainRecipe, fold: HeldOut, out_dir: str | Path, *, every_value: bool = False) -> TrainRecipe:
    """The recipe of one fold: ``fold`` excluded from ``train`` and ``val`` (with the last of its
    ``bonafide_folds`` groups), the run written to ``out_dir`` (``every_value``: as fold runs started before
    2026-12-04 recorded it, see :func:`_excluding`)."""
    r = copy.deepcopy(recipe)
    r.data.train = _without_bonafide_fold(
        _excluding(recipe.data.train, fold, every_value=every_value), fold, "data.train"
    )
    if recipe.data.val is not None:
        r.data.val = _without_bonafide_fold(
            _excluding(recipe.data.val, fold, every_value=every_value), fold, "data.val"
        )
    r.trainer.out_dir = str(out_dir)
    return r


def held_out_bonafide(table: UtteranceTable, fold: HeldOut) -> np.ndarray:
    """(N,) bool: the bona fide rows of ``table`` in the last of ``fold.bonafide_folds`` groups (all False
    without)."""
    if fold.bonafide_folds is None:
        return np.zeros(len(table), dtype=bool)
    n = fold.bonafide_folds
    return (table.labels == 1) & (table.group_folds(BONAFIDE_GROUPS, n) == n - 1)


def held_out_table(recipe: TrainRecipe, fold: HeldOut) -> UtteranceTable:
    """The rows of the recipe's ``train`` and ``val`` protocols that ``fold`` holds out (each file once)."""
    from sddkit.training.data import read_tables

    table = read_tables(recipe.data.train, "data.train")
    if table is None:  # TrainRecipe takes a recipe without data (a model to describe): it was an AssertionError here
        raise ConfigError(
            "sdd cv holds values out of the recipe's data.train (and data.val): the recipe has no data.train"
        )
    val = read_tables(recipe.data.val, "data.val")
    # the bona fide rows of the last group, each told in its own list as the fold's spec there tells it: a val row
    # renamed data.val:<utt_id> below (its id taken by another train file) changed its group where it has no pair or
    # speaker, so that a file the fold validated on was "held out" and one it held out was scored by none
    bonafide = held_out_bonafide(table, fold)
    if val is not None:
        new = _val_only(table, val)
        bonafide = np.concatenate([bonafide, held_out_bonafide(val, fold)[new]])
        table = _with_val_files(table, val, new)
    if fold.column not in table.columns:  # sdd cv --by: the table's own error named neither the option nor the data
        from sddkit.config import did_you_mean

        raise ProtocolError(
            f"held-out column (--by) {fold.column!r}: data.train + data.val have no column {fold.column!r}"
            f"{did_you_mean([fold.column], table.columns)}; columns: {', '.join(table.columns)}"
        )
    present = set(table.column(fold.column))
    missing = [v for v in fold.values if v not in present]
    if missing:  # a misspelt value would silently leave its group a value short
        raise ConfigError(
            f"no utterance has {fold.column} in {missing} (data.train + data.val); "
            f"values there: {', '.join(sorted(map(str, present)))}"
        )
    held = table.subset(np.isin(table.column(fold.column), list(fold.values)) | bonafide)
    # a file that two specs (or one spec under two utt_ids) list is one held-out file: scored once, and counted
    # once in the EER and the class counts (it counted as often as it was listed)
    seen: set[str] = set()
    first = [not (key in seen or seen.add(key)) for key in _file_keys(held)]
    if not all(first):
        held = held.subset(np.flatnonzero(first))
    labels = held.labels
    if labels.size == 0:
        raise ConfigError(f"no utterance has {fold.column} in {list(fold.values)}")
    if labels.min() == labels.max():
        raise ConfigError(_one_class(fold, bonafide=bool(labels[0] == 1)))
    return held


def _one_class(fold: HeldOut, *, bonafide: bool) -> str:
    """Why a fold whose held-out files are all bona fide (``bonafide``) or all spoofs has no EER, and what to do."""
    group = ",".join(map(str, fold.values))
    if fold.bonafide_folds is not None and not bonafide:  # the last group has no bona fide file
        return (
            f"held-out group {fold.name} and the last of {fold.bonafide_folds} bona fide groups hold only spoof files: "
            f"its EER is undefined (too few groups of {'/'.join(BONAFIDE_GROUPS)} for --bonafide-folds "
            f"{fold.bonafide_folds}?: try a smaller N)"
        )
    what = f"held-out group {fold.name}" + (
        f" and the last of {fold.bonafide_folds} bona fide groups hold" if fold.bonafide_folds is not None else " has"
    )
    kind, other = ("bona fide", "spoof") if bonafide else ("spoof", "bona fide")
    # spoofs only is leave-one-attack-out, which --bonafide-folds is for: said first, as the value with bona fide
    # files that --by attack has is `bonafide`, every one of them (held out with it, no fold trains on bona fide)
    attack = (
        ""
        if bonafide
        else f"add --bonafide-folds N (leave-one-attack-out: the bona fide files of the last of N "
        f"{'/'.join(BONAFIDE_GROUPS)} groups, held out of every fold, are its trials), "
    )
    return (
        f"{what} only {kind} files: its EER is undefined; {attack}hold it out together with values that have "
        f"{other} files (--hold-out {group},OTHER), or leave it out of the folds"
    )


def _file_keys(table: UtteranceTable) -> list[str]:
    """Each row's :func:`~sddkit.training.data.file_key`, or its utt_id for a row without audio."""
    from sddkit.training.data import file_keys

    return [f or f"\x00{u}" for f, u in zip(file_keys(table), map(str, table.column("utt_id")))]


def _val_only(train: UtteranceTable, val: UtteranceTable) -> np.ndarray:
    """(len(val),) bool: the rows of ``val`` whose files ``train`` does not list (those :func:`_with_val_files`
    keeps)."""
    seen = set(_file_keys(train))
    return np.array([key not in seen for key in _file_keys(val)], dtype=bool)


def _with_val_files(train: UtteranceTable, val: UtteranceTable, new: np.ndarray | None = None) -> UtteranceTable:
    """``train``'s rows and those of ``val``'s files that ``train`` does not list (``new``: :func:`_val_only` of the
    two, when the caller has it).

    sdd train accepts a val that repeats train's files (e.g. a whole protocol as val): each counts once. It also
    accepts a val whose utt_ids collide with train's for other files (two labels CSVs that each name
    ``audio/0001.wav`` in their own folder): those are other utterances and count, under ``data.val:<utt_id>``.
    """
    val = val.subset(np.flatnonzero(_val_only(train, val) if new is None else new))
    if not len(val):
        return train
    taken = set(map(str, train.column("utt_id")))
    df = val.df
    df["utt_id"] = [f"data.val:{u}" if str(u) in taken else u for u in df["utt_id"]]
    return UtteranceTable.concat([train, UtteranceTable(df, validate=False)])


def check_fold_data(recipe: TrainRecipe, fold: HeldOut) -> None:
    """What the fold's run will train and validate on is there, with both classes (as the trainer requires)."""
    from sddkit.training.data import file_keys, read_train_table, read_val_table

    r = fold_recipe(recipe, fold, "unused")
    try:
        train = read_train_table(r.data)
        val = read_val_table(r.data)
    except ConfigError as exc:
        raise ConfigError(f"fold {fold.name}: {exc}") from None
    # a held-out file that the fold trains on under another value of the column (two specs, or two utt_ids of one,
    # giving it different sources) makes its held-out score a training score; one in its val data chose the
    # checkpoint that scores it
    held = held_out_table(recipe, fold)
    for table, role, effect in (
        (train, "training data", "score training files"),
        (val, "validation data", "score files that chose its checkpoint"),
    ):
        if table is None:
            continue
        seen = {f: str(u) for f, u in zip(file_keys(table), table.column("utt_id")) if f}
        rows = zip(file_keys(held), held.column("utt_id"), held.column(fold.column))
        listed = [(f, str(u), v) for f, u, v in rows if f in seen]
        leaked = [(f, u) for f, u, _ in listed]
        grouped = [(f, u) for f, u, v in listed if v not in fold.values]
        if grouped:  # a bona fide file of the last group, whose other listing puts it in another group
            f, u = grouped[0]
            raise ConfigError(
                f"fold {fold.name}: {len(leaked)} held-out audio file(s) are in the fold's {role}, e.g. {f}, held out "
                f"as {u!r} (a bona fide file of the last of {fold.bonafide_folds} {'/'.join(BONAFIDE_GROUPS)} groups) "
                f"and read there as {seen[f]!r} in another group: the held-out EER would {effect} (give the file "
                f"the same {'/'.join(BONAFIDE_GROUPS)} in every list, or drop one of its rows with where/exclude)"
            )
        if leaked:
            f, u = leaked[0]
            raise ConfigError(
                f"fold {fold.name}: {len(leaked)} held-out audio file(s) are in the fold's {role} under another "
                f"{fold.column}, e.g. {f} held out as {u!r} and read there as {seen[f]!r}: the held-out EER would "
                f"{effect} (drop the rows listed twice with where/exclude/folds)"
            )


def held_out_max_duration(recipe: TrainRecipe) -> float | None:
    """The longest held-out file scored (seconds; None: no limit): the recipe's ``data.max_duration_s``, the
    limit its training and validation files are read under, but never below ``sdd score``'s default."""
    limit = recipe.data.max_duration_s
    return None if limit is None else max(float(limit), SCORE_MAX_DURATION_S)


def _score_held_out(
    model_dir: Path,
    table: UtteranceTable,
    out_csv: Path,
    workers: int,
    *,
    device: str | torch.device = "cpu",
    max_duration: float | None = SCORE_MAX_DURATION_S,
) -> np.ndarray:
    """Raw scores (N,) of the table's files in table order, appended to ``out_csv`` as ``sdd score`` does, on
    ``device`` (the one the fold trained on), files longer than ``max_duration`` seconds failing."""
    from sddkit.scoring.api import load_detector
    from sddkit.scoring.batch import ScoreWriter, drop_paths, output_columns, read_rows, run_info, score_files

    detector = load_detector(model_dir, device=str(device))
    paths = [str(p) for p in table.column("path")]
    # held_out.csv.run.json, as sdd score writes: the model that scored (its path and weights digest), its
    # settings; a restart that would add another model's rows to the file is refused
    run = run_info(detector)
    with ScoreWriter(out_csv, output_columns(detector.weight_columns()), run=run) as writer:
        score_files(detector, paths, writer, workers=workers, max_duration=max_duration, progress=False)
    _, rows = read_rows(out_csv)
    # rows by the file they name: relative paths are the recorded working directory's (the first run's, which a
    # restart from another folder keeps), as ScoreWriter matched them to skip the files done
    by_path = {writer.absolute(row["path"]): row for row in rows}
    rows_of = [by_path[writer.absolute(os.path.abspath(p))] for p in paths]
    failed = [row for row in rows_of if row.get("error")]
    if failed:
        # a rerun after the files are mended scores them instead of skipping them
        drop_paths(out_csv, [row["path"] for row in failed])
        raise ConfigError(
            f"{len(failed)} held-out files could not be scored, e.g. {failed[0]['path']}: {failed[0]['error']}"
        )
    return np.array([float(row["score"]) for row in rows_of], dtype=np.float64)


def _recorded_recipe(fold_dir: Path) -> dict[str, Any] | None:
    """The recipe the fold's run was trained with (``run.json``); None if unknown."""
    try:
        recorded = json.loads((fold_dir / RUN_NAME).read_text())["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no run.json (a fold from before it was written): nothing to compare with
    return recorded if isinstance(recorded, dict) else None


def check_fold_recipe(recipe: TrainRecipe, fold: HeldOut, fold_dir: Path) -> None:
    """Refuse to resume, or read back, a fold that trained under another recipe than ``recipe``.

    Without this a rerun with other overrides (a seed, a learning rate) would report the old folds'
    EERs under the new recipe in ``cv.json``, or continue the old run's checkpoints with new settings.
    """
    from sddkit.config import to_dict
    from sddkit.training import checkpoint as ckpt

    checkpoints = fold_dir / "checkpoints"
    # a checkpoint without its pointer too: the trainer resumes a lone one (a run killed during its first save)
    started = (
        (fold_dir / FOLD_NAME).exists()
        or (fold_dir / "best").is_dir()  # an EM fit exports without a checkpoint (run_fold scores its best/ again)
        or ckpt.latest_checkpoint(checkpoints) is not None
        or bool(ckpt.checkpoints_without_pointer(checkpoints))
    )
    recorded = _recorded_recipe(fold_dir) if started else None
    if recorded is None:
        return
    # more epochs or steps are another experiment here (unlike a resume): only the run settings may change
    changed = recipe_changes(recorded, to_dict(fold_recipe(recipe, fold, fold_dir)))
    if changed and not recipe_changes(recorded, to_dict(fold_recipe(recipe, fold, fold_dir, every_value=True))):
        changed = []  # started before each spec excluded only the values it holds: the same rows
    if changed:
        known, started_with = _started_bonafide_folds(recipe, fold, fold_dir, recorded)
        if known:
            said = "without --bonafide-folds" if started_with is None else f"with --bonafide-folds {started_with}"
            now = "without it" if fold.bonafide_folds is None else f"with --bonafide-folds {fold.bonafide_folds}"
            raise ConfigError(
                f"fold {fold.name}: {fold_dir} was trained with another recipe: started {said}, this run is {now} "
                f"(the held-out bona fide group is another); rerun {said} to resume it, or use a new --out"
            )
        shown = ", ".join(changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(
            f"fold {fold.name}: {fold_dir} was trained with another recipe ({shown}{more}); rerun with the "
            "recipe and overrides it was started with to resume it, or use a new --out"
        )
    edited = changed_protocols(fold_dir / RUN_NAME)
    if edited:
        # the recipe names the same files, but their rows are others: a finished fold's EER (or a resumed fold's
        # checkpoints) is of the old rows, and cv.json would average it with folds of the new ones
        raise ConfigError(
            f"fold {fold.name}: {edited[0]} changed since {fold_dir} trained on it (its SHA-256 is not the one "
            f"{fold_dir / RUN_NAME} records){f' (and {len(edited) - 1} more)' if len(edited) > 1 else ''}: its "
            "results are of the old rows; restore the file, or use a new --out to cross-validate on the new one"
        )


def _started_bonafide_folds(
    recipe: TrainRecipe, fold: HeldOut, fold_dir: Path, recorded: dict[str, Any]
) -> tuple[bool, int | None]:
    """(True, the --bonafide-folds N a fold trained under ``recorded`` was started with, None: without) where that is
    all that differs from ``fold``, else (False, None): a rerun that dropped or changed N is told so, not shown the
    folds keys of every data spec as recipe changes."""
    from sddkit.config import to_dict

    counts: set[int | None] = {None}
    for section in ("train", "val"):
        specs = (recorded.get("data") or {}).get(section)
        for spec in specs if isinstance(specs, list) else [specs]:
            folds = spec.get("folds") if isinstance(spec, dict) else None
            if isinstance(folds, dict) and isinstance(folds.get("n"), int):
                counts.add(folds["n"])
    for n in sorted(counts - {fold.bonafide_folds}, key=lambda c: -1 if c is None else c):
        try:
            other = fold_recipe(recipe, HeldOut(fold.column, fold.values, n), fold_dir)
        except ConfigError:  # the recipe's own folds, which --bonafide-folds refuses
            continue
        if not recipe_changes(recorded, to_dict(other)):
            return True, n
    return False, None


def _finished_em_fit(fold_dir: Path) -> TrainResult | None:
    """The result of the fold's run when it fitted a back-end by EM (``best/``'s metadata has ``em``) and finished
    (run.json's last session records its end), else None."""
    from sddkit.detectors.model_dir import read_model_config
    from sddkit.errors import CheckpointError
    from sddkit.training.trainer import TrainResult

    best, final = fold_dir / "best", fold_dir / "final"
    if not (best.is_dir() and final.is_dir()):
        return None
    try:
        meta = read_model_config(best).get("metadata") or {}
        sessions = json.loads((fold_dir / RUN_NAME).read_text())["sessions"]
        finished = bool(sessions) and "finished" in sessions[-1]
    except (CheckpointError, OSError, ValueError, KeyError, TypeError):
        return None  # damaged or half written: the trainer says what it finds
    if not (isinstance(meta, dict) and "em" in meta and finished):
        return None
    eer = meta.get("val_eer")
    return TrainResult(
        out_dir=fold_dir,
        step=0,
        epoch=0,
        best_eer=eer,
        best_step=0,
        stopped_early=False,
        best_dir=best,
        final_dir=final,
        final_eer=eer,
        history=[],
    )


def run_fold(recipe: TrainRecipe, fold: HeldOut, fold_dir: Path, *, workers: int = 2) -> dict[str, Any]:
    """Train (or resume) one fold, score its held-out files with ``best/``, write ``fold.json``."""
    from sddkit.metrics import eer
    from sddkit.training.trainer import Trainer

    check_fold_recipe(recipe, fold, fold_dir)
    done = fold_dir / FOLD_NAME
    if done.exists():
        figures = json.loads(done.read_text())
        if (
            figures.get("held_out") != list(fold.values)
            or figures.get("column") != fold.column
            or figures.get("bonafide_folds") != fold.bonafide_folds
        ):
            raise ConfigError(f"{done} is the result of another fold ({figures.get('held_out')}); use a new out_dir")
        log.info("fold %s already done (%s)", fold.name, done)
        return figures
    held = held_out_table(recipe, fold)  # fails before training when the group is unusable
    result = _finished_em_fit(fold_dir)
    if result is not None:
        # an EM fit saves no checkpoint for the trainer to resume from, and refused to replace its exports: the
        # fold stopped while its held-out files were scored, so they are scored with the model it fitted
        from sddkit.training.distributed import DistInfo, select_device

        log.info("fold %s: fitted by EM before (%s), scoring its held-out files", fold.name, result.best_dir)
        device = select_device(recipe.trainer.device, DistInfo())
    else:
        trainer = Trainer(fold_recipe(recipe, fold, fold_dir), resume=True)
        trainer.resume_with = "a rerun of the same `sdd cv` command"  # sdd cv has no --resume: a rerun resumes
        trainer.resume_takes_overrides = False  # a fold rerun under another recipe is refused (check_fold_recipe)
        result = trainer.fit()
        device = trainer.device  # held-out files are scored there: a model trained on a GPU not on the CPU
        del trainer  # its model and optimiser state leave the device before best/ is loaded to score
    if result.best_dir is None:
        raise ConfigError(f"fold {fold.name}: the run exported no best/ model (does the recipe have val data?)")
    scores = _score_held_out(
        result.best_dir,
        held,
        fold_dir / SCORES_NAME,
        workers,
        device=device,
        max_duration=held_out_max_duration(recipe),
    )
    labels = held.labels
    # the bona fide rows held out by group alone are the trials of every value (an attack's spoofs have no others)
    shared = ~np.isin(held.column(fold.column), list(fold.values))
    per_value = {}
    for value in fold.values:
        mask = (held.column(fold.column) == value) | shared
        y = labels[mask]
        per_value[value] = float(eer(y, scores[mask])) if y.size and 0 < y.sum() < y.size else None
    figures = {
        "held_out": list(fold.values),
        "column": fold.column,
        **({"bonafide_folds": fold.bonafide_folds} if fold.bonafide_folds is not None else {}),
        "n_bonafide": int(labels.sum()),
        "n_spoof": int(labels.size - labels.sum()),
        "eer": float(eer(labels, scores)),
        "eer_per_value": per_value,
        "val_eer": result.best_eer,
        "best_step": result.best_step,
        "steps": result.step,
        "model_dir": str(result.best_dir),
    }
    atomic_write_bytes(done, (json.dumps(figures, indent=2) + "\n").encode())
    return figures


def cross_validate(recipe: TrainRecipe, folds: Sequence[HeldOut], out_dir: str | Path, *, workers: int = 2) -> dict:
    """Run every fold in turn (finished folds are read back) and write ``cv.json``; returns its content."""
    from sddkit.config import to_dict
    from sddkit.training.data import check_audio_files
    from sddkit.training.distributed import dist_info_from_env

    if dist_info_from_env().enabled:  # every rank would score the held-out files into the same CSV
        raise ConfigError("sdd cv runs in one process; start it without torchrun")
    out = Path(out_dir)
    _check_layout(out, seeds=False)
    _warn_pretrained(recipe)
    pending = False
    for fold in folds:  # every fold is checked before the first one trains, not hours later
        check_fold_recipe(recipe, fold, out / fold.dir_name)
        if not (out / fold.dir_name / FOLD_NAME).exists():
            held_out_table(recipe, fold)
            check_fold_data(recipe, fold)
            pending = True
    _make_dir(out)  # first: an --out that cannot be a folder is said whatever the data
    if pending:  # the folds' training, validation and held-out files: a held-out one was met only once scored
        check_audio_files(_data_lists(recipe))
        _warn_ungrouped_bonafide(recipe, folds[0].bonafide_folds)
    results = []
    for k, fold in enumerate(folds):
        log.info("fold %d/%d: holding out %s=%s", k + 1, len(folds), fold.column, fold.name)
        try:
            results.append(run_fold(recipe, fold, out / fold.dir_name, workers=workers))
        except (Exception, KeyboardInterrupt):
            # hours of folds may be done: say which are kept and which are not, before the error's own line
            _log_unfinished(out, folds, k)
            raise
    eers = np.array([r["eer"] for r in results])
    summary = {
        "column": folds[0].column,
        **_bonafide_folds(folds),
        "folds": results,
        "mean_eer": float(eers.mean()),
        "std_eer": float(eers.std(ddof=1)) if eers.size > 1 else 0.0,
        "units": {"eer": "fraction"},  # as metrics.jsonl; sdd eval's report.json gives percent
        "recipe": to_dict(recipe),
        **_provenance(),
    }
    atomic_write_bytes(out / CV_NAME, (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _log_unfinished(out: Path, folds: Sequence[HeldOut], failed: int) -> None:
    """Log which folds of an interrupted or failed run are done (their ``fold.json`` kept) and which are not: the
    error alone named neither, nor that ``cv.json`` is not written and that a rerun resumes."""
    done = [f.name for f in folds if (out / f.dir_name / FOLD_NAME).is_file()]
    left = [f.name for f in folds if f.name not in done]
    log.error(
        "%s: fold %d/%d (%s=%s) did not finish; %d of %d folds done (%s), not done: %s; cv.json is not (re)written "
        "until every fold is done: rerun the same command to resume (done folds are read back, the others resume "
        "from their checkpoints)",
        out,
        failed + 1,
        len(folds),
        folds[failed].column,
        folds[failed].name,
        len(done),
        len(folds),
        ", ".join(done) or "none",
        ", ".join(left),
    )


def _warn_ungrouped_bonafide(recipe: TrainRecipe, n: int | None) -> None:
    """Say when --bonafide-folds cannot keep speakers together: a bona fide file with neither ``pair_id`` nor
    ``speaker`` (a labels CSV, a folder of files) is a group of its own (its ``utt_id``), so the held-out bona fide
    group and the training data can share speakers, which makes the held-out EER optimistic."""
    if n is None:
        return
    from sddkit.training.data import read_tables

    alone = bona = 0
    tables = (read_tables(recipe.data.train, "data.train"), read_tables(recipe.data.val, "data.val"))
    for table in tables:
        if table is None:
            continue
        empty = np.ones(len(table), dtype=bool)
        for column in BONAFIDE_GROUPS:
            if column in table.columns:
                empty &= np.asarray(table.column(column), dtype=object) == ""
        alone += int((empty & (table.labels == 1)).sum())
        bona += int((table.labels == 1).sum())
    if alone:
        log.warning(
            "--bonafide-folds %d: %d of the %d bona fide files have neither %s: each is a group of its own, so the "
            "held-out bona fide group may share speakers with the folds' training data (give the protocol a speaker "
            "column to hold speakers out)",
            n,
            alone,
            bona,
            " nor ".join(BONAFIDE_GROUPS),
        )
    _warn_straddling_speakers(tables, n)


def _warn_straddling_speakers(tables: Sequence[UtteranceTable | None], n: int) -> None:
    """Say when held-out bona fide files share their speaker with the other groups' files: a row's group is its
    ``pair_id`` where it has one, so a speaker of several pairs (sddbench's LJSpeech, a VCTK speaker re-synthesised
    by several systems) straddles groups, and the folds train on that speaker's other files. Without this the
    held-out group looked speaker-disjoint (the warning above covers only files with neither column)."""
    train, val = tables
    if train is None or "speaker" not in train.columns:
        return
    table = train if val is None or "speaker" not in val.columns else _with_val_files(train, val)
    groups = table.group_folds(BONAFIDE_GROUPS, n)
    speakers = np.asarray(table.column("speaker"), dtype=object)
    held = (table.labels == 1) & (groups == n - 1) & (speakers != "")
    others = set(speakers[(groups != n - 1) & (speakers != "")])
    shared = sorted({str(s) for s in speakers[held] if s in others})
    if not shared:
        return
    n_files = int(sum(1 for s in speakers[held] if s in others))
    log.warning(
        "--bonafide-folds %d: %d of the %d held-out bona fide files with a speaker are of %d speaker(s) (%s%s) whose "
        "other files are in the groups the folds train on (a speaker of several pair_id values straddles groups): the "
        "held-out bona fide group is not speaker-disjoint, and its EER may be optimistic",
        n,
        n_files,
        int(held.sum()),
        len(shared),
        ", ".join(shared[:5]),
        ", ..." if len(shared) > 5 else "",
    )


def _mean_per_value(fold: HeldOut, figs: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Each held-out value's ``eer_per_value`` averaged over the seeds' fold figures ``figs``; None where a seed has
    none (a value with one class only, or a fold read back from before the figure was recorded)."""
    out: dict[str, float | None] = {}
    for value in fold.values:
        eers = [(f.get("eer_per_value") or {}).get(value) for f in figs]
        out[value] = None if any(e is None for e in eers) else float(np.mean(eers))
    return out


def _bonafide_folds(folds: Sequence[HeldOut]) -> dict[str, int]:
    """cv.json's ``bonafide_folds`` (absent without): every fold has the same."""
    n = folds[0].bonafide_folds
    return {} if n is None else {"bonafide_folds": n}


def _data_lists(recipe: TrainRecipe) -> list[tuple[str, Any]]:
    """The recipe's data lists as :func:`~sddkit.training.data.check_audio_files` takes them: every fold trains,
    validates or scores a part of them."""
    old_eval = recipe.molex.old_eval if recipe.molex else None
    return [("data.train", recipe.data.train), ("data.val", recipe.data.val), ("molex.old_eval", old_eval)]


def _provenance() -> dict[str, Any]:
    """What cv.json records of the code that wrote it, as training's ``run.json`` does: the package versions and
    the git commit and dirty flag of sddkit's source (``git``: None outside a checkout). A fold read back from an
    earlier run has its own in its ``run.json``."""
    from sddkit.training.provenance import git_commit, package_versions

    return {"versions": package_versions(), "git": git_commit()}


def _warn_pretrained(recipe: TrainRecipe) -> None:
    """Models a fold starts from were trained outside the fold: they may have seen its held-out rows."""
    started = [recipe.init_from] if recipe.init_from else []
    if recipe.mixture is not None:
        started += list(recipe.mixture.expert_dirs)
    if started:
        log.warning(
            "every fold starts from trained model(s) %s: if they saw the held-out values, the held-out EERs "
            "are optimistic",
            ", ".join(started),
        )


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file of that name: one line, not a traceback
        from sddkit.outputs import folder_failure

        raise ConfigError(f"{out}: cannot create the cross-validation folder ({folder_failure(exc)})") from None


def _check_layout(out: Path, *, seeds: bool) -> None:
    """Refuse to write a single-seed run where a multi-seed one lives, or the other way round: told by ``cv.json``,
    or, before it is written (last, once every fold is done: a run interrupted), by the folders of its runs. A rerun
    that forgot (or added) ``--seeds`` started a new run beside the interrupted one, whose cv.json then refused the
    rerun that would have resumed it."""
    path = out / CV_NAME
    if path.is_file():
        if ("seeds" in json.loads(path.read_text())) == seeds:
            return
        shown = "cv.json"
    else:
        shown = ", ".join(f"{d.name}/" for d in _runs_of_other_layout(out, seeds=seeds)[:3])
        if not shown:
            return
    if seeds:
        raise ConfigError(
            f"{out} holds a single-seed cross-validation ({shown}): rerun without --seeds to resume it, or use "
            "another --out"
        )
    raise ConfigError(
        f"{out} holds a multi-seed cross-validation ({shown}): rerun with its --seeds to resume it, or use another "
        "--out"
    )


def _runs_of_other_layout(out: Path, *, seeds: bool) -> list[Path]:
    """The non-empty folders of ``out`` that the other layout writes: ``fold_<values>/`` of a single-seed run where
    ``seeds``, else ``seed_<s>/`` of a multi-seed one."""
    pattern = r"fold_.+" if seeds else r"seed_\d+"
    try:
        found = sorted(d for d in out.iterdir() if re.fullmatch(pattern, d.name) and d.is_dir() and any(d.iterdir()))
    except OSError:  # no folder yet (or not one): nothing of another run; _make_dir says what is wrong with it
        return []
    return found


def cross_validate_seeds(
    recipe: TrainRecipe, folds: Sequence[HeldOut], out_dir: str | Path, seeds: Sequence[int], *, workers: int = 2
) -> dict:
    """:func:`cross_validate` once per seed (``recipe.seed`` replaced) into ``out_dir/seed_<s>/``.

    ``cv.json`` keeps the single-seed keys (``folds``, ``mean_eer``) with each fold's figures averaged over
    the seeds (``eer``, ``eer_per_value``, ``val_eer``), adds ``eer_per_seed`` to each fold, and ``seeds``,
    ``mean_eer_per_seed`` and ``std_eer_over_seeds`` (the spread of the per-seed means, ddof 1).
    """
    from sddkit.config import to_dict

    seeds = list(seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds needs at least 2 distinct seeds, got {seeds}")
    if min(seeds) < 0 or max(seeds) >= SEED_LIMIT:  # refused only once that seed's first fold starts training
        raise ConfigError(f"--seeds must be non-negative integers below 2**32, got {seeds}")
    out = Path(out_dir)
    _check_layout(out, seeds=True)
    recipes: dict[int, TrainRecipe] = {}
    for seed in seeds:
        recipes[seed] = copy.deepcopy(recipe)
        recipes[seed].seed = int(seed)
        for fold in folds:  # a later seed's stale folds must not surface after the earlier seeds have trained
            check_fold_recipe(recipes[seed], fold, out / f"seed_{seed}" / fold.dir_name)
    runs = []
    for seed in seeds:
        log.info("seed %d (%d/%d)", seed, len(runs) + 1, len(seeds))
        try:
            runs.append(cross_validate(recipes[seed], folds, out / f"seed_{seed}", workers=workers))
        except (Exception, KeyboardInterrupt):
            # the fold line above names seed_<s>/ alone: the seeds already done are kept too
            done = seeds[: len(runs)]
            log.error(
                "%s: seed %d (%d/%d) did not finish; seeds done: %s, not done: %s; rerun the same command (these "
                "--seeds) to resume",
                out,
                seed,
                len(runs) + 1,
                len(seeds),
                ", ".join(map(str, done)) or "none",
                ", ".join(map(str, seeds[len(runs) :])),
            )
            raise
    per_seed = np.array([run["mean_eer"] for run in runs])
    fold_rows = []
    for k, fold in enumerate(folds):
        figs = [run["folds"][k] for run in runs]
        vals = [f["val_eer"] for f in figs if f["val_eer"] is not None]
        fold_rows.append(
            {
                "held_out": list(fold.values),
                "column": fold.column,
                "n_bonafide": figs[0]["n_bonafide"],
                "n_spoof": figs[0]["n_spoof"],
                **({"bonafide_folds": fold.bonafide_folds} if fold.bonafide_folds is not None else {}),
                "eer": float(np.mean([f["eer"] for f in figs])),
                "eer_per_seed": [f["eer"] for f in figs],
                # each held-out value's EER (with --bonafide-folds an attack's only one), as a single-seed cv.json
                # gives it: it was left in the seed_<s>/ folders
                "eer_per_value": _mean_per_value(fold, figs),
                "val_eer": float(np.mean(vals)) if vals else None,
            }
        )
    summary = {
        "column": folds[0].column,
        **_bonafide_folds(folds),
        "seeds": seeds,
        "folds": fold_rows,
        "mean_eer": float(per_seed.mean()),
        "mean_eer_per_seed": per_seed.tolist(),
        "std_eer_over_seeds": float(per_seed.std(ddof=1)),
        "units": {"eer": "fraction"},
        "recipe": to_dict(recipe),
        **_provenance(),
    }
    _make_dir(out)
    atomic_write_bytes(out / CV_NAME, (json.dumps(summary, indent=2) + "\n").encode())
    return summary
