"""Second command-line sweep (review 5): options that were accepted but meant nothing, or named an API argument."""

from __future__ import annotations

import pytest

from sddkit.cli.main import main
from sddkit.evaluation.synthetic import write_synthetic_example


@pytest.fixture
def example(tmp_path):
    protocol, scores = write_synthetic_example(tmp_path / "inputs", seed=0)
    return str(protocol), str(scores)


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_eval_refuses_partitions_that_name_no_partition(example, tmp_path, capsys, value):
    # it selected no row: the error was "none of its 2300 score ids matches the protocol's 0 utterances"
    protocol, scores = example
    argv = ["eval", "--scores", scores, "--protocol", protocol, "--out", str(tmp_path / "r"), "--bootstrap", "0"]
    assert main([*argv, "--partitions", value]) == 2
    err = capsys.readouterr().err
    assert "--partitions names no partition" in err and "0 utterances" not in err
    assert not (tmp_path / "r").exists()


def test_compare_and_robustness_refuse_partitions_that_name_no_partition(example, tmp_path, capsys):
    protocol, scores = example
    argv = ["compare", "--protocol", protocol, "--baseline", scores, "--system", scores, "--bootstrap", "40"]
    assert main([*argv, "--partitions", ","]) == 2
    assert "--partitions names no partition" in capsys.readouterr().err
    # robustness says so before the model loads (here there is none to load)
    argv = ["robustness", "--model", str(tmp_path / "no_model"), "--protocol", protocol, "--out", str(tmp_path / "o")]
    assert main([*argv, "--partitions", ""]) == 2
    assert "--partitions names no partition" in capsys.readouterr().err


def test_partitions_given_normally_still_select(example, tmp_path, capsys):
    protocol, scores = example
    argv = ["eval", "--scores", scores, "--protocol", protocol, "--out", str(tmp_path / "r"), "--bootstrap", "0"]
    assert main([*argv, "--partitions", "eval,"]) == 0
    assert "pooled EER" in capsys.readouterr().out


def test_serve_names_its_own_flag_for_an_infinite_upload_limit(tmp_path, capsys):
    # was "max_upload_mb must be finite": the API argument, not the flag the user typed
    assert main(["serve", "--model", str(tmp_path / "none"), "--max-upload-mb", "inf"]) == 2
    assert "--max-upload-mb must be finite" in capsys.readouterr().err


def test_an_empty_output_path_is_refused_not_taken_as_the_working_directory(example, tmp_path, capsys, monkeypatch):
    # Path("") is ".": `--out "$UNSET"` wrote the report (or the robustness journal, or model.onnx) into the
    # working directory without a word, and `compare --json ""` was skipped as if not given
    protocol, scores = example
    monkeypatch.chdir(tmp_path)
    runs = {
        "eval": ["eval", "--scores", scores, "--protocol", protocol, "--out", "", "--bootstrap", "0"],
        "compare": ["compare", "--protocol", protocol, "--baseline", scores, "--system", scores, "--json", ""],
        "robustness": ["robustness", "--protocol", protocol, "--out", " "],
        "demo": ["demo", "--out", "", "--bootstrap", "0"],
        "export-onnx": ["export-onnx", "--out", ""],
        "import-aasist": ["import-aasist", "w.pth", "--out", ""],
        "cv": ["cv", "r.yaml", "--hold-out", "a", "--hold-out", "b", "--out", ""],
    }
    for command, argv in runs.items():
        flag = "--json" if command == "compare" else "--out"
        assert main(argv) == 2, command
        assert f"{flag} is an empty string" in capsys.readouterr().err, command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]  # nothing written beside the example


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["describe", ""], "CONFIG"),
        (["train", ""], "RECIPE"),
        (["score", "a.wav", "--out", "o.csv", "--model", ""], "--model"),
        (["serve", "--model", ""], "--model"),
    ],
)
def test_an_empty_input_path_is_refused_by_name(argv, name, tmp_path, capsys, monkeypatch):
    # was ".: missing config.json" (describe, --model) or a message about the working directory
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert f"{name} is an empty string" in capsys.readouterr().err
