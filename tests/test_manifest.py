"""The exercises' manifest (course_lib/manifest/) and everything that follows it.

Walking the manifest: every lesson's slug names a module in each layer; every
exercise has a reference answer, a check, an answer cell and a hidden test cell per
part with the manifest's points; every listed mistake, made in the source solution,
fails its check with the manifest's wording. Then what reads it: the judge (which
check a test cell expects), the release (a notebook that differs is refused, naming
the cell), run_parts (a check whose parts differ fails loudly), the demo class, and
the manifest's own validation.
"""

from __future__ import annotations

import copy
import importlib
import warnings
from pathlib import Path

import nbformat
import pytest
from lessons import ROOT, checker, grade_id, notebook_answers, source_path

from course_lib import manifest
from course_lib.instructor import demo
from course_lib.instructor.release import ReleaseError, verify_assignments, verify_notebook
from course_lib.judge.server import UnknownTestCell, expected_checks

LESSONS = manifest.lessons()
EXERCISES = manifest.exercises()
MISTAKES = [m for e in EXERCISES for m in e.mistakes]
LAYERS = ("reference", "grading", "widgets", "figures")


def source(assignment: str):
    return nbformat.read(str(source_path(assignment)), as_version=4)


def cell(nb, gid: str):
    return next(c for c in nb.cells if grade_id(c) == gid)


# ---------------------------------------------------------------------------
# walking the manifest
# ---------------------------------------------------------------------------

def test_the_manifest_has_every_lesson_of_the_course():
    on_disk = sorted(p.name for p in (ROOT / "source").iterdir() if p.is_dir()
                     and not p.name.startswith("."))
    assert [les.assignment for les in LESSONS] == on_disk


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda les: les.slug)
def test_every_lesson_slug_exists_in_each_layer(lesson, layer):
    assert (ROOT / "course_lib" / layer / f"{lesson.slug}.py").is_file()


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.function)
def test_every_exercise_has_an_answer_and_a_check(exercise):
    answers = importlib.import_module(f"course_lib.reference.{exercise.lesson}")
    assert callable(getattr(answers, exercise.function, None)), \
        f"no {exercise.function} in course_lib/reference/{exercise.lesson}.py"
    assert callable(checker(exercise))


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda les: les.slug)
def test_every_exercise_has_its_cells_with_the_manifests_points(lesson):
    """An answer cell per exercise, a test cell per part whose hidden block calls its check
    and part, worth the manifest's points; the written questions; no other graded cell."""
    assert verify_notebook(source(lesson.assignment), lesson.assignment) == []


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda les: les.slug)
def test_the_lessons_points_are_the_manifests(lesson):
    nb = source(lesson.assignment)
    points = sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells
                 if c.metadata.get("nbgrader", {}).get("grade"))
    assert points == lesson.points


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_each_listed_mistake_is_diagnosed_in_the_manifests_words(mistake):
    """The mistake made in the source solution fails its part, and the check says what
    the manifest says (the demo class's students make exactly these edits)."""
    ex = manifest.exercise(mistake.function)
    assignment = manifest.lesson(ex.lesson).assignment
    wrong = notebook_answers(assignment, [ex.function],
                             edit=(ex.answer_id, mistake.old, mistake.new))[ex.function]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an overflowing mistake warns; the message counts
        with pytest.raises(AssertionError) as failed:
            checker(ex)(wrong, part=mistake.part)
    assert mistake.diagnostic in str(failed.value)


def test_the_manifest_names_each_check_once_and_only_existing_ones():
    from course_lib import grading

    checks = set(grading.all_checks())
    assert {e.check for e in EXERCISES} <= checks
    assert len({e.check for e in EXERCISES}) == len(EXERCISES)


# ---------------------------------------------------------------------------
# the judge: which check a test cell expects
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("lesson", LESSONS, ids=lambda les: les.slug)
def test_the_judge_expects_each_test_cells_check_from_the_manifest(lesson):
    nb = source(lesson.assignment)
    expected = {grade_id(c): expected_checks(c) for c in nb.cells if expected_checks(c)}
    assert expected == {p.grade_id: [(e.check, p.name)] for e in lesson.exercises
                        for p in e.parts}


def test_a_positional_part_is_understood():
    """The judge reads the grade id, not the text: `check_sigmoid(sigmoid, "values")`
    (which the regular expression it replaced read as no check at all) is the values part,
    and the release accepts it."""
    nb = source("02_sigmoid")
    c = cell(nb, "sigmoid_values")
    c.source = c.source.replace('grading.check_sigmoid(sigmoid, part="values")',
                                'grading.check_sigmoid(sigmoid, "values")')
    assert 'check_sigmoid(sigmoid, "values")' in c.source
    assert expected_checks(c) == [("check_sigmoid", "values")]
    assert verify_notebook(nb, "02_sigmoid") == []


def test_a_test_cell_the_manifest_does_not_know_is_refused_by_name():
    c = copy.deepcopy(cell(source("02_sigmoid"), "sigmoid_values"))
    c.metadata["nbgrader"]["grade_id"] = "sigmoid_extra"
    with pytest.raises(UnknownTestCell, match="test cell 'sigmoid_extra' grades no part"):
        expected_checks(c)


