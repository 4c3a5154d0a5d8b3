"""Operating `sdd serve`: what its log says of each scoring request, and how it stops.

- A 500 from the model (``checkpoint_error``, ``non_finite_score``) left only uvicorn's access line, "POST /v1/score
  500 Internal Server Error", in the server's log: the reason was in the client's JSON alone. A scored upload's size
  and time were logged nowhere, and a client gone mid-upload left no line at all.
- On a first Ctrl-C or SIGTERM the server waits for the requests in progress, an upload still arriving included (up
  to its 408: a minute for a stalled one). A second SIGTERM was ignored (docs/cli.md: "A second SIGTERM ends the
  process at once"), and a second Ctrl-C cancelled the requests with a traceback each and a text/plain 500.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from scoring_support import save_tiny_lcnn
from test_service import _wav_bytes, start_uvicorn

from sddkit.service.app import create_app
from sddkit.service.server import uvicorn_config

SR = 16000
_CHILD = "import sys\nfrom sddkit.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
_HANG_GUARD_S = 120.0  # far above anything here: only there so that a server that never answers fails the test


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("servicelife") / "lcnn")


def _wav(seconds: float = 0.6) -> bytes:
    return _wav_bytes(seconds)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def wait_for(self, needle: str) -> logging.LogRecord:
        deadline = time.monotonic() + _HANG_GUARD_S
        while time.monotonic() < deadline:
            found = [r for r in list(self.records) if needle in r.getMessage()]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no log line with {needle!r}: {[r.getMessage() for r in self.records]}")


@contextlib.contextmanager
def _served(app, log_level: str = "info"):
    """``app`` served by uvicorn as `sdd serve` configures it: (port, the records of the service's own log)."""
    server, thread, port = start_uvicorn(app, lambda port: uvicorn_config(app, port=port, log_level=log_level))
    handler = _Records()
    logger = logging.getLogger("sddkit.service")
    logger.addHandler(handler)
    try:
        yield port, handler
    finally:
        logger.removeHandler(handler)
        server.should_exit = True
        thread.join(timeout=30)


def test_a_model_failure_is_logged_with_its_reason_not_only_as_a_500(model_dir, capsys):
    app = create_app(model_dir)
    with _served(app) as (port, log):
        det = app.state.detector
        good = det.runner
        url = f"http://127.0.0.1:{port}/v1/score"
        try:
            det.runner = lambda windows: (np.zeros((windows.shape[0], 3), np.float32), {})
            assert httpx.post(url, files={"file": ("a.wav", _wav())}, timeout=60).status_code == 500
            record = log.wait_for("checkpoint_error")
            assert record.levelno == logging.ERROR
            assert "POST /v1/score 500" in record.getMessage() and "logits of shape" in record.getMessage()
            det.runner = lambda windows: (np.full((windows.shape[0], 2), np.nan, np.float32), {})
            assert httpx.post(url, files={"file": ("b.wav", _wav())}, timeout=60).status_code == 500
            record = log.wait_for("non_finite_score")
            assert record.levelno == logging.ERROR and "b.wav: the model returned a non-finite score" in (
                record.getMessage()
            )
        finally:
            det.runner = good
    # printed as `sdd serve` prints it: to stderr, in uvicorn's format
    err = capsys.readouterr().err
    assert re.search(r"^ERROR: +127\.0\.0\.1:[0-9]+ - POST /v1/score 500: checkpoint_error: ", err, re.M), err


def test_each_scoring_request_is_logged_with_its_size_and_time_and_no_forged_lines(model_dir):
    with _served(create_app(model_dir)) as (port, log):
        data = _wav(0.6)
        ok = httpx.post(f"http://127.0.0.1:{port}/v1/score", files={"file": ("a.wav", data)}, timeout=60)
        assert ok.status_code == 200
        line = log.wait_for("scored 0.60 s of audio").getMessage()
        assert "POST /v1/score 200" in line and f"upload of {len(data)} bytes" in line
        assert re.search(r", [0-9]+\.[0-9]{3} s\)$", line), line  # the time it took, whatever it is
        # a client's file name goes into an error message: a terminal escape in it is written escaped
        sent = httpx.post(
            f"http://127.0.0.1:{port}/v1/score", files={"file": ("x\x1b[2Jy.wav", b"not audio" * 50)}, timeout=60
        )
        assert sent.status_code == 422
        record = log.wait_for("audio_decode_error")
        assert record.levelno == logging.INFO and "x\\x1b[2Jy.wav" in record.getMessage()
        assert "\x1b" not in record.getMessage()


def test_a_client_gone_mid_upload_is_logged_and_the_server_keeps_serving(model_dir):
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()
        + _wav(2.0)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    with _served(create_app(model_dir)) as (port, log):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + body[: len(body) // 2])
        # uvicorn writes no access line for a request whose client left before the answer
        assert log.wait_for("client_closed_request").levelno == logging.INFO
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_second_stop_signal_ends_sdd_serve_at_once(model_dir, sig):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    argv = [sys.executable, "-c", _CHILD, "serve", "--model", str(model_dir), "--port", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    seen: list[str] = []

    def wait_for(pattern: str) -> re.Match:
        while True:
            line = lines.get(timeout=_HANG_GUARD_S)
            seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    try:
        port = int(wait_for(r"sdd serve: http://127\.0\.0\.1:([0-9]+)/").group(1))
        deadline = time.monotonic() + _HANG_GUARD_S
        while True:  # uvicorn listens just after its "Application startup complete"
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200
                break
            except httpx.ConnectError:
                assert proc.poll() is None and time.monotonic() < deadline, "sdd serve did not start"
                time.sleep(0.05)
        # an upload that stalls: the first signal waits for it (its 408 comes a minute later)
        with socket.create_connection(("127.0.0.1", port), timeout=_HANG_GUARD_S) as stalled:
            stalled.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
            )
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200  # it is served
            proc.send_signal(sig)
            wait_for("Waiting for connections to close")  # the first signal: it waits for the stalled upload
            proc.send_signal(sig)
            # ended at once: the connection closed without an answer (it was a 408, a minute on; or, on a second
            # Ctrl-C, uvicorn's text/plain 500 after the request was cancelled)
            assert stalled.recv(65536) == b""
        assert proc.wait(timeout=_HANG_GUARD_S) == -sig
        reader.join(timeout=_HANG_GUARD_S)  # stderr read to its end
        while not lines.empty():
            seen.append(lines.get())
        text = "".join(seen)
        assert f"stopped at once by a second {signal.Signals(sig).name}" in text
        assert "Traceback" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_port_in_use_is_said_before_the_model_loads_and_a_failed_load_frees_its_port(monkeypatch, capsys, tmp_path):
    """The port was bound after the model had loaded (seconds with the bundled model): a port in use was said only
    then. Now it is said first, and a model that fails to load leaves the port it had bound free."""
    import socket as socket_module

    import sddkit.service.app as app_module
    from sddkit.cli.main import main

    busy = socket_module.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    loads = []
    monkeypatch.setattr(app_module, "create_app", lambda *a, **k: loads.append(1))
    try:
        assert main(["serve", "--host", "127.0.0.1", "--port", str(port)]) == 2
    finally:
        busy.close()
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err and not loads

    def unloadable(*_a, **_k):
        from sddkit.errors import CheckpointError

        raise CheckpointError("no model here")

    monkeypatch.setattr(app_module, "create_app", unloadable)
    assert main(["serve", "--host", "127.0.0.1", "--port", str(port)]) == 2
    assert "no model here" in capsys.readouterr().err
    again = socket_module.socket()
    try:
        again.bind(("127.0.0.1", port))  # free again: the failed start closed its socket
    finally:
        again.close()
