"""Second review of the HTTP service: model loading, request-shape edge cases, error statuses."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scoring_support import assert_error_json as _assert_error
from scoring_support import noise_wav_bytes as _wav
from scoring_support import save_tiny_lcnn, score_post_scope

from sddkit.errors import CheckpointError
from sddkit.service.app import create_app

SR = 16000
MAX_MB = 0.25
BOUNDARY = "r2boundary"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("svc2") / "lcnn")


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(model_dir, max_upload_mb=MAX_MB, max_duration_s=2.0)) as c:
        yield c


def _part(data: bytes, name: str = "file", filename: str = "a.wav") -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    return (head + "Content-Type: audio/wav\r\n\r\n").encode() + data + b"\r\n"


def _close() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


def test_a_model_that_cannot_load_is_refused_by_create_app(model_dir, tmp_path):
    """create_app only read config.json (torch) or checked that the path existed (ONNX); the weights
    were loaded in the lifespan, so corrupt weights or a folder without model.onnx passed create_app and
    `sdd serve` announced its URL, then died in uvicorn's start-up with a traceback (exit code 3)."""
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated download
    with pytest.raises(CheckpointError, match="unreadable weights"):
        create_app(broken)
    with pytest.raises(CheckpointError, match="no such ONNX model"):
        create_app(model_dir, backend="onnx")  # a model directory, but no model.onnx in it


