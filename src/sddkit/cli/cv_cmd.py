"""``sdd cv RECIPE.yaml --by source --hold-out A --hold-out B,C --out DIR [--bonafide-folds N] [--seeds S,S] [K=V]``.

Leave-domains-out cross-validation of a recipe (``sddkit.training.crossval``): one training run per
held-out group, each scored on the held-out files of the recipe's own ``train`` and ``val`` data.
"""

from __future__ import annotations

import argparse
import json
import logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cv",
        help="leave-domains-out cross-validation of a recipe (held-out EER per fold and mean)",
        description="Train the recipe once per held-out group of --by values (excluded from its train and "
        "val data) and score the group's files with the selected checkpoint. Writes OUT/cv.json; a rerun "
        "with the same recipe, overrides, --bonafide-folds and --seeds (or their absence) resumes unfinished folds "
        "and skips finished ones (a fold trained under another recipe, or an OUT of the other --seeds layout, is "
        "refused).",
    )
    p.add_argument("recipe", help="recipe YAML file (see recipes/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides (as for sdd train)")
    p.add_argument("--by", default="source", help="protocol column whose values are held out (default: source)")
    p.add_argument(
        "--hold-out",
        action="append",
        required=True,
        metavar="V[,V...]",
        help="one fold: the values held out together (repeat for each fold, at least 2)",
    )
    p.add_argument(
        "--bonafide-folds",
        type=int,
        default=None,
        metavar="N",
        help="also hold out, in every fold, the last of N groups of files (by pair_id, else speaker, as a recipe's "
        "folds) and score its bona fide files with the fold's: leave-one-attack-out (--by attack), where a held-out "
        "attack has spoofs only (e.g. 5: a fifth of the groups)",
    )
    p.add_argument("--out", required=True, help="output folder (one sub-folder per fold, and cv.json)")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="S,S[,...]",
        help="run every fold once per seed (OUT/seed_<s>/; each below 2**32) and average; default: the recipe's seed, "
        "once",
    )
    p.add_argument("--workers", type=int, default=2, help="decoding threads while scoring held-out files (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import check_minimums, check_paths_given
    from sddkit.errors import ConfigError
    from sddkit.training.crossval import cross_validate, cross_validate_seeds, parse_folds
    from sddkit.training.recipe import load_recipe

    check_paths_given(args, "recipe", "out")
    check_minimums(args, workers=0)  # else a bad value surfaces only when the first fold is scored, after its training
    keys = [o.split("=", 1)[0].strip() for o in args.overrides or []]
    if args.seeds is not None and "seed" in keys:
        # every seed's run replaces the recipe's seed: the override would be ignored without a word
        raise ConfigError("--seeds sets each run's seed: drop the override seed=..., or run without --seeds")
    _refuse_out_dir_override(args, keys)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    recipe = load_recipe(args.recipe, args.overrides)
    folds = parse_folds(args.by, args.hold_out, args.bonafide_folds)
    if args.seeds is None:
        summary = cross_validate(recipe, folds, args.out, workers=args.workers)
    else:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
        summary = cross_validate_seeds(recipe, folds, args.out, seeds, workers=args.workers)
    keys = ("held_out", "n_bonafide", "n_spoof", "eer", "eer_per_seed", "val_eer", "best_step")
    rows = [{k: f[k] for k in keys if k in f} for f in summary["folds"]]
    print(json.dumps(rows, indent=1))
    if "seeds" in summary:
        per_seed = ", ".join(f"{100 * e:.2f}" for e in summary["mean_eer_per_seed"])
        print(
            f"mean held-out EER: {100 * summary['mean_eer']:.2f}% over {len(rows)} folds and seeds "
            f"{summary['seeds']} (per seed: {per_seed}; std over seeds {100 * summary['std_eer_over_seeds']:.2f}); "
            f"{args.out}/cv.json"
        )
    else:
        print(
            f"mean held-out EER: {100 * summary['mean_eer']:.2f}% (std {100 * summary['std_eer']:.2f}) over "
            f"{len(rows)} folds; {args.out}/cv.json"
        )
    return 0


def _refuse_out_dir_override(args: argparse.Namespace, keys: list[str]) -> None:
    """Refuse an override of ``trainer.out_dir``: each fold trains into OUT/fold_<values>/ whatever the recipe says,
    so it was ignored without a word. Told by its key (before the recipe is read), or by the value it leaves there
    (``trainer={out_dir: x, ...}``, which the key's text does not show)."""
    import copy

    from sddkit.config import apply_overrides, load_yaml
    from sddkit.errors import ConfigError

    def value(data: object, *names: str) -> object:
        for name in names:
            data = data.get(name) if isinstance(data, dict) else None
        return data

    refused = "trainer.out_dir" in keys
    if not refused and "trainer" in keys:  # the only other override that can set it
        raw = load_yaml(args.recipe)
        changed = apply_overrides(copy.deepcopy(raw), list(args.overrides))
        # a `trainer={epochs: 1, ...}` that leaves out_dir out does not set it (the recipe's is dropped, and the fold's
        # OUT/fold_<values>/ replaces it anyway): it was refused as "an override sets trainer.out_dir", with no
        # out_dir to drop
        trainer = value(changed, "trainer")
        refused = (
            isinstance(trainer, dict)
            and "out_dir" in trainer
            and trainer["out_dir"] != value(raw, "trainer", "out_dir")
        )
    if refused:
        raise ConfigError(
            f"--out {args.out} holds each fold's run (trainer.out_dir is OUT/fold_<values>/): an override sets "
            "trainer.out_dir; drop it (trainer.out_dir=... or trainer={out_dir: ...}), and give the folder as --out"
        )
