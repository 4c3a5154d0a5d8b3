"""Review 28 of training on a messy corpus (badtrain): files that are there but fail to load (corrupt, header only,
digital silence), which the preflight (a stat and an open) lets through.

A preload stopped at the first such file, one rerun (and one whole preload) per bad file; with decode_cache none or
lazy the run stopped when a batch first drew one, naming its path only, and the steps taken since the last
checkpoint (up to an epoch) were lost, though a resume that leaves the file out goes on from them."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_train_support import (
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
    write_corpus,
)

from sddkit.config import from_dict
from sddkit.data.dataset import CachedWaveforms
from sddkit.data.protocols import read_protocol
from sddkit.errors import AudioDecodeError, AudioError
from sddkit.training import checkpoint as ckpt
from sddkit.training.data import build_dataset, epoch_batches, read_train_table
from sddkit.training.distributed import DistInfo
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer

_TINY = {"frontend": {"name": "tiny_test"}, "backend": {"name": "tiny_test_head"}}


def _spoil(path: str, how: str) -> None:
    """Make the audio file ``path`` fail to load while it stays a non-empty file the preflight accepts."""
    if how == "corrupt":
        Path(path).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" + bytes(range(200)))
    elif how == "header_only":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    else:  # digital silence
        sf.write(path, np.zeros(4000, dtype=np.float32), 16000)


def test_a_preload_names_every_file_that_fails_to_load_in_one_error(tmp_path):
    table = read_protocol(write_corpus(tmp_path / "c", n=9, samples=1600), "utterance_table")
    ids, paths = list(table.column("utt_id")), list(table.column("path"))
    for i, how in ((1, "corrupt"), (4, "header_only"), (7, "silent")):
        _spoil(paths[i], how)
    with pytest.raises(AudioDecodeError) as err:  # the first failure's type
        CachedWaveforms.from_table(table)
    message = str(err.value)
    assert message.startswith("3 of the 9 audio files fail to load")  # was the first one's error alone
    for i in (1, 4, 7):
        assert repr(ids[i]) in message and paths[i] in message
    assert "zero samples" in message and "silent" in message  # each with why
    assert f"exclude: {{utt_id: [{ids[1]!r}, {ids[4]!r}, {ids[7]!r}]}}" in message


def test_the_recipes_preload_says_which_data_fails_to_load(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    table = read_protocol(write_corpus(tmp_path / "c", n=6, samples=1600), "utterance_table")
    _spoil(table.column("path")[2], "silent")
    recipe = from_dict(TrainRecipe, {"model": _TINY, "data": {"decode_cache": "preload"}})
    with pytest.raises(AudioError, match=r"^data\.decode_cache=preload, evaluation data: 1 of the 6 audio files"):
        build_dataset(table, recipe.data, train=False, seed=0)


def _recipe(tmp_path: Path, out: Path, *, workers: int, exclude: list[str] | None = None) -> TrainRecipe:
    """Two epochs of the tiny model over 24 training files (6 steps an epoch), validated on 6 at each epoch's end;
    the corpora are written on the first call, then kept as they are (spoiled files included)."""
    train, val = tmp_path / "train" / "train_0.csv", tmp_path / "val" / "val_1.csv"
    if not train.exists():
        assert write_corpus(train.parent, n=24, samples=1600, seed=0) == train
        assert write_corpus(val.parent, n=6, samples=1600, seed=1, partition="val") == val
    spec = {"protocol": str(train), "format": "utterance_table"}
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": _TINY,
            "data": {
                "train": {**spec, **({"exclude": {"utt_id": exclude}} if exclude else {})},
                "val": {"protocol": str(val), "format": "utterance_table"},
                "crop_samples": 640,
                "batch_size": 4,
                "num_workers": workers,
            },
            "trainer": {"epochs": 2, "out_dir": str(out), "progress": False, "device": "cpu"},
        },
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_a_training_file_failing_mid_run_keeps_the_steps_taken_and_says_how_to_go_on(
    tmp_path, monkeypatch, caplog, workers
):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, out, workers=workers)
    table = read_train_table(recipe.data)
    # a file of the epoch's third batch: two steps are taken before a batch draws it (validation comes at the
    # epoch's end, so no checkpoint holds them)
    dataset = build_dataset(table, recipe.data, train=True, seed=recipe.seed)
    batches = list(epoch_batches(dataset, recipe.data, seed=recipe.seed, epoch=0, info=DistInfo()))
    row = int(batches[2][0])
    bad_id, bad_path = str(table.column("utt_id")[row]), str(table.column("path")[row])
    _spoil(bad_path, "corrupt")

    trainer = Trainer(recipe)
    with pytest.raises(AudioDecodeError) as err:
        trainer.fit()
    message = str(err.value)
    assert trainer.state.step == 2
    # the steps taken are saved (no checkpoint at all before)
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    assert latest is not None and Path(latest).name == "step-00000002"
    assert message.startswith(f"data.train utterance {bad_id!r}: {bad_path}: not a readable audio file")
    assert "read for step 3" in message and f"the last checkpoint is {latest}" in message
    override = re.search(r"\('(data\.train\.exclude\.utt_id=\[.*?\])'\)", message)
    assert override is not None and json.loads(override.group(1).split("=", 1)[1]) == [bad_id]
    assert message.endswith("continue with --resume")

    # the override it gives, as a resume takes it, goes on from step 2 and finishes the run (the file still spoilt)
    caplog.set_level(logging.INFO, logger="sddkit.training")
    resumed = Trainer(_recipe(tmp_path, out, workers=workers, exclude=[bad_id]), resume=True)
    resumed.fit()
    assert f"resumed from {latest} (step 2, epoch 0)" in caplog.text
    assert resumed.state.epoch == 2 and (out / "best").is_dir()


@pytest.mark.parametrize("cv", [False, True])
def test_a_validation_file_failing_keeps_the_epoch_trained_before_it(tmp_path, monkeypatch, cv):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, out, workers=0)
    val = read_protocol(recipe.data.val.protocol, "utterance_table")  # type: ignore[union-attr]
    bad_id, bad_path = str(val.column("utt_id")[3]), str(val.column("path")[3])
    _spoil(bad_path, "header_only")
    trainer = Trainer(recipe)
    if cv:  # as sdd cv runs a fold: a rerun resumes it, and refuses another recipe (an exclude added)
        trainer.resume_with = "a rerun of the same `sdd cv` command"
        trainer.resume_takes_overrides = False
    with pytest.raises(AudioError) as err:
        trainer.fit()
    # the first validation, at the end of the first epoch (6 steps): those steps were lost
    assert trainer.state.step == 6
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    assert latest is not None and Path(latest).name == "step-00000006"
    message = str(err.value)
    assert message.startswith(f"data.val utterance {bad_id!r}: {bad_path}: decodes to zero samples")
    assert "read by the validation at step 6" in message
    if cv:
        assert "exclude" not in message
        assert message.endswith("continue with a rerun of the same `sdd cv` command, or leave it out and start anew")
    else:
        assert f"'data.val.exclude.utt_id=[\"{bad_id}\"]'" in message


def test_a_failing_file_that_data_val_lists_too_is_left_out_of_both(tmp_path, monkeypatch):
    # a whole protocol as data.val (warned of, and accepted): the file would stop the first validation too
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, out, workers=0)
    recipe.data.val = recipe.data.train
    table = read_train_table(recipe.data)
    bad_id, bad_path = str(table.column("utt_id")[5]), str(table.column("path")[5])
    _spoil(bad_path, "silent")
    with pytest.raises(AudioError) as err:
        Trainer(recipe).fit()
    message = str(err.value)
    assert message.startswith(f"data.train utterance {bad_id!r}: {bad_path}: silent")
    assert f"('data.train.exclude.utt_id=[\"{bad_id}\"]'; 'data.val.exclude.utt_id=[\"{bad_id}\"]')" in message
