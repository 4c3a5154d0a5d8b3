"""Review 30 of the HTTP service's limits, as clients that retry and upload large files meet them.

- A 413 answered from Content-Length, before the body was read, left the connection open: uvicorn read the whole
  refused body to discard it, so a client that sends everything before reading its answer uploaded it all for nothing
  (holding the connection meanwhile), and one that had sent "Expect: 100-continue" and no body had its connection
  held with its next request due to be read as the refused body. The 413 now says ``Connection: close`` and the
  connection is closed once it is written.
- The JSON 503 past ``--limit-connections`` had no Retry-After, so a client's retry loop tried again at once.
- A file input left empty (``filename=""``, no bytes) read as "file is empty (0 bytes)", and a file whose empty name
  httpx left out as "its part has no filename=", neither saying what was wrong.
"""

from __future__ import annotations

import contextlib
import json
import socket

import httpx
import pytest
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn
from test_service import _wav_bytes, start_uvicorn

from sddkit.service.app import OVER_LIMIT_RETRY_AFTER_S, create_app
from sddkit.service.server import uvicorn_config

MAX_MB = 0.25  # the limit plus the envelope is 320 KiB: every body below is far over it
_HANG_GUARD_S = 60.0  # far above anything here: only there so that a connection left open fails the test
_BOUNDARY = "b0undary"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("servicelimits") / "lcnn")


@contextlib.contextmanager
def _served(app, **config):
    """``app`` served as `sdd serve` serves it, with idle deadlines far away (none of them may end a connection
    here: only the server's own close can), on a free loopback port."""
    config = {"head_timeout_s": 600.0, "keep_alive_s": 600.0, "log_level": "error", **config}
    server, thread, port = start_uvicorn(app, lambda port: uvicorn_config(app, port=port, **config))
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _head(length: int, extra: str = "") -> bytes:
    return (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n{extra}"
        f"Content-Type: multipart/form-data; boundary={_BOUNDARY}\r\n\r\n"
    ).encode()


def _read_to_close(sock: socket.socket) -> tuple[bytes, bool]:
    """What the server sent, and whether it closed the connection (an end of stream or a reset after it), rather than
    leaving it open until the guard ran out."""
    sock.settimeout(_HANG_GUARD_S)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        return answer, True
    except TimeoutError:
        return answer, False
    return answer, True


