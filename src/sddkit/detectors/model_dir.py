"""Model directories: ``config.json`` (resolved config) + ``model.safetensors`` (weights). Never pickles.

    config.json = {
      "format": "sddkit-model", "format_version": 1, "sddkit_version": "...",
      "architecture": "detector",          # key into ARCHITECTURES (e.g. "detector", "mixture")
      "model": {...},                       # the architecture's resolved config (to_dict form)
      "weights": "full" | "trainable",     # "trainable": frozen pretrained weights come from `model` paths
      "inference": {...},                   # sample rate, windows, threshold, calibration (scoring owns it)
      "metadata": {...},                    # provenance: data, seed, git commit, metrics...
      "weights_digest": "...",              # SHA-256 of model.safetensors' tensors (below)
      "pretrained_digest": "..."            # "trainable" only: SHA-256 of the frozen weights read from disk
    }

Both files are written atomically (temporary file + ``os.replace``) so a crash never leaves a
half-written file behind. The pair cannot be replaced as one: overwriting a directory writes both
temporary files first (a full disk or a folder gone read-only then fails before either file is replaced, and
the directory stays as it was), then renames the config, then the weights. So that a crash (or a reader)
between the two renames never gets the new config over the old weights without a word, both files carry
the same ``weights_digest`` (a SHA-256 of the tensors: names, dtypes, shapes and bytes; in ``config.json`` and in the
safetensors header), and loading refuses a pair whose digests differ. Loading also recomputes the
digest from the tensors read, so a weights file damaged since (a broken copy, a bad disk: safetensors
checks no bytes) is refused instead of scored with under the digest of the model it was.
Directories written before the digest existed have none and load as before. Write a new model to a new directory when
something may be reading the old one.

A ``"full"`` directory needs no pretrained folder: its config holds the encoder architecture read from the
folder when it was saved (``frontends.encoders.self_contained_config``), and ``metadata.pretrained_folders``
names the folders it came from. One saved before that (no ``metadata.pretrained_folders``) still reads its
architecture from the folders its config names. A mixture given with ``expert_dirs`` is saved the same way: its
config holds the experts' configs, and ``metadata.expert_dirs`` names the directories they came from.

A ``"trainable"`` directory also records the digest of the frozen pretrained weights it was trained on
(``pretrained_digest``), which load from the encoder's ``pretrained`` folder (recorded as an absolute path, so the
directory loads from any working directory): a folder replaced since by
another encoder (a re-download of another revision, a different model under the same path) is refused
instead of scored with, or grown from by ``init_from``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from sddkit import __version__
from sddkit.documents import read_versioned_json
from sddkit.errors import CheckpointError, ConfigError

# atomic writes live in sddkit.outputs (no torch there, for the commands that load none); imported from here too
from sddkit.outputs import (  # noqa: F401
    _set_new_file_mode,
    atomic_open,
    atomic_write_bytes,
    fsync_dir,
    fsync_file,
    replacing_file,
)
from sddkit.pretrained import absolute_pretrained_paths, pretrained_folders, reloadable_names

FORMAT = "sddkit-model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_CONFIG_KEYS = (
    "format",
    "format_version",
    "sddkit_version",
    "architecture",
    "model",
    "weights",
    "inference",
    "metadata",
    "weights_digest",
    "pretrained_digest",
)
DIGEST_KEY = "sddkit_weights_digest"  # the safetensors header's metadata key holding the pair's digest
_WEIGHTS_KINDS = ("full", "trainable")  # every tensor / only the trainable ones (frozen encoders load from disk)


def _build_detector(model_cfg: dict[str, Any]) -> nn.Module:
    from sddkit.config import from_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector

    return build_detector(from_dict(DetectorConfig, model_cfg, "model"))


def _build_mixture(model_cfg: dict[str, Any]) -> nn.Module:
    from sddkit.detectors.mixture import _build_mixture_from_dict

    return _build_mixture_from_dict(model_cfg)


# architecture name -> builder(model_config_dict) -> nn.Module
ARCHITECTURES: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "detector": _build_detector,
    "mixture": _build_mixture,
}


@dataclass
class ModelDir:
    """A loaded model directory."""

    model: nn.Module
    architecture: str
    model_config: dict[str, Any]
    inference: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    weights_digest: str | None = None  # None: a directory written before digests existed


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None):
    with staged_safetensors(tensors, path, metadata):
        pass


@contextlib.contextmanager
def staged_safetensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> Iterator[None]:
    """Write ``tensors`` to a temporary file beside ``path`` (durable), run the ``with`` block, then rename the file
    over ``path``; when the block (or the write) fails, ``path`` stays as it was and the temporary file goes."""
    with replacing_file(path) as (fd, tmp):
        os.close(fd)  # save_file writes the file anew, by its name
        # clone: safetensors refuses shared/non-contiguous storage (tied weights, views)
        try:
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, tmp, metadata=metadata)
        except SafetensorError as exc:
            # a full disk or a folder gone read-only is an OSError, as from every other write (callers report it)
            code = re.search(r"os error (\d+)", str(exc))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from exc
        _set_new_file_mode(tmp)  # after save_file, which writes the file anew
        fsync_file(tmp)  # on disk before the rename: a power loss must not leave an empty file under the name
        yield


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state dict's names, dtypes, shapes and bytes, in name order.

    The same weights give the same digest, so saving a model twice writes identical files."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():  # the bytes through a uint8 view (numpy has no bfloat16), hashed in place
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def state_to_save(model: nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """Full state dict, or everything but the frozen pretrained weights (:func:`reloadable_names`)."""
    state = model.state_dict()
    if not trainable_only:
        return state
    reloadable = reloadable_names(model)
    return {k: v for k, v in state.items() if k not in reloadable}


def save_model_dir(
    directory: str | Path,
    model: nn.Module,
    *,
    model_config: dict[str, Any] | Any,
    architecture: str = "detector",
    trainable_only: bool = False,
    inference: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its resolved config to ``directory`` (created if needed).

    ``model_config``: the config that builds ``model`` (``DetectorConfig`` for a detector), as a dict
    (``sddkit.config.to_dict``) or the config dataclass itself (it was a JSON TypeError)."""
    from sddkit.config import plain_config

    model_config = plain_config(model_config)
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    directory = Path(directory)
    problem = _grown_frontend_problem(model, model_config)
    if problem is not None:
        raise ConfigError(problem)
    if any(getattr(m, "merged", False) is True for m in model.modules()):
        # the rebuilt model starts unmerged: merged base weights plus the stored A/B would add B A twice
        raise ConfigError("the model has merged LoRA adapters: call unmerge() before saving it")
    state = state_to_save(model, trainable_only)
    digest = weights_digest(state)
    frozen = _pretrained_digest(model) if trainable_only else None
    if architecture == "mixture" and isinstance(model_config, dict) and model_config.get("expert_dirs"):
        model_config, metadata = _self_contained_mixture(model_config, metadata)
    if trainable_only:
        # the frozen weights load from the pretrained folders: a relative one was looked up against the working
        # directory of whoever loaded the model (as the trainer records them: absolute)
        model_config = absolute_pretrained_paths(model_config)
        from sddkit.frontends.encoders import recorded_folder_config

        # the waveform normalisation and the settings (dropout, SpecAugment, layer norm epsilon) the folder decided
        # at training, recorded: not decided again from whatever copy of the folder a later load finds (one without
        # its feature-extractor file scored on other input; an edited config.json with another epsilon too)
        model_config = recorded_folder_config(model_config)
    folders = list(dict.fromkeys(pretrained_folders(model_config)))
    if folders and not trainable_only:
        from sddkit.frontends.encoders import self_contained_config

        # every weight is stored: only the architecture came from the pretrained folders, so write it out and
        # the directory loads (and is moved, shared, served) without them; the folders stay as provenance
        model_config = self_contained_config(model_config)
        metadata = {**(metadata or {}), "pretrained_folders": folders}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sddkit_version": __version__,
        "architecture": architecture,
        "model": model_config,
        "weights": "trainable" if trainable_only else "full",
        "inference": inference or {},
        "metadata": metadata or {},
        "weights_digest": digest,
        **({"pretrained_digest": frozen} if frozen is not None else {}),
    }
    # serialise first: a config JSON cannot hold must fail before the weights are replaced
    config_bytes = (json.dumps(config, indent=2, sort_keys=False) + "\n").encode()
    with staged_safetensors(state, directory / WEIGHTS_NAME, metadata={DIGEST_KEY: digest}):
        # the config is written while the new weights wait beside the old: a full disk (or a folder gone read-only)
        # while writing it left new weights under the old config, and the earlier model (a run's final/ or best/,
        # exported again by a resume) no longer loaded; now neither file is replaced unless both were written
        atomic_write_bytes(directory / CONFIG_NAME, config_bytes)
    return directory


