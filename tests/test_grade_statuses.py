"""grade_class on the toy course: every status, feedback without hidden tests, grades.csv."""

from __future__ import annotations

import csv
import html
import os
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from toycourse import ASSIGNMENT, NEVER_ENDS, SIGMOID_INSTEAD, hand_in, make_course, submission

from course_lib.instructor import grade as G
from course_lib.instructor.course import open_api
from course_lib.instructor.grade import generate_feedback, grade_class, write_grades_csv
from course_lib.instructor.status import STORED, CellVerdict, Status, cell_verdict
from course_lib.judge.server import Record, Verdict


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
    # links and special files, which nbgrader would follow (or block on) as the grader
    alices = course / "submitted" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    put(course, "ivy", submission(SIGMOID_INSTEAD)).with_name("notes.txt").symlink_to(alices)
    jos = course / "submitted" / "jo" / ASSIGNMENT
    jos.mkdir(parents=True)
    (jos / f"{ASSIGNMENT}.ipynb").symlink_to(alices)  # alice's notebook as jo's own
    os.mkfifo(put(course, "kit", submission()).with_name("pipe"))
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
    "ivy": (0, 3, "unreadable"),  # a link to alice's notebook beside her own
    "jo": (0, 3, "unreadable"),  # her notebook is a link to alice's
    "kit": (0, 3, "unreadable"),  # a FIFO beside the notebook
}


def test_links_and_special_files_are_refused_before_nbgrader_reads_anything(graded):
    course, results, _ = graded
    assert "a link notes.txt" in results["ivy"].reason
    assert f"a link {ASSIGNMENT}.ipynb" in results["jo"].reason
    assert "a special file pipe" in results["kit"].reason
    for student in ("ivy", "jo", "kit"):  # nothing was copied out of the submission
        assert not (course / "autograded" / student).exists()


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


# ---------------------------------------------------------------------------
# The statuses, and the one rule that says whether a test cell passed (no kernel)
# ---------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_the_status_strings_on_disk_never_change():
    """grades.csv, results.json and the exports of earlier semesters hold these strings."""
    assert [str(s) for s in Status] == [
        "ok", "awaiting_hand_grading", "missing", "unreadable", "timeout", "kernel_died",
        "kernel_start_failed", "tampered", "error", "not_graded"]
    assert all(s.description and "\n" not in s.description for s in Status)
    assert Status.read("needs_manual_grading") is Status.AWAITING_HAND_GRADING
    assert Status.read("ok") is Status.OK and Status.read("a_future_status") == "a_future_status"


def test_every_status_a_result_can_hold_is_documented():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    undocumented = [s for s in STORED if f"`{s}`" not in readme]
    assert undocumented == [], "README.md does not list these statuses"
    assert [s for s in STORED if not re.search(rf"\b{s}\b", G.__doc__)] == []


# Status strings the code must not spell out itself (status.py names them once).
DISTINCT = [s for s in Status if "_" in s or s in ("unreadable", "tampered")]
SPELLED = re.compile(r"""\.status\s*(?:==|!=|(?:not\s+)?in)\s*\(?\s*["']|["'](?:"""
                     + "|".join(DISTINCT) + ")[\"']")


def test_no_module_spells_a_status_that_status_py_names():
    places = [f"{path.relative_to(ROOT)}:{n}"
              for path in sorted((ROOT / "course_lib").rglob("*.py"))
              if path.name != "status.py"
              for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
              if SPELLED.search(line)]
    assert places == []


def verdict(check, passed, message="", part="all"):
    return Verdict(check, part, passed, message)


def test_a_test_cell_passes_only_when_every_hidden_check_passed_and_it_ran_clean():
    checks = [("check_a", "all"), ("check_b", "values")]
    both = [verdict("check_a", True), verdict("check_b", True, part="values")]
    assert cell_verdict(checks, both, ran_clean=True).passed
    assert cell_verdict(checks, both, ran_clean=False).kind == "raised"
    # a failing check wins over everything else, with its own message
    failing = [verdict("check_a", True), verdict("check_b", False, "wrong at [2]", "values")]
    assert cell_verdict(checks, failing, ran_clean=True) == CellVerdict("failed", "wrong at [2]")
    # a check that never reached the judge; two verdicts of one check do not stand for
    # another (counting verdicts would have passed this cell)
    twice_a = [verdict("check_a", True), verdict("check_a", True)]
    for verdicts in ([], both[:1], twice_a):
        assert cell_verdict(checks, verdicts, ran_clean=True).kind == "no_verdict"
    # a cell that calls one check twice needs both verdicts
    assert not cell_verdict([("check_a", "all")] * 2, both[:1], ran_clean=True).passed
    # a cell with no hidden check passes when it ran without error
    assert cell_verdict([], [], ran_clean=True).passed
    assert not cell_verdict([], [], ran_clean=False).passed


def toy_source():
    from toycourse import toy_notebook

    nb = toy_notebook()
    second = nbformat.v4.new_code_cell("### BEGIN HIDDEN TESTS\nfrom course_lib import grading\n"
                                       "grading.check_sigmoid_prime(sigmoid_prime, "
                                       "part='shape')\n### END HIDDEN TESTS")
    second.metadata["nbgrader"] = {"schema_version": 3, "task": False, "grade": True,
                                   "solution": False, "locked": True, "points": 3,
                                   "grade_id": "sigmoid_prime_shape"}
    nb.cells.insert(3, second)
    return nb


@pytest.mark.parametrize("log, status", [
    ("nbclient.exceptions.DeadKernelError: Kernel died", Status.KERNEL_DIED),
    ("CellTimeoutError: a cell timed out", Status.TIMEOUT)])
def test_a_notebook_that_stopped_is_graded_by_the_same_rule_as_far_as_it_got(log, status):
    """The settle step of a run nbgrader could not finish: each test cell that ran
    scores by cell_verdict; the written answer, never graded, scores 0."""
    source = toy_source()
    values, shape = ("check_sigmoid_prime", "values"), ("check_sigmoid_prime", "shape")
    record = Record(verdicts={"sigmoid_prime_values": [Verdict(*values, True)],
                              "sigmoid_prime_shape": [Verdict(*shape, False, "wrong shape")]},
                    kernel_ok={"sigmoid_prime_values": True, "sigmoid_prime_shape": True})
    s = G.Submission(SimpleNamespace(sealed=object()), ASSIGNMENT, "amy", max_score=6.0,
                     source=source, record=record, outcome={"success": False, "error": log},
                     expected={"sigmoid_prime_values": [values], "sigmoid_prime_shape": [shape]})
    result = G.settle_verdicts(s)
    assert (result.status, result.score) == (status, 2.0)
    assert result.cell_scores == {"sigmoid_prime_values": (2.0, 2.0),
                                  "sigmoid_prime_shape": (0.0, 3.0), "written_why": (0.0, 1.0)}
    assert result.messages == {"sigmoid_prime_shape": "wrong shape"}
    assert result.reason.endswith("(graded as far as it got: 2 of 2 test cells ran)")
    # the same cell, reached twice by one check and never by the other, no longer passes
    record.verdicts["sigmoid_prime_values"] = [Verdict(*shape, True), Verdict(*shape, True)]
    assert G.settle_verdicts(s).cell_scores["sigmoid_prime_values"] == (0.0, 2.0)


def test_grading_is_a_short_pipeline_of_named_steps():
    assert [step.__name__ for step in G.STEPS] == [
        "read_notebooks", "inspect_notebook", "run_sealed", "settle_verdicts", "write_grades"]
    assert all(step.__doc__ for step in G.STEPS)
