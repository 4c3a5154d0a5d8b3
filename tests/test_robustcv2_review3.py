"""Second review of sdd cv and sdd robustness: fold folder names, where and how held-out files are scored, and
how the robustness report is written."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from scoring_support import save_tiny_lcnn
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.errors import ConfigError, ProtocolError
from sddkit.evaluation.robustness import RobustnessConfig, RobustnessResult, summarize, write_robustness
from sddkit.training import crossval
from sddkit.training.crossval import HeldOut, held_out_table, parse_folds

SR = 16000


# --- sdd cv -----------------------------------------------------------------------------------------------


def test_a_fold_holding_out_many_long_values_gets_a_folder_the_file_system_takes(tmp_path):
    """fold_<values> joined every held-out value into one folder name: past 255 bytes the fold crashed with
    "OSError: File name too long" (a traceback) when its folder was first looked at."""
    long_a = ",".join(f"generator_{'a' * 30}_{i}" for i in range(8))
    long_b = ",".join(f"generator_{'a' * 30}_{i}" for i in range(8, 16))
    folds = parse_folds("source", ["s0", long_a, long_b])
    names = [f.dir_name for f in folds]
    assert names[0] == "fold_s0"  # short names are as before, so earlier runs still resume
    assert all(len(n.encode()) <= 255 for n in names) and len(set(names)) == 3
    assert names[1].startswith("fold_generator_") and names[1] == HeldOut("source", folds[1].values).dir_name
    recipe = _recipe(tmp_path)
    for fold in folds[1:]:
        crossval.check_fold_recipe(recipe, fold, tmp_path / "cv" / fold.dir_name)  # raised OSError
        (tmp_path / "cv" / fold.dir_name / "checkpoints").mkdir(parents=True)


def _labels_csv(folder, seed: int) -> str:
    """``folder/labels.csv`` naming ``audio/0000.wav`` .. ``audio/0011.wav`` in its own folder (sources s0, s1)."""
    (folder / "audio").mkdir(parents=True)
    lines = ["path,label,source"]
    for i in range(12):
        noise = 0.1 * np.random.default_rng([seed, i]).standard_normal(4000)
        sf.write(folder / "audio" / f"{i:04d}.wav", noise.astype(np.float32), SR)
        lines.append(f"audio/{i:04d}.wav,{'bonafide' if i % 3 == 0 else 'spoof'},s{i % 2}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return str(folder / "labels.csv")


def test_val_files_whose_utt_ids_match_train_ones_are_held_out_too(tmp_path):
    """train/labels.csv and val/labels.csv each naming audio/0001.wav in their own folder (utt_id = the path as
    written): the held-out table dropped every val file whose utt_id a train file had, as if it were the same
    file, so the fold was scored on train's held-out files alone (6 of 12 here) without a word."""
    recipe = _recipe(tmp_path)
    train, val = _labels_csv(tmp_path / "train_csv", 0), _labels_csv(tmp_path / "val_csv", 1)
    recipe.data.train = type(recipe.data.train)(protocol=train, format="labels_csv")
    recipe.data.val = type(recipe.data.train)(protocol=val, format="labels_csv")
    held = held_out_table(recipe, HeldOut("source", ("s0",)))
    paths = sorted(held.column("path"))
    assert len(paths) == len(set(paths)) == 12
    assert sum("val_csv" in p for p in paths) == 6 and sum("train_csv" in p for p in paths) == 6
    assert len(set(held.column("utt_id"))) == 12
    # a val that lists train's own files again still counts each file once
    recipe.data.val = type(recipe.data.train)(protocol=train, format="labels_csv")
    again = held_out_table(recipe, HeldOut("source", ("s0",)))
    assert sorted(again.column("path")) == [p for p in paths if "train_csv" in p]


