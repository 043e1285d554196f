"""`course formgrader`: nbgrader's formgrader on the course, never a 500, never unsealed.

Without a browser: a missing, unstamped, or half-upgraded gradebook is made one the
formgrader opens (rows kept, a copy set aside first); an up-to-date one is left alone;
the server listens on 127.0.0.1 with a token and this Python's tools on PATH. In
Chromium, on a toy course whose gradebook was left half made: the formgrader lists the
assignment and both submissions, and its Autograde button grades sealed.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import browser
import pytest
import toycourse
from browser import chromium_page, screenshot
from nbgrader.api import Gradebook

from course_lib.instructor import formgrader
from course_lib.instructor.course import ensure_tools_on_path, serving_port

GRADE_S = 600


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def head() -> str:
    return formgrader._head("sqlite://")


def version(db: Path):
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT version_num FROM alembic_version")]


def half_made(db: Path, how: str) -> None:
    """A gradebook with a student and an assignment, then left half made:
    'unstamped' (tables, no alembic_version) or 'interrupted' (an older revision
    recorded, a column of a later one missing)."""
    ensure_tools_on_path()  # nbgrader's Gradebook() runs `alembic`
    with Gradebook(url(db), "backprop") as gb:
        gb.update_or_create_student("alice")
        gb.add_assignment("99_toy")
    with sqlite3.connect(db) as con:
        if how == "unstamped":
            con.execute("DROP TABLE alembic_version")
            con.execute("DROP TABLE comment")
        else:
            con.execute("UPDATE alembic_version SET version_num = '724cde206c17'")
            con.execute("ALTER TABLE student DROP COLUMN lms_user_id")


@pytest.mark.slow  # nbgrader's gradebook migrations (alembic): seconds
def test_a_missing_gradebook_is_created_even_without_alembic_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    db = tmp_path / "gradebook.db"
    done = formgrader.ensure_gradebook(url(db), "backprop")
    assert done == [f"created the gradebook ({url(db)})"]
    assert version(db) == [head()]
    assert formgrader.missing_schema(__import__("sqlalchemy").create_engine(url(db))) == []


@pytest.mark.slow  # nbgrader's gradebook migrations (alembic): seconds
@pytest.mark.parametrize("how", ["unstamped", "interrupted"])
def test_a_half_made_gradebook_is_repaired_keeping_its_rows_and_a_copy(tmp_path, how):
    db = tmp_path / "gradebook.db"
    half_made(db, how)
    done = formgrader.ensure_gradebook(url(db), "backprop")
    assert version(db) == [head()]
    backups = list(tmp_path.glob("gradebook.db.*"))
    assert len(backups) == 1 and f"copied the gradebook to {backups[0]}" in done[0]
    missing = "comment" if how == "unstamped" else "student.lms_user_id"
    assert any(missing in note for note in done), done
    with Gradebook(url(db), "backprop") as gb:
        assert [s.id for s in gb.students] == ["alice"]
        assert [a.name for a in gb.assignments] == ["99_toy"]
    assert formgrader.ensure_gradebook(url(db), "backprop") == []


@pytest.mark.slow  # nbgrader's gradebook migrations (alembic): seconds
def test_an_up_to_date_gradebook_is_left_untouched(tmp_path):
    db = tmp_path / "gradebook.db"
    formgrader.ensure_gradebook(url(db), "backprop")
    before = db.read_bytes()
    assert formgrader.ensure_gradebook(url(db), "backprop") == []
    assert db.read_bytes() == before and list(tmp_path.iterdir()) == [db]


def test_the_server_listens_on_localhost_with_a_token_and_this_pythons_tools(tmp_path):
    cmd, env = formgrader.server_command(tmp_path, 8123, "s3cret")
    args = " ".join(cmd)
    for flag in ("--ServerApp.ip=127.0.0.1", "--ServerApp.port=8123",
                 "--IdentityProvider.token=s3cret", f"--ServerApp.root_dir={tmp_path}",
                 "--LabApp.news_url=None", "--IdentityProvider.cookie_options=path=/",
                 "--ServerApp.jpserver_extensions=nbgrader.server_extensions.formgrader=False",
                 "--ServerApp.jpserver_extensions=course_lib.instructor.formgrader=True"):
        assert flag in args
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["COURSE_ROOT"] == str(tmp_path)


def test_the_command_prints_the_port_the_server_chose_itself(tmp_path):
    # The server binds a free port itself (port 0); the command learns which one from
    # the jpserver-<pid>.json every Jupyter server writes, half-written files included.
    proc = subprocess.Popen(["sleep", "60"])
    info = tmp_path / f"jpserver-{proc.pid}.json"
    try:
        info.write_text('{"port": 4')  # caught mid-write: read again
        timer = threading.Timer(0.5, info.write_text, ['{"port": 41234, "token": "x"}'])
        timer.start()
        assert serving_port(proc, {"JUPYTER_RUNTIME_DIR": str(tmp_path)}) == 41234
    finally:
        proc.kill()
        proc.wait()
    gone = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "nowhere")}
    assert serving_port(proc, gone) is None  # it exited


def test_a_grading_child_that_gave_no_result_is_an_error_that_names_course_grade():
    answer = formgrader.parse_child_output("Traceback ...\nKilled", -9)
    assert answer["success"] is False and "`course grade`" in answer["error"]
    good = formgrader.parse_child_output(
        'noise\n' + formgrader.RESULT_MARK + '{"success": true, "log": "x", "error": ""}', 0)
    assert good == {"success": True, "log": "x", "error": ""}


# ---------------------------------------------------------------------------
# In a browser: `course formgrader` on a toy course with a half-made gradebook
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def formgrader_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("formgrader")
    course = toycourse.make_course(root / "course")
    toycourse.hand_in(course, "alice", toycourse.submission())
    toycourse.hand_in(course, "bob", toycourse.submission(toycourse.SIGMOID_INSTEAD))
    half_made(course / "gradebook.db", "unstamped")
    with browser.formgrader_server(course, root) as server:  # as `make formgrader` runs it
        yield server


@pytest.mark.kernel
@pytest.mark.slow
def test_formgrader_repairs_the_gradebook_and_lists_the_assignment_and_submissions(
        formgrader_server):
    fg = formgrader_server
    text = fg.log.read_text()
    assert "gradebook: copied the gradebook to" in text and "gradebook: added" in text
    assert "127.0.0.1" in text and " 500 " not in text
    assert [a["name"] for a in fg.api("GET", "/formgrader/api/assignments")] == ["99_toy"]
    with chromium_page() as page:
        page.goto(f"{fg.base}/formgrader/manage_submissions/99_toy?token={fg.token}")
        rows = page.locator("#main-table tr")
        rows.filter(has_text="bob").first.wait_for()
        ids = sorted(t.strip() for t in page.locator("#main-table .student-id")
                     .all_inner_texts())
        assert ids == ["alice", "bob"]
        assert page.locator("text=needs autograding").count() == 2
        screenshot(page, "formgrader_submissions.png")
        page.goto(f"{fg.base}/formgrader?token={fg.token}")
        page.locator("#main-table tr", has_text="99_toy").first.wait_for()
    assert " 500 " not in fg.log.read_text()


@pytest.mark.kernel
@pytest.mark.slow
def test_formgraders_autograde_button_grades_the_submission_sealed(formgrader_server):
    fg = formgrader_server
    with chromium_page() as page:
        page.set_default_timeout(GRADE_S * 1000)
        page.goto(f"{fg.base}/formgrader/manage_submissions/99_toy?token={fg.token}")
        row = page.locator("#main-table tr", has_text="bob").first
        row.wait_for()
        row.locator(".autograde a").click()
        modal = page.locator("#success-modal, #error-modal").first
        modal.wait_for()
        body = modal.inner_text()
        screenshot(page, "formgrader_autograde.png")
    assert "graded sealed (course_lib.judge): bob/99_toy: 0/3" in body, body
    assert "Successfully autograded" in body
    assert "known mistake" in body  # the check's diagnosis, reached outside the kernel
    bob = [s for s in fg.api("GET", "/formgrader/api/submissions/99_toy")
           if s["student"] == "bob"][0]
    assert bob["autograded"] and bob["score"] == 0 and bob["max_score"] == 3
