"""The user's journey through the command line (review 7): what a user sees after the most common mistakes.

A folder that lists no audio file is named, not scored into an empty output without a word; ``sdd robustness``
names its own flags (and the closest condition) in its errors; an output folder given as the name of a file
says so, and ``sdd eval`` says it before evaluating; every numeric default a ``--help`` hides is shown.
"""

from __future__ import annotations

import argparse
import re

import pytest
from cli_support import one_line_error
from scoring_support import save_tiny_lcnn, write_noise_wav
from test_crossval import _recipe
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import _build_parsers, main
from sddkit.errors import ConfigError
from sddkit.outputs import publish_staged
from sddkit.scoring import batch


@pytest.fixture
def labelled(tmp_path):
    """A path,label CSV of 2 bona fide and 2 spoof noise files, and a score file of them."""
    rows, scores = [], []
    for i, label in enumerate(["bonafide", "spoof", "bonafide", "spoof"]):
        wav = write_noise_wav(tmp_path / "audio" / f"f{i}.wav", 0.6, seed=i)
        rows.append(f"{wav},{label}")
        scores.append(f"{wav},{1.0 if label == 'bonafide' else -1.0 + 0.1 * i}")
    protocol = tmp_path / "meta.csv"
    protocol.write_text("path,label\n" + "\n".join(rows) + "\n")
    score_file = tmp_path / "scores.csv"
    score_file.write_text("path,score\n" + "\n".join(scores) + "\n")
    return protocol, score_file


# --- sdd score: a folder that lists no audio file ----------------------------------------------------------------


def test_expand_inputs_reports_folders_that_list_no_audio(tmp_path):
    empty, odd, good = tmp_path / "empty", tmp_path / "odd", tmp_path / "good"
    empty.mkdir()
    odd.mkdir()
    (odd / "call.pcm").write_bytes(b"\0\1" * 64)  # a suffix no folder listing takes
    (odd / ".hidden.wav").write_bytes(b"RIFF")  # hidden: skipped
    wav = write_noise_wav(good / "a.wav", 0.5, seed=0)
    found: list[str] = []
    assert batch.expand_inputs([str(empty), str(odd), str(good)], empty_folders=found) == [str(wav)]
    assert found == [str(empty), str(odd)]
    assert batch.expand_inputs([str(empty)]) == []  # the argument is optional


def test_sdd_score_names_a_folder_that_lists_no_audio_file(tmp_path, capsys):
    model = save_tiny_lcnn(tmp_path / "model")
    wav = write_noise_wav(tmp_path / "a.wav", 0.5, seed=0)
    typo = tmp_path / "recordings"
    typo.mkdir()
    (typo / "call.dat").write_bytes(b"\0\0\0\x18ftyp3gp4")
    out = tmp_path / "scores.csv"
    assert main(["score", str(typo), str(wav), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"note: {typo} holds no audio file" in err and ".wav" in err
    assert "given directly or listed in a manifest" in err
    assert len(out.read_text().splitlines()) == 2  # the header and a.wav's row
    # a folder with audio in it gets no note
    assert main(["score", str(wav.parent), "--model", str(model), "--out", str(tmp_path / "b.csv"), "--quiet"]) == 0
    assert "holds no audio file" not in capsys.readouterr().err


# --- sdd robustness: errors name the flags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--conditions", "gain_10db"], "--conditions: unknown condition 'gain_10db' (did you mean 'gain_-10db'?)"),
        (["--conditions", "mp3_64kbps"], "(did you mean 'mp3_64k'?)"),
        (["--conditions", ","], "--conditions: no conditions given"),
        (["--limit", "1"], "--limit must be >= 2"),
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
    ],
)
def test_robustness_errors_name_the_flag(tmp_path, labelled, capsys, monkeypatch, argv, expected):
    import sddkit.scoring.api as api

    def no_model(*a, **k):  # the check comes before any model loads
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(api, "load_detector", no_model)
    protocol, _ = labelled
    assert main(["robustness", "--protocol", str(protocol), "--out", str(tmp_path / "rob"), *argv]) == 2
    err = one_line_error(capsys, "robustness")
    assert expected in err and "RobustnessConfig" not in err


# --- an output folder named like a file ---------------------------------------------------------------------------