def _grown_frontend_problem(model: nn.Module, model_config: Any) -> str | None:
    """Why ``model_config`` would not rebuild the MoLEx front-end of ``model``, or None: the front-end was grown by
    ``add_experts`` after the config was taken (a model directory loaded, grown and saved with its ``model_config``),
    so its ``molex.added_experts`` lists other expert groups than the weights hold. Saved so, the directory was
    written but never loaded again ("unexpected ...lora_A.1", blamed on a config "edited since the save")."""
    frontend = getattr(model, "frontend", None)
    grown = getattr(frontend, "molex_config", None)
    section = model_config.get("frontend") if isinstance(model_config, dict) else None
    if grown is None or getattr(frontend, "adapter", None) != "molex" or not isinstance(section, dict):
        return None
    molex = section.get("molex")
    recorded = list((molex if isinstance(molex, dict) else {}).get("added_experts") or [])
    if recorded == list(grown.added_experts):
        return None
    return (
        f"model_config['frontend']['molex']['added_experts'] is {recorded}, but the model's MoLEx front-end holds the "
        f"expert groups {list(frontend.expert_groups)} (added_experts {list(grown.added_experts)}): the config, taken "
        "before add_experts grew the model, would not rebuild it; save it with model_config['frontend'] = "
        "model.frontend.config_after_growth(model_config['frontend']), as sdd train records a growth"
    )


