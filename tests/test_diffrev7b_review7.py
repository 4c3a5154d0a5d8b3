"""Diff review 7b: the later part of review 7's change (readers, training data, cv, encoders, trainer, ONNX)."""

from __future__ import annotations

import ast
from pathlib import Path

import sddkit.data.protocols.fakeavceleb as fakeavceleb


def _private_sddkit_imports(module) -> list[str]:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    return [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sddkit")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


def test_the_fakeavceleb_reader_uses_the_shared_preamble_skipper_by_its_public_name():
    # review 7 had the FakeAVCeleb meta reader import _common's private _skip_preamble; the helper the headed
    # readers share is now public (skip_preamble), as build_table, located, ... beside it
    from sddkit.data.protocols._common import skip_preamble

    assert _private_sddkit_imports(fakeavceleb) == []
    skipped, lines = skip_preamble(["\n", "# note\n", "a,b\n", "1,2\n"])
    assert skipped == 2 and list(lines) == ["a,b\n", "1,2\n"]
