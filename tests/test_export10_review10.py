"""Review 10 of the ONNX export and the secondary commands (describe, demo, list, import-aasist)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.errors import CheckpointError
from sddkit.scoring import onnx_export
from sddkit.scoring.onnx_export import export_onnx, load_onnx_detector


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(proc.stdout)


def test_an_export_removes_the_partial_files_crashed_exports_left_and_keeps_running_ones(tiny_stats, tmp_path):
    # a temporary graph is named OUT.<pid>.partial: an export killed before its clean-up (SIGKILL, the OOM killer)
    # left one, as large as the model, and no later export (another pid) ever removed it
    model = tiny_stats(tmp_path / "m")
    out = tmp_path / "exports" / "m.onnx"
    out.parent.mkdir()
    dead, alive = _dead_pid(), os.getppid()
    stale = [out.parent / f"m.onnx.{dead}.partial", out.parent / f"m.onnx.{dead}.partial.tmp"]
    running = out.parent / f"m.onnx.{alive}.partial"  # another export, still running
    others = [out.parent / "m.onnx.notes.partial", out.parent / "other.onnx.1.partial"]  # not ours to touch
    for path in [*stale, running, *others]:
        path.write_bytes(b"half a graph")
    export_onnx(model, out)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["m.onnx", running.name, *(p.name for p in others)])
    noise = 0.1 * torch.randn(2000, generator=torch.Generator().manual_seed(0))
    assert load_onnx_detector(out).score(noise.numpy(), 16000).n_windows > 1


def test_a_model_over_the_2_gib_of_one_onnx_file_is_refused_before_exporting(tiny_stats, tmp_path, monkeypatch, capsys):
    # XLS-R 1B/2B and Whisper large-v3 weigh 2.5-8 GB: the TorchScript exporter spilt the weights into files named
    # after the tensors beside --out, then the metadata step died on protobuf's "Failed to serialize proto" (a
    # traceback); here the limit is lowered to the tiny model's 32 bytes of weights to stand for such a model
    model = tiny_stats(tmp_path / "m")
    monkeypatch.setattr(onnx_export, "MAX_ONNX_BYTES", 31, raising=False)
    out = tmp_path / "exports"
    out.mkdir()
    with pytest.raises(CheckpointError, match=r"m: its weights take 0\.00 GiB, more than the 2 GiB one ONNX file"):
        export_onnx(model, out)
    assert main(["export-onnx", "--model", str(model), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot be exported; score it with the torch backend" in err and "Traceback" not in err
    assert list(out.iterdir()) == []
    monkeypatch.setattr(onnx_export, "MAX_ONNX_BYTES", 32)  # at the limit: exported
    assert export_onnx(model, out)["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("keep", [0, 0.5, -10], ids=["empty", "half", "all_but_10_bytes"])
def test_import_aasist_calls_a_truncated_weights_file_truncated(tmp_path, capsys, zipped, keep):
    # an interrupted download was "not a PyTorch file of plain tensors" (the user went looking for another file), with
    # torch's message cut at 160 characters mid-sentence ("... If you are seeing this error, there is a high")
    whole = tmp_path / "whole.pth"
    torch.save({"first_bn.weight": torch.randn(1000)}, whole, _use_new_zipfile_serialization=zipped)
    data = whole.read_bytes()
    path = tmp_path / "AASIST.pth"
    path.write_bytes(
        data[: int(keep * len(data)) if isinstance(keep, float) else keep if keep >= 0 else len(data) + keep]
    )
    assert main(["import-aasist", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sdd import-aasist: error: {path}: a truncated or damaged PyTorch file (")
    assert "interrupted download or copy?" in err and "not a PyTorch file" not in err and "there is a high" not in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_import_aasist_still_says_a_file_of_another_kind_is_not_a_pytorch_file(tmp_path, capsys):
    path = tmp_path / "AASIST.pth"
    path.write_text("model:\n  backend: aasist\n")
    assert main(["import-aasist", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "not a PyTorch checkpoint (neither a zip archive nor a pickle)" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["lcnn", ["frontend", "backend"], None], ids=["name", "list", "null"])
def test_describe_of_a_model_directory_whose_model_is_not_an_object_is_one_line(tiny_stats, tmp_path, capsys, model):
    # a hand-edited (or damaged) config.json with "model": "lcnn" was a ValueError / TypeError traceback from
    # `sdd describe DIR` (dict("lcnn")), where `sdd score` and `sdd export-onnx` said what was wrong
    folder = tiny_stats(tmp_path / "m")
    config = json.loads((folder / md.CONFIG_NAME).read_text())
    (folder / md.CONFIG_NAME).write_text(json.dumps({**config, "model": model}))
    for args in (["describe", str(folder)], ["describe", str(folder / md.CONFIG_NAME)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        kind = type(model).__name__
        assert err == f"sdd describe: error: {folder / md.CONFIG_NAME}: model must be a JSON object, got {kind}\n"
    with pytest.raises(CheckpointError, match="model must be a JSON object"):
        export_onnx(folder, tmp_path / "m.onnx")


def test_describe_of_an_onnx_export_or_weights_file_says_what_it_is_and_what_to_describe(tiny_stats, tmp_path, capsys):
    # read as YAML, these were "not UTF-8 text (byte 0xff on line 3)": the user had given no text file at all
    folder = tiny_stats(tmp_path / "m")
    export_onnx(folder, tmp_path / "m.onnx")
    torch.save({"first_bn.weight": torch.zeros(3)}, tmp_path / "AASIST.pth")
    expected = {
        tmp_path / "m.onnx": f"an exported ONNX model, not a config: describe the model directory it was exported "
        f"from, {folder}",
        folder
        / md.WEIGHTS_NAME: f"model weights, not a config: describe the model directory that holds them, {folder}",
        tmp_path / "AASIST.pth": "a PyTorch checkpoint, not a config: turn published AASIST weights into a model "
        "directory with `sdd import-aasist`",
    }
    for path, says in expected.items():
        assert main(["describe", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sdd describe: error: {path}: {says}") and "UTF-8" not in err
