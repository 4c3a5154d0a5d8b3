"""Which parameters a model's builder read from pretrained files.

A ``weights: trainable`` model directory (``detectors.model_dir``) and the trainer's checkpoints
leave out the frozen parameters that the builder reads from a pretrained file (a speech encoder's
weights): a rebuild from the config restores them. The builder tags those parameters here, at build
time. Anything else that is frozen (experts frozen by an expert addition, a frozen back-end) holds
trained values that no file restores, so it is always stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["absolute_pretrained_paths", "mark_pretrained", "reloadable_names"]

_PRETRAINED_ATTR = "_sddkit_from_pretrained"


def mark_pretrained(module: nn.Module, *, except_names: set[str] | frozenset[str] = frozenset()) -> nn.Module:
    """Tag ``module``'s parameters as read from a pretrained file (``except_names``: parameters the
    file lacked, named relative to ``module``).

    The tag is an attribute of the Parameter object, so it follows the tensor when an adapter wraps
    its module (LoRA's base weight, a weight parametrization's ``original``).
    """
    for name, param in module.named_parameters():
        if name not in except_names:
            setattr(param, _PRETRAINED_ATTR, True)
    return module


def reloadable_names(model: nn.Module) -> set[str]:
    """Frozen parameters the builder read from pretrained files: what a trainable-only save omits."""
    return {n for n, p in model.named_parameters() if not p.requires_grad and getattr(p, _PRETRAINED_ATTR, False)}


def pretrained_entries(config: Any, prefix: str = "model") -> list[tuple[str, str]]:
    """Every ``pretrained`` folder named in ``config`` (a model config as plain data: a detector's encoder, a
    mixture's experts), with its dotted key: ``[("model.frontend.encoder.pretrained", "/models/xlsr"), ...]``."""
    found: list[tuple[str, str]] = []
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "pretrained" and isinstance(value, str):
                found.append((f"{prefix}.{key}", value))
            else:
                found.extend(pretrained_entries(value, f"{prefix}.{key}"))
    elif isinstance(config, list):
        for i, item in enumerate(config):
            found.extend(pretrained_entries(item, f"{prefix}.{i}"))
    return found


def pretrained_folders(config: Any) -> list[str]:
    """The ``pretrained`` folders of :func:`pretrained_entries`, without their keys."""
    return [folder for _, folder in pretrained_entries(config)]


def absolute_pretrained_paths(config: Any) -> Any:
    """``config`` (a model config as plain data) with every relative ``pretrained`` folder made absolute.

    The builder read it relative to the current folder; recorded so in a model directory, it was looked up
    relative to wherever the model was later loaded from, and failed (or found another folder)."""
    if isinstance(config, dict):
        return {
            k: _absolute(v) if k == "pretrained" and isinstance(v, str) and v else absolute_pretrained_paths(v)
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [absolute_pretrained_paths(v) for v in config]
    return config


def _absolute(path: str) -> str:
    """``path`` as the builder reads it (``~`` expanded: ``Path(path).expanduser()``), made absolute.

    ``os.path.abspath("~/models/x")`` alone gives ``<cwd>/~/models/x``, a folder that does not exist."""
    return os.path.abspath(os.path.expanduser(path))


def folder_architectures(obj: Any, where: str = "model", missing: list[str] | None = None) -> Any:
    """``obj`` with every encoder spec whose ``pretrained`` folder is there built from that folder's architecture
    (:func:`~sddkit.frontends.encoders.self_contained_spec`: its ``config.json`` only, no weights read). ``where``
    is ``obj``'s config key, which an error about a folder names (``model.frontend.encoder: ...``), as building the
    model on the CPU does. A ``pretrained`` folder that is not there is left to the preset's architecture, and
    named in ``missing`` (when given): the counts are then the preset's, which such a folder may not share."""
    if isinstance(obj, list):
        return [folder_architectures(v, f"{where}[{i}]", missing) for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    obj = {k: folder_architectures(v, f"{where}.{k}", missing) for k, v in obj.items()}
    folder = obj.get("pretrained")
    if isinstance(folder, str) and not (Path(folder).expanduser() / "config.json").is_file():
        if missing is not None:
            missing.append(
                f"{where}.pretrained: {folder!r} is not there (no config.json): counted with the architecture of "
                f"the preset {obj.get('name')}, which a folder may not share (its convolutions' biases and norms "
                "change the counts); the folder's own is counted once it is there"
            )
        return obj
    if isinstance(folder, str):
        from sddkit.errors import ConfigError
        from sddkit.frontends.encoders import self_contained_spec
        from sddkit.registry import at_path

        try:
            return self_contained_spec(obj)
        except ConfigError as exc:  # it said "encoder 'xlsr_300m': the pretrained model differs ...", of no key
            if type(exc) is not ConfigError:
                raise
            raise ConfigError(at_path(str(exc), "encoder", where)) from None
    return obj


def without_pretrained(obj: Any) -> Any:
    """``obj`` with every ``pretrained`` entry set to None (no weights are read on the meta device)."""
    if isinstance(obj, dict):
        return {k: (None if k == "pretrained" else without_pretrained(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [without_pretrained(v) for v in obj]
    return obj
