"""Fair grading across the five lessons (issue 14): one mistake costs its own points,
every visible test explains its failure, and torch in a scratch cell costs nothing.

Everything is read from the source notebooks when the tests run (tests/one_mistake.py),
so these tests follow the lessons as their authors change them.

The kernel tests share one class run (`course grade`'s grade_class, two workers) on a
temporary course holding the five lessons' sources: for each lesson, one submission
per graded function with only that function wrong, and for lessons 01-04 one right
submission with a scratch cell that compares a gradient with torch autograd.
"""

from __future__ import annotations

import shutil

import nbformat
import pytest
from lessons import ASSIGNMENTS, ROOT, source_path
from one_mistake import (
    exercises,
    is_test,
    meta,
    one_wrong,
    unexplained_asserts,
    with_torch_code,
)

from course_lib import manifest
from course_lib.instructor.grade import grade_class

MANUAL = ASSIGNMENTS[:4]  # the lessons of gradients by hand: torch is a stub while graded


# -- 1. every visible assert explains itself (no kernel) ------------------------------------

@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_visible_assert_explains_itself(assignment):
    """Each assert of a visible test cell has a message that says what was expected and
    what came back (or, for `assert not <known mistake>`, names the mistake), so that a
    student who fails it learns why. All offenders of the lesson are listed at once."""
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    offenders = []
    for cell in nb.cells:
        if not is_test(cell):
            continue
        for line, code, why in unexplained_asserts(cell.source):
            first = code.splitlines()[0] + (" ..." if "\n" in code else "")
            offenders.append(f"{assignment} {meta(cell)['grade_id']} line {line}: {why}\n"
                             f"    {first}")
    assert not offenders, (f"{len(offenders)} visible assert(s) of {assignment} would not "
                           "explain their failure:\n" + "\n".join(offenders))


GOOD_CELL = '''
dx, dy = f(2.0)
assert np.isclose(dx, 2.0), f"expected dx = 2.0, got {dx}"
assert np.isclose(dy, 0.0), "expected dy = 0.0, got " + str(dy)
assert np.isclose(dy, 0.0), "expected dy = 0.0, got %s" % dy
assert np.isclose(dy, 0.0), "expected dy = 0.0, got {}".format(dy)
msg = f"expected 0, got {dy}"
assert dy == 0, msg
assert not np.isclose(dx, 1.0), "dx is dout without the factor 2: a known mistake"
assert isinstance(dx, np.ndarray), f"return numpy arrays, got {type(dx).__name__}"
assert np.shape(dx) == (3,), f"dx must have the shape of dout, (3,); got {np.shape(dx)}"
assert_gradient(lambda x: g(x), x, dx, name="dx")
### BEGIN HIDDEN TESTS
assert hidden_check()
### END HIDDEN TESTS
'''
BAD_CELL = '''
assert np.isclose(dx, 2.0)
assert np.isclose(dx, 2.0), "dx is wrong"
assert np.isclose(dx, 2.0), f"dx is {dx}"
assert np.isclose(dx, 2.0), "expected 2.0"
assert np.isclose(dx, 2.0), dx
assert not np.isclose(dx, 1.0), ""
assert np.shape(dx) == (3,), "dx must have the shape of dout"
assert np.allclose(dx.shape, 3) and np.allclose(dx, 1), f"dx = {dx}"
assert_gradient(lambda x: g(x), x, dx)
'''


def test_the_assert_standard_accepts_explaining_messages_and_names_every_other():
    """The rule of test_every_visible_assert_explains_itself, on cells written for it:
    every assert of GOOD_CELL passes (hidden tests are not read); each line of
    BAD_CELL is named once, with what its message lacks."""
    assert unexplained_asserts(GOOD_CELL) == [], unexplained_asserts(GOOD_CELL)
    bad = unexplained_asserts(BAD_CELL)
    assert [line for line, _, _ in bad] == list(range(2, 11)), bad
    whys = [why for _, _, why in bad]
    assert whys[0] == "no message" and "expected" in whys[1] and "value" in whys[1], whys
    assert "expected" in whys[2] and "value" not in whys[2], whys
    assert "value" in whys[3] and '"expected"' not in whys[3], whys
    assert "bare value" in whys[4] and "empty" in whys[5], whys
    assert "name=" in whys[8], whys


# -- the class run ------------------------------------------------------------------------

