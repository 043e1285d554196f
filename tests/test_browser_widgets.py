"""The explorers in a real JupyterLab, driven by headless Chromium with the keyboard.

One JupyterLab server for the module, on 127.0.0.1 with a token, serving a copy of
release/ (the student notebooks). For each lesson: open the notebook, run every cell
the way a student does (Run > Run All Cells, and after each unfinished exercise's
NotImplementedError, Run > Run Selected Cell and All Below from the first cell that
did not run, since an error cancels the cells queued behind it), wait
for the explorer's sliders, then focus a slider handle, press the arrow keys and check
that the gradients shown as text and the plot image both change. A screenshot per
lesson goes to test-artifacts/widgets_<id>.png.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from browser import chromium_page, lab_server, screenshot
from lessons import ASSIGNMENTS, ROOT
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from course_lib.instructor.course import jupyterlab_server

# A JupyterLab server and its kernels (kernel), driven by Chromium (browser).
pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.browser]

# Deadlines that must not trip, far above what each step needs: on a 2-core machine kept
# busy by a CPU-burning process per core (`make test-stress`), JupyterLab and Chromium
# start in 11 s and a whole test (open, run to the explorer, react) takes 26 s at most
# (each test prints its steps' seconds: pytest -rP). A deadline only costs time when
# the test fails; together they stay under the test's timeout (pyproject.toml), so a
# stuck step says which it is.
NOTEBOOK_OPEN_S = 180    # the notebook rendered and its kernel idle
RUN_S = 300              # all cells up to the explorer run
CHANGE_S = 60            # the readout and the figure react to the keyboard (and any one
#                          Playwright action, such as a click, completes)
API_S = 60               # one request to JupyterLab's REST API
KEY_PRESSES = 6

# JupyterLab settings for the test server: no news or update toasts, and every
# cell of a notebook kept in the DOM (no windowing), so cells can be found by index.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass
class Lab:
    base: str
    token: str
    log: Path

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=API_S) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def tag_cells_raises_exception(path: Path) -> None:
    """Tag every code cell "raises-exception" in the test's copy of a release notebook.

    A release notebook's stubs raise NotImplementedError, and JupyterLab's Run All
    stops at the first error, cancelling the cells queued behind it; with the
    tag, Run All goes on past a stub, as nbclient's allow_errors does. Only
    this metadata changes; the cells are the students' own.
    """
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            tags = cell.metadata.setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of release/; stopped (terminate, then kill) at the end."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "release", root / "release")
    for nb_path in (root / "release").glob("*/*.ipynb"):
        tag_cells_raises_exception(nb_path)
    # port 0: the server picks a free one (course.serving_port learns which)
    cmd, env = jupyterlab_server(root / "release", 0, secrets.token_hex(16))
    with lab_server(cmd, env, root, cwd=root) as server:
        yield server


@pytest.fixture(scope="module")
def page(lab):
    with chromium_page(width=1400, height=1000) as page:
        page.set_default_timeout(CHANGE_S * 1000)
        page.goto(f"{lab.base}/lab?token={lab.token}", wait_until="domcontentloaded")
        yield page


# ---------------------------------------------------------------------------
# JupyterLab helpers
# ---------------------------------------------------------------------------

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# the state of the notebook's code cells, from their prompts: "[3]:", "[ ]:", "[*]:"
CELLS_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  return Array.from(nb.querySelectorAll('.jp-Cell')).map(c => {
    if (!c.classList.contains('jp-CodeCell')) return 'md';
    const p = c.querySelector('.jp-InputPrompt');
    const t = p ? p.textContent.replace(/\\s/g, '') : '';
    if (t.includes('*')) return 'running';
    return /\\d/.test(t) ? 'done' : 'new';
  });
}"""

