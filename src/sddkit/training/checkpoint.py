"""Training checkpoints: safetensors + JSON, written atomically, never pickled.

    out_dir/checkpoints/
      step-00000400/
        state.safetensors     every tensor: model weights (but the frozen pretrained ones, which come from
                              their folder again), optimizer moments, torch RNG states, ...
        state.json            everything else: the recipe it was saved under, optimizer/scheduler scalars,
                              epoch/step, the resumes under a changed recipe before it (``trainer.resumes``),
                              python/numpy RNG states, best-EER bookkeeping, the digest of the frozen
                              pretrained weights the run trained over (a resume checks it), the git commit
                              and package versions of the session that saved it (``git``, ``versions``: best/
                              reports them); tensors appear as {"__tensor__": key} references into
                              state.safetensors, whose SHA-256 (``tensors_digest``) loading checks
      latest                  one line: the name of the newest complete checkpoint directory

A checkpoint is written into a hidden temporary directory which is renamed into place when
complete; the ``latest`` pointer is replaced (atomically) only after that, and old checkpoints
are pruned only after the pointer moved. A crash at any point therefore leaves ``latest``
naming a complete checkpoint (or no ``latest`` at all before the first save).

State encoding (:func:`encode_state`): nested dicts/lists/tuples of scalars, strings, tensors,
numpy arrays and bytes map to JSON plus a flat ``{key: tensor}`` dict; tuples, integer dict
keys, arrays and bytes are tagged so :func:`decode_state` restores them exactly (python's
``random.getstate()`` and optimizer ``betas`` are tuples; optimizer state is keyed by int).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sddkit.detectors.model_dir import atomic_write_bytes, weights_digest
from sddkit.documents import read_versioned_json
from sddkit.errors import CheckpointError
from sddkit.outputs import _set_new_file_mode, fsync_dir, fsync_file

STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
LATEST = "latest"
FORMAT = "sddkit-checkpoint"
FORMAT_VERSION = 1
_TMP_PREFIX = ".tmp-"


# --- nested state <-> (JSON, tensors) -------------------------------------------------------------
def _child(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def encode_state(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """JSON-serialisable form of ``obj``; tensors are moved into ``tensors`` under their path
    (``model/frontend.proj.weight``, ``optimizer/state/0/exp_avg``, ...)."""
    if isinstance(obj, torch.Tensor):
        key = path or "root"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, tensors, _child(path, i)) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, _child(path, i)) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            if any(k.startswith("__") and k.endswith("__") for k in obj):
                return {"__items__": [[k, encode_state(v, tensors, _child(path, k))] for k, v in obj.items()]}
            return {k: encode_state(v, tensors, _child(path, k)) for k, v in obj.items()}
        return {"__items__": [[k, encode_state(v, tensors, _child(path, k))] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a checkpoint (at {path or 'root'})")


def decode_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"checkpoint tensor {key!r} is missing from {STATE_TENSORS}")
        return tensors[key]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__bytes__" in obj:
        return base64.b64decode(obj["__bytes__"])
    if "__tuple__" in obj:
        return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: decode_state(v, tensors) for k, v in obj["__items__"]}
    return {k: decode_state(v, tensors) for k, v in obj.items()}


# --- RNG states ----------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """python, numpy and torch (CPU and every CUDA device) generator states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # the generators of the devices both machines have: a resume where fewer or more GPUs are visible
        # continues the streams of those it uses (cuda:0 at least) instead of replaying them from the seed
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


# --- directory layout --------------------------------------------------------------------------
def _write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """The safetensors writer (separate so tests can make it fail mid-save)."""
    # clone: safetensors refuses tensors sharing storage (tied weights, views)
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(path))


