"""Helpers for tests that build and grade lesson notebooks, and the shared lesson harness.

    make_submission("02_sigmoid", {"sigmoid_prime_answer": "def sigmoid_prime(z): ..."}, tmp_path)
    result = grade(path, "02_sigmoid")          # a CheckResult (course_lib.instructor.check)
    result.cell("sigmoid_prime_values").score   # 0.0 when the mistake is caught

Each lesson's test file runs the harness on its lesson's exercises, as the manifest
(course_lib/manifest/) lists them; tests/conftest.py parametrises it:

    class TestLesson(LessonHarness):
        LESSON = "sigmoid"
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

import nbformat
import pytest
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


# Modules a lesson imports only to draw: no answer cell uses them, and they are slow to import.
DRAWING_MODULES = ("course_lib.figures", "course_lib.widgets", "ipywidgets", "matplotlib")


def lesson_namespace(assignment: str) -> dict:
    """The names the source notebook imports before its answers (``np``, ``torch``, ``F``,
    ``nets``...): each import statement of its ungraded code cells, drawing modules aside."""
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.metadata.get("nbgrader", {}).get("grade_id"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics: such a cell imports nothing an answer needs
            continue
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""]
                if not any(m.startswith(DRAWING_MODULES) for m in modules):
                    exec(compile(ast.Module([node], []), "<imports>", "exec"), namespace)  # noqa: S102
    return namespace


def notebook_answers(assignment: str, names, namespace: dict | None = None,
                     edit: tuple[str, str, str] | None = None) -> dict[str, object]:
    """The graded functions as the source notebook defines them (solutions included).

    Executes every answer cell of the source notebook in ``namespace`` (default: the
    notebook's own imports, lesson_namespace) and returns ``{name: object}`` for each of
    ``names``. ``edit`` = (grade id of an answer cell, old, new) makes one mistake first:
    ``old`` replaced by ``new`` in that cell (a ValueError when ``old`` is not there).
    """
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    namespace = lesson_namespace(assignment) if namespace is None else namespace
    for cell in nb.cells:
        gid = grade_id(cell) or ""
        if gid.endswith("_answer"):
            source = cell.source
            if edit is not None and gid == edit[0]:
                if edit[1] not in source:
                    raise ValueError(f"{edit[1]!r} is not in {assignment}/{gid}")
                source = source.replace(edit[1], edit[2])
            exec(source, namespace)  # noqa: S102 - our own notebook's solution code
    missing = [name for name in names if name not in namespace]
    if missing:
        raise KeyError(f"no answer cell of {assignment} defines {', '.join(missing)}")
    return {name: namespace[name] for name in names}


SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*$",
                      re.S | re.M)


def unanswered(assignment: str, function: str):
    """``function`` as the release hands it out: each solution block replaced by
    ``raise NotImplementedError()``, nbgrader's code stub."""
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    cell = next((c for c in nb.cells if grade_id(c) == f"{function}_answer"), None)
    if cell is None:
        raise KeyError(f"{assignment} has no answer cell {function}_answer")
    namespace = lesson_namespace(assignment)
    exec(SOLUTION.sub(lambda m: f"{m.group(1)}raise NotImplementedError()", cell.source),  # noqa: S102
         namespace)
    return namespace[function]


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
    the limits above; returns it, outputs filled in.

    A kernel that never started is started again (twice at most): these kernels listen
    on TCP ports picked free a moment before they bind them, and another test's process
    can take one in between (grading retries for the same reason: grade_reliably)."""
    for attempt in range(3):
        client = NotebookClient(nb, timeout=CELL_TIMEOUT, startup_timeout=STARTUP_TIMEOUT,
                                kernel_name=kernel_name, allow_errors=allow_errors,
                                kernel_manager_class=PolledKernelManager,
                                resources={"metadata": {"path": str(folder)}})
        try:
            client.execute(**({"env": env} if env is not None else {}))
            return nb
        except RuntimeError as exc:
            ran = any(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
            if attempt == 2 or ran or "before replying to kernel_info" not in str(exc):
                raise


def printed(cell) -> str:
    """All a code cell printed to stdout. A kernel may send one cell's prints as several
    stream messages (it flushes when it likes), so never read just the first output."""
    return "".join(o.text for o in cell.outputs
                   if o.output_type == "stream" and o.name == "stdout")


# ---------------------------------------------------------------------------
# the shared lesson harness
# ---------------------------------------------------------------------------

SEEDS = ("20261125", "1", "987654321")  # grading seeds (COURSE_GRADING_SEED)


@functools.cache
def _solutions(assignment: str) -> dict[str, object]:
    """{function: the source notebook's answer, or None} for the lesson's exercises; the
    answer cells run once per lesson and test session."""
    from course_lib import manifest

    functions = [e.function for e in manifest.lesson(assignment).exercises]
    namespace = lesson_namespace(assignment)
    notebook_answers(assignment, [], namespace)
    return {f: namespace.get(f) for f in functions}


def checker(exercise):
    """The check of a manifest exercise: check_<function> of grading/<slug>.py."""
    return getattr(importlib.import_module(f"course_lib.grading.{exercise.lesson}"), exercise.check)


def reference(exercise):
    """The reference answer of a manifest exercise, from reference/<slug>.py."""
    return getattr(importlib.import_module(f"course_lib.reference.{exercise.lesson}"),
                   exercise.function)


class LessonHarness:
    """What every lesson's checks must do, for each exercise of the lesson's manifest.

    A lesson's test file subclasses it with ``LESSON = "<slug>"``; tests/conftest.py
    (pytest_generate_tests) gives each test the lesson's ``exercise`` objects, its
    parts (``part``: each of them, then "all") and the grading ``seed``s.
    """

    LESSON: str

    def test_reference_passes_every_part(self, exercise, part, seed, monkeypatch):
        monkeypatch.setenv("COURSE_GRADING_SEED", seed)
        checker(exercise)(reference(exercise), part=part)

    def test_notebook_solution_passes_every_part(self, exercise, seed, monkeypatch):
        monkeypatch.setenv("COURSE_GRADING_SEED", seed)
        from course_lib import manifest

        assignment = manifest.lesson(self.LESSON).assignment
        solution = _solutions(assignment)[exercise.function]
        assert solution is not None, f"no answer cell of {assignment} defines {exercise.function}"
        checker(exercise)(solution)

    def test_unknown_part_is_refused(self, exercise):
        with pytest.raises(ValueError, match="part: unknown value 'no_such_part'"):
            checker(exercise)(reference(exercise), part="no_such_part")

    def test_unanswered_exercise_stays_not_implemented(self, exercise, part):
        from course_lib import manifest

        stub = unanswered(manifest.lesson(self.LESSON).assignment, exercise.function)
        with pytest.raises(NotImplementedError, match="not implemented yet"):
            checker(exercise)(stub, part=part)


def parts(function: str) -> tuple[str, ...]:
    """The parts of an exercise, in the manifest's order."""
    from course_lib import manifest

    return tuple(p.name for p in manifest.exercise(function).parts)


def autograded_cells(assignment: str) -> list[str]:
    """The grade ids of a lesson's autograded test cells, in the manifest's order."""
    from course_lib import manifest

    return [p.grade_id for e in manifest.lesson(assignment).exercises for p in e.parts]


def lesson_parts(assignment: str) -> dict[str, tuple[str, ...]]:
    """{function: its parts} for each exercise of a lesson, from the manifest."""
    from course_lib import manifest

    return {e.function: parts(e.function) for e in manifest.lesson(assignment).exercises}