# the index of the first code cell whose source builds an explorer (SomethingExplorer(...))
# that works before any exercise is answered: not lesson 05's EngineExplorer(Value), which
# draws the student's own engine (and says so while Value is not written yet)
EXPLORER_CELL_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const cells = Array.from(nb.querySelectorAll('.jp-Cell'));
  return cells.findIndex(c => c.classList.contains('jp-CodeCell')
    && /[A-Z][a-z]+Explorer\\((?!Value\\b)/.test(
         c.querySelector('.jp-InputArea-editor').textContent));
}"""

# the figure: its src and a digest of the PNG read back from it (an update replaces
# the blob URL and revokes the old one, so a read that loses that race is retried)
IMAGE_JS = """async (img) => {
  for (let i = 0; i < 20; i++) {
    const src = img.src;
    try {
      const buf = await (await fetch(src)).arrayBuffer();
      const h = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
      return [src, Array.from(h).map(b => b.toString(16).padStart(2, '0')).join('')];
    } catch (e) {
      await new Promise(r => setTimeout(r, 100));
    }
  }
  throw new Error('the figure could not be read back from ' + img.src);
}"""


def dismiss_dialogs(page) -> None:
    """Close whatever JupyterLab put in front: a kernel choice (accept), anything else
    (a build recommendation, ...) cancelled; toasts closed."""
    for _ in range(5):
        dialogs = page.locator(".jp-Dialog")
        if dialogs.count() == 0:
            break
        dialog = dialogs.first
        accept = dialog.locator(".jp-Dialog-button.jp-mod-accept")
        reject = dialog.locator(".jp-Dialog-button.jp-mod-reject")
        try:
            text = dialog.inner_text(timeout=2_000).lower()
            if "kernel" in text and accept.count():
                accept.first.click(timeout=2_000)
            elif reject.count():
                reject.first.click(timeout=2_000)
            else:
                page.keyboard.press("Escape")
        except Exception:  # noqa: BLE001 - the dialog went away on its own
            pass
        page.wait_for_timeout(200)
    for close in page.locator(".jp-toast-dismiss, .Toastify__close-button").all():
        try:
            close.click(timeout=1_000)
        except Exception:  # noqa: BLE001 - a toast that vanished meanwhile
            pass


def run_menu(page, *commands: str) -> None:
    """Run > the menu item of one of these JupyterLab commands (runmenu:run-all, ...)."""
    dismiss_dialogs(page)
    item = page.locator(", ".join(f".lm-Menu .lm-Menu-item[data-command='{c}']"
                                  for c in commands)).first
    if not item.is_visible():     # the Run menu is not open yet
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    item.click()


def kernel_idle(lab: Lab, path: str) -> bool:
    sessions = [s for s in lab.api("GET", "/api/sessions") if s.get("path") == path]
    return bool(sessions) and all(
        (s.get("kernel") or {}).get("execution_state") == "idle" for s in sessions)


def wait_settled(page, lab: Lab, path: str, deadline: float) -> list[str]:
    """Wait until no cell is queued or running and the kernel is idle, twice in a row."""
    calm = 0
    while True:
        cells = page.evaluate(CELLS_JS)
        if cells and "running" not in cells and kernel_idle(lab, path):
            calm += 1
            if calm >= 2:
                return cells
        else:
            calm = 0
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: still running after {RUN_S} s: {cells}")
        page.wait_for_timeout(300)


def run_until_explorer(page, lab: Lab, path: str):
    """Run all cells; after each stub's error go on from the first cell not yet run,
    until the cell that builds the explorer has run. Returns the explorer's locator."""
    deadline = time.monotonic() + RUN_S
    target = page.evaluate(EXPLORER_CELL_JS)
    assert target is not None and target >= 0, f"{path}: no cell builds an explorer"
    run_menu(page, "runmenu:run-all", "notebook:run-all-cells")
    while True:
        cells = wait_settled(page, lab, path, deadline)
        if cells[target] == "done":
            break
        # an error aborts the cells queued behind it: go on from the first one not run
        todo = [i for i, c in enumerate(cells[:target + 1]) if c == "new"]
        cell = page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(todo[0])
        cell.locator(".jp-InputPrompt").click()
        run_menu(page, "notebook:run-all-below")
    # the explorer that cell built (an earlier cell may have built another one)
    explorer = page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(target) \
        .locator(".cl-explorer").first
    handle = explorer.locator(".widget-slider .noUi-handle").first
    try:
        handle.wait_for(state="attached", timeout=CHANGE_S * 1000)
    except PlaywrightTimeout:
        cell = page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(target)
        shown = cell.locator(".jp-OutputArea").inner_text()[:500]
        raise AssertionError(f"{path}: the explorer cell ran but no slider appeared; "
                             f"the cell shows: {shown!r}") from None
    return explorer


