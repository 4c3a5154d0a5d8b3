"""Tenth review of the HTTP service: a practitioner's uploads, as real clients send them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from scoring_support import assert_error_json as _assert_error
from scoring_support import noise_wav_bytes as _wav
from scoring_support import save_tiny_lcnn

from sddkit.service.app import create_app

SR = 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("svc10") / "lcnn")


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(model_dir, max_upload_mb=1, max_duration_s=5)) as c:
        yield c


def test_a_second_file_under_another_field_name_is_refused_not_dropped(client):
    """``-F file=@a.wav -F file2=@b.wav`` answered 200 with a.wav's score alone: b.wav was dropped without a word,
    while two files in 'file' (or five anywhere) were a 422 too_many_files, as the schema says."""
    two = [("file", ("a.wav", _wav(seed=1), "audio/wav")), ("file2", ("b.wav", _wav(seed=2), "audio/wav"))]
    error = _assert_error(client.post("/v1/score", files=two), 422, "too_many_files")
    assert "send one file per request" in error["message"] and "file, file2" in error["message"]
    # a text field beside the file is no second file, nor is a file input left empty in an HTML form: still scored
    ok = client.post("/v1/score", files={"file": ("a.wav", _wav(seed=1), "audio/wav")}, data={"note": "x"})
    assert ok.status_code == 200 and ok.json()["filename"] == "a.wav"
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + _wav(seed=1) + b"\r\n"
        b'--XX\r\nContent-Disposition: form-data; name="extra"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--XX--\r\n"
    )
    ok = client.post("/v1/score", content=body, headers={"content-type": "multipart/form-data; boundary=XX"})
    assert ok.status_code == 200 and ok.json()["filename"] == "a.wav"
    # without a 'file' field the answer still names the missing field (and the fields sent)
    others = [("audio", ("a.wav", _wav(seed=1), "audio/wav")), ("audio2", ("b.wav", _wav(seed=2), "audio/wav"))]
    assert "audio, audio2" in _assert_error(client.post("/v1/score", files=others), 422, "missing_field")["message"]


MIXTURE = {
    "experts": [
        {"frontend": {"name": "logmel", "n_mels": 32}, "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0}},
        {"frontend": {"name": "lfcc"}, "backend": {"name": "linear"}},
    ],
    "gate": {"name": "enhanced_mlp"},
}


def test_concurrent_uploads_to_a_mixture_each_get_their_own_answer(tmp_path):
    """Threads posting different files (lengths, sample rates) at once, with bad uploads among them: each answer is
    the one its file gets alone, windows and gate weights included, and the bad ones are their own 422s."""
    import threading

    import torch

    from sddkit.config import from_dict, to_dict
    from sddkit.detectors.mixture import MixtureConfig, build_mixture
    from sddkit.detectors.model_dir import save_model_dir

    cfg = from_dict(MixtureConfig, MIXTURE)
    torch.manual_seed(0)
    inference = {"window_samples": 8000, "threshold": 0.1, "calibration": {"a": 2.0, "b": -0.3, "prior": 0.5}}
    save_model_dir(
        tmp_path / "mixture",
        build_mixture(cfg).eval(),
        model_config=to_dict(cfg),
        architecture="mixture",
        inference=inference,
    )
    rates = (16000, 8000, 22050, 44100)
    uploads = []
    for i in range(8):
        buf = io.BytesIO()
        rate = rates[i % len(rates)]
        x = 0.1 * np.random.default_rng(100 + i).standard_normal(int((0.4 + 0.35 * i) * rate))
        sf.write(buf, x.astype(np.float32), rate, format="WAV")
        uploads.append((f"f{i}.wav", buf.getvalue()))
    uploads += [("empty.wav", b""), ("junk.wav", b"not audio at all")]
    with TestClient(create_app(tmp_path / "mixture", max_concurrent=3)) as c:
        alone = [c.post("/v1/score", files={"file": up}) for up in uploads]
        answers: dict[tuple[int, int], object] = {}
        barrier = threading.Barrier(len(uploads))

        def post(i: int) -> None:
            barrier.wait()
            for k in range(2):
                answers[i, k] = c.post("/v1/score", files={"file": uploads[i]})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(uploads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert [r.status_code for r in alone] == [200] * 8 + [422, 422]
    assert set(alone[0].json()["weights"]) == {"gate_weights", "expert_scores"}
    for (i, _), resp in answers.items():
        assert resp.status_code == alone[i].status_code, resp.text
        got, want = resp.json(), alone[i].json()
        if resp.status_code != 200:
            assert got == want
            continue
        assert got["filename"] == want["filename"] and got["n_windows"] == want["n_windows"]
        assert got["decision"] == want["decision"] and got["score"] == pytest.approx(want["score"], abs=1e-6)
        assert [w["score"] for w in got["windows"]] == pytest.approx([w["score"] for w in want["windows"]], abs=1e-6)
        for name, values in want["weights"].items():
            assert got["weights"][name] == pytest.approx(values, abs=1e-6)
    assert len(answers) == 2 * len(uploads)


def test_a_server_told_to_stop_finishes_the_uploads_it_is_scoring(model_dir, monkeypatch):
    """Ctrl-C or SIGTERM (uvicorn's should_exit) while files are being scored, and another waits for its slot: each
    still gets its score, and the server then stops."""
    import threading
    import time

    import httpx
    from test_service import start_uvicorn

    from sddkit.service import app as service_app

    real, started, release = service_app._score_bytes, threading.Event(), threading.Event()

    def held(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    read_upload, uploaded = service_app._read_upload, []

    async def counted(*args, **kwargs):
        result = await read_upload(*args, **kwargs)
        uploaded.append(result[0])
        return result

    monkeypatch.setattr(service_app, "_score_bytes", held)
    monkeypatch.setattr(service_app, "_read_upload", counted)
    server, thread, port = start_uvicorn(create_app(model_dir, max_concurrent=1))
    deadline = time.monotonic() + 60
    answers: dict[int, object] = {}

    def post(i: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            answers[i] = c.post("/v1/score", files={"file": (f"f{i}.wav", _wav(seed=i), "audio/wav")})

    posts = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for t in posts:
        t.start()
    assert started.wait(30)
    while len(uploaded) < 2:  # the second upload has arrived and waits for the only slot
        assert time.monotonic() < deadline + 60, "the second upload did not arrive"
        time.sleep(0.02)
    server.should_exit = True
    time.sleep(0.3)
    release.set()
    for t in posts:
        t.join(timeout=60)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [answers[i].status_code for i in range(2)] == [200, 200]
    assert [answers[i].json()["filename"] for i in range(2)] == ["f0.wav", "f1.wav"]
