from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scoring_support import save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.scoring import batch
from sddkit.scoring.api import load_detector

SR = 16000
COLUMNS = ["path", "score", "probability", "decision", "duration_s", "n_windows", "raw_score", "error"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """logmel + small LCNN, 0.5 s windows with 0.25 s hop."""
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _wav(path: Path, seconds: float, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    return path


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _failed(out: Path) -> list[str]:
    """Paths whose row in a score output holds an error."""
    return [str(r["path"]) for r in batch.read_rows(out)[1] if r.get("error")]


def _corpus(root: Path) -> dict[str, Path]:
    files = {
        "a": _wav(root / "a.wav", 0.3, 1),  # shorter than a window: repeat-padded
        "b": _wav(root / "sub" / "b.flac", 1.2, 2),  # several windows
        "c": _wav(root / "c.wav", 0.5, 3),
    }
    (root / "notes.txt").write_text("not audio, ignored in folders\n")
    (root / "broken.wav").write_bytes(b"RIFF garbage, not a wave file")
    (root / "empty.wav").write_bytes(b"")
    _wav(root / "click.wav", 0.02, 4)  # 20 ms: too short to score, an error row
    return files


def test_score_folder_csv_with_error_rows(tmp_path, model_dir, capsys):
    files = _corpus(tmp_path / "audio")
    out = tmp_path / "scores.csv"
    assert main(["score", str(tmp_path / "audio"), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    assert list(_rows(out)[0]) == COLUMNS
    assert set(rows) == {"a.wav", "b.flac", "c.wav", "broken.wav", "empty.wav", "click.wav"}
    det = load_detector(model_dir)
    for path in files.values():
        r = rows[path.name]
        expected = det.score_file(path)
        assert r["error"] == ""
        assert float(r["score"]) == pytest.approx(expected.score, rel=1e-5, abs=1e-6)
        assert float(r["probability"]) == pytest.approx(expected.probability, rel=1e-5)
        assert r["decision"] == expected.decision and int(r["n_windows"]) == expected.n_windows
        assert float(r["duration_s"]) == pytest.approx(expected.duration_s, abs=1e-4)
    assert int(rows["b.flac"]["n_windows"]) == 4  # 1.2 s, 0.5 s windows every 0.25 s: starts 0, .25, .5, .7
    for bad in ("broken.wav", "empty.wav", "click.wav"):
        assert rows[bad]["score"] == "" and rows[bad]["decision"] == "" and rows[bad]["error"]
    assert "empty" in rows["empty.wav"]["error"]
    assert "click.wav: 20 ms of audio is too short to score" in rows["click.wav"]["error"]
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (summary["scored"], summary["failed"], summary["skipped"]) == (3, 3, 0)


def test_options_may_sit_between_input_files(tmp_path, model_dir):
    """``sdd score a.wav --out x.csv c.wav``: argparse alone rejects a list positional split by an option."""
    files = _corpus(tmp_path / "audio")
    out = tmp_path / "scores.csv"
    argv = ["score", str(files["a"]), "--model", str(model_dir), "--out", str(out), str(files["c"]), "--quiet"]
    assert main(argv) == 0
    assert sorted(Path(r["path"]).name for r in _rows(out)) == ["a.wav", "c.wav"]


def test_score_then_eval_with_a_path_label_csv(tmp_path, model_dir, capsys):
    """The practitioner's loop: `sdd score` a folder, then `sdd eval` it against a hand-written labels CSV;
    the error rows of unreadable files are reported, not fatal."""
    _corpus(tmp_path / "audio")
    out = tmp_path / "scores.csv"
    assert main(["score", str(tmp_path / "audio"), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    labels = tmp_path / "labels.csv"
    names = {"a.wav": "real", "sub/b.flac": "fake", "c.wav": "fake", "broken.wav": "real"}
    labels.write_text("path,label\n" + "".join(f"{tmp_path / 'audio' / n},{lab}\n" for n, lab in names.items()))
    report = tmp_path / "report"
    assert (
        main(["eval", "--scores", str(out), "--protocol", str(labels), "--out", str(report), "--bootstrap", "0"]) == 0
    )
    data = json.loads((report / "report.json").read_text())
    matching = data["matching"]
    assert matching["matched_by"] == "utt_id" and matching["n_matched"] == 3
    # empty.wav also has an error row, but the labels do not list it: only broken.wav counts, once
    assert matching["n_failed_scores"] == 1 and matching["n_unmatched_protocol"] == 0
    assert any("could not be scored" in w for w in matching["warnings"])
    assert "could not be scored" in capsys.readouterr().err


def test_drop_paths_removes_rows_so_a_rerun_scores_them_again(tmp_path, model_dir):
    files = _corpus(tmp_path / "audio")
    for out in (tmp_path / "s.csv", tmp_path / "s.jsonl"):
        args = ["score", str(files["a"]), str(files["b"]), "--model", str(model_dir), "--out", str(out), "--quiet"]
        assert main(args) == 0
        header, before = batch.read_rows(out)
        batch.drop_paths(out, [str(files["a"])])
        header_after, after = batch.read_rows(out)
        assert header_after == header and after == [r for r in before if r["path"] != str(files["a"])]
        assert main(args) == 0  # the dropped file is no longer "done": it is scored again, once
        assert sorted(r["path"] for r in batch.read_rows(out)[1]) == sorted(str(files[k]) for k in ("a", "b"))


@pytest.mark.parametrize("name", ["s.csv", "s.jsonl"])
def test_retry_errors_scores_a_mended_file_again(tmp_path, model_dir, name):
    files = _corpus(tmp_path / "audio")
    broken = tmp_path / "audio" / "broken.wav"
    out = tmp_path / name
    args = ["score", str(files["a"]), str(broken), "--model", str(model_dir), "--out", str(out), "--quiet"]
    assert main(args) == 0
    _wav(broken, 0.6, 9)  # the file is mended after the first run
    assert main(args) == 0  # a plain resume keeps the error row: the file counts as done
    assert _failed(out) == [str(broken)]
    with open(out, "a") as f:  # a crash in the middle of a third row
        f.write(str(tmp_path / "audio" / "c.wav")[:-3])
    assert main([*args, "--retry-errors"]) == 0
    rows = batch.read_rows(out)[1]
    assert sorted(r["path"] for r in rows) == sorted([str(files["a"]), str(broken)])  # one row each
    assert _failed(out) == []
    row = next(r for r in rows if r["path"] == str(broken))
    assert float(row["score"]) == pytest.approx(load_detector(model_dir).score_file(broken).score, rel=1e-5, abs=1e-6)


def test_shard_merge_prefers_a_retried_success_over_the_merged_error_row(tmp_path, model_dir, monkeypatch):
    files = _corpus(tmp_path / "audio")
    broken = tmp_path / "audio" / "broken.wav"
    out = tmp_path / "m.csv"
    args = ["score", str(files["a"]), str(broken), "--model", str(model_dir), "--out", str(out), "--quiet"]
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert main(args) == 0
    assert _failed(out) == [str(broken)]  # merged, with its error row
    _wav(broken, 0.6, 9)
    for rank in ("0", "1"):  # the rank that owns the mended file rescores it; the merge keeps the success
        monkeypatch.setenv("RANK", rank)
        assert main([*args, "--retry-errors"]) == 0
    rows = batch.read_rows(out)[1]
    assert [r["path"] for r in rows] == [str(files["a"]), str(broken)]
    assert _failed(out) == [] and rows[1]["score"] != ""


def test_manifests_list_csv_and_protocol(tmp_path, model_dir):
    files = _corpus(tmp_path / "audio")
    lst = tmp_path / "audio" / "list.txt"
    lst.write_text("# a comment\na.wav\nsub/b.flac\n\nmissing.wav\n")  # relative to the manifest's folder
    table = tmp_path / "table.csv"
    table.write_text(f"utt,path\nc,{files['c']}\n")
    meta = tmp_path / "audio" / "meta.csv"  # In-the-Wild protocol: file,speaker,label
    meta.write_text("file,speaker,label\nc.wav,alice,bona-fide\na.wav,bob,spoof\n")
    out = tmp_path / "m.csv"
    args = ["score", str(lst), str(table), str(meta), "--model", str(model_dir), "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = _rows(out)
    names = [Path(r["path"]).name for r in rows]
    assert names == ["a.wav", "b.flac", "missing.wav", "c.wav"]  # de-duplicated, input order
    missing = rows[2]
    assert missing["score"] == "" and "no such file" in missing["error"]


def test_unknown_manifest_and_missing_input_are_clean_errors(tmp_path, model_dir, capsys):
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\nnot paths\n")
    assert main(["score", str(junk), "--model", str(model_dir), "--out", str(tmp_path / "o.csv")]) == 2
    assert "not a manifest" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "nope"), "--model", str(model_dir), "--out", str(tmp_path / "o.csv")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    for option, value, message in (
        ("--workers", "-1", "--workers must be >= 0"),
        ("--threads", "0", "--threads must be >= 1"),
        ("--max-duration-s", "-5", "--max-duration-s must be >= 0"),
        ("--max-duration-s", "nan", "--max-duration-s must be >= 0, got nan"),  # NaN compares false
        ("--device", "foo", "unknown device 'foo'"),
    ):
        argv = ["score", str(junk), "--model", str(model_dir), "--out", str(tmp_path / "o.csv"), option, value]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    for name in ("o.json", "o.txt", "o"):  # checked before any input is read
        assert main(["score", str(junk), "--model", str(model_dir), "--out", str(tmp_path / name)]) == 2
        assert "--out must name a .csv or .jsonl file" in capsys.readouterr().err
        assert not (tmp_path / name).exists()


def test_resume_skips_done_paths_and_repairs_a_partial_line(tmp_path, model_dir, capsys):
    files = _corpus(tmp_path / "audio")
    out = tmp_path / "scores.csv"
    first = ["score", str(files["a"]), str(files["b"]), "--model", str(model_dir), "--out", str(out), "--quiet"]
    assert main(first) == 0
    before = out.read_text()
    with open(out, "a") as f:
        f.write(f"{files['c']},0.123,0.5")  # a row cut short by a crash: no newline
    capsys.readouterr()
    second = ["score", str(tmp_path / "audio"), "--model", str(model_dir), "--out", str(out), "--quiet"]
    assert main(second) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["skipped"] == 2 and summary["scored"] == 1 and summary["failed"] == 3  # broken, empty, click
    text = out.read_text()
    assert text.startswith(before)  # earlier rows untouched, header written once
    rows = _rows(out)
    assert len(rows) == 6 and len({r["path"] for r in rows}) == 6
    c = next(r for r in rows if r["path"] == str(files["c"]))
    assert c["score"] != "0.123" and c["error"] == ""
    # a third run has nothing left to do
    assert main(second) == 0
    assert out.read_text() == text


def test_jsonl_and_windows_outputs(tmp_path, model_dir):
    files = _corpus(tmp_path / "audio")
    out = tmp_path / "scores.jsonl"
    args = ["score", str(files["b"]), str(files["a"]), "--model", str(model_dir), "--out", str(out), "--windows"]
    assert main([*args, "--quiet", "--batch-size", "3", "--workers", "0"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["b.flac", "a.wav"]
    det = load_detector(model_dir)
    ref = det.score_file(files["b"])
    b = rows[0]
    assert b["error"] == "" and b["n_windows"] == 4 and len(b["windows"]) == 4
    assert [w["score"] for w in b["windows"]] == pytest.approx(ref.window_scores, rel=1e-5, abs=1e-6)
    assert [w["start_s"] for w in b["windows"]] == pytest.approx([0.0, 0.25, 0.5, 0.7])
    # CSV: a sidecar with one row per window
    out_csv = tmp_path / "s.csv"
    assert (
        main(["score", str(files["b"]), "--model", str(model_dir), "--out", str(out_csv), "--windows", "--quiet"]) == 0
    )
    side = _rows(tmp_path / "s.windows.csv")
    assert [int(r["window"]) for r in side] == [0, 1, 2, 3]
    assert [float(r["score"]) for r in side] == pytest.approx(ref.window_scores, rel=1e-5, abs=1e-5)
    assert [float(r["end_s"]) for r in side] == pytest.approx([0.5, 0.75, 1.0, 1.2])


def test_output_with_other_columns_is_refused(tmp_path, model_dir, capsys):
    out = tmp_path / "o.csv"
    out.write_text("path,score\nx.wav,1.0\n")
    wav = _wav(tmp_path / "a.wav", 0.3, 0)
    assert main(["score", str(wav), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 2
    assert "other columns" in capsys.readouterr().err


def test_file_based_shard_merge_without_process_group(tmp_path, model_dir, monkeypatch):
    files = _corpus(tmp_path / "audio")
    out = tmp_path / "sharded.csv"
    args = ["score", str(tmp_path / "audio"), "--model", str(model_dir), "--out", str(out), "--quiet", "--windows"]
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(args) == 0
    assert not out.exists() and batch.shard_path(out, 1).is_file()  # rank 0 not finished: no merge yet
    assert main(["score", "--merge", "--out", str(out)]) == 2  # refused: rank 0 missing
    monkeypatch.setenv("RANK", "0")
    assert main(args) == 0  # the last rank to finish merges
    assert not list(tmp_path.glob("sharded.csv.rank*"))
    rows = _rows(out)
    assert [Path(r["path"]).name for r in rows] == [
        p.name for p in map(Path, batch.expand_inputs([tmp_path / "audio"]))
    ]
    single = tmp_path / "single.csv"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert main(["score", str(tmp_path / "audio"), "--model", str(model_dir), "--out", str(single), "--quiet"]) == 0
    assert [r["score"] for r in rows] == [r["score"] for r in _rows(single)]
    assert len(_rows(tmp_path / "sharded.windows.csv")) == sum(int(r["n_windows"] or 0) for r in rows)
    # the corpus's readable files were scored (the comparison above would pass on all-error rows too)
    assert {Path(r["path"]).name for r in rows if r["score"]} == {p.name for p in files.values()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_sharding_with_gloo(tmp_path, model_dir):
    _corpus(tmp_path / "audio")
    for i in range(3):
        _wav(tmp_path / "audio" / f"more{i}.wav", 0.4 + 0.3 * i, 10 + i)
    out = tmp_path / "dist.jsonl"
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "HF_HUB_OFFLINE": "1",
        }
        cmd = [sys.executable, "-m", "sddkit.cli.main", "score", str(tmp_path / "audio"), "--model", str(model_dir),
               "--out", str(out), "--threads", "1", "--workers", "1"]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = batch.expand_inputs([tmp_path / "audio"])
    assert [r["path"] for r in rows] == expected  # merged in input order, each path once
    assert not list(tmp_path.glob("dist.jsonl.rank*"))
    det = load_detector(model_dir)
    scored = {Path(r["path"]).name for r in rows if not r["error"]}
    assert scored == {"a.wav", "b.flac", "c.wav", "more0.wav", "more1.wav", "more2.wav"}
    for r in rows:
        if r["error"]:
            assert r["score"] is None
            continue
        assert r["score"] == pytest.approx(det.score_file(r["path"]).score, rel=1e-5, abs=1e-6)


def test_a_file_listed_several_times_is_scored_once_and_said(tmp_path, model_dir, capsys, monkeypatch):
    """The same file named directly, spelled otherwise and listed in a manifest is one row; a note says how many
    listings were left out (the summary's files: 1 said nothing of the others)."""
    wav = _wav(tmp_path / "a.wav", 1.0, seed=0)
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{wav}\n{wav}\n")
    out = tmp_path / "s.csv"
    monkeypatch.chdir(tmp_path)
    assert main(["score", str(wav), "./a.wav", str(manifest), "--model", str(model_dir), "--out", str(out)]) == 0
    assert [r["path"] for r in _rows(out)] == [str(wav)]
    assert "3 input(s) name a file listed already" in capsys.readouterr().err
    assert main(["score", str(wav), "--model", str(model_dir), "--out", str(tmp_path / "t.csv")]) == 0
    assert "listed already" not in capsys.readouterr().err
