"""The feedback page a student reads: exercises by name, passed/failed with messages,
written answers with the grader's comment, no hidden test, maths typeset offline."""

from __future__ import annotations

import html
import re

import pytest
from toycourse import ASSIGNMENT, RIGHT, SIGMOID_INSTEAD, hand_in, make_course, submission

from course_lib.instructor.course import open_api
from course_lib.instructor.feedback import exercise_name
from course_lib.instructor.grade import generate_feedback, grade_class

MATHS = "The derivative is $\\sigma(z)\\,(1 - \\sigma(z))$, so $$\\sigma'(0) = \\frac{1}{4}.$$"
COMMENT = "Right: $\\sigma'$ peaks where $\\sigma = 1/2$."
HIDDEN = ["BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "from course_lib import grading",
          "grading.check_sigmoid_prime", "check_sigmoid_prime"]


def _grade_by_hand(course, student, grade_id, score, comment):
    """What an instructor does in the formgrader: a score and a comment on a written answer."""
    from nbgrader.api import Gradebook

    api, cd = open_api(course)
    with Gradebook(cd.db_url, cd.course_id) as gb:
        grade = gb.find_grade(grade_id, ASSIGNMENT, ASSIGNMENT, student)
        grade.manual_score = score
        grade.needs_manual_grade = False  # as the formgrader does
        gb.find_comment(grade_id, ASSIGNMENT, ASSIGNMENT, student).manual_comment = comment
        gb.db.commit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("feedback") / "course")
    hand_in(course, "alice", submission(RIGHT, written=MATHS))
    hand_in(course, "bob", submission(SIGMOID_INSTEAD, written=MATHS))
    results = grade_class(course, jobs=1, feedback=True)
    _grade_by_hand(course, "alice", "written_why", 1.0, COMMENT)
    api, _ = open_api(course)
    paths = generate_feedback(api, results)  # again, now with the grader's comment
    folder = course / "feedback"
    return course, {p.parent.parent.name: p for p in paths}, {
        s: (folder / s / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text(encoding="utf-8")
        for s in ("alice", "bob")}


def _text(page: str) -> str:
    """The page's words, without tags and scripts (what a reader sees)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.DOTALL | re.IGNORECASE)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))


def _section(page: str, sid: str) -> str:
    start = page.index(f'id="{sid}"')
    end = page.find("<section", start)
    return page[start:end if end > 0 else None]


def test_feedback_is_written_in_nbgraders_folder_layout(pages):
    course, paths, _ = pages
    for student in ("alice", "bob"):
        assert paths[student] == course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
        # release_feedback copies only *.html: the page must need no other file
        assert sorted(p.name for p in paths[student].parent.iterdir()) == [f"{ASSIGNMENT}.html"]


def test_exercises_are_named_by_their_function_not_test_cell(pages):
    _, _, page = pages
    summary = _text(_section(page["bob"], "summary"))
    assert "sigmoid_prime" in summary
    assert "Test cell" not in _text(page["bob"])
    assert "Exercise sigmoid_prime 0 / 2 points" in _text(_section(page["bob"], "exercises"))
    assert "Exercise sigmoid_prime 2 / 2 points" in _text(_section(page["alice"], "exercises"))


def test_summary_gives_the_total_and_the_points_per_exercise(pages):
    _, _, page = pages
    alice = _text(_section(page["alice"], "summary"))
    assert "Total: 3 / 3 points" in alice  # 2 autograded + 1 graded by hand
    assert "1 of 1 test passed" in alice
    assert re.search(r"sigmoid_prime ✓ passed 2 / 2", alice)
    bob = _text(_section(page["bob"], "summary"))
    assert "Total: 0 / 3 points" in bob
    assert "0 of 1 test passed" in bob
    assert re.search(r"sigmoid_prime ✗ failed 0 / 2", bob)
    assert "1 point of written answers is not graded yet" in bob


def test_each_test_says_passed_or_failed_in_words_with_a_mark_and_its_score(pages):
    _, _, page = pages
    assert re.search(r"✓ passed sigmoid_prime_values 2 / 2",
                     _text(_section(page["alice"], "exercises")))
    assert re.search(r"✗ failed sigmoid_prime_values 0 / 2",
                     _text(_section(page["bob"], "exercises")))
    assert "failed" not in _text(_section(page["alice"], "exercises"))


def test_a_failed_tests_message_is_shown_in_full_beside_the_students_code(pages):
    _, _, page = pages
    exercises = _section(page["bob"], "exercises")
    message = re.search(r'<pre class="message">(.*?)</pre>', exercises, re.DOTALL)
    assert message, "no message block"
    text = html.unescape(message.group(1))
    assert text.startswith("AssertionError: sigmoid_prime(z) for z = ")
    assert "wrong value: expected" in text
    assert text.rstrip().endswith("instead of its derivative σ'(z) = σ(z)(1 - σ(z)).")
    code = html.unescape(re.sub(r"<[^>]+>", "", exercises.split("Your code", 1)[1]))
    assert "return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))" in code


def test_no_hidden_test_code_anywhere(pages):
    _, _, page = pages
    for student, text in page.items():
        body = text.split("</head>", 1)[1]
        found = [h for h in HIDDEN if h in body]
        assert not found, f"{student}'s feedback shows hidden test code: {found}"
        assert "Traceback" not in body
    visible = html.unescape(re.sub(r"<[^>]+>", "", page["bob"].split("</head>", 1)[1]))
    assert "assert abs(sigmoid_prime(0.0) - 0.25) < 1e-12" in visible  # visible tests stay


def test_written_answer_shows_the_question_the_answer_and_the_graders_comment(pages):
    _, _, page = pages
    written = _section(page["alice"], "written")
    text = _text(written)
    assert "Why is σ' at most 1/4?" in text
    assert "Your answer" in text and "\\sigma(z)\\,(1 - \\sigma(z))" in text
    assert "Your grader's comment" in text and "peaks where" in text
    assert "1 / 1" in text
    bob = _text(_section(page["bob"], "written"))
    assert "not graded yet – / 1" in bob and "grader's comment" not in bob


def test_page_loads_nothing_from_the_network(pages):
    _, _, page = pages
    for text in page.values():
        assert "window.MathJax" in text  # MathJax is inlined ...
        assert not re.search(r"<script[^>]*\bsrc=", text)  # ... and no script is fetched
        markup = re.sub(r"<script\b.*?</script>", "", text, flags=re.DOTALL)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup)
        assert not re.search(r"""@import|url\(\s*['"]?(https?:)?//""", markup)


@pytest.mark.parametrize("source, grade_id, name", [
    ("def sigmoid_prime(z):\n    return z", "sigmoid_prime_answer", "sigmoid_prime"),
    ("import numpy as np\n\nclass MySigmoid(Function):\n    pass", "mysig_answer", "MySigmoid"),
    ("# YOUR CODE HERE\nraise NotImplementedError()", "bce_answer", "bce"),
])
def test_exercise_name_is_the_function_the_answer_defines(source, grade_id, name):
    assert exercise_name(source, grade_id) == name


@pytest.mark.browser
def test_maths_is_typeset_in_chromium_with_every_outside_request_aborted(pages):
    from browser import chromium_page, screenshot

    _, paths, _ = pages
    aborted: list[str] = []

    def offline(route):
        url = route.request.url
        if url.startswith(("file://", "data:", "blob:", "about:")) or \
                re.match(r"https?://127\.0\.0\.1[:/]", url):
            route.continue_()
        else:
            aborted.append(url)
            route.abort()

    with chromium_page(width=1366, height=900) as page:
        page.route("**/*", offline)
        page.goto(paths["alice"].as_uri())
        page.wait_for_selector("mjx-container svg", state="attached")
        page.wait_for_function("() => window.MathJax && MathJax.startup && "
                               "MathJax.startup.promise !== undefined")
        page.evaluate("() => MathJax.startup.promise")
        typeset = page.locator("mjx-container").count()
        text = page.inner_text("body")
        screenshot(page, "feedback_page.png")
    # the written answer (inline and display maths), twice (summary and notebook), and the
    # grader's comment
    assert typeset >= 4
    assert "$\\sigma" not in text and "\\frac" not in text
    assert aborted == []