def test_the_sdd_serve_command_reports_an_unloadable_model_as_one_line(model_dir, tmp_path, monkeypatch, capsys):
    """The same bug from the command line: a clean `sdd serve: error` (exit 2), and no server started."""
    import uvicorn

    from sddkit.cli.main import main

    def no_server(*_a, **_k):
        raise AssertionError("the server must not start")

    monkeypatch.setattr(uvicorn.Server, "run", no_server)
    assert main(["serve", "--model", str(model_dir), "--backend", "onnx", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no such ONNX model" in err and "Traceback" not in err and "http://" not in err


def test_a_content_length_of_thousands_of_digits_is_413_not_a_500(client):
    """int() refuses a decimal string over 4,300 digits: such a Content-Length raised ValueError, a 500
    internal_error. It is a (very) large declared body: 413, refused before reading it."""
    body = _part(_wav()) + _close()
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", "content-length": "9" * 5000}
    _assert_error(client.post("/v1/score", content=body, headers=headers), 413, "payload_too_large")
    # leading zeros do not make a small body large
    headers["content-length"] = "0" * 5000 + str(len(body))
    assert client.post("/v1/score", content=body, headers=headers).status_code == 200


def test_the_media_type_must_be_multipart_form_data_not_a_prefix_of_it(client):
    """The content type was checked with startswith("multipart/form-data"): "multipart/form-dataX" passed,
    Starlette parsed it as an empty form, and the client was told its 'file' field held nothing (422)."""
    body = _part(_wav()) + _close()
    resp = client.post(
        "/v1/score", content=body, headers={"content-type": f"multipart/form-dataX; boundary={BOUNDARY}"}
    )
    _assert_error(resp, 415, "unsupported_media_type")
    ok = client.post("/v1/score", content=body, headers={"content-type": f"Multipart/Form-Data; boundary={BOUNDARY}"})
    assert ok.status_code == 200, ok.text  # media types are case-insensitive


def test_a_cut_off_multipart_body_is_a_malformed_body_not_a_missing_field(client):
    """Starlette drops a part that never ends, silently: an upload cut before its closing boundary
    answered 422 missing_field "the form field 'file' holds nothing (fields sent: none)"."""
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    full = _part(_wav()) + _close()
    resp = client.post("/v1/score", content=full[: len(full) // 2], headers=headers)
    _assert_error(resp, 400, "bad_request")
    assert "closing boundary" in resp.json()["error"]["message"]
    assert client.post("/v1/score", content=full, headers=headers).status_code == 200
    # a complete but empty form is still the missing field it is
    _assert_error(client.post("/v1/score", content=_close(), headers=headers), 422, "missing_field")


def test_a_model_failure_during_scoring_is_a_500_not_a_422(model_dir):
    """Every SddkitError that is not an AudioError was answered 422 ("the upload cannot be processed"):
    a model that returns logits of the wrong shape (CheckpointError) is the server's failure."""
    with TestClient(create_app(model_dir), raise_server_exceptions=False) as c:
        det = c.app.state.detector
        good = det.runner
        det.runner = lambda windows: (np.zeros((windows.shape[0], 3), np.float32), {})
        try:
            _assert_error(c.post("/v1/score", files={"file": ("a.wav", _wav(), "audio/wav")}), 500, "checkpoint_error")
        finally:
            det.runner = good
        ok = c.post("/v1/score", files={"file": ("a.wav", _wav(), "audio/wav")})
        assert ok.status_code == 200 and c.get("/healthz").status_code == 200
        _assert_error(
            c.post("/v1/score", files={"file": ("a.wav", b"not audio", "audio/wav")}), 422, "audio_decode_error"
        )


def test_the_announced_url_brackets_an_ipv6_host():
    """`sdd serve --host ::1` announced http://::1:8000/, which is not a URL (an IPv6 host is bracketed)."""
    from sddkit.cli.serve_cmd import service_url

    assert service_url("::1", 8123) == "http://[::1]:8123/"
    assert service_url("127.0.0.1", 8123) == "http://127.0.0.1:8123/"


def test_serve_binds_before_it_announces_a_url(model_dir, monkeypatch, capsys):
    """A port in use: the URL was announced, then uvicorn's bind error followed with exit status 3. Now the
    socket is bound first: a one-line error, status 2. --port 0 announces the port the system chose."""
    import socket

    import uvicorn

    from sddkit.cli.main import main

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(sockets[0].getsockname()))
    assert main(["serve", "--model", str(model_dir), "--host", "127.0.0.1", "--port", "0"]) == 0
    (address,) = served
    assert address[1] > 0 and f"http://127.0.0.1:{address[1]}/" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "http://" not in err and "Traceback" not in err
    assert len(served) == 1


@pytest.mark.parametrize("slots", [1, 3])
def test_at_most_max_concurrent_requests_score_at_once(model_dir, monkeypatch, slots):
    """Every request used to decode and score at once (up to the thread pool's 40), each holding its decoded
    audio and starting torch threads on the same cores; now at most ``max_concurrent`` do, the others wait."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from sddkit.service import app as service

    real, lock, state = service._score_bytes, threading.Lock(), {"now": 0, "most": 0}

    def slow(*args, **kwargs):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            time.sleep(0.3)  # long enough for every client's request to be in flight together
            return real(*args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(service, "_score_bytes", slow)
    with TestClient(create_app(model_dir, max_concurrent=slots)) as c:
        assert c.get("/v1/model").json()["limits"]["max_concurrent"] == slots

        def post(_):
            return c.post("/v1/score", files={"file": ("a.wav", _wav(), "audio/wav")}).status_code

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(post, range(6)))
    assert statuses == [200] * 6  # waiting is not refusing
    assert state["most"] == slots


def test_max_concurrent_must_be_a_positive_integer(model_dir):
    for bad in (0, -1, 1.5):
        with pytest.raises(CheckpointError, match="max_concurrent"):
            create_app(model_dir, max_concurrent=bad)


def _asgi_post(app, messages: list[dict], *, stay_connected: bool = False) -> tuple[dict, dict]:
    """POST /v1/score straight through ASGI: ``messages`` are what the client delivers, in order; then it
    disconnects, or (``stay_connected``) waits for the answer as a live client does. -> (response start, JSON)."""
    import asyncio
    import json

    scope = score_post_scope(BOUNDARY)
    inbox, sent = list(messages), []

    async def receive():
        if inbox:
            return inbox.pop(0)
        if stay_connected:
            await asyncio.Event().wait()  # blocks until cancelled: the connection stays open
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def run():
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    reply = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start, json.loads(reply)


def _never_score(*_a, **_k):
    raise AssertionError("nothing is scored for a client that is gone")


def test_a_client_gone_during_the_upload_ends_its_request_without_a_traceback(model_dir, monkeypatch):
    # Starlette's ClientDisconnect reached uvicorn, which logged "Exception in ASGI application" each time
    from sddkit.service import app as service

    monkeypatch.setattr(service, "_score_bytes", _never_score)
    app = create_app(model_dir, max_upload_mb=MAX_MB, max_duration_s=2.0)
    half = (_part(_wav()) + _close())[:200]
    start, reply = _asgi_post(app, [{"type": "http.request", "body": half, "more_body": True}])
    assert start["status"] == 499 and reply["error"]["type"] == "client_closed_request"


def test_a_client_gone_before_its_slot_is_not_scored(model_dir, monkeypatch):
    # abandoned requests were decoded and scored anyway, holding the --max-concurrent slots
    from sddkit.service import app as service

    monkeypatch.setattr(service, "_score_bytes", _never_score)
    app = create_app(model_dir, max_upload_mb=MAX_MB, max_duration_s=2.0)
    whole = _part(_wav()) + _close()
    start, reply = _asgi_post(app, [{"type": "http.request", "body": whole, "more_body": False}])
    assert start["status"] == 499 and "before its file was scored" in reply["error"]["message"]


def test_a_client_still_connected_is_scored(model_dir):
    app = create_app(model_dir, max_upload_mb=MAX_MB, max_duration_s=2.0)
    whole = _part(_wav()) + _close()
    start, reply = _asgi_post(app, [{"type": "http.request", "body": whole, "more_body": False}], stay_connected=True)
    assert start["status"] == 200 and reply["decision"] in ("bonafide", "spoof")
