"""Review 23 of the training loop (trainer23): best/ exported after a resume that changed a model setting the
weights' shapes do not show, a divergence before any checkpoint, a full disk met by the TensorBoard log,
a data.domain_column the data lacks."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
    write_corpus,
)

from sddkit.config import from_dict
from sddkit.errors import CheckpointError, ConfigError, TrainingDivergedError
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(out: Path, *, dropout: float, pretrained: str, val_crop: int | None = None) -> TrainRecipe:
    return from_dict(
        TrainRecipe,
        {
            "model": {
                "frontend": {"name": "tiny_test", "dropout": dropout, "pretrained": pretrained},
                "backend": {"name": "tiny_test_head"},
            },
            "data": {"batch_size": 8, "val_crop_samples": val_crop},
            "trainer": {"max_steps": 4, "val_every": 2, "out_dir": str(out), "progress": False},
        },
    )


def _fit(recipe: TrainRecipe, resume: bool = False):
    return Trainer(recipe, train_data=SyntheticDataset(40), val_data=SyntheticDataset(18, seed=9), resume=resume).fit()


def _config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


def test_best_keeps_the_model_config_and_window_its_checkpoint_was_validated_with(tmp_path, monkeypatch):
    # `sdd train --resume model.frontend.f_min=3000` (any setting that leaves the weights' shapes alone) was accepted,
    # and best/, a checkpoint trained and validated under the old value, was exported under the new one: it scored
    # otherwise than its metadata.val_eer said (0.25 against 0.375 on a tiny LCNN), while its train_recipe gave the
    # old value. Its encoder folder, moved and named anew with the resume, is today's.
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(_recipe(out, dropout=0.0, pretrained="/old/encoder"))
    _fit(_recipe(out, dropout=0.5, pretrained="/new/encoder", val_crop=320), resume=True)
    best, final = _config(out / "best"), _config(out / "final")
    assert best["metadata"]["train_recipe"]["model"]["frontend"]["dropout"] == 0.0
    assert best["model"]["frontend"]["dropout"] == 0.0  # was 0.5: today's
    assert best["model"]["frontend"]["pretrained"] == "/new/encoder"
    assert best["inference"]["window_samples"] == 64600  # the val crop its val_eer was measured with (was 320)
    # final/ holds the last weights of the latest session: its config and window are that session's
    assert final["model"]["frontend"]["dropout"] == 0.5
    assert final["model"]["frontend"]["pretrained"] == "/new/encoder"
    assert final["inference"]["window_samples"] == 320


class _NaNData(SyntheticDataset):
    """Every item's waveform is NaN: the first step's loss and gradient are."""

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["waveform"] = torch.full_like(item["waveform"], float("nan"))
        return item


def test_a_divergence_before_any_checkpoint_does_not_say_resume_from_it(tmp_path, monkeypatch):
    # "no checkpoint was saved yet (resume from it with a lower optimizer.lr, ...)": there was nothing to resume from
    install_tiny(monkeypatch)
    recipe = _recipe(tmp_path / "run", dropout=0.0, pretrained="/enc")
    trainer = Trainer(recipe, train_data=_NaNData(40), val_data=SyntheticDataset(18, seed=9))
    with pytest.raises(TrainingDivergedError) as info:
        trainer.fit()
    message = str(info.value)
    assert message.startswith("step 1: non-finite")
    assert "no checkpoint was saved yet (train again with a lower optimizer.lr" in message
    assert "resume" not in message


# --- a full disk met by the TensorBoard log ---------------------------------------------------------------------------
def _disk_full(*_args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_met_by_the_tensorboard_log_says_what_is_kept_and_how_to_go_on(tmp_path, monkeypatch):
    # the log is written every trainer.log_every steps, far more often than checkpoints: on a filling disk it is the
    # first write to fail, and the run died with a bare OSError traceback out of tensorboard's writer
    from tensorboard.summary.writer import event_file_writer

    install_tiny(monkeypatch)
    out = tmp_path / "run"
    real = event_file_writer._AsyncWriter.write

    def write(self, data):  # the events up to the first checkpoint are written, then the disk is full
        if (out / "checkpoints" / "latest").exists():
            _disk_full()
        real(self, data)

    monkeypatch.setattr(event_file_writer._AsyncWriter, "write", write)
    recipe = _recipe(out, dropout=0.0, pretrained="/enc")
    recipe.trainer.max_steps, recipe.trainer.log_every = 8, 1
    with pytest.raises(CheckpointError) as info:
        _fit(recipe)
    message = str(info.value)
    assert f"cannot save the TensorBoard log under {out / 'tb'}" in message
    assert "No space left on device" in message
    assert "the last checkpoint is" in message and "step-00000002" in message and "--resume" in message
    monkeypatch.setattr(event_file_writer._AsyncWriter, "write", real)
    assert _fit(recipe, resume=True).step == 8  # and --resume goes on from it


def test_a_finished_run_whose_tensorboard_log_cannot_be_flushed_at_its_end_is_not_failed(tmp_path, monkeypatch, caplog):
    # closing the writer flushes its last events: an OSError there replaced a finished run's result (best/ and final/
    # exported) with a traceback, or, during another error, hid that error
    from tensorboard.summary.writer import event_file_writer

    install_tiny(monkeypatch)
    out = tmp_path / "run"
    real = event_file_writer._AsyncWriter.flush

    def flush(self):  # SummaryWriter flushes when it opens: the disk is full once the models are exported
        if (out / "final").is_dir():
            _disk_full()
        real(self)

    monkeypatch.setattr(event_file_writer._AsyncWriter, "flush", flush)
    result = _fit(_recipe(out, dropout=0.0, pretrained="/enc"))
    assert result.step == 4 and (out / "best" / "config.json").is_file() and (out / "final" / "config.json").is_file()
    assert "the TensorBoard log under" in caplog.text and "is incomplete" in caplog.text


# --- data.domain_column ----------------------------------------------------------------------------------------------
def test_a_domain_column_the_data_lacks_is_refused_naming_the_option_before_the_preload(tmp_path, monkeypatch):
    # `data.domain_column=sorce` with decode_cache: preload (the bundled recipe's) decoded the whole training set, then
    # failed with "utterance table has no column 'sorce'", naming no recipe key
    from sddkit.data.dataset import CachedWaveforms
    from sddkit.training.data import build_dataset, read_train_table
    from sddkit.training.recipe import DataConfig, ProtocolSpec

    csv = write_corpus(tmp_path / "corpus", n=6)
    decoded: list[int] = []
    monkeypatch.setattr(CachedWaveforms, "from_table", lambda table, **_: decoded.append(len(table)))
    cfg = DataConfig(train=ProtocolSpec(str(csv), "utterance_table"), decode_cache="preload", domain_column="sorce")
    table = read_train_table(cfg)
    with pytest.raises(
        ConfigError,
        match=r"data.domain_column: the training data has no column 'sorce' \(did you "
        r"mean 'source'\?\)",
    ):
        build_dataset(table, cfg, train=True, seed=0)
    assert not decoded
