"""Helpers for tests that build and grade lesson notebooks.

    make_submission("02_sigmoid", {"sigmoid_prime_answer": "def sigmoid_prime(z): ..."}, tmp_path)
    result = grade(path, "02_sigmoid")          # a CheckResult (course_lib.instructor.check)
    result.cell("sigmoid_prime_values").score   # 0.0 when the mistake is caught
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from course_lib.instructor.check import CheckResult, check_notebook
from course_lib.judge.polled_client import PolledKernelManager

ROOT = Path(__file__).resolve().parents[1]
# Limits for notebooks a test runs with nbclient (run_notebook), in seconds: a cell (a
# lesson's slowest, lesson 05's that imports torch, needs 1.4 s on a quiet 2-core
# machine and 10 s on a saturated one) and a kernel's start (a few seconds on a busy
# machine). Far above the need, and above the rare stalls of a virtual machine (two
# minutes inside one cell, seen once in CI): no test depends on the machine's speed.
CELL_TIMEOUT = 600
STARTUP_TIMEOUT = 600
ASSIGNMENTS = ("01_chain_rule", "02_sigmoid", "03_softmax_jacobian", "04_backprop_mlp",
               "05_autograd")


def source_path(assignment: str) -> Path:
    return ROOT / "source" / assignment / f"{assignment}.ipynb"


def release_path(assignment: str) -> Path:
    return ROOT / "release" / assignment / f"{assignment}.ipynb"


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def notebook_answers(assignment: str, names, namespace: dict) -> dict[str, object]:
    """The graded functions as the source notebook defines them (solutions included).

    Executes every answer cell of the source notebook in ``namespace`` (the
    imports the notebook made earlier, e.g. ``{"np": np}``) and returns
    ``{name: object}`` for each of ``names``.
    """
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    for cell in nb.cells:
        if (grade_id(cell) or "").endswith("_answer"):
            exec(cell.source, namespace)  # noqa: S102 - our own notebook's solution code
    return {name: namespace[name] for name in names}


def make_submission(assignment: str, replacements: dict[str, str], folder: Path,
                    name: str = "submission") -> Path:
    """The source notebook with the given answer cells' code replaced.

    Args:
        assignment: the assignment id.
        replacements: {grade_id of an answer cell: the code a student wrote}.
        folder: where to write the notebook.
    Returns:
        the path of the new notebook.
    """
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    missing = set(replacements) - {grade_id(c) for c in nb.cells}
    if missing:
        raise KeyError(f"{assignment} has no cell(s) {sorted(missing)}")
    for cell in nb.cells:
        if grade_id(cell) in replacements:
            cell.source = replacements[grade_id(cell)]
    path = Path(folder) / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def grade(path: Path, assignment: str) -> CheckResult:
    return check_notebook(path, assignment, course_root=ROOT)


def run_notebook(nb, folder: Path, kernel_name: str = "python3", allow_errors: bool = False,
                 env: dict | None = None):
    """Execute ``nb`` top to bottom in a fresh kernel (working folder ``folder``), with
    the limits above; returns it, outputs filled in."""
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, startup_timeout=STARTUP_TIMEOUT,
                            kernel_name=kernel_name, allow_errors=allow_errors,
                            kernel_manager_class=PolledKernelManager,
                            resources={"metadata": {"path": str(folder)}})
    client.execute(**({"env": env} if env is not None else {}))
    return nb