def test_holding_out_by_a_column_only_one_corpus_of_the_list_has(tmp_path):
    """data.train = [corpus A, corpus B] where only B's table has a `language` column: --by language holding out
    B's language added `exclude: {language: [de]}` to A's spec too, and the fold failed with "utterance table has
    no column 'language'" (not naming the spec). A holds none of the fold's rows: it now trains as it is."""
    from sddkit.config import from_dict
    from sddkit.training.crossval import check_fold_data, fold_recipe
    from sddkit.training.data import read_tables

    recipe = _recipe(tmp_path)
    other = tmp_path / "other.csv"
    df = pd.read_csv(recipe.data.train.protocol, keep_default_na=False)  # type: ignore[union-attr]
    df["utt_id"], df["language"] = "b_" + df["utt_id"].astype(str), "de"
    (tmp_path / "b").mkdir()  # B's own audio: a held-out file that A trains on too is refused (review 7)
    df["path"] = [shutil.copy(p, tmp_path / "b") for p in df["path"]]
    df.to_csv(other, index=False)
    corpus_a = recipe.data.train
    recipe.data.train = [corpus_a, from_dict(type(corpus_a), {"protocol": str(other), "format": "utterance_table"})]
    fold = HeldOut("language", ("de",))
    check_fold_data(recipe, fold)  # raised ProtocolError
    r = fold_recipe(recipe, fold, tmp_path / "f")
    assert len(r.data.train) == 1 and r.data.train[0].protocol == corpus_a.protocol  # B held out whole
    assert "language" not in r.data.train[0].exclude
    assert len(read_tables(r.data.train)) == len(df)  # A keeps every row
    held = held_out_table(recipe, fold)
    assert set(held.column("utt_id")) == set(df["utt_id"])  # the held-out rows are B's
    with pytest.raises(ProtocolError, match="no column 'langauge'"):  # a misspelt --by is still an error
        held_out_table(recipe, HeldOut("langauge", ("de",)))


def test_held_out_files_are_scored_on_the_device_the_fold_trained_on(tmp_path, monkeypatch):
    """The held-out files were scored by load_detector(best/) on its default device, the CPU, whatever device
    the fold had trained on: a GPU run scored its held-out files on the CPU. Here the trainer's device is
    cpu:0, a spelling that only the trainer chose."""
    import sddkit.scoring.api as api

    monkeypatch.setattr("sddkit.training.trainer.select_device", lambda *a, **k: torch.device("cpu", 0))
    real, used = api.load_detector, []

    def spy(path=None, device=None, **kwargs):
        used.append(None if device is None else str(device))
        return real(path, device="cpu", **kwargs)

    monkeypatch.setattr(api, "load_detector", spy)
    fold = HeldOut("source", ("s1",))
    fig = crossval.run_fold(_recipe(tmp_path), fold, tmp_path / "cv" / fold.dir_name, workers=0)
    assert used == ["cpu:0"] and fig["n_bonafide"] + fig["n_spoof"] == 12


def test_held_out_files_are_read_as_long_as_the_recipe_reads_its_files(tmp_path):
    """With data.max_duration_s null (README: no limit) the fold trained and then failed: its held-out files
    were scored under sdd score's 600 s default, so a 601 s file was 'longer than max_duration 600.0 s'."""
    recipe = _recipe(tmp_path)
    recipe.data.max_duration_s = None
    recipe.data.val_crop_samples = 10 * SR  # few windows to score in the long file
    fold = HeldOut("source", ("s1",))
    held = held_out_table(recipe, fold)
    long_file = held.column("path")[0]
    noise = 0.1 * np.random.default_rng(0).standard_normal(601 * SR)
    sf.write(long_file, noise.astype(np.float32), SR, subtype="PCM_16")
    fig = crossval.run_fold(recipe, fold, tmp_path / "cv" / fold.dir_name, workers=0)
    assert fig["n_bonafide"] + fig["n_spoof"] == len(held)
    assert crossval.held_out_max_duration(recipe) is None
    recipe.data.max_duration_s = 30.0  # a stricter recipe never makes the held-out scoring stricter than before
    assert crossval.held_out_max_duration(recipe) == 600.0


# --- sdd robustness ---------------------------------------------------------------------------------------


