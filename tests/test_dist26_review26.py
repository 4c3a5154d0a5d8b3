"""Distributed runs (review dist26): torchrun's environment checked with one clear line; shards of a stopped run
read by a resume as the merge reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.errors import ConfigError
from sddkit.scoring import batch
from sddkit.training.distributed import DistInfo, dist_info_from_env, init_process_group


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _env(monkeypatch, **values: str | None) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        if value is not None:
            monkeypatch.setenv(name, value)


def _main(*args: str) -> int:
    from sddkit.cli.main import main

    return main(list(args))


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
        ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x' is not a whole number"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 with WORLD_SIZE=2: a rank is 0 to 1"),
    ],
)
def test_sdd_score_says_which_torchrun_variable_is_wrong_instead_of_a_traceback(
    tmp_path, model_dir, monkeypatch, capsys, env, said
):
    # int("two") was a ValueError traceback out of batch.dist_env
    clip = write_noise_wav(tmp_path / "a.wav", 0.6, 0)
    _env(monkeypatch, **env)
    assert _main("score", str(clip), "--model", str(model_dir), "--out", str(tmp_path / "s.csv"), "--quiet") == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not list(tmp_path.glob("s.csv*"))


def test_world_size_without_rank_is_refused_not_taken_as_rank_0(tmp_path, model_dir, monkeypatch, capsys):
    # WORLD_SIZE=2 alone (a SLURM script exporting WORLD_SIZE=$SLURM_NTASKS, no RANK): every process took rank 0,
    # scored rank 0's share into s.csv.rank0 and exited 0; the other half was never scored, nothing ever merged
    clips = [str(write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i)) for i in range(2)]
    _env(monkeypatch, WORLD_SIZE="2")
    assert _main("score", *clips, "--model", str(model_dir), "--out", str(tmp_path / "s.csv"), "--quiet") == 2
    assert "WORLD_SIZE=2 is set but RANK is not" in capsys.readouterr().err
    assert not list(tmp_path.glob("s.csv*"))
    with pytest.raises(ConfigError, match="RANK is not"):  # sdd train, sdd cv alike
        dist_info_from_env()
    _env(monkeypatch, WORLD_SIZE="1")  # one process: RANK may be left out
    assert dist_info_from_env() == DistInfo(0, 1, 0)
    _env(monkeypatch, WORLD_SIZE="2", RANK="1")
    assert dist_info_from_env() == DistInfo(1, 2, 1)


def test_a_process_group_without_master_addr_is_one_line_naming_the_variables(monkeypatch):
    # sdd train with WORLD_SIZE/RANK but no MASTER_ADDR/MASTER_PORT: torch's ValueError ("environment variable
    # MASTER_ADDR expected, but not set"), a traceback of 20 lines
    import torch

    _env(monkeypatch, WORLD_SIZE="2", RANK="0")
    with pytest.raises(ConfigError, match="MASTER_ADDR and MASTER_PORT are not set: start the processes with torchrun"):
        init_process_group(dist_info_from_env(), torch.device("cpu"))
    _env(monkeypatch, WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1")
    with pytest.raises(ConfigError, match="MASTER_PORT is not set"):
        init_process_group(dist_info_from_env(), torch.device("cpu"))


def _score_as(monkeypatch, capsys, rank: int, world: int, inputs: list[str], model: Path, out: Path) -> list[dict]:
    """`sdd score` as rank ``rank`` of ``world`` without a rendezvous (file-based merge); its summary lines."""
    _env(monkeypatch, WORLD_SIZE=str(world), RANK=str(rank))
    capsys.readouterr()
    assert _main("score", *inputs, "--model", str(model), "--out", str(out), "--quiet", "--threads", "1") == 0
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_resume_with_fewer_ranks_reads_a_shard_cut_short_as_the_merge_does(
    tmp_path, model_dir, monkeypatch, capsys, suffix
):
    # a 3-rank run stopped while rank 2 wrote a row (killed mid-write, a node lost): the resume with 2 ranks read
    # rank 2's shard as it was. A CSV row cut after its path counted as scored, the merge (which cuts the partial
    # line) dropped it: a file without a row. A JSONL one stopped both ranks ("not a JSON line; fix or remove it").
    clips = [str(write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i)) for i in range(6)]
    out = tmp_path / f"s.{suffix}"
    _score_as(monkeypatch, capsys, 2, 3, clips, model_dir, out)  # rank 2's share: f2, f5 (ranks 0, 1 never ran)
    Path(f"{out}.rank2.done").unlink()
    shard = batch.shard_path(out, 2)
    text = shard.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    assert "f5.wav" in last
    shard.write_text(text[: len(text) - len(last) - 1] + last[: last.index("f5.wav") + 12])  # cut after the path
    summaries = [_score_as(monkeypatch, capsys, r, 2, clips, model_dir, out)[0] for r in (0, 1)]
    assert sum(s["scored"] for s in summaries) == 5  # f2's row is kept, f5 is scored again
    rows = list(batch.iter_rows(out))
    assert sorted(Path(r["path"]).name for r in rows) == [f"f{i}.wav" for i in range(6)]
    assert all(r["score"] not in (None, "") for r in rows)
    assert not list(tmp_path.glob(f"s.{suffix}.rank*"))


def test_the_advice_beside_a_stopped_runs_shards_is_one_that_works(tmp_path, model_dir, monkeypatch, capsys):
    # a 2-rank run stopped before its ranks finished (no marker): a one-process run on its output told to "merge
    # what it wrote (sdd score --merge ...)", which was refused ("no finished shards to merge"), and a one-process
    # run is what torchrun --nproc_per_node=1 starts: nothing it said went on
    clips = [str(write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i)) for i in range(4)]
    out = tmp_path / "s.csv"
    _score_as(monkeypatch, capsys, 1, 2, clips, model_dir, out)  # rank 1 finished, rank 0 stopped
    Path(f"{out}.rank1.done").unlink()  # ... or rank 1 stopped too, before its marker
    _env(monkeypatch)
    assert _main("score", *clips, "--model", str(model_dir), "--out", str(out), "--quiet") == 2
    err = capsys.readouterr().err
    assert "resume that run under torchrun (2 or more processes" in err and "--merge" not in err
    assert _main("score", "--merge", "--out", str(out)) == 2
    assert "resume it under torchrun (2 or more processes" in capsys.readouterr().err
    # the advice, followed: rank 1's files are not scored again
    assert _score_as(monkeypatch, capsys, 1, 2, clips, model_dir, out)[0]["skipped"] == 2
    Path(f"{out}.rank1.done").unlink()
    # markers of 2 ranks, one missing: a resume with 3 is refused, naming the 2 that finishes it
    Path(f"{out}.rank0.done").write_text(json.dumps({"rank": 0, "world_size": 2, "rows": 0}))
    _env(monkeypatch, WORLD_SIZE="3", RANK="0")
    assert _main("score", *clips, "--model", str(model_dir), "--out", str(out), "--quiet") == 2
    assert "resume that run under torchrun (--nproc_per_node=2" in capsys.readouterr().err
    Path(f"{out}.rank0.done").unlink()
    _score_as(monkeypatch, capsys, 1, 2, clips, model_dir, out)
    _score_as(monkeypatch, capsys, 0, 2, clips, model_dir, out)  # the last rank to finish merges
    assert sorted(Path(r["path"]).name for r in batch.iter_rows(out)) == [f"f{i}.wav" for i in range(4)]


def test_a_finished_runs_shards_are_told_to_be_merged(tmp_path, model_dir, monkeypatch, capsys):
    # every rank marked its shard (the merging rank was stopped): --merge is what finishes it, and does
    clips = [str(write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i)) for i in range(3)]
    out = tmp_path / "s.csv"
    for rank in (0, 1):
        _score_as(monkeypatch, capsys, rank, 2, clips, model_dir, out)
    rows = out.read_text()
    out.unlink()
    for rank in (0, 1):
        batch.shard_path(out, rank).write_text("")  # what the merge read, back in place of the merged output
    (tmp_path / "s.csv.rank0").write_text(rows)
    for rank in (0, 1):
        Path(f"{out}.rank{rank}.done").write_text(json.dumps({"rank": rank, "world_size": 2, "rows": 0}))
    _env(monkeypatch)
    assert _main("score", *clips, "--model", str(model_dir), "--out", str(out), "--quiet") == 2
    assert "every one of its 2 ranks finished, so merge them (sdd score --merge" in capsys.readouterr().err
    assert _main("score", "--merge", "--out", str(out)) == 0
    assert sorted(Path(r["path"]).name for r in batch.iter_rows(out)) == [f"f{i}.wav" for i in range(3)]


def test_a_resume_with_more_ranks_scores_only_what_the_shards_lack(tmp_path, model_dir, monkeypatch, capsys):
    # a 2-rank run stopped before its merge, resumed on 3 ranks (more GPUs free now): each rank read only its own
    # shard, so the files of s.csv.rank0 that fell to ranks 1 and 2 now (f2, f4) were scored again
    clips = [str(write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i)) for i in range(6)]
    out = tmp_path / "s.csv"
    _score_as(monkeypatch, capsys, 0, 2, clips, model_dir, out)  # f0, f2, f4; rank 1 never ran
    Path(f"{out}.rank0.done").unlink()
    summaries = [_score_as(monkeypatch, capsys, r, 3, clips, model_dir, out)[0] for r in (0, 1, 2)]
    assert [s["scored"] for s in summaries] == [1, 1, 1]  # f3, f1, f5
    assert [s["skipped"] for s in summaries] == [1, 1, 1]  # f0, f4, f2
    rows = list(batch.iter_rows(out))
    assert [Path(r["path"]).name for r in rows] == [f"f{i}.wav" for i in range(6)]  # each once, in input order
    assert all(r["error"] == "" for r in rows)
    assert not list(tmp_path.glob("s.csv.rank*"))


def test_iter_whole_rows_leaves_out_a_row_being_written_and_the_file_as_it_is(tmp_path):
    shard = tmp_path / "s.csv.rank1"
    shard.write_text('path,score,error\na.wav,0.5,\n"new\nline.wav",0.25,\nb.wav,0.1')  # b.wav's row cut short
    assert [r["path"] for r in batch.iter_whole_rows(shard)] == ["a.wav", "new\nline.wav"]
    assert shard.read_text().endswith("b.wav,0.1")  # not cut: its rank may be writing it
    shard.write_text('path,score,error\na.wav,0.5,\n"cut\nshort')  # cut inside a quoted path
    assert [r["path"] for r in batch.iter_whole_rows(shard)] == ["a.wav"]
    jsonl = tmp_path / "s.jsonl.rank0"
    jsonl.write_bytes(b'\xef\xbb\xbf{"path": "a.wav", "score": 1.0}\n{"path": "b.w')
    assert [r["path"] for r in batch.iter_whole_rows(jsonl)] == ["a.wav"]


def test_under_torchrun_a_bare_cuda_is_each_ranks_own_gpu(tmp_path, model_dir, monkeypatch, capsys):
    # `torchrun --nproc_per_node=8 -m sddkit.cli.main score ... --device cuda` put every rank on GPU 0 (torch's
    # "cuda" is the current device), the seven other GPUs idle; sdd train takes GPU LOCAL_RANK
    import torch

    from sddkit.scoring import api
    from sddkit.training.distributed import rank_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert rank_device("cuda", DistInfo(rank=3, world_size=4, local_rank=3)) == "cuda:1"
    assert rank_device("cuda:0", DistInfo(rank=1, world_size=2, local_rank=1)) == "cuda:0"  # as given
    assert rank_device("cpu", DistInfo(rank=1, world_size=2, local_rank=1)) == "cpu"
    assert rank_device("cuda", DistInfo()) == "cuda"  # one process: as given
    used: list[str] = []

    def load(model, *, device, **kwargs):
        used.append(str(device))
        raise ConfigError("stop here: the device is what this test checks")

    monkeypatch.setattr(api, "load_detector", load)
    clip = write_noise_wav(tmp_path / "a.wav", 0.6, 0)
    _env(monkeypatch, WORLD_SIZE="2", RANK="1", LOCAL_RANK="1")
    args = ("score", str(clip), "--model", str(model_dir), "--out", str(tmp_path / "s.csv"), "--device", "cuda")
    assert _main(*args, "--quiet") == 2
    assert used == ["cuda:1"]


def test_a_merge_keeps_the_rows_of_other_files_the_output_held_in_front_as_one_process_does(
    tmp_path, model_dir, monkeypatch, capsys
):
    # folder a scored into s.csv, then folder b into the same s.csv: one process appends b's rows after a's; the
    # merge of a torchrun run sorted every row by this run's inputs, so a's rows (not among them) went behind b's
    a = [str(write_noise_wav(tmp_path / "a" / f"x{i}.wav", 0.6, i)) for i in range(2)]
    b = [str(write_noise_wav(tmp_path / "b" / f"y{i}.wav", 0.6 + 0.25 * i, 5 + i)) for i in range(3)]
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    for inputs in (a, b):
        _env(monkeypatch)
        assert _main("score", *inputs, "--model", str(model_dir), "--out", str(one), "--quiet", "--windows") == 0
        for rank in (0, 1):
            _env(monkeypatch, WORLD_SIZE="2", RANK=str(rank))
            assert _main("score", *inputs, "--model", str(model_dir), "--out", str(two), "--quiet", "--windows") == 0
    assert [r["path"] for r in batch.iter_rows(two)] == [r["path"] for r in batch.iter_rows(one)] == a + b
    windows = [(r["path"], r["window"]) for r in batch.iter_rows(batch.windows_path(two))]
    assert windows == [(r["path"], r["window"]) for r in batch.iter_rows(batch.windows_path(one))]
