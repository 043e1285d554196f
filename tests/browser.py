"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright.

Nothing is downloaded: Playwright's own browser builds are never used.
Screenshots go to test-artifacts/ (ignored by git), for a person to look at.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import urllib.error
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Playwright's limit for one action (a page load, a click, a wait for an element), in
# seconds: what a page here needs is under a second, also on a busy machine; this only
# costs time when a test fails.
ACTION_TIMEOUT_S = 120


@contextlib.contextmanager
def chromium_page(width: int = 1280, height: int = 900):
    """A fresh page in a fresh headless Chromium; closed afterwards."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(ACTION_TIMEOUT_S * 1000)
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


# -- a Jupyter server a test started ----------------------------------------------------------

def wait_until_answering(proc, server, deadline: float) -> None:
    """Wait until ``server`` (a test_browser_widgets.Lab on ``proc``) answers /api/status.
    ``deadline`` (time.monotonic()) is a hang guard only: no test measures speed."""
    import pytest

    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            server.api("GET", "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer in time:\n{server.log_tail()}")
            time.sleep(0.25)


def printed_token(proc, log: Path, deadline: float) -> str:
    """The token `course formgrader` printed in its URL (it makes its own)."""
    import pytest

    while not (found := re.search(r"/formgrader\?token=([0-9a-f]+)", log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no formgrader URL was printed:\n{log.read_text()}")
        time.sleep(0.2)
    return found.group(1)


def stop(proc, wait_s: float = 30) -> None:
    """Stop a server a test started (SIGTERM, then SIGKILL if it lingers)."""
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
