"""Review 30 of score provenance: which code produced a score file and its report.

``sdd score``'s ``.run.json`` and ``sdd eval``'s ``report.json`` named the sddkit version (the same for every
commit) but not the git commit of the code, which training's ``run.json`` records; a torchrun merge into an output
that an earlier run wrote kept that run's record whole, naming its package versions for every row.

The code's checkout is a tiny git repository built here: ``sddkit.__file__`` pointed into it is where
:func:`sddkit.training.provenance.git_commit` looks (its cache cleared between runs, as each run is a new process).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from scoring_support import save_tiny_lcnn, write_noise_wav
from source_checkout_support import Source

from sddkit.cli.main import main
from sddkit.documents import run_record_path
from sddkit.scoring import batch
from sddkit.training import provenance


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    return Source(tmp_path / "project", monkeypatch, checkout=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


def _score(model: Path, out: Path, *clips: Path) -> None:
    assert main(["score", "--model", str(model), "--out", str(out), "--quiet", *map(str, clips)]) == 0


def _record(out: Path) -> dict:
    return json.loads(run_record_path(out).read_text())


def _protocol(tmp_path: Path, clips: list[Path]) -> Path:
    protocol = tmp_path / "labels.csv"
    labels = ("bonafide", "spoof")
    protocol.write_text("path,label\n" + "".join(f"{c},{labels[i % 2]}\n" for i, c in enumerate(clips)))
    return protocol


def test_score_run_record_names_the_commit_of_the_code_that_scored(tmp_path, model_dir, checkout):
    clip = write_noise_wav(tmp_path / "a.wav", 0.6, 1)
    out = tmp_path / "s.csv"
    _score(model_dir, out, clip)
    record = _record(out)
    assert record["git"] == checkout.block()
    assert "earlier_git" not in record


def test_score_run_record_says_null_outside_a_checkout(tmp_path, model_dir, monkeypatch):
    Source(tmp_path / "site-packages", monkeypatch, checkout=False)  # sddkit installed from a wheel
    clip = write_noise_wav(tmp_path / "a.wav", 0.6, 1)
    out = tmp_path / "s.csv"
    _score(model_dir, out, clip)
    record = _record(out)
    assert "git" in record and record["git"] is None


def test_a_resume_under_another_commit_goes_on_and_keeps_both(tmp_path, model_dir, checkout, capsys):
    a, b, c = (write_noise_wav(tmp_path / f"{n}.wav", 0.6, i) for i, n in enumerate("abc"))
    out = tmp_path / "s.csv"
    _score(model_dir, out, a)
    first = checkout.block()
    checkout.commit_change()  # the code changed between the interruption and the resume
    capsys.readouterr()
    _score(model_dir, out, a, b)
    err = capsys.readouterr().err
    second = checkout.block()
    assert first != second
    assert f"rows scored by other code (commit {first['commit'][:12]} -> commit {second['commit'][:12]})" in err
    assert len(out.read_text().splitlines()) == 3  # header + a + b: resumed, a not scored again
    record = _record(out)
    assert record["git"] == second and record["earlier_git"] == [first]
    # a further resume under the same code says nothing and keeps the earlier commit
    _score(model_dir, out, a, b, c)
    assert "other code" not in capsys.readouterr().err
    assert _record(out)["earlier_git"] == [first]
    assert len(out.read_text().splitlines()) == 4


def test_eval_report_names_the_code_that_scored_and_the_code_that_evaluated(tmp_path, model_dir, checkout):
    clips = [write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i) for i in range(4)]
    out = tmp_path / "s.csv"
    _score(model_dir, out, *clips[:2])
    first = checkout.block()
    checkout.commit_change()
    _score(model_dir, out, *clips)
    report_dir = tmp_path / "report"
    argv = ["eval", "--scores", str(out), "--protocol", str(_protocol(tmp_path, clips))]
    assert main([*argv, "--out", str(report_dir), "--bootstrap", "0"]) == 0
    inputs = json.loads((report_dir / "report.json").read_text())["inputs"]
    assert inputs["model"]["git"] == checkout.block()
    assert inputs["model"]["earlier_git"] == [first]
    assert inputs["sddkit_git"] == checkout.block()


def test_eval_report_says_null_outside_a_checkout(tmp_path, model_dir, monkeypatch):
    Source(tmp_path / "site-packages", monkeypatch, checkout=False)
    clips = [write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i) for i in range(2)]
    out = tmp_path / "s.csv"
    _score(model_dir, out, *clips)
    argv = ["eval", "--scores", str(out), "--protocol", str(_protocol(tmp_path, clips)), "--bootstrap", "0"]
    assert main([*argv, "--out", str(tmp_path / "report")]) == 0
    inputs = json.loads((tmp_path / "report" / "report.json").read_text())["inputs"]
    assert inputs["sddkit_git"] is None and inputs["model"]["git"] is None
    assert "earlier_git" not in inputs["model"]


def test_sasv_report_names_the_code_that_evaluated(tmp_path, checkout):
    rng = np.random.default_rng(0)
    scores = tmp_path / "sasv.txt"
    kinds = (("target", 2.0), ("nontarget", -1.0), ("spoof", 0.0))
    scores.write_text("".join(f"spk{i} {k}_{i} {rng.normal(m):.4f} {k}\n" for i in range(5) for k, m in kinds))
    assert main(["eval", "--asv-scores", str(scores), "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["inputs"]["sddkit_git"] == checkout.block()


def test_a_shard_merge_keeps_the_commit_and_versions_of_the_shards(tmp_path, model_dir, checkout, monkeypatch):
    # rows a one-process run wrote under the first commit, more added by a torchrun run under the second: the merge
    # kept the output's record whole, naming the first commit (and its versions) for every row
    clips = [write_noise_wav(tmp_path / f"f{i}.wav", 0.6, i) for i in range(4)]
    out = tmp_path / "s.csv"
    _score(model_dir, out, *clips[:2])
    first = checkout.block()
    older = {**_record(out)["versions"], "torch": "0.0.1"}
    run_record_path(out).write_text(json.dumps({**_record(out), "versions": older}))
    checkout.commit_change()
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for rank in (0, 1):  # ranks without a rendezvous: the last to finish merges
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        _score(model_dir, out, *clips)
    assert not batch.shard_path(out, 0).exists()  # merged
    assert len(list(batch.iter_rows(out))) == 4
    record = _record(out)
    assert record["git"] == checkout.block() and record["earlier_git"] == [first]
    assert record["versions"] == provenance.package_versions() and record["earlier_versions"] == [older]
    assert record["cwd"] == os.getcwd()  # the rest is the output's own record: its rows' paths are relative to it
