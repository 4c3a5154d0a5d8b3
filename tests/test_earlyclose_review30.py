"""Review 30 of the answers the HTTP service sends before it has read a request's body, as clients uploading audio
meet them over real connections.

Only the 413 over the limit closed the connection. A 415 (not multipart), a 404 or 405 to an upload (a mistyped path
or method) and a not_ready 503 kept it: uvicorn read the refused body on to discard it (all 256 MB of one), then
closed the connection all the same once the request-head deadline ran out, and a client that had sent
``Expect: 100-continue`` and no body had its next request read as that body, never answered. A 408 (an upload that
stalled) kept the connection open with the rest of the body still due. Each now says ``Connection: close``, as the
413 does; an answer to a request without a body, or sent once the body was read, keeps the connection. The not_ready
503 said "not loaded yet" where the model never comes (the app's lifespan never ran) and the same once stopped.
"""

from __future__ import annotations

import contextlib
import socket

import pytest
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn
from test_service import start_uvicorn
from test_servicelimits_review30 import _BOUNDARY, _HANG_GUARD_S, _head, _read_to_close, _served, _split

import sddkit.service.app as service
from sddkit.service.app import create_app
from sddkit.service.server import uvicorn_config

DECLARED = 256 * 1024 * 1024  # far more than the socket buffers of both ends hold


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("earlyclose") / "lcnn")


