"""Third review of the HTTP service: what a 500 tells the client, and the address `sdd serve` listens on."""

from __future__ import annotations

import io
import socket

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn

from sddkit.service.app import create_app

SR = 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("svc3") / "lcnn")


def _wav(seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    sf.write(
        buf, (0.1 * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32), SR, format="WAV"
    )
    return buf.getvalue()


def test_an_unexpected_server_error_does_not_tell_the_client_its_text(model_dir, monkeypatch):
    """Any exception without a handler of its own was answered 500 with its text: an OSError's message names a
    file of the server (here a model cache), which a client must not learn. The type stays, the traceback goes
    to the server's log (Starlette re-raises the exception to the server after the answer)."""
    from sddkit.service import app as service

    secret = "/srv/private/models/cache.bin"

    def failing(*_a, **_k):
        raise PermissionError(13, "Permission denied", secret)

    monkeypatch.setattr(service, "_score_bytes", failing)
    with TestClient(create_app(model_dir), raise_server_exceptions=False) as client:
        resp = client.post("/v1/score", files={"file": ("a.wav", _wav(), "audio/wav")})
        assert resp.status_code == 500
        body = resp.json()
        assert set(body) == {"error"} and body["error"]["type"] == "internal_error"
        message = body["error"]["message"]
        assert "PermissionError" in message and secret not in message and "Permission denied" not in message
        assert client.get("/healthz").status_code == 200  # and the server keeps serving


def test_a_host_name_with_ipv4_and_ipv6_addresses_listens_on_ipv4_as_uvicorn_does(monkeypatch):
    """`sdd serve --host localhost` bound the first address getaddrinfo listed: where localhost is also ::1
    (Docker containers, Fedora, macOS) that comes first, so the service listened on [::1] only and
    http://127.0.0.1:PORT/ was refused. uvicorn, which bound the socket before, binds IPv4 unless the host is
    an IPv6 address."""
    from sddkit.cli import serve_cmd

    real = socket.getaddrinfo

    def dual_stack(host, port, *args, **kwargs):
        if host != "localhost":
            return real(host, port, *args, **kwargs)
        v6 = (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::1", port, 0, 0))
        v4 = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))
        return [v6, v4]  # the order glibc sorts them in (RFC 6724: ::1 before 127.0.0.1)

    monkeypatch.setattr(serve_cmd.socket, "getaddrinfo", dual_stack)
    sock = serve_cmd.listen_socket("localhost", 0)
    try:
        assert sock.family == socket.AF_INET and sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()
