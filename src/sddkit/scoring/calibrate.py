"""Calibrate a model directory on labelled files (``sdd calibrate``): score them, fit, set the threshold, store.

A model fresh from ``sdd train`` scores raw logit differences (its ``inference.calibration`` is the identity).
:func:`calibrate_on_protocol` scores every file a protocol lists (a validation partition: never the files a figure
will be reported on) as ``sdd score`` does, fits the logistic calibration ``llr = a * raw + b`` on the raw scores
(:func:`~sddkit.scoring.calibration.fit_calibration`, Brümmer's prior-weighted form), sets the decision threshold
by one of :data:`THRESHOLD_RULES`, and writes the model directory's ``config.json`` (in place, or beside a copy of
its weights in ``out``). Nothing is written unless every file scored and the fit succeeded, and a run that fails
leaves no folder of ``out`` it made. A model directory that holds another model by then (``sdd train`` exported a
new ``best/`` there while its files were scored: other weights, model config or windows) is refused
(:func:`scored_model`): the fit would be stored for a model whose scores it never saw.

scripts/finalize_default_model.py, which calibrates the bundled model on sddbench ``val``, goes through the same
steps (:func:`count_classes`, :func:`writable_target`, :func:`scored_model`, :func:`calibrated_config`,
:func:`record_calibration`, :func:`store_calibrated`); only its scoring is its own (batched, from a decode cache).

The new calibration's record, ``metadata.calibrated``, is the one in force: an earlier one (an earlier
``metadata.calibrated``, or the ``metadata.val_calibrated`` of scripts/finalize_default_model.py, which the bundled
model carries) describes a calibration the config no longer holds, and moves to ``metadata.superseded_calibrations``
(:func:`record_calibration`).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sddkit.errors import ConfigError, SddkitError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sddkit.data.table import UtteranceTable
    from sddkit.metrics.det import EERResult
    from sddkit.scoring.inference import InferenceConfig

# eer: the operating point where the two error rates on these files meet (halfway to the next lower score, so a
#   file's decision does not hang on its last digit); bayes: the Bayes decision for the prior, -logit(prior)
#   (0 at 0.5, equal costs); keep: the threshold the model has
THRESHOLD_RULES = ("eer", "bayes", "keep")
# operating-point rules, given as "far=RATE" / "frr=RATE" (RATE a fraction in (0, 1)), e.g. a bank's "at most 1 % of
#   spoofs accepted": far: the lowest threshold at which at most RATE of the spoof files score >= it (of those
#   that keep the spoof acceptance <= RATE, the one rejecting the fewest bona fide); frr: the highest threshold at
#   which at most RATE of the bona fide files score below it (the one accepting the fewest spoofs). Each is put
#   halfway to the next score on the side it does not decide, as eer's, so the decisions on these files are those
#   of the exact rule and a file's decision does not hang on its last digit
RATE_RULES = ("far", "frr")
# metadata keys of a calibration record: sdd calibrate's, and scripts/finalize_default_model.py's (the bundled model's)
CALIBRATION_KEYS = ("calibrated", "val_calibrated")
SUPERSEDED_KEY = "superseded_calibrations"


def record_calibration(metadata: dict[str, Any] | None, key: str, record: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` with ``record`` at ``key`` as the record of the calibration in force. The records of earlier
    calibrations (under any of :data:`CALIBRATION_KEYS`) describe a calibration the config no longer holds: they
    move to the front of ``superseded_calibrations`` (newest first), each naming the key it stood under."""
    metadata = dict(metadata or {})
    earlier = []
    for k in CALIBRATION_KEYS:
        if k in metadata:
            old = metadata.pop(k)
            earlier.append({"key": k, **old} if isinstance(old, dict) else {"key": k, "record": old})
    before = metadata.get(SUPERSEDED_KEY)
    if before is not None:
        earlier += before if isinstance(before, list) else [before]
    metadata[key] = record
    if earlier:
        metadata[SUPERSEDED_KEY] = earlier
    return metadata


