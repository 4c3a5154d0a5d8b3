"""``sdd export-onnx --model DIR --out FILE.onnx``: export a model for ONNX Runtime (``sdd score --backend onnx``)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="export a model directory to ONNX (fixed window, dynamic batch)")
    p.add_argument("--model", default=None, help="model directory (default: the bundled default model)")
    p.add_argument(
        "--out",
        required=True,
        help="output .onnx file, or an existing directory (written as DIR/model.onnx); the inference settings "
        "are stored inside",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="largest accepted |difference| vs PyTorch (logits: else no export; a statistic: else left out)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sddkit.scoring.api import resolve_model_path
    from sddkit.scoring.onnx_export import check_opset, export_onnx

    check_opset(args.opset, "--opset")  # before the model loads: a bad value is one line, exit status 2
    report = export_onnx(resolve_model_path(args.model), args.out, opset=args.opset, check_atol=args.atol)
    print(json.dumps(report, indent=2))
    return 0
