"""Review tests (session 42, helper onnx24): what `sdd export-onnx` leaves on disk, and what its export records."""

from __future__ import annotations

import os
import re

import pytest

from sddkit.errors import CheckpointError
from sddkit.scoring import onnx_export
from sddkit.scoring.api import load_detector
from sddkit.scoring.onnx_export import export_onnx, exported_from


def test_the_export_is_on_disk_before_its_rename_publishes_it(tmp_path, tiny_stats, monkeypatch):
    # before: the graph was renamed to `out` straight after onnx.save, never fsynced, nor was its folder: a power
    # loss soon after an export could leave an empty or truncated model.onnx (or the earlier one back), where a
    # model directory's weights are fsynced before their rename for that reason
    model = tiny_stats(tmp_path / "m")
    out = tmp_path / "exports" / "m.onnx"
    events: list[tuple[str, str, bool]] = []
    real_file, real_dir = onnx_export.__dict__.get("fsync_file"), onnx_export.__dict__.get("fsync_dir")

    def record_file(path):
        events.append(("file", os.fspath(path), out.exists()))
        if real_file is not None:
            real_file(path)

    def record_dir(path):
        events.append(("dir", os.fspath(path), out.exists()))
        if real_dir is not None:
            real_dir(path)

    monkeypatch.setattr(onnx_export, "fsync_file", record_file, raising=False)
    monkeypatch.setattr(onnx_export, "fsync_dir", record_dir, raising=False)
    export_onnx(model, out)
    assert out.is_file()
    synced = [(path, published) for kind, path, published in events if kind == "file"]
    # the temporary graph, complete (metadata included), before `out` exists under its name
    assert synced and all(path.endswith(".partial") and not published for path, published in synced)
    assert ("dir", os.fspath(out.parent), True) in events  # the rename itself, after it
    assert not list(out.parent.glob("*.partial*"))


def test_the_export_records_the_model_directory_it_came_from_as_an_absolute_path(tmp_path, tiny_stats, monkeypatch):
    # before: `sdd export-onnx --model m` recorded "m" as given, so every message naming the source from another
    # folder (sdd calibrate or sdd robustness given the .onnx, sdd describe, sdd export-onnx --model FILE.onnx)
    # pointed at a folder that is not there
    work = tmp_path / "work"
    work.mkdir()
    tiny_stats(work / "m")
    monkeypatch.chdir(work)
    export_onnx("m", "m.onnx")
    out = work / "m.onnx"
    assert exported_from(out) == os.fspath(work / "m")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(CheckpointError, match=re.escape(f"exported from, {work / 'm'}")):
        load_detector(out)  # the torch backend, given the export: names the directory to give it instead
    with pytest.raises(CheckpointError, match=re.escape(f"exported from, {work / 'm'}")):
        export_onnx(out, elsewhere / "again.onnx")


def test_a_failed_export_removes_the_folders_it_made_for_out(tmp_path, tiny_stats, monkeypatch):
    # before: `sdd export-onnx --out new/deep/m.onnx` made new/deep/ first, and an export that then failed (the
    # exporter's refusal, a parity failure, Ctrl-C) left that empty folder tree behind, where sdd calibrate --out
    # removes the folders a failed run made
    model = tiny_stats(tmp_path / "m")
    kept = tmp_path / "kept"
    kept.mkdir()
    real_diffs = onnx_export._output_diffs
    monkeypatch.setattr(onnx_export, "_output_diffs", lambda *a: {"logits": 0.5})  # as if the graph disagreed
    for out in (tmp_path / "new" / "deep" / "m.onnx", kept / "sub" / "m.onnx"):
        with pytest.raises(CheckpointError, match="not written"):
            export_onnx(model, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "m"]
    assert list(kept.iterdir()) == []  # an existing folder stays, only what the export made goes

    monkeypatch.setattr(onnx_export, "_output_diffs", real_diffs)
    out = tmp_path / "new" / "deep" / "m.onnx"
    export_onnx(model, out)  # a good export keeps its folders, of course
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]
