"""``sdd train RECIPE.yaml [key=value ...] [--resume]``: train a detector from a recipe.

Multi-process (DDP): ``torchrun --standalone --nproc_per_node=N -m sddkit.cli.main train RECIPE.yaml``.
"""

from __future__ import annotations

import argparse
import json
import logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a detector or a mixture from a YAML recipe (ERM/MLDG/SAM, LoRA/MoLEx; torchrun for DDP)",
        description="Train a detector or a mixture. Overrides are dotted key=value pairs, e.g. trainer.max_steps=100 "
        "trainer.out_dir=runs/short; values are parsed as YAML. A dotted key changes one field of a component the "
        "recipe names (strategy.beta=0.5 in an MLDG recipe); 'strategy={name: mldg, beta: 0.5}' replaces the whole "
        "entry (give it before a dotted override inside it). A key given twice with two values is refused.",
    )
    p.add_argument("recipe", help="recipe YAML file (see recipes/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/checkpoints/latest if present")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe as JSON and exit")
    p.set_defaults(func=run)


def plural(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``: the summary line of a short run (trainer.max_steps=2) read "1 epochs"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def epochs_trained(epochs: int, partial: bool) -> str:
    """The epochs a run went through: ``max_steps`` ending within the first epoch read "0 epochs"."""
    if not partial:
        return plural(epochs, "epoch")
    return "part of the first epoch" if epochs == 0 else f"{plural(epochs, 'epoch')} and part of the next"


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import check_paths_given
    from sddkit.config import to_dict
    from sddkit.training.distributed import dist_info_from_env
    from sddkit.training.recipe import load_recipe
    from sddkit.training.trainer import Trainer

    check_paths_given(args, "recipe")
    recipe = load_recipe(args.recipe, args.overrides)
    if args.print_config:
        print(json.dumps(to_dict(recipe), indent=2))
        return 0
    main_process = dist_info_from_env().is_main
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(levelname)s %(message)s")
    trainer = Trainer(recipe, resume=args.resume)
    result = trainer.fit()
    if main_process and (trainer.assembled or trainer.em_fitted):  # no gradient steps: no step, no best step
        val = "n/a (no data.val)" if result.best_eer is None else f"{100 * result.best_eer:.2f}%"
        if trainer.assembled:
            print("nothing to train (a parameter-free gate over frozen experts): the mixture is exported as built")
        else:
            print(f"fitted by EM on frames of {epochs_trained(result.epoch, False)} of data.train (no gradient steps)")
        print(f"val EER: {val}")
        print(f"model directories: {result.best_dir}  {result.final_dir}")
    elif main_process:
        best = "n/a" if result.best_eer is None else f"{100 * result.best_eer:.2f}% (step {result.best_step})"
        early = " - stopped early" if result.stopped_early else ""
        steps, epochs = plural(result.step, "step"), epochs_trained(result.epoch, result.batch_in_epoch > 0)
        print(f"trained {steps} ({epochs}){early}")
        print(f"best val EER: {best}")
        print(f"model directories: {result.best_dir}  {result.final_dir}")
    return 0
