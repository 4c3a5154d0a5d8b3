"""What an export of a training run (``best/``, ``final/``) takes from its checkpoint and keeps from the folder it
replaces: the model config its weights were validated as, their validation window, and a calibration stored there
in place since."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sddkit.detectors.model_dir import read_model_config
from sddkit.errors import CheckpointError

if TYPE_CHECKING:
    from sddkit.training.recipe import TrainRecipe

log = logging.getLogger("sddkit.training.trainer")  # the trainer's messages: it calls these while exporting


def keep_calibration(
    directory: Path, exported_digest: Callable[[], str], inference: dict[str, Any], meta: dict[str, Any]
) -> None:
    """Before exporting over ``directory``: keep a calibration ``sdd calibrate`` stored there in place.

    A resume of a finished run exports best/ and final/ again (from its checkpoints), and an export is written
    uncalibrated: a calibration fitted in place since was lost without a word. The same weights under the same
    window keep it (``inference``'s calibration and threshold, ``meta``'s calibration records, updated here);
    other weights or another window (``average_bn`` re-estimated, another top k) cannot use it, and the
    calibrated folder is moved aside whole to ``<name>.calibrated`` (``.calibrated.N`` when taken), with a
    warning, rather than written over.

    ``exported_digest``: the weights digest of the model about to be exported (asked only where a calibration is
    there to keep)."""
    from sddkit.scoring.calibrate import CALIBRATION_KEYS, SUPERSEDED_KEY

    try:
        earlier = read_model_config(directory)
    except CheckpointError:  # none there, or damaged: nothing calibrated to keep
        return
    metadata = earlier.get("metadata") if isinstance(earlier.get("metadata"), dict) else {}
    records = {k: metadata[k] for k in (*CALIBRATION_KEYS, SUPERSEDED_KEY) if k in metadata}
    if "calibrated" not in records:  # no sdd calibrate since the export (val_calibrated is the export's own)
        return
    was = earlier.get("inference") if isinstance(earlier.get("inference"), dict) else {}
    digest = exported_digest()
    window = {k: was.get(k) for k in inference}
    if earlier.get("weights_digest") == digest and window == inference:
        inference.update({k: was[k] for k in ("calibration", "threshold") if k in was})
        meta.update(records)
        log.info("%s: kept the calibration sdd calibrate stored there (the same weights are exported)", directory)
        return
    aside = directory.with_name(f"{directory.name}.calibrated")
    n = 1
    while aside.exists():
        n += 1
        aside = directory.with_name(f"{directory.name}.calibrated.{n}")
    directory.rename(aside)
    log.warning(
        "%s held a calibration by sdd calibrate of other weights (or another window) than this export's: moved "
        "to %s, and %s is exported uncalibrated (calibrate it again: sdd calibrate --model %s --protocol ...)",
        directory,
        aside,
        directory,
        directory,
    )


def with_pretrained_of(recorded: Any, today: Any) -> Any:
    """``recorded`` (a checkpoint's model config) with the ``pretrained`` folders of ``today``'s config where both
    have one at the same place: a resume may name a moved encoder folder anew (the resume checks that its frozen
    weights are those the checkpoint was trained over), and the folder the checkpoint recorded may be gone."""
    if isinstance(recorded, dict) and isinstance(today, dict):
        return {
            k: today[k] if k == "pretrained" and k in today else with_pretrained_of(v, today.get(k))
            for k, v in recorded.items()
        }
    if isinstance(recorded, (list, tuple)) and isinstance(today, (list, tuple)) and len(recorded) == len(today):
        return type(recorded)(with_pretrained_of(r, t) for r, t in zip(recorded, today))
    return recorded


def export_window_samples(recipe: dict[str, Any], current: TrainRecipe) -> int:
    """An exported model's ``inference.window_samples``: the validation crop of ``recipe`` (a ``to_dict`` form:
    the one its weights were validated under), today's where it does not say."""
    data = recipe.get("data") if isinstance(recipe.get("data"), dict) else {}
    window = data.get("val_crop_samples") or data.get("crop_samples")
    return window if isinstance(window, int) else current.data.val_crop_samples or current.data.crop_samples
