"""Review 7 of the day's change (diffrev7): ``sdd score``'s own files in ``--merge`` and after a killed merge."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.cli import score_cmd
from sddkit.cli.main import main
from sddkit.scoring import batch

FAST = ["--quiet", "--workers", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _glob(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir())  # what the shell's folder/* names


def test_merge_skips_the_outputs_own_files_a_glob_names(tmp_path, model_dir, monkeypatch):
    # `sdd score clips/* --out clips/scores.csv --merge` after a torchrun whose merge did not happen: the glob names
    # the shards, their .done markers and run records, which --merge read as manifests (scoring skipped them)
    clips = tmp_path / "clips"
    for i in range(3):
        write_noise_wav(clips / f"f{i}.wav", 0.3, i)
    out = clips / "scores.csv"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setattr(score_cmd, "_merge_after_shards", lambda *a, **k: None)  # the merge never ran
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert main(["score", *_glob(clips), "--model", str(model_dir), "--out", str(out), *FAST]) == 0
    assert batch.complete_shards(out) == (2, [])
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert main(["score", *_glob(clips), "--out", str(out), "--merge"]) == 0
    rows = _rows(out)
    assert [Path(r["path"]).name for r in rows] == ["f0.wav", "f1.wav", "f2.wav"]
    assert not any(r["error"] for r in rows)


def test_a_merge_lock_left_by_a_killed_merge_is_not_an_input(tmp_path):
    # a rank killed while merging leaves OUT.merge.lock (an empty file); a rerun's glob names it
    clips = tmp_path / "clips"
    wav = write_noise_wav(clips / "a.wav", 0.3, 0)
    out = clips / "scores.csv"
    Path(f"{out}.merge.lock").write_bytes(b"")
    assert batch.expand_inputs(_glob(clips), out=out) == [str(wav)]


def test_a_resume_whose_remaining_files_fail_exits_0_when_the_output_holds_scores(tmp_path, model_dir, capsys):
    # a run interrupted after scoring ok.wav, resumed: only the broken file is left to read, and it fails. The
    # output holds ok.wav's score, but the exit status said "every file failed" (1)
    ok = write_noise_wav(tmp_path / "ok.wav", 0.3, 0)
    out = tmp_path / "scores.csv"
    model = ["--model", str(model_dir), "--out", str(out), *FAST]
    assert main(["score", str(ok), *model]) == 0
    assert main(["score", str(ok), str(tmp_path / "broken.wav"), *model]) == 0
    assert "every one of the" not in capsys.readouterr().err
    assert [bool(r["error"]) for r in _rows(out)] == [False, True]


def test_retry_errors_gives_the_same_exit_status_as_the_first_run(tmp_path, model_dir):
    # first run: one score, one error row -> 0; the same files rerun with --retry-errors (the broken one still
    # broken) exited 1 for the same output
    ok = write_noise_wav(tmp_path / "ok.wav", 0.3, 0)
    out = tmp_path / "scores.jsonl"
    argv = ["score", str(ok), str(tmp_path / "broken.wav"), "--model", str(model_dir), "--out", str(out), *FAST]
    assert main(argv) == 0
    assert main([*argv, "--retry-errors"]) == 0


def test_a_rerun_whose_files_all_fail_still_exits_1_beside_other_inputs_scores(tmp_path, model_dir):
    # a score of a file that is not among these inputs does not make them a success
    ok = write_noise_wav(tmp_path / "ok.wav", 0.3, 0)
    out = tmp_path / "scores.csv"
    model = ["--model", str(model_dir), "--out", str(out), *FAST]
    assert main(["score", str(ok), *model]) == 0
    assert main(["score", str(tmp_path / "broken.wav"), *model]) == 1


def test_a_model_folder_saved_with_an_inert_head_scale_still_loads(tmp_path):
    # head_scale beside the linear head is refused since today; a folder saved before (a recipe that set it, then
    # head: linear) records it, and could no longer be loaded or scored, though the linear head never read it
    import json

    from sddkit.detectors.model_dir import load_model_dir, read_model_config

    folder = save_tiny_lcnn(tmp_path / "lcnn")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    assert config["model"]["backend"]["head"] == "linear"
    before = load_model_dir(folder).model.state_dict()
    config["model"]["backend"]["head_scale"] = 30.0
    config_path.write_text(json.dumps(config))
    loaded = load_model_dir(folder).model.state_dict()
    assert all(loaded[k].equal(v) for k, v in before.items())
    assert read_model_config(folder)["model"]["backend"]["head_scale"] == 20.0


def test_a_stored_cosine_head_keeps_its_scale(tmp_path):
    import json

    from sddkit.detectors.model_dir import read_model_config

    folder = save_tiny_lcnn(tmp_path / "lcnn")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["backend"].update(head="cosine", head_scale=30.0)
    config_path.write_text(json.dumps(config))
    assert read_model_config(folder)["model"]["backend"]["head_scale"] == 30.0


def test_an_output_named_as_its_own_input_is_refused_for_what_it_is(tmp_path, model_dir, capsys):
    # `sdd score scores.csv --out scores.csv --retry-errors` (the output as the list of files to retry): the output
    # is skipped as an input, and the refusal said "no audio files in scores.csv (folders are searched for ...)"
    wav = write_noise_wav(tmp_path / "a.wav", 0.3, 0)
    out = tmp_path / "scores.csv"
    assert main(["score", str(wav), "--model", str(model_dir), "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    argv = ["score", str(out), "--model", str(model_dir), "--out", str(out), "--retry-errors", *FAST]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "this run's own output file(s)" in err and "no audio files" not in err
    # as the manifest of another output it is read
    assert main(["score", str(out), "--model", str(model_dir), "--out", str(tmp_path / "again.csv"), *FAST]) == 0
    assert [Path(r["path"]).name for r in _rows(tmp_path / "again.csv")] == ["a.wav"]