def _self_contained_mixture(
    model_config: dict[str, Any], metadata: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A mixture config that names its experts by their directories (``expert_dirs``) -> one that holds their
    configs (``resolved_mixture_config``), with the directories kept as ``metadata.expert_dirs``.

    The mixture's weights hold every expert's, so only their architecture came from the directories: written
    out, the mixture loads (and is moved, shared, served) without them, from any working directory (relative
    ``expert_dirs`` were read against the loader's), and reports its experts (``/v1/model``, the expert names
    ``sdd score`` records) instead of an empty list."""
    from sddkit.config import from_dict
    from sddkit.detectors.mixture import MixtureConfig, resolved_mixture_config

    cfg = from_dict(MixtureConfig, model_config, "model")
    return resolved_mixture_config(cfg), {**(metadata or {}), "expert_dirs": [str(d) for d in cfg.expert_dirs]}


def read_model_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such model directory")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a model directory (a file){_other_kind_hint(directory)}")
    if not cfg_path.is_file():
        hint = _other_kind_hint(directory) or (
            f"; a model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}, as `sdd train` writes them (a run's best/ "
            "and final/), `sdd calibrate --out` and `sdd import-aasist`"
        )
        raise CheckpointError(f"{directory}: missing {CONFIG_NAME}{hint}")
    try:
        config = read_versioned_json(cfg_path, fmt=FORMAT, version=FORMAT_VERSION, what="model config")
    except CheckpointError as exc:
        # a config.json cut short (a broken copy or download) or garbled said only where the parser stopped
        if not str(exc).startswith((f"{cfg_path}: invalid JSON", f"{cfg_path}: not UTF-8")):
            raise
        raise CheckpointError(
            f"{exc}; the model directory's {CONFIG_NAME} is damaged (a broken copy or download, an edit gone "
            "wrong?): copy the model directory again from its source, or save the model again"
        ) from None
    # A hand-edited key that nothing reads would otherwise be ignored without a word.
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise CheckpointError(
            f"{cfg_path}: unknown key(s) {unknown}; valid keys: {list(_CONFIG_KEYS)}{_newer_writer_hint(config)}"
        )
    missing = [key for key in ("architecture", "model") if key not in config]
    if missing:
        raise CheckpointError(f"{cfg_path}: missing key(s) {missing}")
    if not isinstance(config["architecture"], str):
        raise CheckpointError(f"{cfg_path}: architecture must be a name, got {config['architecture']!r}")
    if not isinstance(config["model"], dict):  # `sdd describe DIR` read it as one: a ValueError traceback
        raise CheckpointError(f"{cfg_path}: model must be a JSON object, got {type(config['model']).__name__}")
    if config.get("weights", "full") not in _WEIGHTS_KINDS:
        raise CheckpointError(f"{cfg_path}: weights must be one of {list(_WEIGHTS_KINDS)}, got {config['weights']!r}")
    digest = config.get("weights_digest")
    if digest is not None and not isinstance(digest, str):
        raise CheckpointError(f"{cfg_path}: weights_digest must be a string, got {digest!r}")
    for key in ("inference", "metadata"):  # read with .get(...) by scoring and model cards
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise CheckpointError(f"{cfg_path}: {key} must be a JSON object, got {type(config[key]).__name__}")
    _reset_inert_head_scale(config["model"])
    return config


def _reset_inert_head_scale(node: Any) -> None:
    """Reset, in place, a stored ``head_scale`` beside the linear head (which never reads it) to its default.

    Recipes that set it with ``head: linear`` are refused (:class:`~sddkit.backends.heads.ClassifierConfig`), but a
    model folder saved before that refusal records the value it was given: refused too, the model (unchanged by
    it) could no longer be scored."""
    from sddkit.backends.heads import ClassifierConfig

    if isinstance(node, list):
        for item in node:
            _reset_inert_head_scale(item)
    elif isinstance(node, dict):
        if "head_scale" in node and node.get("head", "linear") == "linear":
            node["head_scale"] = ClassifierConfig.head_scale
        for value in node.values():
            _reset_inert_head_scale(value)


def _version_key(version: Any) -> tuple[int, ...] | None:
    """The leading release numbers of a version string ("0.2.0rc1" -> (0, 2, 0)), None when it has none."""
    found = re.match(r"\d+(?:\.\d+)*", version) if isinstance(version, str) else None
    return tuple(int(part) for part in found.group().split(".")) if found else None


def _newer_writer_hint(config: dict[str, Any]) -> str:
    """When a newer sddkit wrote ``config`` (what explains keys or values this one does not know), the hint to
    upgrade; else ''."""
    written, running = _version_key(config.get("sddkit_version")), _version_key(__version__)
    if written is None or running is None or written <= running:
        return ""
    return f" (written by sddkit {config['sddkit_version']}, newer than this one, {__version__}: upgrade sddkit)"


def _exported_hint(run: Path) -> str:
    """``: load the model its run exported, RUN/best or RUN/final`` (or that it exported none yet), for a path
    inside training run folder ``run``."""
    exported = [name for name in ("best", "final") if (run / name / CONFIG_NAME).is_file()]
    models = " or ".join(str(run / name) for name in exported)
    return f": load the model its run exported, {models}" if exported else ": its run exported no model yet"


def _export_again_hint(directory: Path, lead: str = "") -> str:
    """How to write ``directory`` again when it is a training run's ``best/`` or ``final/`` (beside the run's
    ``checkpoints/``), after ``lead``; else ''. A save stopped between its two files is mended by the run's resume,
    which exports both again from the checkpoints: "save the model again" or "copy the whole model directory" left
    the user of a run to find out how."""
    if directory.name not in ("best", "final") or not (directory.parent / "checkpoints").is_dir():
        return ""
    return (
        f"{lead}{directory} is an export of the training run {directory.parent}: `sdd train RECIPE --resume` "
        f"(its recipe, trainer.out_dir={directory.parent}) exports it again from the run's checkpoints"
    )


def _other_kind_hint(path: Path) -> str:
    """What to load instead, when ``path`` is another kind of sddkit output than a model directory (a training
    run folder, one of its checkpoints or its ``checkpoints/latest`` pointer, an ONNX export or a folder holding one,
    a published PyTorch checkpoint), else ''."""
    if path.is_file():
        if path.name in (CONFIG_NAME, WEIGHTS_NAME):
            return f"; load the model directory that holds it, {path.parent}"
        if path.suffix.lower() in (".pth", ".pt", ".ckpt"):
            return (
                "; a PyTorch checkpoint is never unpickled: turn published AASIST weights into a model directory "
                "with `sdd import-aasist`"
            )
        if path.suffix.lower() == ".onnx":  # e.g. given as a mixture's expert: only scoring reads an export
            from sddkit.scoring.onnx_export import exported_from

            source = exported_from(path)
            return (
                "; an ONNX export (sdd export-onnx), which only scoring reads (--backend onnx): give the model "
                f"directory it was exported from{f', {source}' if source else ''}"
            )
        if path.name == "latest" and path.parent.name == "checkpoints":  # the pointer to a run's last checkpoint
            return "; it points at a training run's latest checkpoint" + _exported_hint(path.parent.parent)
        return ""
    if (path / "state.json").is_file() and path.parent.name == "checkpoints":  # runs/x/checkpoints/step-00000040
        return "; this is a training checkpoint (the state a run resumes from), not a model directory" + _exported_hint(
            path.parent.parent
        )
    exported = [name for name in ("best", "final") if (path / name / CONFIG_NAME).is_file()]
    if exported:
        models = " or ".join(str(path / name) for name in exported)
        return f"; this is a training run folder: load the model it exported, {models}"
    if (path / "checkpoints").is_dir():
        return "; this is a training run folder that exported no model yet (it holds checkpoints/ only)"
    if (path / "model.onnx").is_file():
        return "; it holds an exported model.onnx: load it with backend='onnx' (sdd score --backend onnx)"
    return ""


def load_model_dir(directory: str | Path, *, map_location: str = "cpu") -> ModelDir:
    """Build the model from ``config.json`` and load ``model.safetensors`` strictly."""
    directory = Path(directory)
    config = read_model_config(directory)
    arch = config.get("architecture")
    if arch not in ARCHITECTURES:
        raise CheckpointError(
            f"{directory}: unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}{_newer_writer_hint(config)}"
        )
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():  # before building: an encoder's pretrained weights take seconds to read
        stopped = sorted(directory.glob(f".{WEIGHTS_NAME}.*.tmp"))
        if stopped:  # the first export into it stopped (killed, a power cut) after its config, before its weights
            raise CheckpointError(
                f"{directory}: missing {WEIGHTS_NAME}: a save into it was stopped before its weights were moved in "
                f"(their temporary file {stopped[0].name} is there); "
                f"{_export_again_hint(directory) or 'save the model again'}"
            )
        raise CheckpointError(
            f"{directory}: missing {WEIGHTS_NAME}, the weights {CONFIG_NAME} goes with: copy the whole model "
            f"directory{_export_again_hint(directory, '; or ')}"
        )
    try:
        model = ARCHITECTURES[arch](config["model"])
    except ConfigError as exc:
        # several model directories may be in play (mixture experts, a service): say which one is wrong
        raise ConfigError(
            f"{directory / CONFIG_NAME}: {exc}{_newer_writer_hint(config)}{_missing_pretrained_hint(config)}"
        ) from None
    except CheckpointError as exc:
        if arch != "mixture" or not (isinstance(config["model"], dict) and config["model"].get("expert_dirs")):
            raise
        # a mixture saved before its config was made self-contained reads its experts' configs from their
        # directories (relative ones from the working directory): name the mixture that needs them
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: this mixture reads its experts' configs from model.expert_dirs, and {exc} "
            "(restore that directory, or give its new place in model.expert_dirs)"
        ) from None
    try:
        state, stored_digest = _read_weights(weights, map_location)
    except OSError as exc:  # a file of another user, a disk error: nothing wrong with its bytes
        raise CheckpointError(f"{weights}: unreadable weights: {exc.strerror or exc}") from None
    except SafetensorError as exc:
        # a truncated copy, an interrupted download, a file of another format under the name: say what to do
        raise CheckpointError(
            f"{weights}: unreadable weights: {exc}; the file is damaged or not a safetensors file (a broken copy "
            "or download?): copy the model directory again from its source, or save the model again"
        ) from None
    expected_digest = config.get("weights_digest")
    # a header digest under a config without one: new weights over an old (pre-digest) config, the very
    # interrupted overwrite the digests exist to catch
    if (expected_digest is not None or stored_digest is not None) and stored_digest != expected_digest:
        raise CheckpointError(
            f"{directory}: {CONFIG_NAME} and {WEIGHTS_NAME} come from different saves (weights digest "
            f"{_short(stored_digest)} where the config expects {_short(expected_digest)}): an overwrite was "
            "interrupted between the two files, or one was copied from another model; "
            f"{_export_again_hint(directory) or 'save the model again'}"
        )
    # the digest names the model everywhere (score journals, run records, /v1/model): the bytes must be its
    if expected_digest is not None and weights_digest(state) != expected_digest:
        raise CheckpointError(
            f"{weights}: the tensors do not match the weights digest recorded at save ({_short(expected_digest)}): "
            "the file was damaged since (a broken copy or download, a bad disk) or its tensors were rewritten; "
            "copy the model directory again from its source"
        )
    recorded = config.get("pretrained_digest")
    if config.get("weights") == "trainable" and recorded is not None and _pretrained_digest(model) != recorded:
        raise CheckpointError(
            f"{directory}: the pretrained weights read from the encoder's pretrained folder "
            f"({', '.join(pretrained_folders(config['model'])) or 'see config.json'}) are not those this model was "
            f"trained on (digest {_short(_pretrained_digest(model))}, recorded {_short(recorded)}): restore that "
            "folder as it was"
        )
    # the digests matched: the weights are those saved, so a model section that builds another model was edited
    hint = (
        f"; {CONFIG_NAME} describes another model than {WEIGHTS_NAME} holds (its model section edited since the "
        "save?): restore it as saved, or copy the model directory again from its source"
    )
    load_state_checked(model, state, partial=config.get("weights") == "trainable", where=str(weights), hint=hint)
    model.eval()
    return ModelDir(
        model=model,
        architecture=arch,
        model_config=config["model"],
        inference=config.get("inference") or {},
        metadata=config.get("metadata") or {},
        path=directory,
        weights_digest=expected_digest,
    )


def _missing_pretrained_hint(config: dict[str, Any]) -> str:
    """What to do when a ``"trainable"`` directory's pretrained folder is not where its config names it (the
    directory copied to another machine, the folder moved): else ''."""
    if config.get("weights") != "trainable":
        return ""
    folders = dict.fromkeys(pretrained_folders(config["model"]))
    gone = [f for f in folders if not (Path(f) / CONFIG_NAME).is_file()]
    if not gone:
        return ""
    return (
        f"; this model directory stores only its trained weights (weights: trainable): the frozen pretrained "
        f"weights load from {', '.join(gone)}, as recorded at save. Put that folder there, or give its place on "
        f"this machine in {CONFIG_NAME}'s model section (the pretrained digest checks it is the same encoder)"
    )


def _pretrained_digest(model: nn.Module) -> str | None:
    """:func:`weights_digest` of the tensors a ``"trainable"`` directory leaves to the pretrained folder."""
    reloadable = reloadable_names(model)
    if not reloadable:
        return None
    state = model.state_dict()
    return weights_digest({k: v for k, v in state.items() if k in reloadable})


def _read_weights(weights: Path, map_location: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of a safetensors file and the ``weights_digest`` of its header (None in files written
    without one), from one opening of the file."""
    with safe_open(str(weights), framework="pt", device=map_location) as f:
        return {name: f.get_tensor(name) for name in f.keys()}, (f.metadata() or {}).get(DIGEST_KEY)


