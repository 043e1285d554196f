"""Every source lesson runs headless to the end, again and again.

A stall that comes once in a few runs (a kernel reply nbclient never saw, a widget
waiting for a front end that is not there) passes any single run. This test runs each
of the five source lessons COURSE_LESSON_RUNS times in a row, each time in a fresh
kernel through tests/lessons.py's run_notebook (the polled kernel client, the limits
of every other notebook run), and asserts that every run completes with no error.

    COURSE_LESSON_RUNS=10 .venv/bin/python -m pytest -q tests/test_lessons_run_repeatedly.py

COURSE_LESSON_RUNS defaults to 0: the test is skipped, so `make test` does not pay for
it (a lesson takes 3-20 s per run on 2 cores). It starts kernels, so conftest.py marks
it `kernel` (it names run_notebook, which names nbclient's NotebookClient). A run's
time is printed, never asserted: no test depends on the machine's speed.
"""

from __future__ import annotations

import os
import time

import nbformat
import pytest
from lessons import ASSIGNMENTS, run_notebook, source_path


def runs() -> int:
    text = os.environ.get("COURSE_LESSON_RUNS", "0").strip() or "0"
    if not text.isdigit():
        raise ValueError(f"COURSE_LESSON_RUNS: expected a whole number of runs, got {text!r}")
    return int(text)


def errors(nb) -> list[tuple[int, str, str]]:
    """(cell index, error name, message) of every error output."""
    return [(i, o.ename, o.evalue) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.output_type == "error"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_lesson_runs_to_the_end_every_time(assignment):
    n = runs()
    if n == 0:
        pytest.skip("set COURSE_LESSON_RUNS=N (e.g. 10) to run each source lesson N times")
    path = source_path(assignment)
    seconds = []
    for run in range(1, n + 1):
        nb = nbformat.read(str(path), as_version=4)  # a fresh copy: nothing left from a run
        start = time.monotonic()
        # allow_errors: an error is reported below with its run and cell, not as nbclient's
        # first exception; a stall ends at run_notebook's cell limit with CellTimeoutError.
        try:
            run_notebook(nb, path.parent, allow_errors=True)
        except Exception as exc:  # noqa: BLE001 - a timeout or a dead kernel: say which run
            pytest.fail(f"expected run {run} of {n} of {assignment} to complete, got "
                        f"{type(exc).__name__} after {time.monotonic() - start:.0f} s: {exc}")
        seconds.append(time.monotonic() - start)
        found = errors(nb)
        assert found == [], \
            f"expected run {run} of {n} of {assignment} to complete with no error, got {found}"
    print(f"\n{assignment}: {n} runs, seconds per run: "
          + ", ".join(f"{s:.1f}" for s in seconds))