def with_copy_records(metadata: dict[str, Any], model_dir: Path, target: Path) -> dict[str, Any]:
    """``metadata`` (the new calibration's, built from ``model_dir``'s config by :func:`record_calibration`) with the
    calibration records of the calibrated copy of the same weights that ``target`` (another folder) holds, newest
    first in ``superseded_calibrations``: the copy's config is replaced by one built from ``model_dir``'s, and the
    record of the calibration the copy held (an earlier ``sdd calibrate --out`` there, or one that finished in the
    same folder while this run scored its files) was lost, where in place it is superseded. A record the two share
    (one the copy took from ``model_dir``) is kept once."""
    from sddkit.detectors.model_dir import CONFIG_NAME

    if target.resolve() == model_dir.resolve():
        return metadata
    try:
        theirs = json.loads((target / CONFIG_NAME).read_text(encoding="utf-8")).get("metadata")
    except (OSError, ValueError, AttributeError):  # no copy there (a new folder), or none readable
        return metadata
    if not isinstance(theirs, dict) or not any(k in theirs for k in (*CALIBRATION_KEYS, SUPERSEDED_KEY)):
        return metadata
    copy_records = record_calibration(theirs, "calibrated", {}).get(SUPERSEDED_KEY, [])
    merged: list[Any] = []
    for r in [*copy_records, *metadata.get(SUPERSEDED_KEY, [])]:
        if r not in merged:
            merged.append(r)
    return {**metadata, SUPERSEDED_KEY: merged}


def margin_threshold(scores: np.ndarray, threshold: float) -> float:
    """A threshold that decides ``scores`` as ``threshold`` does (accept iff score >= it), halfway between it and
    the highest score below it: ``threshold`` itself when no score is below it, or when the two are adjacent
    floats (their midpoint rounds to the lower one, which would then be accepted)."""
    below = scores[scores < threshold]
    if below.size == 0:
        return float(threshold)
    middle = float((below.max() + threshold) / 2)
    return middle if middle > below.max() else float(threshold)


