"""Review of the web page (``GET /``, ``static/``): what it shows for answers that are not a score, for a file
over the upload limit, for an unreachable service, and how the page's files are cached."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from scoring_support import save_tiny_lcnn
from test_service import _uvicorn
from test_web_page import _chrome, _ensure_chromium

from sddkit.service.app import STATIC_DIR, create_app

SR = 16000
Asgi = Callable[..., Awaitable[None]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_lcnn(tmp_path_factory.mktemp("webpage") / "lcnn", inference={"window_samples": 8000})


def _stub_score(app: Asgi, answer: dict[str, tuple[int, bytes, bytes]]) -> Asgi:
    """``app``, except that ``POST /v1/score`` gets ``answer["v"]`` (status, content type, body) when set:
    what a proxy in front of the service may send instead of the service's own answer."""

    async def wrapper(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/score" or "v" not in answer:
            await app(scope, receive, send)
            return
        while (await receive()).get("more_body"):  # read the upload, as a proxy would
            pass
        status, content_type, body = answer["v"]
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": body})

    return wrapper


def _submit(drv, path: Path) -> None:
    from selenium.webdriver.common.by import By

    drv.find_element(By.ID, "file").send_keys(str(path))
    drv.find_element(By.ID, "submit").click()


def _error_after(drv, path: Path) -> str:
    """Upload ``path`` and return the error the page shows for it (the result card must be hidden)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _submit(drv, path)
    WebDriverWait(drv, 60).until(ec.visibility_of_element_located((By.ID, "error")))
    assert not drv.find_element(By.ID, "result").is_displayed()
    return drv.find_element(By.ID, "error").text


def _open_page(drv, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(url)
    WebDriverWait(drv, 60).until(lambda d: "limits" in d.find_element(By.ID, "model-info").text)


def test_answers_that_are_not_a_score_show_an_error_not_a_verdict(tmp_path, model_dir, monkeypatch):
    """A 200 that is not JSON (a login page, a proxy's HTML) was shown as a red "spoof" verdict with score
    "undefined"; an error answer without a message falls back to its HTTP status (known leftover, untested);
    an unreachable service said only "Failed to fetch"."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By

    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    answer: dict[str, tuple[int, bytes, bytes]] = {}
    with _uvicorn(_stub_score(create_app(model_dir), answer)) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            _open_page(drv, f"http://127.0.0.1:{port}/")
            answer["v"] = (200, b"text/html", b"<html><body>please log in</body></html>")
            text = _error_after(drv, wav)
            assert "unexpected answer" in text and "HTTP 200" in text and "text/html" in text, text
            assert drv.find_element(By.ID, "decision").get_attribute("data-decision") is None
            answer["v"] = (502, b"text/html", b"<html><body>bad gateway</body></html>")
            assert _error_after(drv, wav) == "HTTP 502 Bad Gateway"  # the status fallback
            answer["v"] = (500, b"application/json", b"null")  # JSON, but no error object
            assert _error_after(drv, wav) == "HTTP 500 Internal Server Error"
            del answer["v"]
            drv.execute_cdp_cmd("Network.enable", {})
            offline = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
            drv.execute_cdp_cmd("Network.emulateNetworkConditions", offline)
            assert "could not reach the service" in _error_after(drv, wav)
            assert drv.find_element(By.ID, "submit").is_enabled()
        finally:
            drv.quit()


def test_a_file_over_the_limit_is_refused_before_upload_and_names_are_text(tmp_path, model_dir, monkeypatch):
    """The page knows the upload limit (GET /v1/model) but sent the whole file anyway: a large file was uploaded
    in full, at the client's upload speed, only to get a 413. A crafted file name is shown as text, and a scored
    file's verdict is said in the status line (the result card appears without being announced)."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    big = tmp_path / "big.wav"
    big.write_bytes(b"\1" * 80_000)  # over 0.05 MB = 52428 bytes
    crafted = tmp_path / "<img src=x onerror=alert(1)>.wav"
    crafted.write_bytes(b"not audio at all" * 8)
    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    with _uvicorn(create_app(model_dir, max_upload_mb=0.05)) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            _open_page(drv, f"http://127.0.0.1:{port}/")
            text = _error_after(drv, big)
            assert "big.wav" in text and "limit of 0.05 MB" in text, text
            sent = drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            assert not [u for u in sent if u.endswith("/v1/score")], sent  # nothing was uploaded
            text = _error_after(drv, crafted)
            assert crafted.name in text and "audio_decode_error" in text
            assert not drv.find_elements(By.CSS_SELECTOR, "#error img, #status img")
            _submit(drv, wav)
            WebDriverWait(drv, 60).until(lambda d: d.find_element(By.ID, "status").text.startswith("done"))
            status = drv.find_element(By.ID, "status").text
            # and the probability (review 28), under the label the page shows for it
            assert re.fullmatch(r"done: (bona fide|spoof), score -?\d+\.\d{3}; .+ \d\.\d{3}", status), status
            assert drv.find_element(By.ID, "score").text in status
        finally:
            drv.quit()


def test_page_files_are_revalidated_not_cached_heuristically(model_dir):
    """The page, app.js and style.css carried Last-Modified and ETag but no Cache-Control, so browsers reused
    them heuristically: after an upgrade a reload could run the old app.js against the new page."""
    with TestClient(create_app(model_dir)) as client:
        for path in ("/", "/static/app.js", "/static/style.css"):
            first = client.get(path)
            assert first.status_code == 200 and first.headers.get("cache-control") == "no-cache", path
            again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
            assert again.status_code in (200, 304), path  # revalidation is cheap where supported
        assert client.get("/static/../app.py").status_code == 404


def test_every_form_control_of_the_page_has_a_label():
    """The file input had no label: a screen reader announced an unnamed "choose file" button."""
    page = (STATIC_DIR / "index.html").read_text()
    inputs = re.findall(r"<input\b[^>]*\bid=\"([^\"]+)\"", page)
    assert inputs, "no input on the page"
    for control in inputs:
        assert re.search(rf"<label\b[^>]*\bfor=\"{re.escape(control)}\"", page), f"input #{control} has no label"


def test_the_schema_has_one_operation_id_per_operation():
    # HEAD shared the GET routes' function: FastAPI gave both operations one id (a warning, and client generators
    # that key on operation ids lost one); HEAD is now served outside the schema
    import warnings

    from sddkit.service.app import create_app

    app = create_app(None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schema = app.openapi()
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)) and not any("head" in i for i in ids)