def gradients_text(explorer) -> str:
    return " | ".join(explorer.locator(".cl-readout .cl-grad").all_inner_texts())


def image_state(explorer) -> tuple[str, str]:
    """(src, sha256 of the PNG) of the explorer's figure."""
    src, digest = explorer.locator("img.cl-figure").first.evaluate(IMAGE_JS)
    return src, digest


# ---------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------

def close_sessions(lab: Lab, path: str) -> None:
    """Shut the notebook's kernel down: one kernel at a time on a small machine."""
    try:
        for s in lab.api("GET", "/api/sessions"):
            if s.get("path") == path:
                lab.api("DELETE", f"/api/sessions/{s['id']}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass  # the server is gone: the fixture reports it


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_explorer_reacts_to_the_keyboard_in_jupyterlab(assignment, lab, page):
    path = f"{assignment}/{assignment}.ipynb"
    steps, start = {}, time.monotonic()  # seconds per step, printed (pytest -rP shows them)
    try:
        page.goto(f"{lab.base}/lab/tree/{path}?reset", wait_until="domcontentloaded")
        page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").first.wait_for(
            timeout=NOTEBOOK_OPEN_S * 1000)
        deadline = time.monotonic() + NOTEBOOK_OPEN_S
        while True:
            dismiss_dialogs(page)
            if kernel_idle(lab, path):
                break
            assert time.monotonic() < deadline, f"{path}: no idle kernel after {NOTEBOOK_OPEN_S} s"
            page.wait_for_timeout(300)
        steps["open"] = time.monotonic() - start

        explorer = run_until_explorer(page, lab, path)
        slider = explorer.locator(".widget-slider").first
        handle = slider.locator(".noUi-handle")
        handle.wait_for(state="visible", timeout=CHANGE_S * 1000)
        explorer.locator(".cl-readout .cl-grad").first.wait_for(timeout=CHANGE_S * 1000)
        dismiss_dialogs(page)
        steps["run"] = time.monotonic() - start - steps["open"]

        before_value = slider.locator(".widget-readout").inner_text()
        before_text = gradients_text(explorer)
        before_src, before_png = image_state(explorer)
        assert before_text and before_src, f"{path}: the explorer shows no gradient or no figure"

        handle.scroll_into_view_if_needed()
        handle.focus()
        for key in ["ArrowRight"] * KEY_PRESSES + ["ArrowUp"]:
            page.keyboard.press(key)
            page.wait_for_timeout(60)

        pressed = time.monotonic()
        deadline = pressed + CHANGE_S
        while True:
            after_value = slider.locator(".widget-readout").inner_text()
            after_text = gradients_text(explorer)
            after_src, after_png = image_state(explorer)
            if after_text != before_text and after_png != before_png:
                break
            assert time.monotonic() < deadline, (
                f"{path}: the arrow keys moved the slider from {before_value} to {after_value}; "
                f"within {CHANGE_S} s the gradients shown "
                f"{'changed' if after_text != before_text else 'did not change'} and the "
                f"figure {'changed' if after_png != before_png else 'did not change'}")
            page.wait_for_timeout(250)
        steps["react"] = time.monotonic() - pressed
        assert after_value != before_value, f"{path}: the slider still shows {before_value}"
        assert after_src != before_src, f"{path}: the figure changed but not its src"

        explorer.first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)  # let the last image paint
        shot = screenshot(page, f"widgets_{assignment}.png")
        assert shot.stat().st_size > 20_000, f"{shot} looks empty"
        (shot.parent / f"widgets_{assignment}_failed.png").unlink(missing_ok=True)
    except BaseException:
        with contextlib.suppress(Exception):
            screenshot(page, f"widgets_{assignment}_failed.png")
        raise
    finally:
        print(f"{path}: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
        close_sessions(lab, path)
