"""Review of the 16th session's changes: arguments of the wrong kind given to score_many, load_audio, audio_info and
decode_audio_bytes get one sddkit error naming what was given and what to call, not one per item or a TypeError."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scoring_support import save_tiny_lcnn, write_noise_wav

import sddkit
from sddkit.audio import audio_info, decode_audio_bytes, load_audio
from sddkit.errors import AudioError, ConfigError

SR = 16000


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    return sddkit.load_detector(save_tiny_lcnn(tmp_path_factory.mktemp("diffrev16") / "model"))


def _wave(seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(SR)).astype(np.float32)


# --- score_many of something iterable that is not a sequence of waveforms -------------------------------------------


def test_score_many_of_one_waveform_says_so_instead_of_failing_on_its_first_sample(det):
    # iterated, a waveform's samples were the "waveforms": "waveforms[0]: expected a 1-D mono waveform, got shape ()"
    x = _wave()
    for one in (x, torch.from_numpy(x), x[:100].tolist()):
        with pytest.raises(
            ConfigError, match=r"^score_many takes a sequence of waveforms, got .*score\(x, sample_rate"
        ):
            det.score_many(one)


def test_score_many_of_a_path_or_bytes_names_it(det, tmp_path):
    # a str was iterated by character: "got the path 'a'" of the path "a.wav"
    with pytest.raises(
        ConfigError, match=r"^score_many takes a sequence of waveforms, got the path 'a\.wav': .*score_file"
    ):
        det.score_many("a.wav")
    with pytest.raises(ConfigError, match=r"got the path '.*b\.wav'"):
        det.score_many(tmp_path / "b.wav")
    with pytest.raises(ConfigError, match=r"got bytes: decode an encoded file's bytes with .*decode_audio_bytes"):
        det.score_many(b"RIFF....WAVE")
    with pytest.raises(ConfigError, match=r"names must be a sequence, one per waveform, got str"):
        det.score_many([_wave(1), _wave(2)], names="ab")  # was taken as the names 'a' and 'b'


def test_score_many_still_takes_every_sequence_of_waveforms(det):
    a, b = _wave(1), _wave(2)
    expected = [det.score_many([a])[0].score, det.score_many([b])[0].score]
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = a, b[: SR // 2]
    cases = [np.stack([a, b]), torch.from_numpy(np.stack([a, b])), (a, b), iter([a, b])]
    for waveforms in cases:
        assert [r.score for r in det.score_many(waveforms)] == pytest.approx(expected)
    assert len(det.score_many(ragged)) == 2  # an object array of waveforms is a sequence of them
    assert det.score_many([]) == []


# --- load_audio, audio_info and decode_audio_bytes of an argument of the wrong type --------------------------------


def test_load_audio_of_something_not_a_path_is_an_audio_error(tmp_path):
    # pathlib's TypeError ("expected str, bytes or os.PathLike object, not int"), against the docstring's
    # "raises only AudioError subclasses (plus ConfigError for invalid arguments)"
    for bad in (3, None, _wave()):
        with pytest.raises(AudioError, match=r"^expected a file path, got \w+: pass a str or pathlib\.Path$"):
            load_audio(bad)
        with pytest.raises(AudioError, match=r"^expected a file path, got"):
            audio_info(bad)
    data = write_noise_wav(tmp_path / "a.wav", 0.5, seed=1).read_bytes()
    hint = r"got bytes: decode an encoded file's bytes with sddkit\.audio\.decode_audio_bytes\(data\)"
    with pytest.raises(AudioError, match=hint):
        load_audio(data)
    assert load_audio(tmp_path / "a.wav").shape == decode_audio_bytes(data).shape  # paths and bytes as before


def test_decode_audio_bytes_of_something_not_bytes_is_an_audio_error(tmp_path):
    # a bare TypeError("expected bytes, got str"), which callers catching AudioError (as for load_audio) missed
    wav = write_noise_wav(tmp_path / "a.wav", 0.5, seed=1)
    with pytest.raises(AudioError, match=r"^decode_audio_bytes takes an encoded file's bytes, got str: .*load_audio"):
        decode_audio_bytes(str(wav))
    with open(wav, "rb") as f, pytest.raises(AudioError, match=r"got BufferedReader: .*decode_audio_bytes\(f\.read"):
        decode_audio_bytes(f)
    with pytest.raises(AudioError, match=r"got BytesIO"):
        decode_audio_bytes(io.BytesIO(wav.read_bytes()))
    with pytest.raises(AudioError, match=r"got int: pass the bytes of an encoded audio file"):
        decode_audio_bytes(3)
