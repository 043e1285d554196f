"""The report read at a glance: feedback links, hand-grading progress, a student table that
fits a laptop screen, diagnostics with their counts as numbers."""

from __future__ import annotations

import re

import pytest

from course_lib.instructor.grade import SubmissionResult
from course_lib.instructor.report import feedback_links, render_report, write_report

ASSIGNMENTS = ["01_chain_rule", "02_sigmoid", "03_softmax_jacobian", "04_backprop_mlp",
               "05_autograd"]
MAX = {"01_chain_rule": 26.0, "02_sigmoid": 20.0, "03_softmax_jacobian": 23.0,
       "04_backprop_mlp": 18.0, "05_autograd": 18.0}
STATUSES = ["ok", "awaiting_hand_grading", "timeout", "kernel_died", "tampered"]


def demo_like_class(n_students: int = 21) -> list[SubmissionResult]:
    """As many students as the demo, five assignments, every status, long student ids."""
    results = []
    for i in range(n_students):
        student = f"student-with-a-long-id-{i:02d}"
        for j, a in enumerate(ASSIGNMENTS):
            status = STATUSES[(i + j) % len(STATUSES)]
            open_pts = 5.0 if status == "awaiting_hand_grading" else 0.0
            results.append(SubmissionResult(
                student, a, 12.5, MAX[a], status,
                reason="" if status in ("ok", "awaiting_hand_grading") else "why " * 30,
                messages={"cell": f"AssertionError: expected {i}, got {j}"},
                cell_scores={"cell": (0.0, 2.0)}, open_points=open_pts))
    return results


def students_table(page: str) -> str:
    return page[page.index('id="students"'):]


def test_each_score_links_to_the_students_feedback_page_when_it_exists(tmp_path):
    results = demo_like_class(2)
    student = results[0].student
    page_path = tmp_path / "feedback" / student / "02_sigmoid" / "02_sigmoid.html"
    page_path.parent.mkdir(parents=True)
    page_path.write_text("<html></html>")
    report = tmp_path / "reports" / "report.html"
    links = feedback_links(results, report, tmp_path)
    assert links == {(student, "02_sigmoid"): f"../feedback/{student}/02_sigmoid/02_sigmoid.html"}
    html = render_report(results, links=links)
    table = students_table(html)
    assert f'href="../feedback/{student}/02_sigmoid/02_sigmoid.html"' in table
    assert table.count('class="fb"') == 1  # no link where there is no page
    assert (report.parent / links[(student, "02_sigmoid")]).resolve() == page_path.resolve()


def test_hand_grading_column_shows_points_graded_so_far_and_open():
    results = [
        SubmissionResult("ann", "01_chain_rule", 20, 26, "awaiting_hand_grading", open_points=5),
        SubmissionResult("ann", "02_sigmoid", 16, 20, "awaiting_hand_grading", open_points=2),
        SubmissionResult("ben", "01_chain_rule", 26, 26, "ok"),
    ]
    table = students_table(render_report(results, hand_graded={"ben": 5.0, "ann": 2.0}))
    assert "Hand grading" in table
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r'<tr><th scope="row">(\w+)</th>(.*?)</tr>', table, re.DOTALL)}
    assert "2 graded · 7 open" in rows["ann"]
    assert "5 graded · none open" in rows["ben"]
    assert ">5 open<" in rows["ann"] and ">2 open<" in rows["ann"]  # per assignment
    # without the gradebook, what the results know: points still open
    table = students_table(render_report(results))
    assert "7 open" in table and "graded ·" not in table


def test_diagnostics_table_shows_rank_and_count_as_numbers():
    html = render_report(demo_like_class(3))
    messages = html[html.index('id="messages"'):html.index('id="problems"')]
    head = re.search(r"<thead>(.*?)</thead>", messages, re.DOTALL).group(1)
    headers = re.findall(r"<th[^>]*>(.*?)</th>", head)
    assert headers[:2] == ["Rank", "Count"]
    assert "#" not in headers
    first = re.search(r"<tbody><tr>(.*?)</tr>", messages, re.DOTALL).group(1)
    rank, count = re.findall(r'<td class="num">(\d+)</td>', first)[:2]
    assert (rank, count) == ("1", "3")  # each assignment's cell failed for all 3 students


@pytest.mark.browser
def test_student_table_fits_a_laptop_screen_for_five_assignments(tmp_path):
    from browser import chromium_page, screenshot

    report = write_report(demo_like_class(21), tmp_path / "report.html")
    with chromium_page(width=1366, height=768) as page:
        page.goto(report.as_uri())
        sizes = page.evaluate("""() => {
            const t = document.querySelector('table.students');
            const box = t.closest('.scroll');
            return {table: t.scrollWidth, box: box.clientWidth,
                    page: document.documentElement.scrollWidth,
                    view: document.documentElement.clientWidth,
                    cols: t.querySelectorAll('thead th').length};
        }""")
        page.locator("#students").scroll_into_view_if_needed()
        screenshot(page, "report_students_1366.png")
    assert sizes["cols"] == 1 + 5 + 2  # student, five assignments, hand grading, total
    assert sizes["table"] <= sizes["box"], sizes
    assert sizes["page"] <= sizes["view"], sizes
