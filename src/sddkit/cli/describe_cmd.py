"""``sdd describe CONFIG [key=value ...]``: build a model from a config and print its parameter counts as JSON.

CONFIG is a YAML file holding a detector (``frontend``/``backend``), a mixture (``experts``/``gate``), or a
recipe whose ``model`` key holds one of those; or a model directory. By default the model is built on
PyTorch's ``meta`` device: shapes and counts without allocating memory (an XLS-R 2B costs nothing). On the
meta device no weights are read: an encoder's ``pretrained`` directory is left aside and the preset's
architecture, which a pretrained directory must match, gives the counts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads when the command runs, not when `sdd` builds its parsers
    from torch import nn


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("describe", help="print a model's parameter counts (JSON) from a config or recipe")
    p.add_argument("config", help="YAML config/recipe, or a model directory")
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
    raise ConfigError("config holds no model: expected 'frontend'/'backend', 'experts'/'gate', or a 'model' key")


def without_pretrained(obj: Any) -> Any:
    """``obj`` with every ``pretrained`` entry set to None (no weights are read on the meta device)."""
    if isinstance(obj, dict):
        return {k: (None if k == "pretrained" else without_pretrained(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [without_pretrained(v) for v in obj]
    return obj


def describe(data: dict[str, Any], device: str = "meta") -> dict[str, Any]:
    from sddkit.detectors.model_dir import ARCHITECTURES

    architecture, model_cfg = model_config_from(data)
    if architecture == "mixture" and model_cfg.get("expert_dirs"):
        from sddkit.config import from_dict
        from sddkit.detectors.mixture import MixtureConfig, resolved_mixture_config

        # the experts' stored configs give the shapes; loading their weights would read them all from disk
        model_cfg = resolved_mixture_config(from_dict(MixtureConfig, model_cfg, "model"))
    if device == "meta":
        # transformers refuses to load weights under the meta device; the counts do not depend on them
        model_cfg = without_pretrained(model_cfg)
    import torch

    with torch.device(device):
        model = ARCHITECTURES[architecture](model_cfg)
    out: dict[str, Any] = {"architecture": architecture, **count_params(model)}
    out["modules"] = {name: count_params(child) for name, child in model.named_children()}
    return out


def run(args: argparse.Namespace) -> int:
    from sddkit.config import apply_overrides, load_yaml
    from sddkit.detectors.model_dir import read_model_config

    path = Path(args.config)
    if path.is_dir():
        # a model directory holds the model config itself: "model.backend.channels=8" means "backend.channels=8"
        overrides = [o.removeprefix("model.") for o in args.overrides]
        data = apply_overrides(read_model_config(path)["model"], overrides)
    else:
        data = apply_overrides(load_yaml(path), args.overrides)
        if any(k in data for k in ("model", "mixture", "init_from")):
            from sddkit.config import from_dict
            from sddkit.training.recipe import TrainRecipe

            from_dict(TrainRecipe, data)  # a recipe is checked whole, as sdd train checks it: a typo is an error
    print(json.dumps(describe(data, args.device), indent=2))
    return 0
