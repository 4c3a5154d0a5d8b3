"""Leftovers of the twenty-fifth session's note, mended in the twenty-sixth."""

from __future__ import annotations

import json

import numpy as np

from sddkit.cli.main import main


def _protocol_and_scores(tmp_path, sign: float):
    rng = np.random.default_rng(3)
    key, score = [], []
    for i in range(40):
        bona = i < 15
        attack = "bonafide" if bona else f"A{7 + i % 3:02d}"
        key.append(f"LA_0001 LA_E_{i:07d} - {attack} {'bonafide' if bona else 'spoof'}")
        score.append(f"LA_E_{i:07d} {sign * rng.normal(2.0 if bona else 0.0):.4f}")
    protocol = tmp_path / "protocol.txt"
    protocol.write_text("\n".join(key) + "\n")
    scores = tmp_path / "scores.txt"
    scores.write_text("\n".join(score) + "\n")
    return protocol, scores


def test_sdd_eval_warns_when_the_scores_look_inverted(tmp_path, capsys):
    # a score file of a tool whose scores grow with "spoof" gave EER 90 % with no hint why
    protocol, scores = _protocol_and_scores(tmp_path, sign=-1.0)
    out = tmp_path / "report"
    assert main(["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "below 0.5" in err and "higher = more bona fide" in err
    report = json.loads((out / "report.json").read_text())
    assert any("below 0.5" in w for w in report["warnings"])
    assert "below 0.5" in (out / "report.md").read_text()


def test_sdd_eval_says_nothing_of_inversion_for_ordinary_scores(tmp_path, capsys):
    protocol, scores = _protocol_and_scores(tmp_path, sign=1.0)
    out = tmp_path / "report"
    assert main(["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(out)]) == 0
    assert "below 0.5" not in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["warnings"] == []


def test_head_scale_with_the_linear_head_is_refused():
    # the linear head never reads head_scale: a recipe setting it trained something else than it said
    import pytest

    from sddkit.backends.heads import ClassifierConfig
    from sddkit.errors import ConfigError
    from sddkit.registry import get_registry

    with pytest.raises(ValueError, match="head: cosine"):
        ClassifierConfig(head_scale=30.0)
    ClassifierConfig(head="cosine", head_scale=30.0)
    ClassifierConfig(head_scale=20.0)  # the default, recorded in every model folder, stays readable
    with pytest.raises((ConfigError, ValueError), match="head_scale"):
        get_registry("backend").build({"name": "lcnn", "head_scale": 5.0}, in_dim=80, feature_layout="spectral")


def test_every_benchmark_json_and_compare_json_refuse_an_unwritable_path_alike(tmp_path):
    # four copies of the --json writability check each raised their own way (SystemExit text, ConfigError)
    import argparse

    import pytest

    from sddkit.cli.options import check_paths_writable
    from sddkit.errors import ConfigError

    (tmp_path / "afile").write_text("x")
    args = argparse.Namespace(json=str(tmp_path / "afile" / "b.json"), out=None)
    with pytest.raises(ConfigError, match=r"^--json .*afile/b\.json: cannot write it \(Not a directory\)$"):
        check_paths_writable(args, "json", "out")
    check_paths_writable(argparse.Namespace(json=str(tmp_path / "new" / "b.json")), "json")
    assert not (tmp_path / "new" / "b.json").exists()


def test_a_published_report_is_fsynced_before_its_renames(tmp_path, monkeypatch):
    # publish_staged renamed its files into place unsynced: a power cut could leave an empty report.json
    from sddkit import outputs

    events = []
    monkeypatch.setattr(outputs, "fsync_file", lambda p: events.append(("fsync", p.name)))
    monkeypatch.setattr(outputs, "fsync_dir", lambda d: events.append(("fsync_dir", d.name)))
    real_replace = outputs.os.replace
    monkeypatch.setattr(outputs.os, "replace", lambda a, b: (events.append(("rename", b.name)), real_replace(a, b))[1])

    def write(staging):
        (staging / "a.csv").write_text("x\n")
        (staging / "report.json").write_text("{}\n")
        return ["a.csv", "report.json"]

    assert outputs.publish_staged(tmp_path / "out", "report", write) == ["a.csv", "report.json"]
    assert events == [
        ("fsync", "a.csv"),
        ("fsync", "report.json"),
        ("rename", "a.csv"),
        ("rename", "report.json"),
        ("fsync_dir", "out"),
    ]
    assert (tmp_path / "out" / "report.json").read_text() == "{}\n"


def test_a_model_folder_without_weights_is_refused_before_its_model_is_built(tmp_path, monkeypatch):
    # the model (an encoder reading its pretrained folder: seconds) was built before the missing file was noticed
    import pytest

    from sddkit.config import from_dict, to_dict
    from sddkit.detectors import model_dir
    from sddkit.detectors.detector import DetectorConfig, build_detector
    from sddkit.errors import CheckpointError

    cfg = from_dict(DetectorConfig, {"frontend": {"name": "logmel", "n_mels": 16}, "backend": {"name": "linear"}})
    model_dir.save_model_dir(tmp_path / "m", build_detector(cfg), model_config=to_dict(cfg))
    (tmp_path / "m" / model_dir.WEIGHTS_NAME).unlink()

    def no_build(config):
        raise AssertionError("built before the weights file was checked")

    monkeypatch.setitem(model_dir.ARCHITECTURES, "detector", no_build)
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        model_dir.load_model_dir(tmp_path / "m")


def test_sdd_score_skips_its_own_output_files_that_a_glob_names_on_a_rerun(tmp_path, capsys):
    # `sdd score clips/* --out clips/scores.csv` run twice: the glob then named scores.csv and its .run.json, read as
    # manifests (the .run.json failed the run as no manifest; scores.csv listed the scored files again)
    import csv

    import torch
    from scoring_support import save_tiny_lcnn, write_noise_wav

    threads = torch.get_num_threads()
    model = save_tiny_lcnn(tmp_path / "model")
    clips = tmp_path / "clips"
    for i in range(2):
        write_noise_wav(clips / f"c{i}.wav", 1.0, seed=i)
    out = clips / "scores.csv"
    try:

        def run():
            names = sorted(str(p) for p in clips.iterdir())  # what the shell's clips/* gives
            return main(["score", *names, "--model", str(model), "--out", str(out), "--workers", "0", "--quiet"])

        assert run() == 0
        assert {p.name for p in clips.iterdir()} >= {"scores.csv", "scores.csv.run.json"}
        assert run() == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == ["c0.wav", "c1.wav"]
    assert all(r["error"] == "" for r in rows)


def test_the_page_behind_a_path_prefix_resolves_its_urls_under_it(tmp_path):
    # behind a proxy serving the service under /sdd, /sdd (no trailing slash) reaches the app as /: the page's
    # relative static/app.js and v1/score then resolved to /static/app.js and /v1/score, outside the prefix
    from fastapi.testclient import TestClient
    from scoring_support import save_tiny_lcnn

    from sddkit.service.app import create_app

    app = create_app(str(save_tiny_lcnn(tmp_path / "model")))
    with TestClient(app, root_path="/sdd") as client:
        page = client.get("/").text
    assert '<base href="/sdd/">' in page and page.index("<base") < page.index("static/style.css")
    with TestClient(app) as client:
        assert "<base" not in client.get("/").text


def test_setup_refuses_a_python_variable_naming_no_interpreter(tmp_path):
    # PYTHON=/opt/py311/bin/python3.11 mistyped fell back to whatever python3 is, without a word
    from test_packaging_review7 import _run_setup

    done = _run_setup(tmp_path / "project", tmp_path / "no" / "python3.11")
    assert done.returncode == 1
    assert "is not an executable Python" in done.stderr, done.stderr
    assert not (tmp_path / "project" / ".venv").exists()


def test_an_unquoted_number_for_a_text_value_says_to_quote_it():
    # `where: {speaker: 001}` is the number 1 to YAML: refused, but without saying why or what to write
    import pytest

    from sddkit.config import convert_value
    from sddkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"where\.speaker: expected a string, got the number 1 .*quote it"):
        convert_value(str, 1, "where.speaker")
    assert convert_value(str, "001", "where.speaker") == "001"


def test_a_held_out_file_in_the_folds_val_data_under_another_value_is_refused(tmp_path):
    # the training data was checked (review 7), the val data was not: such a file chose the checkpoint that scores it
    import pandas as pd
    import pytest
    from test_crossval import _recipe

    from sddkit.errors import ConfigError
    from sddkit.training.crossval import HeldOut, check_fold_data
    from sddkit.training.recipe import ProtocolSpec

    recipe = _recipe(tmp_path)
    df = pd.read_csv(recipe.data.val.protocol, keep_default_na=False)
    df = df[df["source"] == "s1"].iloc[:1].copy()
    df["utt_id"] = "b_" + df["utt_id"].astype(str)
    df["source"] = "s0"
    df.to_csv(tmp_path / "val_again.csv", index=False)
    recipe.data.val = [
        recipe.data.val,
        ProtocolSpec(protocol=str(tmp_path / "val_again.csv"), format="utterance_table"),
    ]
    with pytest.raises(ConfigError, match=r"fold s1: 1 held-out audio file\(s\) are in the fold's validation data"):
        check_fold_data(recipe, HeldOut("source", ("s1",)))
    check_fold_data(recipe, HeldOut("source", ("s2",)))
