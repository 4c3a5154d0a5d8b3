"""A new user's walk through README and docs/cli.md (review 22): the error messages met on the way that
named the wrong thing or buried the cause."""

from __future__ import annotations

import gzip
import json

import pytest
from cli_support import one_line_error
from scoring_support import noise_wav_bytes, save_tiny_lcnn, write_noise_wav

from sddkit.cli.main import main
from sddkit.errors import CheckpointError, ProtocolError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("walk22") / "lcnn")


# --- sdd eval / sdd compare given an audio or compressed file as the scores ----------------------------------------


def test_an_audio_file_given_as_scores_is_named_as_such_in_one_short_line(tmp_path, capsys):
    """``sdd eval --scores clip.wav`` printed "cannot tell the score format from 'RIFF\\udcc4...'": hundreds of
    characters of the WAV header, and no word of what the file was."""
    from sddkit.evaluation.scores import read_scores

    wav = write_noise_wav(tmp_path / "clip.wav", 2.0, seed=0)
    protocol = tmp_path / "meta.csv"
    protocol.write_text("path,label\nclip.wav,bonafide\nother.wav,spoof\n")
    assert main(["eval", "--scores", str(wav), "--protocol", str(protocol), "--out", str(tmp_path / "r")]) == 2
    err = one_line_error(capsys, "eval")
    assert "not a text score file: it starts like a WAV audio file" in err and "sdd score" in err
    assert "RIFF" not in err and len(err) < 400
    packed = tmp_path / "scores.csv.gz"
    packed.write_bytes(gzip.compress(b"path,score\nclip.wav,1.0\n"))
    with pytest.raises(ProtocolError, match=r"it starts like a gzip-compressed file \(decompress it first\)"):
        read_scores(packed)
    other = tmp_path / "blob.bin"
    other.write_bytes(b"ab\x00\x01cd 1.0\n")
    with pytest.raises(ProtocolError, match=r"it holds NUL bytes \(binary data\)"):
        read_scores(other)
    # text it cannot read is still refused as before, its line cut short
    long = tmp_path / "long.txt"
    long.write_text("x" * 5000 + "\n")
    with pytest.raises(ProtocolError, match="cannot tell the score format") as caught:
        read_scores(long)
    assert len(str(caught.value)) < 600


# --- sdd score --backend onnx --model FOLDER -----------------------------------------------------------------------


def test_a_folder_without_model_onnx_names_the_onnx_files_it_holds(tmp_path):
    """``sdd export-onnx --out onnx/default_model.onnx`` then ``sdd score --backend onnx --model onnx`` was told to
    run ``sdd export-onnx --model onnx --out onnx``, which fails (onnx/ is no model directory), while the export
    it wanted lay in that folder."""
    from sddkit.scoring.onnx_export import resolve_onnx_path

    folder = tmp_path / "onnx"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="no such ONNX model") as caught:
        resolve_onnx_path(folder)  # no model directory, no export: no export-onnx --model of it suggested
    assert f"--model {folder}" not in str(caught.value) and "give an exported .onnx file itself" in str(caught.value)
    (folder / "default_model.onnx").write_bytes(b"an export")
    with pytest.raises(CheckpointError, match="no such ONNX model") as caught:
        resolve_onnx_path(folder)
    message = str(caught.value)
    assert "the folder holds default_model.onnx" in message and str(folder / "default_model.onnx") in message
    assert "sdd export-onnx" not in message


# --- sdd serve: the file sent under another field name -------------------------------------------------------------


def test_a_file_sent_under_another_field_name_is_named_in_the_422(model_dir):
    """``curl -F audio=@a.wav`` got "the form field 'file' holds nothing (fields sent: audio)": the file was there,
    under another name, and the answer did not say so."""
    from fastapi.testclient import TestClient

    from sddkit.service.app import create_app

    with TestClient(create_app(model_dir, max_upload_mb=1, max_duration_s=5)) as client:
        sent = client.post("/v1/score", files={"audio": ("a.wav", noise_wav_bytes(), "audio/wav")})
        assert sent.status_code == 422 and sent.json()["error"]["type"] == "missing_field"
        message = sent.json()["error"]["message"]
        assert "the form has no field 'file'" in message and "the file was sent in the field 'audio'" in message
        assert "holds nothing" not in message
        # a form of text fields alone: no file anywhere, so none is named
        text = client.post("/v1/score", data={"note": "x"}, files={"other": ("", b"", "text/plain")})
        assert "the form has no field 'file'" in text.json()["error"]["message"]
        assert "was sent in the field" not in text.json()["error"]["message"]


# --- sdd score resumed with another calibration -------------------------------------------------------------------


def test_a_resume_under_another_calibration_names_the_changed_settings_only(model_dir, tmp_path, capsys):
    """A resume of an output under a recalibrated copy of its model printed both whole ``inference`` sections
    (windows, hop, aggregation, min duration: all unchanged) in one line; now only what changed, dotted."""
    import shutil

    from sddkit.scoring.inference import read_inference, write_inference

    wav = write_noise_wav(tmp_path / "a.wav", 0.6, seed=1)
    out = tmp_path / "s.csv"
    base = ["score", str(wav), "--out", str(out), "--quiet"]
    assert main([*base, "--model", str(model_dir)]) == 0
    recalibrated = tmp_path / "recalibrated"
    shutil.copytree(model_dir, recalibrated)
    inference = read_inference(recalibrated)
    inference.threshold = 0.25
    write_inference(recalibrated, inference)
    capsys.readouterr()
    assert main([*base, "--model", str(recalibrated)]) == 2
    err = one_line_error(capsys, "score")
    assert "inference.threshold: earlier 0.0, now 0.25" in err
    assert "window_samples" not in err and "inference: earlier" not in err
    assert json.loads((tmp_path / "s.csv.run.json").read_text())["inference"]["threshold"] == 0.0  # untouched


