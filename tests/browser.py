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


# A hang guard only: a quiet machine starts a server in a few seconds.
SERVER_START_S = 180


@contextlib.contextmanager
def lab_server(cmd: list[str], env: dict[str, str], root: Path, cwd: Path):
    """A JupyterLab command (course.jupyterlab_server's, port 0) started with its own
    Jupyter, IPython and workspace folders under ``root`` and the tests' settings (no
    news, every cell rendered), so the user's stay untouched. Yields the server (a
    test_browser_widgets.Lab) once it answers, at the port it chose; stopped afterwards."""
    import json

    import pytest
    from test_browser_widgets import SETTINGS, Lab

    from course_lib.instructor.course import serving_port

    settings = root / "settings"
    for name, values in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    for sub in ("config", "data", "runtime", "ipython", "workspaces"):
        (root / sub).mkdir()
    env = dict(env, JUPYTER_CONFIG_DIR=str(root / "config"), JUPYTER_DATA_DIR=str(root / "data"),
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), IPYTHONDIR=str(root / "ipython"))
    cmd = [*cmd, f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={root / 'workspaces'}"]
    token = next(a.split("=", 1)[1] for a in cmd if a.startswith("--IdentityProvider.token="))
    log = root / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        port = serving_port(proc, env)
        if port is None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        server = Lab(f"http://127.0.0.1:{port}", token, log)
        wait_until_answering(proc, server, time.monotonic() + SERVER_START_S)
        yield server
    finally:
        stop(proc)


@contextlib.contextmanager
def formgrader_server(course: Path, home: Path):
    """`course formgrader` on ``course``, as `make formgrader` starts it, in a subprocess
    with its own Jupyter folders under ``home`` and a PATH without this venv (the command
    must find its tools itself). Yields the server (a test_browser_widgets.Lab) once it
    answers, at the URL the command printed; stopped afterwards."""
    import os
    import sys

    import pytest
    from test_browser_widgets import Lab

    for sub in ("config", "data", "runtime", "ipython"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "COURSE_DB_URL"}
    env.update(COURSE_ROOT=str(course), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               IPYTHONDIR=str(home / "ipython"), PATH="/usr/bin:/bin")
    log = home / "formgrader.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "course_lib.instructor.formgrader"],
                                cwd=course, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + SERVER_START_S
        url = re.compile(r"(http://127\.0\.0\.1:\d+)/formgrader\?token=([0-9a-f]+)")
        while not (found := url.search(log.read_text(errors="replace"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no formgrader URL was printed:\n{log.read_text()}")
            time.sleep(0.2)
        server = Lab(found.group(1), found.group(2), log)
        wait_until_answering(proc, server, deadline)
        yield server
    finally:
        stop(proc)  # the command stops the server it started


def stop(proc, wait_s: float = 30) -> None:
    """Stop a server a test started (SIGTERM, then SIGKILL if it lingers)."""
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
