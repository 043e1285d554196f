"""Warm grading kernels (issue 17): the next kernel starts ahead, and is still a fresh one.

A kernel started ahead (course_lib.judge.warm) waits in its own sandbox, having
imported numpy, until the grader hands it a submission; each notebook gets one
such kernel that nothing graded before touched, and a kernel that ran a notebook
is never used again. The red-team suite (test_sandbox_attacks.py) grades its
attacks through the same path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from toycourse import ASSIGNMENT, RIGHT, graded_path, hand_in, make_course, submission

from course_lib.judge import warm

# What a grading kernel imports before its submission: numpy and the course's student
# modules; in the torch lesson's kernel torch, and that lesson's own modules, too.
NUMPY_PRELOAD = ["numpy", "numpy.random", "course_lib.nets", "course_lib.gradcheck",
                 "course_lib.data", "course_lib.grading", "course_lib.figures.chain_rule",
                 "course_lib.figures.sigmoid", "course_lib.figures.softmax",
                 "course_lib.figures.mlp", "course_lib.widgets"]
TORCH_KERNEL_PRELOAD = [*NUMPY_PRELOAD, "torch", "torch.fx.experimental.symbolic_shapes",
                        "course_lib.figures.autograd", "course_lib.widgets.autograd"]

# Each submission leaves its name on the numpy module (imported ahead, before any
# submission) and prints every name it finds there: a kernel used twice would show
# the earlier student's name in the later one's output.
MARK = '''
import os
import sys

import numpy

print("preloaded:", "numpy" in sys.modules, "files:", sorted(os.listdir(".")))
numpy.graded_here = getattr(numpy, "graded_here", []) + [{student!r}]
print("graded here:", numpy.graded_here)
'''


def _marked(student: str):
    nb = submission(RIGHT)
    nb.cells.insert(1, nbformat.v4.new_code_cell(MARK.format(student=student)))
    return nb


def _output(course: Path, student: str) -> str:
    nb = nbformat.read(str(graded_path(course, student)), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


@pytest.mark.kernel
def test_each_notebook_gets_a_kernel_started_ahead_that_no_other_submission_touched(tmp_path):
    from course_lib.instructor.grade import _WORKER_API, grade_class

    course = make_course(tmp_path / "course")
    students = ["amy", "ben", "cat"]
    for student in students:
        hand_in(course, student, _marked(student))
    (course / "submitted" / "ben" / ASSIGNMENT / "ben-data.txt").write_text("ben's own file")
    with pytest.MonkeyPatch.context() as mp:  # no standby expires (warm.IDLE) on a busy machine
        mp.setattr(warm, "IDLE", 3600.0)
        results = grade_class(course, jobs=1)
    assert [(r.student, r.score) for r in results] == [(s, 2.0) for s in students]
    for student in students:
        said = _output(course, student)
        assert f"graded here: [{student!r}]" in said, said  # nobody else's mark
        files = ["99_toy.ipynb"] + (["ben-data.txt"] if student == "ben" else [])
        assert f"preloaded: True files: {sorted(files)}" in said, said
    pool = _WORKER_API[str(course.resolve())].sealed.sandbox.warm
    # each was started ahead: the first while the grader loaded nbgrader, the next two
    # while the notebook before them ran
    assert (pool.cold, pool.adopted) == (0, 3)
    pool.close()
    assert not pool.has_standby()


def test_the_grading_kernel_preloads_numpy_and_torch_only_where_torch_is_allowed(tmp_path):
    from course_lib.judge import sandbox

    runtime, judge = tmp_path / "runtime", tmp_path / "judge"
    runtime.mkdir()
    judge.mkdir()
    box_maker = sandbox.Sandbox(tmp_path, runtime, judge)
    box_maker.no_torch = True
    assert box_maker.preload() == NUMPY_PRELOAD
    assert box_maker.kernel_env()["COURSE_PRELOAD"] == ",".join(NUMPY_PRELOAD)
    box_maker.no_torch = False
    assert box_maker.preload() == TORCH_KERNEL_PRELOAD
    assert sandbox.TORCH_PRELOAD[0] == "torch"
    box_maker.preload_torch = False  # a lesson that never imports torch
    assert box_maker.preload() == NUMPY_PRELOAD
    box_maker.preload_torch = True
    # two sandboxes that differ only in torch are different keys: no standby crosses
    cmd = ["python", "-m", "x", "-f", sandbox.CONNECTION_FILE]
    with_torch = box_maker.key(cmd)
    box_maker.no_torch = True
    assert box_maker.key(cmd) != with_torch
    assert box_maker.key(cmd) == box_maker.key(list(cmd))
    box_maker.warm.close()


class _FakeProcess:
    def __init__(self):
        self.killed = threading.Event()
        self.pid = 2**31 - 1  # above any pid_max: no process group to signal

    def poll(self):
        return 0 if self.killed.is_set() else None

    def kill(self):
        self.killed.set()

    def wait(self, timeout=None):
        return 0


class _Box:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir()


def _standby(tmp_path: Path, key, name: str) -> warm.Standby:
    return warm.Standby(key, _Box(tmp_path / name), _FakeProcess(), {})


def test_a_standby_is_taken_once_for_its_own_sandbox_and_killed_for_another(tmp_path):
    pool = warm.WarmPool()
    first = _standby(tmp_path, ("a",), "first")
    pool.prepare(("a",), lambda: first)
    taken, was_warm = pool.take(("a",), lambda: pytest.fail("a cold start"))
    assert (taken, was_warm) == (first, True) and not pool.has_standby()
    # taken once: the next kernel for the same sandbox is a new one
    second = _standby(tmp_path, ("a",), "second")
    assert pool.take(("a",), lambda: second) == (second, False)

    other = _standby(tmp_path, ("a",), "other")
    pool.prepare(("a",), lambda: other)
    fresh = _standby(tmp_path, ("b",), "fresh")
    assert pool.take(("b",), lambda: fresh) == (fresh, False)  # another assignment's sandbox
    assert other.process.killed.is_set() and not other.box.folder.exists()
    assert (pool.adopted, pool.cold) == (1, 2)


def test_a_dead_or_unused_standby_is_never_handed_out(tmp_path):
    pool = warm.WarmPool()
    dead = _standby(tmp_path, ("a",), "dead")
    pool.prepare(("a",), lambda: dead)
    dead.process.killed.set()  # it died while it waited
    fresh = _standby(tmp_path, ("a",), "fresh")
    assert pool.take(("a",), lambda: fresh) == (fresh, False)

    idle = warm.WarmPool(idle=0.05)
    unused = _standby(tmp_path, ("a",), "unused")
    idle.prepare(("a",), lambda: unused)
    assert unused.process.killed.wait(60)  # killed after IDLE seconds unused
    assert not idle.has_standby()
    deadline = time.monotonic() + 60  # its folder goes right after (the timer's thread)
    while unused.box.folder.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not unused.box.folder.exists()

    closed = warm.WarmPool()
    closed.close()
    closed.prepare(("a",), lambda: pytest.fail("a closed pool starts nothing"))


@pytest.mark.parametrize("said, served", [(b"go\n", True), (b"", False), (b"stop\n", False)])
def test_a_kernel_started_ahead_serves_only_after_go(said, served):
    """judge.launcher.wait_for_submission: "go" returns; anything else ends the process."""
    code = ("import sys; from course_lib.judge.launcher import wait_for_submission; "
            "wait_for_submission(); print('serving')")
    run = subprocess.run([sys.executable, "-c", code], input=said, capture_output=True,
                         timeout=120, env={**os.environ})
    assert run.returncode == 0, run.stderr
    assert (b"serving" in run.stdout) == served


def test_a_kernel_started_ahead_imports_torch_only_for_a_lesson_that_imports_it(tmp_path):
    """Sealed.for_assignment: torch costs a second of CPU per kernel, so it is preloaded
    only where the source notebook imports it; the toy lesson does not."""
    from toycourse import ASSIGNMENT, make_course

    from course_lib.judge.sealed import Sealed

    course = make_course(tmp_path / "course")
    torch_lesson = course / "source" / "05_like" / "05_like.ipynb"
    torch_lesson.parent.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import numpy as np\n"
                                                                   "from torch import nn")])
    nbformat.write(nb, str(torch_lesson))
    sealed = Sealed(course)
    try:
        sealed.for_assignment(ASSIGNMENT)
        assert sealed.sandbox.preload() == NUMPY_PRELOAD
        sealed.for_assignment("05_like")
        assert sealed.sandbox.preload() == TORCH_KERNEL_PRELOAD
        sealed.settings.manual_gradient_assignments = ["05_like"]
        sealed.for_assignment("05_like")  # torch is the stub there: never preloaded
        assert sealed.sandbox.preload() == NUMPY_PRELOAD
    finally:
        sealed.sandbox.warm.close()
        sealed.close()


def test_the_kernel_started_ahead_is_the_one_the_next_notebook_takes(tmp_path, monkeypatch):
    """Sealed.expect_next: after a notebook of one lesson, the kernel started ahead has the
    sandbox of the lesson graded next (torch preloaded for a torch lesson), and none is
    started when no notebook follows (it cost as much CPU as a notebook, for nothing)."""
    from toycourse import ASSIGNMENT, make_course

    from course_lib.judge.sandbox import CONNECTION_FILE, SandboxKernelManager
    from course_lib.judge.sealed import KERNEL_NAME, Sealed

    course = make_course(tmp_path / "course")
    torch_lesson = course / "source" / "05_like" / "05_like.ipynb"
    torch_lesson.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")]),
                   str(torch_lesson))
    sealed = Sealed(course)
    prepared = []
    monkeypatch.setattr(sealed.sandbox.warm, "prepare", lambda key, launch: prepared.append(key))
    try:
        sealed.begin(ASSIGNMENT, {})  # the toy notebook's kernel: numpy only
        km = SandboxKernelManager(kernel_name=KERNEL_NAME)
        km.connection_file = CONNECTION_FILE
        km.template = km.format_kernel_cmd(extra_arguments=[])
        km.key = (type(km).__name__, *sealed.sandbox.key(km.template))

        sealed.expect_next("05_like")
        km._start_next()
        sealed.for_assignment("05_like")  # what Sealed.begin sets for that notebook
        torch_key = (type(km).__name__, *sealed.sandbox.key(km.template))
        assert torch_key != km.key and prepared == [torch_key]

        sealed.expect_next(False)  # the last notebook of this process
        km._start_next()
        assert prepared == [torch_key]

        sealed.for_assignment(ASSIGNMENT)
        sealed.expect_next(True)  # not known: one like this notebook's (course check)
        km._start_next()
        assert prepared == [torch_key, km.key]
    finally:
        sealed.end()
        sealed.sandbox.warm.close()
        sealed.close()


def _course_modules_imported_by(assignment: str) -> set[str]:
    """The course_lib modules a lesson's code cells import (``from course_lib.figures
    import mlp`` imports course_lib.figures.mlp; ``from course_lib.widgets import X``,
    course_lib.widgets)."""
    import ast
    import importlib.util

    from lessons import source_path

    found = set()
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_lib"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    try:
                        is_module = importlib.util.find_spec(sub) is not None
                    except ModuleNotFoundError:  # node.module is a module, not a package
                        is_module = False
                    found.add(sub if is_module else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("course_lib")}
    return found


def test_the_grading_kernel_preloads_what_the_lessons_import_of_the_course():
    """Every course module a lesson imports is imported before its submission (a
    module left out costs every graded notebook its import), and each one preloaded is
    one a lesson imports (anything else costs every kernel for nothing)."""
    from lessons import ASSIGNMENTS, source_path

    def covered(module, preload):  # a package is imported with its submodules
        return any(p == module or p.startswith(module + ".") for p in preload)

    imported = set()
    for assignment in ASSIGNMENTS:
        preload = TORCH_KERNEL_PRELOAD if assignment == "05_autograd" else NUMPY_PRELOAD
        modules = _course_modules_imported_by(assignment)
        assert {m for m in modules if not covered(m, preload)} == set(), assignment
        imported |= modules
    assert {m for m in TORCH_KERNEL_PRELOAD if m.startswith("course_lib")} <= imported
    # numpy.random (imported by numpy only when first used): most lessons use it
    uses_random = [a for a in ASSIGNMENTS if "np.random." in source_path(a).read_text()]
    assert len(uses_random) >= 3, uses_random


def test_the_course_modules_preloaded_import_neither_matplotlib_nor_ipywidgets():
    """In grading mode the preload stays light: no pyplot, no widgets library."""
    probe = ("import importlib, sys\n"
             f"for m in {TORCH_KERNEL_PRELOAD!r}: importlib.import_module(m)\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', "
             "'ipywidgets'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, "COURSE_GRADING": "1"}, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
