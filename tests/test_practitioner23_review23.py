"""Review practitioner23: what a user touches when scoring audio.

- ``sdd score``: a file refused as longer than ``--max-duration-s`` gets an error row whose hint says that option sets
  the limit; a rerun with a larger limit into the same ``--out`` skipped that row as done (exit 0, nothing said), so
  the file was never scored. Such rows are now scored again by a rerun whose limit is larger.
- ``sdd serve --model x.onnx`` without ``--backend onnx`` said "x.onnx: not a model directory (a file)", where
  ``sdd score`` names it an ONNX file and says to add ``--backend onnx``.
- ``ScoringDetector.score_file`` refused a long file at its ``max_duration`` default without saying how to lift it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main
from sddkit.errors import AudioTooLongError, CheckpointError
from sddkit.scoring import batch
from sddkit.scoring.api import load_detector


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _score(*args: str) -> int:
    return main(["score", *args, "--quiet", "--workers", "0", "--threads", "1"])


def _rows(out: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in batch.iter_rows(out)}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_rerun_with_a_larger_max_duration_scores_the_files_refused_as_too_long(tmp_path, model_dir, capsys, suffix):
    long_wav = write_noise_wav(tmp_path / "long.wav", 1.2, 1)
    short_wav = write_noise_wav(tmp_path / "short.wav", 0.6, 2)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not a wave")
    out = tmp_path / f"s{suffix}"
    inputs = [str(long_wav), str(short_wav), str(bad), "--model", str(model_dir), "--out", str(out)]
    assert _score(*inputs, "--max-duration-s", "0.8") == 0
    first = _rows(out)
    assert "--max-duration-s sets the limit" in first["long.wav"]["error"] and not first["short.wav"]["error"]
    capsys.readouterr()

    # the same limit, or a lower one: nothing to score again
    for limit in ("0.8", "0.7"):
        assert _score(*inputs, "--max-duration-s", limit) == 0
        assert _rows(out) == first
        assert "scored again" not in capsys.readouterr().err

    # the limit the row's hint says to raise, raised: the file is scored (it was skipped as done, without a word)
    assert _score(*inputs, "--max-duration-s", "0") == 0
    err = capsys.readouterr().err
    assert "1 file(s) an earlier run refused as longer than a lower --max-duration-s are scored again" in err
    rows = _rows(out)
    assert rows["long.wav"]["error"] == "" and float(rows["long.wav"]["duration_s"]) == pytest.approx(1.2)
    assert rows["short.wav"] == first["short.wav"]  # scored rows are kept as they were
    assert rows["bad.wav"]["error"] == first["bad.wav"]["error"]  # other errors wait for --retry-errors
    assert len(list(batch.iter_rows(out))) == 3


def test_a_raised_limit_scores_again_only_what_it_now_lets_through(tmp_path, model_dir, capsys):
    wavs = [write_noise_wav(tmp_path / f"{s}s.wav", s, i) for i, s in enumerate((1.0, 2.5))]
    out = tmp_path / "s.csv"
    inputs = [*map(str, wavs), "--model", str(model_dir), "--out", str(out)]
    assert _score(*inputs, "--max-duration-s", "0.5") == 1  # every file refused: exit 1
    assert _score(*inputs, "--max-duration-s", "1.5") == 0
    rows = _rows(out)
    assert rows["1.0s.wav"]["error"] == ""
    assert "max_duration 1.5 s" in rows["2.5s.wav"]["error"]  # checked again, refused at the new limit
    assert "2 file(s)" in capsys.readouterr().err


def test_a_sharded_rerun_with_a_larger_limit_scores_the_merged_too_long_rows(tmp_path, model_dir, monkeypatch):
    """Under torchrun the rows an earlier run merged into ``--out`` count as done in each rank: the too-long ones
    of a lower limit do not (ranks run one after the other here, merging through their markers)."""
    wavs = [write_noise_wav(tmp_path / f"f{i}.wav", 1.2 if i % 2 else 0.6, i) for i in range(4)]
    out = tmp_path / "s.csv"
    inputs = [*map(str, wavs), "--model", str(model_dir), "--out", str(out)]
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for limit in ("0.8", "1.0", "0"):
        for rank in ("0", "1"):
            monkeypatch.setenv("RANK", rank)
            assert _score(*inputs, "--max-duration-s", limit) == 0
        rows = _rows(out)
        assert sorted(rows) == [f"f{i}.wav" for i in range(4)]
        assert not list(tmp_path.glob("s.csv.rank*"))  # merged
        if limit == "1.0":  # checked again and refused again: the merged row is this run's, naming its limit
            assert "max_duration 1.0 s" in rows["f1.wav"]["error"], rows["f1.wav"]["error"]
    assert all(r["error"] == "" for r in rows.values()), rows


def test_refused_limit_reads_every_too_long_message():
    for message, limit in (
        ("a.wav: header declares 720.0 s, over max_duration 600.0 s (not decoded); sdd score ...", 600.0),
        ("a.wav: longer than max_duration 2.5 s (decoding stopped at 2.6 s)", 2.5),
        ("a.wav: duration 3.000 s exceeds max_duration 2 s", 2.0),
        # the path in front of the message may hold the words: the message's own limit counts
        ("over max_duration 1 s/a.wav: longer than max_duration 30.0 s (decoding stopped at 30.1 s)", 30.0),
    ):
        assert batch.refused_limit(message) == limit
    for other in ("a.wav: no such file", "", None, "a.wav: silent (peak 0.00e+00)"):
        assert batch.refused_limit(other) is None
    assert not batch.rescored({"path": "a.wav", "error": ""}, True, float("inf"))  # a score is never rescored


def test_serve_names_an_onnx_file_given_without_backend_onnx(tmp_path):
    from sddkit.service.app import create_app

    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not really onnx")
    with pytest.raises(CheckpointError, match=r"is an ONNX file: load it with backend='onnx'"):
        create_app(fake)
    with pytest.raises(CheckpointError, match="no such model directory"):
        create_app(tmp_path / "missing")  # the torch backend's own check of the path


def test_sdd_serve_says_to_add_backend_onnx_for_an_onnx_model(tmp_path, capsys, monkeypatch):
    import uvicorn

    def no_server(*_a, **_k):
        raise AssertionError("the server must not start")

    monkeypatch.setattr(uvicorn.Server, "run", no_server)
    fake = tmp_path / "m.onnx"
    fake.write_bytes(b"not really onnx")
    assert main(["serve", "--model", str(fake), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--backend onnx" in err and "not a model directory" not in err and "Traceback" not in err


def test_score_file_says_how_to_lift_its_max_duration(tmp_path, model_dir):
    det = load_detector(model_dir)
    wav = write_noise_wav(tmp_path / "a.wav", 1.2, 1)
    with pytest.raises(AudioTooLongError) as caught:
        det.score_file(wav, max_duration=0.5)
    assert str(caught.value).startswith(f"{wav}: ") and str(caught.value).count(str(wav)) == 1
    assert str(caught.value).endswith("score_file(path, max_duration=None) scores any length")
    assert caught.value.path == str(wav)
    assert det.score_file(wav, max_duration=None).duration_s == pytest.approx(1.2)


def test_the_docs_say_a_larger_limit_scores_the_refused_files_again():
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "is scored again by a rerun with a larger limit" in text


def test_a_merge_names_the_inputs_no_rank_scored(tmp_path, model_dir, monkeypatch, capsys):
    """Each rank lists the inputs itself and scores every WORLD_SIZE-th one: a file added to the folder between
    the ranks' listings shifted rank 1's share, so b.wav fell to no rank. The merge said "merged 3 rows", exit 0,
    with one of the four inputs missing from the output."""
    folder = tmp_path / "audio"
    for i, name in enumerate("abc"):
        write_noise_wav(folder / f"{name}.wav", 0.6, i)
    out = tmp_path / "s.csv"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert _score("audio", "--model", str(model_dir), "--out", "s.csv") == 0  # a.wav, c.wav
    write_noise_wav(folder / "a0.wav", 0.6, 9)  # rank 1 starts later and lists a, a0, b, c: a0 and c
    monkeypatch.setenv("RANK", "1")
    capsys.readouterr()
    assert _score("audio", "--model", str(model_dir), "--out", "s.csv") == 0
    err = capsys.readouterr().err
    assert "merged 3 rows" in err
    assert "warning: 1 of the 4 inputs have no row in s.csv (audio/b.wav)" in err
    assert sorted(_rows(out)) == ["a.wav", "a0.wav", "c.wav"]
    # the same command again scores what is missing, and says nothing more
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert _score("audio", "--model", str(model_dir), "--out", "s.csv") == 0
    assert sorted(_rows(out)) == ["a.wav", "a0.wav", "b.wav", "c.wav"]
    assert "warning" not in capsys.readouterr().err


def test_a_complete_merge_warns_of_nothing(tmp_path, model_dir, monkeypatch, capsys):
    wavs = [str(write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i)) for i in range(3)]
    out = tmp_path / "s.csv"
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert _score(*wavs, "--model", str(model_dir), "--out", str(out)) == 0
    assert "merged 3 rows" in capsys.readouterr().err
    assert batch.inputs_without_rows(out, wavs) == []
    assert batch.inputs_without_rows(out, [*wavs, str(tmp_path / "other.wav")]) == [str(tmp_path / "other.wav")]


def _score_as_rank(rank: int, port: int, model: str, folder: str, extra: str, out: str) -> None:
    """One torchrun rank of a gloo process group scoring ``folder``; rank 1 lists ``extra`` too, as a rank that
    listed a file added after rank 0 had listed the inputs."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
    )
    inputs = [extra, folder] if rank == 1 else [folder]
    code = main(["score", *inputs, "--model", model, "--out", out, "--quiet", "--workers", "0", "--threads", "1"])
    if code != 0:
        raise RuntimeError(f"rank {rank}: exit status {code}")


