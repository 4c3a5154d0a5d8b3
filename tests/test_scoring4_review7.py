"""Review 7 of scoring (``sdd score``): thread defaults, exit statuses, manifests, shards resumed elsewhere."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli import score_cmd
from sddkit.cli.main import main
from sddkit.scoring import batch


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OMP_NUM_THREADS": "1"}, 1),  # what torchrun sets for each of its processes
        ({"OMP_NUM_THREADS": "3"}, 3),
        ({"LOCAL_WORLD_SIZE": "4"}, 2),  # 8 cores shared among 4 local ranks
        ({"LOCAL_WORLD_SIZE": "16"}, 1),
        ({}, 8),
        ({"OMP_NUM_THREADS": "x"}, 8),  # not a number: ignored (as OpenMP ignores it)
    ],
)
def test_default_threads_respect_omp_num_threads_and_torchrun(monkeypatch, torch_threads, env, expected):
    # all cores in each process ignored OMP_NUM_THREADS: 4 torchrun ranks on 8 cores ran 32 threads
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(score_cmd.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    score_cmd._set_threads(None)
    assert torch.get_num_threads() == expected
    score_cmd._set_threads(2)  # --threads wins over everything
    assert torch.get_num_threads() == 2


def test_a_run_whose_files_all_fail_exits_1_and_its_rerun_exits_0(tmp_path, model_dir, capsys):
    out = tmp_path / "scores.csv"
    args = ["score", str(tmp_path / "nowhere.wav"), str(tmp_path / "gone.flac"), "--model", str(model_dir)]
    assert main([*args, "--out", str(out), "--quiet", "--workers", "0", "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert "every one of the 2 file(s)" in err
    rows = _rows(out)
    assert len(rows) == 2 and all(r["error"] and not r["score"] for r in rows)  # the error rows are written
    # a rerun skips them: nothing read, nothing failed
    assert main([*args, "--out", str(out), "--quiet", "--workers", "0", "--threads", "1"]) == 0
    # --retry-errors reads them again, and they fail again
    assert main([*args, "--out", str(out), "--quiet", "--workers", "0", "--threads", "1", "--retry-errors"]) == 1
    assert len(_rows(out)) == 2


def test_a_run_with_one_scored_file_among_failures_exits_0(tmp_path, model_dir):
    wav = write_noise_wav(tmp_path / "ok.wav", 0.6, 1)
    out = tmp_path / "scores.jsonl"
    argv = ["score", str(wav), str(tmp_path / "nowhere.wav"), "--model", str(model_dir), "--out", str(out)]
    assert main([*argv, "--quiet", "--workers", "0", "--threads", "1"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [bool(r["error"]) for r in rows] == [False, True]


def test_a_shard_whose_files_all_fail_exits_0(tmp_path, model_dir, monkeypatch):
    # under torchrun a rank exiting non-zero makes torchrun stop the others: ranks keep exiting 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    out = tmp_path / "scores.csv"
    argv = ["score", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--model", str(model_dir), "--out", str(out)]
    assert main([*argv, "--quiet", "--workers", "0", "--threads", "1"]) == 0
    assert len(_rows(batch.shard_path(out, 0))) == 1


@pytest.mark.parametrize(
    "text",
    [
        "label;path\nbonafide;a/x.wav\nspoof;a/y.wav\n",
        # a spreadsheet's CSV in a comma-decimal locale: the commas of its numbers made it read as comma-separated
        '"path";"score"\n"a/x.wav";"0,5"\n"a/y.wav";"1,25"\n',
        "label\tpath\nbonafide\ta/x.wav\nspoof\ta/y.wav\n",
        "path\tnote, with a comma\na/x.wav\tfine, thanks\na/y.wav\tok\n",
    ],
)
def test_a_manifest_is_read_by_the_delimiter_that_makes_its_path_column(tmp_path, text):
    # read with the wrong delimiter, the header and every line were listed as files that do not exist
    for name in ("x.wav", "y.wav"):
        write_noise_wav(tmp_path / "a" / name, 0.3, 0)
    manifest = tmp_path / "list.csv"
    manifest.write_text(text)
    assert batch.expand_inputs([manifest]) == [str(tmp_path / "a" / "x.wav"), str(tmp_path / "a" / "y.wav")]


def test_comma_manifests_read_as_before(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("utt,path,label\nu1,/data/a;b.wav,spoof\n")  # a ';' inside a path is not a delimiter
    assert batch.expand_inputs([manifest]) == ["/data/a;b.wav"]


def test_inputs_that_list_no_audio_file_are_refused_before_the_model_loads(tmp_path, capsys):
    # a folder of headerless .pcm files, or an empty one: exit 0 with an empty output said nothing
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.pcm").write_bytes(b"\0\1" * 64)
    out = tmp_path / "scores.csv"
    argv = ["score", str(folder), "--model", str(tmp_path / "no-model"), "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"no audio files in {folder}" in err and ".wav" in err
    assert not out.exists()


def _score_both_ranks(monkeypatch, argv):
    """Rank 0 then rank 1 of a 2-process run without a process group (the last one to finish merges)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert main([*argv, "--quiet", "--workers", "0", "--threads", "1"]) == 0


def test_a_sharded_run_resumed_from_another_folder_keeps_the_merged_rows_paths(tmp_path, model_dir, monkeypatch):
    # the shards took the new folder as the base of their relative paths, the merged output kept the old one: the
    # merged rows were scored again and the new rows named files that are not there
    for i in range(4):
        write_noise_wav(tmp_path / "data" / f"f{i}.wav", 0.3, i)
    out = tmp_path / "out" / "scores.csv"
    monkeypatch.chdir(tmp_path)
    _score_both_ranks(
        monkeypatch, ["score", "data/f0.wav", "data/f1.wav", "--model", str(model_dir), "--out", str(out)]
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    inputs = [f"../data/f{i}.wav" for i in range(4)]
    _score_both_ranks(monkeypatch, ["score", *inputs, "--model", str(model_dir), "--out", str(out)])
    rows = _rows(out)
    assert len(rows) == 4 and not any(r["error"] for r in rows)
    base = json.loads(batch.run_record_path(out).read_text())["cwd"]
    named = sorted(os.path.normpath(os.path.join(base, r["path"])) for r in rows)
    assert named == [str(tmp_path / "data" / f"f{i}.wav") for i in range(4)]
