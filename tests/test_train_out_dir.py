"""trainer.out_dir belongs to one run at a time, and failures to write it are one-line errors."""

from __future__ import annotations

import pytest
from test_train_support import (
    TINY_MODEL,
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.config import from_dict
from sddkit.errors import CheckpointError, ConfigError
from sddkit.locks import ExclusiveLock
from sddkit.training import checkpoint as ckpt
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _trainer(tmp_path, monkeypatch, **trainer) -> Trainer:
    install_tiny(monkeypatch)
    recipe = from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": TINY_MODEL,
            "data": {"batch_size": 8},
            "trainer": {"epochs": 1, "out_dir": str(tmp_path / "run"), "progress": False, **trainer},
        },
    )
    return Trainer(recipe, train_data=SyntheticDataset(16), val_data=SyntheticDataset(16, seed=9))


def test_a_second_run_into_a_busy_out_dir_is_refused_before_it_writes(tmp_path, monkeypatch):
    # two runs into one out_dir interleaved their metrics and run.json, and one crashed when the other's
    # checkpoint save removed its temporary folder
    (tmp_path / "run").mkdir()
    held = ExclusiveLock(tmp_path / "run" / ".lock", RuntimeError("held"))  # the first run, still training
    try:
        with pytest.raises(ConfigError, match="in use by another sdd train run"):
            _trainer(tmp_path, monkeypatch).fit()
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # nothing of the second run
    finally:
        held.release()
    result = _trainer(tmp_path, monkeypatch).fit()  # free again: the run goes ahead, and lets go when done
    assert result.best_dir.is_dir() and not (tmp_path / "run" / ".lock").exists()


def test_an_out_dir_that_is_a_file_is_refused_before_any_data_is_built(tmp_path, monkeypatch):
    (tmp_path / "run").write_text("not a folder")
    trainer = _trainer(tmp_path, monkeypatch)
    monkeypatch.setattr(Trainer, "_build_model", lambda self: pytest.fail("built before the out_dir was checked"))
    with pytest.raises(ConfigError, match="cannot create it"):
        trainer.fit()


def test_a_checkpoint_that_cannot_be_saved_names_the_last_one_and_the_way_on(tmp_path, monkeypatch):
    def full_disk(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_checkpoint", full_disk)
    with pytest.raises(CheckpointError, match=r"No space left on device.*no checkpoint was saved yet.*--resume"):
        _trainer(tmp_path, monkeypatch).fit()
    assert not (tmp_path / "run" / ".lock").exists()  # released on the way out


def test_a_fresh_run_does_not_replace_an_earlier_runs_exported_models(tmp_path, monkeypatch):
    # without checkpoints (an average ensemble, checkpoints removed to save space) the earlier run's best/ and
    # final/ were overwritten silently
    import shutil

    first = _trainer(tmp_path, monkeypatch).fit()
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    weights = (first.best_dir / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"holds the exported model\(s\) best/ and final/ of an earlier run"):
        _trainer(tmp_path, monkeypatch).fit()
    assert (first.best_dir / "model.safetensors").read_bytes() == weights