def _kind(dtype: torch.dtype) -> str:
    return "bool" if dtype == torch.bool else "float" if dtype.is_floating_point or dtype.is_complex else "int"


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:12]


def state_differences(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """How ``state`` differs from the state dict ``expected`` in names and shapes: (the names it lacks, the names it
    has beyond them, the shared names of another shape), the first two sorted, the third in ``state``'s order."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shapes = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    return missing, unexpected, bad_shapes


def load_state_checked(
    model: nn.Module, state: dict[str, torch.Tensor], *, partial: bool, where: str, hint: str = ""
) -> None:
    """Load strictly; with ``partial`` only frozen parameters read from pretrained files at build time
    (:func:`reloadable_names`) may be missing. ``hint`` ends the error of tensors that do not fit the model (other
    names, shapes or kinds): what to do about it."""
    expected = model.state_dict()
    missing, unexpected, bad_shapes = state_differences(expected, state)
    if partial:
        reloadable = reloadable_names(model)
        missing = [k for k in missing if k not in reloadable]
    if unexpected or missing:
        raise CheckpointError(
            f"{where}: weights do not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}{hint}"
        )
    if bad_shapes:
        k = bad_shapes[0]
        raise CheckpointError(
            f"{where}: shape mismatch for {k}: stored {tuple(state[k].shape)}, the model has {tuple(expected[k].shape)}"
            f"{hint}"
        )
    # load_state_dict casts: int or bool values where the model holds floats (or the reverse) would load as
    # something else (an int32 position embedding truncated to -1/0/1), so the kind must match; float
    # widths may differ (a float64 or bfloat16 file loads as the model's floats)
    bad_kinds = [k for k in state if _kind(state[k].dtype) != _kind(expected[k].dtype)]
    if bad_kinds:
        k = bad_kinds[0]
        raise CheckpointError(
            f"{where}: {k} holds {state[k].dtype} values where the model expects {expected[k].dtype}{hint}"
        )
    # weights saved from a run that diverged would load and score NaN for every file, without a word
    bad = next((k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        raise CheckpointError(f"{where}: {bad} holds NaN or inf values (the weights of a diverged run?)")
    model.load_state_dict(state, strict=not partial)
