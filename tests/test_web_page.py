"""End-to-end test of the web page: uvicorn on 127.0.0.1, headless Chromium driven by Selenium.

Chromium and its driver come from Debian (``apt-get install chromium chromium-driver``); the test
installs them when missing and skips, saying why, only when they cannot be installed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scoring_support import save_tiny_lcnn
from test_service import _uvicorn

from sddkit.config import from_dict, to_dict
from sddkit.detectors.mixture import MixtureConfig, build_mixture
from sddkit.detectors.model_dir import save_model_dir
from sddkit.scoring.api import load_detector
from sddkit.service.app import create_app

SR = 16000
# one lock for every process of every test run on this machine: only one of them installs the browser
CHROMIUM_INSTALL_LOCK = Path(tempfile.gettempdir()) / "sddkit-tests-chromium-install.lock"
APT_LOCK_WAIT_S = 300  # how long apt-get waits for a dpkg lock held by another process
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1000,1400",
)


def _browser_paths() -> tuple[str | None, str | None]:
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def _ensure_chromium() -> tuple[str, str]:
    """Chromium + chromedriver paths, installing the Debian packages when missing (else skip).

    One process installs at a time (a lock file): on a fresh machine the suite's workers (pytest-xdist) reached the
    install together, and every apt-get but the first failed on dpkg's lock, so their browser tests skipped although
    the browser could be installed. apt-get also waits for a dpkg lock held by anything else on the machine."""
    browser, driver = _browser_paths()
    if browser and driver:
        return browser, driver
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium/chromium-driver are missing and cannot be installed here (no apt-get or not root)")
    with open(CHROMIUM_INSTALL_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        browser, driver = _browser_paths()  # installed by the worker that held the lock before this one
        if not (browser and driver):
            _apt_install_chromium()
    browser, driver = _browser_paths()
    if not (browser and driver):
        pytest.skip("chromium/chromedriver still missing after apt-get install")
    return browser, driver


def _apt_install_chromium() -> None:
    """``apt-get install chromium chromium-driver`` (after an ``apt-get update`` if the first try fails); skips the
    test, with apt-get's message, when it cannot."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}"]
    install = [*apt, "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    try:
        if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
            subprocess.run([*apt, "update"], env=env, capture_output=True, timeout=300)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.skip(f"apt-get could not install chromium: {done.stderr.strip()[-300:]}")
    except subprocess.TimeoutExpired:
        pytest.skip("installing chromium with apt-get timed out")


def _chrome(tmp_path, monkeypatch):
    """A headless Chromium driven by Selenium, on a fresh profile (the caller quits it)."""
    browser, driver_path = _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory):
    """A real two-expert mixture (log-Mel+LCNN, LFCC+linear) with an MLP gate: it reports gate weights."""
    spec = {
        "experts": [
            {
                "frontend": {"name": "logmel", "n_mels": 32},
                "backend": {"name": "lcnn", "channels": 8, "lstm_layers": 0},
            },
            {"frontend": {"name": "lfcc"}, "backend": {"name": "linear"}},
        ],
        "gate": {"name": "enhanced_mlp"},
        "expert_names": ["mel_lcnn", "lfcc_linear"],
    }
    cfg = from_dict(MixtureConfig, spec)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("web") / "mixture"
    save_model_dir(
        d,
        build_mixture(cfg).eval(),
        model_config=to_dict(cfg),
        architecture="mixture",
        inference={"window_samples": 8000},
    )
    return d


