"""`course export`: files Canvas and Moodle import, and no unusual status reaching them unseen.

A graded toy class (2 autograded points, 1 written point): alice right and
hand-graded (ok, 3/3), bob still awaiting hand grading, carol handed in
nothing (missing), erin a broken file (unreadable). Who they are comes from the
gradebook, as `nbgrader db student import` would put it there.
"""

from __future__ import annotations

import argparse
import csv
import shutil

import pytest
from toycourse import ASSIGNMENT, SIGMOID_INSTEAD, hand_in, make_course, submission

from course_lib.instructor import export as export_cmd
from course_lib.instructor.cli import RESULTS_JSON
from course_lib.instructor.export import CANVAS_POINTS_ROW, grade_table
from course_lib.instructor.finalize import finalize
from course_lib.instructor.grade import SubmissionResult, grade_class
from course_lib.instructor.report import save_results


def _gradebook(course):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{course / 'gradebook.db'}", "backprop")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("export") / "course")
    hand_in(course, "alice", submission())
    hand_in(course, "bob", submission(SIGMOID_INSTEAD))
    (course / "submitted" / "carol" / ASSIGNMENT).mkdir(parents=True)  # nothing handed in
    hand_in(course, "erin", "{this is not json")
    save_results(grade_class(course, jobs=1), course / RESULTS_JSON)
    with _gradebook(course) as gb:
        gb.update_or_create_student("alice", first_name="Alice", last_name="Liddell",
                                    email="alice@uni.example", lms_user_id="1001")
        gb.update_or_create_student("bob", first_name="Bob", last_name="Baker, Jr.",
                                    email="bob@uni.example", lms_user_id="1002")
        grade = gb.find_grade("written_why", ASSIGNMENT, ASSIGNMENT, "alice")
        grade.manual_score, grade.needs_manual_grade = 1.0, False  # as the formgrader does
        gb.db.commit()
    finalize(course, [ASSIGNMENT], feedback=False)
    return course


@pytest.fixture
def course(graded, tmp_path):
    return shutil.copytree(graded, tmp_path / "course")


def run_export(course, *argv):
    parser = argparse.ArgumentParser()
    export_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", *argv])
    return args.run(args, course)


def read(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_canvas_file_has_canvas_columns_points_row_and_one_row_per_student(course, capsys):
    out = course / "canvas.csv"
    assert run_export(course, "--to", "canvas", "--out", str(out),
                      "--canvas-id", f"{ASSIGNMENT}=4242") == 1  # 1: there are warnings
    header, points, *students = read(out)
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
                      f"{ASSIGNMENT} (4242)"]
    assert points == [CANVAS_POINTS_ROW, "", "", "", "", "3"]
    assert students == [
        ["Liddell, Alice", "1001", "", "alice", "", "3"],
        ["Baker, Jr., Bob", "1002", "", "bob", "", ""],  # awaiting hand grading: empty
        ["carol", "", "", "carol", "", ""],  # missing: empty, not 0
        ["erin", "", "", "erin", "", ""],  # unreadable: empty
    ]
    err = capsys.readouterr().err
    assert f"warning: bob/{ASSIGNMENT}: awaiting_hand_grading, left empty: 1 point of " \
        "written answers not graded yet (0 so far)" in err
    assert f"warning: carol/{ASSIGNMENT}: missing, left empty" in err
    assert "Canvas matches them by SIS Login ID" in err and "carol, erin" in err


def test_every_cell_that_is_not_a_final_score_is_in_the_warnings_file(course, capsys):
    out = course / "exports" / "grades.csv"
    assert run_export(course, "--to", "csv", "--out", str(out)) == 1
    header, *warnings = read(course / "exports" / "grades-warnings.csv")
    assert header == ["student", "assignment", "status", "exported", "why"]
    assert [(w[0], w[2], w[3]) for w in warnings] == [
        ("bob", "awaiting_hand_grading", ""), ("carol", "missing", ""),
        ("erin", "unreadable", "")]
    assert "NotJSONError" in warnings[2][4]
    assert f"no {ASSIGNMENT}.ipynb" in warnings[1][4]
    assert "warnings: 3 cells not a plain final score" in capsys.readouterr().out


