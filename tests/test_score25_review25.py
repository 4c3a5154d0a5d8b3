"""Review score25: sdd score as a practitioner runs it (reruns from another folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main
from sddkit.errors import ProtocolError
from sddkit.scoring import batch


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _score(*args: str) -> int:
    return main(["score", *args, "--quiet", "--workers", "0"])


def _rows(out: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in batch.read_rows(out)[1]}


def test_retry_errors_from_another_folder_scores_the_error_rows_again(tmp_path, model_dir, monkeypatch):
    work = tmp_path / "work"
    write_noise_wav(work / "audio" / "good.wav", 0.6, 1)
    (work / "audio" / "bad.wav").write_bytes(b"RIFF not a wave")
    monkeypatch.chdir(work)
    assert _score("audio/good.wav", "audio/bad.wav", "--model", str(model_dir), "--out", "s.csv") == 0
    assert _rows(work / "s.csv")["bad.wav"]["error"]
    write_noise_wav(work / "audio" / "bad.wav", 0.6, 2)  # mended
    # rerun from the audio folder, the inputs spelled from there: the error row was kept (the inputs were read
    # against the first run's folder, work/, where no bad.wav is), skipped as done, exit 0
    monkeypatch.chdir(work / "audio")
    assert _score("good.wav", "bad.wav", "--model", str(model_dir), "--out", "../s.csv", "--retry-errors") == 0
    rows = _rows(work / "s.csv")
    assert set(rows) == {"good.wav", "bad.wav"} and len(batch.read_rows(work / "s.csv")[1]) == 2
    assert rows["bad.wav"]["error"] == "" and rows["bad.wav"]["score"]
    assert rows["bad.wav"]["path"] == "audio/bad.wav"  # relative to the output's first run's folder, as the others


def test_a_larger_max_duration_from_another_folder_scores_the_refused_file(tmp_path, model_dir, monkeypatch):
    work = tmp_path / "work"
    write_noise_wav(work / "audio" / "long.wav", 2.0, 1)
    monkeypatch.chdir(work)
    assert _score("audio/long.wav", "--model", str(model_dir), "--out", "s.csv", "--max-duration-s", "1") == 1
    assert "max_duration" in _rows(work / "s.csv")["long.wav"]["error"]
    monkeypatch.chdir(work / "audio")
    assert _score("long.wav", "--model", str(model_dir), "--out", "../s.csv", "--max-duration-s", "0") == 0
    row = _rows(work / "s.csv")["long.wav"]
    assert row["error"] == "" and float(row["duration_s"]) == pytest.approx(2.0)


@pytest.mark.parametrize("table", ["label,file\nspoof,{a}\nbonafide,{b}\n", "utt\tfilename\nu1\t{a}\nu2\t{b}\n"])
def test_a_table_whose_paths_are_in_a_column_of_another_name_is_refused_naming_it(tmp_path, table):
    # its lines end like audio names, so each whole line was listed as a path, its header too: every row an error
    # "no such file" ("spoof,clips/a.wav"), exit 1
    a, b = write_noise_wav(tmp_path / "clips" / "a.wav", 0.2, 1), write_noise_wav(tmp_path / "clips" / "b.wav", 0.2, 2)
    manifest = tmp_path / "list.csv"
    manifest.write_text(table.format(a=a, b=b))
    column = "file" if "file\n" in table else "filename"
    with pytest.raises(ProtocolError, match=rf"list.csv: a table without a 'path' column, whose '{column}' column"):
        batch.read_manifest(manifest)


def test_lists_and_tables_with_a_path_column_are_read_as_before(tmp_path):
    a, b = write_noise_wav(tmp_path / "clips" / "a.wav", 0.2, 1), write_noise_wav(tmp_path / "clips" / "b.wav", 0.2, 2)
    cases = {
        "list.csv": f"{a}\n{b}\n",  # a list named .csv: no header
        "titled.txt": f"# clips, take 2\n{a}\n{b}\n",  # a comment holding a comma
        "table.csv": f"label,path\nspoof,{a}\nbonafide,{b}\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert batch.read_manifest(tmp_path / name) == [str(a), str(b)], name
    (tmp_path / "headless.csv").write_text(f"{a},spoof\n{b},bonafide\n")
    with pytest.raises(ProtocolError, match="not a manifest sddkit understands"):  # refused as before
        batch.read_manifest(tmp_path / "headless.csv")


def test_a_file_named_like_the_output_plus_rank_is_no_shard(tmp_path, model_dir, capsys):
    clip = write_noise_wav(tmp_path / "a.wav", 0.6, 1)
    out = tmp_path / "scores.csv"
    (tmp_path / "scores.csv.ranking.txt").write_text("my notes on the ranking of the systems\n")
    (tmp_path / "scores.csv.rank0.lock").touch()  # a lock a finished torchrun run leaves
    assert _score(str(clip), "--model", str(model_dir), "--out", str(out)) == 0  # was refused: "shards ... here"
    assert _rows(out)["a.wav"]["error"] == ""
    (tmp_path / "scores.csv.rank1").write_text("path,score\n")  # a real shard is still refused
    capsys.readouterr()
    assert _score(str(clip), "--model", str(model_dir), "--out", str(out)) == 2
    assert "shards of an unfinished torchrun run are here (scores.csv.rank1)" in capsys.readouterr().err
