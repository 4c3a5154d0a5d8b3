"""``sdd describe CONFIG [key=value ...]``: build a model from a config and print its parameter counts as JSON.

CONFIG is a YAML file holding a detector (``frontend``/``backend``), a mixture (``experts``/``gate``), or a
recipe whose ``model`` key holds one of those; or a model directory (or its ``config.json``). By default the model
is built on PyTorch's ``meta`` device: shapes and counts without allocating memory (an XLS-R 2B costs nothing). On the
meta device no weights are read: an encoder's ``pretrained`` directory gives its architecture (its
``config.json``: a folder may differ from the preset in the convolutions' biases and norms, which change the
counts), and one that is not there is left aside, the preset's architecture giving the counts. A recipe that starts
from a model directory (``init_from``) is counted from that directory's config, or from the recipe beside it that
trains it while it is not there yet, grown by ``molex.add_experts``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads when the command runs, not when `sdd` builds its parsers
    from torch import nn


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "describe", help="print a model's parameter counts (JSON) from a config, recipe or model directory"
    )
    p.add_argument("config", help="YAML config/recipe, or a model directory (or its config.json)")
    p.add_argument("overrides", nargs="*", help="key=value overrides (dotted keys), applied to the config")
    p.add_argument("--device", default="meta", choices=["meta", "cpu"], help="where to build (default: meta)")
    p.set_defaults(func=run)


def count_params(module: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"total_params": total, "trainable_params": trainable, "frozen_params": total - trainable}


def model_config_from(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(architecture, model config) from a recipe, a detector or a mixture mapping."""
    from sddkit.errors import ConfigError

    given = [k for k in ("model", "mixture", "init_from") if data.get(k) is not None]
    if len(given) > 1:  # sdd train refuses such a recipe; describing one of its models would hide that
        raise ConfigError(f"a recipe holds exactly one of 'model', 'mixture' or 'init_from'; this one has {given}")
    if isinstance(data.get("mixture"), dict):  # a mixture recipe
        data = data["mixture"]
    elif isinstance(data.get("model"), dict):
        data = data["model"]
    if "experts" in data or "expert_dirs" in data:
        return "mixture", data
    if "frontend" in data or "backend" in data:
        return "detector", data
    if isinstance(data.get("init_from"), str):  # a recipe that starts from an earlier run's model directory
        grown = (data.get("molex") or {}).get("add_experts") if isinstance(data.get("molex"), dict) else None
        extra = f", before molex.add_experts={grown} grows it" if grown else ""
        raise ConfigError(
            f"this recipe holds no model of its own: it starts from the model directory init_from="
            f"{data['init_from']}; describe that directory (sdd describe {data['init_from']}){extra}"
        )
    hint = ""
    if isinstance(data.get("model_config"), dict):  # the published AASIST repository's .conf (JSON)
        hint = (
            "; this looks like a published AASIST .conf: turn its weights into a model directory with "
            "`sdd import-aasist WEIGHTS --config CONF --out DIR`, and describe that"
        )
    raise ConfigError(f"config holds no model: expected 'frontend'/'backend', 'experts'/'gate', or a 'model' key{hint}")


def describe(
    data: dict[str, Any], device: str = "meta", notes: list[str] | None = None, recipe_path: Path | None = None
) -> dict[str, Any]:
    """The counts of the model ``data`` (a recipe, detector or mixture mapping) holds. ``notes`` (when given)
    receives what the caller should tell about them: an encoder's ``pretrained`` folder that is not there, whose
    preset's architecture was counted (on the meta device); the model an ``init_from`` recipe starts from.

    An ``init_from`` recipe (read from ``recipe_path``) is counted from the config of the model directory it starts
    from, or, while that is not there yet, from the model of the recipe beside it that trains it (its
    ``trainer.out_dir``/best or /final); ``molex.add_experts`` then grows it as ``sdd train`` does."""
    from sddkit.detectors.model_dir import ARCHITECTURES
    from sddkit.pretrained import folder_architectures, without_pretrained

    molex = data.get("molex") if isinstance(data.get("molex"), dict) else {}
    grow, init_from = 0, data.get("init_from")
    if isinstance(init_from, str) and data.get("model") is None and data.get("mixture") is None:
        grow = int(molex.get("add_experts") or 0)
        data = _starting_model(init_from, recipe_path, grow, notes if notes is not None else [])
    architecture, model_cfg = model_config_from(data)
    if architecture == "mixture" and model_cfg.get("expert_dirs"):
        from sddkit.config import from_dict
        from sddkit.detectors.mixture import MixtureConfig, resolved_mixture_config
        from sddkit.detectors.model_dir import read_model_config
        from sddkit.errors import CheckpointError, ConfigError

        # the experts' stored configs give the shapes; loading their weights would read them all from disk
        mixture = from_dict(MixtureConfig, model_cfg, "model")
        for i, folder in enumerate(mixture.expert_dirs):
            try:
                read_model_config(folder)
            except CheckpointError as exc:  # a gate recipe described before its experts were trained: name the key
                raise ConfigError(
                    f"model.expert_dirs[{i}]: {exc} (the mixture is described from its trained experts' configs)"
                ) from None
        model_cfg = resolved_mixture_config(mixture)
    if device == "meta":
        # transformers refuses to load weights under the meta device; the counts do not depend on them, but on the
        # architecture a pretrained folder holds
        model_cfg = without_pretrained(folder_architectures(model_cfg, missing=notes))
    import torch

    with torch.device(device):
        model = ARCHITECTURES[architecture](model_cfg)
        if grow:
            from sddkit.errors import ConfigError
            from sddkit.training.molex import ExpertAddition

            try:  # what this stage trains: the new experts (and the back-end with molex.train_backend)
                ExpertAddition(model, grow, train_backend=bool(molex.get("train_backend")))
            except ConfigError as exc:  # a model it cannot grow: as sdd train says it
                raise ConfigError(f"init_from={init_from}: {exc}") from None
    out: dict[str, Any] = {"architecture": architecture, **count_params(model)}
    out["modules"] = {name: count_params(child) for name, child in model.named_children()}
    return out


