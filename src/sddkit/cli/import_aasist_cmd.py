"""``sdd import-aasist``: turn published AASIST / AASIST-L weights into an sddkit model directory."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-aasist",
        help="import published AASIST/AASIST-L weights (clovaai/aasist .pth) as a model directory",
        description=(
            "Read a published AASIST state dict (tensors only, never pickled code), load it strictly "
            "into raw front-end + AASIST back-end in reference-compatible mode, and write a model "
            "directory (config.json + model.safetensors) scoring 64,600-sample windows at 16 kHz (--config: its "
            "nb_samp)."
        ),
    )
    p.add_argument("weights", help="published weights, e.g. AASIST.pth or AASIST-L.pth")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument(
        "--variant",
        choices=["auto", "aasist", "aasist_l"],
        default="auto",
        help="architecture of the weights (default: detected from the tensor shapes)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="CONF",
        help="the clovaai/aasist .conf (JSON) the weights were trained under: its model_config's architecture "
        "(pool_ratios, temperatures and first_conv leave no trace in the weights) and nb_samp, the scoring window, "
        "instead of the published AASIST's (default: the published values of --variant)",
    )
    p.add_argument("--force", action="store_true", help="replace a model already in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.backends.aasist_import import import_aasist
    from sddkit.cli.options import check_paths_given

    check_paths_given(args, "weights", "out", "config")

    result = import_aasist(args.weights, args.out, variant=args.variant, overwrite=args.force, config=args.config)
    print(f"imported {result.variant} ({result.num_parameters:,} parameters) from {args.weights} -> {result.directory}")
    return 0
