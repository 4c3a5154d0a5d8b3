"""Review tests (session 44, helper onnx26): an ONNX export kept beside a model directory whose config changed."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from scoring_support import save_tiny_lcnn

from sddkit.detectors import model_dir as md
from sddkit.errors import CheckpointError
from sddkit.scoring.api import load_detector
from sddkit.scoring.onnx_export import export_onnx, load_onnx_detector


def _edit_frontend(directory, **changes) -> None:
    path = directory / md.CONFIG_NAME
    config = json.loads(path.read_text())
    config["model"]["frontend"].update(changes)
    path.write_text(json.dumps(config, indent=2))


def test_an_export_beside_a_model_whose_frontend_settings_changed_is_refused(tmp_path):
    # before: only the weights digest and the inference section were compared, so an edit of a front-end setting
    # that has no weights (pre-emphasis, level_db, ...) left the digest as it was: `sdd score --backend onnx --model
    # DIR` went on scoring with the old graph, other scores than `--backend torch` gave for the same DIR, silently
    model = save_tiny_lcnn(tmp_path / "m")
    original = shutil.copytree(model, tmp_path / "original")
    export_onnx(model, model)
    x = 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    before = load_detector(model).score(x, 16000).score
    assert load_onnx_detector(model).score(x, 16000).score == pytest.approx(before, abs=1e-4)

    _edit_frontend(model, pre_emphasis=0.0)
    assert abs(load_detector(model).score(x, 16000).score - before) > 1e-3  # torch scores the edited model
    with pytest.raises(CheckpointError, match=r"exported before its model config .* changed: export it again"):
        load_onnx_detector(model)
    with pytest.raises(CheckpointError, match=r"exported before its model config"):
        load_detector(model, backend="onnx")

    # the model before the edit is another model than the folder now holds: its export there could never load
    with pytest.raises(CheckpointError, match=r"holds another model \(its model config .* differ"):
        export_onnx(original, model / "original.onnx")
    assert not (model / "original.onnx").exists()

    # exported again from the edited folder: loads, and scores as torch does
    export_onnx(model, model)
    after = load_onnx_detector(model).score(x, 16000).score
    assert after == pytest.approx(load_detector(model).score(x, 16000).score, abs=1e-4)


def test_the_refusal_of_an_export_under_another_name_says_to_export_to_that_file(tiny_stats, tmp_path):
    # before: the advice was `--out DIR`, which writes DIR/model.onnx and leaves DIR/other.onnx, the file that was
    # refused, as it was: following it, the same command failed again
    a, b = tiny_stats(tmp_path / "a", seed=0), tiny_stats(tmp_path / "b", seed=1)
    export_onnx(a, tmp_path / "a.onnx")
    shutil.copy(tmp_path / "a.onnx", b / "other.onnx")
    with pytest.raises(CheckpointError) as refused:
        load_onnx_detector(b / "other.onnx")
    advice = f"sdd export-onnx --model {b} --out {b / 'other.onnx'} --force"
    assert advice in str(refused.value)
    export_onnx(b, b / "other.onnx")  # what the advice says (as --force allows)
    assert load_onnx_detector(b / "other.onnx").info["name"] == "other"

    shutil.copy(tmp_path / "a.onnx", b / "model.onnx")  # the folder's own export: `--out DIR` is that file
    with pytest.raises(CheckpointError, match=re.escape(f"--model {b} --out {b} --force")):
        load_onnx_detector(b)


def test_export_onnx_given_a_folder_of_an_export_names_the_model_directory_it_needs(tiny_stats, tmp_path):
    # before: `sdd export-onnx --model EXPORTS` (a folder `--out EXPORTS` wrote) was told "missing config.json; it
    # holds an exported model.onnx: load it with backend='onnx' (sdd score --backend onnx)", an answer to scoring,
    # where the given .onnx file itself was told the model directory export-onnx needs
    model = tiny_stats(tmp_path / "m")
    exports = tmp_path / "exports"
    exports.mkdir()
    export_onnx(model, exports)
    with pytest.raises(CheckpointError) as refused:
        export_onnx(exports, tmp_path / "again.onnx")
    message = str(refused.value)
    assert "needs the model directory it was exported from" in message and str(model) in message
    assert "backend='onnx'" not in message
    assert not (tmp_path / "again.onnx").exists()
