"""Review tests (logpath): what a run leaves for monitoring, metrics.jsonl and the progress lines, across a resume."""

from __future__ import annotations

import io
import json
import sys

import pytest
from test_train_support import (  # noqa: F401  (one_thread: autouse fixture)
    SyntheticDataset,
    install_tiny,
    one_thread,
    write_corpus,
    write_tiny_recipe,
)

from sddkit import progress


def _metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _tb_steps(out, tag: str) -> list[int]:
    """The steps of ``tag`` in the run's TensorBoard log, as TensorBoard reads it (after a resume's purge)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


@pytest.mark.parametrize("val_every", [4, None])
def test_a_validation_that_failed_on_a_val_file_is_taken_by_the_resume(tmp_path, monkeypatch, capsys, val_every):
    # a val file that cannot be read stops the run at its step's validation, after saving that step (so a resume
    # goes on from it); the resume went on with the next step, and that validation was never run: missing from
    # metrics.jsonl and TensorBoard, and out of the choice of best/ (another best/ than the uninterrupted run's)
    from sddkit.cli.main import main

    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "c", n=24, samples=2400)
    val = write_corpus(tmp_path / "c", n=12, samples=2400, seed=1, partition="val")
    every = [] if val_every is None else [f"trainer.val_every={val_every}"]
    recipe = write_tiny_recipe(tmp_path, train, val, tmp_path / "straight", epochs=2)  # 6 steps an epoch
    assert main(["train", recipe, *every]) == 0
    straight = _metrics(tmp_path / "straight")

    bad = tmp_path / "c" / "val_1_0003.wav"
    good = bad.read_bytes()
    bad.write_bytes(b"not audio at all")
    assert main(["train", recipe, "trainer.out_dir=" + str(tmp_path / "run"), *every]) == 2
    first = straight[0]["step"]
    assert f"read by the validation at step {first}" in capsys.readouterr().err
    bad.write_bytes(good)  # restored, as the error says
    assert main(["train", recipe, "trainer.out_dir=" + str(tmp_path / "run"), *every, "--resume"]) == 0

    resumed = _metrics(tmp_path / "run")
    assert [m["step"] for m in resumed] == [m["step"] for m in straight]
    assert resumed == straight  # on CPU the resume continues bit for bit
    assert _tb_steps(tmp_path / "run", "val/eer") == [m["step"] for m in straight]
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["metadata"]
    assert (
        best["best_step"]
        == json.loads((tmp_path / "straight" / "best" / "config.json").read_text())["metadata"]["best_step"]
    )


def test_the_progress_lines_give_the_val_eer_in_percent_also_after_a_resume(tmp_path, monkeypatch):
    # `sdd train ... 2> train.log`: the line read "train: 4/8 it (50%), ..., val_eer=0.2500", a fraction without
    # its unit beside the bar's percent, where the summary says "best val EER: 25.00%"; a resumed run's lines had
    # no val EER until its first validation
    from test_train import _recipe

    from sddkit.training.trainer import Trainer

    install_tiny(monkeypatch)
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # a line at every step
    trainer = {"epochs": 1, "progress": True, "val_every": 2}
    run = Trainer(_recipe(tmp_path, trainer=trainer), train_data=SyntheticDataset(32), val_data=SyntheticDataset(24))
    result = run.fit()
    lines = [ln for ln in log.getvalue().splitlines() if ln.startswith("train: ")]
    eers = {m["step"]: m["val_eer"] for m in _metrics(tmp_path / "run")}
    assert lines and lines[-1].endswith(f", val_eer={100 * eers[result.step]:.2f}%"), lines

    log.seek(0)
    log.truncate()
    more = {**trainer, "epochs": 2}
    Trainer(
        _recipe(tmp_path, trainer=more), train_data=SyntheticDataset(32), val_data=SyntheticDataset(24), resume=True
    ).fit()
    lines = [ln for ln in log.getvalue().splitlines() if ln.startswith("train: ")]
    assert lines[0].startswith(f"train: {result.step + 1}/") and lines[0].endswith(
        f", val_eer={100 * eers[result.step]:.2f}%"
    ), lines
