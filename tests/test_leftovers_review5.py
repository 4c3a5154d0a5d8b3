"""Review 5 leftovers of run provenance and resuming: sdd score's and sdd cv's records carry the package versions
(cv.json the git commit too), sdd robustness --retry-errors, and untracked code making a checkout dirty."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
from scoring_support import save_tiny_lcnn, write_noise_wav

import sddkit
from sddkit.cli.main import main
from sddkit.data.protocols import read_protocol
from sddkit.documents import run_record_path
from sddkit.evaluation import robustness
from sddkit.evaluation.robustness import JOURNAL_NAME, RobustnessConfig, run_robustness
from sddkit.training import crossval, provenance
from sddkit.training.crossval import cross_validate, cross_validate_seeds, parse_folds

SR = 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("model") / "lcnn")


# --- sdd score: versions in the run record ---------------------------------------------------------


def test_score_run_record_carries_the_package_versions_and_a_resume_after_an_upgrade_goes_on(
    tmp_path, model_dir, capsys
):
    # the run record named the model and settings but not the torch/numpy/decoder versions the rows came from
    a, b = write_noise_wav(tmp_path / "a.wav", 0.6, 1), write_noise_wav(tmp_path / "b.wav", 0.6, 2)
    out = tmp_path / "s.csv"
    base = ["score", "--model", str(model_dir), "--out", str(out), "--quiet"]
    assert main([*base, str(a)]) == 0
    record = json.loads(run_record_path(out).read_text())
    assert record["versions"] == provenance.package_versions()
    assert "earlier_versions" not in record
    # the first run was scored under another torch: the resume is not refused (versions are no part of the
    # comparison), says so, and the record keeps the earlier block beside the new one
    earlier = {**record["versions"], "torch": "0.0.1"}
    run_record_path(out).write_text(json.dumps({**record, "versions": earlier}))
    capsys.readouterr()
    assert main([*base, str(a), str(b)]) == 0
    err = capsys.readouterr().err
    assert "other package versions (torch 0.0.1 ->" in err
    resumed = json.loads(run_record_path(out).read_text())
    assert resumed["versions"] == provenance.package_versions()
    assert resumed["earlier_versions"] == [earlier]
    assert len(open(out).read().splitlines()) == 3  # header + a + b: a was not scored again
    # a further resume under the same versions keeps the earlier block and says nothing
    assert main([*base, str(a), str(b)]) == 0
    assert "package versions" not in capsys.readouterr().err
    assert json.loads(run_record_path(out).read_text())["earlier_versions"] == [earlier]


# --- sdd cv: provenance in cv.json -----------------------------------------------------------------


def test_cv_json_records_versions_and_the_git_commit(tmp_path, monkeypatch):
    # each fold's run.json had versions and git; cv.json, the file the result is read from, had neither
    from test_crossval import _recipe

    commit = {"commit": "c" * 40, "dirty": True}
    monkeypatch.setattr(provenance, "git_commit", lambda: commit)

    def run_fold(recipe, fold, fold_dir, *, workers=2):  # the figures of a trained fold, without training
        return {
            "held_out": list(fold.values),
            "column": fold.column,
            "n_bonafide": 2,
            "n_spoof": 2,
            "eer": 0.25,
            "val_eer": 0.1,
        }

    monkeypatch.setattr(crossval, "run_fold", run_fold)
    recipe = _recipe(tmp_path)
    folds = parse_folds("source", ["s0", "s1"])
    cross_validate(recipe, folds, tmp_path / "cv", workers=0)
    written = json.loads((tmp_path / "cv" / crossval.CV_NAME).read_text())
    assert written["git"] == commit and written["versions"] == provenance.package_versions()


def test_multi_seed_cv_json_records_versions_and_the_git_commit(tmp_path, monkeypatch):
    from test_crossval import _recipe

    monkeypatch.setattr(provenance, "git_commit", lambda: None)  # not a checkout: recorded as such

    def run_fold(recipe, fold, fold_dir, *, workers=2):
        figures = {"held_out": list(fold.values), "column": fold.column, "n_bonafide": 2, "n_spoof": 2}
        return {**figures, "eer": 0.1 * (1 + recipe.seed), "val_eer": 0.1}

    monkeypatch.setattr(crossval, "run_fold", run_fold)
    folds = parse_folds("source", ["s0", "s1"])
    cross_validate_seeds(_recipe(tmp_path), folds, tmp_path / "cv", [0, 1], workers=0)
    for path in (tmp_path / "cv" / crossval.CV_NAME, tmp_path / "cv" / "seed_1" / crossval.CV_NAME):
        written = json.loads(path.read_text())
        assert "git" in written and written["git"] is None
        assert written["versions"]["torch"] and written["versions"]["sddkit"] == sddkit.__version__


# --- sdd robustness --retry-errors -----------------------------------------------------------------


@pytest.fixture
def labelled(tmp_path):
    """A labelled folder of 6 files, spoof/u1.wav unreadable; the bytes of a readable u1 to mend it with."""
    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        for i in range(3):
            sf.write(data / label / f"u{i}.wav", (0.05 * rng.standard_normal(3000 + 500 * i)).astype(np.float32), SR)
    mended = (data / "spoof" / "u1.wav").read_bytes()
    (data / "spoof" / "u1.wav").write_bytes(b"RIFF not a wav file")
    return data, mended


def _scores(result):
    return {c: np.round(s, 5).tolist() for c, s in result.scores.items()}


def test_robustness_retry_errors_scores_a_mended_file_again(model_dir, labelled, tmp_path):
    # a resumed run kept the journaled decode failure of a file mended since: its only remedy was to delete
    # the journal and score every file again
    data, mended = labelled
    det = sddkit.load_detector(model_dir)
    cfg = RobustnessConfig(conditions=["mulaw"], workers=0)
    journal = tmp_path / "j.jsonl"
    first = run_robustness(det, read_protocol(data), cfg, progress=False, journal=journal)
    assert len(first.failures) == 1 and journal.is_file()  # kept until a report is written
    (data / "spoof" / "u1.wav").write_bytes(mended)
    kept = run_robustness(det, read_protocol(data), cfg, progress=False, journal=journal)
    assert len(kept.failures) == 1 and kept.n_retried == 0  # without the flag, as sdd score without it
    retried = run_robustness(det, read_protocol(data), cfg, progress=False, journal=journal, retry_errors=True)
    assert retried.failures == [] and retried.n_retried == 1 and retried.n_resumed == 5
    fresh = run_robustness(det, read_protocol(data), cfg, progress=False)
    assert _scores(retried) == _scores(fresh)
    # the journal holds each file once: a later resume reads it back whole (no "there twice")
    again = run_robustness(det, read_protocol(data), cfg, progress=False, journal=journal)
    assert again.n_resumed == 6 and again.failures == [] and _scores(again) == _scores(fresh)


@pytest.mark.parametrize("older_journal", [False, True])
def test_robustness_retry_errors_drops_a_files_condition_errors_with_it(
    model_dir, labelled, tmp_path, monkeypatch, older_journal
):
    data, mended = labelled
    (data / "spoof" / "u1.wav").write_bytes(mended)
    real = robustness.degrade
    broken = {"on": True}

    def degrade(name, x, sr, seed, *, fast_codecs=False):
        if broken["on"] and name == "mulaw" and x.shape[0] == 3500:  # u1 (bona fide and spoof)
            raise RuntimeError("no mu-law encoder here")
        return real(name, x, sr, seed, fast_codecs=fast_codecs)

    monkeypatch.setattr(robustness, "degrade", degrade)
    det = sddkit.load_detector(model_dir)
    cfg = RobustnessConfig(conditions=["mulaw"], workers=0)
    journal = tmp_path / "j.jsonl"
    first = run_robustness(det, read_protocol(data), cfg, progress=False, journal=journal)
    assert len(first.condition_errors["mulaw"]) == 2
    if older_journal:  # written before errors carried their file's index: attributed by the utt_id they start with
        lines = [json.loads(line) for line in journal.read_text().splitlines()]
        for batch in lines[1:]:
            batch["errors"] = [e[:2] for e in batch["errors"]]
        journal.write_text("".join(json.dumps(r) + "\n" for r in lines))
    broken["on"] = False  # the encoder is installed
    retried = run_robustness(det, read_protocol(data), cfg, progress=False, journal=journal, retry_errors=True)
    assert retried.condition_errors == {} and retried.n_retried == 2
    fresh = run_robustness(det, read_protocol(data), cfg, progress=False)
    assert _scores(retried) == _scores(fresh)


def test_sdd_robustness_retry_errors_flag(model_dir, labelled, tmp_path, capsys):
    data, mended = labelled
    out = tmp_path / "out"
    out.mkdir()
    # an unfinished run's journal (as sdd robustness with these options writes it), the failure recorded
    det = sddkit.load_detector(model_dir, batch_size=16)
    cfg = RobustnessConfig(conditions=["mulaw"], workers=0, max_duration=600.0)
    run_robustness(det, read_protocol(data), cfg, progress=False, journal=out / JOURNAL_NAME)
    (data / "spoof" / "u1.wav").write_bytes(mended)
    argv = ["robustness", "--model", str(model_dir), "--protocol", str(data), "--out", str(out)]
    assert main([*argv, "--conditions", "mulaw", "--quiet", "--retry-errors"]) == 0
    assert "1 file(s) with errors scored again" in capsys.readouterr().err
    report = json.loads((out / "robustness.json").read_text())
    assert report["n_failed_files"] == 0 and report["n_decoded"] == 6


# --- git_dirty and untracked files -----------------------------------------------------------------


def _git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=cwd, check=True, capture_output=True
    )


def _dirty(pkg) -> bool:
    provenance._git_commit.cache_clear()  # the record is cached per folder for the process
    record = provenance.git_commit(pkg)
    assert record is not None
    return record["dirty"]


def test_untracked_code_makes_the_checkout_dirty_but_run_outputs_and_ignored_files_do_not(tmp_path):
    # an untracked module under src/ (or a new recipe) changes what runs, yet git_dirty said False
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("__pycache__/\n*.log\n")
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")

    assert _dirty(pkg) is False
    (tmp_path / "runs" / "r1").mkdir(parents=True)  # run outputs beside the code: not what runs
    (tmp_path / "runs" / "r1" / "run.json").write_text("{}")
    (tmp_path / "scores.csv").write_text("path,score\n")
    (pkg / "__pycache__").mkdir()  # ignored files never count, under src/ either
    (pkg / "__pycache__" / "m.pyc").write_bytes(b"\0")
    (pkg / "train.log").write_text("log\n")
    assert _dirty(pkg) is False
    (pkg / "extra.py").write_text("y = 2\n")
    assert _dirty(pkg) is True
    (pkg / "extra.py").unlink()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "new.yaml").write_text("seed: 1\n")
    assert _dirty(pkg) is True
    (tmp_path / "recipes" / "new.yaml").unlink()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "go.sh").write_text("echo\n")
    assert _dirty(pkg) is True
    (tmp_path / "scripts" / "go.sh").unlink()
    assert _dirty(pkg) is False
    (pkg / "__init__.py").write_text("x = 2\n")  # a tracked change anywhere, as before
    assert _dirty(pkg) is True
    provenance._git_commit.cache_clear()


def test_untracked_code_of_a_project_inside_a_larger_checkout_is_its_own(tmp_path):
    # sddkit kept as a folder of a larger checkout: that checkout's own top-level src/ is not sddkit's code
    _git(tmp_path, "init", "-q")
    pkg = tmp_path / "vendor" / "proj" / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    (tmp_path / "vendor" / "proj" / "recipes").mkdir()
    (tmp_path / "vendor" / "proj" / "recipes" / "a.yaml").write_text("seed: 1\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "other.py").write_text("z = 0\n")  # the larger project's code, untracked
    assert _dirty(pkg) is False
    (tmp_path / "vendor" / "proj" / "recipes" / "b.yaml").write_text("seed: 2\n")
    assert _dirty(pkg) is True
    provenance._git_commit.cache_clear()
