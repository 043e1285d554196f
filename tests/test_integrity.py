"""Bad and tampered submissions: each gets its score, its status, and a flag (what cost points)
or a note (suspicious code that cost nothing: the judge's verdicts decide).

One toy class (tests/toycourse.py: one answer cell, one 2-point test cell with a
hidden check, one 1-point written answer) holds a submission per fault and per
kind of tampering; it is graded once, sealed, by the same code as `course
grade`. A few cases run on the real lessons through `course check`.
"""

from __future__ import annotations

import hashlib

import nbformat
import pytest
from lessons import grade, make_submission
from toycourse import (
    RIGHT,
    SIGMOID_INSTEAD,
    graded_path,
    hand_in,
    make_course,
    submission,
)

from course_lib.instructor.grade import grade_class

WRONG = SIGMOID_INSTEAD  # returns σ instead of σ': the hidden check fails it
NORMAL = "awaiting_hand_grading"  # the written answer waits for a human


def with_cells(nb, *sources):
    """The notebook with extra code cells (a student may add cells) after the answer."""
    for k, src in enumerate(sources):
        nb.cells.insert(2 + k, nbformat.v4.new_code_cell(src))
    return nb


def after_tests(nb, *sources):
    for src in sources:
        nb.cells.insert(3, nbformat.v4.new_code_cell(src))
    return nb


def edited_test(nb, **meta):
    cell = nb.cells[2]
    if "source" in meta:
        cell.source = meta.pop("source")
    cell.metadata["nbgrader"].update(meta)
    return nb


def deleted_test(nb):
    del nb.cells[2]
    return nb


