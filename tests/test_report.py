"""The instructor's HTML report, and saving / loading graded results."""

import base64
import html
import json
import re
import subprocess
import sys

import pytest

from course_lib.instructor.grade import SubmissionResult
from course_lib.instructor.report import (
    SECTION_IDS,
    group_messages,
    load_results,
    main,
    message_key,
    save_results,
    write_report,
)
from course_lib.instructor.status import STORED, Status

EVIL = "<script>alert('x')</script>"
KNOWN = "This matches a known mistake: you used σ(z) instead of σ(z)(1 - σ(z))."
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sigmoid_prime_msg(expected, got):
    return (f"AssertionError: sigmoid_prime(z) for z of shape (5,): wrong values.\n"
            f"  worst at [2]: expected {expected}, got {got} (error {abs(expected - got):.4f}).\n"
            f"  {KNOWN}")


RESULTS = [
    # 01_chain_rule: 5 graded normally (ok / needs manual grading), 3 not
    SubmissionResult("alice", "01_chain_rule", 10.0, 10.0, "ok",
                     cell_scores={"add": (2.0, 2.0), "mul": (3.0, 3.0), "written": (5.0, 5.0)}),
    SubmissionResult("bob", "01_chain_rule", 2.0, 10.0, "awaiting_hand_grading",
                     messages={"mul": "AssertionError: dx: expected 0.25, got 0.5"},
                     cell_scores={"add": (2.0, 2.0), "mul": (0.0, 3.0), "written": (0.0, 5.0)}),
    SubmissionResult("carol", "01_chain_rule", 5.0, 10.0, "ok",
                     messages={"mul": "AssertionError: dx: expected 0.3, got 0.1"},
                     cell_scores={"add": (2.0, 2.0), "mul": (0.0, 3.0), "written": (3.0, 5.0)}),
    SubmissionResult("dave", "01_chain_rule", 0.0, 10.0, "missing",
                     "no 01_chain_rule.ipynb in submitted/dave/01_chain_rule/"),
    SubmissionResult(EVIL, "01_chain_rule", 7.5, 10.0, "ok",
                     messages={"add": "NameError: name <b>np</b> is not defined"},
                     cell_scores={"add": (0.0, 2.0), "mul": (3.0, 3.0), "written": (4.5, 5.0),
                                  "intro": (0.0, 0.0)}),
    SubmissionResult("erin", "01_chain_rule", 0.0, 10.0, "unreadable",
                     "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
    SubmissionResult("frank", "01_chain_rule", 2.0, 10.0, "timeout",
                     "cell mul ran past the time limit and was stopped",
                     cell_scores={"add": (2.0, 2.0), "mul": (0.0, 3.0), "written": (0.0, 5.0)}),
    SubmissionResult("gina", "01_chain_rule", 4.0, 10.0, "ok",
                     messages={"mul": "AssertionError: dx: expected -1.5e-3, got 2"},
                     cell_scores={"add": (2.0, 2.0), "mul": (0.0, 3.0), "written": (2.0, 5.0)}),
    # 02_sigmoid: 4 graded normally, 3 not (kernel_died, error, a status from the future)
    SubmissionResult("alice", "02_sigmoid", 6.0, 6.0, "ok",
                     cell_scores={"sigmoid": (3.0, 3.0), "sigmoid_prime": (3.0, 3.0)}),
    SubmissionResult("bob", "02_sigmoid", 3.0, 6.0, "ok",
                     messages={"sigmoid_prime": sigmoid_prime_msg(0.2350, 0.7311)},
                     cell_scores={"sigmoid": (3.0, 3.0), "sigmoid_prime": (0.0, 3.0)}),
    SubmissionResult("carol", "02_sigmoid", 3.0, 6.0, "ok",
                     messages={"sigmoid_prime": sigmoid_prime_msg(0.1966, 0.2689)},
                     cell_scores={"sigmoid": (3.0, 3.0), "sigmoid_prime": (0.0, 3.0)}),
    SubmissionResult("dave", "02_sigmoid", 0.0, 6.0, "kernel_died",
                     "the kernel died while running the notebook (os._exit, a crash, or out of "
                     "memory)"),
    SubmissionResult(EVIL, "02_sigmoid", 1.5, 6.0, "ok",
                     messages={"sigmoid": "AssertionError: sigmoid(z): got nan & <inf>",
                               "sigmoid_prime": sigmoid_prime_msg(0.25, 0.5)},
                     cell_scores={"sigmoid": (1.5, 3.0), "sigmoid_prime": (0.0, 3.0)}),
    SubmissionResult("erin", "02_sigmoid", 0.0, 6.0, "error",
                     "nbgrader failed: <Traceback> & co"),
    SubmissionResult("frank", "02_sigmoid", 0.0, 6.0, "quarantined",
                     "a status that a later grader may add"),
]
NOT_NORMAL = {(r.student, r.assignment) for r in RESULTS
              if r.status not in ("ok", "awaiting_hand_grading")}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = write_report(RESULTS, tmp_path_factory.mktemp("report") / "out" / "report.html")
    return path, path.read_text(encoding="utf-8")


def section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}".*?</section>', page, re.DOTALL)
    assert m, f"no section {sid}"
    return m.group(0)


