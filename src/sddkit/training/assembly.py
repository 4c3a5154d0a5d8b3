"""A detector mixture as a training run builds it, and the checks that keep a resume on the experts it trained over.

A recipe's ``mixture`` names its experts by ``expert_dirs`` (trained model directories) or inline ``experts``
configs. A fresh run builds it from those; a resume builds it from the latest checkpoint's record of the experts'
configs (the checkpoint holds every expert's weights, so the directories may have moved or gone since), keeps the
checkpoint's expert names, and refuses a directory still there that holds other frozen weights than the checkpoint's
expert of its place. A mixture with nothing to learn (a parameter-free gate over frozen experts: the average
ensemble) is exported as built, and never over the exports of another model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from sddkit.config import to_dict
from sddkit.detectors.detector import DetectorConfig
from sddkit.detectors.mixture import MixtureConfig
from sddkit.detectors.model_dir import _reset_inert_head_scale, read_model_config, state_to_save, weights_digest
from sddkit.errors import CheckpointError, ConfigError
from sddkit.training import checkpoint as ckpt
from sddkit.training.molex import trained_molex_problem

log = logging.getLogger("sddkit.training")


@dataclass
class RecipeMixture:
    """What :func:`build_recipe_mixture` built: the model, the config that rebuilds it (``architecture: mixture``),
    and, on a resume, the recipe's ``expert_dirs`` of frozen experts (checked by :func:`check_frozen_expert_dirs`
    once the checkpoint's weights are read)."""

    model: nn.Module
    model_config: dict[str, Any]
    frozen_expert_dirs: list[str]


def nothing_to_learn(module: nn.Module) -> bool:
    """A mixture with a parameter-free gate over frozen experts (the average ensemble): exported as built.

    Only a mixture: any other model without trainable parameters is a mistake in the recipe, and the optimiser's
    set-up says so.
    """
    from sddkit.detectors.mixture import DetectorMixture

    return isinstance(module, DetectorMixture) and not any(p.requires_grad for p in module.parameters())


def build_recipe_mixture(
    mixture: MixtureConfig, *, ckpt_dir: Path | None, out_dir: Path, log_notes: bool = True
) -> RecipeMixture:
    """The recipe's mixture; ``ckpt_dir`` on a resume (None for a fresh run). ``log_notes``: warn about experts
    stored uncalibrated (the main process only)."""
    from sddkit.detectors.mixture import (
        build_mixture,
        expert_calibration_note,
        expert_names,
        resolved_mixture_config,
    )

    given = mixture
    recorded, unrecorded, names = (None, None, None)
    if ckpt_dir is not None and mixture.expert_dirs:
        recorded, unrecorded, names = checkpoint_experts(ckpt_dir, out_dir, mixture)
    if names is not None and not mixture.expert_names:
        # the checkpoint's experts keep their names: its weights hold them in its run's order, which expert_dirs
        # moved (or, unfrozen, reordered) since would otherwise rename in best/, final/ and sdd eval
        mixture = dataclasses.replace(mixture, expert_names=names)
    if recorded is not None:
        # a resume: the checkpoint holds every expert's weights, so only their architecture is needed, and its
        # record of it stands for the expert_dirs, which may have been moved or removed since
        mixture = dataclasses.replace(mixture, experts=recorded, expert_dirs=[], expert_names=expert_names(mixture))
    try:
        model = build_mixture(mixture)
    except CheckpointError as exc:
        if unrecorded is None:
            raise
        raise CheckpointError(
            f"{exc}; {unrecorded} does not record the experts' configs (written by an older sddkit), so the resume "
            "builds them from mixture.expert_dirs: restore those directories, or give their new place in "
            "mixture.expert_dirs"
        ) from None
    # experts read from expert_dirs and fine-tuned (freeze_experts: false): the recipe checks only the expert
    # configs it holds, so their MoLEx routers are checked here, as init_from's (frozen ones pass)
    problem = trained_molex_problem(model)
    if problem is not None:
        raise ConfigError(f"mixture.expert_dirs: {problem}")
    # read from the directories (a resume from the checkpoint's record of the experts has none to read)
    note = expert_calibration_note(mixture) if mixture.expert_dirs and log_notes else None
    if note is not None:
        log.warning("mixture.%s", note)
    if (
        log_notes
        and len(model.experts) == 1
        and model.freeze_experts
        and any(p.requires_grad for p in model.parameters())
    ):
        # its softmax over one expert is 1 whatever the gate computes: no gradient reaches the gate, and the run
        # would spend its epochs changing nothing in the scores
        log.warning(
            "mixture: the gate over one frozen expert gets no gradient (its weight is 1 whatever it learns), so "
            "training changes no score; gate: average exports the expert as it is without training"
        )
    # check_frozen_expert_dirs checks that those still here hold the checkpoint's frozen experts
    frozen = list(given.expert_dirs) if ckpt_dir is not None and given.freeze_experts else []
    return RecipeMixture(model, resolved_mixture_config(mixture), frozen)


