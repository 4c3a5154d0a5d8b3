"""Review 9 of scoring: CSV numbers that read back exactly, the output lock taken before the model loads, a
bound on the whole upload time of one request of the service."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main
from sddkit.scoring.api import ScoreResult
from sddkit.scoring.batch import ScoreWriter, output_columns, windows_path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return save_tiny_lcnn(tmp_path_factory.mktemp("m9") / "model")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_csv_score_just_below_the_threshold_reads_back_below_it(tmp_path):
    # written with 7 significant digits, a score one ulp below the threshold read back as the threshold itself
    # (or above it) beside the decision "spoof", and two scores 1e-9 apart were written alike (a tie in an EER)
    threshold = 0.123456789
    below = math.nextafter(threshold, -math.inf)
    results = {
        "a.wav": ScoreResult(below, 0.53, "spoof", threshold, 1.0, below, [below], [0.0], [1.0]),
        "b.wav": ScoreResult(below - 1e-9, 0.53, "spoof", threshold, 1.0000625, 1 / 3, [1 / 3], [0.0], [1.0000625]),
    }
    out = tmp_path / "s.csv"
    with ScoreWriter(out, output_columns([]), windows=True) as writer:
        for path, result in results.items():
            writer.write(path, result)
    rows = {r["path"]: r for r in _csv_rows(out)}
    for path, result in results.items():
        row = rows[path]
        for col in ("score", "probability", "duration_s", "raw_score"):
            assert float(row[col]) == getattr(result, col), (path, col, row[col])
        assert (float(row["score"]) >= threshold) == (row["decision"] == "bonafide")
    assert rows["a.wav"]["score"] != rows["b.wav"]["score"]
    windows = _csv_rows(windows_path(out))
    assert [float(w["score"]) for w in windows] == [below, 1 / 3]
    assert [float(w["end_s"]) for w in windows] == [1.0, 1.0000625]


def test_sdd_score_csv_holds_the_jsonl_numbers_exactly(tmp_path, model_dir):
    files = [str(write_noise_wav(tmp_path / f"{k}.wav", s, k)) for k, s in enumerate((0.37, 1.3))]
    common = [*files, "--model", str(model_dir), "--quiet", "--workers", "0"]
    assert main(["score", *common, "--out", str(tmp_path / "s.csv")]) == 0
    assert main(["score", *common, "--out", str(tmp_path / "s.jsonl")]) == 0
    c = {r["path"]: r for r in _csv_rows(tmp_path / "s.csv")}
    j = {r["path"]: r for r in map(json.loads, (tmp_path / "s.jsonl").read_text().splitlines())}
    for path in files:
        for col in ("score", "probability", "duration_s", "raw_score"):
            assert float(c[path][col]) == j[path][col], (path, col)


def _count_loads(monkeypatch, fail: bool = False) -> list[str]:
    import sddkit.scoring.api as api

    loads: list[str] = []
    real = api.load_detector

    def load(*args, **kwargs):
        loads.append(str(args[0] if args else kwargs.get("path")))
        if fail:
            raise api.CheckpointError("this model cannot load")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "load_detector", load)
    return loads


def test_a_second_run_into_an_output_being_written_is_refused_before_its_model_loads(
    tmp_path, model_dir, monkeypatch, capsys
):
    from sddkit.scoring.batch import OutputLock, lock_path

    wav = str(write_noise_wav(tmp_path / "a.wav", 0.6, 1))
    out = tmp_path / "s.csv"
    loads = _count_loads(monkeypatch)
    held = OutputLock(out)  # another sdd score run writing s.csv
    try:
        assert main(["score", wav, "--model", str(model_dir), "--out", str(out), "--quiet"]) == 2
    finally:
        held.release()
    assert "being written by another sdd score run" in capsys.readouterr().err
    assert loads == []  # refused before its model loaded, not after
    # a model that fails to load leaves the lock free for the next run
    monkeypatch.undo()
    failing = _count_loads(monkeypatch, fail=True)
    assert main(["score", wav, "--model", str(model_dir), "--out", str(out), "--quiet"]) == 2
    assert "cannot load" in capsys.readouterr().err
    assert len(failing) == 1 and not lock_path(out).exists()
    monkeypatch.undo()
    assert main(["score", wav, "--model", str(model_dir), "--out", str(out), "--quiet", "--workers", "0"]) == 0
    assert [r["path"] for r in _csv_rows(out)] == [wav] and not lock_path(out).exists()


def test_a_trickled_upload_gets_a_408_once_its_time_is_up():
    # a client sending a byte now and then, never idle for UPLOAD_IDLE_S, held its request open for ever
    import asyncio

    from sddkit.service.app import ApiError, _until_disconnect

    async def trickle():
        while True:
            await asyncio.sleep(0.01)
            yield b"x"

    async def read():
        return [chunk async for chunk in _until_disconnect(trickle(), idle_s=1.0, total_s=0.2)]

    with pytest.raises(ApiError) as caught:
        asyncio.run(asyncio.wait_for(read(), 10))
    assert caught.value.status == 408 and "not over after" in caught.value.message

    async def steady():
        for _ in range(3):
            await asyncio.sleep(0.01)
            yield b"x"

    async def read_steady():
        return [chunk async for chunk in _until_disconnect(steady(), idle_s=1.0, total_s=5.0)]

    assert asyncio.run(read_steady()) == [b"x"] * 3


def test_the_service_answers_a_trickled_upload_with_a_408(model_dir, monkeypatch):
    import asyncio

    from scoring_support import score_post_scope

    from sddkit.service import app as service

    monkeypatch.setattr(service, "UPLOAD_IDLE_S", 0.3)  # the time limit of this upload: 0.3 s plus its length
    monkeypatch.setattr(service, "UPLOAD_MIN_RATE", 1 << 30, raising=False)
    app = service.create_app(model_dir)
    head = b'--b9\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    sent: list[dict] = []
    chunks = 0

    async def receive():
        nonlocal chunks
        if not sent:
            await asyncio.sleep(0.05)  # never idle for 0.3 s, never done
            chunks += 1
            return {"type": "http.request", "body": head if chunks == 1 else b"\0", "more_body": True}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def run():
        async with app.router.lifespan_context(app):
            await app(score_post_scope("b9"), receive, send)

    asyncio.run(asyncio.wait_for(run(), 20))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert start["status"] == 408 and body["error"]["type"] == "request_timeout"
    assert "not over after" in body["error"]["message"]


def _score_both_ranks(monkeypatch, argv: list[str]) -> None:
    """Both ranks of a two-process run without a process group, one after the other (the last one merges)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert main([*argv, "--quiet", "--workers", "0", "--threads", "1"]) == 0


