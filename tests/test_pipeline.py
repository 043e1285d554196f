"""The instructor's whole loop on a small simulated class, through the `course` command.

release -> collect (zip and folder) -> grade (feedback, grades.csv, report) -> regrade
-> one student resubmits -> regrade. Real lessons (01 and 02), real kernels.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from lessons import ROOT

from course_lib.instructor import demo
from course_lib.instructor.cli import main as course

ASSIGNMENTS = ("01_chain_rule", "02_sigmoid")
ROSTER = {
    "ada-perfect": "perfect",
    "ben-empty": "empty",
    "cai-half": "half",
    "m-max-gate-both": "mistake:max-gate-both",
    "m-sigmoid-for-prime": "mistake:sigmoid-for-prime",
    "kim-crash": "crash",      # lesson 03 only: here it is a perfect student
    "lou-loop": "loop",        # lesson 02 never ends
    "noa-garbled": "garbled",  # lesson 05 only: here a perfect student
}
# (score, status) per student and assignment; max scores: 01 = 21 (+5 by hand),
# 02 = 16 (+4 by hand). Needs-manual-grading: a written answer waits for a human.
EXPECTED = {
    ("ada-perfect", "01_chain_rule"): (21, "awaiting_hand_grading"),
    ("ada-perfect", "02_sigmoid"): (16, "awaiting_hand_grading"),
    ("ben-empty", "01_chain_rule"): (0, "ok"),
    ("ben-empty", "02_sigmoid"): (0, "ok"),
    ("cai-half", "01_chain_rule"): (9, "ok"),  # no written answer: nothing to grade by hand
    ("cai-half", "02_sigmoid"): (8, "ok"),
    ("m-max-gate-both", "01_chain_rule"): (18, "awaiting_hand_grading"),
    ("m-max-gate-both", "02_sigmoid"): (16, "awaiting_hand_grading"),
    ("m-sigmoid-for-prime", "01_chain_rule"): (21, "awaiting_hand_grading"),
    ("m-sigmoid-for-prime", "02_sigmoid"): (13, "awaiting_hand_grading"),
    ("kim-crash", "01_chain_rule"): (21, "awaiting_hand_grading"),
    ("kim-crash", "02_sigmoid"): (16, "awaiting_hand_grading"),
    ("lou-loop", "01_chain_rule"): (21, "awaiting_hand_grading"),
    ("lou-loop", "02_sigmoid"): (16, "timeout"),  # interrupted; its functions still work
    ("noa-garbled", "01_chain_rule"): (21, "awaiting_hand_grading"),
    ("noa-garbled", "02_sigmoid"): (16, "awaiting_hand_grading"),
    ("zed-absent", "01_chain_rule"): (0, "missing"),
    ("zed-absent", "02_sigmoid"): (0, "missing"),
}
MAX = {"01_chain_rule": 26, "02_sigmoid": 20}
# The course's limit per cell (nbgrader's Execute.timeout) in this test, in seconds. A
# cell of lessons 01 and 02 needs 0.4 s at most, a whole notebook 2.3 s (measured on
# this 2-core machine under a load average of 5 to 9): more than 20 times that, so
# only lou-loop's `while True` trips it (once per grading: 3 times, a busy core each).
CELL_TIMEOUT = 10


def rows(course_dir: Path) -> dict[tuple[str, str], dict]:
    with (course_dir / "grades.csv").open() as f:
        return {(r["student"], r["assignment"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory, monkeypatch_module):
    """A copy of the course with two lessons, a class collected from a zip, graded once."""
    root = tmp_path_factory.mktemp("pipeline") / "course"
    root.mkdir()
    config = (ROOT / "nbgrader_config.py").read_text()
    (root / "nbgrader_config.py").write_text(
        config + f"\n# this test's limit per cell\nc.Execute.timeout = {CELL_TIMEOUT}\n")
    for a in ASSIGNMENTS:
        shutil.copytree(ROOT / "source" / a, root / "source" / a)
    monkeypatch_module.setenv("COURSE_ROOT", str(root))
    assert course(["release"]) == 0
    inbox = demo.build_class(root.parent / "inbox", root, ROSTER, ASSIGNMENTS)
    archive = root.parent / "class01.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # one lesson as a zip, one as a folder
        for p in (inbox / ASSIGNMENTS[0]).iterdir():
            zf.write(p, p.name)
    assert course(["collect", str(archive), "--assignment", ASSIGNMENTS[0]]) == 0
    assert course(["collect", str(inbox / ASSIGNMENTS[1]), "--assignment", ASSIGNMENTS[1]]) == 0
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "backprop") as gb:
        gb.add_student("zed-absent")  # on the class list, handed nothing in
    # exit 1: some submissions were not graded normally; 2 jobs in parallel; every
    # feedback page now, as `make demo` asks (the written answers are never graded here)
    assert course(["grade", "--quiet", "--jobs", "2", "--force-feedback"]) == 1
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_each_student_gets_the_exact_score_and_status(graded):
    got = {k: (float(r["score"]), r["status"]) for k, r in rows(graded).items()}
    assert got == {k: (float(s), st) for k, (s, st) in EXPECTED.items()}
    for (_, a), r in rows(graded).items():
        assert float(r["max_score"]) == MAX[a]
    assert "ran past the time limit" in rows(graded)[("lou-loop", "02_sigmoid")]["reason"]


def test_feedback_names_the_mistakes_and_hides_every_hidden_test(graded):
    hidden = set()
    for a in ASSIGNMENTS:
        nb = nbformat.read(str(ROOT / "source" / a / f"{a}.ipynb"), as_version=4)
        for cell in nb.cells:
            for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS",
                                    cell.source, re.S):
                hidden |= {ln.strip() for ln in block.splitlines() if ln.strip()}
    assert hidden
    files = sorted((graded / "feedback").rglob("*.html"))
    assert len(files) == 2 * 8  # everyone who handed in something (not zed)
    for path in files:
        text = html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))
        assert "BEGIN HIDDEN TESTS" not in text
        leaked = [h for h in hidden if h in text]
        assert leaked == [], (path, leaked)
    text = (graded / "feedback" / "m-max-gate-both" / "01_chain_rule" /
            "01_chain_rule.html").read_text()
    assert "both inputs" in html.unescape(re.sub(r"<[^>]+>", "", text))
    text = (graded / "feedback" / "m-sigmoid-for-prime" / "02_sigmoid" / "02_sigmoid.html")
    assert "σ(z)" in html.unescape(re.sub(r"<[^>]+>", "", text.read_text()))


def test_the_report_lists_problems_and_plots(graded):
    report = (graded / "reports" / "report.html").read_text()
    for section in ("summary", "distribution", "pass-rates", "messages", "problems", "students"):
        assert f'id="{section}"' in report
    assert report.count("data:image/png;base64,") >= 3
    assert "lou-loop" in report and "timeout" in report
    results = json.loads((graded / "reports" / "results.json").read_text())
    assert len(results) == len(EXPECTED)


def test_grading_again_gives_identical_grades(graded):
    """The first grading ran 2 jobs in parallel; sequential grading agrees to the byte."""
    before = (graded / "grades.csv").read_text()
    assert course(["grade", "--quiet", "--no-feedback", "--jobs", "1"]) == 1
    assert (graded / "grades.csv").read_text() == before


def test_a_resubmission_changes_only_that_students_row(graded, tmp_path):
    before = rows(graded)
    fixed = demo.student_notebook("perfect", "01_chain_rule", graded)
    nbformat.write(fixed, str(tmp_path / "ben-empty.ipynb"))
    assert course(["collect", str(tmp_path), "--assignment", "01_chain_rule"]) == 0
    archived = list((graded / "submitted" / ".archive" / "ben-empty" / "01_chain_rule")
                    .glob("*.ipynb"))
    assert len(archived) == 1  # the first submission is kept
    # the lesson regraded whole (every student of it), the other lesson's rows kept
    assert course(["grade", "01_chain_rule", "--quiet", "--no-feedback"]) == 1
    after = rows(graded)
    assert set(after) == set(before)  # lesson 02's rows too, though only 01 was graded
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {("ben-empty", "01_chain_rule")}
    assert (float(after[("ben-empty", "01_chain_rule")]["score"]),
            after[("ben-empty", "01_chain_rule")]["status"]) == (21.0, "awaiting_hand_grading")


def test_the_report_opens_in_chromium_with_its_plots(graded):
    from browser import chromium_page, screenshot

    report = graded / "reports" / "report.html"
    with chromium_page() as page:
        page.goto(report.as_uri())
        images = page.evaluate("""() => Array.from(document.images).map(
            i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 100 && i.naturalHeight > 50}))""")
        assert len(images) >= 3 and all(i["ok"] for i in images), images
        assert all(i["alt"] for i in images)
        for section in ("summary", "distribution", "pass-rates", "messages", "problems"):
            assert page.locator(f"#{section}").is_visible()
        assert "lou-loop" in page.locator("#problems").inner_text()
        shot = screenshot(page, "report.png")
    assert shot.stat().st_size > 20_000
