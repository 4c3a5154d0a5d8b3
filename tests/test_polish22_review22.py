"""Messages a new user met (review 22, after walk22): an ONNX file given to ``sdd export-onnx --model``, a waveform
of a few samples, a run that ended within its first epoch, ``export-onnx --out`` refused only after torch loaded,
and a file that is no PyTorch checkpoint at all given to ``sdd import-aasist``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from cli_support import one_line_error
from scoring_support import save_tiny_lcnn
from test_train import _recipe
from test_train_support import SyntheticDataset, install_tiny

from sddkit.cli.main import main
from sddkit.errors import AudioTooShortError, CheckpointError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("polish22") / "lcnn")


# --- sdd export-onnx --model FILE.onnx -----------------------------------------------------------------------------


def test_export_onnx_of_an_onnx_file_names_the_model_directory_it_needs(model_dir, tmp_path, capsys):
    """``sdd export-onnx --model x.onnx`` said "x.onnx: not a model directory (a file)": no word that it is an
    export, nor of the directory it came from."""
    import onnx
    from onnx import helper

    from sddkit.scoring.onnx_export import META_INFO

    exported = tmp_path / "m.onnx"  # the origin as sdd export-onnx records it, in a graph of nothing
    graph = helper.make_model(helper.make_graph([], "g", [], []))
    helper.set_model_props(graph, {META_INFO: json.dumps({"exported_from": str(model_dir)})})
    onnx.save(graph, exported)
    assert main(["export-onnx", "--model", str(exported), "--out", str(tmp_path / "again.onnx")]) == 2
    err = one_line_error(capsys, "export-onnx")
    assert f"{exported} is an ONNX export, not a model directory: export-onnx needs the model directory" in err
    assert err.rstrip().endswith(f"it was exported from, {model_dir}") and "(a file)" not in err
    fake = tmp_path / "other.onnx"
    fake.write_bytes(b"not an export")  # no origin recorded: the advice stands without a name
    assert main(["export-onnx", "--model", str(fake), "--out", str(tmp_path / "again.onnx")]) == 2
    assert one_line_error(capsys, "export-onnx").rstrip().endswith("needs the model directory it was exported from")
    assert not (tmp_path / "again.onnx").exists()


# --- a waveform of a few samples ------------------------------------------------------------------------------------


def test_a_waveform_under_1_ms_is_counted_in_samples_not_0_ms(model_dir, tmp_path):
    """A 2-sample waveform was "0 ms of audio is too short to score": the floor of 0.125 ms."""
    import soundfile as sf

    from sddkit.scoring.api import load_detector

    det = load_detector(model_dir)
    with pytest.raises(AudioTooShortError, match=r"^2 samples \(0\.125 ms\) of audio is too short to score \("):
        det.score(np.array([0.5, -0.5], dtype=np.float32), 16000)
    with pytest.raises(AudioTooShortError, match=r"^1 sample \(0\.0625 ms\) of audio is too short"):
        det.score(np.array([0.5], dtype=np.float32), 16000)
    wav = tmp_path / "two.wav"
    sf.write(wav, np.array([0.5, -0.5], dtype=np.float32), 16000)
    with pytest.raises(AudioTooShortError, match=r"two\.wav: 2 samples \(0\.125 ms\) of audio is too short"):
        det.score_file(wav)
    # from 1 ms on, durations read as before (floored whole milliseconds)
    with pytest.raises(AudioTooShortError, match=r"^1 ms of audio is too short"):
        det.score(np.tile(np.float32([0.5, -0.5]), 15), 16000)  # 30 samples: 1.875 ms


# --- sdd train: max_steps ending in the first epoch -----------------------------------------------------------------


def _fake_trainer(monkeypatch, tmp_path, **fields):
    from sddkit.training import trainer as trainer_mod

    class FakeTrainer:
        assembled = False
        em_fitted = False

        def __init__(self, recipe, resume=False):
            pass

        def fit(self):
            return trainer_mod.TrainResult(
                out_dir=tmp_path, best_eer=0.2, best_step=1, stopped_early=False, best_dir=tmp_path / "best",
                final_dir=tmp_path / "final", final_eer=0.2, history=[], **fields,
            )  # fmt: skip

    monkeypatch.setattr(trainer_mod, "Trainer", FakeTrainer)


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"step": 2, "epoch": 0, "batch_in_epoch": 2}, "trained 2 steps (part of the first epoch)"),
        ({"step": 5, "epoch": 1, "batch_in_epoch": 2}, "trained 5 steps (1 epoch and part of the next)"),
        ({"step": 6, "epoch": 2, "batch_in_epoch": 0}, "trained 6 steps (2 epochs)"),
    ],
)
def test_train_summary_says_part_of_an_epoch_not_0_epochs(tmp_path, monkeypatch, capsys, fields, says):
    """``sdd train RECIPE trainer.max_steps=2`` on a protocol of more than 2 batches printed "trained 2 steps
    (0 epochs)", as if nothing had been trained."""
    from pathlib import Path

    _fake_trainer(monkeypatch, tmp_path, **fields)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "sddbench" / "default_model.yaml"
    assert main(["train", str(recipe), f"trainer.out_dir={tmp_path}"]) == 0
    assert says in capsys.readouterr().out


