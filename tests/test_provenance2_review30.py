"""Review 30 of provenance, part 2: which code made a comparison and a robustness report.

``sdd score``'s ``.run.json`` and ``sdd eval``'s ``report.json`` name the git commit of the code; ``sdd compare
--json``'s ``inputs`` named the sddkit version alone (the same for every commit) and ``robustness.json``'s ``info``
the package versions alone, so a published comparison or robustness table could not be traced to its code. A
robustness run resumed under other code now goes on, as a resume under other package versions does, and says so.

The code's checkout is a tiny git repository built here (as tests/test_scoreprov_review30.py builds it):
``sddkit.__file__`` pointed into it is where :func:`sddkit.training.provenance.git_commit` looks, its cache cleared
between runs, as each run is a new process.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scoring_support import run_interrupted_at_second_batch, save_tiny_lcnn
from source_checkout_support import Source

import sddkit
from sddkit.cli.main import main
from sddkit.evaluation.robustness import JOURNAL_NAME


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    return Source(tmp_path / "project", monkeypatch, checkout=True)


@pytest.fixture
def no_checkout(tmp_path, monkeypatch):
    return Source(tmp_path / "site-packages", monkeypatch, checkout=False)  # sddkit installed from a wheel


def _compare_inputs(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    labels = np.arange(20) % 2
    (tmp_path / "meta.csv").write_text(
        "path,label\n" + "".join(f"a{i}.wav,{'bonafide' if y else 'spoof'}\n" for i, y in enumerate(labels))
    )
    for name in ("old", "new"):
        scores = labels + rng.normal(size=labels.size)
        (tmp_path / f"{name}.csv").write_text(
            "path,score\n" + "".join(f"a{i}.wav,{s:.6f}\n" for i, s in enumerate(scores))
        )
    out = tmp_path / "cmp.json"
    argv = ["compare", "--protocol", str(tmp_path / "meta.csv"), "--baseline", str(tmp_path / "old.csv")]
    assert main([*argv, "--system", str(tmp_path / "new.csv"), "--bootstrap", "50", "--json", str(out)]) == 0
    return json.loads(out.read_text())["inputs"]


def test_compare_json_names_the_commit_of_the_code_that_compared(tmp_path, checkout):
    inputs = _compare_inputs(tmp_path)
    assert inputs["sddkit_git"] == checkout.block()
    assert inputs["sddkit_version"] == sddkit.__version__


def test_compare_json_says_null_outside_a_checkout(tmp_path, no_checkout):
    inputs = _compare_inputs(tmp_path)
    assert "sddkit_git" in inputs and inputs["sddkit_git"] is None


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """A tiny random model and a labelled folder of 4 + 4 files."""
    root = tmp_path_factory.mktemp("provenance2")
    rng = np.random.default_rng(4)
    for label in ("bonafide", "spoof"):
        (root / "data" / label).mkdir(parents=True)
        for i in range(4):
            x = ((0.02 if label == "spoof" else 0.1) * rng.standard_normal(6000 + 900 * i)).astype(np.float32)
            sf.write(root / "data" / label / f"u{i}.wav", x, 16000)
    return {"data": root / "data", "model": save_tiny_lcnn(root / "model")}


def _robustness(audio, out: Path) -> list[str]:
    return [
        "robustness",
        *("--model", str(audio["model"]), "--protocol", str(audio["data"]), "--out", str(out)),
        *("--conditions", "mulaw", "--workers", "0", "--batch-size", "4", "--quiet"),
    ]


def _info(out: Path) -> dict:
    return json.loads((out / "robustness.json").read_text())["info"]


def test_robustness_report_names_the_commit_of_the_code_that_scored(tmp_path, audio, checkout):
    assert main(_robustness(audio, tmp_path / "out")) == 0
    info = _info(tmp_path / "out")
    assert info["git"] == checkout.block()
    assert "earlier_git" not in info


def test_robustness_report_says_null_outside_a_checkout(tmp_path, audio, no_checkout):
    assert main(_robustness(audio, tmp_path / "out")) == 0
    info = _info(tmp_path / "out")
    assert "git" in info and info["git"] is None


def test_a_robustness_resume_under_another_commit_goes_on_and_keeps_both(
    tmp_path, audio, checkout, monkeypatch, capsys
):
    out = tmp_path / "out"
    run_interrupted_at_second_batch(monkeypatch, _robustness(audio, out))
    assert (out / JOURNAL_NAME).is_file()
    first = checkout.block()
    checkout.commit_change()  # the code changed between the interruption and the resume
    second = checkout.block()
    capsys.readouterr()
    assert main(_robustness(audio, out)) == 0  # not refused: the model and settings are what a resume compares
    err = capsys.readouterr().err
    assert "resumed from" in err
    assert f"were scored by other code (commit {first['commit'][:12]} -> commit {second['commit'][:12]})" in err
    info = _info(out)
    assert info["git"] == second and info["earlier_git"] == [first]

    # a resume under the same code says nothing of the code and records no earlier commit
    out2 = tmp_path / "out2"
    run_interrupted_at_second_batch(monkeypatch, _robustness(audio, out2))
    capsys.readouterr()
    assert main(_robustness(audio, out2)) == 0
    err = capsys.readouterr().err
    assert "resumed from" in err and "other code" not in err
    assert "earlier_git" not in _info(out2) and _info(out2)["git"] == second


def _fuse_corpus(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A labelled protocol of val trials and two systems' score files of them (by path)."""
    rng = np.random.default_rng(3)
    proto, a, b = ["path,label,partition"], ["path,score"], ["path,score"]
    for label in ("bonafide", "spoof"):
        for i in range(10):
            path = str(tmp_path / "clips" / f"{label}_{i:02d}.wav")
            proto.append(f"{path},{label},val")
            y = float(label == "bonafide")
            a.append(f"{path},{y + rng.normal():.6f}")
            b.append(f"{path},{2 * y + 2 * rng.normal() - 1:.6f}")
    for name, lines in (("protocol.csv", proto), ("a.csv", a), ("b.csv", b)):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path / "protocol.csv", tmp_path / "a.csv", tmp_path / "b.csv"


def _fuse(tmp_path: Path, out: Path, *extra: str) -> dict:
    protocol, a, b = _fuse_corpus(tmp_path)
    assert main(["fuse", "--protocol", str(protocol), "--scores", str(a), str(b), "--out", str(out), *extra]) == 0
    return json.loads(out.with_name(out.name + ".fusion.json").read_text())


def test_fuse_record_names_the_code_that_fitted_and_the_code_that_applied(tmp_path, checkout):
    fit = _fuse(tmp_path, tmp_path / "fit" / "fused.csv")
    first = checkout.block()
    assert fit["sddkit_git"] == first and fit["sddkit_version"] == sddkit.__version__
    # applied later by other code: the fit's code stays (its weights are the fit's), the applier's is added
    checkout.commit_change()
    applied = _fuse(tmp_path, tmp_path / "new.csv", "--apply", str(tmp_path / "fit" / "fused.csv.fusion.json"))
    assert applied["sddkit_git"] == first
    assert applied["applied_sddkit_git"] == checkout.block() != first
    assert applied["applied_sddkit_version"] == sddkit.__version__


def test_fuse_record_says_null_outside_a_checkout(tmp_path, no_checkout):
    record = _fuse(tmp_path, tmp_path / "fused.csv")
    assert "sddkit_git" in record and record["sddkit_git"] is None
