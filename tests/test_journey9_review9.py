"""A practitioner's scoring journey from a fresh shell (review 9).

An output a spreadsheet or editor saved again with a UTF-8 BOM resumes instead of being refused as written "with
other columns" (naming the very columns the model writes); a list of files piped in (``sdd score <(find ...)``,
``... | sdd score /dev/stdin``) is read as a manifest, not refused as "no such file or folder"; a device that is
no file says so, and ``-`` names ``/dev/stdin``; a JSONL output is the manifest of a run with another ``--out``,
as a CSV output is; rows resumed without their run record are said to be unchecked; ``sdd demo`` names itself in
its note; ``--backend onnx`` without ``--model`` says how to export the bundled model, not to export into the
installed package.
"""

from __future__ import annotations

import json
import os
import threading

import pytest
from cli_support import one_line_error
from scoring_support import save_tiny_lcnn, write_noise_wav
from test_train_support import one_thread  # noqa: F401  (autouse fixture)

from sddkit.cli.main import main
from sddkit.scoring import batch


@pytest.fixture
def model_dir(tmp_path):
    return save_tiny_lcnn(tmp_path / "model")


def _score(model_dir, out, *inputs: str) -> int:
    return main(["score", *inputs, "--model", str(model_dir), "--out", str(out), "--quiet"])


# --- an output saved again with a BOM ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_an_output_saved_again_with_a_bom_resumes(tmp_path, model_dir, suffix, capsys):
    a = write_noise_wav(tmp_path / "audio" / "a.wav", 0.6, seed=0)
    b = write_noise_wav(tmp_path / "audio" / "b.wav", 0.6, seed=1)
    out = tmp_path / f"scores{suffix}"
    assert _score(model_dir, out, str(a)) == 0
    first = out.read_bytes()
    out.write_bytes(b"\xef\xbb\xbf" + first)  # as Excel's "CSV UTF-8" or Notepad saves it
    capsys.readouterr()
    assert _score(model_dir, out, str(a), str(b)) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (summary["skipped"], summary["scored"]) == (1, 1)
    rows = list(batch.iter_rows(out))
    assert [os.path.basename(r["path"]) for r in rows] == ["a.wav", "b.wav"]
    assert all(r["score"] not in (None, "") and not r["error"] for r in rows)


# --- a list piped in ---------------------------------------------------------------------------------------------


def _fifo_with(path, text: str) -> threading.Thread:
    """A named pipe at ``path`` that a thread fills with ``text`` once a reader opens it (as a shell's <(...))."""
    os.mkfifo(path)

    def feed() -> None:
        with open(path, "w") as f:
            f.write(text)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_list_piped_in_is_read_as_a_manifest(tmp_path):
    a = write_noise_wav(tmp_path / "a.wav", 0.6, seed=0)
    b = write_noise_wav(tmp_path / "b.wav", 0.6, seed=1)
    feeder = _fifo_with(tmp_path / "list", f"{a}\n{b}\n")
    assert batch.expand_inputs([str(tmp_path / "list")]) == [str(a), str(b)]
    feeder.join(5)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_sdd_score_scores_a_csv_manifest_piped_in(tmp_path, model_dir):
    a = write_noise_wav(tmp_path / "a.wav", 0.6, seed=0)
    feeder = _fifo_with(tmp_path / "manifest", f"path,label\n{a},bonafide\n")
    out = tmp_path / "scores.csv"
    assert _score(model_dir, out, str(tmp_path / "manifest")) == 0
    feeder.join(5)
    rows = list(batch.iter_rows(out))
    assert [r["path"] for r in rows] == [str(a)] and rows[0]["score"] and not rows[0]["error"]


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_device_given_as_input_is_not_called_missing(tmp_path, model_dir, capsys):
    assert _score(model_dir, tmp_path / "scores.csv", "/dev/null") == 2
    err = one_line_error(capsys, "score")
    assert "no such file" not in err and "not a regular file, folder or pipe" in err


# --- sdd demo names itself ---------------------------------------------------------------------------------------


def test_sdd_demo_run_again_names_itself_in_its_note(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--bootstrap", "0"]) == 0
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--bootstrap", "0"]) == 0
    err = capsys.readouterr().err
    assert "sdd demo: note: replaced the earlier report" in err and "sdd eval" not in err


# --- the bundled model with --backend onnx -----------------------------------------------------------------------


def test_onnx_backend_without_a_model_says_how_to_export_the_bundled_one(tmp_path, capsys):
    from sddkit.errors import CheckpointError
    from sddkit.scoring.api import default_model_dir, load_detector

    if (default_model_dir() / "model.onnx").is_file():
        pytest.skip("this installation's bundled model holds an ONNX export")
    with pytest.raises(CheckpointError) as caught:
        load_detector(backend="onnx")
    message = str(caught.value)
    # never "export one there": into the installed package's own folder
    assert "sdd export-onnx --out default_model.onnx" in message and str(default_model_dir()) not in message
    wav = write_noise_wav(tmp_path / "a.wav", 0.6, seed=0)
    assert main(["score", str(wav), "--backend", "onnx", "--out", str(tmp_path / "s.csv")]) == 2
    assert "--model default_model.onnx" in one_line_error(capsys, "score")


# --- a JSONL output as the manifest of another run ---------------------------------------------------------------


def test_a_jsonl_output_is_the_manifest_of_a_run_with_another_out(tmp_path, model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_noise_wav(tmp_path / "audio" / "a.wav", 0.6, seed=0)
    write_noise_wav(tmp_path / "audio" / "b c.wav", 0.6, seed=1)
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF")
    assert _score(model_dir, "first.jsonl", "audio") == 0
    # another model (here the same), another --out: the same files, error rows' files too
    assert batch.expand_inputs(["first.jsonl"]) == ["audio/a.wav", "audio/b c.wav", "audio/broken.wav"]
    assert _score(model_dir, "second.csv", "first.jsonl") == 0
    assert [r["path"] for r in batch.iter_rows(tmp_path / "second.csv")] == [
        "audio/a.wav",
        "audio/b c.wav",
        "audio/broken.wav",
    ]


# --- an output without its run record ----------------------------------------------------------------------------


def test_a_resume_of_rows_without_a_run_record_says_so(tmp_path, model_dir, capsys):
    a = write_noise_wav(tmp_path / "a.wav", 0.6, seed=0)
    b = write_noise_wav(tmp_path / "b.wav", 0.6, seed=1)
    out = tmp_path / "scores.csv"
    assert _score(model_dir, out, str(a)) == 0
    batch.run_record_path(out).unlink()  # copied elsewhere without it, or deleted as the advice for a bad one says
    capsys.readouterr()
    other = save_tiny_lcnn(tmp_path / "other", seed=1)
    assert _score(other, out, str(a), str(b)) == 0
    err = capsys.readouterr().err
    assert f"{out} holds rows without a run record" in err and "cannot be checked" in err
    capsys.readouterr()
    assert _score(other, out, str(a), str(b)) == 0  # recorded now: said once
    assert "without a run record" not in capsys.readouterr().err


def test_a_dash_for_standard_input_names_dev_stdin(tmp_path, model_dir, capsys):
    assert _score(model_dir, tmp_path / "scores.csv", "-") == 2
    assert "read as /dev/stdin" in one_line_error(capsys, "score")