def test_a_sharded_run_resumed_from_another_folder_merges_its_rows_in_input_order(tmp_path, model_dir, monkeypatch):
    # the merge matched rows to inputs by their spelling: from another folder none matched, and the merged file
    # came in the order of its sources (the earlier rows, rank 0's files, rank 1's)
    import os

    from sddkit.scoring import batch

    for i in range(4):
        write_noise_wav(tmp_path / "data" / f"f{i}.wav", 0.6, i)
    out = tmp_path / "out" / "scores.csv"
    monkeypatch.chdir(tmp_path)
    common = ["--model", str(model_dir), "--out", str(out), "--windows"]
    _score_both_ranks(monkeypatch, ["score", "data/f2.wav", *common])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    _score_both_ranks(monkeypatch, ["score", *[f"../data/f{i}.wav" for i in range(4)], *common])
    base = json.loads(batch.run_record_path(out).read_text())["cwd"]

    def named(rows: list[dict[str, str]]) -> list[str]:
        return [Path(os.path.normpath(os.path.join(base, r["path"]))).name for r in rows]

    assert named(_csv_rows(out)) == [f"f{i}.wav" for i in range(4)]
    windows = named(_csv_rows(batch.windows_path(out)))
    assert windows == sorted(windows) and set(windows) == {f"f{i}.wav" for i in range(4)}


def test_a_rank_done_first_does_not_merge_beside_the_stale_marker_of_a_rank_still_loading(
    tmp_path, model_dir, monkeypatch
):
    # A rank cleared the marker its earlier run left only once its model had loaded: a rank with nothing left to
    # score merged meanwhile (the stale marker read as "finished"), and the rows the slow rank scored then went to
    # a shard that no rank merged
    import sddkit.scoring.api as api
    from sddkit.errors import ProtocolError
    from sddkit.scoring import batch

    files = [str(write_noise_wav(tmp_path / "data" / f"f{i}.wav", 0.6, i)) for i in range(4)]
    out = tmp_path / "scores.csv"
    argv = ["score", "--model", str(model_dir), "--out", str(out), "--quiet", "--workers", "0", "--threads", "1"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    # an earlier run whose ranks both finished but whose merge did not happen (killed while merging)
    monkeypatch.setenv("RANK", "0")
    assert main([*argv, *files[:2]]) == 0
    monkeypatch.setenv("RANK", "1")
    with monkeypatch.context() as m:
        m.setattr(batch, "merge_shards", lambda *a, **k: (_ for _ in ()).throw(ProtocolError("killed")))
        assert main([*argv, *files[:2]]) == 2
    assert batch.complete_shards(out) == (2, [])  # both markers, nothing merged
    # the rerun, with two more files: rank 1 finishes while rank 0 is still loading its model
    real = api.load_detector
    nested: list[int] = []

    def slow_load(*args, **kwargs):
        if not nested:
            nested.append(1)
            monkeypatch.setenv("RANK", "1")
            assert main([*argv, *files]) == 0
            monkeypatch.setenv("RANK", "0")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "load_detector", slow_load)
    monkeypatch.setenv("RANK", "0")
    assert main([*argv, *files]) == 0
    assert nested == [1]
    assert sorted(r["path"] for r in _csv_rows(out)) == files  # every file merged
    assert not list(tmp_path.glob("scores.csv.rank*"))