def write_with_config(model_dir: Path, out: Path, config: dict[str, Any], written: list[Path] | None = None) -> None:
    """Write ``config`` as ``out``'s config.json, beside a copy of ``model_dir``'s weights when ``out`` is another
    folder. Each file is replaced whole (temporary file + rename), weights before config as save_model_dir writes
    them: a stop half-way never leaves a truncated file, and a process that has the old weights open keeps them.
    ``written`` receives each file once it is in place (what a failure after it leaves of this call's writing)."""
    from sddkit.detectors.model_dir import CONFIG_NAME, WEIGHTS_NAME, atomic_open, atomic_write_bytes

    written = [] if written is None else written
    if out.resolve() != model_dir.resolve():
        out.mkdir(parents=True, exist_ok=True)
        with open(model_dir / WEIGHTS_NAME, "rb") as src, atomic_open(out / WEIGHTS_NAME) as dst:
            shutil.copyfileobj(src, dst)
        written.append(out / WEIGHTS_NAME)
    atomic_write_bytes(out / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    written.append(out / CONFIG_NAME)


def folders_to_make(folder: Path) -> list[Path]:
    """The folders of ``folder``'s path that are not there yet, deepest first: those writing into it makes."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    return missing


def make_folders(folders: Sequence[Path]) -> list[Path]:
    """Make ``folders`` (deepest first, as :func:`folders_to_make` lists them), shallowest first -> those this call
    made, deepest first. One that is there by now was made by another process (a second ``sdd calibrate --out`` into
    the same new folder): it, and what is written into it, are not this run's to remove."""
    mine = []
    for folder in reversed(folders):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        mine.append(folder)
    return mine[::-1]


def remove_made(folders: Sequence[Path], files: Sequence[Path] = ()) -> None:
    """Remove ``files``, then ``folders`` (deepest first) where they are empty: what a failed run made. A folder
    another process has written into meanwhile stays, and so do the folders above it."""
    for f in files:
        try:
            f.unlink(missing_ok=True)
        except OSError:
            pass
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:  # the check stopped above it (a file in the way, no permission)
            continue
        except OSError:
            return


RULE_CHOICES = f"{', '.join(THRESHOLD_RULES)}, far=RATE or frr=RATE"


def parse_threshold_rule(threshold: str) -> tuple[str, float | None]:
    """``'eer'`` -> ``('eer', None)``; ``'far=0.01'`` -> ``('far', 0.01)`` (:data:`RATE_RULES`, RATE a fraction in
    (0, 1)); ConfigError for anything else."""
    if not isinstance(threshold, str):
        raise ConfigError(f"threshold must be one of {RULE_CHOICES}, got {threshold!r}")
    if threshold in THRESHOLD_RULES:
        return threshold, None
    rule, sep, value = threshold.partition("=")
    rule = rule.strip().lower()
    if rule not in RATE_RULES:
        raise ConfigError(f"threshold must be one of {RULE_CHOICES}, got {threshold!r}")
    what = "spoofs accepted" if rule == "far" else "bona fide rejected"
    try:
        rate = float(value) if sep else math.nan
    except ValueError:
        rate = math.nan
    if not 0.0 < rate < 1.0:  # NaN fails too; 1 would be every file, 0 needs infinitely many
        raise ConfigError(
            f"threshold {threshold!r}: RATE must be a fraction in (0, 1), the share of {what} at most "
            f"(e.g. {rule}=0.01 for 1 %)"
        )
    return rule, rate


def _count_at_most(rate: float, n: int) -> int:
    """The most files of ``n`` whose share is at most ``rate``: floor(rate * n), but 0.29 * 100 (28.999999999999996 in
    floats) is 29, as the rate was meant."""
    return math.floor(rate * n * (1 + 1e-12))


def check_rate_resolvable(rule: str, rate: float, n_bonafide: int, n_spoof: int) -> None:
    """Refuse an operating-point rate below one file of its class: at far=0.001 with 200 spoof files, the share of
    spoofs accepted moves in steps of 1/200; "at most 0.001" would be met only by accepting none, which these files
    cannot tell from a true rate of 0.005. Says how many files would resolve it."""
    n, files = (n_spoof, "spoof") if rule == "far" else (n_bonafide, "bona fide")
    if _count_at_most(rate, n) >= 1:
        return
    needed = math.ceil(1 / rate * (1 - 1e-12))
    what = "spoof acceptance" if rule == "far" else "bona fide rejection"
    smallest = math.ceil(1e6 / n) / 1e6  # 1/n rounded up: 1/3 printed 0.333 would be refused in turn
    raise ConfigError(
        f"threshold {rule}={rate:g}: {n} {files} files measure the {what} rate in steps of 1/{n} ({1 / n:.3g}), "
        f"too coarse for {rate:g} (the only rate at most {rate:g} they give is 0, which they cannot tell from "
        f"{1 / n:.3g}); give at least {needed} labelled {files} files, or a rate of at least {smallest:g}"
    )


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold set by a :data:`RATE_RULES` rule on calibrated scores, and what it gives on those files
    (decision: bona fide iff score >= threshold)."""

    rule: str  # far or frr
    target_rate: float
    threshold: float
    far: float  # share of the spoof files scored >= threshold (accepted as bona fide)
    frr: float  # share of the bona fide files scored < threshold (rejected)
    n_spoof_accepted: int
    n_bonafide_rejected: int
    n_spoof: int
    n_bonafide: int

    def record(self) -> dict[str, Any]:
        """The ``operating_point`` of ``metadata.calibrated`` and of sdd calibrate's report."""
        return {
            "rule": self.rule,
            "target_rate": self.target_rate,
            "far": self.far,
            "frr": self.frr,
            "n_spoof_accepted": self.n_spoof_accepted,
            "n_bonafide_rejected": self.n_bonafide_rejected,
            "n_spoof": self.n_spoof,
            "n_bonafide": self.n_bonafide,
        }


def operating_point(scores, labels, rule: str, rate: float) -> OperatingPoint:
    """The threshold of ``rule`` (:data:`RATE_RULES`) at ``rate`` on ``scores`` (calibrated, higher = more bona fide)
    of files labelled ``labels``, and its achieved rates.

    far: k = floor(rate * n_spoof) spoofs may be accepted, so the (k+1)-th highest spoof score, with every score
    at or below it (tied bona fide included), is rejected and every score above it accepted (the fewest bona fide
    rejected that this allows); the threshold is halfway to the lowest score above it, or above every score (by
    1, or by the score's size when larger) when none is: every file is then rejected. frr: k = floor(rate *
    n_bonafide) bona fide may be rejected, so the (k+1)-th lowest bona fide score, with every score at or above it
    (tied spoofs included), is accepted and every score below it rejected (the fewest spoofs accepted); the
    threshold is halfway to the highest score below it (:func:`margin_threshold`)."""
    from sddkit.scoring.calibration import bonafide_mask

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_bona = bonafide_mask(labels)
    if is_bona.size != scores.size:
        raise ConfigError(f"{scores.size} scores but {is_bona.size} labels")
    bona, spoof = scores[is_bona], scores[~is_bona]
    if bona.size == 0 or spoof.size == 0:
        raise ConfigError(f"an operating point needs both classes; got {bona.size} bona fide and {spoof.size} spoof")
    check_rate_resolvable(rule, rate, bona.size, spoof.size)
    if rule == "far":
        cut = float(np.sort(spoof)[::-1][_count_at_most(rate, spoof.size)])
        above = scores[scores > cut]
        threshold = margin_threshold(scores, float(above.min())) if above.size else cut + max(1.0, abs(cut))
    elif rule == "frr":
        threshold = margin_threshold(scores, float(np.sort(bona)[_count_at_most(rate, bona.size)]))
    else:
        raise ConfigError(f"operating-point rule must be one of {', '.join(RATE_RULES)}, got {rule!r}")
    accepted, rejected = int(np.sum(spoof >= threshold)), int(np.sum(bona < threshold))
    return OperatingPoint(
        rule=rule,
        target_rate=float(rate),
        threshold=float(threshold),
        far=accepted / spoof.size,
        frr=rejected / bona.size,
        n_spoof_accepted=accepted,
        n_bonafide_rejected=rejected,
        n_spoof=int(spoof.size),
        n_bonafide=int(bona.size),
    )


def rule_threshold(
    llr: np.ndarray, labels, threshold: str, prior: float, current: float
) -> tuple[float, OperatingPoint | None]:
    """The threshold the rule ``threshold`` (:func:`parse_threshold_rule`) sets on calibrated scores ``llr`` of files
    labelled ``labels`` (``current``, the model's, for ``keep``), and its :class:`OperatingPoint` for a rate rule
    (None for the others)."""
    from sddkit.metrics.det import eer
    from sddkit.scoring.calibration import bonafide_mask

    rule, rate = parse_threshold_rule(threshold)
    if rule == "eer":
        return margin_threshold(llr, eer(bonafide_mask(labels).astype(np.int64), llr).threshold), None
    if rule in RATE_RULES:
        point = operating_point(llr, labels, rule, rate)
        return point.threshold, point
    if rule == "bayes":
        # + 0.0: at prior 0.5 the negation is -0.0, which config.json and the report would print as "-0.0"
        return -math.log(prior / (1.0 - prior)) + 0.0, None
    return current, None


def check_rule(threshold: str, prior: float) -> None:
    """Refuse a threshold rule not in :data:`THRESHOLD_RULES` nor ``far=RATE``/``frr=RATE`` (:data:`RATE_RULES`) or a
    prior outside (0, 1), before any file is scored."""
    parse_threshold_rule(threshold)
    if not 0.0 < prior < 1.0:  # NaN fails too
        raise ConfigError(f"prior must be in (0, 1), got {prior}")


def count_classes(labels: np.ndarray, where: str) -> tuple[int, int]:
    """(bona fide, spoof) counts of ``labels``; refused, naming ``where`` (the files' source), unless both are there."""
    n_bona, n_spoof = int((labels == 1).sum()), int((labels == 0).sum())
    if n_bona == 0 or n_spoof == 0:
        raise ConfigError(f"{where}: {n_bona} bona fide and {n_spoof} spoof files; a calibration needs both classes")
    return n_bona, n_spoof


def every_partition_note(table: UtteranceTable, protocol: str | Path) -> str | None:
    """The warning for a calibration fitted on every partition of a protocol that has several (no ``partitions``
    chosen): sddbench's manifest or an ASVspoof-style table holds its test files too, and a calibration and EER
    threshold fitted on them make every figure later reported on them optimistic. None for one partition or none."""
    if not table.has_column("partition"):
        return None
    found = sorted({str(v) for v in table.column("partition") if isinstance(v, str) and v})
    if len(found) < 2:
        return None
    return (
        f"{protocol} has partitions {', '.join(found)} and none was chosen: the calibration and threshold are fitted "
        "on all of them, so a figure later reported on any of them (a test partition's) is optimistic; give the "
        "validation partition (sdd calibrate --partitions val)"
    )


def require_audio_paths(table: UtteranceTable, where: str) -> None:
    """Refuse a table whose rows name no audio file (path ''), naming ``where`` and the first such utterance: a
    protocol read without its audio folder (an ASVspoof one whose ``ASVspoof2019_LA_dev/flac`` is not beside it) was
    refused as the file '' that "is a directory, not an audio file"."""
    paths = table.column("path")
    empty = [str(u) for u, p in zip(table.column("utt_id"), paths) if not p]
    if empty:
        raise ConfigError(
            f"{where}: {len(empty)} of {len(paths)} utterances have no audio path (e.g. {empty[0]!r}): the protocol "
            "names no audio file for them, as an ASVspoof protocol whose audio folders are not where the corpus ships "
            "them (ASVspoof2019_LA_dev/flac/ beside ASVspoof2019_LA_cm_protocols/, flac_D/ beside the ASVspoof 5 "
            "protocol); give the folder holding them as the reader's root (sdd calibrate --protocol-option "
            "root=DIR), put (or link) them there, or list the files in a path,label CSV"
        )


def writable_target(model_dir: Path, out: str | Path | None) -> tuple[Path, list[Path]]:
    """The folder a calibration of ``model_dir`` is written to (``out``, default ``model_dir`` itself) and the
    folders of its path that writing there makes (for :func:`store_calibrated` to remove on a failure); refused
    when it cannot be written. Asked before the files are scored: an ``out`` that is a file, or under one, was
    found only after all the scoring."""
    from sddkit.detectors.model_dir import CONFIG_NAME
    from sddkit.outputs import why_unwritable

    target = model_dir if out is None else Path(out)
    made = [] if target.resolve() == model_dir.resolve() else folders_to_make(target)
    reason = why_unwritable(target / CONFIG_NAME)
    # the check made the folders to ask; they are made again only to write: a run that fails (a file that cannot
    # be scored, a fit that fails, Ctrl-C) left an empty out behind
    remove_made(made)
    if reason is not None:
        raise ConfigError(f"{target}: cannot write the calibrated model there ({reason})")
    return target, made


def _recorded_digest(model_dir: Path) -> str | None:
    """The ``weights_digest`` that ``model_dir``'s config.json records; None when it records none or is unreadable."""
    from sddkit.detectors.model_dir import CONFIG_NAME

    try:
        digest = json.loads((model_dir / CONFIG_NAME).read_text(encoding="utf-8")).get("weights_digest")
    except (OSError, ValueError, AttributeError):
        return None
    return digest if isinstance(digest, str) and digest else None


def refuse_another_model(model_dir: Path, target: Path) -> None:
    """Refuse a ``target`` (sdd calibrate's ``--out``) that holds another model than ``model_dir``: the copy's weights
    would replace that model's, a trained model lost to a mistyped ``--out``, and its other files (MODEL_CARD.md, an
    export) would stay beside weights they do not describe. An earlier calibrated copy of the same weights (the same
    ``weights_digest``, or the same weights file) is calibrated again."""
    import filecmp

    from sddkit.detectors.model_dir import CONFIG_NAME, WEIGHTS_NAME

    if target.resolve() == model_dir.resolve():
        return
    config, weights = target / CONFIG_NAME, target / WEIGHTS_NAME
    if not (config.exists() or weights.exists()):
        return
    theirs = _recorded_digest(target)
    if theirs is not None and theirs == _recorded_digest(model_dir):
        return
    # no digest to compare (a copy stopped between its weights and its config, a folder from before digests): the
    # weights file itself tells
    try:
        if weights.is_file() and filecmp.cmp(weights, model_dir / WEIGHTS_NAME, shallow=False):
            return
    except OSError:
        pass
    raise ConfigError(
        f"{target} holds another model (its {WEIGHTS_NAME if weights.exists() else CONFIG_NAME} is not of "
        f"{model_dir}'s weights): writing the calibrated copy there would replace it; give a new folder (or that "
        "model's own as --model to calibrate it), or remove the folder first"
    )


def _scored_state(config: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    """What of ``model_dir``'s ``config`` (read from it) its raw scores depend on: all but its metadata and the
    calibration and threshold of its inference settings, with the weights file's identity (inode, size, modification
    time) where the config records no ``weights_digest`` to tell its weights by."""
    from sddkit.detectors.model_dir import WEIGHTS_NAME
    from sddkit.scoring.inference import parse_inference

    inference = parse_inference(config.get("inference"), f"{model_dir}: inference").to_dict()
    state = {k: v for k, v in config.items() if k not in ("metadata", "inference", "sddkit_version")}
    state["inference"] = {k: v for k, v in inference.items() if k not in ("calibration", "threshold")}
    if not config.get("weights_digest"):
        try:
            st = (model_dir / WEIGHTS_NAME).stat()
            state["weights_file"] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            state["weights_file"] = None
    return state


def scored_model(model_dir: Path) -> dict[str, Any]:
    """The state of ``model_dir`` its raw scores are of (its weights, model config and inference settings but the
    calibration and threshold), taken when it is loaded to score the files a calibration is fitted on, for
    :func:`calibrated_config` to check that the folder still holds that model when the calibration is stored: a model
    directory replaced meanwhile (``sdd train`` exporting a better ``best/`` while it is calibrated) would otherwise
    be stored with a calibration and threshold fitted on another model's scores, without a word."""
    from sddkit.detectors.model_dir import read_model_config

    return _scored_state(read_model_config(model_dir), model_dir)


def _changed_parts(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The parts (weights, model config, inference settings) in which two :func:`scored_model` states differ."""
    weights = ("weights_digest", "pretrained_digest", "weights_file")
    others = (set(before) | set(now)) - {*weights, "inference"}
    parts = []
    if any(before.get(k) != now.get(k) for k in weights):
        parts.append("weights")
    if any(before.get(k) != now.get(k) for k in others):
        parts.append("model config")
    if before.get("inference") != now.get("inference"):
        parts.append("inference settings (windows, aggregation)")
    return parts


def calibrated_config(
    model_dir: Path,
    raw: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: str = "eer",
    prior: float = 0.5,
    scored: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], InferenceConfig, EERResult]:
    """Fit ``model_dir``'s calibration on its raw (uncalibrated) scores ``raw`` of files labelled ``labels`` and set
    its threshold by the rule ``threshold`` -> (its config with the new ``inference`` section, that
    ``InferenceConfig``, the ``EERResult`` of the calibrated scores); ``threshold`` as :func:`calibrate_on_protocol`
    takes it (``"far=0.01"``: :func:`operating_point`). Writes nothing: a fit that fails leaves every
    file as it was; the caller records it (:func:`record_calibration`) and writes it (:func:`store_calibrated`).

    ``scored``: :func:`scored_model` of ``model_dir`` when it was loaded to score ``raw``; a folder that holds another
    model now (other weights, model config or windows) is refused, as the fit would describe a model it is not."""
    from sddkit.detectors.model_dir import read_model_config
    from sddkit.metrics.det import eer
    from sddkit.scoring.calibration import fit_calibration
    from sddkit.scoring.inference import parse_inference

    check_rule(threshold, prior)
    config = read_model_config(model_dir)  # read once: the state checked is the one written over
    if scored is not None:
        changed = _changed_parts(scored, _scored_state(config, model_dir))
        if changed:
            raise ConfigError(
                f"{model_dir} changed while its files were scored (its {' and '.join(changed)}): a calibration "
                "fitted on the scores of the model it held would be stored for another one; nothing was written. "
                "Calibrate it again once nothing writes it (e.g. sdd train exporting a new best/ there)"
            )
    inference = parse_inference(config.get("inference"), f"{model_dir}: inference")
    inference.calibration = fit_calibration(raw, labels, prior=prior)
    llr = inference.calibration.apply(raw)
    point = eer(labels, llr)
    inference.threshold, _ = rule_threshold(llr, labels, threshold, prior, inference.threshold)
    config["inference"] = inference.to_dict()
    return config, inference, point


def store_calibrated(model_dir: Path, target: Path, config: dict[str, Any], made: Sequence[Path]) -> None:
    """:func:`write_with_config` into ``target`` (from :func:`writable_target`, whose ``made`` it was: the folders
    missing then, made here); a write that fails removes what this run made and wrote, and says why in one line."""
    mine: list[Path] = []
    written: list[Path] = []
    try:
        # made now, not taken from ``made``: a folder another run made while the files were scored (a second
        # sdd calibrate --out into the same new folder, which finished first) is that run's, and a failure here
        # removed its finished model with this run's files
        mine = make_folders(made)
        write_with_config(model_dir, target, config, written)
    except BaseException as exc:
        # the files this run wrote into a folder it made go with it; an existing folder keeps whatever the atomic
        # writes left, and a folder that another process wrote into meanwhile stays, with its files
        remove_made(mine, written if target in mine else [])
        if isinstance(exc, OSError):  # a full disk, a folder made read-only meanwhile: one line
            raise ConfigError(f"{target}: cannot write the calibrated model ({exc.strerror or exc})") from None
        raise


def calibrate_on_protocol(
    model_dir: str | Path,
    protocol: str | Path,
    *,
    format: str | None = None,
    partitions: Sequence[str] | None = None,
    out: str | Path | None = None,
    threshold: str = "eer",
    prior: float = 0.5,
    max_duration: float | None = 600.0,
    too_long_hint: str = "",
    max_duration_name: str = "max_duration",
    protocol_options: dict[str, Any] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Calibrate ``model_dir`` on the files of ``protocol`` (``partitions`` of it) and store the result in ``out``
    (default: ``model_dir`` itself); returns a report (counts, calibration, threshold, EER on these files).

    threshold: a rule of :data:`THRESHOLD_RULES`, or an operating point ``"far=RATE"``/``"frr=RATE"``
    (:func:`operating_point`; a rate below one file of its class is refused before any file is scored), whose target
    and achieved rates the report and ``metadata.calibrated`` hold at ``operating_point``.

    max_duration: seconds; a longer file stops the calibration (None: any length), as :meth:`score_file` refuses
    it; ``too_long_hint`` is added to that error (the CLI names its option; by default this function's keyword), and
    a limit below the model's shortest input is refused before any file is scored, naming ``max_duration_name``.
    ``protocol_options``: the protocol reader's options (``root``, ``bonafide_root``, ...), as ``--protocol-option``
    gives them. ``warn`` receives what is worth a warning before the files are scored (default: this module's
    logger): a protocol of several partitions read whole (:func:`every_partition_note`)."""
    from sddkit.cli.options import check_max_duration_fits, read_partitions
    from sddkit.scoring.api import load_detector

    check_rule(threshold, prior)
    model_dir = Path(model_dir)
    # as sdd eval selects them: the reader's own option where it has one (sddbench, Fake-or-Real), else the table's
    # partition column (ASVspoof, a labels CSV, ...), whose readers refused a `partitions` option as an unknown key
    table = read_partitions(str(protocol), format, list(partitions) if partitions else None, protocol_options)
    labels = np.asarray(table.labels, dtype=np.int64)
    where = f" (partitions {', '.join(partitions)})" if partitions else ""
    n_bona, n_spoof = count_classes(labels, f"{protocol}{where}")
    rule, rate = parse_threshold_rule(threshold)
    if rate is not None:  # a rate these files cannot measure is refused before any of them is scored
        check_rate_resolvable(rule, rate, n_bona, n_spoof)
    require_audio_paths(table, f"{protocol}{where}")
    note = None if partitions else every_partition_note(table, protocol)
    if note is not None:
        (warn or log.warning)(note)
    detector = load_detector(model_dir)  # first: a missing model is named as such, no folder made for it
    scored = scored_model(model_dir)  # checked again before the calibration is stored (calibrated_config)
    # no file could pass both bounds: said once, up front, not as the first file's error after the protocol was read
    check_max_duration_fits(
        max_duration, detector.inference.min_duration_s, "no file could be scored", name=max_duration_name
    )
    target, made = writable_target(model_dir, out)
    refuse_another_model(model_dir, target)
    raw = np.empty(len(labels), dtype=np.float64)
    hint = too_long_hint or "; calibrate_on_protocol(..., max_duration=None) scores any length"
    for i, path in enumerate(table.column("path")):
        try:
            # the limit is this function's (sdd calibrate's option): score_file's own hint named score_file's keyword
            raw[i] = detector.score_file(path, max_duration=max_duration, too_long_hint=hint).raw_score
        except SddkitError as exc:  # one file's problem, named; nothing is written
            raise ConfigError(
                f"{path} cannot be scored ({exc}); a calibration fitted without it would not be the one asked "
                "for: repair the file or leave it out of the protocol"
            ) from None

    config, inference, point = calibrated_config(
        model_dir, raw, labels, threshold=threshold, prior=prior, scored=scored
    )
    record = {
        "protocol": str(Path(protocol).resolve()),
        "partitions": list(partitions) if partitions else None,
        **({"protocol_options": dict(protocol_options)} if protocol_options else {}),
        "n_bonafide": n_bona,
        "n_spoof": n_spoof,
        "prior": prior,
        "threshold_rule": rule,
        "eer": float(point.eer),
    }
    if rate is not None:
        # the rule's target and what it gives on these files: the same decisions as sdd score's on them
        op = operating_point(inference.calibration.apply(raw), labels, rule, rate)
        record["operating_point"] = op.record()
        if (op.frr if rule == "far" else op.far) == 1.0:
            everyone = "rejects every bona fide file (FRR 1)" if rule == "far" else "accepts every spoof file (FAR 1)"
            (warn or log.warning)(
                f"threshold {rule}={rate:g} {everyone} of these: the model does not separate them at that rate"
            )
    if target.resolve() != model_dir.resolve():
        # a copy gets no MODEL_CARD.md (the source's describes the source's calibration, not this one): this names
        # the folder whose weights it holds, and so the card that describes how they were trained
        record["copied_from"] = str(model_dir.resolve())
    config["metadata"] = record_calibration(config.get("metadata"), "calibrated", record)
    # asked again: a model written into --out while the files were scored (another run's copy of other weights,
    # sdd train exporting there) was replaced by this copy's weights, as the check before the scoring refuses
    refuse_another_model(model_dir, target)
    config["metadata"] = with_copy_records(config["metadata"], model_dir, target)
    store_calibrated(model_dir, target, config, made)
    cal = inference.calibration
    return {
        "model": str(target),
        **record,
        "calibration": {"a": cal.a, "b": cal.b},
        "threshold": inference.threshold,
    }
