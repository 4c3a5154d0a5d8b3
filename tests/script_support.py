"""Import one of the repository's scripts (``scripts/``, ``benchmarks/``) as a module, for tests of its ``main``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """``relative_path`` from the repository root, e.g. ``"scripts/finalize_default_model.py"``."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
