"""`sdd train` as a user drives it: bad inputs end in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
from test_train_support import (  # noqa: F401  (one_thread: autouse fixture)
    install_tiny,
    one_thread,
    write_corpus,
    write_tiny_recipe,
)


def _recipe(tmp_path, train, val, out) -> str:
    return write_tiny_recipe(tmp_path, train, val, out)


def _with_bad_file(table, tmp_path, kind: str) -> str:
    """A copy of ``table`` whose second row names an empty (zero-sample) or corrupt WAV file (one that is there, so
    the look-up before the first step passes it and a loader worker meets it; test_preflight23_review23 has the
    missing ones)."""
    rows = list(csv.DictReader(open(table)))
    bad = tmp_path / f"{kind}.wav"
    if kind == "empty":
        sf.write(bad, np.zeros(0, dtype=np.float32), 16000)
    else:
        bad.write_bytes(b"not audio at all")
    rows[1]["path"] = str(bad)
    out = tmp_path / f"{kind}.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(out)


def _one_line_error(capsys, argv) -> str:
    from sddkit.cli.main import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("split,kind", [("train", "empty"), ("val", "corrupt")])
def test_a_bad_audio_file_read_by_a_loader_worker_is_a_one_line_error(tmp_path, monkeypatch, capsys, split, kind):
    # with data.num_workers >= 1 (the shipped recipes use 1 or 2) the DataLoader re-raises a worker's error
    # with the worker's whole traceback inside the message
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "c", n=12, samples=800)
    val = write_corpus(tmp_path / "c", n=9, samples=800, seed=1, partition="val")
    tables = {"train": train, "val": val}
    tables[split] = _with_bad_file(tables[split], tmp_path, kind)
    recipe = _recipe(tmp_path, tables["train"], tables["val"], tmp_path / "run")
    err = _one_line_error(capsys, ["train", recipe, "data.num_workers=1", "data.sampler=class_balanced"])
    expected = "decodes to zero samples" if kind == "empty" else "not a readable audio file"
    assert err.startswith("sdd train: error: ") and f"{kind}.wav: {expected}" in err, err


def test_an_out_dir_that_cannot_be_created_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "c", n=12, samples=800)
    val = write_corpus(tmp_path / "c", n=9, samples=800, seed=1, partition="val")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    recipe = _recipe(tmp_path, train, val, tmp_path / "run")
    for out in (blocker, blocker / "run"):
        err = _one_line_error(capsys, ["train", recipe, f"trainer.out_dir={out}"])
        assert "trainer.out_dir" in err and str(out) in err, err


def test_mldg_batches_with_one_spoof_domain_name_the_domain(tmp_path, monkeypatch, capsys):
    install_tiny(monkeypatch)
    train = write_corpus(tmp_path / "c", n=12, samples=800, attacks=("A07",))
    val = write_corpus(tmp_path / "c", n=9, samples=800, seed=1, partition="val")
    recipe = _recipe(tmp_path, train, val, tmp_path / "run")
    err = _one_line_error(capsys, ["train", recipe, "data.sampler=domain_batch"])
    # before: "MLDG needs at least 2 spoof domains, found ['0']" (the dataset's internal domain index)
    assert "'A07'" in err and "data.domain_column 'attack'" in err, err
