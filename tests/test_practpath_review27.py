"""A practitioner's three doors (sdd score, the Python API, sdd serve) on a file over the duration limit.

Each door refuses such a file with the same error, and each must say what the limit is and how it is lifted in
its own terms: ``sdd score`` names ``--max-duration-s``, ``score_file`` its ``max_duration=None``. The service
named the decoder's ``max_duration`` keyword, which its client never sees, and no remedy; the API's refusal of
``max_duration=0`` (``sdd score``'s "no limit") did not say that None is the API's.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.errors import AudioTooLongError, ConfigError
from sddkit.scoring.api import load_detector
from sddkit.service.app import create_app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("practpath") / "model")


def _noise(seconds: float, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    x = 0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds)).astype(np.float32)
    sf.write(buf, x, 16000, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "OGG"])  # a header that declares the length, and one that does not
def test_the_service_names_its_limit_and_option_for_a_file_over_it(model_dir, fmt):
    with TestClient(create_app(model_dir, max_duration_s=2.0)) as client:
        resp = client.post("/v1/score", files={"file": (f"long.{fmt.lower()}", _noise(3.0, fmt))})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["type"] == "audio_too_long_error"
    message = error["message"]
    assert message.startswith(f"long.{fmt.lower()}: "), message  # the upload's name leads, as for other errors
    assert "this service scores at most 2 s of audio (sdd serve --max-duration-s sets it)" in message, message


def test_the_three_doors_refuse_the_same_long_file_each_naming_its_own_remedy(model_dir, tmp_path):
    path = tmp_path / "long.wav"
    path.write_bytes(_noise(3.0))
    out = tmp_path / "s.jsonl"
    assert main(["score", str(path), "--model", str(model_dir), "--out", str(out), "--max-duration-s", "2"]) == 1
    row = json.loads(out.read_text(encoding="utf-8"))
    assert row["error"].endswith("; sdd score --max-duration-s sets the limit (0: none)"), row
    with pytest.raises(AudioTooLongError, match=r"score_file\(path, max_duration=None\) scores any length$"):
        load_detector(model_dir).score_file(path, max_duration=2.0)
    with TestClient(create_app(model_dir, max_duration_s=2.0)) as client:
        message = client.post("/v1/score", files={"file": ("long.wav", path.read_bytes())}).json()["error"]["message"]
    assert message.endswith("send a shorter file, or cut it into parts"), message
    # the same refusal: the decoder's words after the file's name, then each door's own hint
    reason = row["error"].split(": ", 1)[1].split("; ")[0]
    assert message.split(": ", 1)[1].split("; ")[0] == reason


def test_score_file_says_none_is_no_limit_when_given_sdd_scores_zero(model_dir, tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(_noise(1.0))
    detector = load_detector(model_dir)
    with pytest.raises(ConfigError, match=r"or None for no limit, got 0$"):
        detector.score_file(path, max_duration=0)
    assert np.isfinite(detector.score_file(path, max_duration=None).score)  # what the message points to


def _speech_like(seconds: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


def _dither(n: int) -> np.ndarray:
    return (1e-5 * np.random.default_rng(2).standard_normal(n)).astype(np.float32)  # about -90 dBFS peaks


@pytest.mark.parametrize("gap", [np.zeros, _dither])
def test_windows_of_silence_are_left_out_so_padding_does_not_move_the_score(model_dir, gap):
    """A file followed by seconds of silence was scored as mostly that silence: every window of it weighed as
    much as the speech's in the mean (the bundled model scores digital silence +2.5, bona fide, so a spoof padded
    with 30 s of it read as bona fide). A whole silent input is refused as holding nothing to score; so is each
    silent window now, however long the gap."""
    detector = load_detector(model_dir)  # 0.5 s windows, 0.25 s hop
    x = _speech_like(1.0)
    short, long = (detector.score(np.r_[x, gap(16000 * s)], 16000) for s in (2, 10))
    assert long.duration_s == 11.0 and short.duration_s == 3.0
    assert long.window_starts_s == short.window_starts_s  # the windows that reach into the speech, no others
    assert max(long.window_starts_s) < 1.0 and long.n_windows == 4
    assert long.score == pytest.approx(short.score, abs=1e-9) and long.window_scores == pytest.approx(
        short.window_scores
    )
    # the service and sdd score cut the same windows (prepare is theirs too)
    buf = io.BytesIO()
    sf.write(buf, np.r_[x, gap(16000 * 10)], 16000, format="WAV", subtype="FLOAT")
    with TestClient(create_app(model_dir)) as client:
        served = client.post("/v1/score", files={"file": ("padded.wav", buf.getvalue())}).json()
    assert served["n_windows"] == 4 and served["score"] == pytest.approx(long.score, abs=1e-5)
    # what is not silence keeps its windows: quiet speech, and an input shorter than a window (repeat-padded)
    quiet = 10 ** (-70 / 20) * _speech_like(2.0) / 0.4  # peaks near -70 dBFS: above the silence level, kept
    assert detector.score(quiet, 16000).n_windows == 7
    assert detector.score(_speech_like(0.3), 16000).n_windows == 1  # repeat-padded to one window