# --- sdd compare of two score files of different audio ------------------------------------------------------------


def test_compare_of_score_files_without_a_common_trial_says_so(tmp_path, capsys):
    """Was "the 0 trials every score file covers hold 0 bona fide and 0 spoof: a comparison needs both classes"."""
    protocol = tmp_path / "meta.csv"
    protocol.write_text("path,label\na.wav,bonafide\nb.wav,spoof\nc.wav,bonafide\nd.wav,spoof\n")
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("path,score\na.wav,1.0\nb.wav,-1.0\n")
    new.write_text("path,score\nc.wav,0.5\nd.wav,-0.5\n")
    argv = ["compare", "--protocol", str(protocol), "--baseline", str(old), "--system", str(new)]
    assert main(argv) == 2
    err = one_line_error(capsys, "compare")
    assert "no protocol trial is scored by every score file" in err
    assert f"(4 are scored by some of {old}, {new}, none by all)" in err


# --- the API's hint for an encoded file's bytes --------------------------------------------------------------------


def test_the_hint_for_bytes_gives_the_rate_the_decoded_waveform_has(model_dir, tmp_path):
    """``score(wav_bytes, sample_rate=44100)`` said "decode ... with decode_audio_bytes(data) first": a caller who
    kept their 44100 then scored the 16 kHz waveform it returns as 44.1 kHz audio, a wrong score without an error.
    The hint now names the rate, and following it to the letter scores what score_file scores."""
    import sddkit
    from sddkit.audio import decode_audio_bytes
    from sddkit.errors import AudioError

    det = sddkit.load_detector(model_dir)
    wav = write_noise_wav(tmp_path / "a.wav", 1.0, seed=3, sample_rate=44100)
    data = wav.read_bytes()
    for call in (lambda: det.score(data, sample_rate=44100), lambda: det.score_file(data)):
        with pytest.raises(AudioError) as caught:
            call()
        message = str(caught.value)
        assert "sddkit.audio.decode_audio_bytes(data) (mono audio at 16 kHz), then score it: score(x, 16000)" in message
    assert det.score(decode_audio_bytes(data), 16000).score == pytest.approx(det.score_file(wav).score, abs=1e-6)


# --- sdd score --out FOLDER ----------------------------------------------------------------------------------------


def test_score_out_a_folder_is_named_as_a_folder(model_dir, tmp_path, capsys):
    """``--out results/`` (or an existing ``results``) got "--out must name a .csv or .jsonl file, got 'results'":
    the folder check ran after the suffix check, so only a folder named like ``x.csv`` reached it."""
    wav = write_noise_wav(tmp_path / "a.wav", 0.6, seed=1)
    (tmp_path / "results").mkdir()
    for out, what in ((tmp_path / "results", "is a folder"), (f"{tmp_path / 'new'}/", "names a folder")):
        assert main(["score", str(wav), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 2
        err = one_line_error(capsys, "score")
        assert f"{what}; name a .csv or .jsonl file to write, e.g. " in err and "scores.csv" in err
    assert not (tmp_path / "new").exists()


# --- an ONNX file given to a command without --backend ------------------------------------------------------------


def test_an_onnx_file_given_to_calibrate_names_the_model_directory_it_needs(model_dir, tmp_path, capsys):
    """``sdd calibrate --model m.onnx`` (and ``sdd robustness``) were told "load it with backend='onnx' (sdd score
    --backend onnx)": neither command takes --backend; they need the directory the export was made from."""
    import onnx
    from onnx import helper

    from sddkit.scoring.onnx_export import META_INFO

    # the origin as sdd export-onnx records it, in a graph of nothing (nothing here runs it; an export takes seconds)
    exported = tmp_path / "m.onnx"
    graph = helper.make_model(helper.make_graph([], "g", [], []))
    helper.set_model_props(graph, {META_INFO: json.dumps({"exported_from": str(model_dir)})})
    onnx.save(graph, exported)
    protocol = tmp_path / "meta.csv"
    write_noise_wav(tmp_path / "a.wav", 0.6, seed=1)
    write_noise_wav(tmp_path / "b.wav", 0.6, seed=2)
    protocol.write_text("path,label\na.wav,bonafide\nb.wav,spoof\n")
    assert main(["calibrate", "--model", str(exported), "--protocol", str(protocol)]) == 2
    err = one_line_error(capsys, "calibrate")
    assert "sdd score and sdd serve take --backend onnx" in err and "(sdd score --backend onnx)" not in err
    assert err.rstrip().endswith(f"need the model directory it was exported from, {model_dir}")
    fake = tmp_path / "other.onnx"
    fake.write_bytes(b"not an export")  # no origin recorded: the advice stands without a name
    argv = ["robustness", "--model", str(fake), "--protocol", str(protocol), "--out", str(tmp_path / "r"), "--quiet"]
    assert main(argv) == 2
    assert one_line_error(capsys, "robustness").rstrip().endswith("need the model directory it was exported from")


def test_score_of_an_empty_folder_is_one_line(tmp_path, capsys):
    """An empty folder printed a note ("holds no audio file (names ending ...)") and then the error, both listing
    the suffixes (in two orders): two messages for one mistake, where every refusal is one line."""
    folder = tmp_path / "empty"
    folder.mkdir()
    argv = ["score", str(folder), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "s.csv"), "--quiet"]
    assert main(argv) == 2
    err = one_line_error(capsys, "score")
    assert f"no audio files in {folder} (folders are searched for .wav .flac .mp3 " in err
