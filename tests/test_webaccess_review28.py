"""Review 28 of the web page (``GET /``, ``static/``) for accessibility: a user on a keyboard alone, with a screen
reader, on a 360 px phone. What the page says to assistive technology (the status line, the plot's text alternative,
the error tied to the file chooser), where the focus goes after an error, the weights' readable headings, and the
contrast of the plot's threshold line."""

from __future__ import annotations

import json
import re

import numpy as np
import soundfile as sf
from test_service import _uvicorn
from test_web3_review8 import _contrast, _done, _settled, mixture_dir  # noqa: F401 (a fixture)
from test_web_page import _chrome, _ensure_chromium
from test_webpage_review3 import _open_page, _stub_score

from sddkit.service.app import STATIC_DIR, create_app

SR = 16000
# what a two-expert mixture answers: three windows, two of them at or above the threshold
CANNED = {
    "filename": "take.wav",
    "score": 0.5,
    "probability": 0.622,
    "decision": "bonafide",
    "threshold": 0.5,
    "duration_s": 1.5,
    "raw_score": 0.5,
    "n_windows": 3,
    "windows": [
        {"start_s": 0.0, "end_s": 0.5, "score": 0.9},
        {"start_s": 0.5, "end_s": 1.0, "score": 0.4},
        {"start_s": 1.0, "end_s": 1.5, "score": 1.2},
    ],
    "weights": {"gate_weights": [0.6, 0.4], "expert_scores": [1.5, -0.25]},
}


def _focused(drv) -> str:
    return drv.switch_to.active_element.get_attribute("id")


def _press(drv, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(drv)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def _label_stretch(drv) -> list[float]:
    """How much wider than tall each of the plot's labels is drawn (1: as the font is; 0.5: squeezed to half)."""
    return drv.execute_script(
        "return [...document.querySelectorAll('#windows-plot text')].map(t => {"
        "const r = t.getBoundingClientRect(), b = t.getBBox(); return (r.width / b.width) / (r.height / b.height); })"
    )


def _error_shown(drv) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, 60).until(_settled)
    error = drv.find_element(By.ID, "error")
    assert error.is_displayed(), drv.find_element(By.ID, "status").text
    return error.text


