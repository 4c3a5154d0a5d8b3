"""Review 27 of the web page (``GET /``) as a user drives it in headless Chromium: behind a proxy's prefix, with a
file name the browser percent-encodes, and for a file the model is all but certain about."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import soundfile as sf
from scoring_support import save_tiny_lcnn, write_noise_wav
from test_service import _uvicorn
from test_web_page import _chrome, _ensure_chromium

from sddkit.service.app import create_app

PREFIX = "/sdd"


def _behind_prefix(app):
    """``app`` as ``sdd serve --root-path /sdd`` serves it behind a proxy that strips the prefix: uvicorn puts the
    prefix back in front of the path and names it as the root path. Anything outside the prefix is another site's."""

    async def proxy(scope, receive, send):
        if scope["type"] == "lifespan":
            return await app(scope, receive, send)
        path = scope["path"]
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"not this service"})
            return
        full = path if path != PREFIX else PREFIX + "/"  # the proxy hands /sdd on as /, which uvicorn makes /sdd/
        await app({**scope, "path": full, "raw_path": full.encode(), "root_path": PREFIX}, receive, send)

    return proxy


def _open(drv, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(url)
    WebDriverWait(drv, 60).until(lambda d: "calibration" in d.find_element(By.ID, "model-info").text)


def _upload(drv, path) -> None:
    """Choose ``path`` and press Score; wait for the result ("done: ...") or an error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv.execute_script("document.getElementById('status').textContent = ''")
    drv.find_element(By.ID, "file").send_keys(str(path))
    drv.find_element(By.ID, "submit").click()
    WebDriverWait(drv, 60).until(
        lambda d: (
            d.find_element(By.ID, "status").text.startswith("done") or d.find_element(By.ID, "error").is_displayed()
        )
    )


def _score_json(origin: str, path) -> dict:
    """What ``POST /v1/score`` answers for ``path`` (a plain multipart upload, as curl -F sends it)."""
    boundary = "sddkitreview27"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{origin}/v1/score", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.load(res)


def test_the_page_behind_a_prefix_asks_for_nothing_outside_it(tmp_path, monkeypatch):
    """The page declared no icon, so every load asked for /favicon.ico at the host's root: outside the proxy's
    prefix, another site's path (a 404 in the console, or that site's icon on the tab). Every request the page
    makes, its scoring included, stays under the prefix."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By

    wav = write_noise_wav(tmp_path / "speech.wav", 1.0, seed=0)
    with _uvicorn(_behind_prefix(create_app(save_tiny_lcnn(tmp_path / "lcnn")))) as port:
        site = f"http://127.0.0.1:{port}"
        drv = _chrome(tmp_path, monkeypatch)
        try:
            _open(drv, site + PREFIX)  # no trailing slash: the proxy hands it on as /
            _upload(drv, wav)
            assert drv.find_element(By.ID, "status").text.startswith("done")
            loaded = drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            assert f"{site}{PREFIX}/v1/score" in loaded
            outside = [u for u in loaded if not u.startswith(f"{site}{PREFIX}/")]
            assert not outside, outside
        finally:
            drv.quit()


def test_an_error_names_the_file_as_the_user_chose_it(tmp_path, monkeypatch):
    """A browser sends a file name's " percent-encoded and the service's errors name the file as sent: the page
    read 'audio_decode_error: take %222%22 ü.wav: not a readable audio file ...' for the user's 'take "2" ü.wav'."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By

    junk = tmp_path / 'take "2" ü.wav'
    junk.write_bytes(b"these are notes, not audio\n" * 40)
    empty = tmp_path / 'ëmpty "x".wav'
    empty.write_bytes(b"")
    with _uvicorn(create_app(save_tiny_lcnn(tmp_path / "lcnn"))) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            _open(drv, f"http://127.0.0.1:{port}/")
            _upload(drv, junk)
            error = drv.find_element(By.ID, "error").text
            assert error.startswith('audio_decode_error: take "2" ü.wav: not a readable audio file'), error
            assert "%22" not in error
            _upload(drv, empty)
            assert drv.find_element(By.ID, "error").text == 'empty_audio_error: ëmpty "x".wav: file is empty (0 bytes)'
            assert not drv.find_element(By.ID, "result").is_displayed()
        finally:
            drv.quit()


def test_a_near_certain_probability_is_not_shown_as_zero(tmp_path, monkeypatch):
    """A calibrated score of about -12 is a probability of 6e-6 in /v1/score's JSON: the page rounded it to
    "0.000", which a user reads as "impossible". It says "< 0.001"; the score, decision, duration (of a stereo
    48 kHz file) and windows are still the JSON's."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By

    inference = {"window_samples": 8000, "calibration": {"a": 0.001, "b": -12.0}}
    model = save_tiny_lcnn(tmp_path / "lcnn", inference=inference)
    mono = 0.1 * np.random.default_rng(0).standard_normal(int(1.5 * 48000))
    wav = tmp_path / "stereo48k.wav"
    sf.write(wav, np.stack([mono, 0.5 * mono], axis=1).astype(np.float32), 48000)
    with _uvicorn(create_app(model)) as port:
        origin = f"http://127.0.0.1:{port}"
        expected = _score_json(origin, wav)
        assert expected["probability"] < 0.0005
        drv = _chrome(tmp_path, monkeypatch)
        try:
            _open(drv, origin + "/")
            _upload(drv, wav)
            text = {k: drv.find_element(By.ID, k).text for k in ("probability", "score", "duration", "n-windows")}
            assert text["probability"] == "< 0.001"
            assert text["score"] == f"{expected['score']:.3f}"
            assert text["duration"] == f"{expected['duration_s']:.2f} s" == "1.50 s"
            assert text["n-windows"] == str(expected["n_windows"])
            assert drv.find_element(By.ID, "decision").get_attribute("data-decision") == expected["decision"]
        finally:
            drv.quit()