def test_cells_that_are_not_autograded_tests_expect_nothing():
    nb = source("02_sigmoid")
    for gid in ("sigmoid_answer", "written_bce_vs_mse"):
        assert expected_checks(cell(nb, gid)) == []
    assert expected_checks(nbformat.v4.new_code_cell("x = 1")) == []


# ---------------------------------------------------------------------------
# the release: a notebook that differs from the manifest is refused, naming the cell
# ---------------------------------------------------------------------------

def _problems(edit) -> list[str]:
    nb = source("02_sigmoid")
    edit(nb)
    return verify_notebook(nb, "02_sigmoid")


def _set(gid, **changes):
    def edit(nb):
        c = cell(nb, gid)
        for key, value in changes.items():
            if key == "points":
                c.metadata["nbgrader"]["points"] = value
            else:
                c.source = c.source.replace(*value)
    return edit


@pytest.mark.parametrize("edit, words", [
    (_set("sigmoid_values", points=3),
     "02_sigmoid, cell sigmoid_values: 3 point(s) in its metadata, 2 in "
     "course_lib/manifest/sigmoid.toml"),
    (_set("sigmoid_edge", source=('part="edge"', 'part="values"')),
     "cell sigmoid_edge: its hidden block calls grading.check_sigmoid(sigmoid, "
     "part='values'); course_lib/manifest/sigmoid.toml expects exactly:\n"
     "### BEGIN HIDDEN TESTS\nfrom course_lib import grading\n"
     'grading.check_sigmoid(sigmoid, part="edge")\n### END HIDDEN TESTS'),
    (_set("bce_values", source=("grading.check_bce(bce", "grading.check_sigmoid(bce")),
     "cell bce_values: its hidden block calls grading.check_sigmoid(bce, part='values')"),
    (_set("bce_edge", source=("### BEGIN HIDDEN TESTS", "# hidden tests were here")),
     "cell bce_edge: its hidden block no hidden block that parses"),
    (lambda nb: nb.cells.remove(cell(nb, "tanh_prime_values")),
     "02_sigmoid: no cell tanh_prime_values, the test cell of tanh_prime's part 'values'"),
    (lambda nb: nb.cells.remove(cell(nb, "written_bce_vs_mse")),
     "02_sigmoid: no cell written_bce_vs_mse, the written question"),
    (lambda nb: setattr(cell(nb, "relu_prime_edge").metadata.nbgrader, "grade_id",
                        "relu_prime_kink"),
     "02_sigmoid, cell relu_prime_kink: a graded cell that course_lib/manifest/sigmoid.toml "
     "does not list"),
], ids=["points", "part", "check", "no-hidden-block", "missing-test-cell", "missing-written",
        "stray-cell"])
def test_the_release_names_each_cell_that_differs(edit, words):
    problems = _problems(edit)
    assert any(words in p for p in problems), problems


def test_the_release_refuses_a_lesson_that_differs(tmp_path):
    course = tmp_path / "course"
    (course / "source" / "02_sigmoid").mkdir(parents=True)
    nb = source("02_sigmoid")
    cell(nb, "sigmoid_edge").metadata["nbgrader"]["points"] = 5
    nbformat.write(nb, str(course / "source" / "02_sigmoid" / "02_sigmoid.ipynb"))
    with pytest.raises(ReleaseError, match=r"(?s)differ from the manifest.*cell sigmoid_edge: "
                                           r"5 point\(s\) in its metadata, 2 in"):
        verify_assignments(course, ["02_sigmoid"])


def test_an_assignment_without_a_lesson_is_refused():
    assert verify_notebook(source("02_sigmoid"), "07_nope") == [
        "07_nope: no lesson of course_lib/manifest/ has this assignment; add its <slug>.toml "
        "(course_lib/manifest/__init__.py says how)"]


# ---------------------------------------------------------------------------
# the checks follow the manifest
# ---------------------------------------------------------------------------

def test_a_check_whose_parts_differ_from_the_manifest_fails_loudly():
    from course_lib.grading._core import run_parts

    def check_sigmoid(sigmoid, part="all"):  # the manifest's sigmoid has values, edge
        run_parts(part, {"values": lambda: None, "stable": lambda: None})

    with pytest.raises(manifest.ManifestError,
                       match="check_sigmoid runs the parts values, stable, but the manifest "
                             r"\(course_lib/manifest/sigmoid.toml\) gives sigmoid the parts "
                             "values, edge"):
        check_sigmoid(None, part="values")


def test_a_check_of_no_exercise_fails_loudly():
    from course_lib.grading._core import run_parts

    def check_softplus(softplus, part="all"):
        run_parts(part, {"values": lambda: None})

    with pytest.raises(manifest.ManifestError, match="check_softplus grades no exercise"):
        check_softplus(None)


