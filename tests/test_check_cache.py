"""`course check` keeps what it prepares (issue 17), and rebuilds it when the course changes.

The prepared course (the assignment's source and a gradebook where it is
registered) lives in the cache folder under a digest of what registration reads;
every check copies it, so the real course and the cache are never written by a
check. --timings says where the time went.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from toycourse import ASSIGNMENT, RIGHT, SIGMOID_INSTEAD, make_course, submission

from course_lib.instructor import check


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("COURSE_CHECK_CACHE", str(folder))
    return folder


def _edit_points(course: Path, points: int) -> None:
    path = course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[2].metadata["nbgrader"]["points"] = points
    nbformat.write(nb, str(path))


def test_the_preparation_key_follows_the_source_and_the_configuration(tmp_path):
    course = make_course(tmp_path / "course")
    key = check.preparation_key(course, ASSIGNMENT)
    assert check.preparation_key(course, ASSIGNMENT) == key
    (course / "source" / ASSIGNMENT / ".ipynb_checkpoints").mkdir()  # not the course's
    assert check.preparation_key(course, ASSIGNMENT) == key
    _edit_points(course, 3)
    edited = check.preparation_key(course, ASSIGNMENT)
    assert edited != key
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Execute.timeout = 77\n")
    assert check.preparation_key(course, ASSIGNMENT) not in (key, edited)
    (course / "source" / ASSIGNMENT / "data.csv").write_text("1,2\n")  # a file handed out
    assert len({key, edited, check.preparation_key(course, ASSIGNMENT)}) == 3


@pytest.mark.slow  # prepares a course (nbgrader) three times
def test_a_check_prepares_once_then_reuses_and_an_edited_lesson_rebuilds(tmp_path, cache):
    course = make_course(tmp_path / "course")
    folder, built = check.prepared(course, ASSIGNMENT)
    assert built and (folder / "gradebook.db").is_file()
    assert (folder / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    assert check.prepared(course, ASSIGNMENT) == (folder, False)
    _edit_points(course, 5)
    rebuilt, built = check.prepared(course, ASSIGNMENT)
    assert built and rebuilt != folder and not folder.exists()  # the old one is swept
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{rebuilt / 'gradebook.db'}") as gb:
        assert gb.find_assignment(ASSIGNMENT).max_score == 5 + 1  # the written answer's 1


def test_the_grading_limits_come_from_the_prepared_course_and_follow_the_configuration(
        tmp_path, cache):
    """`course check` starts its kernel before nbgrader is imported (reading
    nbgrader_config.py imports it): the limits it needs are kept in the prepared
    folder, whose name follows nbgrader_config.py, so an edited configuration is read
    again; a file this version cannot read is made again."""
    from course_lib.instructor.course import load_config
    from course_lib.instructor.grade import grading_settings

    course = make_course(tmp_path / "course")
    folder, _ = check.prepared(course, ASSIGNMENT)
    first = check.cached_settings(folder, course)
    assert first == grading_settings(load_config(course)) and (folder / check.SETTINGS).is_file()
    assert check.cached_settings(folder, course) == first

    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Judge.notebook_timeout = 77\n")
    edited, built = check.prepared(course, ASSIGNMENT)
    assert built and edited != folder
    assert check.cached_settings(edited, course)["judge"]["notebook_timeout"] == 77
    (edited / check.SETTINGS).write_text('{"judge": {"no_such_limit": 1}}')
    assert check.cached_settings(edited, course)["judge"]["notebook_timeout"] == 77


@pytest.mark.kernel
def test_a_cached_check_grades_exactly_as_the_first_one(tmp_path, cache, capsys,
                                                         monkeypatch):
    from course_lib.instructor.cli import main

    course = make_course(tmp_path / "course")
    monkeypatch.setenv("COURSE_ROOT", str(course))
    monkeypatch.chdir(course)
    right, wrong = tmp_path / "right.ipynb", tmp_path / "wrong.ipynb"
    nbformat.write(submission(RIGHT), str(right))
    nbformat.write(submission(SIGMOID_INSTEAD), str(wrong))
    first = check.check_notebook(right, ASSIGNMENT, course)
    [prepared] = list(cache.glob(f"*/{ASSIGNMENT}-*"))
    stamp = (prepared / "gradebook.db").stat().st_mtime_ns
    again = check.check_notebook(right, ASSIGNMENT, course)
    assert again == first and first.cell("sigmoid_prime_values").score == 2
    failed = check.check_notebook(wrong, ASSIGNMENT, course)
    assert failed.cell("sigmoid_prime_values").score == 0
    assert (prepared / "gradebook.db").stat().st_mtime_ns == stamp  # the cache: only read
    assert not (course / "gradebook.db").exists()  # nor the course's own gradebook

    capsys.readouterr()
    code = main(["check", str(right), "--assignment", ASSIGNMENT, "--timings"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "where the time went:" in err and "prepared course (cached)" in err
    assert "in all" in err and "2/2" in out


def test_the_sandboxs_digits_come_from_the_cache_and_lack_the_held_out_rows(tmp_path, cache):
    import gzip
    from types import SimpleNamespace

    from course_lib import data

    first, second = tmp_path / "sandbox-1", tmp_path / "sandbox-2"
    first.mkdir()
    second.mkdir()
    check.digits_from_cache(SimpleNamespace(folder=first))
    [cached] = list(cache.glob("digits-*/*.csv.gz"))
    stamp = cached.stat().st_mtime_ns
    check.digits_from_cache(SimpleNamespace(folder=second))
    assert cached.stat().st_mtime_ns == stamp  # written once
    fresh = data.write_digits_without_held_out(tmp_path)  # what the sandbox would write
    for folder in (first, second):
        copy = folder / fresh.name
        assert gzip.decompress(copy.read_bytes()) == gzip.decompress(fresh.read_bytes())
    rows = data._digits_rows(first / fresh.name)
    assert len(rows) and not data._held_out(rows).any()
