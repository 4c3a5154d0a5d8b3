"""The Python API's inputs that score_file and score_many mishandled (path-likes other than a Path, a mapping of
waveforms, (waveform, rate) pairs, unlabelled errors, swapped arguments), and detectors that could not be pickled."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from scoring_support import save_tiny_lcnn, write_noise_wav

from sddkit.errors import AudioError, ConfigError
from sddkit.scoring.api import load_detector


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return load_detector(save_tiny_lcnn(tmp_path_factory.mktemp("api25") / "model"))


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def test_score_file_takes_an_os_dir_entry(detector, tmp_path):
    # str() of an os.DirEntry is "<DirEntry 'a.wav'>", which was decoded as the file name: "not a readable audio file"
    path = write_noise_wav(tmp_path / "audio" / "a.wav", 1.2, seed=1)
    (entry,) = list(os.scandir(path.parent))
    assert detector.score_file(entry).to_dict() == detector.score_file(path).to_dict()


def test_score_file_of_a_dir_entry_names_the_file_in_its_errors(detector, tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "empty.wav").write_bytes(b"")
    (entry,) = list(os.scandir(tmp_path / "audio"))
    with pytest.raises(AudioError, match=r"empty\.wav: file is empty") as info:
        detector.score_file(entry)
    assert "DirEntry" not in str(info.value)
    assert info.value.path == os.fspath(entry)


def test_score_file_takes_a_bytes_path_like(detector, tmp_path):
    path = write_noise_wav(tmp_path / "b.wav", 1.0, seed=2)
    (entry,) = list(os.scandir(os.fsencode(tmp_path)))  # a DirEntry of bytes names
    assert detector.score_file(entry).score == detector.score_file(path).score


def test_score_many_refuses_a_dict_by_what_it_is(detector):
    waves = {"a": _noise(1.0, 3), "b": _noise(1.5, 4)}
    # iterated, its keys were read as waveforms: "expected a waveform ..., got the path 'a'"
    with pytest.raises(
        ConfigError, match=r"got a dict of 2 entries: .*score_many\(list\(d.values\(\)\), names=list\(d\)\)"
    ):
        detector.score_many(waves)
    results = detector.score_many(list(waves.values()), names=list(waves))
    assert [r.score for r in results] == pytest.approx([detector.score(x, 16000).score for x in waves.values()])


def test_score_many_names_the_input_whose_conversion_fails(detector):
    with pytest.raises(AudioError, match=r"^waveforms\[1\]: expected a waveform .*got the path 'b.wav'"):
        detector.score_many([_noise(1.0, 5), "b.wav"])
    with pytest.raises(AudioError, match=r"^clip2: cannot read a waveform from the list"):
        detector.score_many([_noise(1.0, 5), [[0.1, 0.2], [0.3]]], names=["clip1", "clip2"])
    with pytest.raises(AudioError, match=r"^waveforms\[0\]: expected a waveform of samples, got a meta tensor"):
        detector.score_many([torch.empty(16000, device="meta")])


def test_a_waveform_and_rate_pair_is_named_as_such(detector):
    x = _noise(1.0, 6)
    # what torchaudio.load and dataset items give; it was "channels of different lengths, or numbers mixed with
    # sequences?"
    with pytest.raises(AudioError, match=r"^waveforms\[0\]: got a \(waveform, 16000\) pair, not a waveform"):
        detector.score_many([(x, 16000)])
    with pytest.raises(AudioError, match=r"got a \(waveform, 16000\) pair, not a waveform: pass the waveform alone"):
        detector.score((torch.from_numpy(x), 16000), 16000)
    # two samples in a tuple are still a (too short) waveform, not a pair
    with pytest.raises(AudioError, match="too short"):
        detector.score((0.1, -0.2), 16000)


def test_swapped_score_arguments_are_named(detector):
    x = _noise(1.0, 7)
    # was "expected a (samples,) or (channels, samples) waveform, got shape ()"
    with pytest.raises(AudioError, match=r"got the number 16000 as the waveform .*\(arguments swapped\?\)"):
        detector.score(16000, x)
    with pytest.raises(AudioError, match=r"arguments swapped"):
        detector.score(16000, torch.from_numpy(x))
    with pytest.raises(AudioError, match=r"got shape \(\)$"):  # a lone number with a rate stays what it was
        detector.score(0.5, 16000)


def test_a_batch_of_mono_waveforms_is_pointed_to_score_many(detector):
    batch = torch.from_numpy(np.stack([_noise(1.0, 8), _noise(1.0, 9)]))[:, None]  # a DataLoader's (B, 1, T)
    with pytest.raises(AudioError, match=r"got shape \(2, 1, 16000\); a batch of waveforms\? .*score_many"):
        detector.score(batch, 16000)
    assert len(detector.score_many(list(batch[:, 0]))) == 2


def test_a_torch_detector_pickles_and_scores_the_same(detector):
    # multiprocessing under spawn and joblib's workers pickle it: "cannot pickle '_thread.lock' object"
    x = _noise(1.3, 10)
    detector.stat_widths()  # the probe ran: its lock is held state too
    copy = pickle.loads(pickle.dumps(detector))
    assert copy.score(x, 16000).to_dict() == detector.score(x, 16000).to_dict()
    assert copy.stat_widths() == detector.stat_widths()


def test_an_onnx_detector_pickles_and_scores_the_same(tiny_stats, tmp_path, monkeypatch):
    from sddkit.scoring.onnx_export import export_onnx

    export_onnx(tiny_stats(tmp_path / "m"), tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    onnx = load_detector("m.onnx", backend="onnx")  # a relative path: the copy may open it from elsewhere
    x = _noise(0.2, 11)
    monkeypatch.chdir(tmp_path.parent)
    copy = pickle.loads(pickle.dumps(onnx))  # was "cannot pickle 'InferenceSession' object"
    assert copy.score(x, 16000).to_dict() == onnx.score(x, 16000).to_dict()