def checkpoint_experts(
    ckpt_dir: Path, out_dir: Path, mixture: MixtureConfig
) -> tuple[list[DetectorConfig] | None, Path | None, list[str] | None]:
    """On a resume of a mixture given by ``expert_dirs``: the experts' configs recorded in the latest checkpoint
    (its ``model_config`` holds them inline, as a saved mixture's does), else None, with the checkpoint when it
    records none (written before they were recorded); no configs and no checkpoint: no checkpoint yet, or the recipe
    names other experts than the checkpoint's run did (built from the recipe as for a fresh run; the load of the
    checkpoint's weights then says what changed, and :func:`check_frozen_expert_dirs` whether frozen experts did).
    Third: the experts' names the checkpoint records, when it records one per expert of the recipe."""
    from sddkit.config import from_dict

    try:
        path = ckpt.latest_checkpoint(ckpt_dir)
        saved = ckpt.load_checkpoint_record(path, ("recipe", "model_config", "architecture")) if path else {}
    except CheckpointError as exc:  # refused as the load of the checkpoint, a little later, would refuse it
        raise ckpt.unusable_latest(ckpt_dir, out_dir, exc) from None
    if path is None:
        return None, None, None
    model_config = saved.get("model_config") if saved.get("architecture") == "mixture" else None
    model_config = model_config if isinstance(model_config, dict) else {}
    names = model_config.get("expert_names")
    names = [str(n) for n in names] if isinstance(names, list) and len(names) == len(mixture.expert_dirs) else None
    given = to_dict(mixture)
    was = (saved.get("recipe") or {}).get("mixture") or {}
    if [was.get(k) or [] for k in ("expert_dirs", "experts")] != [given["expert_dirs"], given["experts"]]:
        return None, None, names
    experts = model_config.get("experts")
    if not isinstance(experts, list) or not experts:
        return None, path, names
    _reset_inert_head_scale(experts)  # as read_model_config does for the experts' own config.json
    where = path / ckpt.STATE_JSON
    return (
        [from_dict(DetectorConfig, e, f"{where}: model_config.experts[{i}]") for i, e in enumerate(experts)],
        None,
        names,
    )


def check_frozen_expert_dirs(
    expert_dirs: list[str],
    path: Path,
    raw: dict[str, torch.Tensor],
    recorded_recipe: dict[str, Any],
    changes: list[str],
) -> None:
    """A resume of a gate over frozen experts goes on with checkpoint ``path``'s experts (weights ``raw``), in its
    order: refused when a directory of ``mixture.expert_dirs`` still there holds other weights than the checkpoint's
    expert of its place (the experts reordered, one replaced or retrained since), whose recipe the resume would not
    follow, without a word, while best/ and final/ named the experts after it. Experts moved since are fine (a
    directory gone is not read: the checkpoint holds every expert). ``changes``: the recipe keys changed since."""
    for index, directory in enumerate(expert_dirs):
        if not _same_frozen_expert(Path(directory), raw, f"experts.{index}."):
            was = ((recorded_recipe.get("mixture") or {}).get("expert_dirs") or [])[index : index + 1]
            read = f" (read then from {was[0]})" if was else ""
            changed = f"; the recipe changed since ({'; '.join(changes)})" if changes else ""
            raise CheckpointError(
                f"{path}: mixture.expert_dirs[{index}] {directory} holds other weights than the frozen expert "
                f"{index} this run trained its gate over{read}{changed}: a resume continues the checkpoint's "
                "experts, in its order; undo the change (a moved expert's new place is fine), or train a gate over "
                "these experts in another trainer.out_dir"
            )


def check_reassembly(
    module: nn.Module, *, out_dir: Path, ckpt_dir: Path, resuming: bool, finished: list[str], resume_with: str
) -> None:
    """A resume of a mixture with nothing to learn exports it again as built: refused where that replaced another
    model, without a word: the exports of a run that trained (its checkpoints there; e.g. a gate's run resumed with
    ``mixture.gate=average``), or ``best/``/``final/`` (``finished``) of other weights (other experts, another
    order)."""
    where = f"trainer.out_dir={out_dir}"
    if resuming:
        raise ConfigError(
            f"{where} holds the checkpoints of a run that trained (under {ckpt_dir}), but this recipe's mixture has "
            "nothing to learn (a parameter-free gate over frozen experts): its export would replace that run's best/ "
            "and final/; undo the change to resume that run, or build this mixture in another trainer.out_dir"
        )
    digest = weights_digest(state_to_save(module, trainable_only=False))
    for name in finished:
        try:
            recorded = read_model_config(out_dir / name).get("weights_digest")
        except CheckpointError:  # damaged or half written: the export replaces it
            continue
        if recorded != digest:
            raise ConfigError(
                f"{where} holds {name} of other weights than this mixture's (other experts, or another order; "
                f"weights digest {str(recorded)[:12]}, this mixture's {digest[:12]}): {resume_with} only exports "
                "again the mixture exported there; build this one in another trainer.out_dir, or delete that "
                "folder's best/ and final/"
            )


def _same_frozen_expert(directory: Path, saved: dict[str, torch.Tensor], prefix: str) -> bool:
    """Whether expert model ``directory`` stores the weights that checkpoint tensors ``saved`` hold under ``prefix``
    (``experts.0.``); True when it cannot say: no such directory (moved), an unreadable file (the checkpoint holds
    the weights), or other keys or shapes (the load names those)."""
    from safetensors import safe_open

    from sddkit.detectors.model_dir import WEIGHTS_NAME

    try:
        with safe_open(str(directory / WEIGHTS_NAME), framework="pt", device="cpu") as f:
            stored = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError):
        return True
    theirs = {k: saved.get(prefix + k) for k in stored}
    if any(t is None or t.shape != stored[k].shape for k, t in theirs.items()):
        return True
    return all(torch.equal(stored[k], t.detach().cpu().to(stored[k].dtype)) for k, t in theirs.items())
