"""Hand grading on the toy course: open points, `course finalize`, one student's regrade.

The toy assignment has a 2-point autograded cell and a 1-point written answer.
The formgrader is played by writing into nbgrader's gradebook exactly what its
API handler writes (a grade's manual_score and needs_manual_grade, a comment's
manual_comment).
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import re
import shutil

import pytest
from toycourse import ASSIGNMENT, SIGMOID_INSTEAD, hand_in, make_course, submission

from course_lib.instructor import finalize as finalize_cmd
from course_lib.instructor.cli import GRADES_CSV, REPORT_HTML, RESULTS_JSON
from course_lib.instructor.grade import (
    Feedback,
    SubmissionResult,
    grade_class,
    merge_results,
    write_grades_csv,
)
from course_lib.instructor.report import load_results, save_results, write_report

COMMENT = "Right: σ' = σ(1 - σ) is largest at z = 0."


def grade_and_store(course, students=None):
    """What `course grade` does: grade, then grades.csv, results, report; with every
    feedback page written (its --force-feedback), so that finalize has pages to rewrite.

    With ``students``, only those are graded and their results merged into the
    stored ones: the lines the lead wires into cli.py's _grade for --student.
    """
    results = grade_class(course, students=students, jobs=1, feedback=True)
    if students and (course / RESULTS_JSON).is_file():
        results = merge_results(load_results(course / RESULTS_JSON), results)
    write_grades_csv(results, course / GRADES_CSV)
    save_results(results, course / RESULTS_JSON)
    write_report(results, course / REPORT_HTML)
    return results


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """alice answers right, bob returns σ instead of σ'; both wrote a written answer."""
    course = make_course(tmp_path_factory.mktemp("finalize") / "course")
    hand_in(course, "alice", submission())
    hand_in(course, "bob", submission(SIGMOID_INSTEAD))
    grade_and_store(course)
    return course


@pytest.fixture
def course(graded, tmp_path):
    """A copy of the graded course (its own gradebook): each test changes only its copy."""
    return shutil.copytree(graded, tmp_path / "course")


