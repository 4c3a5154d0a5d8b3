"""Cleanup 16: sdd eval's run-record check reads the columns the score reader read; one cancelled-channels verdict
for files and arrays; score_files' one call of score_prepared; sddkit errors for arguments of the wrong type."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from scoring_support import save_tiny_lcnn, write_noise_wav

import sddkit
from sddkit.audio import load_audio
from sddkit.cli.eval_cmd import evaluate_files, evaluated_inputs
from sddkit.cli.main import main
from sddkit.errors import ConfigError, SilentAudioError
from sddkit.evaluation import scores as scores_module
from sddkit.evaluation.scores import read_scores
from sddkit.scoring.api import ScoringDetector

SR = 16000
SDD_COLUMNS = ["path", "score", "probability", "decision", "duration_s", "n_windows", "raw_score", "error"]


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    return sddkit.load_detector(save_tiny_lcnn(tmp_path_factory.mktemp("cleanup16") / "model"))


# --- ScoreFile.columns and sdd eval's check of a run record ----------------------------------------------------


def test_every_score_reader_keeps_the_columns_it_read(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("\ufeff# a comment above the header\nPath , Score,extra\na.wav,1.5,x\n", encoding="utf-8")
    assert read_scores(csv).columns == ("Path", "Score", "extra")  # as written: stripped, case kept
    tsv = tmp_path / "s.tsv"
    tsv.write_text("utt_id\tscore\nu1\t0.5\n")
    assert read_scores(tsv).columns == ("utt_id", "score")
    asv5 = tmp_path / "s5.tsv"
    asv5.write_text("filename\tcm-score\nE_1\t0.5\n")
    assert read_scores(asv5).columns == ("filename", "cm-score")
    jsonl = tmp_path / "s.jsonl"
    # the first record's keys, not their union: every row sdd score writes has every key
    jsonl.write_text(json.dumps({"path": "a.wav", "score": 1.0}) + "\n" + json.dumps({"path": "b", "score": 2, "x": 1}))
    assert read_scores(jsonl).columns == ("path", "score")
    plain = tmp_path / "s.txt"
    plain.write_text("u1 0.5\nu2 1.5\n")
    assert read_scores(plain).columns == ()  # no header


def _scored_run(tmp_path, text: str, name: str = "scores.csv"):
    """A score file of 4 rows (``text``: header and rows), a protocol of its files, and an sdd score run record
    listing sdd score's columns beside it."""
    scores = tmp_path / name
    scores.write_text(text)
    protocol = tmp_path / "protocol.csv"
    protocol.write_text("path,label\na.wav,bonafide\nb.wav,bonafide\nc.wav,spoof\nd.wav,spoof\n")
    record = {"model": "model", "cwd": str(tmp_path), "weights_digest": "0" * 64, "columns": SDD_COLUMNS}
    (tmp_path / f"{name}.run.json").write_text(json.dumps(record))
    return scores, protocol


def _sdd_rows(sep: str) -> str:
    rows = [sep.join(SDD_COLUMNS)]
    for name, score in (("a.wav", 2.0), ("b.wav", 1.0), ("c.wav", -1.0), ("d.wav", -2.0)):
        rows.append(sep.join(str(cell) for cell in (name, score, 0.5, "bonafide", 1.0, 1, score, "")))
    return "\n".join(rows) + "\n"


def test_sdd_eval_checks_the_run_record_on_the_columns_its_reader_read(tmp_path, monkeypatch):
    def reread(*args, **kwargs):
        raise AssertionError("the score file's header was read again")

    monkeypatch.setattr(scores_module, "score_columns", reread)
    scores, protocol = _scored_run(tmp_path, _sdd_rows(","))
    kwargs = {"protocol_format": None, "score_format": None, "bootstrap": 0, "seed": 0}
    assert evaluate_files(str(scores), str(protocol), str(tmp_path / "r1"), **kwargs) == 0
    assert json.loads((tmp_path / "r1" / "report.json").read_text())["inputs"]["model"]["model"] == str(
        tmp_path / "model"
    )
    # another tool's path,score file written over the output, beside the earlier run's record: no model named
    scores.write_text("path,score\na.wav,0.9\nb.wav,0.8\nc.wav,0.2\nd.wav,0.1\n")
    assert evaluate_files(str(scores), str(protocol), str(tmp_path / "r2"), **kwargs) == 0
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["inputs"]["model"] is None


