"""Review 30 (diffreview): defects found re-reading this session's source changes, each with its test."""

from __future__ import annotations

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main

# --- sdd score: an ONNX export given as an input ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_an_onnx_export_given_as_an_input_is_refused_naming_backend_onnx(tmp_path, capsys, layout):
    # `sdd score model.onnx a.wav` (--model left out, as for a model directory, which is refused): the .onnx file
    # was scored as audio (an error row), a.wav with the bundled model, and the run exited 0
    if layout == "file":
        export = tmp_path / "lcnn.onnx"
        export.write_bytes(b"\x08\x07not audio")
        model = export
    else:  # what `sdd export-onnx run/best --out exported/` writes: model.onnx, no config.json
        export = tmp_path / "exported"
        export.mkdir()
        (export / "model.onnx").write_bytes(b"\x08\x07not audio")
        model = export / "model.onnx"
    wav = write_noise_wav(tmp_path / "a.wav", 1.0, seed=0)
    out = tmp_path / "scores.csv"
    assert main(["score", str(export), str(wav), "--out", str(out), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert f"{export} is an ONNX export, not audio to score: give it as --backend onnx --model {model}" in err
    assert not out.exists()


def test_a_folder_of_audio_beside_a_model_onnx_is_still_scored(tmp_path):
    folder = tmp_path / "clips"
    write_noise_wav(folder / "sub" / "a.wav", 1.0, seed=0)
    (folder / "model.onnx").write_bytes(b"\x08\x07not audio")
    model = save_tiny_lcnn(tmp_path / "model")
    out = tmp_path / "scores.csv"
    main(["score", str(folder), "--model", str(model), "--out", str(out), "--quiet"])
    assert any("a.wav" in line for line in out.read_text().splitlines()[1:])