def test_the_trainer_reports_the_steps_of_an_unfinished_epoch(tmp_path, monkeypatch):
    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)
    r = _recipe(tmp_path, trainer={"epochs": 5, "max_steps": 2})  # 48 items in batches of 8: 6 steps an epoch
    result = Trainer(r, train_data=SyntheticDataset(48)).fit()
    assert (result.step, result.epoch, result.batch_in_epoch) == (2, 0, 2)


# --- sdd export-onnx --out EXISTING ---------------------------------------------------------------------------------


def test_export_onnx_refuses_an_existing_out_before_torch_loads(tmp_path):
    """The refusal of an --out that exists came after importing the exporter (torch and onnx): seconds, ~5 s on a
    busy machine, for an answer known at once."""
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"an earlier export")
    code = (
        "import sys; from sddkit.cli.main import main; "
        f"rc = main(['export-onnx', '--out', {str(existing)!r}]); print(rc, 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["2", "False"], run.stderr
    assert f"{existing} already exists: --force replaces it" in run.stderr
    assert existing.read_bytes() == b"an earlier export"


def test_export_cmd_names_the_file_onnx_export_writes_in_a_folder():
    from sddkit.cli.export_cmd import ONNX_NAME
    from sddkit.scoring import onnx_export

    assert ONNX_NAME == onnx_export.ONNX_NAME


# --- sdd import-aasist of a file that is no PyTorch checkpoint ------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"model:\n  backend: aasist\n", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))],
    ids=["text", "random_bytes"],
)
def test_import_aasist_of_a_file_that_is_no_checkpoint_says_so_without_torch_internals(tmp_path, capsys, content):
    """A text file was "not a PyTorch file of plain tensors (torch.load with weights_only=True failed: IndexError:
    pop from empty list)": torch's internals, not what the file is."""
    from sddkit.backends.aasist_import import load_reference_state

    path = tmp_path / "AASIST.pth"
    path.write_bytes(content if content[:1] not in (b"P", b"\x80") else b"x" + content)
    assert main(["import-aasist", str(path), "--out", str(tmp_path / "out")]) == 2
    err = one_line_error(capsys, "import-aasist")
    assert err.rstrip().endswith(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    assert "torch.load" not in err and not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint \(neither a zip archive nor a pickle\)$"):
        load_reference_state(path)


class NotATensor:
    pass


def test_import_aasist_keeps_torchs_reason_for_a_checkpoint_that_fails_otherwise(tmp_path, capsys):
    """A zip archive that is no torch file, and a pickle of an object: checkpoint formats, so torch's reason stays."""
    import zipfile

    import torch

    from sddkit.backends.aasist_import import load_reference_state

    archive = tmp_path / "archive.pth"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "not a torch file")
    with pytest.raises(CheckpointError, match=r"weights_only=True failed: ") as caught:
        load_reference_state(archive)
    assert "not a PyTorch checkpoint" not in str(caught.value)
    pickled = tmp_path / "objects.pth"
    torch.save({"x": NotATensor()}, pickled, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"not a PyTorch file of plain tensors"):
        load_reference_state(pickled)