def test_a_tab_separated_score_file_with_the_recorded_columns_names_its_model(tmp_path):
    # the check split every header on commas: a TSV with sdd score's columns (a spreadsheet's save) was "another
    # tool's file", though the TSV reader had read those very columns
    scores, protocol = _scored_run(tmp_path, _sdd_rows("\t"), name="scores.tsv")
    score_file = read_scores(scores)
    assert score_file.format == "tsv"
    inputs = evaluated_inputs(str(scores), str(protocol), None, None, score_file=score_file)
    assert inputs["model"] is not None
    assert evaluated_inputs(str(scores), str(protocol), None, None)["model"] is not None  # its header read alone


# --- one cancelled-channels verdict for a file and the same samples as an array ----------------------------------


def _note(message: str) -> str | None:
    """The cancelled-channels note of a SilentAudioError's message, without the array's advice after it."""
    start = message.find("but its channels are not silent")
    if start < 0:
        return None
    return message[start : message.index("phase-inverted?)", start) + len("phase-inverted?)")]


def _silent_messages(det, pair: np.ndarray, tmp_path) -> tuple[str, str]:
    """The SilentAudioError messages of (2, T) ``pair`` scored as an array and as a float WAV."""
    with pytest.raises(SilentAudioError) as as_array:
        det.score(pair, SR)
    wav = tmp_path / "pair.wav"
    sf.write(wav, pair.T, SR, subtype="FLOAT")
    with pytest.raises(SilentAudioError) as as_file:
        det.score_file(wav)
    return str(as_array.value), str(as_file.value)


@pytest.mark.parametrize("offset", [0.0, 0.2], ids=["no_offset", "dc_offset"])
def test_antiphase_channels_get_the_same_note_as_an_array_and_as_a_file(det, tmp_path, offset):
    # the file's check compared peaks only: channels in antiphase on a DC offset mix to a bare offset (peak 0.2),
    # which the array's check (on each channel's swing) said cancel, and the file's did not
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)).astype(np.float32)
    array_message, file_message = _silent_messages(det, np.stack([offset + tone, offset - tone]), tmp_path)
    assert _note(array_message) is not None
    assert _note(file_message) == _note(array_message)
    assert "score one channel" in array_message  # the array's own advice


def test_a_quiet_channel_beside_a_silent_one_is_not_said_to_cancel_in_a_file_either(det, tmp_path):
    # averaged with a silent channel, one at -77 dBFS mixes to -83 dBFS: the file's check said "they cancel"
    quiet = (1.4e-4 * np.sign(np.random.default_rng(0).standard_normal(SR))).astype(np.float32)
    array_message, file_message = _silent_messages(det, np.stack([quiet, np.zeros(SR, np.float32)]), tmp_path)
    assert _note(array_message) is None and _note(file_message) is None


# --- score_files calls score_prepared one way ------------------------------------------------------------------


def test_sdd_score_always_passes_on_windows_to_score_prepared(tmp_path, monkeypatch):
    real = ScoringDetector.score_prepared
    given: list[object] = []

    def keyword_required(self, items, *, on_windows):  # type: ignore[no-untyped-def]
        given.append(on_windows)
        return real(self, items, on_windows=on_windows)

    monkeypatch.setattr(ScoringDetector, "score_prepared", keyword_required)
    model = save_tiny_lcnn(tmp_path / "m")
    wav = write_noise_wav(tmp_path / "a.wav", 0.5, seed=1)
    out = tmp_path / "s.csv"
    assert main(["score", str(wav), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    assert given == [None]  # no progress bar: nothing to count


# --- arguments of the wrong type ----------------------------------------------------------------------------------


def test_a_duration_of_the_wrong_type_is_a_config_error(det, tmp_path):
    wav = write_noise_wav(tmp_path / "a.wav", 0.5, seed=1)
    for bad in ("5", True, [5]):
        with pytest.raises(ConfigError, match=r"^max_duration must be a number of seconds, or None for no limit"):
            det.score_file(wav, max_duration=bad)
    with pytest.raises(ConfigError, match=r"^min_duration must be a number of seconds, got '1'"):
        load_audio(wav, min_duration="1")
    expected = det.score_file(wav).score
    for good in (5, 5.0, np.float32(5), np.int64(5), None):  # valid calls score as before
        assert det.score_file(wav, max_duration=good).score == pytest.approx(expected)


def test_load_detector_of_a_path_of_the_wrong_type_is_a_config_error():
    for bad in (3, b"/models/m"):
        with pytest.raises(ConfigError, match=r"model path must be a str or pathlib\.Path .*got (int|bytes)$"):
            sddkit.load_detector(bad)


def test_score_many_of_something_not_a_sequence_is_a_config_error(det):
    with pytest.raises(ConfigError, match="score_many takes a sequence of waveforms, got int"):
        det.score_many(3)
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    with pytest.raises(ConfigError, match="names must be a sequence, one per waveform, got int"):
        det.score_many([x], names=3)