# One scratch cell per lesson of manual gradients, placed after the lesson's first
# exercise: a student checks a gradient with torch autograd. torch is a stub while these
# lessons are graded (using it raises ImportError), so the cell fails when graded; it
# defines nothing a later cell uses, and must cost nothing and flag nothing. Each
# compares the first exercise's function with autograd (run with the real torch, each
# prints True).
TORCH_SCRATCH = {
    "01_chain_rule": (
        "import torch\n"
        "x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)\n"
        "y = torch.tensor([0.5, 3.0], dtype=torch.float64, requires_grad=True)\n"
        "upstream = torch.tensor([2.0, -1.0], dtype=torch.float64)\n"
        "(x + y).backward(upstream)\n"
        "mine = add_gate_backward(upstream.numpy())\n"
        "print(np.allclose(mine[0], x.grad.numpy()) and np.allclose(mine[1], y.grad.numpy()))"),
    "02_sigmoid": (
        "import torch\n"
        "z = torch.linspace(-3, 3, 7, dtype=torch.float64, requires_grad=True)\n"
        "torch.sigmoid(z).sum().backward()\n"
        "s = sigmoid(z.detach().numpy())\n"
        "print(np.allclose(s * (1 - s), z.grad.numpy()))"),
    "03_softmax_jacobian": (
        "import torch\n"
        "z = torch.tensor([0.5, -1.2, 2.0], dtype=torch.float64, requires_grad=True)\n"
        "torch.softmax(z, dim=0)[0].backward()\n"
        "s = softmax(z.detach().numpy())\n"
        "print(np.allclose(s[0] * (np.eye(3)[0] - s), z.grad.numpy()))"),
    "04_backprop_mlp": (
        "import torch\n"
        "A = torch.tensor([[1.0, 0.5, -1.0]], dtype=torch.float64)\n"
        "W = torch.tensor([[0.1, -0.2, 0.3], [0.4, 0.0, -0.5]], dtype=torch.float64,\n"
        "                 requires_grad=True)\n"
        "b = torch.tensor([0.1, -0.1], dtype=torch.float64)\n"
        "Z = A @ W.T + b\n"
        "Z.sum().backward()  # dZ = 1: dW[j, k] = sum over samples of A[n, k]\n"
        "mine = dense_forward(A.numpy(), W.detach().numpy(), b.numpy())\n"
        "print(np.allclose(mine, Z.detach().numpy()),\n"
        "      np.allclose(W.grad.numpy(), np.ones((2, 1)) @ A.numpy()))"),
}


def read(assignment: str, course=ROOT):
    return nbformat.read(str(course / "source" / assignment / f"{assignment}.ipynb"),
                         as_version=4)


def with_torch_scratch(assignment: str, course=ROOT):
    """The source notebook with TORCH_SCRATCH's cell after the first exercise."""
    nb = read(assignment, course)
    found, _ = exercises(nb)
    last = found[0].tests[-1] if found[0].tests else found[0].answer
    at = next(k for k, c in enumerate(nb.cells) if meta(c).get("grade_id") == last) + 1
    nb.cells.insert(at, nbformat.v4.new_code_cell(TORCH_SCRATCH[assignment]))
    return nb


def wrong_student(name: str) -> str:
    return f"wrong-{name}"


