"""Training exactness: MLDG beta 0 and SAM rho 0 equal ERM with dropout, crash-safe logs and checkpoints, sizes."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
from test_checkpoint import _fit
from test_mldg import _adamw, _batch, _ctx
from test_train_support import (
    TinyBackend,
    TinyBackendConfig,
    TinyFrontend,
    TinyFrontendConfig,
    crash_on_save,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.detectors.detector import Detector
from sddkit.errors import ConfigError
from sddkit.training import checkpoint as ckpt
from sddkit.training.erm import ERM
from sddkit.training.mldg import MLDG, MLDGConfig
from sddkit.training.recipe import TrainRecipe
from sddkit.training.strategy import subset


def test_mldg_beta_zero_equals_erm_over_several_steps_with_dropout():
    # beta 0 must be ERM on the meta-train rows for a whole run, not just one step: the (useless)
    # meta-test pass must not draw dropout masks from the global generator
    torch.manual_seed(0)
    cfg = TinyFrontendConfig(dropout=0.3)
    model_m = Detector(frontend=TinyFrontend(cfg), backend=TinyBackend(TinyBackendConfig(), cfg.dim))
    model_e = copy.deepcopy(model_m)
    opt_m, opt_e = _adamw(model_m), _adamw(model_e)
    mldg, splitter, erm = MLDG(MLDGConfig(beta=0.0), seed=7), MLDG(MLDGConfig(), seed=7), ERM()
    torch.manual_seed(5)
    for step in range(3):
        mldg.step(_batch(offset=12 * step), _ctx(model_m, opt_m))
    torch.manual_seed(5)
    for step in range(3):
        batch = _batch(offset=12 * step)
        train_rows, _ = splitter.split(batch)
        erm.step(subset(batch, train_rows), _ctx(model_e, opt_e))
    for (name, a), b in zip(model_m.state_dict().items(), model_e.state_dict().values()):
        assert torch.equal(a, b), name


def test_metrics_jsonl_lists_each_validation_once_after_a_crash_during_its_save(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    with crash_on_save(monkeypatch, 2):  # saves at step 3 (periodic), then step 4 (after validating): dies there
        _fit(tmp_path / "crashed", 9)
    assert ckpt.latest_checkpoint(tmp_path / "crashed" / "checkpoints").name == "step-00000003"
    resumed = _fit(tmp_path / "crashed", 9, resume=True)
    _fit(tmp_path / "straight", 9)
    lines = (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()
    # val_every 4, and the last step (9) is always validated
    assert [json.loads(line)["step"] for line in lines] == [h["step"] for h in resumed.history] == [4, 8, 9]
    assert lines == (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors")
def test_checkpoint_tensor_file_is_fsynced_before_it_is_published(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        try:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
        return real(fd)

    real_replace = os.replace

    def replace_spy(src, dst):
        real_replace(src, dst)
        synced.append(("replaced", str(dst)))

    monkeypatch.setattr(os, "fsync", spy)
    monkeypatch.setattr(os, "replace", replace_spy)
    ckpt.save_checkpoint(tmp_path, "step-1", {"w": torch.ones(3)})
    assert any(isinstance(p, str) and p.endswith(ckpt.STATE_TENSORS) for p in synced), synced
    # the pointer's rename is made durable (its directory synced) before old checkpoints may be pruned
    moved = synced.index(("replaced", str(tmp_path / ckpt.LATEST)))
    assert str(tmp_path) in synced[moved + 1 :], synced


@pytest.mark.parametrize("key", ["val_batch_size", "val_crop_samples"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_validation_sizes_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        from_dict(TrainRecipe, {"init_from": "some/model_dir", "data": {key: value}})


def test_sam_rho_zero_equals_erm_with_dropout():
    # both passes must see the same dropout masks (one stochastic loss L_B), so rho 0 is the ERM step
    from sddkit.training.sam import SAM, SAMConfig

    torch.manual_seed(0)
    cfg = TinyFrontendConfig(dropout=0.3)
    model_s = Detector(frontend=TinyFrontend(cfg), backend=TinyBackend(TinyBackendConfig(batch_norm=True), cfg.dim))
    model_e = copy.deepcopy(model_s)
    opt_s, opt_e = _adamw(model_s), _adamw(model_e)
    sam, erm = SAM(SAMConfig(rho=0.0)), ERM()
    torch.manual_seed(5)
    for step in range(3):
        sam.step(_batch(offset=12 * step), _ctx(model_s, opt_s))
    torch.manual_seed(5)
    for step in range(3):
        erm.step(_batch(offset=12 * step), _ctx(model_e, opt_e))
    for (name, a), b in zip(model_s.state_dict().items(), model_e.state_dict().values()):
        assert torch.equal(a, b), name
