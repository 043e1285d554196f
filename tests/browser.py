"""Headless Chromium for tests: Debian's /usr/bin/chromium driven by Playwright.

Nothing is downloaded: Playwright's own browser builds are never used.
Screenshots go to test-artifacts/ (ignored by git), for a person to look at.
"""

from __future__ import annotations

import contextlib
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
