"""The model directory's weights_digest names the weights everywhere a score can come from: the Python API,
an ONNX export, `sdd score`'s run record and the service's /v1/model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.errors import CheckpointError
from sddkit.scoring.api import load_detector
from sddkit.scoring.onnx_export import export_onnx
from sddkit.service.app import create_app


def _digest(directory) -> str:
    return json.loads((directory / md.CONFIG_NAME).read_text())["weights_digest"]


def test_every_scoring_path_reports_the_weights_digest(tmp_path):
    model = save_tiny_lcnn(tmp_path / "m")
    other = save_tiny_lcnn(tmp_path / "other", seed=1)
    digest = _digest(model)
    assert len(digest) == 64 and digest != _digest(other)  # other weights, other digest
    assert md.load_model_dir(model).weights_digest == digest
    assert load_detector(model).info["weights_digest"] == digest
    export_onnx(model, tmp_path / "m.onnx")
    assert load_detector(tmp_path / "m.onnx", backend="onnx").info["weights_digest"] == digest
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(12000)).astype(np.float32), 16000)
    out = tmp_path / "s.csv"
    assert main(["score", str(wav), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    assert json.loads((tmp_path / "s.csv.run.json").read_text())["weights_digest"] == digest
    with TestClient(create_app(model)) as client:
        assert client.get("/v1/model").json()["weights_digest"] == digest


def test_a_directory_without_a_digest_reports_none(tmp_path):
    from safetensors.torch import load_file, save_file

    model = save_tiny_lcnn(tmp_path / "m")
    config = json.loads((model / md.CONFIG_NAME).read_text())
    del config["weights_digest"]
    (model / md.CONFIG_NAME).write_text(json.dumps(config))
    # new weights (with a header digest) under a config without one: an overwrite interrupted between the files
    with pytest.raises(CheckpointError, match="come from different saves"):
        md.load_model_dir(model)
    weights = model / md.WEIGHTS_NAME
    save_file(load_file(weights), weights)  # written before digests existed: none in either file
    assert md.load_model_dir(model).weights_digest is None
    assert load_detector(model).info["weights_digest"] is None


def test_model_files_are_as_readable_as_the_umask_allows(tmp_path):
    # mkstemp files are 0600 and os.replace kept that: a model trained by one user could not be served by another
    import os

    old = os.umask(0o022)
    try:
        model = save_tiny_lcnn(tmp_path / "m")
        modes = {p.name: p.stat().st_mode & 0o777 for p in model.iterdir()}
        assert modes == {md.CONFIG_NAME: 0o644, md.WEIGHTS_NAME: 0o644}
        os.umask(0o077)
        md.atomic_write_bytes(model / md.CONFIG_NAME, (model / md.CONFIG_NAME).read_bytes())  # e.g. recalibration
        assert (model / md.CONFIG_NAME).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_a_config_that_is_not_utf8_is_a_checkpoint_error(tmp_path):
    model = save_tiny_lcnn(tmp_path / "m")
    (model / md.CONFIG_NAME).write_bytes(b"\xff\xfe{}")
    with pytest.raises(CheckpointError, match="not UTF-8 text"):
        md.load_model_dir(model)


def test_integer_values_where_the_model_holds_floats_are_refused(tmp_path):
    # load_state_dict casts: an int32 tensor in place of floats loaded truncated (a pre-digest directory, or an
    # imported .pth, has no digest to catch it)
    from safetensors.torch import load_file, save_file

    model = save_tiny_lcnn(tmp_path / "m")
    config = json.loads((model / md.CONFIG_NAME).read_text())
    del config["weights_digest"]
    (model / md.CONFIG_NAME).write_text(json.dumps(config))
    weights = model / md.WEIGHTS_NAME
    state = load_file(weights)
    name = next(k for k, t in state.items() if t.is_floating_point())
    save_file({**state, name: (state[name] * 10).to(torch.int32)}, weights)
    with pytest.raises(
        CheckpointError, match=rf"{name} holds torch.int32 values where the model expects torch.float32"
    ):
        md.load_model_dir(model)
    save_file({**state, name: state[name].double()}, weights)  # another float width loads as the model's floats
    assert md.load_model_dir(model).weights_digest is None
