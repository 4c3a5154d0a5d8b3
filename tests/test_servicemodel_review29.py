"""Review tests (session 47, helper servicemodel): what an operator of `sdd serve` reads in GET /v1/model and the log.

- GET /v1/model did not carry an ONNX export's ``source_changed`` (its model directory recalibrated or retrained
  since): `sdd serve` printed it once at start, from the loader's warning it caught, while `sdd score` read the
  detector's ``info["source_changed"]``. Both now read that record, and /v1/model answers it.
- GET /v1/model did not say how the server runs the model: device, batch size, threads, --limit-connections.
- A client gone while its file was scored was logged "200: scored ..." (uvicorn writes no access line for it).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn
from test_exportpath_review28 import _recalibrate
from test_service import _wav_bytes, start_uvicorn
from test_service26_review26 import _assert_described, _json_schema, _resolve
from test_servicelife_review28 import _Records

from sddkit.scoring.onnx_export import StaleExportWarning, export_onnx
from sddkit.service.app import create_app
from sddkit.service.server import uvicorn_config

_HANG_GUARD_S = 120.0  # far above anything here: only there so that a server that never answers fails the test


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("servicemodel") / "lcnn")


def _model_and_schema(client: TestClient) -> tuple[dict, dict, dict]:
    """GET /v1/model's answer, the OpenAPI document and its schema of that answer."""
    spec = client.get("/openapi.json").json()
    schema = _resolve(spec, _json_schema(spec["paths"]["/v1/model"]["get"]["responses"], "200"))
    return client.get("/v1/model").json(), spec, schema


def test_v1_model_says_how_the_server_runs_the_model(model_dir):
    app = create_app(model_dir, batch_size=3, max_concurrent=2)
    with TestClient(app) as client:
        model, spec, schema = _model_and_schema(client)
        assert model["server"] == {
            "device": "cpu",
            "batch_size": 3,
            "threads": torch.get_num_threads(),
            "limit_connections": None,  # not served by sdd serve's uvicorn: no limit known
        }
        assert model["source_changed"] is None  # a model directory: nothing stale to say
        # additive: the keys clients read are all still there
        assert {"threshold", "calibration", "limits", "outputs", "weights_digest", "sddkit_version"} <= set(model)
        assert model["limits"]["max_concurrent"] == 2
        _assert_described(spec, schema, model, "/v1/model")
        assert {"server", "source_changed"} <= set(schema["required"])
        # the limit uvicorn is given is the limit /v1/model names
        uvicorn_config(app, port=0, limit_connections=5)
        assert client.get("/v1/model").json()["server"]["limit_connections"] == 5


def test_sdd_serve_prints_the_stale_export_line_that_v1_model_answers(tiny_stats, tmp_path, capsys, monkeypatch):
    import uvicorn

    from sddkit.cli.main import main

    source = tiny_stats(tmp_path / "m")
    exported = tmp_path / "deploy.onnx"
    export_onnx(source, exported)
    _recalibrate(source)  # the model directory changed since the export: the export is stale
    served: dict = {}

    def run(self, sockets=None):  # loaded, announced and configured: enough
        served.update(app=self.config.app, sockets=sockets)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    argv = ["serve", "--backend", "onnx", "--model", str(exported), "--port", "0", "--allocator", "system"]
    assert main([*argv, "--batch-size", "4", "--max-concurrent", "2", "--limit-connections", "7"]) == 0
    for sock in served["sockets"]:
        sock.close()
    err = capsys.readouterr().err
    with TestClient(served["app"]) as client:
        model, spec, schema = _model_and_schema(client)
    stale = model["source_changed"]
    assert isinstance(stale, str) and f"{exported} was exported from {source}" in stale
    # one record, said once: the line sdd serve printed is what GET /v1/model answers
    assert err.count("sdd serve: warning: ") == 1 and f"sdd serve: warning: {stale}\n" in err
    assert "StaleExportWarning" not in err
    assert model["backend"] == "onnx"
    assert model["server"] == {
        "device": "cpu",
        "batch_size": 4,
        "threads": torch.get_num_threads(),
        "limit_connections": 7,
    }
    _assert_described(spec, schema, model, "/v1/model (onnx)")


def test_create_app_still_warns_of_a_stale_export_for_the_api_user(tiny_stats, tmp_path):
    model = tiny_stats(tmp_path / "m")
    exported = tmp_path / "deploy.onnx"
    export_onnx(model, exported)
    _recalibrate(model)
    with pytest.warns(StaleExportWarning) as caught:
        app = create_app(exported, backend="onnx")
    with TestClient(app) as client:
        assert client.get("/v1/model").json()["source_changed"] == str(caught[0].message)


def _raw_post(port: int, data: bytes) -> socket.socket:
    """A connection that has sent one whole POST /v1/score of ``data`` (the caller closes it)."""
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
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + body)
    return sock


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + _HANG_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_client_gone_while_its_file_is_scored_is_logged_499_and_the_other_is_answered(model_dir):
    # before: "POST /v1/score 200: scored 0.60 s of audio: ..." for an answer nobody received (uvicorn writes no
    # access line for it); a client scored at the same time, still connected, must get its answer as before
    app = create_app(model_dir, max_concurrent=2)
    server, thread, port = start_uvicorn(app, lambda port: uvicorn_config(app, port=port))
    log = _Records()
    logger = logging.getLogger("sddkit.service")
    logger.addHandler(log)
    det = app.state.detector
    good = det.runner
    entered, release = threading.Semaphore(0), threading.Event()

    def held(windows):  # both requests are in scoring at once, until the test lets them finish
        entered.release()
        assert release.wait(_HANG_GUARD_S)
        return good(windows)

    det.runner = held
    try:
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(ThreadPoolExecutor(1))
            live = pool.submit(
                lambda: httpx.post(
                    f"http://127.0.0.1:{port}/v1/score", files={"file": ("live.wav", _wav_bytes(0.6))}, timeout=60
                )
            )
            assert entered.acquire(timeout=_HANG_GUARD_S)
            gone = _raw_post(port, _wav_bytes(0.6, seed=1))
            assert entered.acquire(timeout=_HANG_GUARD_S)  # both are being scored now
            gone.close()
            # once uvicorn has seen the connection close (no timing: its own count of open connections)
            _wait(lambda: len(server.server_state.connections) == 1, "uvicorn never saw the client go")
            release.set()
            assert live.result().status_code == 200
        record = log.wait_for("client_closed_request")
        line = record.getMessage()
        assert "POST /v1/score 499: client_closed_request" in line and "while its file was scored" in line
        assert "0.60 s of audio" in line and "not sent" in line and record.levelno == logging.INFO
        scored = [r.getMessage() for r in log.records if "POST /v1/score 200" in r.getMessage()]
        assert len(scored) == 1  # the live client's, only
        det.runner = good
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200
    finally:
        release.set()
        det.runner = good
        logger.removeHandler(log)
        server.should_exit = True
        thread.join(timeout=30)
