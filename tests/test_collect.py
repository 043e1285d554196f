"""course collect: folders and zips of notebooks into nbgrader's submitted/ and gradebook."""

from __future__ import annotations

import zipfile

import nbformat
import pytest
from nbgrader.api import Gradebook
from toycourse import ASSIGNMENT, SIGMOID_INSTEAD, make_course, submission

from course_lib.instructor.collect import collect


@pytest.fixture
def course(tmp_path):
    return make_course(tmp_path / "course")


def write(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def students_in_gradebook(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "backprop") as gb:
        return sorted(s.id for s in gb.students)


def placed(course, student):
    return course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


@pytest.mark.slow  # nbgrader's gradebook for a class: seconds
def test_every_layout_is_placed_and_students_join_the_gradebook(course, tmp_path):
    inbox = tmp_path / "inbox"
    write(inbox / "alice.ipynb", submission())                                  # flat
    write(inbox / "bob" / "whatever.ipynb", submission())                       # per student
    write(inbox / "carol" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", submission())   # nbgrader
    write(inbox / "submitted" / "dan" / ASSIGNMENT / "x.ipynb", submission())  # with prefix
    before = {p: p.read_bytes() for p in inbox.rglob("*") if p.is_file()}
    report = collect(inbox, ASSIGNMENT, course)
    assert sorted(report.placed) == ["alice", "bob", "carol", "dan"]
    assert report.not_placed == {}
    for s in report.placed:
        assert placed(course, s).is_file()
        assert (placed(course, s).parent / "timestamp.txt").read_text().endswith("UTC")
    assert students_in_gradebook(course) == ["alice", "bob", "carol", "dan"]
    assert {p: p.read_bytes() for p in inbox.rglob("*") if p.is_file()} == before  # untouched


@pytest.mark.slow  # nbgrader's gradebook for a class: seconds
def test_zip_and_what_cannot_be_placed_is_reported(course, tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("erin.ipynb", nbformat.writes(submission()))
        zf.writestr("notes.txt", "not a notebook")
        zf.writestr("bad id.ipynb", nbformat.writes(submission()))
        zf.writestr("frank/a.ipynb", nbformat.writes(submission()))
        zf.writestr("frank/b.ipynb", nbformat.writes(submission()))
        zf.writestr("gina/01_other/01_other.ipynb", nbformat.writes(submission()))
        zf.writestr("__MACOSX/._erin.ipynb", "junk")
    report = collect(archive, ASSIGNMENT, course)
    assert sorted(report.placed) == ["erin"]
    assert report.not_placed["notes.txt"] == "not a notebook (.ipynb)"
    assert "not a usable student id" in report.not_placed["bad id.ipynb"]
    assert report.not_placed["frank/a.ipynb, frank/b.ipynb"] == \
        "2 notebooks for frank; expected one"
    assert "assignment '01_other'" in report.not_placed["gina/01_other/01_other.ipynb"]
    assert "4 not placed" in report.summary()


@pytest.mark.slow  # nbgrader's gradebook for a class: seconds
def test_resubmission_replaces_and_archives_the_previous_notebook(course, tmp_path):
    first = write(tmp_path / "in1" / "alice.ipynb", submission(SIGMOID_INSTEAD))
    collect(first.parent, ASSIGNMENT, course)
    again = collect(first.parent, ASSIGNMENT, course)
    assert again.unchanged == ["alice"] and again.placed == {}
    second = write(tmp_path / "in2" / "alice.ipynb", submission())
    report = collect(second.parent, ASSIGNMENT, course)
    assert list(report.placed) == ["alice"]
    assert placed(course, "alice").read_bytes() == second.read_bytes()
    archived = list((course / "submitted" / ".archive" / "alice" / ASSIGNMENT).glob("*.ipynb"))
    assert len(archived) == 1 and archived[0].read_bytes() == first.read_bytes()


def test_zip_slip_is_refused(course, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../outside.ipynb", "{}")
    with pytest.raises(ValueError, match="points outside the archive"):
        collect(archive, ASSIGNMENT, course)
    assert not (tmp_path / "outside.ipynb").exists()


@pytest.mark.parametrize("bad, pattern", [
    ("missing_folder", r"no such file or folder"),
    ("not_a_zip", r"not a zip file"),
])
def test_bad_sources_raise_clear_errors(course, tmp_path, bad, pattern):
    source = tmp_path / bad
    if bad == "not_a_zip":
        source.write_text("hello")
    with pytest.raises(ValueError, match=pattern):
        collect(source, ASSIGNMENT, course)


def test_unknown_assignment(course, tmp_path):
    with pytest.raises(ValueError,
                       match=r"assignment: unknown id\(s\) 07_nope; source/ has 99_toy"):
        collect(tmp_path, "07_nope", course)