def save_checkpoint(root: str | Path, name: str, state: dict[str, Any], *, update_latest: bool = True) -> Path:
    """Write ``state`` (any nested mix of tensors and plain values) as ``root/name`` atomically.

    Returns the checkpoint directory. Leftover temporary directories of earlier crashes are removed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f"{_TMP_PREFIX}{name}-{os.getpid()}"
    final = root / name
    tensors: dict[str, torch.Tensor] = {}
    encoded = encode_state(state, tensors)
    # the tensors' digest: bytes damaged since the save (a failing disk, a bad copy) are refused on load, as a model
    # directory's are, instead of resuming from other weights or optimiser moments without a word
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "tensors_digest": weights_digest(tensors)}
    document["state"] = encoded
    trash = root / f"{_TMP_PREFIX}old-{name}-{os.getpid()}"
    try:
        tmp.mkdir(parents=True)
        _write_tensors(tensors, tmp / STATE_TENSORS)
        # safetensors creates its file 0600 whatever the umask, where state.json beside it follows the umask: a
        # colleague (or a service account) could read a run's records but not resume or average its checkpoints
        _set_new_file_mode(str(tmp / STATE_TENSORS))
        fsync_file(tmp / STATE_TENSORS)  # durable before the rename publishes it (state.json is fsynced too)
        atomic_write_bytes(tmp / STATE_JSON, (json.dumps(document, indent=1) + "\n").encode())
        fsync_dir(tmp)
        if final.exists():  # re-saving a step (e.g. after a resume): move the old copy out of the way first
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash.is_dir() and not final.exists():  # interrupted between the two renames: the old copy goes back
            os.replace(trash, final)
        raise
    if update_latest:
        try:
            atomic_write_bytes(root / LATEST, (name + "\n").encode())
        except OSError:  # a full disk, a folder gone read-only (a kill leaves it: see adopt_lone_checkpoint)
            _unpublish(root, name)
            raise
        fsync_dir(root)  # the pointer's rename is durable before older checkpoints may be pruned
    return final


def _unpublish(root: Path, name: str) -> None:
    """Remove checkpoint ``name``, renamed into place, whose ``latest`` pointer could not be written (a disk that
    filled up with it): the pointer names the previous checkpoint, the one the error says a resume continues from,
    and the resume saves this step again. Left there, it held the space a full disk lacked, and the re-save of its
    step after "free the space, then --resume" failed again, needing room for both copies. Kept when the pointer
    names it already (a step saved again); removed on a first save too, whose error says no checkpoint was saved."""
    try:
        named = (root / LATEST).read_text(errors="replace").strip()
    except FileNotFoundError:  # no pointer yet (the first save): nothing names this checkpoint
        named = None
    except OSError:  # unreadable: what it names is unknown, and the checkpoint stays
        return
    if named != name:
        shutil.rmtree(root / name, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory ``root/latest`` names, or None when there is no checkpoint yet."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text(
            errors="replace"
        ).strip()  # a damaged pointer is named in the error, not a decode error
    except OSError as exc:  # another user's run folder (a pointer of mode 0600): one line, not a traceback
        raise CheckpointError(f"{pointer}: cannot read the checkpoint pointer: {exc.strerror or exc}") from None
    if not name or any(c in name for c in "/\0\ufffd") or name.startswith("."):
        raise CheckpointError(f"{pointer}: invalid checkpoint pointer {name!r}")
    path = root / name
    if not path.is_dir() and not _restore_moved_aside(root, name):
        raise CheckpointError(f"{pointer} names {name!r}, which does not exist")
    return path


def _restore_moved_aside(root: Path, name: str) -> bool:
    """Put back the copy of checkpoint ``name`` that a re-save of its step moved aside (``.tmp-old-<name>-<pid>``)
    and was killed before renaming the new copy in: the one ``latest`` names, which the next save would delete
    with the other temporary directories. Returns whether there was one."""
    for old in sorted(root.glob(f"{_TMP_PREFIX}old-{glob.escape(name)}-*")):
        if (old / STATE_JSON).is_file() and (old / STATE_TENSORS).is_file():
            try:
                os.replace(old, root / name)
            except OSError:  # another process (a DDP rank) put it back first
                break
            fsync_dir(root)
            return True
    return (root / name).is_dir()


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint directory back into the nested state given to :func:`save_checkpoint`."""
    path = Path(path)
    doc_path, tensor_path = path / STATE_JSON, path / STATE_TENSORS
    if not doc_path.is_file() or not tensor_path.is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (needs {STATE_JSON} and {STATE_TENSORS})")
    document = read_versioned_json(doc_path, fmt=FORMAT, version=FORMAT_VERSION, what="checkpoint")
    if not isinstance(document.get("state"), dict):
        raise CheckpointError(f"{doc_path}: not a complete checkpoint (no 'state' object)")
    try:
        tensors = load_file(str(tensor_path), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{tensor_path}: unreadable tensors: {exc}") from None
    _check_digest(tensor_path, tensors, document)
    return decode_state(document["state"], tensors)


def load_checkpoint_record(path: str | Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The entries ``keys`` of a checkpoint's state that hold no tensor (the recipe, the model config), read from
    its ``state.json`` alone: what a resume needs before the model is built, without reading every weight twice."""
    doc_path = Path(path) / STATE_JSON
    document = read_versioned_json(doc_path, fmt=FORMAT, version=FORMAT_VERSION, what="checkpoint")
    state = document.get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{doc_path}: not a complete checkpoint (no 'state' object)")
    return {key: decode_state(state[key], {}) for key in keys if key in state}


def load_checkpoint_tensors(path: str | Path, prefix: str, *, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """Only the tensors stored under ``prefix`` (e.g. ``model/``), keys without it; skips the rest of the file."""
    from safetensors import safe_open

    tensor_path = Path(path) / STATE_TENSORS
    doc_path = Path(path) / STATE_JSON
    document = read_versioned_json(doc_path, fmt=FORMAT, version=FORMAT_VERSION, what="checkpoint")
    try:
        if document.get("tensors_digest") is not None:  # every tensor, to check them against the digest
            tensors = load_file(str(tensor_path), device=str(map_location))
        else:
            with safe_open(str(tensor_path), framework="pt", device=map_location) as f:
                return {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{tensor_path}: unreadable tensors: {exc}") from None
    _check_digest(tensor_path, tensors, document)
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _check_digest(tensor_path: Path, tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> None:
    expected = document.get("tensors_digest")  # absent from checkpoints written before it was recorded
    if expected is not None and weights_digest(tensors) != expected:
        raise CheckpointError(f"{tensor_path}: the tensors differ from those saved (damaged since: a failing disk?)")


# what a resume reads of a training checkpoint's state unconditionally: key -> the type it must have
_RESUME_KEYS: dict[str, type] = {
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "strategy": dict,
    "trainer": dict,
    "rng": dict,
}
# the trainer record's (``TrainState``'s) counters: a string or a float there failed steps later with a TypeError
_TRAINER_COUNTERS = ("step", "epoch", "batch_in_epoch", "bad_validations", "last_saved_step")


def check_resumable(path: str | Path, state: dict[str, Any]) -> None:
    """Refuse the state of training checkpoint ``path`` whose ``state.json`` lacks what a resume reads or holds it
    in another form: a hand-edited (or otherwise damaged) ``state.json`` passes the tensors' digest, which covers
    ``state.safetensors`` only, and failed as a bare KeyError or TypeError part-way through the resume."""
    where = Path(path) / STATE_JSON
    for key, kind in _RESUME_KEYS.items():
        if not isinstance(state.get(key), kind):
            got = "nothing" if key not in state else type(state[key]).__name__
            raise CheckpointError(f"{where}: state.{key} must be a {kind.__name__}, got {got} (edited or damaged?)")
    trainer = state["trainer"]
    for key in _TRAINER_COUNTERS:
        if key in trainer and (not isinstance(trainer[key], int) or isinstance(trainer[key], bool)):
            raise CheckpointError(f"{where}: state.trainer.{key} must be an integer, got {trainer[key]!r}")
    ranked = trainer.get("ranked", [])
    if not isinstance(ranked, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("name"), str)
        and isinstance(e.get("step"), int)
        and isinstance(e.get("eer"), (int, float))
        for e in ranked
    ):
        raise CheckpointError(f"{where}: state.trainer.ranked must be a list of {{name, step, eer}}, got {ranked!r}")
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise CheckpointError(f"{where}: state.history must be a list of validation records (objects)")
    for i, rng in enumerate([state["rng"], *(state.get("rng_by_rank") or [])]):
        _check_rng(where, rng, "rng" if i == 0 else f"rng_by_rank[{i - 1}]")


def _check_rng(where: Path, rng: Any, name: str) -> None:
    """Set the generator states ``rng`` into throwaway generators (the process's own are left alone)."""
    try:
        random.Random().setstate(rng["python"])
        np.random.RandomState().set_state(rng["numpy"])
        torch.Generator().set_state(rng["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: state.{name} holds no usable generator states ({exc!r})") from None


def _checkpoint_dirs(root: Path) -> list[Path]:
    """The checkpoint directories of ``root`` (not the hidden temporaries of a save), oldest step first."""
    if not root.is_dir():
        return []
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _is_complete(directory: Path) -> bool:
    return all((directory / f).is_file() for f in (STATE_JSON, STATE_TENSORS))


def complete_checkpoints(root: str | Path) -> list[str]:
    """Names of the checkpoint directories of ``root`` that hold both files, oldest step first."""
    return [d.name for d in _checkpoint_dirs(Path(root)) if _is_complete(d)]


def checkpoints_without_pointer(root: str | Path) -> list[str]:
    """Names of the checkpoint directories of ``root`` when it has no ``latest`` pointer (none when it has one).

    Saves move the pointer atomically, so this is a pointer deleted by hand, or a run killed between its first
    checkpoint's rename and the pointer's first write (one checkpoint then): resuming would not find them and the
    next save would prune them.
    """
    root = Path(root)
    if (root / LATEST).exists():
        return []
    return [d.name for d in _checkpoint_dirs(root)]


def adopt_lone_checkpoint(root: str | Path) -> str | None:
    """Point ``root/latest`` at the checkpoint of ``root`` when it has no pointer and exactly one checkpoint (what a
    run killed during its first save leaves: no other checkpoint can be the one to continue from); returns its
    name, or None (a pointer, no checkpoint, an incomplete one, or several, which only a pointer deleted by hand
    leaves)."""
    orphans = checkpoints_without_pointer(root)
    if len(orphans) != 1 or not _is_complete(Path(root) / orphans[0]):
        return None
    atomic_write_bytes(Path(root) / LATEST, (orphans[0] + "\n").encode())
    return orphans[0]


def unusable_latest(root: str | Path, out_dir: str | Path, exc: CheckpointError) -> CheckpointError:
    """The error of a ``--resume`` whose latest checkpoint under ``root`` cannot be read (``exc``): the other
    complete checkpoints there to go on from instead (never chosen silently: the steps after it would be taken
    again), or none, then moving the run's ``out_dir`` away."""
    pointer = Path(root) / LATEST
    try:
        named = pointer.read_text(errors="replace").strip() if pointer.is_file() else ""
    except OSError:  # the pointer itself unreadable (exc says so): every complete checkpoint is another
        named = ""
    others = [n for n in complete_checkpoints(root) if n != named]
    if others:
        how = (
            f"to continue from another checkpoint instead, write its name ({', '.join(others[-3:])}) into "
            f"{pointer} and pass --resume again"
        )
    else:
        how = f"no other complete checkpoint is there: move {out_dir} away to start afresh"
    return CheckpointError(f"cannot resume from the latest checkpoint: {exc}; {how}")


def prune_checkpoints(root: str | Path, keep: set[str]) -> list[str]:
    """Delete checkpoint directories of ``root`` not named in ``keep`` (never the one ``latest`` names)."""
    root = Path(root)
    latest = latest_checkpoint(root)
    keep = set(keep) | ({latest.name} if latest is not None else set())
    removed = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and child.name not in keep:
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child.name)
    return removed


# --- optimizer state ---------------------------------------------------------------------------------
def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` (tensors -> safetensors, scalars -> JSON via :func:`encode_state`)."""
    return optimizer.state_dict()


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"optimizer state does not match the trainable parameters: {exc}") from None
    # load_state_dict checks the number of parameters per group only: as many trainable tensors of other shapes
    # loaded, and the first step failed inside the optimiser with a raw size mismatch
    for i, p in enumerate(q for group in optimizer.param_groups for q in group["params"]):
        for key, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != p.shape:
                raise CheckpointError(
                    f"optimizer state does not match the trainable parameters: trainable parameter {i} has shape "
                    f"{tuple(p.shape)}, its saved {key} {tuple(value.shape)}"
                )