def test_ranks_of_a_process_group_shard_rank_0s_listing(tmp_path, model_dir, capfd):
    """With a process group every rank scores its share of rank 0's listing: rank 1's own listing (one file more,
    in front) gave it a, c where rank 0 took a, c too, and b.wav fell to no rank."""
    from test_ddp import FreePorts, run_ranks

    folder = tmp_path / "audio"
    for i, name in enumerate("abc"):
        write_noise_wav(folder / f"{name}.wav", 0.6, i)
    extra = write_noise_wav(tmp_path / "extra" / "0.wav", 0.6, 9)
    out = tmp_path / "s.csv"
    args = (FreePorts(), str(model_dir), str(folder), str(extra), str(out))
    run_ranks(_score_as_rank, args, 240, out=tmp_path)
    assert sorted(_rows(out)) == ["a.wav", "b.wav", "c.wav"]  # rank 0's listing, each file once
    assert "have no row" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "line",
    [
        '{"path": "a.wav", "score": 1.5, "label": "bonafide"}',  # another system's scores
        '{"path": "a.wav", "score": 1.5, "probability": 0.8, "decision": "bonafide", "score_x": 1.5}',  # sdd fuse's
    ],
)
def test_a_jsonl_output_of_other_fields_is_refused_as_a_csv_one_is(tmp_path, model_dir, capsys, line):
    """A CSV of other columns is refused ("written with other columns"); a JSONL file of path/score lines was
    appended to, its rows and this model's mixed in one file, with a note about a missing run record."""
    out = tmp_path / "scores.jsonl"
    out.write_text(line + "\n")
    wav = write_noise_wav(tmp_path / "x.wav", 0.6, 1)
    assert _score(str(wav), "--model", str(model_dir), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"{out} was written with other fields (" in err and "choose another --out" in err
    assert out.read_text() == line + "\n"
    assert not batch.run_record_path(out).exists()


def test_a_jsonl_output_resumes_with_and_without_windows_rows(tmp_path, model_dir):
    out = tmp_path / "s.jsonl"
    wavs = [str(write_noise_wav(tmp_path / f"{i}.wav", 0.6, i)) for i in range(2)]
    for windows in ((), ("--windows",)):
        target = out if not windows else tmp_path / "w.jsonl"
        assert _score(wavs[0], "--model", str(model_dir), "--out", str(target), *windows) == 0
        assert _score(*wavs, "--model", str(model_dir), "--out", str(target), *windows) == 0  # resumed, not refused
        rows = list(batch.iter_rows(target))
        assert len(rows) == 2 and all(("windows" in r) == bool(windows) for r in rows)
