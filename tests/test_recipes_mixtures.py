"""The shipped MELE / MILE stage-2 recipes build, with their expert_dirs replaced by tiny saved experts.

Each ``expert_dirs`` entry names ``<out_dir>/best`` of a stage-1 recipe shipped next to it; the test finds
that recipe, saves a small-width detector of the same front-end and back-end, and builds the gate recipe on
those directories (the ``sdd describe`` counts and ``build_mixture``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch
import yaml

from sddkit.cli.describe_cmd import describe
from sddkit.config import from_dict, to_dict
from sddkit.detectors.detector import DetectorConfig, build_detector
from sddkit.detectors.mixture import DetectorMixture, build_mixture
from sddkit.detectors.model_dir import save_model_dir
from sddkit.training.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# back-end sizes that keep the stand-in experts tiny; the architecture (front-end, back-end names) is kept
TINY_BACKEND = {"lcnn": {"channels": 4, "lstm_layers": 1}, "resnet18": {"width": 4}}


def _all_recipes() -> dict[Path, dict]:
    return {p: yaml.safe_load(p.read_text()) for p in sorted(RECIPES.rglob("*.yaml"))}


def _gate_recipes() -> list[Path]:
    return [p for p, d in _all_recipes().items() if (d.get("mixture") or {}).get("expert_dirs")]


def _stage1_models(gate_recipe: Path | None = None) -> dict[str, dict]:
    """``<out_dir>/best`` and ``<out_dir>/final`` -> model config, for every shipped recipe that trains a single
    detector, and for every ``sdd train`` command in ``gate_recipe``'s header comments (a shipped recipe with
    overrides, as the bundled default model's two experts are trained)."""
    out = {}
    for data in _all_recipes().values():
        if data.get("model") and "out_dir" in (data.get("trainer") or {}):
            for kind in ("best", "final"):
                out[data["trainer"]["out_dir"].rstrip("/") + "/" + kind] = data["model"]
    header = [] if gate_recipe is None else gate_recipe.read_text().split("\n")
    for line in header:
        if not line.startswith("#"):
            break
        if not line.lstrip("# ").startswith("sdd train "):
            continue
        words = shlex.split(line.lstrip("# "))
        if words[2] == str(gate_recipe.relative_to(RECIPES.parent)):
            continue
        recipe = load_recipe(RECIPES.parent / words[2], words[3:])
        model = to_dict(recipe.model)
        for kind in ("best", "final"):
            out[recipe.trainer.out_dir.rstrip("/") + "/" + kind] = model
    return out


def _tiny(model: dict) -> dict:
    backend = dict(model["backend"])
    backend.update(TINY_BACKEND[backend["name"]])
    return {**model, "backend": backend}


def test_there_are_mele_and_mile_gate_recipes():
    names = {str(p.relative_to(RECIPES)) for p in _gate_recipes()}
    for expected in (
        "mele/gate_classic.yaml",
        "mele/gate_enhanced_mlp.yaml",
        "mele/average_ensemble.yaml",
        "mile/gate_enhanced_mlp.yaml",
        "mile/gate_attention.yaml",
        "mile/average_ensemble.yaml",
        "sddbench/mele_gate_enhanced_mlp.yaml",
        "sddbench/mile_gate_attention.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("recipe", _gate_recipes(), ids=lambda p: str(p.relative_to(RECIPES)))
def test_gate_recipe_builds_on_saved_experts_of_the_same_architectures(recipe, tmp_path):
    torch.manual_seed(0)
    data = yaml.safe_load(recipe.read_text())
    stage1 = _stage1_models(recipe)
    wanted = data["mixture"]["expert_dirs"]
    missing = [d for d in wanted if d not in stage1]
    assert not missing, f"{recipe}: no shipped recipe trains {missing}"
    dirs = []
    for i, d in enumerate(wanted):
        cfg = _tiny(stage1[d])
        det = build_detector(from_dict(DetectorConfig, cfg))
        dirs.append(str(save_model_dir(tmp_path / f"expert{i}", det, model_config=cfg)))
    override = "mixture.expert_dirs=[" + ",".join(dirs) + "]"

    recipe_obj = load_recipe(recipe, [override])  # the whole recipe parses strictly
    # `sdd describe` reads a recipe's `model` key only, so describe the recipe's mixture section directly
    described = describe({"model": {**data["mixture"], "expert_dirs": dirs}}, device="cpu")
    assert described["architecture"] == "mixture"
    gate = data["mixture"]["gate"]
    gate_name = gate if isinstance(gate, str) else gate["name"]
    if gate_name == "average":  # frozen experts + parameter-free gate: nothing to train
        assert described["trainable_params"] == 0 and described["total_params"] > 0
    else:  # only the gate trains
        assert 0 < described["trainable_params"] < described["total_params"]

    mixture = build_mixture(recipe_obj.mixture)
    assert isinstance(mixture, DetectorMixture) and len(mixture.experts) == len(wanted)
    for expert, d in zip(mixture.experts, wanted, strict=True):
        assert type(expert.backend).__name__.lower().startswith(stage1[d]["backend"]["name"][:4])
    mixture.eval()
    with torch.no_grad():
        out = mixture(torch.randn(2, 16000))
    assert out.stats["gate_weights"].shape == (2, len(wanted))
    torch.testing.assert_close(out.stats["gate_weights"].sum(-1), torch.ones(2))
