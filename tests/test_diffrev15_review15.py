"""Review 15 of the day's changes: the averaged weights' norm statistics, the Python API's new error paths and the
eval warning that a score file's run record turns off."""

from __future__ import annotations

import copy
import io
import json
import wave

import numpy as np
import pytest
import torch
from eval_support import gaussian_trials, labelled_table
from scoring_support import save_tiny_lcnn, write_noise_wav
from torch import nn

import sddkit
from sddkit.cli.eval_cmd import evaluated_inputs
from sddkit.cli.main import main
from sddkit.detectors.gates import BatchNorm1d
from sddkit.errors import AudioError, SilentAudioError
from sddkit.evaluation import EvalConfig, evaluate
from sddkit.training.ema import BatchNormEstimate, updated_batch_norms

SR = 16000


# --- trainer.ema_decay: a batch norm the estimate's batches call without updating it -------------------------


def test_a_batch_norm_called_only_on_one_row_batches_keeps_its_statistics():
    # gates.BatchNorm1d normalises a batch of one row (data.batch_size 1, an enhanced gate's one input) with its
    # running statistics and leaves them; the estimate counted the call as "reached" and returned the reset values
    # (mean 0, variance 1) for the averaged model, where before it kept the trained statistics
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), BatchNorm1d(4))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3))
    model.eval()
    before = copy.deepcopy(model.state_dict())
    assert not torch.equal(before["1.running_mean"], torch.zeros(4))
    stats = BatchNormEstimate(
        model, updated_batch_norms(model), [torch.randn(1, 3) for _ in range(2)], seed=0
    ).estimate()
    for stat in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(stats[f"1.{stat}"], before[f"1.{stat}"]), stat


# --- the Python API -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    return sddkit.load_detector(save_tiny_lcnn(tmp_path_factory.mktemp("diffrev15") / "model"))


def _wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        t = np.arange(SR) / SR
        w.writeframes((8000 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_an_encoded_files_bytes_in_a_bytearray_are_refused_not_scored_as_pcm(det, wrap):
    # np.asarray turns a bytearray (or a memoryview of bytes) into uint8 samples: the WAV file's bytes were scored
    # as 8-bit PCM audio, where bytes were refused with a hint
    with pytest.raises(AudioError, match=rf"got {wrap.__name__}: decode .*decode_audio_bytes"):
        det.score(wrap(_wav_bytes()), SR)


def test_a_memoryview_of_float_samples_is_still_a_waveform(det):
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)).astype(np.float32)
    assert det.score(memoryview(x), SR).score == pytest.approx(det.score(x, SR).score)


def _silent_error(det, x) -> str:
    with pytest.raises(SilentAudioError) as info:
        det.score(x, SR)
    return str(info.value)


def test_channels_of_opposite_dc_offsets_are_not_said_to_cancel(det):
    # each channel is a bare offset, which scored alone is refused too: "its channels are not silent ... score one
    # channel" was false advice
    pair = np.stack([np.full(SR, 0.01, np.float32), np.full(SR, -0.01, np.float32)])
    assert "cancel" not in _silent_error(det, pair)
    assert "cancel" not in _silent_error(det, np.round(pair.T * 32767).astype(np.int16))  # (T, C) PCM


def test_a_quiet_channel_beside_a_silent_one_is_not_said_to_cancel(det):
    # the mix of one channel at -77 dBFS and a silent one is at -83 dBFS: averaged, not cancelled
    rng = np.random.default_rng(0)
    quiet = (1.4e-4 * np.sign(rng.standard_normal(SR))).astype(np.float32)
    assert "cancel" not in _silent_error(det, np.stack([quiet, np.zeros(SR, np.float32)]))


def test_opposite_signals_on_an_offset_are_said_to_cancel(det):
    # the mix is a bare offset ("a constant DC offset ... with no signal"), but each channel carries the signal
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)).astype(np.float32)
    message = _silent_error(det, np.stack([0.2 + tone, 0.2 - tone], axis=1))
    assert "DC offset" in message and "they cancel each other" in message


# --- sdd eval: a run record beside a file another tool wrote ----------------------------------------------------


def _unit_interval_report(tmp_path, header: str, columns: list[str] | None):
    labels, scores = gaussian_trials(200)
    scores = 0.5 + 0.05 * (scores - scores.mean()) / scores.std()  # all in [0, 1]
    scores_csv, protocol = tmp_path / "scores.csv", tmp_path / "protocol.csv"
    scores_csv.write_text(header + "\n")
    protocol.write_text("path,label\n")
    record = {"model": "model", "cwd": str(tmp_path), "weights_digest": "0" * 64}
    if columns is not None:
        record["columns"] = columns
    (tmp_path / "scores.csv.run.json").write_text(json.dumps(record))
    report = evaluate(labelled_table(labels), scores, EvalConfig(bootstrap=0))
    report.inputs = evaluated_inputs(str(scores_csv), str(protocol), None, None)
    return report


SDD_COLUMNS = ["path", "score", "probability", "decision", "duration_s", "n_windows", "raw_score", "error"]


def test_a_score_file_another_tool_wrote_over_an_sdd_score_output_still_warns(tmp_path):
    # the record of an earlier sdd score run stays beside the file another tool then wrote (path,score of its
    # probabilities): the report named that model and read the probabilities as its log-odds, without a warning
    report = _unit_interval_report(tmp_path, "path,score", SDD_COLUMNS)
    assert report.inputs["model"] is None
    assert any("[0, 1]" in w and "log(p / (1 - p))" in w for w in report.warnings)


def test_an_sdd_score_output_with_its_recorded_columns_names_its_model(tmp_path):
    report = _unit_interval_report(tmp_path, "\ufeff" + ",".join(SDD_COLUMNS), SDD_COLUMNS)
    assert report.inputs["model"] is not None
    assert not any("[0, 1]" in w for w in report.warnings)
    jsonl = tmp_path / "j"
    jsonl.mkdir()
    report = _unit_interval_report(jsonl, json.dumps(dict.fromkeys(SDD_COLUMNS)), SDD_COLUMNS)
    assert report.inputs["model"] is not None


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_what_sdd_score_writes_has_the_columns_its_record_lists(tmp_path, suffix):
    save_tiny_lcnn(tmp_path / "m")
    wav = write_noise_wav(tmp_path / "a.wav", 0.5, seed=1)
    out = tmp_path / f"s.{suffix}"
    assert main(["score", str(wav), "--model", str(tmp_path / "m"), "--out", str(out), "--quiet"]) == 0
    (tmp_path / "p.csv").write_text("path,label\n")
    assert evaluated_inputs(str(out), str(tmp_path / "p.csv"), None, None)["model"]["model"] == str(tmp_path / "m")
