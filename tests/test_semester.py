"""The instructor's semester loop on the demo class, end to end, a hand grade given in Chromium.

The demo class (course_lib/instructor/demo.py: every kind of hand-in, one student per
demo mistake) hands in lesson 01, whose seed-003 errata answer (5 points) is graded by hand. `course
release`, `course collect` and `course grade` grade them; `course formgrader` serves
nbgrader's formgrader, where ada-perfect's written answer gets 4 of its 5 points and a
comment, typed into the formgrade page as an instructor would; then `course finalize`
and `course export --to canvas`. Those hand-given points must then be in every place the
loop writes a grade: the gradebook, grades.csv, her feedback page, the report and the
Canvas file (and the feedback page and report, opened in Chromium, show them). Every
other student whose written answer nobody graded stays open everywhere.

One lesson only: grading the whole demo class (5 lessons) takes minutes that `make test`
cannot afford, and the loop is the same for every lesson.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest
from browser import chromium_page, formgrader_server, screenshot
from lessons import ROOT
from test_browser_widgets import Lab

from course_lib.instructor import demo
from course_lib.instructor.cli import GRADES_CSV, REPORT_HTML, main

# Every kernel of the class starts in a `course` call made here (tests/conftest.py marks
# the test `kernel` and `browser` itself).
pytestmark = [pytest.mark.slow]

SAVE_S = 120  # a hang guard for one save of the formgrade page
ASSIGNMENT = "01_chain_rule"
WRITTEN = "written_seed003_errata"  # 5 points, graded by hand
STUDENT = "ada-perfect"  # the one whose written answer is graded by hand, in the browser
HAND_POINTS = 4
COMMENT = "Right on both errata; say which worked number each one changes."


def gradebook(course: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{course / 'gradebook.db'}", "backprop")


def stored_scores(course: Path, student: str) -> tuple[float, float | None, str]:
    """(the submission's score, the written answer's manual_score, its comment)."""
    with gradebook(course) as gb:
        score = gb.find_submission(ASSIGNMENT, student).score
        grade = gb.find_grade(WRITTEN, ASSIGNMENT, ASSIGNMENT, student)
        comment = gb.find_comment(WRITTEN, ASSIGNMENT, ASSIGNMENT, student)
        return score, grade.manual_score, comment.manual_comment or ""


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def grades(course: Path) -> dict[str, dict[str, str]]:
    with (course / GRADES_CSV).open(newline="", encoding="utf-8") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def feedback_page(course: Path, student: str) -> Path:
    return course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"


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
        score_box = page.locator(f"input.score#{WRITTEN}")
        comment_box = page.locator(f"textarea.comment#{WRITTEN}-comment")
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


def demo_class(course: Path) -> Path:
    """A copy of the course with lesson 01 only, released, the demo class collected."""
    course.mkdir(parents=True)
    shutil.copyfile(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(ROOT / "source" / ASSIGNMENT, course / "source" / ASSIGNMENT)
    assert main(["release"]) == 0
    inbox = demo.build_class(course.parent / "inbox", course, assignments=[ASSIGNMENT])
    assert main(["collect", str(inbox / ASSIGNMENT), "--assignment", ASSIGNMENT]) == 0
    assert sorted(p.name for p in (course / "submitted").iterdir()) == sorted(demo.ROSTER)
    return course


def test_a_hand_graded_answer_reaches_the_gradebook_grades_csv_feedback_report_and_canvas(
        tmp_path, monkeypatch, capsys):
    # 1. the demo class handed in, graded by `course grade`
    course = tmp_path / "course"
    monkeypatch.delenv("COURSE_DB_URL", raising=False)
    monkeypatch.setenv("COURSE_ROOT", str(course))
    monkeypatch.chdir(tmp_path)
    demo_class(course)
    assert main(["grade", ASSIGNMENT, "--jobs", "2", "--quiet"]) in (0, 1)
    auto, manual, _ = stored_scores(course, STUDENT)
    assert (auto, manual) == (21.0, None)  # every autograded point, the written 5 open
    before = grades(course)
    assert (before[STUDENT]["status"], before[STUDENT]["open_points"]) == (
        "awaiting_hand_grading", "5")
    out = capsys.readouterr().out
    waiting = [s for s, r in before.items() if r["status"] == "awaiting_hand_grading"]
    assert f"{len(waiting)} submissions have no feedback yet" in out, out
    assert not any(feedback_page(course, s).exists() for s in waiting)  # none handed back

    # 2. hand grading in nbgrader's formgrader, served by `course formgrader`
    with formgrader_server(course, tmp_path / "jupyter") as fg:
        hand_grade_in_browser(fg, STUDENT, str(HAND_POINTS), COMMENT)
        log = fg.log.read_text()
    assert " 500 " not in log, log[-4000:]
    total, manual, comment = stored_scores(course, STUDENT)
    assert (total, manual, comment) == (auto + HAND_POINTS, HAND_POINTS, COMMENT)
    want = f"{auto + HAND_POINTS:g}"  # "25"

    # 3. `course finalize`: 1, since the other students' written answers are still open
    still_open = sorted(s for s, r in before.items()
                        if s != STUDENT and r["status"] == "awaiting_hand_grading")
    assert len(still_open) >= 10  # most of the class wrote an answer nobody graded yet
    capsys.readouterr()
    assert main(["finalize", ASSIGNMENT]) == 1
    out = capsys.readouterr().out
    assert f"{STUDENT}/{ASSIGNMENT}: {want}/26, ok, 1 comment" in out, out
    assert (f"still awaiting hand grading: {len(still_open)} submissions, "
            f"{5 * len(still_open)} points open") in out, out

    # 4. the points everywhere: the gradebook (again: finalize must not undo it) ...
    assert stored_scores(course, STUDENT) == (auto + HAND_POINTS, HAND_POINTS, COMMENT)
    # ... grades.csv, where only her row changed ...
    rows = grades(course)
    assert (rows[STUDENT]["score"], rows[STUDENT]["max_score"], rows[STUDENT]["status"],
            rows[STUDENT]["open_points"]) == (want, "26", "ok", "0")
    assert {s: r for s, r in rows.items() if s != STUDENT} == {
        s: r for s, r in before.items() if s != STUDENT}
    # ... the feedback page and the report (their text, then as Chromium shows them) ...
    feedback = feedback_page(course, STUDENT)
    assert feedback.is_file()
    page_text = feedback.read_text()
    assert f"Total: <span class=\"points\">{want} / 26</span>" in page_text
    assert COMMENT in page_text
    report = course / REPORT_HTML
    # ... and the Canvas file: her score; the open ones empty, each with a warning
    canvas = tmp_path / "canvas.csv"
    assert main(["export", "--to", "canvas", "--out", str(canvas)]) == 1  # open ones warned
    header, points, *students = csv_rows(canvas)
    assert header[-1] == ASSIGNMENT and points[-1] == "26"
    by_login = {r[3]: r[-1] for r in students}  # SIS Login ID: the nbgrader id
    assert set(by_login) == set(demo.ROSTER)
    assert by_login[STUDENT] == want
    err = capsys.readouterr().err
    for student in still_open:
        assert by_login[student] == ""
        assert f"warning: {student}/{ASSIGNMENT}: awaiting_hand_grading" in err
    assert f"warning: {STUDENT}/" not in err

    with chromium_page() as page:
        page.goto(feedback.as_uri())
        assert page.locator("p.total").inner_text().strip() == f"Total: {want} / 26 points"
        shown = page.locator(".comment", has_text=COMMENT).first
        shown.wait_for(state="visible")
        screenshot(page, "semester_feedback.png")

        page.goto(report.as_uri())
        row = page.locator("table.students tbody tr",
                           has=page.locator("th", has_text=re.compile(f"^{STUDENT}$")))
        row.wait_for(state="visible")
        assert re.match(rf"{want}/26\b", row.locator("td.total").inner_text().strip())
        # hand-grading progress: all 5 of her hand-graded points graded, none open
        assert row.locator("td.hand").inner_text().strip() == "5 graded · none open"
        link = row.locator("a.fb").first  # the score links to the feedback page
        assert link.inner_text().strip() == f"{want}/26"
        assert Path(link.get_attribute("href")).name == feedback.name
        screenshot(page, "semester_report.png")
