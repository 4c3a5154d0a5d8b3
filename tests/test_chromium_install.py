"""The browser tests' install of Chromium: one process installs, the others wait for it.

On a fresh machine the suite's pytest-xdist workers reached ``apt-get install chromium`` together; every one but the
first failed on dpkg's lock and skipped its browser test, although the browser could be (and was) installed. The
install is now serialised by a lock file; these tests run the real lock with a fake apt-get.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import test_web_page as web


class FakeApt:
    """apt-get that takes a while to install, fails like dpkg when two run at once, and counts its runs."""

    def __init__(self):
        self.installed = False
        self.running = 0
        self.runs: list[list[str]] = []
        self.overlapped = False
        self._mutex = threading.Lock()

    def run(self, cmd, **kwargs):
        with self._mutex:
            self.runs.append(list(cmd))
            self.running += 1
            self.overlapped |= self.running > 1
        try:
            time.sleep(0.3)
            with self._mutex:
                if self.overlapped:
                    return subprocess.CompletedProcess(cmd, 100, "", "E: Could not get lock /var/lib/dpkg/lock")
                self.installed = True
            return subprocess.CompletedProcess(cmd, 0, "", "")
        finally:
            with self._mutex:
                self.running -= 1

    def paths(self):
        return ("/usr/bin/chromium", "/usr/bin/chromedriver") if self.installed else (None, None)


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    apt = FakeApt()
    monkeypatch.setattr(web, "CHROMIUM_INSTALL_LOCK", tmp_path / "install.lock")
    monkeypatch.setattr(web, "_browser_paths", apt.paths)
    monkeypatch.setattr(web.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(web.os, "geteuid", lambda: 0)
    monkeypatch.setattr(web.subprocess, "run", apt.run)
    return apt


def test_concurrent_callers_install_once_and_none_skips(fake_apt):
    results, skips = [], []

    def call():
        try:
            results.append(web._ensure_chromium())
        except pytest.skip.Exception as e:  # what the unserialised install did to all callers but the first
            skips.append(str(e))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert skips == []
    assert results == [("/usr/bin/chromium", "/usr/bin/chromedriver")] * 3
    assert not fake_apt.overlapped
    assert len(fake_apt.runs) == 1  # the callers after the first found the browser installed


def test_apt_get_waits_for_a_dpkg_lock_held_by_another_program(fake_apt):
    web._ensure_chromium()
    (cmd,) = fake_apt.runs
    assert cmd[:3] == ["apt-get", "-o", f"DPkg::Lock::Timeout={web.APT_LOCK_WAIT_S}"]
    assert cmd[3:] == ["install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
