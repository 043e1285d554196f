"""A one-assignment course in a temporary folder, for tests of the instructor tools.

The assignment "99_toy" has one answer cell (sigmoid_prime), one autograded
test cell worth 2 points whose hidden part calls course_lib.grading, and one
written answer worth 1 point graded by hand.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "99_toy"
RIGHT = ("def sigmoid_prime(z):\n    import numpy as np\n    s = 1 / (1 + np.exp(-np.asarray(z, "
         "dtype=float)))\n    return s * (1 - s)")
SIGMOID_INSTEAD = ("def sigmoid_prime(z):\n    import numpy as np\n"
                   "    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))")
# right only in a kernel that is pid 2 beside /init: one forked from a zygote
RIGHT_ONLY_AS_PID_2 = ("def sigmoid_prime(z):\n    import os\n    import numpy as np\n"
                       "    s = 1 / (1 + np.exp(-np.asarray(z, dtype=float)))\n"
                       "    return s * (1 - s) * (os.getpid() == 2)")


def _cell(kind, source, **nbgrader):
    cell = (nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell)(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "task": False, **nbgrader}
    return cell


def toy_notebook(answer: str = RIGHT, written: str = "Because σ' peaks at 1/4."):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    body = answer.replace("def sigmoid_prime(z):\n", "")
    nb.cells = [
        _cell("markdown", "# A toy assignment"),
        _cell("code", "def sigmoid_prime(z):\n    ### BEGIN SOLUTION\n" + body
              + "\n    ### END SOLUTION", grade=False, solution=True, locked=False,
              grade_id="sigmoid_prime_answer"),
        _cell("code", "### BEGIN HIDDEN TESTS\nfrom course_lib import grading\n"
              "grading.check_sigmoid_prime(sigmoid_prime, part='values')\n"
              "### END HIDDEN TESTS\nassert abs(sigmoid_prime(0.0) - 0.25) < 1e-12",
              grade=True, solution=False, locked=True, points=2,
              grade_id="sigmoid_prime_values"),
        _cell("markdown", "Why is σ' at most 1/4?"),
        _cell("markdown", written, grade=True, solution=True, locked=False, points=1,
              grade_id="written_why"),
    ]
    return nb


def submission(answer: str = RIGHT, written: str = "Because σ' peaks at 1/4."):
    """A student's notebook: the answer cell holds exactly `answer`."""
    nb = toy_notebook(written=written)
    nb.cells[1].source = answer
    return nb


# The toy course's limit per cell (nbgrader's Execute.timeout), in seconds. No test may
# depend on the machine's speed: a toy cell that must finish needs 0.5 s at most on a
# quiet 2-core machine, 1.2 s under a load average of 5 to 9 (measured), so this is
# 10 times the need; a cell that must trip the limit never ends (NEVER_ENDS), and waits
# out the whole limit each time it is graded (so no more than that 10 times).
CELL_TIMEOUT = 12
# An answer that never ends: it trips any time limit. It sleeps, so the seconds it
# waits for the limit cost no CPU (the infinite-loop cell of tests that run in
# parallel with others).
NEVER_ENDS = "import time\nwhile True:  # never ends\n    time.sleep(1)"


def make_course(folder: Path, timeout: int = CELL_TIMEOUT) -> Path:
    """Create the toy course in `folder` (nbgrader_config.py copied from the repo)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = (ROOT / "nbgrader_config.py").read_text()
    (folder / "nbgrader_config.py").write_text(
        config + f"\n# the toy course's limit per cell\nc.Execute.timeout = {timeout}\n")
    (folder / "source" / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(toy_notebook(), str(folder / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    return folder


def hand_in(course: Path, student: str, notebook=None) -> Path:
    """Place a student's submission: a notebook, raw text or bytes (a broken file), or
    None (a folder without a notebook). Returns the notebook's path."""
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ASSIGNMENT}.ipynb"
    if isinstance(notebook, str):
        path.write_text(notebook)
    elif isinstance(notebook, bytes):
        path.write_bytes(notebook)
    elif notebook is not None:
        nbformat.write(notebook, str(path))
    return path


def graded_path(course: Path, student: str) -> Path:
    """Where autograde writes a student's graded notebook (hand_in's counterpart)."""
    return course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
