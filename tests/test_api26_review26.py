"""The Python API's inputs that score_many and score refused though score scored them: channels (a DataLoader's
(1, T) rows, a stereo pair) given to score_many at the model's rate, and a sample rate held in a one-number tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scoring_support import save_tiny_lcnn

from sddkit.errors import AudioError
from sddkit.scoring.api import load_detector


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return load_detector(save_tiny_lcnn(tmp_path_factory.mktemp("api26") / "model"))


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def test_score_many_mixes_channels_at_the_model_rate_as_score_does(detector):
    left, right = _noise(1.3, 1), _noise(0.7, 2)
    stereo = np.stack([left[:11200], right])  # (2, T)
    batch = torch.from_numpy(np.stack([left[:16000], _noise(1.0, 3)]))[:, None]  # a DataLoader's (B, 1, T)
    # each was "waveforms[0]: expected a 1-D mono waveform, got shape (2, 11200)", though the same call with
    # sample_rate=16000 (the model's rate) scored them
    got = detector.score_many([stereo, stereo.T, *batch])
    want = [detector.score(stereo, 16000), detector.score(stereo.T, 16000)] + [detector.score(x, 16000) for x in batch]
    assert [r.to_dict() for r in got] == [r.to_dict() for r in want]
    assert [r.to_dict() for r in detector.score_many(list(batch), sample_rate=16000)] == [r.to_dict() for r in got[2:]]


def test_score_many_int16_channels_are_scaled_as_pcm(detector):
    pcm = (np.stack([_noise(1.0, 4), _noise(1.0, 5)]) * 32767).astype(np.int16)
    assert detector.score_many([pcm], names=["a.wav"])[0].to_dict() == detector.score(pcm, 16000).to_dict()


def test_score_many_still_names_the_waveform_it_refuses(detector):
    with pytest.raises(AudioError, match=r"^b\.wav: a waveform of shape \(16, 16000\) has more than 8 channels"):
        detector.score_many([_noise(1.0, 6), np.zeros((16, 16000), np.float32)], names=["a.wav", "b.wav"])


def test_a_sample_rate_in_a_one_number_tensor_is_that_rate(detector):
    # a dataset's tensor(22050) (a DataLoader's tensor([22050])) was refused: "sample_rate must be a positive
    # integer, got tensor(22050)"
    x = (0.1 * np.random.default_rng(7).standard_normal(22050)).astype(np.float32)
    want = detector.score(x, 22050).to_dict()
    for rate in (
        torch.tensor(22050),
        torch.tensor([22050]),
        np.array(22050),
        np.array([22050.0]),
        torch.tensor(22050.0),
    ):
        assert detector.score(x, rate).to_dict() == want
        assert detector.score_many([x], sample_rate=rate)[0].to_dict() == want
    # what is not one whole rate stays refused
    for bad in (
        torch.tensor([22050, 22050]),
        torch.tensor(22050.5),
        np.array([True]),
        torch.tensor(True),
        np.array(-8),
    ):
        with pytest.raises(AudioError, match="sample_rate must be a positive integer"):
            detector.score(x, bad)