def images(page: str) -> list[tuple[bytes, str]]:
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]*alt="([^"]+)"',
                       page)
    return [(base64.b64decode(data, validate=True), alt) for data, alt in found]


def rows(table_html: str) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", table_html, re.DOTALL).group(1)
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, re.DOTALL)
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL)]


def test_report_file_has_every_section(report):
    path, page = report
    assert path.is_file() and path.name == "report.html"
    assert page.startswith("<!DOCTYPE html>")
    for sid in SECTION_IDS:
        assert page.count(f'<section id="{sid}"') == 1


def test_report_is_self_contained(report):
    _, page = report
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page
    assert re.findall(r'src="([^"]{0,22})', page) == ["data:image/png;base64,"] * 4


def test_figures_are_valid_pngs_with_alt_text(report):
    _, page = report
    imgs = images(page)
    # distribution, one pass-rate chart per assignment, the top messages
    assert len(imgs) == 4 == page.count("<img ")
    for png, alt in imgs:
        assert png.startswith(PNG_SIGNATURE)
        assert png[12:16] == b"IHDR" and png.endswith(b"IEND\xaeB`\x82")
        assert len(png) > 5000  # matplotlib drew something, not an empty canvas
        assert len(alt) > 40
    assert section(page, "distribution").count("<img ") == 1
    assert section(page, "pass-rates").count("<img ") == 2
    assert section(page, "messages").count("<img ") == 1
    assert page.count("<figcaption>") == 4


def test_summary_counts(report):
    _, page = report
    summary = section(page, "summary")
    for label, value in [("Students", 8), ("Assignments", 2), ("Graded normally", 9),
                         ("Not graded normally", 6)]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in summary
    table = rows(summary)
    assert [r[0] for r in table] == ["01_chain_rule", "02_sigmoid"]
    # 01: 100, 20, 50, 75, 40 %   02: 100, 50, 50, 25 %
    assert table[0][1:] == ["10", "57.0%", "50.0%", "20.0%", "100.0%", "5", "3"]
    assert table[1][1:] == ["6", "56.2%", "50.0%", "25.0%", "100.0%", "4", "3"]
    assert "quarantined</span>&nbsp;1" in summary


def test_the_legend_and_the_summary_explain_each_status(report):
    """The badge of every status a result can hold carries its one-line description."""
    _, page = report
    legend = re.search(r'<p class="legend">.*?</p>', section(page, "students"), re.DOTALL)[0]
    for status in STORED:
        assert f'title="{html.escape(status.description)}">{status}</span>' in legend
    assert f'title="{html.escape(Status.OK.description)}">ok</span>&nbsp;' in \
        section(page, "summary")


def test_pass_rates_skip_zero_max_cells(report):
    _, page = report
    alts = [alt for _, alt in images(section(page, "pass-rates"))]
    # the timeout's partial results count; the missing/unreadable ones have no cells
    assert "add 5 of 6; mul 2 of 6; written 1 of 6" in alts[0]
    assert "intro" not in alts[0]
    assert "sigmoid 3 of 4; sigmoid_prime 1 of 4" in alts[1]


def test_message_groups_ignore_numbers_and_group_known_mistakes():
    groups = group_messages(RESULTS)
    top = groups[0]
    assert (top.assignment, top.cell, top.count, top.known) == ("02_sigmoid", "sigmoid_prime",
                                                                3, True)
    assert top.key == "Known mistake: you used σ(z) instead of σ(z)(1 - σ(z))"
    assert top.students == ["bob", "carol", EVIL]
    second = groups[1]
    assert (second.cell, second.count, second.known) == ("mul", 3, False)
    assert second.key == "AssertionError: dx: expected #, got #"
    assert sorted(g.count for g in groups) == [1, 1, 3, 3]
    assert message_key("shape (3, 4) got 1e-5 in x1")[0] == "shape (#…) got # in x1"


def test_message_table(report):
    _, page = report
    table = rows(section(page, "messages"))
    assert [r[:4] for r in table] == [
        ["1", "3", "02_sigmoid", "<code>sigmoid_prime</code>"],
        ["2", "3", "01_chain_rule", "<code>mul</code>"],
        ["3", "1", "01_chain_rule", "<code>add</code>"],
        ["4", "1", "02_sigmoid", "<code>sigmoid</code>"],
    ]
    assert "known mistake</span>" in table[0][4] and "known mistake</span>" not in table[1][4]
    assert "name &lt;b&gt;np&lt;/b&gt; is not defined" in table[2][4]
    assert "got nan &amp; &lt;inf&gt;" in table[3][4]


def test_problem_table_lists_exactly_the_submissions_not_graded_normally(report):
    _, page = report
    problems = section(page, "problems")
    table = rows(problems)
    assert len(table) == len(NOT_NORMAL) == 6
    listed = set()
    for student, assignment, status, reason in table:
        original = next(r for r in RESULTS
                        if (r.assignment, r.student) == (assignment, student))
        listed.add((student, assignment))
        assert f">{original.status}</span>" in status
        assert reason == original.reason.replace("&", "&amp;").replace("<", "&lt;") \
            .replace(">", "&gt;")
    assert listed == NOT_NORMAL
    assert "nbgrader failed: &lt;Traceback&gt; &amp; co" in problems
    assert "quarantined" in problems and "st-other" in problems


