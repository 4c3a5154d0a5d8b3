"""Resuming a large `sdd score` output reads its rows one at a time, and cuts a partial last row in chunks."""

from __future__ import annotations

import sys
import tracemalloc

import pytest

from sddkit.scoring import batch

COLUMNS = ["path", "score", "probability", "decision", "duration_s", "error"]


def _write_output(path, n: int, *, errors_every: int = 0) -> None:
    with open(path, "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for i in range(n):
            error = "decode failed" if errors_every and i % errors_every == 0 else ""
            score = "" if error else "1.234567"
            f.write(f"/data/corpus/E_{i:08d}.flac,{score},0.7745,bonafide,4.12,{error}\n")


def test_resuming_holds_the_paths_of_the_rows_not_the_rows(tmp_path):
    out = tmp_path / "scores.csv"
    _write_output(out, 20_000)
    tracemalloc.start()
    try:
        writer = batch.ScoreWriter(out, COLUMNS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    writer.close()
    assert len(writer.done) == 20_000
    done_bytes = sys.getsizeof(writer.done) + sum(sys.getsizeof(p) for p in writer.done)
    # the set of done paths is what a resume needs; holding every row as a dict took about 4x that
    assert peak < 2 * done_bytes, (peak, done_bytes)


def test_retry_errors_streams_the_kept_rows_back_unchanged(tmp_path):
    out = tmp_path / "scores.csv"
    _write_output(out, 300, errors_every=7)
    before = out.read_text().splitlines()
    with batch.ScoreWriter(out, COLUMNS, retry_errors=True) as writer:
        pass
    after = out.read_text().splitlines()
    assert after == [line for line in before if not line.endswith(",decode failed")]
    assert len(writer.done) == 300 - len(range(0, 300, 7))


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 20])
def test_a_partial_last_row_is_cut_at_the_same_place_whatever_the_chunk_size(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(batch, "_CHUNK", chunk)
    whole = 'path,score\n"a\nb.wav",1.5\nc.wav,2.5\n'
    cases = {
        whole + '"d\ne.wav",0.': whole,  # cut inside a quoted path holding a newline
        whole + "f.wav,0.1": whole,  # cut inside a plain row
        whole: whole,  # nothing to cut
        '"x\ny': "",  # no whole row at all
    }
    for i, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"out{i}.csv"
        path.write_bytes(text.encode())
        batch.repair_partial_line(path)
        assert path.read_bytes().decode() == expected, text
    jsonl = tmp_path / "out.jsonl"
    jsonl.write_text('{"path": "a", "score": 1}\n{"path": "b", "sc')
    batch.repair_partial_line(jsonl)
    assert jsonl.read_text() == '{"path": "a", "score": 1}\n'


def test_an_empty_output_stays_empty_when_rewritten_so_the_next_run_writes_its_header(tmp_path):
    out = tmp_path / "scores.csv"
    out.write_bytes(b"")  # created, then killed before the header was written
    batch.drop_paths(out, ["/data/a.wav"])
    assert out.read_bytes() == b""
    with batch.ScoreWriter(out, COLUMNS) as writer:
        writer.write("/data/a.wav", None, error="decode failed")
    header, rows = batch.read_rows(out)
    assert header == COLUMNS and [r["path"] for r in rows] == ["/data/a.wav"]
