from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
import uvicorn
from fastapi.testclient import TestClient
from scoring_support import assert_error_json as _assert_error
from scoring_support import save_tiny_lcnn

from sddkit.errors import CheckpointError
from sddkit.scoring.api import load_detector
from sddkit.service.app import STATIC_DIR, create_app, error_type

SR = 16000
MAX_MB = 0.25  # 262,144 bytes
MAX_S = 2.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    inference = {"threshold": 0.25, "calibration": {"a": 1.5, "b": 0.2, "prior": 0.5}}
    return save_tiny_lcnn(tmp_path_factory.mktemp("svc") / "lcnn", inference=inference)


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(model_dir, max_upload_mb=MAX_MB, max_duration_s=MAX_S)) as c:
        yield c


def _wav_bytes(seconds: float, seed: int = 0, amplitude: float = 0.1, fmt: str = "WAV") -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, (amplitude * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR, format=fmt)
    return buf.getvalue()


def _post(client, data: bytes, name: str = "x.wav", field: str = "file"):
    return client.post("/v1/score", files={field: (name, data, "application/octet-stream")})


def test_health_model_and_openapi(client, model_dir):
    assert client.get("/healthz").json() == {"status": "ok", "model_loaded": True}
    m = client.get("/v1/model").json()
    assert m["components"] == {"frontend": "logmel", "backend": "lcnn", "band_hz": [20.0, 7600.0]}
    assert m["threshold"] == 0.25 and m["calibration"]["a"] == 1.5 and m["calibration"]["b"] == 0.2
    assert m["sample_rate"] == SR and m["window_samples"] == 8000 and m["hop_samples"] == 4000
    assert m["num_parameters"] == load_detector(model_dir).info["num_parameters"] > 0
    assert m["limits"] == {"max_upload_mb": MAX_MB, "max_duration_s": MAX_S, "max_concurrent": 2}
    spec = client.get("/openapi.json").json()
    assert {"/v1/score", "/v1/model", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"
    assert {"413", "415", "422"} <= set(spec["paths"]["/v1/score"]["post"]["responses"])


def test_score_upload_matches_the_python_api(client, model_dir, tmp_path):
    data = _wav_bytes(1.2, seed=3)
    resp = _post(client, data, "speech.wav")
    assert resp.status_code == 200, resp.text
    r = resp.json()
    (tmp_path / "speech.wav").write_bytes(data)
    ref = load_detector(model_dir).score_file(tmp_path / "speech.wav")
    assert r["filename"] == "speech.wav"
    assert r["score"] == pytest.approx(ref.score, rel=1e-5, abs=1e-6)
    assert r["raw_score"] == pytest.approx(ref.raw_score, rel=1e-5, abs=1e-6)
    assert r["score"] == pytest.approx(1.5 * r["raw_score"] + 0.2, rel=1e-6)
    assert r["probability"] == pytest.approx(1 / (1 + np.exp(-r["score"])))
    assert r["decision"] == ("bonafide" if r["score"] >= 0.25 else "spoof") and r["threshold"] == 0.25
    assert r["n_windows"] == 4 and len(r["windows"]) == 4 and r["duration_s"] == pytest.approx(1.2)
    assert [w["score"] for w in r["windows"]] == pytest.approx(ref.window_scores, rel=1e-5, abs=1e-6)
    assert r["weights"] == {}
    flac = _post(client, _wav_bytes(1.2, seed=3, fmt="FLAC"), "speech.flac").json()
    assert flac["score"] == pytest.approx(r["score"], abs=1e-3)  # 16-bit FLAC of the same signal


@pytest.mark.parametrize(
    ("data", "status", "type_"),
    [
        (b"this is not audio at all" * 10, 422, "audio_decode_error"),
        (b"", 422, "empty_audio_error"),
        (None, 422, "silent_audio_error"),  # filled in below: digital silence
        (None, 422, "audio_too_long_error"),  # 3 s > MAX_S
        (None, 422, "unsupported_sample_rate_error"),  # a 1 Hz header
        (None, 422, "audio_too_short_error"),  # 20 ms: below the model's min_duration_s
    ],
)
def test_bad_audio_is_a_4xx_json_error(client, data, status, type_):
    if type_ == "silent_audio_error":
        data = _wav_bytes(0.5, amplitude=0.0)
    elif type_ == "unsupported_sample_rate_error":
        buf = io.BytesIO()
        sf.write(buf, np.full(100, 0.1, np.float32), 1, format="WAV")
        data = buf.getvalue()
    elif type_ == "audio_too_long_error":
        data = _wav_bytes(3.0)
    elif type_ == "audio_too_short_error":
        data = _wav_bytes(0.02)
    _assert_error(_post(client, data), status, type_)


def test_request_shape_errors(client):
    _assert_error(_post(client, _wav_bytes(0.3), field="audio"), 422, "missing_field")
    as_text = client.post("/v1/score", data={"file": "just text"}, files={"other": ("o.bin", b"x")})
    _assert_error(as_text, 422, "missing_field")  # a text field named 'file' is not an upload
    assert "a text value, not a file upload" in as_text.json()["error"]["message"]
    two = [("file", ("a.wav", _wav_bytes(0.3), "audio/wav")), ("file", ("b.wav", _wav_bytes(0.4), "audio/wav"))]
    _assert_error(client.post("/v1/score", files=two), 422, "too_many_files")  # before: scored b.wav only
    _assert_error(client.post("/v1/score", data={"file": "x"}), 415, "unsupported_media_type")  # url-encoded
    _assert_error(client.post("/v1/score", json={"file": "x"}), 415, "unsupported_media_type")
    bad = client.post("/v1/score", content=b"garbage", headers={"content-type": "multipart/form-data"})
    _assert_error(bad, 400, "bad_request")
    _assert_error(client.get("/v1/nothing"), 404, "not_found")
    _assert_error(client.get("/v1/score"), 405, "method_not_allowed")
    assert client.get("/v1/score").headers["allow"] == "POST"  # RFC 9110: a 405 says what is allowed
    assert set(client.put("/healthz").headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_head_requests_answer_like_get_without_a_body(client):
    # uptime checks ask with HEAD (curl -I): /healthz, /v1/model and / answered 405
    for route in ("/healthz", "/v1/model", "/"):
        head, get = client.head(route), client.get(route)
        assert head.status_code == get.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]


def test_upload_limits_with_and_without_content_length(client):
    big = b"\0" * int(MAX_MB * 1024 * 1024 * 2)
    _assert_error(_post(client, big), 413, "payload_too_large")  # refused from Content-Length
    boundary = "sddkitboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks():  # no Content-Length: chunked transfer, refused once past the cap
        # (the TestClient reads the whole body first: that the app stops reading at its cap is checked
        # on the ASGI interface in test_testaudit_review3)
        yield from [head] + [b"\0" * 65536] * 64 + [tail]

    resp = client.post(
        "/v1/score", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    _assert_error(resp, 413, "payload_too_large")
    # a file just over the limit inside a body that fits the envelope is refused too
    _assert_error(_post(client, b"\0" * (int(MAX_MB * 1024 * 1024) + 10)), 413, "payload_too_large")


def test_server_keeps_serving_after_bad_requests(client):
    for _ in range(3):
        _post(client, b"junk")
        client.post("/v1/score", json={})
    ok = _post(client, _wav_bytes(0.4, seed=9))
    assert ok.status_code == 200 and ok.json()["decision"] in ("bonafide", "spoof")
    assert client.get("/healthz").status_code == 200


def test_eight_concurrent_uploads_all_succeed(client):
    payloads = [_wav_bytes(0.3 + 0.2 * i, seed=20 + i) for i in range(8)]
    expected = [_post(client, p).json()["score"] for p in payloads]
    results: dict[int, object] = {}
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        results[i] = _post(client, payloads[i], f"f{i}.wav")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(results[i].status_code == 200 for i in range(8))
    got = [results[i].json()["score"] for i in range(8)]
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert [results[i].json()["filename"] for i in range(8)] == [f"f{i}.wav" for i in range(8)]


def test_web_page_is_served_and_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('id="upload-form"', 'id="file"', 'id="decision"', "static/app.js"):
        assert needle in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "v1/score" in js.text
    assert client.get("/static/style.css").status_code == 200
    for f in STATIC_DIR.iterdir():  # works offline: no external URLs (CDNs, fonts)
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", f.read_text()), f
        assert "@import" not in f.read_text() and 'fetch("http' not in f.read_text()


@pytest.mark.parametrize(
    ("page", "scripts"), [("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))]
)
def test_api_pages_load_their_scripts_from_the_service_not_a_cdn(client, page, scripts):
    """FastAPI's own pages fetch Swagger UI / ReDoc (and fonts) from the internet, so offline they stay blank."""
    html = client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    external = re.findall(r"""(?:src|href|url)\s*[=:]\s*["']?((?:https?:)?//[^"'\s>]+)""", html.text)
    assert external == [], external
    assert "'/openapi.json'" in html.text or '"/openapi.json"' in html.text
    for name in scripts:
        assert f"/_docs/{name}" in html.text
        asset = client.get(f"/_docs/{name}")
        assert asset.status_code == 200 and len(asset.content) > 100_000  # the real bundle, not a placeholder
    assert page not in client.get("/openapi.json").json()["paths"]


def test_without_the_offline_assets_the_api_pages_fall_back_to_fastapis(model_dir, monkeypatch):
    from sddkit.service import app as service_app

    monkeypatch.setattr(service_app, "docs_assets_dir", lambda: None)
    with TestClient(create_app(model_dir)) as c:
        assert c.get("/docs").status_code == 200 and "swagger-ui" in c.get("/docs").text
        assert c.get("/_docs/swagger-ui.css").status_code == 404


def test_create_app_errors_and_error_types(tmp_path):
    with pytest.raises(CheckpointError, match="no such model directory"):
        create_app(tmp_path / "nope")
    for limits in ({"max_upload_mb": 0.0}, {"max_duration_s": float("nan")}):  # NaN compares false
        with pytest.raises(CheckpointError, match="must be positive"):
            create_app(tmp_path / "nope", **limits)
    from sddkit.errors import AudioTooLongError

    assert error_type(AudioTooLongError("x")) == "audio_too_long_error"


def test_not_ready_before_startup(model_dir):
    client = TestClient(create_app(model_dir))  # no `with`: the lifespan (model loading) never ran
    assert client.get("/healthz").status_code == 503
    _assert_error(client.get("/v1/model"), 503, "not_ready")


def start_uvicorn(app, config=None) -> tuple[uvicorn.Server, threading.Thread, int]:
    """Start ``app`` with uvicorn on a free loopback port in a background thread, once it serves: (server, its
    thread, port). ``config(port)``, when given, makes the server's ``uvicorn.Config``. The caller stops it
    (``server.should_exit = True``, then joins the thread)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    made = config(port) if config is not None else uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(made)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return server, thread, port


@contextlib.contextmanager
def _uvicorn(app):
    """Run ``app`` with uvicorn on a free loopback port in a background thread."""
    server, thread, port = start_uvicorn(app)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _raw_request(port: int, head: bytes, body_parts, timeout: float = 20.0) -> bytes:
    """Send a request by hand (headers + some body) and read whatever the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_real_server_refuses_large_uploads_without_reading_them(model_dir):
    boundary = "b0undary"
    with _uvicorn(create_app(model_dir, max_upload_mb=MAX_MB, max_duration_s=MAX_S)) as port:
        # 1) a declared 100 MB body: refused at once, although the body never arrives
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {100 * 1024 * 1024}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        ).encode()
        answer = _raw_request(port, head, [b"x" * 1024])
        assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer
        # 2) chunked, no length: refused once the cap is passed, though the body never ends
        head = (
            "POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        ).encode()
        chunk = b"\0" * 65536
        parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 8  # 512 KiB > cap, no final chunk
        answer = _raw_request(port, head, parts)
        assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer
        # and the server still serves
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            ok = c.post("/v1/score", files={"file": ("a.wav", _wav_bytes(0.4), "audio/wav")})
            assert ok.status_code == 200 and ok.json()["n_windows"] == 1


def test_an_upload_that_stalls_gets_a_408_instead_of_holding_the_request():
    # a body shorter than its Content-Length kept the request (and what it had read) open with no answer
    import asyncio

    from sddkit.service.app import ApiError, _until_disconnect

    async def stalled():
        yield b"first part"
        await asyncio.sleep(10)
        yield b"never"

    async def read():
        return [chunk async for chunk in _until_disconnect(stalled(), idle_s=0.05)]

    with pytest.raises(ApiError) as caught:
        asyncio.run(read())
    assert caught.value.status == 408 and caught.value.type == "request_timeout"

    async def steady():
        for _ in range(3):
            await asyncio.sleep(0.01)
            yield b"x"

    async def read_steady():
        return [chunk async for chunk in _until_disconnect(steady(), idle_s=1.0)]

    assert asyncio.run(read_steady()) == [b"x"] * 3
