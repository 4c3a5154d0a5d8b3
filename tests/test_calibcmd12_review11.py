"""Review 11 of `sdd calibrate` (calibcmd12): an --out that cannot be written, a write that fails, an ONNX export
left behind by an in-place calibration."""

from __future__ import annotations

import errno

import pytest
from test_calibrate_cmd import _files

from sddkit.cli.main import main
from sddkit.detectors import model_dir as md
from sddkit.scoring import api as scoring_api


def test_an_out_that_is_a_file_is_refused_in_one_line_before_any_file_is_scored(
    tmp_path, tiny_stats, capsys, monkeypatch
):
    # was a FileExistsError traceback from out.mkdir, after every file of the protocol had been scored
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    taken = tmp_path / "taken"
    taken.write_text("not a folder")

    loaded = scoring_api.load_detector

    def unscorable(*args, **kwargs):
        detector = loaded(*args, **kwargs)
        detector.score_file = lambda path: pytest.fail("a file was scored before --out was checked")
        return detector

    monkeypatch.setattr(scoring_api, "load_detector", unscorable)

    argv = ["calibrate", "--model", str(model), "--protocol", str(protocol)]
    assert main([*argv, "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"sdd calibrate: error: {taken}: cannot write the calibrated model there")
        and err.count("\n") == 1
    )
    assert taken.read_text() == "not a folder"
    assert main([*argv, "--out", str(taken / "under")]) == 2
    assert "cannot write the calibrated model there" in capsys.readouterr().err


def test_a_full_disk_while_writing_is_one_line_and_leaves_the_model_as_it_was(
    tmp_path, tiny_stats, capsys, monkeypatch
):
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    before = (model / md.CONFIG_NAME).read_bytes()

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(md, "atomic_write_bytes", full)
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol)]) == 2
    err = capsys.readouterr().err
    assert err == f"sdd calibrate: error: {model}: cannot write the calibrated model (No space left on device)\n"
    assert (model / md.CONFIG_NAME).read_bytes() == before


def test_an_onnx_export_in_the_calibrated_folder_is_named_as_needing_a_new_export(tmp_path, tiny_stats, capsys):
    # the export carries the old calibration in its graph's metadata: the onnx backend refuses it after an in-place
    # calibration (rightly), and calibrate said nothing of it (the note asks only that the file be there)
    model, protocol, _, _ = _files(tmp_path, tiny_stats)
    (model / "model.onnx").write_bytes(b"an export of the model before its calibration")
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol)]) == 0
    err = capsys.readouterr().err
    assert f"note: {model / 'model.onnx'} was exported before this calibration" in err
    assert f"sdd export-onnx --model {model} --out {model} --force" in err
    out = tmp_path / "copy"  # a copy elsewhere holds no export: nothing to say
    assert main(["calibrate", "--model", str(model), "--protocol", str(protocol), "--out", str(out)]) == 0
    assert "note:" not in capsys.readouterr().err


def test_a_missing_model_is_named_and_no_folder_is_made_for_it(tmp_path, tiny_stats, capsys):
    # a guard (passes on the old code too): the --out check must not make the folder of a missing model
    _, protocol, _, _ = _files(tmp_path, tiny_stats)
    missing = tmp_path / "no_model"
    assert main(["calibrate", "--model", str(missing), "--protocol", str(protocol)]) == 2
    assert capsys.readouterr().err == f"sdd calibrate: error: {missing}: no such model directory\n"
    assert not missing.exists()