def test_problems_say_none_when_every_submission_was_graded(tmp_path):
    ok = [r for r in RESULTS if (r.student, r.assignment) not in NOT_NORMAL]
    page = write_report(ok, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "none" in section(page, "problems") and "<table" not in section(page, "problems")
    assert "<dt>Not graded normally</dt><dd>0</dd>" in page


def test_empty_class_still_gives_a_report(tmp_path):
    page = write_report([], tmp_path / "r.html").read_text(encoding="utf-8")
    for sid in SECTION_IDS:
        section(page, sid)
    assert "<img" not in page
    assert "<dt>Students</dt><dd>0</dd>" in page


def test_student_table(report):
    _, page = report
    students = section(page, "students")
    table = rows(students)
    assert len(table) == 8
    by_student = {r[0]: r[1:] for r in table}
    assert by_student["alice"][0] == '<span class="pts">10/10</span>'  # ok: no status badge
    assert "2/10</span><br>" in by_student["bob"][0] and "awaiting_hand_grading" in \
        by_student["bob"][0]
    assert "0/6" in by_student["frank"][1] and "quarantined" in by_student["frank"][1]
    assert by_student["alice"][2].startswith("16/16")
    assert 'class="st-failed" title="kernel_died: the kernel died' in students
    assert 'class="st-missing"' in students and 'class="st-timeout"' in students


def test_student_ids_are_escaped(report):
    _, page = report
    assert EVIL not in page and "<script" not in page
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert escaped in section(page, "students")
    assert escaped in section(page, "messages")  # the students of a message group


def test_title_is_escaped(tmp_path):
    page = write_report(RESULTS[:1], tmp_path / "r.html", title="A & <B>").read_text()
    assert "<title>A &amp; &lt;B&gt;</title>" in page


def test_save_load_round_trip_is_exact(tmp_path):
    path = save_results(RESULTS, tmp_path / "results.json")
    loaded = load_results(path)
    assert loaded == RESULTS
    assert [list(r.cell_scores) for r in loaded] == [list(r.cell_scores) for r in RESULTS]
    assert all(isinstance(v, tuple) for r in loaded for v in r.cell_scores.values())
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data) == len(RESULTS)
    assert list(data[0]) == ["student", "assignment", "score", "max_score", "status", "reason",
                             "messages", "cell_scores", "flags", "notes", "sealed", "open_points"]
    assert data[4]["score"] == 7.5 and data[0]["cell_scores"]["add"] == [2.0, 2.0]
    save_results(loaded, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_load_accepts_integer_scores(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('[{"student": "a", "assignment": "x", "score": 3, "max_score": 4, '
                    '"status": "ok", "cell_scores": {"c": [3, 4]}}]')
    assert load_results(path) == [SubmissionResult("a", "x", 3.0, 4.0, "ok",
                                                   cell_scores={"c": (3.0, 4.0)})]


@pytest.mark.parametrize("content, why", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"student": "a"}', "expected a JSON list"),
    ('[{"student": "a", "assignment": "x", "score": 1, "max_score": 2}]', "missing field"),
    ('[{"student": "a", "assignment": "x", "score": "1", "max_score": 2, "status": "ok"}]',
     "score must be a number"),
    ('[{"student": "a", "assignment": "x", "score": 1, "max_score": 2, "status": "ok", '
     '"cell_scores": {"c": [1]}}]', "cell_scores"),
    ('[{"student": "a", "assignment": "x", "score": 1, "max_score": 2, "status": "ok", '
     '"grade": 3}]', "unknown field"),
])
def test_load_of_a_missing_or_bad_file_names_it(tmp_path, content, why):
    path = tmp_path / "class results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=why) as info:
        load_results(path)
    assert str(path) in str(info.value)


def test_main_writes_the_report(tmp_path, capsys):
    results = save_results(RESULTS, tmp_path / "results.json")
    assert main([str(results)]) == 0
    assert (tmp_path / "results.html").is_file()
    out = tmp_path / "sub" / "custom.html"
    assert main([str(results), "-o", str(out), "--title", "Week 3"]) == 0
    assert "<h1>Week 3</h1>" in out.read_text(encoding="utf-8")
    assert str(out) in capsys.readouterr().out


def test_main_bad_input_exits_2_with_a_message(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(missing) in err and "no such file" in err
    assert main([]) == 2
    assert "RESULTS" in capsys.readouterr().err.upper()


def test_the_report_runs_as_a_module(tmp_path):
    """``python -m course_lib.instructor.report``: the package's __main__."""
    results = save_results(RESULTS[:2], tmp_path / "results.json")
    done = subprocess.run([sys.executable, "-m", "course_lib.instructor.report", str(results)],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "results.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_import_does_not_load_matplotlib():
    code = ("import sys, course_lib.instructor.report\n"
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