def _result(mulaw_b1: float = 0.2) -> RobustnessResult:
    """Two bona fide and two spoof trials, clean and under mulaw (whose EER is 50 % with b1 below both spoofs)."""
    labels = np.array([1, 1, 0, 0])
    scores = {"clean": np.array([2.0, 1.0, 0.5, -1.0]), "mulaw": np.array([1.5, mulaw_b1, 0.4, 0.3])}
    result = RobustnessResult(
        config=RobustnessConfig(conditions=["mulaw"], workers=0),
        threshold=0.0,
        utt_ids=["b0", "b1", "s0", "s1"],
        labels=labels,
        scores=scores,
        failures=[],
        condition_errors={},
        rows=[],
    )
    result.rows = summarize(result)
    return result


def test_a_crash_while_writing_the_robustness_report_keeps_the_previous_one(tmp_path, monkeypatch):
    """robustness.csv, .json and .md were overwritten one by one before the plot and the scores: a crash in
    between (here in the plot) left this run's tables beside the previous run's plot and scores_<mode>.csv."""
    out = tmp_path / "out"
    write_robustness(_result(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr("sddkit.evaluation.robustness.plot_robustness", boom)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_robustness(_result(mulaw_b1=0.9), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_full_disk_while_writing_the_report_is_a_one_line_error(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_robustness(_result(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("sddkit.evaluation.robustness.plot_robustness", full)
    with pytest.raises(ConfigError, match="cannot write the robustness report.*No space left on device"):
        write_robustness(_result(mulaw_b1=0.9), out)  # was a bare OSError: a traceback after all the scoring
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads((out / "robustness.json").read_text())["rows"] == _result().to_dict()["rows"]


def test_an_out_folder_that_takes_no_files_is_refused_before_scoring(tmp_path, monkeypatch, capsys):
    """prepare_out_dir only created the folder: one that exists but takes no files (no write permission, a
    read-only file system) was found out when the report was written, after every condition was scored."""
    model = save_tiny_lcnn(tmp_path / "model")
    data = tmp_path / "data"
    for label in ("bonafide", "spoof"):
        (data / label).mkdir(parents=True)
        sf.write(data / label / "u0.wav", (0.1 * np.random.default_rng(0).standard_normal(6000)).astype(np.float32), SR)
    out = tmp_path / "out"
    out.mkdir()

    def no_scoring(*a, **k):
        raise AssertionError("scored although the report could not be written")

    # as root no folder refuses files: the probe answers as it does on a read-only file system
    monkeypatch.setattr("sddkit.evaluation.robustness.run_robustness", no_scoring)
    monkeypatch.setattr("sddkit.evaluation.robustness.why_unwritable", lambda path: "Permission denied")
    argv = ["robustness", "--model", str(model), "--protocol", str(data), "--conditions", "clean", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdd robustness: error: ") and err.count("\n") == 1 and "Permission denied" in err


def test_eer_delta_compares_a_condition_with_clean_on_the_same_trials():
    """A condition that failed on one hard bona fide file (here scoring everything else exactly as clean)
    showed ΔEER -33 %: its EER over the trials it scored minus the clean EER over all of them. The delta is
    now taken against the clean EER of the same trials: 0, the condition changed nothing."""
    labels = np.array([1, 1, 1, 0, 0, 0])
    clean = np.array([3.0, 2.0, -1.0, 1.0, 0.0, -2.0])  # the bona fide -1.0 is missed at the EER point
    mulaw = np.where(np.arange(6) == 2, np.nan, clean)  # that file could not be degraded
    result = RobustnessResult(
        config=RobustnessConfig(conditions=["mulaw"], mode="all", workers=0),
        threshold=0.0,
        utt_ids=[f"u{i}" for i in range(6)],
        labels=labels,
        scores={"clean": clean, "mulaw": mulaw},
        failures=[],
        condition_errors={"mulaw": ["u2: failed"]},
        rows=[],
    )
    rows = {r["condition"]: r for r in summarize(result)}
    assert rows["clean"]["eer"] == pytest.approx(100 / 3) and rows["clean"]["eer_delta"] == 0.0
    assert rows["mulaw"]["eer"] == 0.0 and rows["mulaw"]["n_failed"] == 1
    assert rows["mulaw"]["eer_delta"] == pytest.approx(0.0)  # was -33.3