def test_a_keyboard_and_screen_reader_user_on_a_phone_hears_the_result_and_the_errors(
    tmp_path,
    mixture_dir,  # noqa: F811 (the fixture imported above)
    monkeypatch,
):
    """What the page did wrongly, on a 360 px wide viewport driven by the keyboard alone:

    - an error ("Choose an audio file first.", a file the service cannot decode) was not tied to the file chooser (no
      aria-describedby, no aria-invalid) and left the focus on "Score": a second Enter with no file chosen set the
      same alert text again, which a screen reader does not repeat. The focus now goes to the chooser, whose
      description is the error; an error that is not the file's (a 502) leaves the focus on "Score" to retry;
    - the status line announced the decision and score but not the probability, and the result card was a live
      region too, so on a second file each changed cell ("0.500", "1.50 s") was read out alone, without its label;
    - the plot's text alternative was "window scores over time" for every file: it now says the windows, their
      range and how many lie on each side of the threshold;
    - the plot's labels ("threshold 0.00", its score range) were stretched with its 600-unit drawing: at 360 px
      squeezed to half their width;
    - in a high-contrast (forced colours) setting the weights' bars took the page's background and vanished;
    - the weights' headings were the raw keys "gate_weights" and "expert_scores" (kept in title and data-name)."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    wav = tmp_path / "take.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    answer: dict[str, tuple[int, bytes, bytes]] = {}
    with _uvicorn(_stub_score(create_app(mixture_dir), answer)) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            drv.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": True},
            )
            _open_page(drv, f"http://127.0.0.1:{port}/")
            chooser = drv.find_element(By.ID, "file")
            assert chooser.get_attribute("aria-describedby") == "error"
            assert chooser.get_attribute("aria-invalid") is None

            # Enter on "Score" with no file chosen: the error describes the chooser, which gets the focus
            drv.execute_script("document.getElementById('submit').focus()")
            _press(drv, Keys.ENTER)
            assert _error_shown(drv) == "Choose an audio file first."
            assert _focused(drv) == "file"
            assert chooser.get_attribute("aria-invalid") == "true"

            # a file chosen, Tab to "Score", Enter: the status says decision, score and probability
            answer["v"] = (200, b"application/json", json.dumps(CANNED).encode())
            chooser.send_keys(str(wav))
            drv.execute_script("document.getElementById('file').focus()")
            _press(drv, Keys.TAB)
            assert _focused(drv) == "submit"
            _press(drv, Keys.ENTER)
            status = _done(drv)
            assert status == "done: bona fide, score 0.500; sigmoid of the raw score 0.622", status
            assert chooser.get_attribute("aria-invalid") is None
            assert _focused(drv) == "submit"
            assert drv.find_element(By.ID, "result").get_attribute("aria-live") is None
            label = drv.find_element(By.ID, "windows-plot").get_attribute("aria-label")
            assert label == (
                "window scores over time: 3 windows over 1.50 s, scores from 0.400 to 1.200; "
                "2 at or above the threshold 0.500 (bona fide), 1 below it (spoof)"
            ), label
            assert _label_stretch(drv) and max(abs(r - 1) for r in _label_stretch(drv)) < 0.05, _label_stretch(drv)
            headings = drv.find_elements(By.CSS_SELECTOR, "#weights h4")
            assert [h.text for h in headings] == ["Gate weights", "Expert scores (log-odds)"]
            assert [h.get_attribute("title") for h in headings] == ["gate_weights", "expert_scores"]
            assert [h.get_attribute("data-name") for h in headings] == ["gate_weights", "expert_scores"]
            # in a high-contrast (forced colours) setting the gate weights' bars still show against their track
            drv.execute_cdp_cmd(
                "Emulation.setEmulatedMedia", {"features": [{"name": "forced-colors", "value": "active"}]}
            )
            colours = drv.execute_script(
                "const b = document.querySelector('.bar-row[data-name=\"gate_weights\"] .bar');"
                "return [getComputedStyle(b).backgroundColor, getComputedStyle(b.firstChild).backgroundColor]"
            )
            drv.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
            assert colours[0] != colours[1], colours
            # no horizontal scroll at 360 px with the result, its plot and its weights shown
            widths = drv.execute_script(
                "const e = document.documentElement; return [e.clientWidth, e.scrollWidth, document.body.scrollWidth]"
            )
            assert widths[0] == 360 and max(widths[1:]) <= widths[0], widths

            # a long file's plot (more windows than columns) has a longer note, narrowed to fit within the plot
            many = [{"start_s": 0.01 * i, "end_s": 0.01 * i + 0.5, "score": 2 + 0.5 * (-1.0) ** i} for i in range(2000)]
            answer["v"] = (
                200,
                b"application/json",
                json.dumps({**CANNED, "windows": many, "n_windows": 2000}).encode(),
            )
            _press(drv, Keys.ENTER)
            _done(drv)
            inside = drv.execute_script(
                "const p = document.getElementById('windows-plot').getBoundingClientRect();"
                "return [...document.querySelectorAll('#windows-plot text')].map(t => t.getBoundingClientRect())"
                ".map(r => r.left >= p.left && r.right <= p.right)"
            )
            assert len(inside) == 4 and all(inside), inside
            # the scores' own range, not the plot's axis (which spans the threshold, 0.5, too)
            label = drv.find_element(By.ID, "windows-plot").get_attribute("aria-label")
            assert "scores from 1.500 to 2.500; " in label and " 0 below it (spoof)" in label, label
            assert min(_label_stretch(drv)) > 0.5, _label_stretch(drv)

            # a file the service refuses (4xx): the focus goes to the chooser to choose another
            refusal = {"error": {"type": "audio_decode_error", "message": "take.wav: not a sound file"}}
            answer["v"] = (400, b"application/json", json.dumps(refusal).encode())
            _press(drv, Keys.ENTER)
            assert _error_shown(drv) == "audio_decode_error: take.wav: not a sound file"
            assert _focused(drv) == "file" and chooser.get_attribute("aria-invalid") == "true"

            # a proxy's 502 is not the file's fault: the focus stays on "Score", to retry
            answer["v"] = (502, b"text/html", b"<html>bad gateway</html>")
            _press(drv, Keys.TAB, Keys.ENTER)
            assert _error_shown(drv) == "HTTP 502 Bad Gateway"
            assert _focused(drv) == "submit"
        finally:
            drv.quit()


def test_the_plots_threshold_line_and_the_page_basics_are_readable():
    """The plot's dashed threshold line, what its window marks are read against, was #999: 2.85:1 on the plot's white
    background, under WCAG 2.1's 3:1 for graphics (1.4.11). The page's language, title and control names stay."""
    script = (STATIC_DIR / "app.js").read_text()
    threshold = re.search(r'thr\.setAttribute\("stroke", "(#[0-9a-fA-F]{3,6})"\)', script)
    assert threshold, "no stroke for the threshold line"
    colour = threshold.group(1)
    if len(colour) == 4:
        colour = "#" + "".join(c * 2 for c in colour[1:])
    assert _contrast(colour, "#ffffff") >= 3.0, f"{colour}: {_contrast(colour, '#ffffff'):.2f}:1"
    for mark in re.findall(r'above \? "(#[0-9a-fA-F]{6})" : "(#[0-9a-fA-F]{6})"', script)[0]:
        assert _contrast(mark, "#ffffff") >= 3.0, mark
    page = (STATIC_DIR / "index.html").read_text()
    assert re.search(r'<html lang="en">', page) and re.search(r"<title>[^<]+</title>", page)
    assert '<label for="file">' in page and re.search(r'<button id="submit"[^>]*>Score</button>', page)
