"""JSON documents on disk: the versioned ``config.json`` of a model directory and a checkpoint's state JSON,
and where ``sdd score`` records the run behind a score file.

Both carry ``"format"`` (what the document is) and ``"format_version"`` (an int); a reader accepts
its own format at its version or older and refuses anything else with a :class:`CheckpointError`
naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

from sddkit.errors import CheckpointError

__all__ = ["file_digest", "json_safe", "read_versioned_json", "run_record_path"]


def read_versioned_json(path: str | Path, *, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Parse ``path`` and check its ``format`` is ``fmt`` and its ``format_version`` at most ``version``.

    what: how errors name the document, e.g. ``"model config"`` or ``"checkpoint"``.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # JSON is UTF-8: a Latin-1 edit or binary junk is a corrupt document
        raise CheckpointError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:  # a file of another user (0600, as model directories were written before), a gone one
        raise CheckpointError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if not isinstance(document, dict) or document.get("format") != fmt:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(f"{path}: not an sddkit {what} (format={found!r}, expected {fmt!r})")
    found_version = document.get("format_version", 0)
    # int() would read "1", 1.5 and true as versions: a hand-edited document must say what it means
    if isinstance(found_version, bool) or not isinstance(found_version, int):
        raise CheckpointError(f"{path}: format_version {found_version!r} is not an integer")
    if found_version > version:
        raise CheckpointError(
            f"{path}: {what} format version {found_version} is newer than this sddkit reads ({version}); upgrade sddkit"
        )
    return document


def run_record_path(scores: str | Path) -> Path:
    """Where ``sdd score`` records the run that wrote ``scores`` (model, settings, a mixture's expert names):
    ``scores.csv`` -> ``scores.csv.run.json``. Written by ``sddkit.scoring.batch``, read by
    ``sddkit.evaluation.scores``; it lives here so that neither side imports the other (scoring must not load
    scipy, evaluation must not load torch)."""
    return Path(f"{scores}.run.json")


def run_record(scores: str | Path) -> dict[str, Any] | None:
    """The run record beside an ``sdd score`` output; None when there is no readable one (a score file from
    elsewhere)."""
    try:
        record = json.loads(run_record_path(scores).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_base_dir(scores: str | Path) -> str | None:
    """The folder an ``sdd score`` output's relative paths are relative to (``cwd`` in its run record); None when
    there is no readable record or it holds no absolute folder."""
    record = run_record(scores)
    cwd = None if record is None else record.get("cwd")
    return cwd if isinstance(cwd, str) and os.path.isabs(cwd) else None


def file_digest(path: str | Path) -> str | None:
    """SHA-256 (hex) of a file's bytes: which version of a protocol or score file a run read. None for anything
    but a readable regular file (a folder a protocol reader lists, a missing path)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:  # a folder (IsADirectoryError), a missing or unreadable file
        return None
    return digest.hexdigest()


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON types, for a strict JSON document (report.json, robustness.json, the service's
    ``GET /v1/model``): mappings with string keys, lists for tuples, Python ints and floats for numpy's, NaN and
    infinities as null (JSON has no such numbers), paths as strings."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, numbers.Integral):  # numpy's integers too
        return int(obj)
    if isinstance(obj, numbers.Real):  # numpy's floats too
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj
