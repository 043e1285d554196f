"""Less bookkeeping per submission (issue 17): one gradebook engine per grading scope,
registration only when the gradebook is not already current, one metadata check.

Each shortcut must leave the gradebook and the grades exactly as stock nbgrader's
steps would: these tests say what each may skip, and that what it skips is done
again the moment anything it relied on changes.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nbformat
import pytest
from toycourse import ASSIGNMENT, SIGMOID_INSTEAD, graded_path, hand_in, make_course, submission

from course_lib.instructor import grade
from course_lib.instructor.course import ensure_tools_on_path, open_api


@pytest.fixture
def course(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("COURSE_CHECK_CACHE", str(tmp_path / "cache"))
    warnings.simplefilter("ignore")  # SQLAlchemy noise from nbgrader
    ensure_tools_on_path()  # a new gradebook runs `alembic`
    return make_course(tmp_path / "course")


def _gradebook(course: Path, course_id: str = "backprop"):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id)


@pytest.mark.slow  # a new gradebook runs alembic: seconds
def test_gradebooks_opened_in_a_scope_share_one_engine_and_see_each_others_commits(course):
    with _gradebook(course) as a, _gradebook(course) as b:
        assert a.engine is not b.engine  # stock: an engine per open
    with grade.shared_gradebook():
        with _gradebook(course) as first:
            first.add_student("ada")
            engine = first.engine
        with grade.shared_gradebook(), _gradebook(course) as nested:  # nested: one scope
            assert nested.engine is engine
            assert [s.id for s in nested.students] == ["ada"]
            nested.update_or_create_student("ada", first_name="Ada")
        with _gradebook(course) as later:
            assert later.engine is engine and later.find_student("ada").first_name == "Ada"
    with _gradebook(course) as after:
        assert after.engine is not engine  # the scope is over: stock again
        assert after.find_student("ada").first_name == "Ada"


@pytest.mark.slow  # a new gradebook runs alembic: seconds
def test_a_course_id_first_seen_in_a_scope_still_gets_its_course_row(course):
    from nbgrader.api import Course

    with grade.shared_gradebook():
        with _gradebook(course):
            pass
        with _gradebook(course, "another_course") as gb:  # nbgrader's check_course
            assert {c.id for c in gb.db.query(Course)} == {"backprop", "another_course"}


def _max_score_in_gradebook(course: Path, points: float) -> None:
    with _gradebook(course) as gb:
        cell = gb.find_grade_cell("sigmoid_prime_values", ASSIGNMENT, ASSIGNMENT)
        cell.max_score = points
        gb.db.commit()


def _source_points(course: Path, points: int) -> None:
    path = course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[2].metadata["nbgrader"]["points"] = points
    nbformat.write(nb, str(path))


@pytest.mark.slow  # registers with nbgrader four times
def test_registration_is_skipped_only_while_the_source_and_the_gradebook_are_unchanged(
        course):
    api, _ = open_api(course)
    assert grade.ensure_registered(api, course, ASSIGNMENT)  # a new gradebook
    assert not grade.ensure_registered(api, course, ASSIGNMENT)
    digest = grade.registration_digest(api.coursedir, ASSIGNMENT)

    _max_score_in_gradebook(course, 7)  # the gradebook changed behind our back
    assert grade.registration_digest(api.coursedir, ASSIGNMENT) != digest
    assert grade.ensure_registered(api, course, ASSIGNMENT)
    assert grade.registration_digest(api.coursedir, ASSIGNMENT) == digest  # repaired
    with _gradebook(course) as gb:
        assert gb.find_assignment(ASSIGNMENT).max_score == 2 + 1

    _source_points(course, 5)  # the lesson changed
    assert grade.ensure_registered(api, course, ASSIGNMENT)
    with _gradebook(course) as gb:
        assert gb.find_assignment(ASSIGNMENT).max_score == 5 + 1
    assert not grade.ensure_registered(api, course, ASSIGNMENT)


def test_sealed_autograde_checks_the_metadata_once_and_stops_the_kernel_at_once():
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import CheckCellMetadata, Execute, SaveAutoGrades

    stock = Autograde.class_traits()["autograde_preprocessors"].default()
    config = grade.sealed_autograde({"Autograde__autograde_preprocessors": stock})
    steps = config["Autograde__autograde_preprocessors"]
    assert steps == [grade.save_autogrades_at_once() if s is SaveAutoGrades else s
                     for s in stock if s is not CheckCellMetadata] and Execute in steps
    # the sanitize pass, whose check is kept, is nbgrader's own
    assert CheckCellMetadata in Autograde.class_traits()["sanitize_preprocessors"].default()
    assert "Autograde__sanitize_preprocessors" not in config
    assert config["JudgedExecute__shutdown_kernel"] == "immediate"
    assert config["Exporter__optimistic_validation"] is True


def test_a_pass_that_makes_the_notebook_invalid_still_fails_once_validated_at_its_end():
    """Exporter.optimistic_validation (sealed_autograde): one validation per pass, after
    its last step, which still refuses a notebook that a step broke."""
    from nbconvert.exporters import NotebookExporter
    from nbconvert.preprocessors import Preprocessor
    from traitlets.config import Config

    class Breaks(Preprocessor):
        def preprocess(self, nb, resources):
            nb.cells[0]["cell_type"] = "twelve"  # code, markdown or raw in the schema
            return nb, resources

    class Counts(Preprocessor):
        def preprocess(self, nb, resources):
            return nb, resources

    config = Config({"Exporter": {"optimistic_validation": True}})
    exporter = NotebookExporter(config=config, preprocessors=[Breaks, Counts])
    with pytest.raises(Exception, match="twelve"):
        exporter.from_notebook_node(submission())


def test_a_notebook_with_broken_nbgrader_metadata_is_still_refused_and_says_why(course):
    broken = submission()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["nbgrader"] = {"schema_version": 3, "grade": True, "solution": False,
                                 "locked": False, "grade_id": "bonus"}  # with no points
    broken.cells.append(cell)
    hand_in(course, "mallory", broken)
    [result] = grade.grade_class(course, [ASSIGNMENT], ["mallory"], jobs=1)
    assert result.score == 0 and result.status == grade.Status.ERROR
    # nbgrader's CheckCellMetadata, kept in the sanitize pass, refused it, and the reason
    # quotes its exception (not nbgrader's last words, "see the above traceback")
    assert result.reason.startswith("ValidationError: Notebook failed to validate"), result.reason


def _gradebook_at(db: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{db}", "backprop")


def _saved_rows(db: Path) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(db) as con:
        grades = con.execute("SELECT cell_id, auto_score, manual_score, needs_manual_grade "
                             "FROM grade ORDER BY cell_id").fetchall()
        comments = con.execute("SELECT cell_id, auto_comment FROM comment "
                               "ORDER BY cell_id").fetchall()
    return grades + comments


def _forget_autograding(db: Path) -> None:
    import sqlite3

    with sqlite3.connect(db) as con:
        con.execute("UPDATE grade SET auto_score = NULL, needs_manual_grade = 0")
        con.execute("UPDATE comment SET auto_comment = NULL")


@pytest.mark.kernel
def test_autograder_grades_are_saved_as_stock_saves_them_in_one_commit(course, tmp_path):
    """SaveAutoGradesAtOnce writes the rows stock SaveAutoGrades writes, committed once
    per notebook instead of once per cell (an fsync each on SQLite)."""
    from nbgrader.preprocessors import SaveAutoGrades
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    hand_in(course, "amy", submission(SIGMOID_INSTEAD))  # a failed test, an answer
    [graded] = grade.grade_class(course, [ASSIGNMENT], ["amy"], jobs=1)
    assert graded.status == grade.Status.AWAITING_HAND_GRADING
    notebook = nbformat.read(graded_path(course, "amy"), as_version=4)
    rows, commits = {}, []

    def committed(session):
        commits.append(session)

    event.listen(Session, "after_commit", committed)
    try:
        for name, step in (("stock", SaveAutoGrades), ("at once", grade.save_autogrades_at_once())):
            db = shutil.copy(course / "gradebook.db", tmp_path / f"{name}.db")
            _forget_autograding(db)
            resources = {"nbgrader": {"student": "amy", "assignment": ASSIGNMENT,
                                      "notebook": ASSIGNMENT, "db_url": f"sqlite:///{db}"}}
            commits.clear()
            _gradebook_at(db).close()
            opening = len(commits)  # what opening a gradebook commits, in either
            commits.clear()
            step().preprocess(nbformat.from_dict(notebook), resources)
            rows[name] = (_saved_rows(db), len(commits) - opening)
    finally:
        event.remove(Session, "after_commit", committed)
    (stock_rows, stock_commits), (our_rows, our_commits) = rows["stock"], rows["at once"]
    assert our_rows == stock_rows == _saved_rows(course / "gradebook.db")
    assert any(score == 0 for _, score, *_ in stock_rows)  # not every cell scored alike
    assert stock_commits > 1 and our_commits == 1


def test_nbgraders_metadata_check_gives_stock_verdicts_with_its_schema_checked_once(
        monkeypatch):
    """check_nbgrader_schema_once: each cell's nbgrader metadata passes or fails as with
    jsonschema.validate, with the same error, and the schema is checked once, not per cell."""
    import jsonschema
    from nbgrader.nbgraderformat import MetadataValidator, common

    grade.check_nbgrader_schema_once()
    ours = common.jsonschema.validate
    schema = MetadataValidator().schema
    good = {"schema_version": 3, "grade": True, "solution": False, "locked": True,
            "grade_id": "g1", "points": 2}
    cases = [good, {**good, "points": "two"}, {**good, "grade_id": 7},
             {k: v for k, v in good.items() if k != "locked"}, {**good, "task": "yes"}]
    checks = []
    kind = jsonschema.validators.validator_for(schema)
    real_check = kind.check_schema
    monkeypatch.setattr(kind, "check_schema",
                        classmethod(lambda cls, s: (checks.append(1), real_check(s))[1]))

    def verdict(validate, metadata):
        try:
            validate(metadata, schema)
        except jsonschema.ValidationError as error:
            return error.message, list(error.absolute_path)
        return "valid"

    stock = [verdict(jsonschema.validate, c) for c in cases]
    assert len(checks) == len(cases) and stock.count("valid") == 1  # stock: once per cell
    checks.clear()
    assert [verdict(ours, c) for c in cases * 3] == stock * 3
    assert len(checks) <= 1  # ours: once (none if this process checked it already)