def test_known_mistakes_are_worded_by_the_manifest():
    from course_lib.grading import softmax
    from course_lib.grading._core import known_mistake

    assert known_mistake("jacobian-sign") == manifest.mistake("jacobian-sign").diagnostic
    assert softmax.OVERFLOW == manifest.mistake("unstable-softmax").diagnostic


# ---------------------------------------------------------------------------
# the demo class
# ---------------------------------------------------------------------------

def test_the_demo_class_makes_the_manifests_demo_mistakes():
    listed = [m for m in MISTAKES if m.demo]
    assert list(demo.MISTAKES) == [m.id for m in listed]
    for m in listed:
        ex = manifest.exercise(m.function)
        made = demo.MISTAKES[m.id]
        assert (made.assignment, made.grade_id, made.old, made.new, made.description) == \
            (manifest.lesson(ex.lesson).assignment, ex.answer_id, m.old, m.new, m.summary)
    assert {f"m-{m.id}" for m in listed} <= set(demo.ROSTER)


# ---------------------------------------------------------------------------
# the manifest's own rules
# ---------------------------------------------------------------------------

SIGMOID = (Path(manifest.__file__).parent / "sigmoid.toml").read_text()


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("change, words", [
    (("parts = { values = 2, edge = 2 }", "parts = { values = 2, edge = 0 }"),
     "exercise 1 (sigmoid), part edge: points must be a whole number > 0, got 0"),
    (("parts = { values = 2, edge = 2 }", "parts = { values = 2, all = 2 }"),
     "part 'all' must be a Python name other than all and answer"),
    (("parts = { values = 2, edge = 2 }", "parts = {}"), "parts is empty"),
    (('name = "A sigmoid that never overflows"', 'nmae = "A sigmoid"'),
     "exercise 1: unknown key(s) nmae"),
    (('part = "edge"\n', 'part = "ties"\n'),
     "mistake 1 (relu-prime-zero): part 'ties' is not a part of relu_prime (values, edge)"),
    (('new = "(z >= 0)"', 'new = "(z > 0)"'), "old and new are the same text"),
    (('slug = "sigmoid"', 'slug = "activations"'),
     "slug 'activations' differs from the file's name"),
    (('assignment = "02_sigmoid"', 'assignment = "sigmoid"'), "must look like '02_sigmoid'"),
    (('{ grade_id = "written_bce_vs_mse", points = 2 }', '{ grade_id = "bce_vs_mse", points = 2 }'),
     "grade_id 'bce_vs_mse' must start with 'written_'"),
    (("[[exercise]]", "[[exercise]"), "not valid TOML"),
], ids=["points", "reserved-part", "no-parts", "typo", "mistake-part", "empty-edit", "slug",
        "assignment", "written-id", "toml"])
def test_a_manifest_that_contradicts_itself_is_refused_with_its_place(tmp_path, change, words):
    assert change[0] in SIGMOID
    path = _write(tmp_path, "sigmoid.toml", SIGMOID.replace(change[0], change[1], 1))
    with pytest.raises(manifest.ManifestError) as refused:
        manifest.read_lesson(path)
    assert str(refused.value).startswith("course_lib/manifest/sigmoid.toml")
    assert words in str(refused.value)


@pytest.mark.parametrize("other, words", [
    (SIGMOID.replace('slug = "sigmoid"', 'slug = "copy"'),
     r"assignment '02_sigmoid' appears twice: in (copy|sigmoid).toml and in (sigmoid|copy).toml"),
    (SIGMOID.replace('slug = "sigmoid"', 'slug = "copy"').replace("02_sigmoid", "09_copy"),
     "function 'sigmoid' appears twice"),
])
def test_what_two_lessons_share_is_refused(tmp_path, other, words):
    _write(tmp_path, "sigmoid.toml", SIGMOID)
    _write(tmp_path, "copy.toml", other)
    with pytest.raises(manifest.ManifestError, match=words):
        manifest.load(tmp_path)


def test_grade_ids_and_mistake_ids_are_unique_across_the_course():
    gids = [g for e in EXERCISES for g in (e.answer_id, *(p.grade_id for p in e.parts))]
    gids += [w.grade_id for les in LESSONS for w in les.written]
    assert len(gids) == len(set(gids))
    assert len({m.id for m in MISTAKES}) == len(MISTAKES)


def test_lookups_by_slug_assignment_function_and_grade_id():
    les = manifest.lesson("02_sigmoid")
    assert manifest.lesson("sigmoid") is les
    assert les.exercises[1] is manifest.exercise("sigmoid_prime")
    assert manifest.exercise("sigmoid_prime").parts[1] == manifest.Part(
        "edge", "sigmoid_prime_edge", 1)
    assert manifest.part_for("bce_sigmoid_delta_edge") == ("check_bce_sigmoid_delta", "edge")
    with pytest.raises(KeyError, match="no grade id 'sigmoid_answer'"):
        manifest.part_for("sigmoid_answer")


def test_the_manifest_stays_on_the_grading_side(tmp_path):
    from course_lib.judge.sealed import copy_student_package

    package = copy_student_package(tmp_path)
    assert (package / "gradcheck.py").is_file()
    assert not (package / "manifest").exists()
