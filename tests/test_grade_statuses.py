"""grade_class on the toy course: every status, feedback without hidden tests, grades.csv."""

from __future__ import annotations

import csv
import html
import re

import pytest
from toycourse import ASSIGNMENT, NEVER_ENDS, SIGMOID_INSTEAD, hand_in, make_course, submission

from course_lib.instructor.course import open_api
from course_lib.instructor.grade import generate_feedback, grade_class, write_grades_csv


def put(course, student, nb=None, raw=None):
    return hand_in(course, student, raw if raw is not None else nb)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("grade") / "course")
    put(course, "alice", submission())
    put(course, "bob", submission(SIGMOID_INSTEAD))
    put(course, "carol", submission(NEVER_ENDS))
    put(course, "dan", submission("import os\nos._exit(3)"))
    put(course, "erin", raw="{this is not json")
    put(course, "fay", raw='{"cells": 5}')
    (course / "submitted" / "gus" / ASSIGNMENT).mkdir(parents=True)  # folder, no notebook
    put(course, "hal", submission(written="YOUR ANSWER HERE"))
    results = {r.student: r for r in grade_class(course, jobs=1)}
    api, _ = open_api(course)
    feedback = generate_feedback(api, list(results.values()))
    return course, results, feedback


EXPECTED = {  # student: (score, max_score, status)
    "alice": (2, 3, "awaiting_hand_grading"),
    "bob": (0, 3, "awaiting_hand_grading"),
    "carol": (0, 3, "timeout"),
    "dan": (0, 3, "kernel_died"),
    "erin": (0, 3, "unreadable"),
    "fay": (0, 3, "unreadable"),
    "gus": (0, 3, "missing"),
    "hal": (2, 3, "ok"),  # unanswered written question: nbgrader scores it 0, nothing pending
}


def test_each_submission_gets_its_score_and_status(graded):
    _, results, _ = graded
    got = {s: (r.score, r.max_score, r.status) for s, r in results.items()}
    assert got == EXPECTED


def test_reasons_and_messages_explain_what_happened(graded):
    _, results, _ = graded
    assert "known mistake: you returned σ(z)" in results["bob"].messages["sigmoid_prime_values"]
    assert "ran past the time limit" in results["carol"].reason
    assert "kernel died" in results["dan"].reason
    assert "NotJSONError" in results["erin"].reason
    assert results["fay"].reason  # a JSON file that is not a notebook says why
    assert results["gus"].reason == f"no {ASSIGNMENT}.ipynb in submitted/gus/{ASSIGNMENT}/"
    assert results["alice"].cell_scores == {"sigmoid_prime_values": (2.0, 2.0),
                                            "written_why": (0.0, 1.0)}


def text_of(html_path):
    """The text a reader sees: tags (syntax highlighting spans) removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_path.read_text()))


def test_feedback_shows_messages_but_never_hidden_tests(graded):
    course, results, feedback = graded
    names = sorted(p.parent.parent.name for p in feedback)
    assert names == ["alice", "bob", "carol", "hal"]  # what was autograded (timeout too)
    hidden = ["BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "from course_lib import grading",
              "grading.check_sigmoid_prime"]
    for path in feedback:
        html = text_of(path)
        assert not [h for h in hidden if h in html], path
    bob = text_of(course / "feedback" / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.html")
    assert "you returned σ(z), the sigmoid itself" in bob
    assert "assert abs(sigmoid_prime(0.0) - 0.25)" in bob  # visible tests stay visible


def test_grades_csv_has_a_row_and_status_for_everyone(graded, tmp_path):
    _, results, _ = graded
    path = write_grades_csv(list(results.values()), tmp_path / "grades.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["student"] for r in rows] == sorted(EXPECTED)
    for row in rows:
        score, max_score, status = EXPECTED[row["student"]]
        assert (float(row["score"]), float(row["max_score"]), row["status"]) == \
            (score, max_score, status)
    assert all(r["reason"] for r in rows if r["status"] not in ("ok", "awaiting_hand_grading"))


def test_parallel_grading_gives_the_same_results(graded):
    """Two worker processes on the same SQLite gradebook: identical results, nothing lost."""
    course, results, _ = graded
    again = {r.student: r for r in grade_class(course, jobs=2)}
    assert again == results


def test_a_locked_gradebook_is_retried_then_reported(monkeypatch):
    """A worker that meets "database is locked" grades the submission again (3 tries)."""
    from course_lib.instructor import grade as G

    calls = []

    def flaky(api, assignment, student):
        calls.append(student)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return G.SubmissionResult(student, assignment, 1.0, 2.0, "ok")

    monkeypatch.setitem(G._WORKER_API, "/nowhere", object())
    monkeypatch.setattr(G, "grade_submission", flaky)
    assert G._grade_task("/nowhere", "99_toy", "amy", feedback=False).status == "ok"
    assert calls == ["amy"] * 3

    def always_locked(api, assignment, student):
        raise RuntimeError("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(G, "grade_submission", always_locked)
    with pytest.raises(RuntimeError, match="database is locked"):
        G._grade_task("/nowhere", "99_toy", "amy", feedback=False)

    def other_error(api, assignment, student):
        calls.append("boom")
        raise ValueError("something else")

    calls.clear()
    monkeypatch.setattr(G, "grade_submission", other_error)
    with pytest.raises(ValueError, match="something else"):
        G._grade_task("/nowhere", "99_toy", "amy", feedback=False)
    assert calls == ["boom"]  # not retried


def test_a_kernel_that_did_not_start_or_died_once_is_graded_again(monkeypatch):
    """A kernel start failure is the machine's fault: retried (3 tries), then "error".
    A kernel death is retried once; a real crash dies again and keeps its status."""
    from course_lib.instructor import grade as G

    outcomes = []

    def scripted(api, assignment, student):
        return outcomes.pop(0)

    def result(status, reason=""):
        return G.SubmissionResult("amy", "99_toy", 0.0, 2.0, status, reason)

    monkeypatch.setattr(G, "grade_submission", scripted)
    outcomes[:] = [result("kernel_start_failed"), result("ok")]
    assert G.grade_reliably(None, "99_toy", "amy").status == "ok"
    assert outcomes == []
    outcomes[:] = [result("kernel_start_failed", "the grading kernel did not start")] * 3
    assert G.grade_reliably(None, "99_toy", "amy").status == "error"
    assert outcomes == []
    outcomes[:] = [result("kernel_died"), result("ok")]
    assert G.grade_reliably(None, "99_toy", "amy").status == "ok"
    outcomes[:] = [result("kernel_died"), result("kernel_died"), result("ok")]
    assert G.grade_reliably(None, "99_toy", "amy").status == "kernel_died"
    assert outcomes == [result("ok")]  # not a third time
    assert G._status_from_log("RuntimeError: Kernel died before replying to kernel_info") \
        == "kernel_start_failed"
    assert G._status_from_log("nbclient.exceptions.DeadKernelError: Kernel died") == "kernel_died"
