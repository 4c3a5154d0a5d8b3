"""Review 7 of the ONNX export: writing errors and exports placed in another model's folder."""

from __future__ import annotations

import errno
import shutil

import onnx
import pytest
import torch

from sddkit.detectors import model_dir as md
from sddkit.errors import CheckpointError
from sddkit.scoring.onnx_export import export_onnx, load_onnx_detector


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_adding_the_metadata_leaves_no_half_file_and_says_so(tiny_stats, tmp_path, monkeypatch):
    # the metadata step saved the graph again to OUT.partial.tmp: a save cut short left that half file in the
    # user's folder, and the OSError came out as a traceback
    model = tiny_stats(tmp_path / "m")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an earlier, good export")
    save = onnx.save

    def half_then_full(proto, path, *args, **kwargs):
        if not str(path).endswith(".tmp"):
            return save(proto, path, *args, **kwargs)
        with open(path, "wb") as f:
            f.write(b"\x08\x07half a graph")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save", half_then_full)
    with pytest.raises(CheckpointError, match=r"m\.onnx: cannot write the ONNX model: No space left on device"):
        export_onnx(model, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.onnx"]
    assert out.read_bytes() == b"an earlier, good export"


def test_a_full_disk_while_the_exporter_writes_is_not_called_a_model_it_cannot_export(
    tiny_stats, tmp_path, monkeypatch
):
    # an exporter's OSError was taken for "this exporter cannot handle the model": the other exporter was tried
    # and the error read "cannot export this model to ONNX", sending the user after their model, not their disk
    model = tiny_stats(tmp_path / "m")
    monkeypatch.setattr(torch.onnx, "export", _no_space)
    with pytest.raises(CheckpointError, match="cannot write the ONNX model: No space left on device") as info:
        export_onnx(model, tmp_path / "m.onnx")
    assert "cannot export this model" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_an_export_into_another_models_folder_is_refused_before_exporting(tiny_stats, tmp_path, monkeypatch):
    # `sdd export-onnx --model A --out B` wrote B/model.onnx, which the onnx backend then always refused (it is not
    # B's model): the export "succeeded" and left a file that could never be scored
    a, b = tiny_stats(tmp_path / "a", seed=0), tiny_stats(tmp_path / "b", seed=1)
    with pytest.raises(CheckpointError, match=r"holds another model \(its weights differ from those of .*a\)"):
        export_onnx(a, b)
    c = tiny_stats(tmp_path / "c", seed=0, threshold=0.5)  # the same weights, another threshold
    with pytest.raises(CheckpointError, match=r"its inference settings .* differ"):
        export_onnx(a, c / "a.onnx")
    assert sorted(p.name for p in b.iterdir()) == sorted(p.name for p in a.iterdir())  # nothing written
    assert not (c / "a.onnx").exists()
    # into its own folder, into a folder without a model, and into a copy of the model: written
    for folder in (a, tmp_path / "exports", tmp_path / "copy"):
        if folder.name == "copy":
            shutil.copytree(a, folder)
        folder.mkdir(exist_ok=True)
        assert export_onnx(a, folder)["out"] == str(folder / "model.onnx")
        assert load_onnx_detector(folder).info["weights_digest"] == md.load_model_dir(a).weights_digest


def test_another_models_export_placed_in_a_folder_says_where_it_came_from(tiny_stats, tmp_path):
    # the refusal read "was exported before its weights ... changed", a history that never happened
    a, b = tiny_stats(tmp_path / "a", seed=0), tiny_stats(tmp_path / "b", seed=1)
    export_onnx(a, a)
    shutil.copy(a / "model.onnx", b / "model.onnx")
    with pytest.raises(CheckpointError, match=r"b/model\.onnx was exported from .*a, whose weights differ from"):
        load_onnx_detector(b)
    tiny_stats(a, seed=2)  # retrained in place: that history is the one to tell
    with pytest.raises(CheckpointError, match=r"a/model\.onnx was exported before its weights in .* changed"):
        load_onnx_detector(a)


def test_a_folder_that_cannot_be_made_for_out_is_one_line_naming_out(tiny_stats, tmp_path):
    # the folders above `out` were made before the guarded write: a file in the way came out as a traceback
    model = tiny_stats(tmp_path / "m")
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"a_file/sub/m\.onnx: cannot write the ONNX model: Not a directory"):
        export_onnx(model, tmp_path / "a_file" / "sub" / "m.onnx")