def _upload_all(port: int, head: bytes) -> tuple[int, bytes, bool]:
    """Send ``head``, then its body of :data:`DECLARED` bytes before reading the answer, as httpx and requests do: the
    bytes sent, the answer, and whether the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
        sock.sendall(head)
        sent, chunk = 0, b"\0" * 65536
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < DECLARED:
                sock.sendall(chunk)
                sent += len(chunk)
        answer, closed = _read_to_close(sock)
    return sent, answer, closed


def _post_head(path: str, content_type: str, extra: str = "", length: int = DECLARED) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n{extra}"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def _answers(sock: socket.socket, count: int) -> list[tuple[str, dict[str, str], dict]]:
    """``count`` answers read off ``sock`` (each with a Content-Length, as the service's JSON answers have)."""
    sock.settimeout(_HANG_GUARD_S)
    buffer, found = b"", []
    while len(found) < count:
        head, sep, rest = buffer.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            if len(rest) >= length:
                found.append(_split(head + sep + rest[:length]))
                buffer = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"the connection was closed after {len(found)} answer(s)"
        buffer += chunk
    return found


def test_a_415_closes_the_connection_so_the_refused_upload_stops(model_dir):
    app = create_app(model_dir, max_upload_mb=0.25)
    with _served(app) as port:
        # audio posted raw (curl --data-binary @a.wav -H 'Content-Type: audio/wav'), far over the limit
        sent, answer, closed = _upload_all(port, _post_head("/v1/score", "audio/wav"))
        # before: the server read all 256 MB, answered without Connection: close, and held the connection
        assert sent < DECLARED
        assert closed
        status, headers, body = _split(answer)
        assert status.startswith("HTTP/1.1 415") and headers["connection"] == "close"
        assert body["error"]["type"] == "unsupported_media_type"
        # with Expect: 100-continue the body is never asked for, and the connection is not left waiting for it: before,
        # the client's next request on it was read as the refused body's bytes and never answered
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            sock.sendall(_post_head("/v1/score", "audio/wav", "Expect: 100-continue\r\n", length=100))
            answer, closed = _read_to_close(sock)
        assert closed and b"100 Continue" not in answer
        status, headers, _ = _split(answer)
        assert status.startswith("HTTP/1.1 415") and headers["connection"] == "close"


def test_a_404_or_405_to_an_upload_closes_and_answers_to_requests_without_a_body_keep_the_connection(model_dir):
    app = create_app(model_dir, max_upload_mb=0.25)
    multipart = f"multipart/form-data; boundary={_BOUNDARY}"
    with _served(app) as port:
        for path, code in (("/v1/scores", 404), ("/v1/model", 405), ("/static/app.js", 405)):
            sent, answer, closed = _upload_all(port, _post_head(path, multipart))
            assert sent < DECLARED, path
            assert closed, path
            status, headers, body = _split(answer)
            assert status.startswith(f"HTTP/1.1 {code}") and headers["connection"] == "close", path
            if code == 405:
                assert "GET" in headers["allow"]
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            # a 404 to a GET, and a 422 sent once the (small) body was read in full: the connection serves on
            empty_form = f"--{_BOUNDARY}--\r\n".encode()
            sock.sendall(b"GET /v1/nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.sendall(_post_head("/v1/score", multipart, length=len(empty_form)) + empty_form)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            (missing, head_404, _), (invalid, head_422, body_422), (ok, _, health) = _answers(sock, 3)
        assert missing.startswith("HTTP/1.1 404") and "connection" not in head_404
        assert invalid.startswith("HTTP/1.1 422") and "connection" not in head_422
        assert body_422["error"]["type"] == "missing_field"
        assert ok.startswith("HTTP/1.1 200") and health["status"] == "ok"


def test_a_408_closes_the_connection_instead_of_waiting_for_the_rest_of_the_body(model_dir, monkeypatch):
    monkeypatch.setattr(service, "UPLOAD_IDLE_S", 0.5)  # the stall it answers 408 (60 s in service)
    app = create_app(model_dir)
    with _served(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            sock.sendall(_head(1000) + f"--{_BOUNDARY}\r\n".encode())  # then nothing: the upload stalls
            answer, closed = _read_to_close(sock)
    # before: the 408 came without Connection: close, and the connection stayed open for the 985 bytes still due
    assert closed
    status, headers, body = _split(answer)
    assert status.startswith("HTTP/1.1 408") and headers["connection"] == "close"
    assert body["error"]["type"] == "request_timeout"


def test_not_ready_closes_a_refused_upload_and_says_why_the_model_is_missing(model_dir):
    app = create_app(model_dir, max_upload_mb=0.25)

    def without_lifespan(port: int):  # as uvicorn --lifespan off serves it (or a parent app it is mounted in)
        config = uvicorn_config(app, port=port, head_timeout_s=600.0, keep_alive_s=600.0, log_level="error")
        config.lifespan = "off"
        return config

    server, thread, port = start_uvicorn(app, without_lifespan)
    try:
        sent, answer, closed = _upload_all(port, _post_head("/v1/score", f"multipart/form-data; boundary={_BOUNDARY}"))
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            sock.sendall(b"GET /v1/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            (model_status, model_headers, model_body), (health_status, _, health) = _answers(sock, 2)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    # before: the upload was read in full (256 MB) to be refused, and the connection kept
    assert sent < DECLARED
    assert closed
    status, headers, body = _split(answer)
    assert status.startswith("HTTP/1.1 503") and headers["connection"] == "close"
    assert body["error"]["type"] == "not_ready"
    # the model never comes without the lifespan: no Retry-After, and a message that says why ("not loaded yet" did not)
    assert "retry-after" not in headers
    assert "lifespan" in body["error"]["message"] and "yet" not in body["error"]["message"]
    # a GET has no body to refuse: its 503 keeps the connection
    assert model_status.startswith("HTTP/1.1 503") and "connection" not in model_headers
    assert model_body["error"]["type"] == "not_ready" and "retry-after" not in model_headers
    assert health_status.startswith("HTTP/1.1 503") and health == {"status": "starting", "model_loaded": False}
    # once the lifespan has ended the service has stopped: said so, and the connection is not kept for a next request
    with TestClient(create_app(model_dir)) as client:
        assert client.get("/v1/model").status_code == 200
    stopped = client.get("/v1/model")
    assert stopped.status_code == 503 and stopped.json()["error"]["type"] == "not_ready"
    assert "the service has stopped" in stopped.json()["error"]["message"]
    assert stopped.headers["connection"] == "close" and "retry-after" not in stopped.headers
