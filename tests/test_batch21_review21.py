"""Review of sdd score's batch scoring (batch21): regressions for what the review found."""

from __future__ import annotations

from sddkit.scoring import batch


def _shard(out, rank: int, path: str) -> None:
    batch.shard_path(out, rank).write_text(f"path,score,error\n{path},0.5,\n")
    batch.mark_shard_done(out, rank, 2, 1)


def test_shards_of_an_output_whose_name_holds_glob_characters_are_merged(tmp_path):
    out = tmp_path / "scores[v2].csv"  # a name that, unescaped, is a glob pattern matching none of its markers
    _shard(out, 0, "a.wav")
    _shard(out, 1, "b.wav")
    assert batch.complete_shards(out) == (2, [])
    assert batch.merge_shards(out, order=["a.wav", "b.wav"]) == 2
    assert [r["path"] for r in batch.read_rows(out)[1]] == ["a.wav", "b.wav"]
    assert not batch.shard_path(out, 0).exists() and not batch.shard_path(out, 1).exists()


def test_an_unfinished_shard_of_such_an_output_is_not_taken_for_merged(tmp_path):
    out = tmp_path / "run[1].csv"
    _shard(out, 0, "a.wav")  # rank 1 still scoring: its marker is missing
    assert batch.complete_shards(out) == (2, [1])


def test_a_rank_inside_an_output_name_is_no_shard_suffix():
    # only the ".rank<r>" that shard_path appends is kept at the end; "ranked" is part of the name
    assert batch.windows_path("eval.ranked.csv").name == "eval.ranked.windows.csv"
    assert batch.windows_path("s.rank3.csv").name == "s.rank3.windows.csv"
    assert batch.windows_path(batch.shard_path("eval.ranked.csv", 1)).name == "eval.ranked.windows.csv.rank1"
    assert batch.windows_path(batch.shard_path("s.csv", 0)).name == "s.windows.csv.rank0"
    assert batch.output_format("runs.jsonl.ranked.csv") == "csv"  # a .csv holds CSV, not JSON lines
    assert batch.output_format(batch.shard_path("s.jsonl", 2)) == "jsonl"
    assert batch.output_format(batch.shard_path("s.csv", 2)) == "csv"


def test_a_csv_manifest_keeps_a_carriage_return_inside_a_quoted_path(tmp_path):
    # sdd score's own CSV output quotes such a path (RowWriter); read back as a manifest it named another file
    name = tmp_path / "cr\rx.wav"
    name.write_bytes(b"")
    manifest = tmp_path / "scores.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = batch.RowWriter(f)
        writer.writerow(["path", "score"])
        writer.writerow([str(name), "0.5"])
    assert batch.read_manifest(manifest) == [str(name)]


def test_csv_manifests_with_crlf_or_bare_cr_line_ends_are_read(tmp_path):
    for end in ("\r\n", "\r"):
        manifest = tmp_path / "m.csv"
        manifest.write_bytes(end.join(["path,label", "/x/a.wav,bonafide", "/x/b.wav,spoof", ""]).encode())
        assert batch.read_manifest(manifest) == ["/x/a.wav", "/x/b.wav"]
