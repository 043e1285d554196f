"""The instructor's semester loop on a small class, end to end, a hand grade given in Chromium.

A toy class (2 autograded points, 1 written point graded by hand): alice and carol
answer right, bob returns σ instead of σ'. `course grade` grades them; `course
formgrader` serves nbgrader's formgrader, where alice's written answer gets its point
and a comment, typed into the formgrade page as an instructor would; then `course
finalize` and `course export --to canvas`. That one hand-given point must then be in
every place the loop writes a grade: the gradebook, grades.csv, alice's feedback page,
the report and the Canvas file (and the feedback page and report, opened in Chromium,
show it). bob and carol, whose written answers nobody graded, stay open everywhere.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import chromium_page, printed_token, screenshot, stop, wait_until_answering
from test_browser_widgets import Lab, _free_port
from toycourse import ASSIGNMENT, SIGMOID_INSTEAD, hand_in, make_course, submission

from course_lib.instructor.cli import GRADES_CSV, REPORT_HTML, main

pytestmark = [pytest.mark.slow]  # kernel and browser: tests/conftest.py marks them

SERVER_START_S = 180  # hang guards only: a quiet machine needs a few seconds
SAVE_S = 120
STUDENT = "alice"  # the one whose written answer is graded by hand, in the browser
COMMENT = "Right: the derivative is largest at z = 0, where it is one quarter."


def gradebook(course: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{course / 'gradebook.db'}", "backprop")


def stored_scores(course: Path, student: str) -> tuple[float, float | None, str]:
    """(the submission's score, the written answer's manual_score, its comment)."""
    with gradebook(course) as gb:
        score = gb.find_submission(ASSIGNMENT, student).score
        grade = gb.find_grade("written_why", ASSIGNMENT, ASSIGNMENT, student)
        comment = gb.find_comment("written_why", ASSIGNMENT, ASSIGNMENT, student)
        return score, grade.manual_score, comment.manual_comment or ""


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def grades(course: Path) -> dict[str, dict[str, str]]:
    with (course / GRADES_CSV).open(newline="", encoding="utf-8") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def feedback_page(course: Path, student: str) -> Path:
    return course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"


class Formgrader:
    """`course formgrader` on a course, as `make formgrader` runs it, in a subprocess."""

    def __init__(self, course: Path, home: Path):
        for sub in ("config", "data", "runtime", "ipython"):
            (home / sub).mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k != "COURSE_DB_URL"}
        env.update(COURSE_ROOT=str(course), JUPYTER_CONFIG_DIR=str(home / "config"),
                   JUPYTER_DATA_DIR=str(home / "data"),
                   JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                   IPYTHONDIR=str(home / "ipython"), PATH="/usr/bin:/bin")
        self.port = _free_port()
        self.log = home / "formgrader.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "course_lib.instructor.formgrader",
                 "--port", str(self.port)], cwd=course, env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self) -> Lab:
        deadline = time.monotonic() + SERVER_START_S
        server = Lab(f"http://127.0.0.1:{self.port}",
                     printed_token(self.proc, self.log, deadline), self.log)
        wait_until_answering(self.proc, server, deadline)
        return server

    def stop(self) -> None:
        stop(self.proc)  # the command stops the server it started


def hand_grade_in_browser(fg: Lab, student: str, score: str, comment: str) -> None:
    """From the assignment's submissions, to the student's notebook, to its formgrade
    page: type the written answer's score and a comment, each saved by the page's API."""
    with chromium_page() as page:
        page.goto(f"{fg.base}/formgrader/manage_submissions/{ASSIGNMENT}?token={fg.token}",
                  wait_until="domcontentloaded")
        row = page.locator("#main-table tr", has_text=student).first
        row.locator(".student-name a").click()  # a link once the submission is autograded
        page.wait_for_url(re.compile(f"/formgrader/manage_students/{student}/{ASSIGNMENT}"),
                          wait_until="domcontentloaded")
        with page.expect_response(  # the formgrade page itself (after its 301 to .../)
                lambda r: re.search(r"/formgrader/submissions/[0-9a-f]+/$", r.url)) as shown:
            page.locator("#main-table .name a", has_text=ASSIGNMENT).first.click()
        assert shown.value.status == 200, \
            f"the formgrade page answered {shown.value.status}:\n{fg.log_tail(60)}"
        page.wait_for_url(re.compile(r"/formgrader/submissions/[0-9a-f]+/$"),
                          wait_until="domcontentloaded")
        score_box = page.locator("input.score#written_why")
        comment_box = page.locator("textarea.comment#written_why-comment")
        score_box.wait_for()
        comment_box.wait_for()

        def saved(kind):  # the Backbone model's PUT to /formgrader/api/<kind>/<id>
            return page.expect_response(
                lambda r: f"/formgrader/api/{kind}/" in r.url and r.request.method == "PUT",
                timeout=SAVE_S * 1000)

        with saved("grade") as grade_put:
            score_box.fill(score)
            score_box.blur()  # the page saves on change
        with saved("comment") as comment_put:
            comment_box.fill(comment)
            comment_box.blur()
        assert grade_put.value.ok, grade_put.value.text()
        assert comment_put.value.ok, comment_put.value.text()
        assert score_box.input_value() == score  # re-rendered from the saved model
        screenshot(page, "semester_formgrade.png")


def test_a_hand_graded_answer_reaches_the_gradebook_grades_csv_feedback_report_and_canvas(
        tmp_path, monkeypatch, capsys):
    # 1. a class handed in, graded by `course grade`
    course = make_course(tmp_path / "course")
    hand_in(course, "alice", submission())
    hand_in(course, "bob", submission(SIGMOID_INSTEAD))
    hand_in(course, "carol", submission(written="It is σ(1-σ), at most 1/2 · 1/2."))
    monkeypatch.delenv("COURSE_DB_URL", raising=False)
    monkeypatch.chdir(course)
    monkeypatch.setenv("COURSE_ROOT", str(course))
    assert main(["grade", ASSIGNMENT, "--quiet"]) == 0, capsys.readouterr()
    auto, manual, _ = stored_scores(course, STUDENT)
    assert (auto, manual) == (2.0, None)
    assert grades(course)[STUDENT]["status"] == "awaiting_hand_grading"

    # 2. hand grading in nbgrader's formgrader, served by `course formgrader`
    server = Formgrader(course, tmp_path / "jupyter")
    try:
        fg = server.wait_ready()
        hand_grade_in_browser(fg, STUDENT, "1", COMMENT)
        log = fg.log.read_text()
    finally:
        server.stop()
    assert " 500 " not in log, log[-4000:]
    total, manual, comment = stored_scores(course, STUDENT)
    assert (total, manual, comment) == (auto + 1, 1.0, COMMENT)
    want = f"{auto + 1:g}"  # "3"

    # 3. `course finalize`: 1, since bob's and carol's written answers are still open
    capsys.readouterr()
    assert main(["finalize", ASSIGNMENT]) == 1
    out = capsys.readouterr().out
    assert f"{STUDENT}/{ASSIGNMENT}: {want}/3, ok, 1 comment" in out, out
    assert "still awaiting hand grading: 2 submissions, 2 points open" in out, out

    # 4. the point everywhere: the gradebook (again: finalize must not undo it) ...
    assert stored_scores(course, STUDENT) == (auto + 1, 1.0, COMMENT)
    # ... grades.csv ...
    rows = grades(course)
    assert (rows[STUDENT]["score"], rows[STUDENT]["max_score"], rows[STUDENT]["status"],
            rows[STUDENT]["open_points"]) == (want, "3", "ok", "0")
    assert {s: (r["score"], r["status"], r["open_points"]) for s, r in rows.items()
            if s != STUDENT} == {"bob": ("0", "awaiting_hand_grading", "1"),
                                 "carol": ("2", "awaiting_hand_grading", "1")}
    # ... the feedback page and the report (their text, then as Chromium shows them) ...
    feedback = feedback_page(course, STUDENT)
    assert feedback.is_file()
    page_text = feedback.read_text()
    assert f"Total: <span class=\"points\">{want} / 3</span>" in page_text
    assert COMMENT in page_text
    report = course / REPORT_HTML
    # ... and the Canvas file
    canvas = tmp_path / "canvas.csv"
    assert main(["export", "--to", "canvas", "--out", str(canvas)]) == 1  # bob, carol warned
    header, points, *students = csv_rows(canvas)
    assert header[-1] == ASSIGNMENT and points[-1] == "3"
    by_login = {r[3]: r[-1] for r in students}  # SIS Login ID: the nbgrader id
    assert by_login == {"alice": want, "bob": "", "carol": ""}
    err = capsys.readouterr().err
    assert f"warning: bob/{ASSIGNMENT}: awaiting_hand_grading" in err
    assert f"warning: {STUDENT}/" not in err

    with chromium_page() as page:
        page.goto(feedback.as_uri())
        assert page.locator("p.total").inner_text().strip() == f"Total: {want} / 3 points"
        shown = page.locator(".comment", has_text=COMMENT).first
        shown.wait_for(state="visible")
        screenshot(page, "semester_feedback.png")

        page.goto(report.as_uri())
        row = page.locator("table.students tbody tr",
                           has=page.locator("th", has_text=re.compile(f"^{STUDENT}$")))
        row.wait_for(state="visible")
        assert re.match(rf"{want}/3\b", row.locator("td.total").inner_text().strip())
        assert row.locator("td.hand").inner_text().strip() == "1 graded · none open"
        link = row.locator("a.fb").first  # the score links to the feedback page
        assert link.inner_text().strip() == f"{want}/3"
        assert Path(link.get_attribute("href")).name == feedback.name
        screenshot(page, "semester_report.png")
