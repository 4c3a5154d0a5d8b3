"""Import the published AASIST / AASIST-L weights (clovaai/aasist state dicts) as sddkit model directories.

The published files are plain ``state_dict``s of the reference ``Model``. They are read with
``torch.load(weights_only=True)`` (tensors only, never arbitrary pickled objects), renamed with
the explicit prefix table :data:`REFERENCE_PREFIXES`, loaded *strictly* into
``Detector(frontend=raw, backend=aasist|aasist_l(reference_compat=True))`` and written with
:func:`~sddkit.detectors.model_dir.save_model_dir`. The published label convention (class 1 =
bona fide) is sddkit's, so the output layer is kept as is.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sddkit.config import to_dict
from sddkit.detectors.detector import Detector, DetectorConfig, build_detector
from sddkit.detectors.model_dir import CONFIG_NAME, load_state_checked, save_model_dir
from sddkit.documents import file_digest
from sddkit.errors import CheckpointError
from sddkit.outputs import file_in_the_way
from sddkit.registry import get_registry
from sddkit.scoring.inference import InferenceConfig

VARIANTS = ("aasist", "aasist_l")
SAMPLE_RATE = 16000
WINDOW_SAMPLES = 64600  # the published training/evaluation window: 4.0375 s at 16 kHz
DEFAULT_THRESHOLD = 0.0  # score = bona fide log-odds; 0 = even odds
WRAPPERS = ("state_dict", "model_state_dict", "model")  # checkpoint keys that hold the state dict
KEY_PREFIXES = ("module.", "_orig_mod.")  # added to every key by nn.DataParallel / DDP and torch.compile

# (reference prefix, sddkit prefix), most specific first. A key is renamed by the first entry
# whose prefix it starts with (an entry without a trailing dot must match the whole key).
# Everything below a prefix keeps its name (GAT/HS-GAL/pool/residual internals match the reference).
REFERENCE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("first_bn.", "input_bn."),
    *(
        pair
        for i in range(6)
        for pair in (
            (f"encoder.{i}.0.conv_downsample.", f"encoder.{i}.downsample."),
            (f"encoder.{i}.0.", f"encoder.{i}."),
        )
    ),
    ("pos_S", "graph.spectral_pos"),
    ("GAT_layer_S.", "graph.gat_spectral."),
    ("GAT_layer_T.", "graph.gat_temporal."),
    ("pool_S.", "graph.pool_spectral."),
    ("pool_T.", "graph.pool_temporal."),
    ("master1", "graph.branches.0.master"),
    ("HtrgGAT_layer_ST11.", "graph.branches.0.hsgal1."),
    ("pool_hS1.", "graph.branches.0.pool_spectral."),
    ("pool_hT1.", "graph.branches.0.pool_temporal."),
    ("HtrgGAT_layer_ST12.", "graph.branches.0.hsgal2."),
    ("master2", "graph.branches.1.master"),
    ("HtrgGAT_layer_ST21.", "graph.branches.1.hsgal1."),
    ("pool_hS2.", "graph.branches.1.pool_spectral."),
    ("pool_hT2.", "graph.branches.1.pool_temporal."),
    ("HtrgGAT_layer_ST22.", "graph.branches.1.hsgal2."),
    ("out_layer.", "classifier."),
)


def _rename(key: str, table: list[tuple[str, str]]) -> str | None:
    for src, dst in table:
        if src.endswith("."):
            if key.startswith(src):
                return dst + key[len(src) :]
        elif key == src:
            return dst
    return None


def _rename_all(state: Mapping[str, Tensor], table: list[tuple[str, str]], where: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = _rename(key, table)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointError(f"{where}: not an AASIST state dict: unexpected key(s) {unknown[:5]}")
    return out


def reference_to_sddkit(state: Mapping[str, Tensor], where: str = "state dict") -> dict[str, Tensor]:
    """Rename published (clovaai/aasist) keys to :class:`~sddkit.backends.aasist.AASIST` keys."""
    return _rename_all(state, list(REFERENCE_PREFIXES), where)


def sddkit_to_reference(state: Mapping[str, Tensor], where: str = "state dict") -> dict[str, Tensor]:
    """Inverse of :func:`reference_to_sddkit` (used to write published-layout files, e.g. in tests)."""
    inverse = sorted(((dst, src) for src, dst in REFERENCE_PREFIXES), key=lambda p: -len(p[0]))
    return _rename_all(state, inverse, where)


def load_reference_state(path: str | Path) -> dict[str, Tensor]:
    """Read a published AASIST ``.pth`` as a ``{name: tensor}`` dict (tensors only, no code).

    Also accepts the usual wrappers ``{"state_dict": ...}`` / ``{"model_state_dict": ...}`` (the PyTorch
    tutorials' training checkpoint, next to ``optimizer_state_dict``) / ``{"model": ...}``, and the
    prefixes that ``nn.DataParallel`` (``module.``) and ``torch.compile`` (``_orig_mod.``) add to every key.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; give the weights file (.pth) itself")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        _check_checkpoint_format(path)
        raise CheckpointError(
            f"{path}: not a PyTorch file of plain tensors (not a torch file, or it holds objects that "
            "would need arbitrary unpickling, which is refused)"
        ) from None
    except Exception as exc:  # torch.load raises many types on corrupt or truncated files
        line = (str(exc).strip().splitlines() or [""])[0]
        detail = f"{type(exc).__name__}: {line.split('. ', 1)[0][:160]}" if line else type(exc).__name__
        if _cut_short(path, exc):  # a PyTorch file that ends early is not "not a PyTorch file": fetch it again
            raise CheckpointError(
                f"{path}: a truncated or damaged PyTorch file ({path.stat().st_size:,} bytes: an interrupted "
                f"download or copy? fetch it again; torch.load with weights_only=True failed: {detail})"
            ) from None
        _check_checkpoint_format(path)
        raise CheckpointError(
            f"{path}: not a PyTorch file of plain tensors (torch.load with weights_only=True failed: {detail})"
        ) from None
    if isinstance(obj, Mapping):
        for wrapper in WRAPPERS:
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: expected a non-empty state dict, got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: expected a state dict of named tensors; bad entries {bad[:5]}")
    state = dict(obj)
    # DataParallel around a compiled model gives "module._orig_mod.", the reverse "_orig_mod.module."
    while (prefix := next((p for p in KEY_PREFIXES if all(k.startswith(p) for k in state)), None)) is not None:
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _check_checkpoint_format(path: Path) -> None:
    """Refuse ``path``, which torch.load could not read, when it begins as neither a zip archive (torch's format) nor
    a pickle (the legacy one): torch's own error for a text file or random bytes names its internals ("IndexError:
    pop from empty list"), not the file's kind."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:  # unreadable (no permission): torch.load's own error says so
        return
    if head and not head.startswith((b"PK", b"\x80")):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")


# how torch.save's legacy (non-zip) format begins: a pickled magic number
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"


def _cut_short(path: Path, exc: Exception) -> bool:
    """Whether ``path``, which torch.load refused with ``exc``, is a PyTorch file that ends early or is damaged: empty,
    a legacy pickle (it starts with torch's magic number), or a zip archive (torch's format) without its end, the
    central directory."""
    if isinstance(exc, EOFError) or "unexpected EOF" in str(exc):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
        return head == _LEGACY_MAGIC or (head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path))
    except OSError:  # unreadable (no permission): torch.load's own error says so
        return False


def detector_config(variant: str, architecture: Mapping[str, Any] | None = None) -> DetectorConfig:
    """``raw`` front-end + ``variant`` back-end in reference-compatible mode; ``architecture``: back-end values of a
    training configuration (:func:`read_reference_config`) in place of the published ones."""
    if variant not in VARIANTS:
        raise CheckpointError(f"unknown AASIST variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return DetectorConfig(
        frontend=get_registry("frontend").parse({"name": "raw", "normalize": False}),
        backend=get_registry("backend").parse({"name": variant, **(architecture or {}), "reference_compat": True}),
    )


def _published_variant(variant: str, architecture: Mapping[str, Any]) -> tuple[str, Mapping[str, Any] | None]:
    """(the published variant whose back-end values ``architecture`` gives, None) where there is one, else the
    arguments unchanged."""
    from sddkit.config import to_dict

    given = {k: v for k, v in to_dict(detector_config(variant, architecture).backend).items() if k != "name"}
    for named in VARIANTS:
        published = {k: v for k, v in to_dict(detector_config(named).backend).items() if k != "name"}
        if published == given:
            return named, None
    return variant, architecture


def _expected_shapes(variant: str, architecture: Mapping[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    backend = get_registry("backend").build(detector_config(variant, architecture).backend)
    return {k: tuple(v.shape) for k, v in sddkit_to_reference(backend.state_dict()).items()}


# model_config keys of a clovaai/aasist training configuration (its config/*.conf, JSON): those the back-end takes,
# the input length, and those that change nothing the weights are scored with (training-time options)
_ARCHITECTURE_KEYS = ("first_conv", "filts", "gat_dims", "pool_ratios", "temperatures")
_INERT_KEYS = ("freq_aug", "parallel", "model_path")


@dataclass(frozen=True)
class ReferenceConfig:
    """What a clovaai/aasist training configuration says of the model: the back-end's values, and ``nb_samp``, the
    input length it was trained on (the scoring window)."""

    architecture: dict[str, Any]
    window_samples: int


def read_reference_config(path: str | Path) -> ReferenceConfig:
    """The ``model_config`` of a clovaai/aasist ``.conf`` file (JSON; ``AASIST.conf``, ``AASIST-L.conf`` or one's
    own run's): ``pool_ratios``, ``temperatures`` and ``first_conv`` leave no trace in the weights' shapes, so
    weights trained under other values imported with the published ones scored otherwise than their run, without a
    word."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the AASIST configuration ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a clovaai/aasist configuration (a JSON .conf file): {exc}") from None
    config = data.get("model_config", data) if isinstance(data, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object with a model_config object (clovaai/aasist .conf)")
    architecture = config.get("architecture", "AASIST")
    if architecture != "AASIST":
        raise CheckpointError(f"{path}: model_config.architecture is {architecture!r}; only AASIST imports")
    unknown = sorted(set(config) - {"architecture", "nb_samp", *_ARCHITECTURE_KEYS, *_INERT_KEYS})
    if unknown:
        raise CheckpointError(
            f"{path}: model_config key(s) {', '.join(map(repr, unknown))} are not AASIST's (it takes architecture, "
            f"nb_samp, {', '.join(_ARCHITECTURE_KEYS)})"
        )
    window = config.get("nb_samp", WINDOW_SAMPLES)
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise CheckpointError(f"{path}: model_config.nb_samp must be a positive number of samples, got {window!r}")
    return ReferenceConfig({k: config[k] for k in _ARCHITECTURE_KEYS if k in config}, window)


def _mismatches(state: Mapping[str, Tensor], expected: dict[str, tuple[int, ...]]) -> list[str]:
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: shape {tuple(state[k].shape)} vs {expected[k]}"
        for k in state
        if k in expected and tuple(state[k].shape) != expected[k]
    ]
    return problems


def _check_names(state: Mapping[str, Tensor], where: str) -> None:
    """CheckpointError naming the file's own keys when none of them is a reference ``Model`` name: the
    per-variant report would list only "missing first_bn.weight, ..." and never show what the file holds."""
    known = {k for variant in VARIANTS for k in _expected_shapes(variant)}
    if known & set(state):
        return
    keys = list(state)
    common = os.path.commonprefix(keys)
    prefix = common[: common.rfind(".") + 1]  # up to the last dot: whole name components only
    hint = ""
    if prefix and known & {k[len(prefix) :] for k in keys}:
        hint = f"; every key starts with {prefix!r}: the reference Model is wrapped, save or pass its own state_dict"
    raise CheckpointError(
        f"{where}: not an AASIST state dict: none of its {len(keys)} keys (e.g. {', '.join(keys[:3])}) is a "
        f"parameter of the clovaai/aasist Model (first_bn.weight, pos_S, out_layer.weight, ...){hint}"
    )


# the names are the reference Model's but the shapes no published variant's: weights of a run under other sizes
# (filts, gat_dims), which the error listed without saying how they do import
OWN_SIZES_HINT = (
    "; weights of a clovaai/aasist run under other sizes import with the .conf it was trained under "
    "(--config CONF, without --variant)"
)


def detect_variant(state: Mapping[str, Tensor], where: str = "state dict") -> str:
    """The variant whose published layout (key names and tensor shapes) ``state`` matches exactly."""
    _check_names(state, where)
    report = {}
    for variant in VARIANTS:
        problems = _mismatches(state, _expected_shapes(variant))
        if not problems:
            return variant
        report[variant] = problems
    details = "; ".join(f"{v}: {len(p)} mismatch(es), e.g. {', '.join(p[:3])}" for v, p in report.items())
    raise CheckpointError(f"{where}: matches no published AASIST variant ({details}){OWN_SIZES_HINT}")


@dataclass
class ImportResult:
    directory: Path
    variant: str
    num_parameters: int
    detector: Detector


def _check_out_dir(out: Path) -> None:
    """Refuse an ``out`` that is, or lies below, an existing file before the weights are read."""
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise CheckpointError(f"{out}: cannot write a model directory there: {blocking} is not a directory")


def _check_window(window: int, shortest: int, config: str | Path | None) -> None:
    """Refuse a scoring window (the configuration's ``nb_samp``) shorter than the model's shortest input: the
    directory was written, and every ``sdd score`` of it then failed with a traceback at its first forward."""
    if window < shortest:
        raise CheckpointError(
            f"{config}: model_config.nb_samp is {window} samples, but this AASIST (first_conv and seven 3x max-pools) "
            f"takes at least {shortest}: give the input length the weights were trained on (published: "
            f"{WINDOW_SAMPLES})"
        )


def import_aasist(
    weights: str | Path,
    out: str | Path,
    *,
    variant: str = "auto",
    overwrite: bool = False,
    config: str | Path | None = None,
) -> ImportResult:
    """Convert a published AASIST ``.pth`` into an sddkit model directory at ``out``.

    ``config``: the clovaai/aasist ``.conf`` the weights were trained under (:func:`read_reference_config`): its
    architecture and input length (``nb_samp``, the scoring window) instead of the published AASIST's; the
    published AASIST-L's are ``AASIST-L.conf``'s. Without it the variant's published values are assumed."""
    weights, out = Path(weights), Path(out)
    _check_out_dir(out)
    if (out / CONFIG_NAME).exists() and not overwrite:
        raise CheckpointError(f"{out}: already holds a model (overwrite it with --force / overwrite=True)")
    reference = read_reference_config(config) if config is not None else None
    if reference is not None and variant != "auto":
        raise CheckpointError(
            f"--variant {variant} and --config {config} both give the architecture: give one (the configuration's "
            "values are those the weights were trained under)"
        )
    state = load_reference_state(weights)
    window = WINDOW_SAMPLES if reference is None else reference.window_samples
    architecture = None if reference is None else reference.architecture
    if reference is not None:
        variant = "aasist"  # AASIST-L is AASIST under other values, which the configuration gives
        _check_names(state, str(weights))
        problems = _mismatches(state, _expected_shapes(variant, architecture))
        if problems:
            raise CheckpointError(f"{weights}: does not match the model of {config}: {'; '.join(problems[:5])}")
    elif variant == "auto":
        variant = detect_variant(state, str(weights))
    else:
        if variant in VARIANTS:
            _check_names(state, str(weights))
        problems = _mismatches(state, _expected_shapes(variant)) if variant in VARIANTS else []
        if problems:
            other = next((v for v in VARIANTS if v != variant and not _mismatches(state, _expected_shapes(v))), None)
            hint = f"; they are {other}'s weights: --variant {other} (or auto)" if other else OWN_SIZES_HINT
            raise CheckpointError(f"{weights}: does not match {variant}: {'; '.join(problems[:5])}{hint}")
    if architecture is not None:
        # a configuration of a published variant's values (AASIST-L.conf) is that variant, named as --variant or
        # the weights' shapes name it: it was recorded as aasist at AASIST-L's size
        variant, architecture = _published_variant(variant, architecture)
    cfg = detector_config(variant, architecture)
    detector = build_detector(cfg)
    _check_window(window, detector.backend.min_samples, config)
    full = {f"backend.{k}": v for k, v in reference_to_sddkit(state, str(weights)).items()}
    # the raw front-end has no published weights: keep whatever state it builds with (usually none)
    full.update({f"frontend.{k}": v for k, v in detector.frontend.state_dict().items()})
    load_state_checked(detector, full, partial=False, where=str(weights))
    detector.eval()
    inference = InferenceConfig(sample_rate=SAMPLE_RATE, window_samples=window, threshold=DEFAULT_THRESHOLD).to_dict()
    metadata: dict[str, Any] = {
        # the layout, not the file's origin: any state dict of the reference Model imports (the ASVspoof 5
        # baseline, one's own clovaai/aasist training run); imported_from and sha256 identify the file
        "source": "AASIST state dict in the clovaai/aasist layout (architecture: Jung et al., ICASSP 2022)",
        "imported_from": weights.name,
        "sha256": file_digest(weights),  # read above already: never None here
        "variant": variant,
        "window_seconds": window / SAMPLE_RATE,
        **({} if config is None else {"config": Path(config).name, "config_sha256": file_digest(config)}),
        "label_convention": "class 0 = spoof, class 1 = bona fide (as published)",
    }
    save_model_dir(out, detector, model_config=to_dict(cfg), inference=inference, metadata=metadata)
    num_parameters = sum(p.numel() for p in detector.parameters())
    return ImportResult(directory=out, variant=variant, num_parameters=num_parameters, detector=detector)
