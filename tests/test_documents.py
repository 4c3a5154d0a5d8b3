"""Versioned JSON documents: model directories and checkpoints refuse foreign or newer documents."""

from __future__ import annotations

import json

import pytest

from sddkit.detectors import model_dir
from sddkit.documents import read_versioned_json
from sddkit.errors import CheckpointError
from sddkit.training import checkpoint


def _write(path, document) -> None:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)


def test_accepts_own_format_at_current_or_older_version(tmp_path):
    path = tmp_path / "doc.json"
    for version in (0, 1, 2):
        _write(path, {"format": "x", "format_version": version, "value": 7})
        assert read_versioned_json(path, fmt="x", version=2, what="thing")["value"] == 7


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "invalid JSON"),
        ([1, 2], r"not an sddkit thing \(format='list'"),
        ({"format": "y", "format_version": 1}, r"not an sddkit thing \(format='y', expected 'x'\)"),
        ({"format": "x", "format_version": 3}, r"thing format version 3 is newer than this sddkit reads \(2\)"),
        ({"format": "x", "format_version": "two"}, "is not an integer"),
    ],
)
def test_refuses_foreign_broken_or_newer_documents(tmp_path, document, message):
    path = tmp_path / "doc.json"
    _write(path, document)
    with pytest.raises(CheckpointError, match=message):
        read_versioned_json(path, fmt="x", version=2, what="thing")


def test_model_dir_and_checkpoint_readers_use_their_own_formats(tmp_path):
    (tmp_path / "m").mkdir()
    _write(tmp_path / "m" / model_dir.CONFIG_NAME, {"format": checkpoint.FORMAT, "format_version": 1})
    with pytest.raises(CheckpointError, match="not an sddkit model config"):
        model_dir.read_model_config(tmp_path / "m")
    (tmp_path / "c").mkdir()
    _write(tmp_path / "c" / checkpoint.STATE_JSON, {"format": checkpoint.FORMAT, "format_version": 99, "state": {}})
    (tmp_path / "c" / checkpoint.STATE_TENSORS).write_bytes(b"")
    with pytest.raises(CheckpointError, match="checkpoint format version 99 is newer"):
        checkpoint.load_checkpoint(tmp_path / "c")
