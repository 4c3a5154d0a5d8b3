"""Review figures18: the figures the two-LCNN average (bundled 2026-12-05, 11:43 UTC) brought into its model card,
checked against the bundled files and against the card's own figures.

Pinned here: the card's account of how the bundled mixture was built gives the commit its `config.json` records and,
as that file records, that the tree was not clean (it said "code at 50cfe69" only, while it says so for the `logmel`
expert); the narrowband limit compares the bundled model's rejection rate with its experts' as the figures it quotes
order them (it said "more than either expert", 58.3 % against 42.5 and 61.7 %); the parameter count in the experts'
recipe is that of each bundled expert (it said ~0.24 M; each has 192,514).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from docs_support import flat

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "src" / "sddkit" / "assets" / "default_model"
CARD = (MODEL_DIR / "MODEL_CARD.md").read_text()


def test_the_cards_build_of_the_bundled_mixture_gives_the_commit_and_dirty_flag_of_its_config():
    meta = json.loads((MODEL_DIR / "config.json").read_text())["metadata"]
    start = CARD.index("The bundled weights are those of the")
    build = flat(CARD[start : CARD.index("The experts:", start)])
    assert f"code at {meta['git_commit'][:7]}" in build
    # a reader rebuilding from that commit alone must know it did not hold everything the build ran
    assert ("`git_dirty: true`" in build) == meta["git_dirty"]


def test_the_narrowband_limit_orders_the_bundled_model_and_its_experts_as_its_figures_do():
    results = re.search(
        r"stress_narrowband \(clean\): \d+ of \d+ bona fide files wrongly rejected \(([\d.]+) %\)", CARD
    )
    assert results is not None
    start = CARD.index("- **Narrowband speech:**")
    bullet = flat(CARD[start : CARD.index("\n- **", start + 1)])
    own = re.match(r"- \*\*Narrowband speech:\*\* ([\d.]+) %", bullet)
    assert own is not None and own.group(1) == results.group(1)
    experts = re.search(r"\(`logmel` ([\d.]+) %, `lfb` ([\d.]+) %\)", bullet)
    assert experts is not None
    rate, low, high = float(own.group(1)), *sorted(float(x) for x in experts.groups())
    if rate > high:
        assert "more than either expert" in bullet
    elif rate < low:
        assert "less than either expert" in bullet
    else:
        assert "between its two experts" in bullet and "either expert" not in bullet


def test_the_recipes_parameter_count_is_each_bundled_experts():
    from safetensors.numpy import load_file

    recipe = (REPO / "recipes" / "sddbench" / "default_model.yaml").read_text()
    stated = re.search(r"backend: \{name: lcnn.*# ([\d,]+) parameters", recipe)
    assert stated is not None
    counts: dict[str, int] = {}
    for name, tensor in load_file(MODEL_DIR / "model.safetensors").items():
        if name.split(".")[-1] in {"running_mean", "running_var", "num_batches_tracked"}:
            continue  # batch-norm buffers, not parameters
        if not name.startswith("experts."):
            continue  # the gate's own parameters (since 2026-12-05, 14:20 UTC an enhanced_mlp gate)
        expert = name.split(".")[1]
        counts[expert] = counts.get(expert, 0) + tensor.size
    # both experts come from this recipe (the lfb one with its front-end override), so both have its count
    assert sorted(counts.values()) == [int(stated.group(1).replace(",", ""))] * 2
