"""Review 28 of reproducibility as a researcher reproducing a paper needs it (reprodpath): what a run's run.json
records so that someone else can run it again (the command line, when each session started and ended, the device,
the utterances read and the trained models started from), and what an `sdd compare` JSON records of its inputs."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time

import numpy as np
from test_train_support import (  # noqa: F401  (one_thread: autouse fixture)
    TINY_MODEL,
    crash_on_save,
    install_tiny,
    one_thread,
    write_corpus,
)

import sddkit
from sddkit.cli.main import main
from sddkit.config import from_dict
from sddkit.training.provenance import git_commit
from sddkit.training.recipe import TrainRecipe
from sddkit.training.trainer import Trainer


def _recipe(out, train, val=None, **top):
    data = {"train": {"protocol": str(train), "format": "utterance_table"}, "crop_samples": 640, "batch_size": 4}
    if val is not None:
        data["val"] = {"protocol": str(val), "format": "utterance_table"}
    recipe = {
        "seed": 3,
        "optimizer": {"lr": 1e-2},
        "data": data,
        **({} if "init_from" in top else {"model": TINY_MODEL}),
        **top,
    }
    recipe["trainer"] = {"max_steps": 4, "save_every": 2, "out_dir": str(out), "progress": False}
    return from_dict(TrainRecipe, recipe)


def _sessions(out):
    return json.loads((out / "run.json").read_text())["sessions"]


def _when(stamp):
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z"))


def test_run_json_records_the_command_line_end_time_device_and_utterances_read(tmp_path, monkeypatch):
    # a session recorded when it started, but not its command line, when it ended, which utterances it read (a
    # protocol folder has no digest), or what the device was beyond "cuda:0"
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "corpus", n=12, samples=800)  # every 3rd bona fide: 4 of 12
    val = write_corpus(tmp_path / "corpus", n=9, samples=800, seed=1, partition="val")
    argv = ["sdd", "train", "recipe.yaml", "seed=3", "data.num_workers=0"]
    monkeypatch.setattr(sys, "argv", argv)
    Trainer(_recipe(tmp_path / "run", train, val)).fit()
    (session,) = _sessions(tmp_path / "run")
    assert session["argv"] == argv
    assert session["end_step"] == 4
    assert _when(session["started"]) <= _when(session["finished"])
    assert session["device"] == "cpu" and session["device_name"] == (platform.machine() or "unknown")
    assert session["utterances"] == {
        "train": {"n": 12, "bonafide": 4, "spoof": 8},
        "val": {"n": 9, "bonafide": 3, "spoof": 6},
    }
    assert session["model_dirs"] == {}


def test_an_interrupted_session_is_left_unfinished_and_its_resume_finishes(tmp_path, monkeypatch):
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "corpus", n=12, samples=800)
    with crash_on_save(monkeypatch, 2):  # killed while saving step 4, after the checkpoint of step 2
        Trainer(_recipe(tmp_path / "run", train)).fit()
    (stopped,) = _sessions(tmp_path / "run")
    assert stopped["finished"] is None and stopped["end_step"] is None
    Trainer(_recipe(tmp_path / "run", train), resume=True).fit()
    first, second = _sessions(tmp_path / "run")
    assert first["finished"] is None  # what the first session left is kept as it was
    assert second["resumed_from"] == "step-00000002" and second["end_step"] == 4 and second["finished"] is not None
    assert second["utterances"]["train"] == {"n": 12, "bonafide": 4, "spoof": 8} and second["utterances"]["val"] is None


def test_run_json_records_the_weights_of_the_model_a_run_starts_from(tmp_path, monkeypatch):
    # init_from names a folder: a first stage exported there again (a resume, a retrain) holds other weights, and the
    # second stage's record could not tell which it started from
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "corpus", n=12, samples=800)
    Trainer(_recipe(tmp_path / "first", train)).fit()
    first = tmp_path / "first" / "best"
    Trainer(_recipe(tmp_path / "second", train, init_from=str(first))).fit()
    (session,) = _sessions(tmp_path / "second")
    digest = json.loads((first / "config.json").read_text())["weights_digest"]
    assert session["model_dirs"] == {str(first): digest}
    # an average of frozen experts (nothing trained, no data.train read) records its experts' weights alike
    experts = [first, tmp_path / "first" / "final"]
    mixture = {"expert_dirs": [str(d) for d in experts], "gate": "average", "expert_names": ["a", "b"]}
    Trainer(_recipe(tmp_path / "average", train, train, init_from=None, mixture=mixture)).fit()
    (session,) = _sessions(tmp_path / "average")
    assert session["model_dirs"] == {
        str(d): json.loads((d / "config.json").read_text())["weights_digest"] for d in experts
    }
    assert session["utterances"]["train"] is None and session["utterances"]["val"]["n"] == 12
    assert session["finished"] is not None


def _scored_protocol(tmp_path):
    """A labels CSV of 60 files in two partitions (val, test) and two systems' score CSVs of them."""
    rng = np.random.default_rng(0)
    labels = ["bonafide" if i % 3 == 0 else "spoof" for i in range(60)]
    rows = ["path,label,partition"] + [f"f{i}.wav,{y},{'val' if i < 30 else 'test'}" for i, y in enumerate(labels)]
    protocol = tmp_path / "protocol.csv"
    protocol.write_text("\n".join(rows) + "\n")
    files = []
    for name, separation in (("base", 0.5), ("new", 2.0)):
        scores = rng.normal(0, 1, 60) + separation * np.array([y == "bonafide" for y in labels])
        path = tmp_path / f"{name}.csv"
        path.write_text("path,score\n" + "".join(f"f{i}.wav,{s:.6f}\n" for i, s in enumerate(scores)))
        files.append(path)
    return protocol, files


def test_compare_json_records_what_was_compared_and_its_seed(tmp_path):
    # the JSON named the score files as given but not the protocol, its partitions or any digest: comparisons of val
    # and of test read alike but for their numbers, and a score file rewritten since could not be told
    protocol, (base, new) = _scored_protocol(tmp_path)
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(base), "--system", str(new), "--seed", "11"]
    argv += ["--bootstrap", "200"]
    for name in ("a", "b"):
        assert main([*argv, "--partitions", "val", "--json", str(tmp_path / f"{name}.json")]) == 0
    assert main([*argv, "--partitions", "test", "--json", str(tmp_path / "test.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("a", "b"))
    assert a == b  # the same seed, the same interval
    assert a["bootstrap"]["seed"] == 11
    assert a["inputs"] == {
        "protocol": str(protocol),
        "protocol_sha256": hashlib.sha256(protocol.read_bytes()).hexdigest(),
        "protocol_format": None,
        "protocol_options": None,
        "partitions": ["val"],
        "baseline_sha256": [hashlib.sha256(base.read_bytes()).hexdigest()],
        "system_sha256": [hashlib.sha256(new.read_bytes()).hexdigest()],
        "sddkit_version": sddkit.__version__,
        "sddkit_git": git_commit(),
    }
    assert json.loads((tmp_path / "test.json").read_text())["inputs"]["partitions"] == ["test"]