def _starting_model(init_from: str, recipe_path: Path | None, grow: int, notes: list[str]) -> dict[str, Any]:
    """``{"model": ...}`` (or ``{"mixture": ...}``): the model config an ``init_from`` recipe starts from, and a note
    saying where it was read; a ConfigError saying what to do when neither its directory nor the recipe that trains
    it is found. A first stage not trained yet is the usual case when a two-stage plan is sized."""
    from sddkit.config import expand_home, from_dict, missing_relative_hint
    from sddkit.detectors.model_dir import CONFIG_NAME, read_model_config
    from sddkit.errors import CheckpointError, ConfigError
    from sddkit.training.recipe import TrainRecipe

    directory = expand_home(init_from)
    grown = f", grown by molex.add_experts={grow} as sdd train grows it" if grow else ""
    if Path(directory).exists():
        try:
            stored = read_model_config(directory)
        except CheckpointError as exc:
            raise ConfigError(f"init_from: {exc}") from None
        notes.append(
            f"init_from={init_from}: counted from the model its {CONFIG_NAME} describes (no weights read){grown}"
        )
        return {"model": stored["model"]}
    first = _first_stage_recipe(directory, recipe_path)
    if first is None:
        raise ConfigError(
            f"init_from={init_from}: no such model directory{missing_relative_hint(directory)}, and no recipe beside "
            "this one trains it (its trainer.out_dir/best or /final): this recipe's model is the one that directory "
            "will hold. Describe the first stage's recipe (sdd describe FIRST_RECIPE.yaml), or train it and describe "
            "this recipe again"
        )
    path, recipe, model = first
    try:  # checked as sdd train would check it: a model it refuses was counted under this recipe's name
        from_dict(TrainRecipe, recipe)
    except ConfigError as exc:
        raise ConfigError(f"init_from={init_from}: the recipe that trains it, {path}: {exc}") from None
    notes.append(
        f"init_from={init_from} is not there yet: counted from the model of {path}, the recipe that trains it, "
        f"as written there (no weights read){grown}"
    )
    return model


