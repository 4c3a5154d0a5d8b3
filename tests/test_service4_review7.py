"""Seventh review of the HTTP service: what an operator behind a reverse proxy runs into."""

from __future__ import annotations

import errno
import tempfile

import pytest
from fastapi.testclient import TestClient
from scoring_support import assert_error_json as _assert_error
from scoring_support import noise_wav_bytes as _wav
from scoring_support import save_tiny_lcnn

from sddkit.service.app import create_app

SR = 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_lcnn(tmp_path_factory.mktemp("svc7") / "lcnn")


def test_an_upload_over_1_mb_is_scored_with_a_full_temporary_folder(model_dir, monkeypatch):
    """The body is buffered in memory (up to the limit), then Starlette's parser copied its file part to a
    temporary file once over 1 MB: with a full (or read-only, as in a hardened container) temporary folder every
    upload over 1 MB was a 500 internal_error, while smaller ones scored. Nothing goes to disk now."""
    data = _wav(40.0)  # 1.28 MB of 16-bit PCM
    assert len(data) > 1024 * 1024

    def disk_full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", disk_full)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", disk_full)
    monkeypatch.setattr(tempfile, "mkstemp", disk_full)
    with TestClient(create_app(model_dir, max_upload_mb=4, max_duration_s=60), raise_server_exceptions=False) as c:
        resp = c.post("/v1/score", files={"file": ("long.wav", data, "audio/wav")})
        assert resp.status_code == 200, resp.text
        assert resp.json()["duration_s"] == pytest.approx(40.0) and resp.json()["filename"] == "long.wav"
        # the limit still holds for a file part past it
        _assert_error(
            c.post("/v1/score", files={"file": ("big.wav", b"\0" * (4 * 1024 * 1024 + 1))}), 413, "payload_too_large"
        )


def _files_body(boundary: str, count: int, name: str = "file") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="a{i}.wav"\r\n\r\n'.encode()
        + _wav(0.3, seed=i)
        + b"\r\n"
        for i in range(count)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("count", [2, 5, 9])
def test_too_many_files_is_the_same_422_whatever_their_number(model_dir, count):
    """Two to four files were a 422 too_many_files, five or more a 400 "malformed multipart body: Too many
    files. Maximum number of files is 4.": a well-formed body called malformed, under another error type, for
    the same mistake (and not the 422 the schema documents for "more than one file")."""
    with TestClient(create_app(model_dir, max_upload_mb=1)) as c:
        body = _files_body("r7files", count)
        resp = c.post("/v1/score", content=body, headers={"content-type": "multipart/form-data; boundary=r7files"})
        assert "send one file per request" in _assert_error(resp, 422, "too_many_files")["message"]


def test_serve_takes_the_path_prefix_of_a_reverse_proxy(model_dir, monkeypatch, capsys):
    """Behind a proxy that serves the service under a prefix (https://host/sdd/ -> http://127.0.0.1:8000/),
    /docs and /redoc asked for /openapi.json and /_docs/... at the proxy's root, so both pages stayed blank:
    the app reads the ASGI root_path for them, but `sdd serve` had no way to set it (uvicorn's --root-path)."""
    import threading
    import time

    import httpx
    import uvicorn

    from sddkit.cli.main import main

    real_run = uvicorn.Server.run
    seen = {}

    def run_in_background(self, sockets=None):
        seen["server"], seen["port"] = self, sockets[0].getsockname()[1]
        seen["thread"] = threading.Thread(target=real_run, args=(self,), kwargs={"sockets": sockets}, daemon=True)
        seen["thread"].start()

    monkeypatch.setattr(uvicorn.Server, "run", run_in_background)
    argv = ["serve", "--model", str(model_dir), "--port", "0", "--log-level", "warning", "--root-path", "/sdd/"]
    assert main(argv) == 0
    server = seen["server"]
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert seen["thread"].is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        assert server.config.root_path == "/sdd"  # the trailing slash dropped
        # the proxy strips /sdd: requests arrive at the service's own paths
        with httpx.Client(base_url=f"http://127.0.0.1:{seen['port']}", timeout=30) as c:
            docs = c.get("/docs")
            assert docs.status_code == 200
            assert "/sdd/openapi.json" in docs.text and "/sdd/_docs/swagger-ui-bundle.js" in docs.text
            assert "/sdd/_docs/redoc.standalone.js" in c.get("/redoc").text
            assert c.get("/openapi.json").json()["servers"] == [{"url": "/sdd"}]
            assert c.get("/healthz").json()["status"] == "ok" and c.get("/_docs/swagger-ui.css").status_code == 200
            ok = c.post("/v1/score", files={"file": ("a.wav", _wav(), "audio/wav")})
            assert ok.status_code == 200 and ok.json()["n_windows"] == 1
    finally:
        server.should_exit = True
        seen["thread"].join(timeout=30)


@pytest.mark.parametrize("prefix", ["sdd", "/sdd?x=1", "/s dd", "/é", "//sdd"])
def test_a_root_path_that_is_no_url_path_is_refused_before_the_model_loads(model_dir, prefix, monkeypatch, capsys):
    import uvicorn

    from sddkit.cli.main import main

    def no_server(*_a, **_k):
        raise AssertionError("the server must not start")

    monkeypatch.setattr(uvicorn.Server, "run", no_server)
    assert main(["serve", "--model", str(model_dir), "--port", "0", "--root-path", prefix]) == 2
    err = capsys.readouterr().err
    assert "--root-path must be a URL path" in err and repr(prefix) in err and "Traceback" not in err
