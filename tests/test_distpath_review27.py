"""Distributed scoring (review distpath): a torchrun resume with --windows treats rows whose windows were lost as a
one-process resume does, and the shard merge keeps the rows whose windows it merges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.scoring import batch


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _env(monkeypatch, **values: str) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def _score(monkeypatch, capsys, inputs: list[str], model: Path, out: Path, **env: str) -> str:
    """``sdd score --windows`` (as rank ``RANK`` of ``WORLD_SIZE`` without a rendezvous when ``env`` names them);
    its stderr."""
    from sddkit.cli.main import main

    _env(monkeypatch, **env)
    capsys.readouterr()
    args = ["score", *inputs, "--model", str(model), "--out", str(out), "--quiet", "--threads", "1", "--windows"]
    assert main(args) == 0
    return capsys.readouterr().err


def _windows_by_path(out: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for r in batch.iter_rows(batch.windows_path(out)):
        found.setdefault(r["path"], []).append(float(r["score"]))
    return found


def test_a_torchrun_resume_scores_again_the_rows_whose_windows_were_lost(tmp_path, model_dir, monkeypatch, capsys):
    # s.windows.csv deleted (or replaced) after a run: a one-process resume scores those files again (a note says
    # so); under torchrun every rank counted the merged rows as done, and the merged output kept 4 rows without
    # windows, exit 0 and nothing said
    clips = [str(write_noise_wav(tmp_path / f"f{i}.wav", 0.6 + 0.3 * i, i)) for i in range(4)]
    out = tmp_path / "s.csv"
    _score(monkeypatch, capsys, clips, model_dir, out)
    batch.windows_path(out).unlink()
    notes = [_score(monkeypatch, capsys, clips, model_dir, out, WORLD_SIZE="2", RANK=str(r)) for r in (0, 1)]
    assert all("2 file(s) of" in n and "they are scored again" in n for n in notes)
    summaries = [json.loads(line) for n in notes for line in n.splitlines() if line.startswith("{")]
    assert [s["scored"] for s in summaries] == [2, 2]
    rows = list(batch.iter_rows(out))
    assert [r["path"] for r in rows] == clips  # each file once, in input order
    windows = _windows_by_path(out)
    assert sorted(windows) == sorted(clips)
    for r in rows:  # the rows of the files scored again: their score is their windows' mean
        assert len(windows[r["path"]]) == int(r["n_windows"])
        assert float(r["score"]) == pytest.approx(sum(windows[r["path"]]) / len(windows[r["path"]]), abs=1e-9)
    assert not list(tmp_path.glob("s.csv.rank*")) and not list(tmp_path.glob("s.windows.csv.rank*"))
    # run again on 3 ranks: every row has its windows now, none is scored again
    for rank in (0, 1, 2):
        err = _score(monkeypatch, capsys, clips, model_dir, out, WORLD_SIZE="3", RANK=str(rank))
        summary = next(json.loads(line) for line in err.splitlines() if line.startswith("{"))
        assert "no windows" not in err and summary["scored"] == 0
    assert [r["path"] for r in batch.iter_rows(out)] == clips


def test_a_resume_from_another_folder_writes_every_shard_relative_to_the_earlier_runs_folder(
    tmp_path, model_dir, monkeypatch, capsys
):
    # a 2-rank run stopped before its merge, resumed on 3 ranks from another folder: a rank whose shard held no rows
    # wrote its paths relative to its own folder (../a/f0.wav) where the merge reads them against the earlier run's,
    # and read the other shards' rows against its own folder, so scored their files again: the merged output held
    # rows twice and rows naming files that are not there, and warned that inputs had no row
    for i in range(6):
        write_noise_wav(tmp_path / "a" / f"f{i}.wav", 0.6, i)
    (tmp_path / "sub").mkdir()
    out = tmp_path / "s.csv"
    monkeypatch.chdir(tmp_path)
    _score(monkeypatch, capsys, [f"a/f{i}.wav" for i in range(6)], model_dir, out, WORLD_SIZE="2", RANK="1")
    Path(f"{out}.rank1.done").unlink()  # stopped before the merge; rank 0 never ran
    monkeypatch.chdir(tmp_path / "sub")
    summaries, notes = [], ""
    for rank in (0, 1, 2):
        err = _score(
            monkeypatch,
            capsys,
            [f"../a/f{i}.wav" for i in range(6)],
            model_dir,
            Path("../s.csv"),
            WORLD_SIZE="3",
            RANK=str(rank),
        )
        notes += err
        summaries += [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [s["skipped"] for s in summaries] == [1, 1, 1]  # f3, f1, f5: scored by the earlier rank 1
    assert "warning" not in notes and "not among these inputs" not in notes
    assert [r["path"] for r in batch.iter_rows(out)] == [f"a/f{i}.wav" for i in range(6)]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")


def test_the_merge_keeps_the_row_whose_windows_it_merges(tmp_path):
    # the output's row of a.wav lost its windows and a rank scored a.wav again: the merge kept the output's row,
    # beside the new windows, whose mean is a score that row does not hold
    out = tmp_path / "s.csv"
    header = ["path", "score", "error"]
    _write_csv(out, header, [["a.wav", "1.0", ""], ["b.wav", "2.0", ""]])
    _write_csv(batch.windows_path(out), batch.WINDOW_COLUMNS, [["b.wav", "0", "0.0", "1.0", "2.0"]])
    _write_csv(batch.shard_path(out, 0), header, [["a.wav", "1.5", ""]])
    _write_csv(
        batch.windows_path(batch.shard_path(out, 0)), batch.WINDOW_COLUMNS, [["a.wav", "0", "0.0", "1.0", "1.5"]]
    )
    _write_csv(batch.shard_path(out, 1), header, [])
    for rank in (0, 1):
        batch.mark_shard_done(out, rank, 2, 1 - rank)
    assert batch.merge_shards(out, order=["a.wav", "b.wav"]) == 2
    assert [(r["path"], r["score"]) for r in batch.iter_rows(out)] == [("a.wav", "1.5"), ("b.wav", "2.0")]
    assert _windows_by_path(out) == {"a.wav": [1.5], "b.wav": [2.0]}


def _resumed_trainer(rank: int):
    """The parts of a Trainer of rank ``rank`` of 2 that a resume's re-planning reads: 3 batches of 4 into epoch 1,
    a warm-up longer than the run."""
    from types import SimpleNamespace

    import torch

    from sddkit.training.distributed import DistInfo
    from sddkit.training.recipe import ScheduleConfig
    from sddkit.training.trainer import TrainState

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    recipe = SimpleNamespace(data=SimpleNamespace(batch_size=4), schedule=ScheduleConfig(warmup_steps=100))
    return SimpleNamespace(
        info=DistInfo(rank=rank, world_size=2, local_rank=rank),
        state=TrainState(step=11, epoch=1, batch_in_epoch=3),
        recipe=recipe,
        cfg=SimpleNamespace(epochs=3, max_steps=None),
        steps_per_epoch=8,
        optimizer=optimizer,
    )


def test_a_torchrun_resume_says_its_warnings_once_not_once_a_rank(caplog):
    # `torchrun --nproc_per_node 3 -m sddkit.cli.main train ... --resume` printed "epoch 1 was saved after 3 batches
    # ..." and "schedule.warmup_steps=100 but the run plans ..." three times each (the other ranks log warnings)
    import logging

    from sddkit.training.trainer import Trainer

    said = {}
    for rank in (0, 1):
        t = _resumed_trainer(rank)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sddkit.training"):
            Trainer._carry_epoch_position(t, {"data": {"batch_size": 4}}, 1)  # saved by one process
            Trainer._replan(t)
        said[rank] = [r.getMessage() for r in caplog.records]
        assert t.state.batch_in_epoch == 2  # 12 items seen: batch 2 of 4 on each of 2, on every rank alike
    assert [m.split(" ")[0] for m in said[0]] == ["epoch", "schedule.warmup_steps=100"]
    assert said[1] == []
