"""Review of the web page, the service's schema and ``sdd demo``: a model description behind a proxy's HTML error,
very long file names, a result of very many windows, the 503 answers in the schema, and unwritable demo files."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from scoring_support import save_tiny_lcnn
from test_service import _uvicorn
from test_web_page import _chrome, _ensure_chromium
from test_webpage_review3 import _error_after, _open_page, _submit

from sddkit.cli.main import main
from sddkit.service.app import create_app

SR = 16000
Asgi = Callable[..., Awaitable[None]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_lcnn(tmp_path_factory.mktemp("web2") / "lcnn", inference={"window_samples": 8000})


def _stub(app: Asgi, answers: dict[str, tuple[int, bytes, bytes]]) -> Asgi:
    """``app``, except that a request for a path in ``answers`` gets that (status, content type, body), as a
    proxy in front of the service may answer instead of it."""

    async def wrapper(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] not in answers:
            await app(scope, receive, send)
            return
        while (await receive()).get("more_body"):
            pass
        status, content_type, body = answers[scope["path"]]
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": body})

    return wrapper


def _model_info(app: Asgi, tmp_path: Path, monkeypatch) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with _uvicorn(app) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            drv.get(f"http://127.0.0.1:{port}/")
            info = WebDriverWait(drv, 60).until(
                lambda d: d.find_element(By.ID, "model-info").text.startswith("could not") and d
            )
            return info.find_element(By.ID, "model-info").text
        finally:
            drv.quit()


def test_a_proxy_error_page_for_the_model_description_is_named_by_its_status(tmp_path, model_dir, monkeypatch):
    """GET /v1/model answered by a proxy's HTML 502 read "could not load the model description: Unexpected token
    '<', "<html><bod"... is not valid JSON": the JSON parser's complaint, not what went wrong."""
    _ensure_chromium()
    page = b"<html><body>bad gateway</body></html>"
    text = _model_info(_stub(create_app(model_dir), {"/v1/model": (502, b"text/html", page)}), tmp_path, monkeypatch)
    assert text == "could not load the model description: HTTP 502 Bad Gateway", text
    # a 200 that is not a model description (a login page) is said to be one, not a TypeError's text
    login = (200, b"text/html", b"<html><body>please log in</body></html>")
    text = _model_info(_stub(create_app(model_dir), {"/v1/model": login}), tmp_path / "b", monkeypatch)
    assert "HTTP 200 with text/html, not a model description" in text, text


def test_a_long_file_name_wraps_instead_of_widening_the_page(tmp_path, model_dir, monkeypatch):
    """A file name of 200+ characters without a space (a generated one) was laid out on one line: the result's
    heading and the error ran far past their card and gave the whole page a horizontal scroll bar."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    stem = "LA_E_" + "0123456789abcdef" * 14  # 229 characters, the file system allows 255
    wav = tmp_path / f"{stem}.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    junk = tmp_path / f"{stem}.flac"
    junk.write_bytes(b"not audio at all" * 8)
    overflow = (
        "return [document.documentElement.scrollWidth - document.documentElement.clientWidth,"
        " ...['result', 'upload-form'].map(id => document.getElementById(id).closest('.card'))"
        ".map(c => c.scrollWidth - c.clientWidth)]"
    )
    with _uvicorn(create_app(model_dir)) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            _open_page(drv, f"http://127.0.0.1:{port}/")
            _submit(drv, wav)
            WebDriverWait(drv, 60).until(lambda d: d.find_element(By.ID, "status").text.startswith("done"))
            assert stem in drv.find_element(By.ID, "filename").text
            assert drv.execute_script(overflow) == [0, 0, 0]
            assert stem in _error_after(drv, junk)
            assert drv.execute_script(overflow) == [0, 0, 0]
        finally:
            drv.quit()


def test_a_result_of_very_many_windows_is_shown(tmp_path, model_dir, monkeypatch):
    """The plot spread every window's score into Math.max(...): over ~120k windows (a long recording at a short
    hop) that overflowed the stack, and the scored file's verdict was replaced by "Maximum call stack size
    exceeded"."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    n = 200_000
    windows = [{"start_s": 0.01 * i, "end_s": 0.01 * i + 0.5, "score": (-1.0) ** i} for i in range(n)]
    result = {
        "filename": "long.wav",
        "score": 0.25,
        "probability": 0.562,
        "decision": "bonafide",
        "threshold": 0.0,
        "duration_s": 2000.5,
        "raw_score": 0.25,
        "n_windows": n,
        "windows": windows,
        "weights": {},
    }
    wav = tmp_path / "long.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    answer = (200, b"application/json", json.dumps(result).encode())
    with _uvicorn(_stub(create_app(model_dir), {"/v1/score": answer})) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            _open_page(drv, f"http://127.0.0.1:{port}/")
            _submit(drv, wav)
            WebDriverWait(drv, 120).until(
                lambda d: (
                    d.find_element(By.ID, "status").text.startswith("done")
                    or d.find_element(By.ID, "error").is_displayed()
                )
            )
            assert not drv.find_element(By.ID, "error").is_displayed(), drv.find_element(By.ID, "error").text
            assert drv.find_element(By.ID, "n-windows").text == str(n)
            # one bar per plot column (584 of them), each split at the threshold (every column holds windows of
            # both signs), and the threshold's line: not one SVG line per window, which took the browser ~20 s
            lines = drv.find_elements(By.CSS_SELECTOR, "#windows-plot line")
            assert len(lines) == 2 * 584 + 1
            tip = lines[1].find_element(By.TAG_NAME, "title").get_attribute("textContent")
            assert re.fullmatch(r"0\.00-\d+\.\d\d s: \d+ windows, scores -1\.000 to 1\.000", tip), tip
            note = drv.find_element(By.CSS_SELECTOR, "#windows-plot text:last-of-type").get_attribute("textContent")
            assert re.match(r"200\D?000 windows: ", note), note  # grouped as the browser's locale groups digits
        finally:
            drv.quit()


def test_the_schema_documents_the_not_ready_answers(model_dir):
    """/v1/score and /v1/model answer 503 {"error": ...} and /healthz 503 until the model is loaded (or with
    uvicorn's --lifespan off, for good); the schema named none of them."""
    schema = create_app(model_dir).openapi()
    paths = schema["paths"]
    for path, method in (("/v1/score", "post"), ("/v1/model", "get")):
        answer = paths[path][method]["responses"].get("503")
        assert answer is not None, path
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "503" in paths["/healthz"]["get"]["responses"]


def test_demo_names_an_example_file_it_cannot_write(tmp_path, capsys):
    """A protocol.txt or scores.txt that cannot be written (read-only from an earlier run; here a folder of that
    name) ended ``sdd demo`` in an IsADirectoryError/PermissionError traceback."""
    (tmp_path / "demo" / "inputs" / "scores.txt").mkdir(parents=True)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "scores.txt: cannot write the example" in err and "Traceback" not in err, err
