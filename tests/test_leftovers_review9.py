"""Leftovers of earlier sessions' notes mended in the twenty-eighth."""

from __future__ import annotations

from scoring_support import save_tiny_lcnn

from sddkit.scoring.onnx_export import export_onnx, load_onnx_detector


def test_an_export_leaves_another_export_to_the_same_out_alone(tmp_path):
    # two exports to one `out` at once wrote one temporary graph, OUT.partial: the first to finish replaced `out`
    # with it and the other's check then read (and removed) a graph it had not written
    model = save_tiny_lcnn(tmp_path / "m")
    out = tmp_path / "m.onnx"
    other = tmp_path / "m.onnx.partial"  # where the other export's graph lay
    other.write_bytes(b"another export's graph, being written")
    export_onnx(model, out)
    assert other.read_bytes() == b"another export's graph, being written"
    assert load_onnx_detector(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.onnx", "m.onnx.partial"]