def plan(course=ROOT) -> dict[tuple[str, str], object]:
    """{(assignment, student): the submission's notebook}, from course's sources."""
    subs = {}
    for assignment in ASSIGNMENTS:
        for exercise in exercises(read(assignment, course))[0]:
            for name in exercise.names:
                if name in graded_functions():
                    subs[assignment, wrong_student(name)] = one_wrong(read(assignment, course),
                                                                      name)
    for assignment in MANUAL:
        subs[assignment, "torch-scratch"] = with_torch_scratch(assignment, course)
        first = exercises(read(assignment, course))[0][0].names[0]
        subs[assignment, "torch-inside"] = one_wrong(read(assignment, course), first,
                                                     mistake=with_torch_code)
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every submission of plan(), graded in one class run.

    Returns ({(assignment, student): result}, {assignment: exercises(its notebook)}), both
    from the same copy of the sources (their authors may be changing them meanwhile).
    """
    course = tmp_path_factory.mktemp("fair") / "course"
    course.mkdir()
    shutil.copyfile(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    for assignment in ASSIGNMENTS:
        shutil.copytree(ROOT / "source" / assignment, course / "source" / assignment)
    subs = plan(course)
    for (assignment, student), nb in subs.items():
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / f"{assignment}.ipynb"))
    # grade_class grades every student on every assignment; a student has a notebook
    # for one lesson only (wrong-<name>) or for four (torch-scratch, torch-inside): the rest are
    # "missing", found without starting a kernel.
    results = grade_class(course, assignments=list(ASSIGNMENTS), jobs=2)
    snapshot = {a: exercises(read(a, course)) for a in ASSIGNMENTS}
    return ({(r.assignment, r.student): r for r in results if (r.assignment, r.student) in subs},
            snapshot)


def owner_of_tests(found, orphans) -> dict[str, str | None]:
    """{grade_id of each autograded test cell: the answer cell of its exercise (None for
    a test cell before every answer cell)}."""
    owner = {gid: None for gid in orphans}
    for exercise in found:
        owner.update({gid: exercise.answer for gid in exercise.tests})
    return owner


def graded_functions() -> set[str]:
    """What the manifest grades: a function an answer cell defines beside it without
    grading it (a forward pass, a given helper) is not an exercise of its own."""
    return {e.function for lesson in manifest.lessons() for e in lesson.exercises}


def users_of(name: str) -> set[str]:
    """The answer cells of the exercises that call ``name`` by design (the manifest's
    ``uses``, followed through: a training loop that calls an epoch that calls a loss)."""
    users, grew = set(), True
    while grew:
        grew = False
        for lesson in manifest.lessons():
            for e in lesson.exercises:
                if e.function not in users and ({name} | users) & set(e.uses):
                    users.add(e.function)
                    grew = True
    return {f"{u}_answer" for u in users}


WRONG_CASES = [(a, name) for a in ASSIGNMENTS for e in exercises(read(a))[0] for name in e.names
               if name in graded_functions()]


# -- 2. one wrong function costs only its own exercise (kernel) ----------------------------

@pytest.mark.parametrize("assignment,name", WRONG_CASES, ids=[f"{a}-{n}" for a, n in WRONG_CASES])
def test_one_wrong_function_costs_only_its_own_exercise(graded, assignment, name):
    """A submission whose only mistake is `name` (every float it returns is 1.5 x + 0.25;
    a torch.autograd.Function's backward scales its gradients by 1.5) loses points in
    that function's exercise and nowhere else: no test cell of another exercise may
    fail because of it (a test that calls it, a variable a later test reuses, a shared
    array)."""
    results, snapshot = graded
    if (assignment, wrong_student(name)) not in results:
        pytest.fail(f"{assignment} no longer defines {name} (the notebook changed after "
                    "collection): run again")
    r = results[assignment, wrong_student(name)]
    assert r.status in ("ok", "awaiting_hand_grading") and not r.flags, \
        f"expected a normal grade, got status {r.status!r} ({r.reason}), flags {r.flags}"
    owner = owner_of_tests(*snapshot[assignment])
    mine = next(e.answer for e in snapshot[assignment][0] if name in e.names)
    allowed = {mine} | users_of(name)  # exercises graded with `name` by design, and said so
    cascade = [f"{gid} (exercise {owner[gid]}): {score} of {points}: {r.messages.get(gid, '')}"
               for gid, (score, points) in r.cell_scores.items()
               if gid in owner and owner[gid] not in allowed and score < points]
    assert not cascade, (f"{assignment}: only {name} is wrong, yet test cells of other "
                         "exercises lost points:\n" + "\n".join(cascade))
    own = {gid: r.cell_scores[gid] for gid, ex in owner.items() if ex == mine}
    assert any(score < points for score, points in own.values()), \
        f"{assignment}: {name} is wrong, expected a test cell of {mine} to lose points, got {own}"


# -- 3. torch in a scratch cell costs nothing (kernel) --------------------------------------

@pytest.mark.parametrize("assignment", MANUAL)
def test_a_torch_scratch_cell_keeps_full_marks_in_every_manual_lesson(graded, assignment):
    """A student may import torch in a scratch cell to compare a gradient with autograd:
    in a lesson of gradients by hand that cell fails while graded (torch is a stub), but
    the submission keeps full marks on every autograded cell and is not flagged."""
    results, snapshot = graded
    r = results[assignment, "torch-scratch"]
    assert r.status in ("ok", "awaiting_hand_grading") and not r.flags, \
        f"expected a normal grade, got status {r.status!r} ({r.reason}), flags {r.flags}"
    owner = owner_of_tests(*snapshot[assignment])
    lost = {gid: (score, points, r.messages.get(gid, ""))
            for gid, (score, points) in r.cell_scores.items()
            if gid in owner and score < points}
    assert not lost, f"expected full marks with a torch scratch cell, got {lost}"


@pytest.mark.parametrize("assignment", MANUAL)
def test_torch_inside_a_graded_function_costs_that_exercise_with_a_reason(graded, assignment):
    """The lesson's first graded function, right, but computing with torch: in a lesson
    of gradients by hand it loses its own exercise's points, each failed cell says that
    torch is not available while the lesson is graded, and nothing else is lost."""
    results, snapshot = graded
    r = results[assignment, "torch-inside"]
    assert r.status in ("ok", "awaiting_hand_grading") and not r.flags, \
        f"expected a normal grade, got status {r.status!r} ({r.reason}), flags {r.flags}"
    found, orphans = snapshot[assignment]
    owner, first = owner_of_tests(found, orphans), found[0].answer
    lost = {gid: r.messages.get(gid, "") for gid, (score, points) in r.cell_scores.items()
            if gid in owner and score < points}
    assert lost and all(owner[gid] == first for gid in lost), \
        f"expected only {first}'s test cells to lose points, got {sorted(lost)}"
    for gid, message in lost.items():
        assert "torch is not available" in message, f"{gid}: expected the reason, got {message!r}"
