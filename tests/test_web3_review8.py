"""Review 8 of the web page (``GET /``, ``static/``): a mixture's per-expert statistics of one expert (a MoLEx expert's
use of its LoRA experts), file names a browser percent-encodes, a chosen file changed on disk before it is sent, the
size named when a file is just over the limit, long expert names, keyboard focus and double submits while a file
scores, the contrast of the page's text colours and the suffixes its file chooser offers."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from test_service import _uvicorn
from test_web_page import _chrome, _ensure_chromium
from test_webpage_review3 import _error_after, _open_page, _stub_score, _submit

from sddkit.audio.files import AUDIO_EXTENSIONS
from sddkit.config import from_dict, to_dict
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.detectors.model_dir import save_model_dir
from sddkit.service.app import STATIC_DIR, create_app

SR = 16000
# an expert named as trained models are: longer than the label column of the weights' bars
LONG_EXPERT = "wav2vec2_xlsr_300m_aasist_finetuned_la19"
Asgi = Callable[..., Awaitable[None]]


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory) -> Path:
    """A small two-expert mixture (log-Mel+LCNN, LFCC+linear) whose /v1/model names its experts."""
    spec = {
        "experts": [
            {
                "frontend": {"name": "logmel", "n_mels": 32},
                "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0},
            },
            {"frontend": {"name": "lfcc"}, "backend": {"name": "linear"}},
        ],
        "gate": {"name": "enhanced_mlp"},
        "expert_names": ["ssl_molex", LONG_EXPERT],
    }
    cfg = from_dict(MixtureConfig, spec)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("web3") / "mixture"
    save_model_dir(
        d,
        build_mixture(cfg).eval(),
        model_config=to_dict(cfg),
        architecture="mixture",
        inference={"window_samples": 8000},
    )
    return d


def _slowed(app: Asgi, posts: dict[str, float]) -> Asgi:
    """``app``, counting the uploads to ``/v1/score`` in ``posts["n"]`` and answering each ``posts["delay"]`` s late
    (a busy service)."""

    async def wrapper(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/score" and scope["method"] == "POST":
            posts["n"] += 1
            await asyncio.sleep(posts["delay"])
        await app(scope, receive, send)

    return wrapper


def _texts(drv, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, css)]


def _settled(drv) -> bool:
    """The page shows a result ("done: ...") or an error."""
    from selenium.webdriver.common.by import By

    return drv.find_element(By.ID, "error").is_displayed() or drv.find_element(By.ID, "status").text.startswith("done")


def _done(drv) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, 60).until(_settled)
    assert not drv.find_element(By.ID, "error").is_displayed(), drv.find_element(By.ID, "error").text
    return drv.find_element(By.ID, "status").text


def _rescore_error(drv) -> str:
    """Score the chosen file again and return the error shown (the last one is cleared first, so it is not read)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv.execute_script("const e = document.getElementById('error'); e.textContent = ''; e.hidden = true;")
    drv.find_element(By.ID, "submit").click()
    WebDriverWait(drv, 60).until(_settled)
    assert drv.find_element(By.ID, "error").is_displayed(), drv.find_element(By.ID, "status").text
    return drv.find_element(By.ID, "error").text


