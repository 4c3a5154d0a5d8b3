"""Checkpoints: exact state encoding, atomic saves under simulated crashes, bitwise resume (also after SIGKILL)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    crash_on_save,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.errors import CheckpointError
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

TESTS = Path(__file__).resolve().parent


def test_state_encoding_roundtrip_is_exact(tmp_path):
    random.random()
    state = {
        "py": random.getstate(),
        "np": np.random.get_state(),
        "t": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "by_int": {0: {"step": torch.tensor(3.0), "betas": (0.9, 0.999)}, 7: None},
        "raw": b"\x00\xffbytes",
        "tricky": {"__tensor__": "not a reference"},
        "nested": [1, 2.5, "x", True, (1, [2, (3,)])],
    }
    ckpt.save_checkpoint(tmp_path, "step-1", state)
    back = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert back["py"] == state["py"]
    assert back["np"][0] == "MT19937" and np.array_equal(back["np"][1], state["np"][1])
    assert back["np"][1].dtype == np.uint32 and back["np"][2:] == state["np"][2:]
    assert torch.equal(back["t"], state["t"]) and torch.equal(back["by_int"][0]["step"], torch.tensor(3.0))
    assert back["by_int"][0]["betas"] == (0.9, 0.999) and back["by_int"][7] is None
    assert back["raw"] == state["raw"] and back["tricky"] == state["tricky"] and back["nested"] == state["nested"]
    # nothing is pickled: the JSON is plain text and the tensors a safetensors file
    assert (tmp_path / "step-1" / "state.json").read_text().lstrip().startswith("{")
    with pytest.raises(CheckpointError, match="cannot store"):
        ckpt.save_checkpoint(tmp_path, "step-2", {"bad": object()})
    assert ckpt.latest_checkpoint(tmp_path).name == "step-1"


def test_crash_mid_save_keeps_latest_loadable(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, "step-1", {"w": torch.ones(3)})
    real = ckpt._write_tensors

    def dies_halfway(tensors, path):
        real(tensors, path)  # a complete tensor file lands in the temporary directory...
        path.write_bytes(path.read_bytes()[:20])  # ...is cut short, and the process "dies"
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(ckpt, "_write_tensors", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, "step-2", {"w": torch.zeros(3)})
    monkeypatch.setattr(ckpt, "_write_tensors", real)

    def json_fails(path, data):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "atomic_write_bytes", json_fails)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, "step-3", {"w": torch.zeros(3)})
    assert ckpt.latest_checkpoint(tmp_path).name == "step-1"
    assert torch.equal(ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-1"]  # no half-written directory


def test_corrupt_pointer_and_incomplete_checkpoint_are_reported(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path) is None
    (tmp_path / "latest").write_text("step-9\n")
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.latest_checkpoint(tmp_path)
    (tmp_path / "step-9").mkdir()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        ckpt.load_checkpoint(tmp_path / "step-9")


# --- resume -------------------------------------------------------------------------------------------------
def _resume_recipe(out: Path, max_steps: int) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "seed": 5,
            "model": {
                "frontend": {"name": "tiny_test", "dropout": 0.2},
                "backend": {"name": "tiny_test_head", "batch_norm": True},
            },
            "strategy": {"name": "mldg", "beta": 1.0},
            "optimizer": {"weight_decay": 0.01},  # the lr is the cyclic schedule's
            "schedule": {"name": "cyclic", "base_lr": 1e-4, "max_lr": 1e-2, "step_size": 3},
            "loss": {"class_weights": [0.3, 0.7]},
            "data": {"batch_size": 8},
            "trainer": {
                "epochs": 100,
                "max_steps": max_steps,
                "val_every": 4,
                "save_every": 3,
                "grad_clip": 1.0,
                "keep_top_k": 2,
                "out_dir": str(out),
                "progress": False,
            },
        },
    )


def _fit(out: Path, max_steps: int, resume: bool = False) -> Trainer:
    trainer = Trainer(
        _resume_recipe(out, max_steps),
        train_data=SyntheticDataset(40, n_attacks=4),
        val_data=SyntheticDataset(18, seed=9),
        resume=resume,
    )
    trainer.fit()
    return trainer


def _assert_same_training_state(a: Path, b: Path, extra_validations: tuple[int, ...] = ()) -> None:
    """``b`` continued ``a``'s run bitwise; ``extra_validations``: steps only ``b`` validated (where it stopped)."""
    sa = ckpt.load_checkpoint(ckpt.latest_checkpoint(a / "checkpoints"))
    sb = ckpt.load_checkpoint(ckpt.latest_checkpoint(b / "checkpoints"))
    assert sa["trainer"]["step"] == sb["trainer"]["step"]
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key  # bitwise
    for idx, st in sa["optimizer"]["state"].items():
        for name, value in st.items():
            assert torch.equal(value, sb["optimizer"]["state"][idx][name]), (idx, name)
    assert torch.equal(sa["rng"]["torch"], sb["rng"]["torch"])
    assert torch.equal(sa["strategy"]["generator"], sb["strategy"]["generator"])
    history_b = [h for h in sb["history"] if h["step"] not in extra_validations]
    assert [h["step"] for h in sb["history"] if h["step"] in extra_validations] == list(extra_validations)
    assert sa["history"] == history_b
    if not extra_validations:  # an extra validation may enter the top-k ranking
        assert sa["trainer"]["ranked"] == sb["trainer"]["ranked"]


