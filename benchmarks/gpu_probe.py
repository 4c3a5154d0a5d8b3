"""GPU probe (twenty-ninth session, docs/benchmarks.md): one training step of AASIST-L and of the logspec LCNN on the
GPU (batch 64 of 1 s crops), and one core's time to make a training item (crop + the default recipe's augmentation),
to size the trainings of ``benchmarks/gpu_aasist_mile.sh`` to a machine.

Run from the repository root on a CUDA machine, with ../shared/data/sddbench present: python benchmarks/gpu_probe.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

RECIPE = "recipes/sddbench/default_model.yaml"
MODELS = {
    "aasistl": ["model.frontend={name: raw, normalize: true}", "model.backend={name: aasist_l}"],
    "logspec": ["model.frontend={name: logspec, normalize: true, level_db: -27}"],
}


def step_ms(overrides: list[str], steps: int = 20, warmup: int = 5) -> float:
    """Mean time of one AdamW training step on random (64, 16000) input, after ``warmup`` steps."""
    from sddkit.detectors.detector import build_detector
    from sddkit.training.recipe import load_recipe

    model = build_detector(load_recipe(RECIPE, overrides).model).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(64, 16000, device="cuda") * 0.1
    y = torch.randint(0, 2, (64,), device="cuda")
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x).logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1000


def item_ms(n: int = 200) -> float:
    """One core's mean time to make a training item (1 s crop + augmentation) from the preloaded val files."""
    from sddkit.training.data import build_dataset, read_val_table
    from sddkit.training.recipe import load_recipe

    torch.set_num_threads(1)
    recipe = load_recipe(RECIPE)
    dataset = build_dataset(read_val_table(recipe.data), recipe.data, train=True, seed=1)
    items = np.random.default_rng(0).integers(0, len(dataset), n)
    start = time.perf_counter()
    for i in items:
        dataset[int(i)]
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model (default 20)")
    parser.add_argument("--items", type=int, default=200, help="timed training items (default 200)")
    args = parser.parse_args()
    if args.steps < 1 or args.items < 1:  # a ZeroDivisionError after the model was built
        parser.error(f"--steps and --items must be at least 1, got {args.steps} and {args.items}")
    if not torch.cuda.is_available():  # torch's RuntimeError from get_device_name: this probe times a GPU only
        parser.error(f"no CUDA device visible to torch {torch.__version__}: this probe runs on a GPU machine")
    print("torch", torch.__version__, torch.cuda.get_device_name(0), flush=True)
    for name, overrides in MODELS.items():
        print(f"{name}: train step {step_ms(overrides, args.steps):.1f} ms", flush=True)
    print(f"loader item (1 core, val files, training augmentation): {item_ms(args.items):.1f} ms", flush=True)


if __name__ == "__main__":
    main()