def _first_stage_recipe(directory: str, recipe_path: Path | None) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """(the recipe beside ``recipe_path`` whose ``trainer.out_dir``/best or /final is ``directory``, its contents, its
    ``model`` or ``mixture`` entry), when exactly one is found; a shipped second stage names its first stage's output
    so."""
    import os

    from sddkit.config import expand_home, load_yaml
    from sddkit.errors import ConfigError

    if recipe_path is None or Path(directory).name not in ("best", "final"):
        return None
    wanted = os.path.normpath(os.path.abspath(Path(directory).parent))
    found = []
    for candidate in sorted(recipe_path.parent.glob("*.y*ml")):
        if candidate.resolve() == recipe_path.resolve() or candidate.suffix not in (".yaml", ".yml"):
            continue
        try:
            data = load_yaml(candidate)
        except ConfigError:  # not a recipe of ours: not the first stage
            continue
        trainer = data.get("trainer")
        out_dir = trainer.get("out_dir") if isinstance(trainer, dict) else None
        model = {k: data[k] for k in ("model", "mixture") if isinstance(data.get(k), dict)}
        if isinstance(out_dir, str) and len(model) == 1:
            if os.path.normpath(os.path.abspath(expand_home(out_dir))) == wanted:
                found.append((candidate, data, model))
    return found[0] if len(found) == 1 else None


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import check_paths_given
    from sddkit.config import apply_overrides, load_yaml
    from sddkit.detectors.model_dir import CONFIG_NAME, FORMAT, read_model_config
    from sddkit.errors import ConfigError

    check_paths_given(args, "config")
    path = Path(args.config)
    section = "model"  # where the model config sits in what the user wrote (its errors name it "model...")
    stored_in = None  # a model directory's config.json, which its errors name (as loading it for scoring does)
    if not path.exists():  # not "no such recipe file": a model directory may have been meant
        raise ConfigError(f"{path}: no such config file or model directory")
    other = _other_kind(path)
    if other is not None:  # read as YAML, these were "not UTF-8 text (byte 0x.. on line 3)"
        raise ConfigError(f"{path}: {other}")
    written = None if path.is_dir() else load_yaml(path)
    if written is not None:
        _refuse_run_record(written, path)
    if written is not None and written.get("format") == FORMAT:
        path = path.parent  # a model directory's config.json (JSON is YAML) stands for its directory
    if path.is_dir():
        # a model directory holds the model config itself: "model.backend.channels=8" means "backend.channels=8"
        overrides = [o.removeprefix("model.") for o in args.overrides]
        data = apply_overrides(read_model_config(path)["model"], overrides)
        stored_in = path / CONFIG_NAME
    else:
        data = apply_overrides(written or {}, args.overrides)
        if any(k in data for k in ("model", "mixture", "init_from")):
            from sddkit.config import from_dict
            from sddkit.training.recipe import TrainRecipe, check_model_keys_placed

            check_model_keys_placed(data, path)
            from_dict(TrainRecipe, data)  # a recipe is checked whole, as sdd train checks it: a typo is an error
            section = "mixture" if data.get("mixture") is not None else "model"
        else:
            section = ""  # a detector or mixture config at the top level of the file
    notes: list[str] = []
    try:
        described = describe(data, args.device, notes, recipe_path=None if stored_in is not None else path)
    except ConfigError as exc:
        if type(exc) is not ConfigError:
            raise
        if stored_in is not None:
            given = " with the overrides given" if args.overrides else ""
            raise ConfigError(f"{stored_in}{given}: {exc}") from None
        raise ConfigError(_as_written(str(exc), section, str(path))) from None
    for note in notes:  # on stderr: the JSON on stdout stays the counts alone
        where = f"{stored_in}: {note}" if stored_in is not None else _as_written(note, section, str(path))
        print(f"sdd describe: note: {where}", file=sys.stderr)
    print(json.dumps(described, indent=2))
    return 0


def _refuse_run_record(data: dict[str, Any], path: Path) -> None:
    """A ConfigError naming what ``path`` is when it is a run's ``run.json`` or a checkpoint's ``state.json``: the run's
    ``model_config`` made a run.json read as a published AASIST .conf ("turn its weights into a model directory with
    `sdd import-aasist`")."""
    from sddkit.errors import ConfigError
    from sddkit.training.recipe import run_record_kind

    record = run_record_kind(data)
    if record is None:
        return
    what, key = record
    run_dir = path.parent.parent.parent if path.name == "state.json" else path.parent
    exported = [str(run_dir / name) for name in ("best", "final") if (run_dir / name / "config.json").is_file()]
    instead = (
        f"describe a model directory it exported ({' or '.join(exported)})"
        if exported
        else f"describe the recipe it trained under (its '{key}' entry, saved as a file)"
    )
    raise ConfigError(f"{path}: {what}, not a config: {instead}")


def _other_kind(path: Path) -> str | None:
    """What ``path`` is, when it is a binary file sddkit writes or reads (an ONNX export, model weights, a PyTorch
    checkpoint) rather than a config, and what to describe instead; None for anything else."""
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return f"an exported ONNX model, not a config: describe the model directory it was exported from{_source(path)}"
    if suffix == ".safetensors":
        return f"model weights, not a config: describe the model directory that holds them, {path.parent}"
    if suffix in (".pth", ".pt", ".ckpt"):
        return (
            "a PyTorch checkpoint, not a config: turn published AASIST weights into a model directory with "
            "`sdd import-aasist`, and describe that"
        )
    return None


def _source(path: Path) -> str:
    """``", DIR"`` naming the model directory the ONNX export ``path`` records as its origin, else ``""``."""
    from sddkit.scoring.onnx_export import exported_from

    source = exported_from(path)
    return f", {source}" if source else ""


def _as_written(message: str, section: str, file: str) -> str:
    """An error about the built model config (``model.backend: ...``) naming the key as ``file`` holds it:
    ``mixture.experts[0]...`` in a mixture recipe, ``backend: ...`` in a config file without a ``model`` key; one
    saying the file holds no model names ``file``."""
    if message.startswith("config holds no model"):  # about the whole file, which it named nowhere
        return f"{file}: {message}"
    head, rest = message[:5], message[5:]
    if head != "model" or rest[:1] not in (".", "[", ":"):
        return message
    if section:
        return section + rest
    return rest[1:] if rest[:1] == "." else f"{file}{rest}"