def test_resume_after_max_steps_is_bitwise_identical(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    _fit(tmp_path / "straight", 13)
    _fit(tmp_path / "split", 7)  # stops mid-epoch (5 steps per epoch), between saves, validating its last step
    resumed = _fit(tmp_path / "split", 13, resume=True)
    assert resumed.state.step == 13
    # validating changes no weights, optimiser state or random stream: only the record of step 7 is extra
    _assert_same_training_state(tmp_path / "straight", tmp_path / "split", extra_validations=(7,))
    sessions = __import__("json").loads((tmp_path / "split" / "run.json").read_text())["sessions"]
    assert [s["resumed_from"] for s in sessions] == [None, "step-00000007"]


def test_resume_after_a_crash_during_a_save(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    with crash_on_save(monkeypatch, 3):
        _fit(tmp_path / "crashed", 13)  # saves at steps 3, 4, then dies saving step 6
    assert ckpt.latest_checkpoint(tmp_path / "crashed" / "checkpoints").name == "step-00000004"
    _fit(tmp_path / "crashed", 13, resume=True)
    _fit(tmp_path / "straight", 13)
    _assert_same_training_state(tmp_path / "straight", tmp_path / "crashed")


KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_train_support import register_tiny_for_good
register_tiny_for_good()
from test_checkpoint import _fit
from pathlib import Path
_fit(Path({out!r}), 100000)
"""


def test_resume_after_sigkill_is_bitwise_identical(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILLED_RUN.format(tests=str(TESTS), out=str(out))))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pointer = out / "checkpoints" / "latest"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if pointer.is_file() and pointer.read_text().strip() >= "step-00000006":
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    reached = int(ckpt.latest_checkpoint(out / "checkpoints").name.split("-")[1])
    target = reached + 5
    _fit(out, target, resume=True)
    _fit(tmp_path / "straight", target)
    _assert_same_training_state(tmp_path / "straight", out)


def test_a_fresh_run_into_an_earlier_runs_out_dir_is_refused(tmp_path, monkeypatch):
    """Without --resume, a new run there would prune the earlier run's checkpoints (nothing lost silently)."""
    from sddkit.errors import ConfigError

    install_tiny(monkeypatch)
    _fit(tmp_path / "run", 6)
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match="--resume"):
        _fit(tmp_path / "run", 6)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before
    assert _fit(tmp_path / "run", 8, resume=True).state.step == 8  # continuing it is what --resume is for