def formgrade(course, student, score, comment=None):
    """Grade the written answer as the formgrader's API handler does."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "backprop") as gb:
        grade = gb.find_grade("written_why", ASSIGNMENT, ASSIGNMENT, student)
        grade.manual_score = score
        grade.needs_manual_grade = score is None and grade.auto_score is None
        if comment is not None:
            gb.find_comment("written_why", ASSIGNMENT, ASSIGNMENT, student).manual_comment = \
                comment
        gb.db.commit()


def gradebook_score(course, student):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "backprop") as gb:
        return gb.find_submission(ASSIGNMENT, student).score


def run_finalize(course, *argv):
    parser = argparse.ArgumentParser()
    finalize_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["finalize", ASSIGNMENT, *argv])
    return args.run(args, course)


def rows(course):
    return {r["student"]: r for r in csv.DictReader((course / GRADES_CSV).open())}


def text_of(path):
    page = re.sub(r"<(script|style)\b.*?</\1>", "", path.read_text(), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def feedback(course, student):
    return course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"


def test_before_hand_grading_the_written_point_is_open_everywhere(graded):
    results = {r.student: r for r in load_results(graded / RESULTS_JSON)}
    assert (results["alice"].status, results["alice"].score, results["alice"].open_points) == \
        ("awaiting_hand_grading", 2.0, 1.0)
    assert (results["bob"].status, results["bob"].score, results["bob"].open_points) == \
        ("awaiting_hand_grading", 0.0, 1.0)
    row = rows(graded)["alice"]
    assert (row["score"], row["max_score"], row["status"], row["open_points"]) == \
        ("2", "3", "awaiting_hand_grading", "1")
    report = html.unescape((graded / REPORT_HTML).read_text())  # a cell's title too
    assert "awaiting hand grading: 1 point open" in report
    assert "2 submissions awaiting hand grading: 2 points open in total" in text_of(
        graded / REPORT_HTML)
    assert gradebook_score(graded, "alice") == 2.0


def test_finalize_reads_the_hand_score_into_gradebook_csv_feedback_and_report(course, capsys):
    formgrade(course, "alice", 1.0, COMMENT)
    formgrade(course, "bob", 1.0)
    assert run_finalize(course) == 0
    assert gradebook_score(course, "alice") == 3.0
    results = {r.student: r for r in load_results(course / RESULTS_JSON)}
    alice = results["alice"]
    assert (alice.status, alice.score, alice.open_points) == ("ok", 3.0, 0.0)
    assert alice.cell_scores == {"sigmoid_prime_values": (2.0, 2.0), "written_why": (1.0, 1.0)}
    assert (results["bob"].status, results["bob"].score) == ("ok", 1.0)
    assert "known mistake" in results["bob"].messages["sigmoid_prime_values"]  # kept
    got = {s: (r["score"], r["status"], r["open_points"]) for s, r in rows(course).items()}
    assert got == {"alice": ("3", "ok", "0"), "bob": ("1", "ok", "0")}
    page = text_of(feedback(course, "alice"))
    assert COMMENT in page
    assert re.search(r"\b3(\.0)? ?/ ?3(\.0)?\b", page), page[:2000]
    report = html.unescape((course / REPORT_HTML).read_text())
    assert not re.search(r"awaiting hand grading: \d", report)  # no cell, no summary line
    assert "3/3" in text_of(course / REPORT_HTML)
    out = capsys.readouterr().out
    assert f"alice/{ASSIGNMENT}: 3/3, ok, 1 comment" in out


def test_feedback_waits_for_the_written_answers_unless_forced(course, capsys):
    formgrade(course, "alice", 0.5, COMMENT)
    before = feedback(course, "bob").read_bytes()
    assert run_finalize(course) == 1  # bob's written answer is still open
    out = capsys.readouterr().out
    assert f"bob/{ASSIGNMENT}: 0/3, awaiting hand grading: 1 point open; feedback held back" \
        in out
    assert "still awaiting hand grading: 1 submission, 1 point open" in out
    assert feedback(course, "bob").read_bytes() == before  # not rewritten
    assert COMMENT in text_of(feedback(course, "alice"))
    assert rows(course)["alice"]["score"] == "2.5"
    assert rows(course)["bob"]["status"] == "awaiting_hand_grading"

    formgrade(course, "bob", None, "Not graded yet, but look at σ(z) again.")
    assert run_finalize(course, "--force") == 1
    out = capsys.readouterr().out
    assert "feedback written although points are open (--force)" in out
    assert "look at σ(z) again" in text_of(feedback(course, "bob"))


def test_course_grade_writes_no_feedback_while_written_answers_are_open(course):
    # a regrade by `course grade` (Feedback.FINAL): alice's written answer is open again,
    # so the page an earlier grading wrote is withdrawn (release_feedback would hand
    # back a grade that is not final); finalize writes it once her answer is graded
    assert feedback(course, "alice").is_file()
    result, = grade_class(course, students=["alice"], jobs=1, feedback=Feedback.FINAL)
    assert (result.status, result.open_points) == ("awaiting_hand_grading", 1.0)
    assert not feedback(course, "alice").exists()
    assert feedback(course, "bob").is_file()  # not regraded: left as it was
    formgrade(course, "alice", 1.0, COMMENT)
    run_finalize(course)
    assert COMMENT in text_of(feedback(course, "alice"))


def test_finalize_without_stored_results_says_to_grade_first(tmp_path):
    course = make_course(tmp_path / "course")
    with pytest.raises(ValueError, match=r"run `course grade 99_toy` first"):
        finalize_cmd.finalize(course, [ASSIGNMENT])


def test_regrading_one_student_changes_only_that_students_rows(course):
    others_row = rows(course)["alice"]
    csv_line = [ln for ln in (course / GRADES_CSV).read_text().splitlines()
                if ln.startswith("alice,")]
    alice_feedback = feedback(course, "alice").read_bytes()
    alice_stored = [r for r in json.loads((course / RESULTS_JSON).read_text())
                    if r["student"] == "alice"]
    hand_in(course, "bob", submission())  # bob's resubmission, now right
    grade_and_store(course, students=["bob"])
    assert rows(course)["bob"]["score"] == "2"
    assert rows(course)["alice"] == others_row
    assert [ln for ln in (course / GRADES_CSV).read_text().splitlines()
            if ln.startswith("alice,")] == csv_line
    assert feedback(course, "alice").read_bytes() == alice_feedback
    assert [r for r in json.loads((course / RESULTS_JSON).read_text())
            if r["student"] == "alice"] == alice_stored
    assert "known mistake" not in text_of(feedback(course, "bob"))


def test_merge_results_replaces_only_the_regraded_pairs():
    old = [SubmissionResult("a", "x", 1, 3, "ok"), SubmissionResult("b", "x", 0, 3, "missing"),
           SubmissionResult("b", "y", 2, 3, "ok")]
    new = [SubmissionResult("b", "x", 3, 3, "ok"), SubmissionResult("c", "x", 1, 3, "ok")]
    merged = merge_results(old, new)
    assert [(r.student, r.assignment, r.score) for r in merged] == \
        [("a", "x", 1), ("b", "x", 3), ("b", "y", 2), ("c", "x", 1)]


def test_results_stored_with_the_old_status_name_still_load(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{"student": "a", "assignment": "x", "score": 2,
                                 "max_score": 3, "status": "needs_manual_grading"}]))
    (r,) = load_results(path)
    assert (r.status, r.open_points) == ("awaiting_hand_grading", 0.0)
    save_results([SubmissionResult("a", "x", 2, 3, "awaiting_hand_grading", open_points=1)],
                 path)
    assert load_results(path)[0].open_points == 1.0