# student: (how the notebook is made, score, status, words that must be in a flag when the
# status is "tampered", else in a note; None: neither flags nor notes)
CASES = {
    # -- faults --------------------------------------------------------------------------
    "right": (lambda: submission(RIGHT), 2, "awaiting_hand_grading", None),
    "wrong": (lambda: submission(WRONG), 0, "awaiting_hand_grading", None),
    "loop": (lambda: submission("while True:\n    pass"), 0, "timeout", None),
    "exit": (lambda: submission("import os\nos._exit(3)"), 0, "kernel_died", None),
    "segfault": (lambda: submission("import faulthandler\nfaulthandler._sigsegv()"), 0,
                 "kernel_died", None),
    "dies_after_tests": (lambda: after_tests(submission(RIGHT), "import os\nos._exit(1)"), 2,
                         "kernel_died", None),
    "memory_bomb": (lambda: submission(RIGHT + "\nhog = bytearray(64 * 2**30)"), 2,
                    "awaiting_hand_grading", None),
    "huge_output": (lambda: submission(RIGHT + "\nfor i in range(200000):\n    print(i)\n"
                                       "print('x' * 5_000_000)"), 2, "awaiting_hand_grading", None),
    # every cell well inside the cell limit, the notebook far beyond its own
    "too_slow_overall": (lambda: with_cells(submission(RIGHT), *["import time\ntime.sleep(30)"]
                                            * 5), 0, "timeout", None),
    # nbgrader fails any cell that prints to stderr: a warning inside a right answer
    # must not cost its cell (course_lib.instructor.grade._only_warned)
    "warns": (lambda: submission(RIGHT.replace("    return", "    import warnings\n"
                                                "    warnings.warn('a warning, not a mistake')\n"
                                                "    return")), 2, NORMAL, None),
    "warns_and_wrong": (lambda: submission(WRONG.replace("    return", "    import warnings\n"
                                                         "    warnings.warn('careful')\n"
                                                         "    return")), 0, NORMAL, None),
    # -- tampering ------------------------------------------------------------------------
    "patch_isclose": (lambda: submission("import numpy as np\nnp.isclose = lambda *a, **k: True\n"
                                         "np.allclose = lambda *a, **k: True\n" + WRONG),
                      0, NORMAL, "np.isclose"),
    "patch_testing": (lambda: submission("import numpy.testing as npt\n"
                                         "npt.assert_allclose = lambda *a, **k: None\n" + RIGHT),
                      2, NORMAL, "npt.assert_allclose"),
    "patch_check": (lambda: submission("from course_lib import grading\n"
                                       "grading.check_sigmoid_prime = lambda *a, **k: None\n"
                                       + WRONG), 0, NORMAL, "grading.check_sigmoid_prime"),
    "patch_builtins": (lambda: submission("import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG),
                       0, NORMAL, "builtins.abs"),
    "input_transformer": (lambda: submission(
        "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n" + WRONG),
        0, "tampered", "never reached the grader"),
    "ast_transformer": (lambda: submission(
        "import ast\nclass Blank(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
        "        return ast.Module(body=[], type_ignores=[])\n"
        "get_ipython().ast_transformers.append(Blank())\n" + WRONG),
        0, "tampered", "never reached the grader"),
    "event_callback": (lambda: submission(
        "get_ipython().events.register('pre_run_cell', lambda *a: None)\n" + RIGHT),
        2, NORMAL, "events.register"),
    "custom_exc": (lambda: submission(
        "get_ipython().set_custom_exc((AssertionError,), lambda *a, **k: None)\n" + WRONG),
        0, NORMAL, "set_custom_exc"),
    # nbgrader runs the gradebook's copy of a test cell: an edit changes nothing
    "edited_test": (lambda: edited_test(submission(RIGHT), source="pass"), 2, NORMAL,
                    "was edited"),
    "deleted_test": (lambda: deleted_test(submission(RIGHT)), 0, "tampered", "deleted"),
    "more_points": (lambda: edited_test(submission(RIGHT), points=20), 0, "tampered",
                    "points"),
    "not_graded": (lambda: edited_test(submission(WRONG), grade=False), 0, "tampered",
                   "grade"),
    "import_reference": (lambda: submission(
        "from course_lib.reference.sigmoid import sigmoid_prime"), 0, NORMAL,
        "course_lib.reference"),
    "hidden_import": (lambda: submission(
        "m = __import__('course_lib.ref' + 'erence.sigmoid', fromlist=['x'])\n"
        "sigmoid_prime = m.sigmoid_prime"), 0, NORMAL, "__import__"),
    # torch is a stub while a lesson of manual gradients is graded: importing it is
    # fine, computing with it fails (the message says why), and nothing is flagged
    "torch_autograd": (lambda: submission(
        "import torch\ndef sigmoid_prime(z):\n    t = torch.tensor(z, dtype=torch.float64, "
        "requires_grad=True)\n    torch.sigmoid(t).sum().backward()\n    return t.grad.numpy()"),
        0, "awaiting_hand_grading", None),
    "read_gradebook": (lambda: submission("data = open('../../../gradebook.db', 'rb').read()\n"
                                          + RIGHT), 0, NORMAL, "gradebook"),
    # the course folder does not exist inside the sandbox (the read fails); the reader
    # names the notebook it reached for
    "read_source": (lambda: submission(
        "import os\nroot = os.path.dirname(os.path.dirname(os.path.dirname(os.getcwd())))\n"
        "text = open(os.path.join(root, 'source', '99_toy', '99_toy.ipynb')).read()\n"
        + RIGHT), 0, NORMAL, "99_toy.ipynb"),
    "run_program": (lambda: submission("import subprocess\nsubprocess.run(['true'])\n" + RIGHT),
                    0, NORMAL, "subprocess"),
    "gc_walk": (lambda: submission("import gc\nobjs = gc.get_objects()\n" + RIGHT),
                2, NORMAL, "gc"),
    "check_elsewhere": (lambda: with_cells(submission(RIGHT), "from course_lib import grading\n"
                                           "grading.check_sigmoid_prime(sigmoid_prime, "
                                           "part='values')"), 0, "tampered", "outside"),
}
RAW = {  # files that are not notebooks: (bytes, status)
    "bad_json": (b"{this is not json", "unreadable"),
    "png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "unreadable"),
    "too_big": (b'{"cells": [], "x": "' + b"a" * (21 * 2**20) + b'"}', "unreadable"),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    # Limits far from what an honest notebook needs (a second or two, on a busy machine
    # ten): only work that can never finish in time trips them.
    course = make_course(tmp_path_factory.mktemp("integrity") / "course", timeout=120)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Judge.notebook_timeout = 40\n"
                      "c.Judge.manual_gradient_assignments = ['99_toy']\n"
                      "c.Judge.kernel_memory_mb = 4096\n")
    for student, (make, *_) in CASES.items():
        hand_in(course, student, make())
    for student, (data, _) in RAW.items():
        hand_in(course, student, data)
    hand_in(course, "absent", None)
    before = _digests(course / "submitted")
    results = {r.student: r for r in grade_class(course, jobs=2)}
    return course, results, before


def _digests(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("student", sorted(CASES))
def test_each_submission_gets_its_score_status_and_flag(graded, student):
    _, results, _ = graded
    _, score, status, flag = CASES[student]
    r = results[student]
    assert (r.score, r.status) == (score, status), (r.reason, r.flags, r.notes, r.messages)
    if flag is None:
        assert (r.flags, r.notes) == ([], []), (r.flags, r.notes)
    elif status == "tampered":
        assert any(flag in f for f in r.flags), r.flags
        assert flag in r.reason or any(flag in f for f in r.flags)
    else:  # suspicious code alone costs nothing: a note for the instructor
        assert r.flags == [] and any(flag in n for n in r.notes), (r.flags, r.notes)


@pytest.mark.parametrize("student", sorted(RAW))
def test_files_that_are_not_notebooks_are_unreadable_not_zero(graded, student):
    _, results, _ = graded
    r = results[student]
    assert (r.score, r.status) == (0, RAW[student][1]) and r.reason


def test_a_missing_notebook_is_missing(graded):
    _, results, _ = graded
    assert results["absent"].status == "missing"


def test_torch_in_a_lesson_of_manual_gradients_fails_the_answer_with_a_reason(graded):
    _, results, _ = graded
    assert "torch is not available while this lesson is graded" in \
        results["torch_autograd"].messages["sigmoid_prime_values"]


def test_the_kernel_that_died_after_the_tests_kept_their_grade(graded):
    _, results, _ = graded
    r = results["dies_after_tests"]
    assert r.cell_scores["sigmoid_prime_values"] == (2.0, 2.0)
    assert "graded as far as it got: 1 of 1 test cells ran" in r.reason


def test_the_tampered_cell_says_why_it_scored_zero(graded):
    course, results, _ = graded
    r = results["more_points"]  # a right answer: its only fault is the test cell's points
    assert r.cell_scores["sigmoid_prime_values"] == (0.0, 2.0)
    assert "points" in r.messages["sigmoid_prime_values"]
    graded_nb = nbformat.read(str(graded_path(course, "more_points")), as_version=4)
    outputs = graded_nb.cells[2].outputs
    assert any(o.get("ename") == "NotGraded" for o in outputs)


def test_suspicious_code_alone_keeps_a_right_answers_points_and_is_noted(graded):
    _, results, _ = graded
    for student in ("patch_testing", "event_callback", "edited_test", "gc_walk"):
        r = results[student]
        assert r.cell_scores["sigmoid_prime_values"] == (2.0, 2.0), (student, r.messages)
        assert r.notes and "sigmoid_prime_values" not in r.messages, (student, r.notes)


def test_submissions_are_never_modified(graded):
    """Byte for byte, and nothing added to submitted/ (nbgrader grades a copy)."""
    course, _, before = graded
    assert _digests(course / "submitted") == before


# -- the real lessons, through `course check` ---------------------------------------------

LESSON_CASES = [  # (assignment, answers, status, words in a flag (tampered) or a note)
    ("03_softmax_jacobian", {"softmax_jacobian_answer": (
        "import numpy.testing\nnumpy.testing.assert_allclose = lambda *a, **k: None\n"
        "np.isclose = lambda *a, **k: np.ones(np.broadcast(*a[:2]).shape, bool)\n"
        "def softmax_jacobian(z):\n    return np.zeros((len(z), len(z)))")}, "ok",
        "np.isclose"),
    ("04_backprop_mlp", {"dense_forward_answer": (
        "from course_lib.reference.mlp import dense_forward")}, "ok", "course_lib.reference"),
]


@pytest.mark.parametrize("assignment,answers,status,flag", LESSON_CASES,
                         ids=[a for a, *_ in LESSON_CASES])
def test_tampering_in_a_lesson_buys_nothing_and_is_named(assignment, answers, status, flag,
                                                         tmp_path):
    result = grade(make_submission(assignment, answers, tmp_path), assignment)
    assert result.status == status, (result.status, result.flags, result.notes)
    assert any(flag in f for f in (result.flags if status == "tampered" else result.notes)), \
        (result.flags, result.notes)
    answered = {gid.removesuffix("_answer") for gid in answers}
    for cell in result.cells:  # np.zeros((n, n)) does have the Jacobian's shape: that part stands
        if any(cell.grade_id.startswith(name + "_") for name in answered) \
                and not cell.grade_id.endswith("_shape"):
            assert cell.score == 0, cell


TORCH_SIGMOID_PRIME = (
    "import torch\n\ndef sigmoid_prime(z):\n    t = torch.tensor(np.asarray(z, dtype=float), "
    "requires_grad=True)\n    torch.sigmoid(t).sum().backward()\n    return t.grad.numpy()")


def test_torch_in_a_graded_function_of_a_manual_lesson_costs_that_exercise_only(tmp_path):
    result = grade(make_submission("02_sigmoid", {"sigmoid_prime_answer": TORCH_SIGMOID_PRIME},
                                   tmp_path), "02_sigmoid")
    assert (result.status, result.flags) == ("ok", ["awaiting_hand_grading"])
    for cell in result.cells:
        if cell.grade_id.startswith("sigmoid_prime"):
            assert cell.score == 0 and "torch is not available" in cell.message, cell
        elif cell.autograded:
            assert cell.score == cell.max_score, cell


def test_a_scratch_cell_that_compares_with_torch_keeps_full_marks(tmp_path):
    path = make_submission("02_sigmoid", {}, tmp_path)
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell(
        "import torch\nz = torch.linspace(-3, 3, 7, dtype=torch.float64, requires_grad=True)\n"
        "torch.sigmoid(z).sum().backward()\nprint(z.grad)"))
    nbformat.write(nb, str(path))
    result = grade(path, "02_sigmoid")
    assert (result.status, result.flags) == ("ok", ["awaiting_hand_grading"])
    assert all(c.score == c.max_score for c in result.cells if c.autograded), result.cells


def test_the_report_lists_each_tampered_submission_with_its_reason(graded, tmp_path):
    import html

    from course_lib.instructor.report import write_report

    _, results, _ = graded
    page = html.unescape(write_report(list(results.values()), tmp_path / "r.html").read_text())
    problems = page.split('id="problems"', 1)[1].split('id="students"', 1)[0]
    for student, (*_, flag) in CASES.items():
        if flag is not None:  # tampered: why it scored 0; else the note, for a look
            assert student in problems and flag in problems, student
