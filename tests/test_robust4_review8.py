"""Fourth review of sdd robustness: resuming from another folder (relative audio paths), package versions that
changed between an interrupted run and its resume, and what robustness.md says of failed files and of --limit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from scoring_support import run_interrupted_at_second_batch, save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.evaluation.robustness import JOURNAL_NAME

SR = 16000
CONDITIONS = "mulaw,clip_-6db"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny random model and two labelled folders of 4 + 4 files: ``a/data`` and ``b/data``, whose audio
    differs under the same names."""
    root = tmp_path_factory.mktemp("robust4")
    rng = np.random.default_rng(4)
    for top in ("a", "b"):
        for label in ("bonafide", "spoof"):
            (root / top / "data" / label).mkdir(parents=True)
            for i in range(4):
                x = ((0.02 if label == "spoof" else 0.1) * rng.standard_normal(6000 + 900 * i)).astype(np.float32)
                sf.write(root / top / "data" / label / f"u{i}.wav", x, SR)
    return {"root": root, "model": save_tiny_lcnn(root / "model")}


def _args(setup, protocol, out) -> list[str]:
    return [
        "robustness",
        *("--model", str(setup["model"]), "--protocol", str(protocol), "--out", str(out)),
        *("--conditions", CONDITIONS, "--workers", "0", "--batch-size", "4", "--quiet"),
    ]


def _rows(out) -> list[dict]:
    return json.loads((out / "robustness.json").read_text())["rows"]


def test_a_resume_from_another_folder_names_the_audio_by_where_it_is(setup, tmp_path, monkeypatch, capsys):
    """The journal identified the utterances by their audio paths as the protocol gave them: for a labelled folder
    named relatively, relative to the folder the run started in. A rerun from another folder naming the same
    folder absolutely was refused ("the utterances ... differ"), and one naming another folder's files by the same
    relative path resumed, mixing the scores of the two data sets into one report. Paths are compared absolute now.
    """
    root = setup["root"]
    # the whole run, uninterrupted, for reference
    monkeypatch.chdir(root / "a")
    assert main(_args(setup, "data", tmp_path / "whole")) == 0
    whole = _rows(tmp_path / "whole")

    # interrupted in a/, resumed from elsewhere naming the same files absolutely: resumed, same report
    out = tmp_path / "out"
    run_interrupted_at_second_batch(monkeypatch, _args(setup, "data", out))
    assert (out / JOURNAL_NAME).is_file()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(_args(setup, root / "a" / "data", out)) == 0
    assert "resumed from" in capsys.readouterr().err
    assert _rows(out) == whole

    # interrupted in a/, rerun in b/ with the same relative path: b's other audio, refused
    out2 = tmp_path / "out2"
    monkeypatch.chdir(root / "a")
    run_interrupted_at_second_batch(monkeypatch, _args(setup, "data", out2))
    before = (out2 / JOURNAL_NAME).read_bytes()
    monkeypatch.chdir(root / "b")
    capsys.readouterr()
    assert main(_args(setup, "data", out2)) == 2
    err = capsys.readouterr().err
    assert "holds the scores of another robustness run" in err and "the utterances" in err, err
    assert (out2 / JOURNAL_NAME).read_bytes() == before


def test_a_resume_under_other_package_versions_says_so_and_keeps_the_earlier_ones(setup, tmp_path, monkeypatch, capsys):
    """The report's info.versions named the packages of the last run only, though the results read back from the
    journal were decoded, degraded (FFmpeg's codecs, scipy's filters) and scored under the first run's: an upgrade
    between an interruption and its resume passed unnoticed. It still resumes, as ``sdd score`` does, but says so
    and keeps the earlier versions in robustness.json (info.earlier_versions)."""
    from sddkit.training import provenance

    monkeypatch.chdir(setup["root"] / "a")
    out = tmp_path / "out"
    run_interrupted_at_second_batch(monkeypatch, _args(setup, "data", out))
    earlier = json.loads((out / JOURNAL_NAME).read_text().splitlines()[0])["info"]["versions"]
    real = provenance.package_versions
    monkeypatch.setattr(provenance, "package_versions", lambda: {**real(), "numpy": "99.0"})
    capsys.readouterr()
    assert main(_args(setup, "data", out)) == 0
    err = capsys.readouterr().err
    assert f"were scored under other package versions (numpy {earlier['numpy']} -> 99.0)" in err, err
    report = json.loads((out / "robustness.json").read_text())
    assert report["info"]["earlier_versions"] == earlier and report["info"]["versions"]["numpy"] == "99.0"

    # the same versions: no note, no earlier_versions
    out2 = tmp_path / "out2"
    run_interrupted_at_second_batch(monkeypatch, _args(setup, "data", out2))
    capsys.readouterr()
    assert main(_args(setup, "data", out2)) == 0
    assert "package versions" not in capsys.readouterr().err
    assert "earlier_versions" not in json.loads((out2 / "robustness.json").read_text())["info"]


