"""`sdd score` under a gloo process group (2 ranks, as torchrun starts them): a rank stopped by an error stops the
other at once, with one line naming it (review ddp24)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scoring_support import save_tiny_lcnn

from sddkit.scoring import batch

SR = 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _audio(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(4):
        sf.write(root / f"f{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(SR // 2)).astype(np.float32), SR)
    return root


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _two_ranks(audio: Path, models: list[Path], out: Path) -> list[tuple[int, str]]:
    """(exit status, stderr) of `sdd score` on ranks 0 and 1 of a gloo group; a rank still running after 120 s is a
    hang (killed, the test fails)."""
    port, procs = _free_port(), []
    for rank, model in enumerate(models):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "HF_HUB_OFFLINE": "1"}  # fmt: skip
        cmd = [sys.executable, "-m", "sddkit.cli.main", "score", str(audio), "--model", str(model), "--out", str(out),
               "--threads", "1", "--quiet"]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            results.append((p.returncode, err))
    except subprocess.TimeoutExpired:
        pytest.fail("a rank waited for the other, which had stopped, until it was killed")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def test_a_rank_refused_at_its_start_stops_the_others_instead_of_leaving_them_waiting(tmp_path, model_dir):
    # rank 1's shard in use by another run: rank 1 was refused before joining the group, and rank 0 waited for it
    # in init_process_group for the 12 hours of its timeout (torchrun ends it; srun or a launcher of one's own not)
    audio, out = _audio(tmp_path / "audio"), tmp_path / "s.csv"
    held = batch.OutputLock(batch.shard_path(out, 1))
    try:
        (rc0, err0), (rc1, err1) = _two_ranks(audio, [model_dir, model_dir], out)
    finally:
        held.release()
    assert rc1 == 2 and "s.csv.rank1 is being written by another sdd score run" in err1
    assert rc0 == 2, err0
    assert "process 1 of 2 could not start" in err0 and "s.csv.rank1 is being written" in err0
    assert "Traceback" not in err0 and not out.exists()
    assert not batch.shard_path(out, 0).exists()  # rank 0 stopped before scoring anything


def test_a_rank_stopped_by_an_error_makes_the_others_stop_with_one_line_not_a_gloo_traceback(tmp_path, model_dir):
    # rank 1 cannot load its model: rank 0 scored its share, then met gloo's "Connection closed by peer ... GLHF!"
    # in the merge's barrier, printed as a traceback of 20 lines around the one line of rank 1 that says why
    audio, out = _audio(tmp_path / "audio"), tmp_path / "s.csv"
    (rc0, err0), (rc1, err1) = _two_ranks(audio, [model_dir, tmp_path / "missing"], out)
    assert rc1 == 2 and "no such model directory" in err1
    assert rc0 == 2, err0
    assert "another of the 2 processes stopped" in err0 and "Traceback" not in err0 and "GLHF" not in err0
    # what rank 0 scored is kept, finished, for the rerun to merge
    assert len(list(batch.iter_rows(batch.shard_path(out, 0)))) == 2 and not out.exists()


def _score_as(monkeypatch, rank: int, world: int, audio: Path, model: Path, out: Path, capsys) -> list[dict]:
    """`sdd score` as rank ``rank`` of ``world`` without a rendezvous (file-based merge); its summary line."""
    import json

    from sddkit.cli.main import main

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    capsys.readouterr()
    assert main(["score", str(audio), "--model", str(model), "--out", str(out), "--quiet", "--threads", "1"]) == 0
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def test_a_resume_with_fewer_ranks_takes_in_the_shards_of_the_ranks_gone(tmp_path, model_dir, monkeypatch, capsys):
    # a run of 3 ranks stopped before its merge (rank 2 killed mid-shard: no marker), resumed with 2: the files
    # in s.csv.rank2 were scored again and s.csv.rank2 stayed beside the merged output, where it refused every later
    # one-process run on it ("shards of an unfinished torchrun run are here") and --merge ("no finished shards")
    audio, out = _audio(tmp_path / "audio"), tmp_path / "s.csv"
    _score_as(monkeypatch, 2, 3, audio, model_dir, out, capsys)
    (tmp_path / "s.csv.rank2.done").unlink()
    left = [r["path"] for r in batch.iter_rows(batch.shard_path(out, 2))]
    assert len(left) == 1
    first = _score_as(monkeypatch, 0, 2, audio, model_dir, out, capsys)
    second = _score_as(monkeypatch, 1, 2, audio, model_dir, out, capsys)
    assert first[0]["skipped"] + second[0]["skipped"] == 1  # rank 2's file is not scored again
    assert first[0]["scored"] + second[0]["scored"] == 3
    rows = list(batch.iter_rows(out))
    assert sorted(r["path"] for r in rows) == sorted(batch.expand_inputs([audio]))  # each input once
    assert not list(tmp_path.glob("s.csv.rank*"))
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    from sddkit.cli.main import main

    assert main(["score", str(audio), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0  # a resume