def test_eval_refuses_an_out_that_is_a_file_before_evaluating(tmp_path, labelled, capsys, monkeypatch):
    import sddkit.evaluation.report as report

    protocol, scores = labelled
    monkeypatch.setattr(report, "evaluate", lambda *a, **k: pytest.fail("evaluated before --out was checked"))
    taken = tmp_path / "report.md"
    taken.write_text("notes\n")
    assert main(["eval", "--scores", str(scores), "--protocol", str(protocol), "--out", str(taken)]) == 2
    err = one_line_error(capsys, "eval")
    assert f"--out {taken}: cannot create the report folder (a file of that name is there: name a folder)" in err
    assert taken.read_text() == "notes\n"


def test_a_report_folder_that_is_a_file_is_named_as_such(tmp_path):
    taken = tmp_path / "report"
    taken.write_text("x")
    with pytest.raises(ConfigError, match="a file of that name is there: name a folder") as info:
        publish_staged(taken, "report", lambda staging: [])
    assert "File exists" not in str(info.value)


def test_sdd_demo_and_train_say_a_file_is_in_the_way(tmp_path, capsys):
    from sddkit.training.trainer import Trainer

    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(ConfigError, match=r"trainer.out_dir=.*taken: cannot create it \(a file of that name is there"):
        Trainer(_recipe(tmp_path, out_dir=str(taken))).fit()
    from sddkit.training.crossval import _make_dir

    with pytest.raises(ConfigError, match="cross-validation folder .a file of that name is there"):
        _make_dir(taken)
    from sddkit.evaluation.synthetic import write_synthetic_example

    with pytest.raises(ConfigError, match="example folder .a file of that name is there"):
        write_synthetic_example(taken, seed=0)


# --- --help shows every numeric default -----------------------------------------------------------------------------


def _numeric_options():
    for name, parser in _build_parsers()[1].items():
        for action in parser._actions:
            default = action.default
            if (
                action.option_strings
                and isinstance(default, (int, float))
                and not isinstance(default, bool)
                and not isinstance(action, argparse._StoreConstAction)
            ):
                yield name, action


@pytest.mark.parametrize("name, action", list(_numeric_options()), ids=lambda v: getattr(v, "dest", v))
def test_help_shows_every_numeric_default(name, action):
    text = (action.help or "").replace(",", "")
    shown = re.findall(r"default:? (-?[0-9][0-9.e+-]*)", text)
    assert shown, f"sdd {name} {action.option_strings[0]}: its help does not show its default {action.default}"
    assert float(shown[0]) == float(action.default), f"sdd {name} {action.option_strings[0]}: {shown[0]} in help"


def test_the_new_help_defaults_are_in_the_help_output(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "default 200" in out and "(default 0)" in out


@pytest.mark.parametrize(
    "command, flag, shown",
    [
        ("serve", "--log-level", "(default info)"),
        ("serve", "--backend", "(default torch)"),
        ("score", "--backend", "(default torch)"),
        ("compare", "--names", "(default: baseline system)"),
        ("score", "--allocator", "'tuned' (the default)"),
        ("serve", "--allocator", "'tuned' (the default)"),
    ],
)
def test_options_without_help_say_their_default(command, flag, shown):
    parser = _build_parsers()[1][command]
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    assert shown in (action.help or "")
    default = action.default if isinstance(action.default, str) else " ".join(action.default)
    assert default in shown


# --- sdd eval of the per-window sidecar ---------------------------------------------------------------------------


def test_eval_of_a_windows_sidecar_says_which_file_to_evaluate(tmp_path, labelled, capsys):
    protocol, _ = labelled
    model = save_tiny_lcnn(tmp_path / "model")  # 0.5 s windows: the 0.6 s files get two each
    out = tmp_path / "scored.csv"
    audio = str(tmp_path / "audio")
    assert main(["score", audio, "--model", str(model), "--out", str(out), "--windows", "--quiet"]) == 0
    sidecar = tmp_path / "scored.windows.csv"
    assert sidecar.is_file()
    capsys.readouterr()
    assert main(["eval", "--scores", str(sidecar), "--protocol", str(protocol), "--out", str(tmp_path / "r")]) == 2
    err = one_line_error(capsys, "eval")
    assert "per-window sidecar" in err and "not FILE.windows.csv" in err
    # the file-level output beside it evaluates
    assert main(["eval", "--scores", str(out), "--protocol", str(protocol), "--out", str(tmp_path / "r")]) == 0