def test_the_page_in_the_browser_names_what_it_shows(tmp_path, mixture_dir, monkeypatch):
    """Seven things the page did wrongly:

    - a mixture reports its experts' own statistics too, as ``expert<k>/<stat>`` (a MoLEx expert's ``molex_gate_mean``
      over its LoRA experts): every name starting with "expert" was labelled with the mixture's expert names, so a
      two-LoRA-expert MoLEx expert's routing read as the mixture's weights of "ssl_molex" and "lfcc_linear";
    - a name with a double quote came back as ``%22`` (browsers percent-encode it in the multipart filename, the
      service echoes that) and the result was titled with a name the user never chose;
    - a file changed (re-exported) or deleted after it was chosen fails the upload as "Failed to fetch", and the page
      said the service could not be reached;
    - a file just over the limit read "is 0.1 MB, over the service's limit of 0.05 MB" (or "20.0 MB, over 20 MB");
    - a file dropped on the page (not exactly on its small file input) was opened by the browser in its place;
    - an expert's name longer than the 160 px label column of the weights ran over its bar and value;
    - the Score button was disabled while a file scored, which drops the keyboard focus to the top of the page: after
      Enter on "Score" the next Tab started over. It is marked aria-disabled instead, and a second submit ignored."""
    _ensure_chromium()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    audio = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    quoted = tmp_path / 'take "2".wav'
    sf.write(quoted, audio, SR)
    canned = {
        "filename": "mix.wav",
        "score": 0.5,
        "probability": 0.622,
        "decision": "bonafide",
        "threshold": 0.0,
        "duration_s": 1.0,
        "raw_score": 0.5,
        "n_windows": 1,
        "windows": [{"start_s": 0.0, "end_s": 1.0, "score": 0.5}],
        # what a real mixture of a MoLEx expert (two LoRA experts) and an LFCC expert answers
        "weights": {
            "gate_weights": [0.6, 0.4],
            "expert_scores": [0.3, 0.7],  # log-odds that happen to lie in [0, 1] and sum to 1: no bars
            "expert0/molex_gate_mean": [0.75, 0.25],
            "expert0/molex_top1_count": [300.0, 100.0],
        },
    }
    answer: dict[str, tuple[int, bytes, bytes]] = {}
    limit_bytes = int(0.05 * 1024 * 1024)
    posts = {"n": 0, "delay": 0.0}
    with _uvicorn(_slowed(_stub_score(create_app(mixture_dir, max_upload_mb=0.05), answer), posts)) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            _open_page(drv, f"http://127.0.0.1:{port}/")
            _submit(drv, quoted)
            _done(drv)
            assert drv.find_element(By.ID, "filename").text == '(take "2".wav)'

            answer["v"] = (200, b"application/json", json.dumps(canned).encode())
            _submit(drv, quoted)
            _done(drv)
            del answer["v"]
            gate = _texts(drv, '.bar-row[data-name="gate_weights"] > span:first-child')
            assert gate == ["ssl_molex", LONG_EXPERT]  # the mixture's own weights keep the experts' names
            assert _texts(drv, '.bar-row[data-name="expert_scores"] > span:first-child') == gate
            hidden = drv.execute_script(
                "return ['gate_weights', 'expert_scores'].map(n => [...document.querySelectorAll("
                '`.bar-row[data-name="${n}"] > :nth-child(2)`)].map(e => e.hidden))'
            )
            assert hidden == [[False, False], [True, True]], hidden  # bars for weights only, never for log-odds
            lora = _texts(drv, '.bar-row[data-name="expert0/molex_gate_mean"] > span:first-child')
            assert lora == ["LoRA expert 0", "LoRA expert 1"], lora
            headings = _texts(drv, "#weights h4")
            # the mixture's own weights under a readable title (review 28), not the raw key "gate_weights"
            assert "ssl_molex: molex_gate_mean" in headings and "Gate weights" in headings, headings
            assert not drv.find_elements(By.CSS_SELECTOR, "#weights h3")  # under the block's own h3
            overflow = drv.execute_script(
                "return [...document.querySelectorAll('#weights .bar-row > span:first-child')]"
                ".map(e => e.scrollWidth - e.clientWidth)"
            )
            assert overflow and max(overflow) <= 0, overflow  # a long expert name wraps, it does not run over its bar

            changing = tmp_path / "changing.wav"
            sf.write(changing, audio, SR)
            _submit(drv, changing)
            _done(drv)
            # re-exported after it was scored (still chosen), then scored again
            sf.write(changing, np.concatenate([audio, audio[: SR // 4]]), SR)
            later = changing.stat().st_mtime + 10
            os.utime(changing, (later, later))
            text = _rescore_error(drv)
            assert text.startswith("could not read changing.wav: it was changed"), text
            assert "could not reach the service" not in text
            assert drv.find_element(By.ID, "submit").is_enabled()
            changing.unlink()  # deleted: the same, not "could not reach the service"
            assert _rescore_error(drv).startswith("could not read changing.wav: it was changed, moved or deleted")

            over = tmp_path / "over.wav"
            over.write_bytes(b"\1" * (limit_bytes + 2))
            text = _error_after(drv, over)
            shown = float(re.search(r"is ([0-9.]+) MB", text).group(1))
            assert shown > 0.05 and shown < 0.0501, text  # neither "0.05" nor a rounded-up "0.1"

            # a file dropped on the page (here two: the first is taken) is chosen, the page is not left for it
            dropped = drv.execute_script(
                "const dt = new DataTransfer();"
                "dt.items.add(new File(['x'], 'dropped.wav')); dt.items.add(new File(['y'], 'second.wav'));"
                "const over = new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true});"
                "const drop = new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true});"
                "const lead = document.querySelector('.lead');"
                "return [lead.dispatchEvent(over), lead.dispatchEvent(drop),"
                " [...document.getElementById('file').files].map(f => f.name)];"
            )
            assert dropped == [False, False, ["dropped.wav"]], dropped  # default (open the file) prevented
            assert "one file at a time" in drv.find_element(By.ID, "error").text

            # keyboard only, on a slow service: Enter on "Score", then Enter and Space again while it scores
            drv.find_element(By.ID, "file").send_keys(str(quoted))
            posts.update(n=0, delay=1.5)
            drv.execute_script("document.getElementById('submit').focus()")
            ActionChains(drv).send_keys(Keys.ENTER).perform()
            assert drv.find_element(By.ID, "submit").get_attribute("aria-disabled") == "true"
            ActionChains(drv).send_keys(Keys.ENTER).send_keys(Keys.SPACE).perform()
            _done(drv)
            assert posts["n"] == 1  # one upload, not three
            assert drv.switch_to.active_element.get_attribute("id") == "submit"  # focus kept for the next one
            assert drv.find_element(By.ID, "submit").get_attribute("aria-disabled") is None
        finally:
            drv.quit()


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_text_colours_have_aa_contrast_on_the_cards_and_the_page():
    """The muted grey (#6b7480) had 4.42:1 on the cards' background: under WCAG AA's 4.5:1 for the model's labels,
    the result table's headings, the file name and the statistics' headings, all normal-sized text."""
    css = (STATIC_DIR / "style.css").read_text()
    colours = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{6})", css))
    for text in ("fg", "muted", "bona", "spoof"):
        for background in (colours["card"], "#ffffff"):
            ratio = _contrast(colours[text], background)
            assert ratio >= 4.5, f"--{text} {colours[text]} on {background}: {ratio:.2f}:1"


def test_the_file_chooser_offers_every_suffix_the_service_reads():
    """The file input's accept list named 7 of the suffixes sdd reads: a browser's chooser filters by it, so NIST
    SPHERE (.sph: TIMIT, Switchboard), .amr, .w64, .wv, .au, .caf, .aif... were hidden unless the user switched the
    chooser to all files (Chrome maps audio/* to its own short list of suffixes on Windows and macOS)."""
    page = (STATIC_DIR / "index.html").read_text()
    accept = re.search(r'<input\b[^>]*\bid="file"[^>]*\baccept="([^"]*)"', page)
    assert accept, "the file input has no accept list"
    listed = set(accept.group(1).split(","))
    assert {"audio/*", "video/*"} <= listed
    assert not set(AUDIO_EXTENSIONS) - listed, sorted(set(AUDIO_EXTENSIONS) - listed)
