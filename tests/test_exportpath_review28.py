"""Review tests (session 46, helper exportpath): an ONNX export scored after its model changed, end to end."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scoring_support import write_noise_wav
from test_calibrate_cmd import _files

from sddkit.errors import CheckpointError
from sddkit.scoring.api import load_detector
from sddkit.scoring.inference import calibrate_model_dir
from sddkit.scoring.onnx_export import StaleExportWarning, export_onnx, load_onnx_detector


def _recalibrate(model, seed: int = 0) -> None:
    """Fit a calibration in place, as `sdd calibrate --model DIR` does (a steep slope: scores move a lot)."""
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal(40)
    labels = (raw + 0.5 * rng.standard_normal(40) > 0).astype(int)
    calibrate_model_dir(model, 0.01 * raw, labels)


def test_an_export_elsewhere_of_a_model_recalibrated_since_warns_and_still_scores_as_exported(tiny_stats, tmp_path):
    # before: `sdd export-onnx --model DIR --out deploy/m.onnx`, then `sdd calibrate --model DIR`: the export went on
    # scoring with the calibration and threshold of the export, other scores and decisions than `--backend torch
    # --model DIR` gave, without a word (only an export inside DIR was checked)
    model = tiny_stats(tmp_path / "m")
    exported = tmp_path / "deploy" / "m.onnx"
    exported.parent.mkdir()
    export_onnx(model, exported)
    x = 0.1 * np.random.default_rng(1).standard_normal(4000).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleExportWarning)  # the model as exported: no warning
        before = load_onnx_detector(exported).score(x, 16000)
    assert "source_changed" not in load_onnx_detector(exported).info

    _recalibrate(model)
    torch_now = load_detector(model).score(x, 16000)
    assert abs(torch_now.score - before.score) > 1e-2  # the calibration moved the torch scores
    with pytest.warns(StaleExportWarning, match=r"inference settings .* have changed since") as caught:
        detector = load_onnx_detector(exported)
    assert f"--model {model} --out {exported} --force" in str(caught[0].message)
    assert detector.info["source_changed"] == str(caught[0].message)
    # the file is self-contained: still scored, as it was exported (it may be deployed where its source is not)
    assert detector.score(x, 16000).score == pytest.approx(before.score, abs=1e-6)

    export_onnx(model, exported)  # exported again (the advice, without the CLI's --force check): no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleExportWarning)
        again = load_onnx_detector(exported)
    assert again.score(x, 16000).score == pytest.approx(torch_now.score, abs=1e-4)


def test_sdd_score_says_an_export_is_of_a_model_changed_since_in_one_line(tiny_stats, tmp_path, capsys):
    from sddkit.cli.main import main

    model = tiny_stats(tmp_path / "m")
    exported = tmp_path / "m.onnx"
    export_onnx(model, exported)
    _recalibrate(model)
    wav = write_noise_wav(tmp_path / "a.wav", 0.5, seed=0)
    assert (
        main(["score", str(wav), "--backend", "onnx", "--model", str(exported), "--out", str(tmp_path / "s.csv")]) == 0
    )
    err = capsys.readouterr().err
    assert f"sdd score: warning: {exported} was exported from {model}" in err
    assert "StaleExportWarning" not in err  # the command's own line, not Python's warning with a source line


def test_sdd_serve_says_an_export_is_of_a_model_changed_since_before_serving(tiny_stats, tmp_path, capsys, monkeypatch):
    import uvicorn

    from sddkit.cli.main import main

    model = tiny_stats(tmp_path / "m")
    exported = tmp_path / "m.onnx"
    export_onnx(model, exported)
    _recalibrate(model)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)  # loaded and announced: enough
    argv = ["serve", "--backend", "onnx", "--model", str(exported), "--port", "0", "--allocator", "system"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"sdd serve: warning: {exported} was exported from {model}" in err
    assert "StaleExportWarning" not in err


def test_sdd_calibrate_names_every_export_in_the_folder_not_only_model_onnx(tmp_path, tiny_stats, capsys):
    # before: only DIR/model.onnx was named; an export written as `--out DIR/deploy.onnx` carried the old calibration
    # too, and was refused at its next load, without a word from the calibration that made it stale
    from sddkit.cli.main import main

    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    export_onnx(model, model / "deploy.onnx")
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol)]) == 0
    err = capsys.readouterr().err
    assert f"note: {model / 'deploy.onnx'} was exported before this calibration" in err
    advice = f"sdd export-onnx --model {model} --out {model / 'deploy.onnx'} --force"
    assert advice in err
    with pytest.raises(CheckpointError, match="export it again"):
        load_onnx_detector(model / "deploy.onnx")
    export_onnx(model, model / "deploy.onnx")  # what the advice does (--force: the CLI's check of an existing file)
    assert load_onnx_detector(model / "deploy.onnx").inference.to_dict() == load_detector(model).inference.to_dict()
