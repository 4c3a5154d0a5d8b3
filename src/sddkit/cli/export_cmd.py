"""``sdd export-onnx --model DIR --out FILE.onnx``: export a model for ONNX Runtime (``sdd score --backend onnx``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export a model directory to ONNX (fixed window, dynamic batch)",
        description=(
            "Export a model directory to one .onnx file scoring its inference window (a dynamic batch of windows), "
            "with its calibration, threshold and inference settings stored inside; the export is checked against "
            "PyTorch on a probe input (--atol). Score it with sdd score --backend onnx or sdd serve --backend onnx."
        ),
    )
    p.add_argument("--model", default=None, help="model directory (default: the bundled default model)")
    p.add_argument(
        "--out",
        required=True,
        help="output .onnx file, or an existing directory (written as DIR/model.onnx; any other name is "
        "refused); the inference settings are stored inside",
    )
    p.add_argument("--force", action="store_true", help="replace an ONNX model already at --out")
    p.add_argument(
        "--opset",
        type=int,
        default=None,
        help="ONNX opset (default 17); a model only the torch.export exporter handles gets at least 18, the "
        "oldest that exporter writes (the report's opset says which; a note says when it is above --opset)",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="largest accepted |difference| vs PyTorch (default 1e-4; a difference within 1e-5 of the PyTorch value "
        "is accepted too; logits: else no export; a statistic: else left out)",
    )
    p.set_defaults(func=run)


# sddkit.scoring.onnx_export.ONNX_NAME, named here because importing that module loads torch and onnx (seconds)
ONNX_NAME = "model.onnx"


def check_out(out: str, force: bool = False) -> None:
    """Refuse an ``--out`` that is neither an existing folder nor a ``.onnx`` file, that lies below a file, or
    that already holds an ONNX model (unless ``force``), before the model loads.

    Any other name would be written as the ONNX graph, replacing what is there (a protocol, a CSV), and
    ``new_folder/`` would become a file named ``new_folder``; below a file the exporter fails in ``mkdir``
    with a traceback. An earlier export is replaced only when asked, as ``sdd import-aasist --force`` does:
    it may be the graph a service or another user scores with. Nothing here loads torch: the refusal comes in a
    fraction of a second, not after the seconds that importing the exporter takes.
    """
    from sddkit.errors import ConfigError
    from sddkit.outputs import file_in_the_way

    path = Path(out)
    if path.is_dir():
        path = path / ONNX_NAME
    elif path.suffix.lower() != ".onnx" or out.endswith(("/", os.sep)):
        raise ConfigError(f"--out must name a .onnx file or an existing folder, got {out}")
    blocking = file_in_the_way(path.parent)
    if blocking is not None:
        raise ConfigError(f"{out}: cannot write the ONNX model there: {blocking} is not a directory")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists: --force replaces it")


def run(args: argparse.Namespace) -> int:
    from sddkit.cli.options import check_minimums, check_paths_given

    # before the model loads: a bad value is one line, exit status 2, naming the flag (not the API argument);
    # --out before the exporter is even imported (torch and onnx: seconds, for a refusal known at once)
    check_paths_given(args, "model", "out")
    check_minimums(args, atol=0)
    check_out(args.out, force=args.force)
    from sddkit.scoring.api import resolve_model_path
    from sddkit.scoring.onnx_export import check_opset, export_onnx

    if args.opset is not None:
        check_opset(args.opset, "--opset")
    report = export_onnx(resolve_model_path(args.model), args.out, opset=args.opset, check_atol=args.atol)
    for partial in report.get("removed_partials", []):
        print(f"sdd export-onnx: note: removed {partial}, left by an export that did not finish", file=sys.stderr)
    if "requested_opset" in report:
        print(
            f"sdd export-onnx: note: wrote opset {report['opset']}, not --opset {report['requested_opset']}: only the "
            "torch.export exporter handles this model, and it writes opset 18 or later",
            file=sys.stderr,
        )
    print(json.dumps(report, indent=2))
    return 0
