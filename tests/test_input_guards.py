"""Input guards: bad opsets, non-UTF-8 manifests, ADD 2022 sources, wrong-length masks, FakeAVCeleb metadata."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sddkit.cli.main import main
from sddkit.data.protocols.add2022 import ADD2022Config, read_add2022
from sddkit.data.protocols.fakeavceleb import read_fakeavceleb_meta
from sddkit.data.table import UtteranceTable
from sddkit.detectors import model_dir as md
from sddkit.detectors.outputs import DetectorOutput
from sddkit.errors import ConfigError, ProtocolError
from sddkit.scoring import onnx_export
from sddkit.scoring.batch import read_manifest


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 1)

    def forward(self, x):
        s = self.proj(torch.stack([x.mean(1), x.std(1)], dim=1))[:, 0]
        return DetectorOutput(logits=torch.stack([-s, s], 1), score=2 * s, embedding=None, stats={})


@pytest.fixture
def tiny_model_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(md.ARCHITECTURES, "tiny_guard_test", lambda cfg: _Tiny())
    return md.save_model_dir(
        tmp_path / "m", _Tiny(), model_config={}, architecture="tiny_guard_test", inference={"window_samples": 400}
    )


# --- 1. ONNX opset ---------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [0, -1, 1000])
def test_export_onnx_refuses_unsupported_opsets(tmp_path, tiny_model_dir, opset):
    out = tmp_path / "m.onnx"
    with pytest.raises(ConfigError, match=f"opset must be an integer from .* got {opset}"):
        onnx_export.export_onnx(tiny_model_dir, out, opset=opset)
    assert not out.exists()


@pytest.mark.parametrize("opset", ["0", "-3", "999"])
def test_cli_export_onnx_bad_opset_is_exit_status_2(tmp_path, tiny_model_dir, capsys, opset):
    out = tmp_path / "m.onnx"
    assert main(["export-onnx", "--model", str(tiny_model_dir), "--out", str(out), "--opset", opset]) == 2
    assert "--opset must be an integer from" in capsys.readouterr().err
    assert not out.exists()


def test_supported_opset_range_holds_the_default():
    low, high = onnx_export.supported_opsets()
    assert low <= 17 <= high
    onnx_export.check_opset(low)
    onnx_export.check_opset(high)
    onnx_export.check_opset(np.int64(17))
    with pytest.raises(ConfigError):
        onnx_export.check_opset(True)


# --- 2. non-UTF-8 paths in a manifest -----------------------------------------------------------


def test_manifest_keeps_non_utf8_paths(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.wav"  # Latin-1 file name: not valid UTF-8
    with open(raw, "wb") as f:
        f.write(b"RIFF")
    manifest = tmp_path / "list.txt"
    manifest.write_bytes(raw + b"\n")
    (path,) = read_manifest(manifest)
    assert os.fsencode(path) == raw and os.path.exists(path)


# --- 3. ADD 2022 source -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["here", "parent"])
def test_add2022_source_has_no_trailing_slash(tmp_path, monkeypatch, where):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "label.txt").write_text("ADD_T_00001.wav genuine\nADD_T_00002.wav fake\n")
    if where == "here":
        monkeypatch.chdir(folder)
        protocol = "label.txt"
    else:
        (folder / "sub").mkdir()
        monkeypatch.chdir(folder / "sub")
        protocol = os.path.join("..", "label.txt")
    table = read_add2022(ADD2022Config(protocol=protocol))
    assert set(table.column("source")) == {"add2022/train"}


# --- 4. UtteranceTable.subset with a wrong-length mask --------------------------------------------


def _table(n: int) -> UtteranceTable:
    return UtteranceTable(
        pd.DataFrame(
            {"utt_id": [f"u{i}" for i in range(n)], "path": [f"{i}.wav" for i in range(n)], "label": ["spoof"] * n}
        )
    )


@pytest.mark.parametrize("length", [2, 4])
def test_subset_refuses_a_boolean_mask_of_the_wrong_length(length):
    table = _table(3)
    with pytest.raises(ProtocolError, match="does not match the table's 3 rows"):
        table.subset(np.ones(length, dtype=bool))
    assert len(table.subset(np.array([True, False, True]))) == 2
    assert len(table.subset(np.array([2, 0]))) == 2


# --- 5. FakeAVCeleb metadata that is not UTF-8 ----------------------------------------------------


def test_fakeavceleb_meta_not_utf8_is_a_protocol_error(tmp_path):
    meta = tmp_path / "meta_data.csv"
    meta.write_bytes(b"source,target1,target2,method,category,type,race,gender,path,\nid\xff,,,,,,,,x.mp4,\n")
    with pytest.raises(ProtocolError, match="not a UTF-8 text file"):
        read_fakeavceleb_meta(meta)
