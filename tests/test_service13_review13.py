"""Review 13 of the HTTP service: idle connections against ``--limit-connections``, and opt-in CORS."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from scoring_support import noise_wav_bytes as _wav
from scoring_support import save_tiny_lcnn

from sddkit.cli.main import main
from sddkit.errors import ConfigError
from sddkit.service import app as service
from sddkit.service.app import create_app

APP = "https://app.example.com"
OTHER = "https://evil.example.net"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("svc13") / "lcnn")


@contextlib.contextmanager
def _sdd_serve(monkeypatch, *args: str):
    """``sdd serve *args`` on a free loopback port, its uvicorn server run in a background thread: (server, port)."""
    started: list = []
    real_run = uvicorn.Server.run
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: started.append((self, sockets)))
    assert main(["serve", "--port", "0", "--log-level", "error", *args]) == 0
    server, sockets = started[-1]
    thread = threading.Thread(target=real_run, args=(server, sockets), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield server, sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _closed_by_server(sock: socket.socket, timeout: float = 20.0) -> bool:
    """Whether the server closes ``sock`` (reading what it sends first) within ``timeout``: a generous bound, far
    above the short timeouts the tests configure, only there so that a server that never closes fails the test."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


class _Responses:
    """Whole responses (each with a Content-Length) read one by one from ``sock``. Bytes past one response are kept
    for the next: pipelined answers may arrive in one recv (a reader that dropped them then waited for the second
    answer, which it had already read, and spun on the closed socket for ever)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.data = sock, b""
        sock.settimeout(20)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection; unanswered bytes: {self.data[:200]!r}")
        self.data += chunk

    def next(self) -> bytes:
        while b"\r\n\r\n" not in self.data:
            self._more()
        head, _, rest = self.data.partition(b"\r\n\r\n")
        length = int(
            next(v for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k.lower() == b"content-length")
        )
        while len(rest) < length:
            self._more()
            head, _, rest = self.data.partition(b"\r\n\r\n")
        self.data = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]


def test_silent_and_half_sent_connections_are_closed_so_they_cannot_hold_the_connection_limit(monkeypatch, model_dir):
    """uvicorn counts every open connection against --limit-connections and had no deadline for a request head: N - 1
    clients that connected and sent nothing (or half a request head) answered every other client 503 for as long as
    they kept their sockets, without a timeout. The service now closes them (after 10 s; 0.5 s here), and a
    kept-alive idle connection after its keep-alive time."""
    monkeypatch.setattr(service, "REQUEST_HEAD_TIMEOUT_S", 0.5, raising=False)
    monkeypatch.setattr(service, "KEEP_ALIVE_S", 0.5, raising=False)
    args = ["--model", str(model_dir), "--max-concurrent", "1", "--limit-connections", "3"]
    with _sdd_serve(monkeypatch, *args) as (server, port):
        assert server.config.limit_concurrency == 3
        url = f"http://127.0.0.1:{port}/healthz"
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _Responses(kept).next().startswith(b"HTTP/1.1 200")
        silent = socket.create_connection(("127.0.0.1", port))
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        idle = [kept, silent, half]
        try:
            # answered, not left hanging: a 503 while the idle ones still count (as the README says), or a 200 once
            # one of them is gone
            assert httpx.get(url, timeout=20).status_code in (200, 503)
            assert all(_closed_by_server(sock) for sock in idle)
            assert httpx.get(url, timeout=20).status_code == 200
        finally:
            for sock in idle:
                sock.close()


def test_the_head_deadline_spares_requests_under_way_kept_alive_and_pipelined(model_dir):
    """The deadline is for the request head: an upload whose body comes for longer than it, the next request on a
    kept-alive connection and pipelined requests are all answered."""
    from sddkit.service.server import uvicorn_config

    app = create_app(model_dir, max_upload_mb=1, max_duration_s=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn_config(app, port=port, log_level="error", head_timeout_s=0.3, keep_alive_s=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.05)
        boundary = "b0undary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                "Content-Type: audio/wav\r\n\r\n"
            ).encode()
            + _wav(seconds=1.0)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            responses = _Responses(sock)
            sock.sendall(head)
            for i in range(4):  # the body comes over about a second, three times the head deadline
                time.sleep(0.3)
                sock.sendall(body[i * len(body) // 4 : (i + 1) * len(body) // 4])
            answer = responses.next()
            assert answer.startswith(b"HTTP/1.1 200") and b'"filename":"a.wav"' in answer
            time.sleep(0.1)  # within the keep-alive time, under the head deadline: the same connection serves on
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert responses.next().startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/model HTTP/1.1\r\nHost: x\r\n\r\n")
            assert responses.next().startswith(b"HTTP/1.1 200")
            second = responses.next()
            assert second.startswith(b"HTTP/1.1 200") and b'"weights_digest"' in second
            # then idle, with no next head: closed after the head deadline, long before the 5 s keep-alive
            assert _closed_by_server(sock, timeout=4)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_serve_help_states_the_idle_timeouts_it_applies(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = "".join(capsys.readouterr().out.split())  # without spaces: argparse wraps lines at hyphens too
    assert f"within{service.REQUEST_HEAD_TIMEOUT_S:g}s" in text
    assert f"akept-aliveone{service.KEEP_ALIVE_S:g}safter" in text


def _preflight(client: TestClient, origin: str, path: str = "/v1/score"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST"})


def test_cors_is_off_by_default(model_dir):
    with TestClient(create_app(model_dir)) as client:
        answer = _preflight(client, APP)
        assert answer.status_code == 405 and "access-control-allow-origin" not in answer.headers
        ok = client.get("/healthz", headers={"Origin": APP})
        assert ok.status_code == 200 and "access-control-allow-origin" not in ok.headers


def test_cors_origins_given_to_sdd_serve_may_call_the_service_others_not(monkeypatch, model_dir):
    """``--cors-origin`` (repeatable): a page of a listed origin may POST /v1/score from a browser (its preflight is
    allowed, and the answers, errors too, carry Access-Control-Allow-Origin); a page of any other origin may not."""
    started: list = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: started.append(self))
    args = ["serve", "--model", str(model_dir), "--port", "0", "--cors-origin", APP]
    assert main([*args, "--cors-origin", "http://localhost:3000"]) == 0
    with TestClient(started[-1].config.app) as client:
        for origin in (APP, "http://localhost:3000"):
            allowed = _preflight(client, origin)
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == origin
            assert "POST" in allowed.headers["access-control-allow-methods"]
        refused = _preflight(client, OTHER)
        assert "access-control-allow-origin" not in refused.headers
        files = {"file": ("a.wav", _wav(seconds=1.0), "audio/wav")}
        scored = client.post("/v1/score", files=files, headers={"Origin": APP})
        assert scored.status_code == 200 and scored.headers["access-control-allow-origin"] == APP
        error = client.post("/v1/score", content=b"x", headers={"Origin": APP, "Content-Type": "text/plain"})
        assert error.status_code == 415 and error.headers["access-control-allow-origin"] == APP
        other = client.post("/v1/score", files=files, headers={"Origin": OTHER})
        assert "access-control-allow-origin" not in other.headers
        assert client.get("/v1/model", headers={"Origin": APP}).headers["access-control-allow-origin"] == APP


def test_cors_any_origin_only_when_asked_for(model_dir):
    with TestClient(create_app(model_dir, cors_origins=["*"])) as client:
        assert _preflight(client, OTHER).headers["access-control-allow-origin"] == "*"
    with TestClient(create_app(model_dir, cors_origins=APP)) as client:  # one origin given bare, not its characters
        assert _preflight(client, APP).headers["access-control-allow-origin"] == APP
        assert "access-control-allow-origin" not in _preflight(client, "h").headers


@pytest.mark.parametrize(
    "origin", [f"{APP}/", f"{APP}/page", "app.example.com", "HTTPS://APP.EXAMPLE.COM", "null", "", "ftp://x.example"]
)
def test_sdd_serve_refuses_a_cors_origin_no_browser_sends(origin, capsys, monkeypatch):
    """``https://app.example.com/`` (a trailing slash) matched no browser's Origin header: every page was refused
    without a word. Refused before the model loads, naming the flag and the form to give."""
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: pytest.fail("served"))
    assert main(["serve", "--model", "/no/such/model", "--port", "0", "--cors-origin", origin]) == 2
    err = capsys.readouterr().err
    assert f"--cors-origin {origin!r} is not an origin" in err and "scheme://host[:port]" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="cors_origins"):
        service.checked_cors_origins([origin])


def test_an_unexpected_500_is_readable_by_an_allowed_page(model_dir, monkeypatch):
    """Starlette answers an unhandled exception outside CORSMiddleware: the page read its JSON 500 as a network
    error. It carries the origin's header now, and still none for another origin."""

    def fail(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "_score_bytes", fail)
    files = {"file": ("a.wav", _wav(seconds=1.0), "audio/wav")}
    with TestClient(create_app(model_dir, cors_origins=[APP]), raise_server_exceptions=False) as client:
        answer = client.post("/v1/score", files=files, headers={"Origin": APP})
        assert answer.status_code == 500 and answer.json()["error"]["type"] == "internal_error"
        assert answer.headers["access-control-allow-origin"] == APP
        other = client.post("/v1/score", files=files, headers={"Origin": OTHER})
        assert other.status_code == 500 and "access-control-allow-origin" not in other.headers
    with TestClient(create_app(model_dir), raise_server_exceptions=False) as client:
        answer = client.post("/v1/score", files=files, headers={"Origin": APP})
        assert answer.status_code == 500 and "access-control-allow-origin" not in answer.headers