def _split(answer: bytes) -> tuple[str, dict[str, str], dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    return status, headers, json.loads(body)


def test_a_413_closes_the_connection_so_a_client_stops_uploading_the_refused_body(model_dir):
    app = create_app(model_dir, max_upload_mb=MAX_MB)
    declared = 256 * 1024 * 1024  # far more than the socket buffers of both ends hold
    with _served(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            sock.sendall(_head(declared))
            sent, chunk = 0, b"\0" * 65536
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while sent < declared:  # as a client that sends its whole body before reading the answer does
                    sock.sendall(chunk)
                    sent += len(chunk)
            answer, closed = _read_to_close(sock)
        # the server stopped taking the body: before, it read (and dropped) all 256 MB, then kept the connection
        assert sent < declared
        assert closed
        status, headers, body = _split(answer)
        assert status.startswith("HTTP/1.1 413")
        assert headers["connection"] == "close"
        assert body["error"]["type"] == "payload_too_large"
        # a client library that sends first and reads after (httpx) reads the 413, and its next request on the same
        # client gets a fresh connection
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=_HANG_GUARD_S) as client:
            big = client.post("/v1/score", files={"file": ("big.wav", b"\0" * (16 * 1024 * 1024), "audio/wav")})
            assert big.status_code == 413 and big.json()["error"]["type"] == "payload_too_large"
            assert big.headers["connection"] == "close"
            ok = client.post("/v1/score", files={"file": ("a.wav", _wav_bytes(0.6), "audio/wav")})
            assert ok.status_code == 200 and ok.json()["n_windows"] >= 1
            # a file over the limit in a body read in full (within the envelope's room) leaves nothing unread: that
            # 413 keeps the connection
            over = client.post("/v1/score", files={"file": ("a.wav", b"\0" * (int(MAX_MB * 1024 * 1024) + 10))})
            assert over.status_code == 413 and "connection" not in over.headers


def test_an_expect_100_continue_upload_gets_its_413_without_sending_the_body_and_a_closed_connection(model_dir):
    app = create_app(model_dir, max_upload_mb=MAX_MB)
    with _served(app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            sock.sendall(_head(8 * 1024 * 1024, "Expect: 100-continue\r\n"))
            answer, closed = _read_to_close(sock)  # nothing of the body sent
        # before: the 413 came, but the connection stayed open for the 8 MB the server still meant to read
        assert closed
        assert b"100 Continue" not in answer  # never asked for the body it refuses
        status, headers, body = _split(answer)
        assert status.startswith("HTTP/1.1 413") and headers["connection"] == "close"
        assert body["error"]["type"] == "payload_too_large"
        # a chunked body has no length to refuse at once: refused once past the cap, and closed the same way
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as sock:
            sock.sendall(
                (
                    "POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                    f"Content-Type: multipart/form-data; boundary={_BOUNDARY}\r\n\r\n"
                ).encode()
            )
            piece = b"\0" * 65536
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(8):  # 512 KiB, past the 320 KiB cap, and no final chunk: the body never ends
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            answer, closed = _read_to_close(sock)
        assert closed
        status, headers, _ = _split(answer)
        assert status.startswith("HTTP/1.1 413") and headers["connection"] == "close"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=_HANG_GUARD_S).status_code == 200


def test_the_503_past_limit_connections_says_when_to_retry(model_dir):
    app = create_app(model_dir)
    with _served(app, limit_connections=1) as port:  # the request's own connection reaches the limit
        busy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=_HANG_GUARD_S)
    assert busy.status_code == 503 and busy.json()["error"]["type"] == "service_unavailable"
    assert busy.headers["retry-after"] == str(OVER_LIMIT_RETRY_AFTER_S)
    assert OVER_LIMIT_RETRY_AFTER_S >= 1  # delay-seconds: a non-negative integer; 0 would ask for the same burst
    assert f"retry after {OVER_LIMIT_RETRY_AFTER_S} s" in busy.json()["error"]["message"]
    described = app.openapi()["paths"]["/v1/score"]["post"]["responses"]["503"]["description"]
    assert "Retry-After" in described


def _multipart(part_headers: str, data: bytes) -> bytes:
    return f"--{_BOUNDARY}\r\n{part_headers}\r\n\r\n".encode() + data + f"\r\n--{_BOUNDARY}--\r\n".encode()


def test_a_form_without_a_chosen_file_and_a_file_without_a_name_are_said_to_be_so(model_dir):
    with TestClient(create_app(model_dir, max_upload_mb=MAX_MB)) as client:
        # a browser's form whose file input 'file' was left empty: before, 422 empty_audio_error "file is empty"
        empty = client.post(
            "/v1/score",
            content=_multipart(
                'Content-Disposition: form-data; name="file"; filename=""\r\nContent-Type: application/octet-stream',
                b"",
            ),
            headers={"content-type": f"multipart/form-data; boundary={_BOUNDARY}"},
        )
        # httpx leaves an empty file name out: the part, with its Content-Type, is a text field
        unnamed = client.post("/v1/score", files={"file": ("", _wav_bytes(0.6), "audio/wav")})
        # curl -F 'file=<a.wav': a text field indeed, still said so
        text = client.post(
            "/v1/score",
            content=_multipart('Content-Disposition: form-data; name="file"', b"RIFF...."),
            headers={"content-type": f"multipart/form-data; boundary={_BOUNDARY}"},
        )
        # a named file, empty: still the audio's own error
        named = client.post("/v1/score", files={"file": ("a.wav", b"", "audio/wav")})
    assert empty.status_code == 422 and empty.json()["error"]["type"] == "missing_field"
    assert "no file was chosen" in empty.json()["error"]["message"]
    assert "file is empty" not in empty.json()["error"]["message"]
    assert unnamed.status_code == 422 and unnamed.json()["error"]["type"] == "missing_field"
    message = unnamed.json()["error"]["message"]
    assert "Content-Type (audio/wav)" in message and "no file name" in message
    assert "its part has no filename=" not in message
    assert text.status_code == 422 and "its part has no filename=" in text.json()["error"]["message"]
    assert named.status_code == 422 and named.json()["error"]["type"] == "empty_audio_error"