def test_the_report_does_not_promise_more_failed_files_than_robustness_json_names():
    """With 60 unreadable files robustness.md said "... (50 more in robustness.json)", but robustness.json names
    only the first MAX_REPORTED_ERRORS (50) of them (it counts all 60)."""
    from sddkit.evaluation.robustness import (
        MAX_REPORTED_ERRORS,
        RobustnessConfig,
        RobustnessResult,
        render_markdown,
        summarize,
    )

    n_failed = MAX_REPORTED_ERRORS + 10
    labels = np.array([1, 1, 0, 0] + [0] * n_failed)
    clean = np.array([2.0, 1.0, -1.0, 0.5] + [np.nan] * n_failed)

    def result(failures: int) -> RobustnessResult:
        r = RobustnessResult(
            config=RobustnessConfig(conditions=["clean"], mode="all", workers=0),
            threshold=0.0,
            utt_ids=[f"u{i}" for i in range(4 + failures)],
            labels=labels[: 4 + failures],
            scores={"clean": clean[: 4 + failures]},
            failures=[f"f{i}.wav: not a readable audio file" for i in range(failures)],
            condition_errors={},
            rows=[],
        )
        r.rows = summarize(r)
        return r

    many = result(n_failed)
    assert many.to_dict()["n_failed_files"] == n_failed and len(many.to_dict()["failed_files"]) == MAX_REPORTED_ERRORS
    text = render_markdown(many)
    assert f"{n_failed} file(s) could not be read or scored" in text
    assert f"- ... ({n_failed - 10} more; robustness.json names the first {MAX_REPORTED_ERRORS})" in text, text
    assert "more in robustness.json" not in text
    # as many as robustness.json names: all of the rest are there
    assert f"- ... ({MAX_REPORTED_ERRORS - 10} more in robustness.json)" in render_markdown(result(MAX_REPORTED_ERRORS))


def test_the_report_says_when_limit_evaluated_a_subset_of_the_protocol(setup, tmp_path, monkeypatch):
    """With --limit the report read "6 of 6 utterances scored", as if the protocol held 6: nothing in
    robustness.md said that the 6 were drawn from its 8 (robustness.json gave the limit, not the protocol's size)."""
    monkeypatch.chdir(setup["root"] / "a")
    out = tmp_path / "out"
    assert main([*_args(setup, "data", out), "--limit", "6", "--seed", "2"]) == 0
    md = (out / "robustness.md").read_text()
    assert "6 of 6 utterances scored" in md
    assert "The 6 utterances are a subset of the protocol's 8 (`--limit 6`, drawn with seed 2" in md, md
    report = json.loads((out / "robustness.json").read_text())
    assert (report["n_utterances"], report["n_protocol"], report["limit"]) == (6, 8, 6)
    # a limit the protocol does not exceed evaluates all of it: no subset to speak of
    whole = tmp_path / "whole"
    assert main([*_args(setup, "data", whole), "--limit", "8"]) == 0
    assert "subset" not in (whole / "robustness.md").read_text()
    assert json.loads((whole / "robustness.json").read_text())["n_protocol"] == 8


def test_a_silent_file_is_not_said_to_be_undecodable(setup, tmp_path, monkeypatch, capsys):
    """A file of digital silence is decoded, then left out as having nothing to score; the report and the summary
    line said every such file "could not be decoded", which sends one looking for a broken file."""
    data = tmp_path / "data"
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        for f in (setup["root"] / "a" / "data" / label).iterdir():
            (data / label / f.name).write_bytes(f.read_bytes())
    sf.write(data / "spoof" / "silent.wav", np.zeros(8000, dtype=np.float32), SR)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(_args(setup, data, out)) == 0
    assert ", 1 file(s) could not be read or scored" in capsys.readouterr().err
    md = (out / "robustness.md").read_text()
    assert "1 file(s) could not be read or scored (unreadable, silent, too short or too long)" in md, md
    assert "silent.wav: silent" in md and "could not be decoded" not in md
