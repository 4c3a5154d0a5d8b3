"""Review tests: nothing lost on a crash or a full disk (training exports and logs, checkpoint averaging, score
outputs, the shard merge of ranks started without a process group)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from scoring_support import save_tiny_lcnn, write_noise_wav
from test_train_support import (
    SyntheticDataset,
    install_tiny,
    one_thread,  # noqa: F401  (autouse fixture: one intra-op thread)
)

from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.errors import CheckpointError, ProtocolError
from sddkit.scoring import batch
from sddkit.training import checkpoint as ckpt
from sddkit.training import trainer as trainer_module
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _no_space(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --- training -------------------------------------------------------------------------------------------------
def _recipe(out: Path, **trainer: Any) -> TrainRecipe:
    settings = {"epochs": 100, "max_steps": 6, "val_every": 2, "out_dir": str(out), "progress": False, **trainer}
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": {"frontend": {"name": "tiny_test"}, "backend": "tiny_test_head"},
            "data": {"batch_size": 8},
            "trainer": settings,
        },
    )


def _fit(out: Path, resume: bool = False, **trainer: Any) -> Trainer:
    run = Trainer(
        _recipe(out, **trainer), train_data=SyntheticDataset(48), val_data=SyntheticDataset(24, seed=9), resume=resume
    )
    run.fit()
    return run


def test_a_full_disk_while_exporting_is_a_clear_error_and_a_resume_exports(tmp_path, monkeypatch):
    # before: the OSError of save_model_dir escaped as a traceback, without a word of what was kept
    install_tiny(monkeypatch)
    monkeypatch.setattr(trainer_module, "save_model_dir", _no_space)
    with pytest.raises(CheckpointError, match=r"cannot save the model directory .*final.*No space left.*--resume"):
        _fit(tmp_path / "run")
    monkeypatch.undo()
    install_tiny(monkeypatch)
    resumed = _fit(tmp_path / "run", resume=True)
    assert resumed.state.step == 6
    assert (tmp_path / "run" / "final" / "config.json").is_file() and (tmp_path / "run" / "best").is_dir()


def test_a_metrics_log_that_cannot_be_written_is_a_clear_error_and_the_resume_rewrites_it(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    real_open_run = Trainer._open_run

    def then_the_log_breaks(self, resumed_from):
        real_open_run(self, resumed_from)
        (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "metrics.jsonl").mkdir()  # appending to it now fails as a full disk would

    monkeypatch.setattr(Trainer, "_open_run", then_the_log_breaks)
    with pytest.raises(CheckpointError, match=r"cannot save .*metrics\.jsonl.*the last checkpoint is .*step-00000001"):
        _fit(out, save_every=1)
    monkeypatch.setattr(Trainer, "_open_run", real_open_run)
    (out / "metrics.jsonl").rmdir()
    _fit(out, resume=True, save_every=1)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


@pytest.mark.parametrize("damage", [b"\xff\xfe{", b'{"sessions": 3}'])
def test_a_damaged_run_record_does_not_stop_a_resume(tmp_path, monkeypatch, damage):
    # before: run.json with bytes that are not UTF-8 (or sessions that are not a list) failed every --resume
    # with a bare UnicodeDecodeError / TypeError, while a truncated one was taken in stride
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, max_steps=2)
    (out / "run.json").write_bytes(damage)
    assert _fit(out, resume=True, max_steps=4).state.step == 4
    sessions = json.loads((out / "run.json").read_text())["sessions"]
    assert [s["resumed_from"] for s in sessions] == ["step-00000002"]


def test_averaging_checkpoints_of_different_models_names_them(tmp_path, monkeypatch):
    # before: torch.stack failed with "stack expects each tensor to be equal size" at the very end of the run
    install_tiny(monkeypatch)
    out = tmp_path / "run"
    _fit(out, keep_top_k=3)
    root = out / "checkpoints"
    latest = ckpt.latest_checkpoint(root)
    ranked = [e["name"] for e in ckpt.load_checkpoint(latest)["trainer"]["ranked"]]
    assert len(ranked) == 3
    # the latest one must still load for the resume, the best one for best/
    other = next(n for n in ranked[1:] if n != latest.name)
    state = ckpt.load_checkpoint(root / other)
    key = next(k for k, v in state["model"].items() if v.dim() == 2)
    state["model"][key] = torch.zeros(state["model"][key].shape[0] + 1, state["model"][key].shape[1])
    ckpt.save_checkpoint(root, other, state, update_latest=False)
    for d in ("best", "final"):
        for f in (out / d).iterdir():
            f.unlink()
        (out / d).rmdir()
    with pytest.raises(CheckpointError, match=rf"cannot average checkpoints .*{other}.*{key}.*average_top_k=1"):
        _fit(out, resume=True, keep_top_k=3, average_top_k=3)
    _fit(out, resume=True, keep_top_k=3, average_top_k=1)  # what the message says to do
    assert (out / "final" / "config.json").is_file()


def test_a_checkpoint_document_without_its_state_is_reported(tmp_path):
    ckpt.save_checkpoint(tmp_path, "step-1", {"w": torch.ones(2)})
    (tmp_path / "step-1" / ckpt.STATE_JSON).write_text('{"format": "sddkit-checkpoint", "format_version": 1}')
    with pytest.raises(CheckpointError, match=r"state\.json: not a complete checkpoint \(no 'state' object\)"):
        ckpt.load_checkpoint(tmp_path / "step-1")


def test_a_damaged_latest_pointer_is_reported(tmp_path):
    # before: a bare UnicodeDecodeError (or "embedded null byte" from the file system) named no file
    ckpt.save_checkpoint(tmp_path, "step-1", {"w": torch.ones(2)})
    for damage in (b"\xff\xfe", b"step-1\x00\x00"):
        (tmp_path / ckpt.LATEST).write_bytes(damage)
        with pytest.raises(CheckpointError, match=r"latest: invalid checkpoint pointer"):
            ckpt.latest_checkpoint(tmp_path)


def test_an_unreadable_latest_pointer_is_one_line(tmp_path, monkeypatch):
    # another user's run folder (a pointer of mode 0600; the tests run as root, who reads it anyway): the
    # PermissionError of read_text came out as a traceback
    import errno
    from pathlib import Path

    ckpt.save_checkpoint(tmp_path, "step-1", {"w": torch.ones(2)})
    real = Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == ckpt.LATEST:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(CheckpointError, match=r"latest: cannot read the checkpoint pointer: Permission denied"):
        ckpt.latest_checkpoint(tmp_path)


# --- scoring --------------------------------------------------------------------------------------------------
class _FillsUp:
    """A file on a disk that fills up: the next write lands half, then fails with ENOSPC."""

    def __init__(self, real):  # type: ignore[no-untyped-def]
        self._real = real

    def write(self, text: str) -> int:
        self._real.write(text[: len(text) // 2])
        self._real.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_full_disk_while_scoring_is_a_clear_error_and_the_restart_goes_on(tmp_path, suffix):
    # before: a bare OSError (raised again by the sync and the close on the way out) instead of one clear line
    out = tmp_path / f"s.{suffix}"
    columns = batch.output_columns([])
    writer = batch.ScoreWriter(out, columns)
    writer.write(str(tmp_path / "a.wav"), None, error="unreadable")
    writer._f = _FillsUp(writer._f)
    if writer._csv is not None:
        writer._csv = batch.RowWriter(writer._f)
    with pytest.raises(ProtocolError, match=rf"cannot write {out}: No space left on device.*run the same command"):
        with writer:
            writer.write(str(tmp_path / "b.wav"), None, error="unreadable too")
    with pytest.raises(ProtocolError, match="No space left"):  # nothing is appended after a row cut short
        writer.write(str(tmp_path / "c.wav"), None, error="x")
    assert not out.read_bytes().endswith(b"\n")  # b.wav's row was cut short
    restarted = batch.ScoreWriter(out, columns)
    try:
        assert restarted.done == {str(tmp_path / "a.wav")}  # b.wav is scored again
    finally:
        restarted.close()
    assert [r["path"] for r in batch.read_rows(out)[1]] == [str(tmp_path / "a.wav")]


def test_a_rank_killed_while_merging_does_not_stop_later_merges(tmp_path, monkeypatch):
    # before: ranks without a process group merged under an O_EXCL file; a rank killed while merging left it, and
    # every later run skipped the merge without a word (exit 0, the shards left unmerged)
    model = save_tiny_lcnn(tmp_path / "model")
    wavs = [str(write_noise_wav(tmp_path / f"{n}.wav", 0.6, i)) for i, n in enumerate("ab")]
    out = tmp_path / "s.csv"
    Path(f"{out}.merge.lock").touch()  # what the killed rank left
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert main(["score", *wavs, "--model", str(model), "--out", str(out), "--quiet", "--workers", "0"]) == 0
    assert sorted(r["path"] for r in batch.read_rows(out)[1]) == sorted(wavs)
    assert not list(tmp_path.glob("s.csv.rank*"))


@pytest.mark.parametrize("resume", [True, False])
def test_checkpoints_whose_latest_pointer_was_deleted_are_not_pruned(tmp_path, monkeypatch, resume):
    # before: --resume found no pointer and started from scratch (a fresh run likewise), and the first save pruned
    # every checkpoint the deleted pointer had led to
    from sddkit.errors import ConfigError

    install_tiny(monkeypatch)
    _fit(tmp_path / "run", keep_top_k=2)
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / ckpt.LATEST).unlink()
    kept = sorted(d.name for d in checkpoints.iterdir() if d.is_dir())
    assert kept
    with pytest.raises(ConfigError, match=r"holds checkpoint\(s\) .*step-.* but no 'latest' pointer"):
        _fit(tmp_path / "run", resume=resume)
    assert sorted(d.name for d in checkpoints.iterdir() if d.is_dir()) == kept
