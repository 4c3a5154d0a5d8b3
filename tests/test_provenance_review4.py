"""Review 4 of run provenance: what run.json, a model directory's metadata and sdd cv's held-out scores record."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
from test_train_support import (  # noqa: F401  (one_thread: autouse fixture)
    TINY_MODEL,
    SyntheticDataset,
    install_tiny,
    one_thread,
    write_corpus,
)

from sddkit.config import from_dict
from sddkit.detectors.model_dir import load_model_dir
from sddkit.errors import ProtocolError
from sddkit.training import crossval, provenance
from sddkit.training.crossval import HeldOut
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=cwd, check=True, capture_output=True
    )


def test_git_commit_is_none_for_a_folder_the_checkout_does_not_track(tmp_path):
    # sddkit installed (not editable) into a virtualenv inside another project's checkout: git rev-parse answers
    # with that project's commit, which was recorded as sddkit's
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("venv/\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "mod.py").write_text("x = 1\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")
    installed = tmp_path / "venv" / "site-packages" / "sddkit"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert provenance.git_commit(installed) is None
    tracked = provenance.git_commit(tmp_path / "src")
    assert tracked is not None and len(tracked["commit"]) == 40 and tracked["dirty"] is False
    assert provenance.git_commit(tmp_path / "venv") is None  # nothing tracked there either


def test_package_versions_cover_the_audio_stack_and_cudnn():
    # decoding (soundfile, av), resampling (soxr) and the augmentations' filters (scipy) change the audio trained on
    versions = provenance.package_versions()
    assert {"soundfile", "soxr", "av", "scipy", "cudnn"} <= set(versions)
    assert versions["soxr"] is not None and versions["soundfile"] is not None


def _recipe(tmp_path, train_csv, **trainer):
    return from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": TINY_MODEL,
            "optimizer": {"lr": 1e-2},
            "data": {
                "train": {"protocol": str(train_csv), "format": "utterance_table"},
                "crop_samples": 640,
                "batch_size": 4,
            },
            "trainer": {"epochs": 5, "out_dir": str(tmp_path / "run"), "progress": False, **trainer},
        },
    )


def test_run_json_sessions_keep_their_own_recipe_cwd_threads_and_protocol_digests(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "corpus", n=12, samples=800)
    Trainer(_recipe(tmp_path, train, max_steps=2)).fit()
    # resumed with another lr: the top-level recipe is the new one, the first session's is kept in its entry
    r = _recipe(tmp_path, train, max_steps=4)
    r.optimizer.lr = 1e-3
    Trainer(r, resume=True).fit()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["recipe"]["optimizer"]["lr"] == 1e-3
    first, second = run["sessions"]
    assert first["recipe"]["optimizer"]["lr"] == 1e-2 and second["recipe"]["optimizer"]["lr"] == 1e-3
    assert first["recipe"]["trainer"]["max_steps"] == 2 and second["recipe"]["trainer"]["max_steps"] == 4
    digest = hashlib.sha256(train.read_bytes()).hexdigest()
    for session in (first, second):
        assert session["cwd"] == os.getcwd()  # relative recipe paths are read against it
        assert session["torch_threads"] >= 1
        assert session["protocols"] == {str(train): digest}
        assert "git" in session and session["versions"]["torch"] == run["versions"]["torch"]


def test_run_json_written_before_sessions_kept_recipes_keeps_the_earlier_one(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "corpus", n=12, samples=800)
    Trainer(_recipe(tmp_path, train, max_steps=2)).fit()
    path = tmp_path / "run" / "run.json"
    old = json.loads(path.read_text())
    for session in old["sessions"]:  # as an older sddkit wrote it
        session.pop("recipe")
    path.write_text(json.dumps(old))
    r = _recipe(tmp_path, train, max_steps=3)
    Trainer(r, resume=True).fit()
    first, second = json.loads(path.read_text())["sessions"]
    assert first["recipe"]["trainer"]["max_steps"] == 2 and second["recipe"]["trainer"]["max_steps"] == 3


def test_a_model_directory_records_the_dirty_flag_and_versions(tmp_path, monkeypatch):
    # the commit alone hid uncommitted changes: a model from an edited checkout looked like the commit's
    install_tiny(monkeypatch)
    monkeypatch.setattr("sddkit.training.trainer.git_commit", lambda: {"commit": "a" * 40, "dirty": True})
    r = from_dict(
        TrainRecipe,
        {
            "seed": 3,
            "model": TINY_MODEL,
            "data": {"batch_size": 8},
            "trainer": {"epochs": 1, "max_steps": 2, "out_dir": str(tmp_path / "run"), "progress": False},
        },
    )
    Trainer(r, train_data=SyntheticDataset(16)).fit()
    for name in ("best", "final"):
        meta = load_model_dir(tmp_path / "run" / name).metadata
        assert meta["git_commit"] == "a" * 40 and meta["git_dirty"] is True
        assert meta["versions"]["sddkit"] and meta["versions"]["torch"]


def test_cv_held_out_scores_record_the_model_that_wrote_them(tmp_path):
    from test_crossval import _recipe as cv_recipe

    recipe = cv_recipe(tmp_path, val_every=1)
    fold = HeldOut("source", ("s1",))
    fold_dir = tmp_path / "cv" / fold.dir_name
    figures = crossval.run_fold(recipe, fold, fold_dir, workers=0)
    record = json.loads((fold_dir / f"{crossval.SCORES_NAME}.run.json").read_text())
    best = load_model_dir(figures["model_dir"])
    assert record["model"] == figures["model_dir"] == str(fold_dir / "best")
    assert record["weights_digest"] == best.weights_digest is not None
    # rows of another model in held_out.csv are refused, not topped up with this model's
    record["weights_digest"] = "0" * 64
    (fold_dir / f"{crossval.SCORES_NAME}.run.json").write_text(json.dumps(record))
    (fold_dir / crossval.FOLD_NAME).unlink()
    with pytest.raises(ProtocolError, match="another scoring run"):
        crossval.run_fold(recipe, fold, fold_dir, workers=0)


def test_eval_report_names_the_scores_protocol_and_model_it_evaluated(tmp_path, monkeypatch):
    # report.json said how scores matched the protocol, but not which score file, protocol or model it evaluated
    from sddkit.cli.main import main
    from sddkit.documents import run_record_path

    monkeypatch.chdir(tmp_path)
    rows = [("real/0.wav", "bonafide", 1.2), ("real/1.wav", "bonafide", 0.3), ("fake/0.wav", "spoof", -0.8)]
    rows += [("fake/1.wav", "spoof", 0.1)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"{p},{k}\n" for p, k, _ in rows))
    (tmp_path / "scores.csv").write_text("path,score,error\n" + "".join(f"{p},{s},\n" for p, _, s in rows))
    record = {"model": "models/m1", "weights_digest": "ab" * 32, "cwd": str(tmp_path / "elsewhere")}
    run_record_path(tmp_path / "scores.csv").write_text(json.dumps(record))
    argv = ["eval", "--scores", "scores.csv", "--protocol", "labels.csv", "--out", "out", "--bootstrap", "0"]
    assert main(argv) == 0
    inputs = json.loads((tmp_path / "out" / "report.json").read_text())["inputs"]
    assert inputs["scores"] == str(tmp_path / "scores.csv") and inputs["protocol"] == str(tmp_path / "labels.csv")
    assert inputs["scores_sha256"] == hashlib.sha256((tmp_path / "scores.csv").read_bytes()).hexdigest()
    assert inputs["protocol_sha256"] == hashlib.sha256((tmp_path / "labels.csv").read_bytes()).hexdigest()
    assert inputs["model"] == {"model": str(tmp_path / "elsewhere" / "models" / "m1"), "weights_digest": "ab" * 32}


def test_robustness_records_the_weights_cwd_and_versions(tmp_path, monkeypatch):
    # info named the model by the path given (relative to a working directory it did not record) and nothing else
    import numpy as np
    import soundfile as sf
    import torch

    from sddkit.cli.main import main
    from sddkit.config import to_dict
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for label in ("bonafide", "spoof"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(2):
            sf.write(
                tmp_path / "data" / label / f"u{i}.wav", (0.1 * rng.standard_normal(3000)).astype(np.float32), 16000
            )
    cfg = from_dict(
        DetectorConfig, {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 0}}
    )
    torch.manual_seed(0)
    save_model_dir("model", build_detector(cfg).eval(), model_config=to_dict(cfg), inference={"window_samples": 4000})
    argv = ["robustness", "--model", "model", "--protocol", "data", "--out", "out", "--conditions", "mulaw", "--quiet"]
    assert main(argv) == 0
    info = json.loads((tmp_path / "out" / "robustness.json").read_text())["info"]
    assert info["weights_digest"] == load_model_dir(tmp_path / "model").weights_digest is not None
    assert info["cwd"] == str(tmp_path) and info["versions"]["av"] and info["versions"]["torch"]
    assert info["protocol_sha256"] is None  # a folder of labelled audio, not a file


def test_latest_checkpoint_puts_back_a_copy_moved_aside_by_an_interrupted_resave(tmp_path, monkeypatch):
    # re-saving a step moves the published copy to .tmp-old-<name>-<pid> before renaming the new one in: a kill
    # between the two left `latest` naming nothing ("which does not exist"), and the next save deleted the copy
    import torch

    from sddkit.training import checkpoint as ckpt

    root = tmp_path / "checkpoints"
    ckpt.save_checkpoint(root, "step-00000002", {"w": torch.ones(3), "step": 2})
    real_replace = os.replace
    dead = []

    def killed_after_moving_aside(src, dst):
        if dead:  # a hard kill: no clean-up of the process runs any more
            raise KeyboardInterrupt
        real_replace(src, dst)
        if ".tmp-old-" in str(dst):
            dead.append(True)
            raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(ckpt.os, "replace", killed_after_moving_aside)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(root, "step-00000002", {"w": torch.zeros(3), "step": 2})
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    assert not (root / "step-00000002").exists()
    path = ckpt.latest_checkpoint(root)
    assert path == root / "step-00000002"
    assert torch.equal(ckpt.load_checkpoint(path)["w"], torch.ones(3))


def test_held_out_scoring_restarted_from_another_folder_reads_its_rows_back(tmp_path, monkeypatch):
    # with its run record, held_out.csv keeps relative paths relative to the first run's folder (as sdd score does):
    # read back by their spelling, a restart from another folder found none of its rows (KeyError)
    import numpy as np
    import soundfile as sf
    import torch

    from sddkit.config import to_dict
    from sddkit.data.table import UtteranceTable
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.detectors.model_dir import save_model_dir

    cfg = from_dict(
        DetectorConfig, {"frontend": "logmel", "backend": {"name": "lcnn", "channels": 4, "lstm_layers": 0}}
    )
    torch.manual_seed(0)
    model = save_model_dir(
        tmp_path / "model", build_detector(cfg).eval(), model_config=to_dict(cfg), inference={"window_samples": 4000}
    )
    rng = np.random.default_rng(0)
    records = []
    for i, label in enumerate(["bonafide", "spoof", "bonafide", "spoof"]):
        x = (0.1 * rng.standard_normal(3000)).astype(np.float32)
        for first in ("a", "b"):  # the same files under two working directories
            (tmp_path / first / "audio").mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / first / "audio" / f"{i}.wav", x, 16000)
        records.append({"utt_id": f"u{i}", "path": f"audio/{i}.wav", "label": label, "attack": "-", "source": "s"})
    table = UtteranceTable.from_records(records)
    out = tmp_path / "held_out.csv"
    monkeypatch.chdir(tmp_path / "a")
    first = crossval._score_held_out(model, table.subset(np.arange(2)), out, 0)
    monkeypatch.chdir(tmp_path / "b")
    scores = crossval._score_held_out(model, table, out, 0)
    assert scores.shape == (4,) and np.isfinite(scores).all() and np.allclose(scores[:2], first)


def test_an_interrupt_between_the_two_renames_of_a_resave_puts_the_old_copy_back_at_once(tmp_path, monkeypatch):
    # a Ctrl-C after the published copy was moved aside left the step missing until the next latest_checkpoint():
    # anything reading the folder in between (another rank, `ls`, a copy to another machine) found no checkpoint
    import torch

    from sddkit.training import checkpoint as ckpt

    root = tmp_path / "checkpoints"
    ckpt.save_checkpoint(root, "step-00000002", {"w": torch.ones(3), "step": 2})
    real_replace = os.replace

    def interrupted_after_moving_aside(src, dst):
        real_replace(src, dst)
        if ".tmp-old-" in str(dst):
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.os, "replace", interrupted_after_moving_aside)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(root, "step-00000002", {"w": torch.zeros(3), "step": 2})
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    assert (root / "step-00000002").is_dir()
    assert not list(root.glob(".tmp-*"))
    assert torch.equal(ckpt.load_checkpoint(root / "step-00000002")["w"], torch.ones(3))