def test_missing_as_zero_writes_0_for_missing_only_and_still_warns(course):
    out = course / "moodle.csv"
    assert run_export(course, "--to", "moodle", "--out", str(out), "--missing-as-zero") == 1
    header, *rows = read(out)
    assert header == ["Username", "Email address", "First name", "Last name", ASSIGNMENT]
    assert rows == [["alice", "alice@uni.example", "Alice", "Liddell", "3"],
                    ["bob", "bob@uni.example", "Bob", "Baker, Jr.", ""],
                    ["carol", "", "", "", "0"],
                    ["erin", "", "", "", ""]]
    warnings = read(course / "moodle-warnings.csv")[1:]
    assert ["carol", ASSIGNMENT, "missing", "0", "nothing handed in; 0 by --missing-as-zero"] \
        in warnings


def test_plain_csv_shows_each_score_with_its_status(course):
    out = course / "plain.csv"
    run_export(course, "--to", "csv", "--out", str(out))
    header, *rows = read(out)
    assert header == ["student", "first_name", "last_name", "email", "lms_user_id",
                      ASSIGNMENT, f"{ASSIGNMENT} status"]
    assert {r[0]: (r[5], r[6]) for r in rows} == {
        "alice": ("3", "ok"), "bob": ("", "awaiting_hand_grading"),
        "carol": ("", "missing"), "erin": ("", "unreadable")}


def test_an_export_with_nothing_unusual_has_no_warnings_file(course):
    save_results([SubmissionResult(s, ASSIGNMENT, p, 3, "ok") for s, p in
                  (("alice", 3), ("bob", 2.5), ("carol", 0), ("erin", 1))], course / RESULTS_JSON)
    (course / "exports").mkdir()
    stale = course / "exports" / "canvas-grades-warnings.csv"
    stale.write_text("old\n")  # from an earlier export: no longer true
    assert run_export(course, "--to", "canvas") == 0
    rows = read(course / "exports" / "canvas-grades.csv")
    assert rows[0][-1] == ASSIGNMENT  # no Canvas id given: Canvas creates the assignment
    assert [(r[0], r[-1]) for r in rows[2:]] == [
        ("Liddell, Alice", "3"), ("Baker, Jr., Bob", "2.5"), ("carol", "0"), ("erin", "1")]
    assert not stale.exists()


def test_a_student_in_the_gradebook_without_a_result_is_empty_and_warned(course):
    save_results([SubmissionResult("alice", ASSIGNMENT, 3, 3, "ok")], course / RESULTS_JSON)
    assert run_export(course, "--to", "csv", "--out", str(course / "g.csv")) == 1
    assert [r[5] for r in read(course / "g.csv")[1:]] == ["3", "", "", ""]
    assert [(w[0], w[2]) for w in read(course / "g-warnings.csv")[1:]] == \
        [("bob", "not_graded"), ("carol", "not_graded"), ("erin", "not_graded")]


def test_statuses_scored_by_the_courses_rules_export_their_score_with_a_warning():
    results = [SubmissionResult("a", "x", 2, 3, "timeout", "cell q ran past the time limit"),
               SubmissionResult("b", "x", 1, 3, "kernel_died", "the kernel died"),
               SubmissionResult("c", "x", 0, 3, "tampered", "check: test cell q skipped"),
               SubmissionResult("d", "x", 0, 3, "error", "nbgrader failed"),
               SubmissionResult("e", "x", 0, 3, "a_status_from_the_future")]
    table = grade_table(results, {})
    assert {s: table.values[(s, "x")] for s in "abcde"} == \
        {"a": "2", "b": "1", "c": "0", "d": "", "e": ""}
    assert [(w.student, w.exported) for w in table.warnings] == \
        [("a", "2"), ("b", "1"), ("c", "0"), ("d", ""), ("e", "")]
    assert "cell q ran past the time limit" in table.warnings[0].why


def test_unknown_assignment_or_bad_canvas_id_is_refused_by_name(course):
    with pytest.raises(ValueError, match="no results for 42_nope"):
        run_export(course, "--to", "csv", "42_nope")
    with pytest.raises(ValueError, match=r"--canvas-id: expected ASSIGNMENT=NUMBER"):
        run_export(course, "--to", "canvas", "--canvas-id", ASSIGNMENT)
    with pytest.raises(ValueError, match="--canvas-id names 42_nope"):
        run_export(course, "--to", "canvas", "--canvas-id", "42_nope=1")