def test_upload_in_browser_shows_decision_and_gate_weights(tmp_path, mixture_dir, monkeypatch):
    _ensure_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(int(1.2 * SR))).astype(np.float32), SR)
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"definitely not audio" * 20)
    expected = load_detector(mixture_dir).score_file(wav)

    with _uvicorn(create_app(mixture_dir)) as port:
        url = f"http://127.0.0.1:{port}/"
        drv = _chrome(tmp_path, monkeypatch)
        try:
            wait = WebDriverWait(drv, 60)
            drv.get(url)
            wait.until(ec.text_to_be_present_in_element((By.ID, "model-info"), "mixture"))
            # each expert's front-end with its band (GET /v1/model's band_hz)
            shown_model = drv.find_element(By.ID, "model-info").text
            assert "mel_lcnn: logmel (20-7600 Hz)+lcnn, lfcc_linear: lfcc (0-8000 Hz)+linear" in shown_model
            drv.find_element(By.ID, "file").send_keys(str(wav))
            drv.find_element(By.ID, "submit").click()
            wait.until(lambda d: d.find_element(By.ID, "decision").get_attribute("data-decision"))
            decision = drv.find_element(By.ID, "decision")
            assert decision.get_attribute("data-decision") == expected.decision
            assert decision.text == ("bona fide" if expected.decision == "bonafide" else "spoof")
            assert drv.find_element(By.ID, "score").text == f"{expected.score:.3f}"
            assert drv.find_element(By.ID, "probability").text == f"{expected.probability:.3f}"
            assert drv.find_element(By.ID, "n-windows").text == str(expected.n_windows) == "4"
            assert len(drv.find_elements(By.CSS_SELECTOR, "#windows-plot line")) == 4 + 1  # a line each, threshold
            gate_rows = drv.find_elements(By.CSS_SELECTOR, '.bar-row[data-name="gate_weights"] .weight-value')
            shown = [float(e.text) for e in gate_rows]
            assert shown == pytest.approx(expected.weights["gate_weights"], abs=6e-4)
            assert sum(shown) == pytest.approx(1.0, abs=2e-3)
            labels = drv.find_elements(By.CSS_SELECTOR, '.bar-row[data-name="gate_weights"] > span:first-child')
            assert [e.text for e in labels] == ["mel_lcnn", "lfcc_linear"]  # the mixture's expert names
            drv.save_screenshot(str(tmp_path / "page.png"))
            # a bad file: the page shows the service's error, and the next good upload works again
            drv.find_element(By.ID, "file").send_keys(str(junk))
            drv.find_element(By.ID, "submit").click()
            wait.until(ec.visibility_of_element_located((By.ID, "error")))
            assert "audio_decode_error" in drv.find_element(By.ID, "error").text
            assert not drv.find_element(By.ID, "result").is_displayed()
            drv.find_element(By.ID, "file").send_keys(str(wav))
            drv.find_element(By.ID, "submit").click()
            wait.until(ec.visibility_of_element_located((By.ID, "result")))
            assert drv.find_element(By.ID, "decision").get_attribute("data-decision") == expected.decision
        finally:
            drv.quit()


def _model_info_text(app, tmp_path, monkeypatch) -> str:
    """The text of the page's model description, as Chromium renders it from GET /v1/model, and (after a line
    break) the labels of the result's score and probability rows, which follow the model's calibration."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with _uvicorn(app) as port:
        drv = _chrome(tmp_path, monkeypatch)
        try:
            drv.get(f"http://127.0.0.1:{port}/")
            WebDriverWait(drv, 60).until(lambda d: "calibration" in d.find_element(By.ID, "model-info").text)
            labels = [
                drv.find_element(By.ID, k).get_attribute("textContent") for k in ("score-label", "probability-label")
            ]
            return drv.find_element(By.ID, "model-info").text + "\n" + " | ".join(labels)
        finally:
            drv.quit()


def test_the_page_shows_a_calibration_recorded_without_its_prior(tmp_path, monkeypatch):
    """A hand-set map (``a``, ``b`` without ``prior``) calibrates every score the API returns: the page
    said "none (raw scores)" for it, since it read an absent prior as no calibration."""
    inference = {"window_samples": 8000, "calibration": {"a": 1.5, "b": 0.2}}
    model = save_tiny_lcnn(tmp_path / "lcnn", inference=inference)
    text = _model_info_text(create_app(model), tmp_path, monkeypatch)
    assert "a=1.500, b=0.200" in text and "raw scores" not in text
    assert text.endswith("Score (calibrated LLR) | Probability of bona fide (prior 0.5)")
    plain = save_tiny_lcnn(tmp_path / "plain")  # the identity map: raw scores, which the result rows say
    text = _model_info_text(create_app(plain), tmp_path, monkeypatch)
    assert "none (raw scores)" in text and text.endswith("Score (raw, not calibrated) | Sigmoid of the raw score")


def test_api_docs_page_renders_offline_in_the_browser(tmp_path, monkeypatch):
    """/docs draws the API from /openapi.json with scripts the service serves itself (Chromium here has no
    internet, as many deployments do not): every resource the page loads comes from the service."""
    _ensure_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with _uvicorn(create_app(save_tiny_lcnn(tmp_path / "lcnn"))) as port:
        origin = f"http://127.0.0.1:{port}"
        drv = _chrome(tmp_path, monkeypatch)
        try:
            drv.get(f"{origin}/docs")
            wait = WebDriverWait(drv, 60)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
            assert "sddkit scoring service" in drv.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
            paths = {e.text.strip() for e in drv.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
            assert {"/v1/score", "/v1/model", "/healthz"} <= {p.replace("\u200b", "") for p in paths}
            loaded = drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
            assert loaded and all(u.startswith(origin) for u in loaded), loaded
        finally:
            drv.quit()
