"""Review tests (session 48, helper servicepage): the web page of `sdd serve` and what its log says of a client gone.

- GET /v1/model carries ``source_changed`` (an ONNX export whose model directory was recalibrated or retrained since:
  it scores as that model did at export), which `sdd serve` prints in its terminal; the web page at ``/`` showed the
  model as if all was well. It now shows the warning, and nothing for a model without one.
- A client that pipelined a second request behind its upload and hung up while the upload was scored was logged
  "200: scored" (uvicorn stops reading such a connection, so it never saw it close): it is logged 499
  ``client_closed_request``, for a closed connection and a reset one alike.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
import urllib.request

import pytest
from scoring_support import save_tiny_lcnn
from test_exportpath_review28 import _recalibrate
from test_service import _uvicorn, _wav_bytes, start_uvicorn
from test_servicelife_review28 import _Records
from test_web_page import _chrome, _ensure_chromium

from sddkit.scoring.onnx_export import StaleExportWarning, export_onnx
from sddkit.service.app import create_app
from sddkit.service.server import uvicorn_config

_HANG_GUARD_S = 120.0  # far above anything here: only there so that a server that never answers fails the test


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("servicepage") / "lcnn")


def _stale_export_app(tiny_stats, tmp_path):
    """An app serving an ONNX export whose model directory was recalibrated since, and its ``source_changed``."""
    source = tiny_stats(tmp_path / "m")
    exported = tmp_path / "deploy.onnx"
    export_onnx(source, exported)
    _recalibrate(source)
    with pytest.warns(StaleExportWarning) as caught:
        app = create_app(exported, backend="onnx")
    return app, str(caught[0].message)


def _page_warning(drv, url: str) -> tuple[bool, str]:
    """Whether the page at ``url`` shows its model warning, and its text, once the model description is in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(url)
    WebDriverWait(drv, 60).until(lambda d: "calibration" in d.find_element(By.ID, "model-info").text)
    warning = drv.find_element(By.ID, "model-warning")
    return warning.is_displayed(), warning.get_attribute("textContent")


def test_the_page_warns_of_a_stale_export_and_says_nothing_for_a_fresh_model(tiny_stats, tmp_path, monkeypatch):
    # before: `sdd serve --backend onnx` of a stale export printed the warning in its terminal, and GET /v1/model
    # answered it; the page showed the model's name, calibration and threshold without a word of it
    _ensure_chromium()
    stale_app, stale = _stale_export_app(tiny_stats, tmp_path)
    with _uvicorn(stale_app) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as page:  # the element is there, hidden until told
            assert 'id="model-warning"' in page.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model") as answer:
            assert stale in answer.read().decode()
        drv = _chrome(tmp_path, monkeypatch)
        try:
            shown, text = _page_warning(drv, f"http://127.0.0.1:{port}/")
            assert shown and stale in text and "sdd export-onnx" in text and "stale" in text.lower()
            with _uvicorn(create_app(save_tiny_lcnn(tmp_path / "fresh"))) as fresh:  # source_changed null
                assert _page_warning(drv, f"http://127.0.0.1:{fresh}/") == (False, "")
        finally:
            drv.quit()


def _score_request(data: bytes) -> bytes:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="gone.wav"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    return head + body


_SECOND = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
_LAST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + _HANG_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(_HANG_GUARD_S)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("hang_up", ["close", "reset"])
def test_a_client_that_pipelined_a_request_and_hung_up_is_logged_499(model_dir, hang_up):
    # before: "POST /v1/score 200: scored 0.60 s of audio: ..." for an answer nobody received: uvicorn stops reading
    # a connection once a second request has come in behind the first, so it never saw the client go
    app = create_app(model_dir, max_concurrent=1)
    server, thread, port = start_uvicorn(app, lambda port: uvicorn_config(app, port=port))
    log = _Records()
    logger = logging.getLogger("sddkit.service")
    logger.addHandler(log)
    det = app.state.detector
    good = det.runner
    entered, release = threading.Semaphore(0), threading.Event()

    def held(windows):  # the upload is being scored until the test lets it finish
        entered.release()
        assert release.wait(_HANG_GUARD_S)
        return good(windows)

    def reading_paused() -> bool:  # uvicorn has the pipelined request, and reads no more of the connection
        return all(p.flow.read_paused for p in list(server.server_state.connections))

    try:
        # a pipelining client that stays is answered both requests, as before
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(_score_request(_wav_bytes(0.6)) + _LAST)
            answers = _read_all(sock)
        assert answers.startswith(b"HTTP/1.1 200 ") and b'"decision"' in answers
        assert answers.count(b"HTTP/1.1 200 ") == 2 and answers.endswith(b'{"status":"ok","model_loaded":true}')
        det.runner = held
        with contextlib.closing(socket.create_connection(("127.0.0.1", port))) as gone:
            gone.sendall(_score_request(_wav_bytes(0.6, seed=1)))
            assert entered.acquire(timeout=_HANG_GUARD_S)  # being scored
            gone.sendall(_SECOND)
            _wait(reading_paused, "uvicorn never took the pipelined request")
            if hang_up == "reset":  # a reset, not an orderly close: what a killed client with unread data sends
                gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        release.set()
        # the connection is closed, not held open (counted against --limit-connections) with its pipelined request;
        # its outcome is logged before that
        _wait(lambda: not server.server_state.connections, "the gone client's connection stayed open")
        lines = [r.getMessage() for r in log.records if "POST /v1/score" in r.getMessage()]
        assert len(lines) == 2 and "POST /v1/score 200: scored" in lines[0]  # the pipelining client's that stayed
        assert "POST /v1/score 499: client_closed_request" in lines[1], lines[1]
        assert "while its file was scored" in lines[1] and "not sent" in lines[1]
        assert log.records[-1].levelno == logging.INFO
        det.runner = good
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60) as health:
            assert health.status == 200
    finally:
        release.set()
        det.runner = good
        logger.removeHandler(log)
        server.should_exit = True
        thread.join(timeout=30)
