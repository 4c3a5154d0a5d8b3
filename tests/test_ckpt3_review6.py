"""Model directories, third review: damaged weights bytes, a full disk while saving, a folder of a newer sddkit."""

from __future__ import annotations

import errno
import json
import struct

import pytest
from safetensors import SafetensorError
from scoring_support import save_tiny_lcnn

from sddkit.detectors import model_dir as md
from sddkit.errors import CheckpointError, ConfigError


def _flip_a_float_bit(weights) -> None:
    """Flip the lowest mantissa bit of a float32 weight in place, leaving the header (and its digest) as it was:
    a damaged copy that stays finite and of the right shape."""
    data = bytearray(weights.read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + header_len])
    name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")
    data[8 + header_len + header[name]["data_offsets"][0]] ^= 0x01
    weights.write_bytes(bytes(data))


def test_a_weights_file_damaged_since_its_save_is_refused(tmp_path):
    model = save_tiny_lcnn(tmp_path / "m")
    assert md.load_model_dir(model).weights_digest is not None
    _flip_a_float_bit(model / md.WEIGHTS_NAME)
    with pytest.raises(CheckpointError, match="do not match the weights digest recorded at save"):
        md.load_model_dir(model)


def test_a_full_disk_while_writing_the_weights_is_an_oserror_and_keeps_the_old_directory(tmp_path, monkeypatch):
    model = save_tiny_lcnn(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    loaded = md.load_model_dir(model)

    def full(*args, **kwargs):  # what safetensors raises when the disk fills (checked on a 64 kB tmpfs)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(md, "save_file", full)
    # an OSError as from the config's write: the trainer's export reports it with what to do, not a traceback
    with pytest.raises(OSError) as info:
        md.save_model_dir(model, loaded.model, model_config=loaded.model_config)
    assert info.value.errno == errno.ENOSPC and str(model / md.WEIGHTS_NAME) in str(info.value)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before  # no temporary file left, nothing replaced


def test_a_directory_written_by_a_newer_sddkit_says_to_upgrade(tmp_path, monkeypatch):
    model = save_tiny_lcnn(tmp_path / "m")
    config_path = model / md.CONFIG_NAME
    config = json.loads(config_path.read_text())
    monkeypatch.setattr(md, "__version__", "0.1.0")
    config["sddkit_version"] = "0.3.0rc1"
    config["model"]["backend"]["new_option"] = 1  # a setting the newer version added
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"new_option.*written by sddkit 0\.3\.0rc1, newer than this one, 0\.1\.0"):
        md.load_model_dir(model)
    del config["model"]["backend"]["new_option"]
    config_path.write_text(json.dumps({**config, "architecture": "conformer"}))  # an architecture it added
    with pytest.raises(CheckpointError, match=r"unknown architecture 'conformer'.*upgrade sddkit"):
        md.load_model_dir(model)
    config["calibration_v2"] = {}  # a key the newer version added
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"calibration_v2.*upgrade sddkit"):
        md.load_model_dir(model)
    config["sddkit_version"] = "0.1.0"  # the same version: a hand edit, no upgrade to suggest
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        md.load_model_dir(model)
    assert "upgrade" not in str(info.value)


def test_cuda_generators_are_restored_on_a_machine_with_another_number_of_gpus(monkeypatch):
    import torch

    from sddkit.training import checkpoint as ckpt

    saved = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]  # a run that saw 4 GPUs
    state = {**ckpt.capture_rng_state(), "cuda": saved}
    restored: dict[int, torch.Tensor] = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # resumed where 2 are visible
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.__setitem__(device, s))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.update(enumerate(states)))
    ckpt.restore_rng_state(state)
    # the devices both have continue their streams (before: none was restored, cuda:0 replayed the seed's)
    assert sorted(restored) == [0, 1] and all(torch.equal(restored[i], saved[i]) for i in (0, 1))


def test_a_file_system_that_refuses_chmod_still_gets_the_model_and_its_checkpoints(tmp_path, monkeypatch):
    import os

    import torch

    from sddkit.training import checkpoint as ckpt

    def refuse(*args, **kwargs):  # vfat, some network shares: "Operation not permitted"
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)
    model = save_tiny_lcnn(tmp_path / "m")  # before: the write failed with PermissionError
    assert md.load_model_dir(model).weights_digest is not None
    ckpt.save_checkpoint(tmp_path / "c", "step-1", {"w": torch.ones(2)})
    assert torch.equal(ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "c"))["w"], torch.ones(2))
