"""Python API review 15: what ``score`` and ``score_file`` say when given the wrong thing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scoring_support import save_tiny_lcnn

import sddkit
from sddkit.errors import AudioError, SilentAudioError, UnsupportedSampleRateError
from sddkit.scoring import api

SR = 16000


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    return sddkit.load_detector(save_tiny_lcnn(tmp_path_factory.mktemp("api15") / "model"))


def _tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(SR * seconds)) / SR
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize(
    "pair",
    [
        lambda x: np.stack([x, -x]),  # (C, T) float
        lambda x: np.stack([np.round(x * 32767), -np.round(x * 32767)], axis=1).astype(np.int16),  # (T, C) PCM
    ],
    ids=["channels_first_float", "channels_last_int16"],
)
def test_phase_inverted_channels_are_named_as_such_not_only_silent(det, pair) -> None:
    # load_audio explains this of a file; an array's bare "silent (peak 0.00e+00, digital zero)" read as a
    # wrong verdict on a loud recording
    with pytest.raises(SilentAudioError, match=r"digital zero.*but its channels are not silent.*cancel each other"):
        det.score(pair(_tone()), SR)


def test_silent_or_offset_channels_get_no_cancellation_note(det) -> None:
    for silent in (np.zeros((2, SR), np.float32), np.full((2, SR), 0.3, np.float32)):
        with pytest.raises(SilentAudioError) as info:
            det.score(silent, SR)
        assert "cancel" not in str(info.value)


def test_a_path_or_none_given_to_score_says_what_to_call(det, tmp_path) -> None:
    # each was "expected a (samples,) or (channels, samples) waveform, got shape ()"
    with pytest.raises(AudioError, match=r"got the path 'a\.wav': score a file with score_file\(path\)"):
        det.score("a.wav", SR)
    with pytest.raises(AudioError, match=r"score_file\(path\)"):
        det.score(tmp_path / "a.wav", SR)
    with pytest.raises(AudioError, match=r"got bytes: decode .*decode_audio_bytes"):
        det.score(b"RIFF....WAVE", SR)
    with pytest.raises(AudioError, match=r"expected a waveform .*got NoneType"):
        det.score(None, SR)


def test_ragged_channels_are_an_audio_error(det) -> None:
    # was numpy's bare ValueError ("inhomogeneous shape") from np.asarray
    with pytest.raises(AudioError, match="cannot read a waveform from the list given"):
        det.score([[0.1] * 400, [0.1] * 300], SR)


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        (None, r"got NoneType: pass a str or pathlib\.Path"),
        (np.zeros(10, np.float32), r"got ndarray: score a waveform with score\(waveform, sample_rate\)"),
        (b"RIFF....WAVE", r"got bytes: decode .*decode_audio_bytes"),
        (io.BytesIO(b"RIFF....WAVE"), r"got BytesIO: pass its path, or .*decode_audio_bytes\(f\.read\(\)\)"),
    ],
)
def test_score_file_given_no_path_says_what_to_call(det, given, hint) -> None:
    # was pathlib's TypeError ("expected str, bytes or os.PathLike object, not NoneType")
    with pytest.raises(AudioError, match=r"score_file takes a file path, " + hint):
        det.score_file(given)


def test_an_absurd_sample_rate_is_refused_before_resampling(det, monkeypatch) -> None:
    # soxr never returned from a rate near 1e14 (a sample count or a timestamp passed as the rate)
    def resample(*args, **kwargs):
        raise AssertionError("resampled")

    monkeypatch.setattr(api.soxr, "resample", resample)
    for rate in (10**14, 1e20):
        with pytest.raises(UnsupportedSampleRateError, match=r"above any audio rate \(at most 2147483647\)"):
            det.score(_tone(), rate)
