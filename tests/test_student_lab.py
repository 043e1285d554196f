"""`make lab`: the student's JupyterLab on a copy of release/ outside the repository.

Without a browser: the copy is made once, kept, never overwritten (a newer release/
is reported, and replaced only when the student says yes, theirs kept beside it);
answering an exercise and running nbgrader validate in it leaves the repository's
`git status` as it was. In Chromium: the lab shows nbgrader's Validate button and
assignment list, and no Formgrader or Create Assignment entry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import nbformat
import pytest
from browser import chromium_page, lab_server, screenshot
from lessons import ROOT, grade_id, source_path
from test_browser_widgets import dismiss_dialogs

from course_lib.instructor import student_lab

ASSIGNMENT = "02_sigmoid"
SOLUTION = re.compile(r"[ \t]*### (BEGIN|END) SOLUTION\n?")
VALIDATE_S = 600


def git_status() -> list[str]:
    """The repository's `git status`: every change to a tracked file and every new file
    git does not ignore, plus anything in release/ even if ignored (a checkpoint folder
    there would be hidden by .gitignore otherwise). Ignored files elsewhere are left out:
    other tests running beside this one write caches and screenshots there."""
    def status(*args):
        return subprocess.run(["git", "status", "--porcelain", *args], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.splitlines()
    return sorted(set(status()) | set(status("--ignored", "release")))


def answer_every_exercise(path: Path, assignment: str) -> None:
    """Fill the student's copy's answer cells with the source notebook's solutions,
    and write something in each written answer."""
    solutions = {grade_id(c): SOLUTION.sub("", c.source)
                 for c in nbformat.read(str(source_path(assignment)), as_version=4).cells
                 if (grade_id(c) or "").endswith("_answer") and c.cell_type == "code"}
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in solutions:
            cell.source = solutions[grade_id(cell)]
        elif cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "My written answer: the gradient vanishes where σ saturates."
    nbformat.write(nb, str(path))


def test_release_notebooks_are_copied_once_and_a_students_copy_is_never_overwritten(tmp_path):
    release = tmp_path / "release"
    (release / "01_a").mkdir(parents=True)
    (release / "01_a" / "01_a.ipynb").write_text("release v1")
    lab = tmp_path / "lab"

    first = student_lab.sync_notebooks(release, lab)
    mine = lab / "notebooks" / "01_a" / "01_a.ipynb"
    assert first.copied == ["01_a/01_a.ipynb"] and mine.read_text() == "release v1"

    mine.write_text("my answers")
    (release / "02_b").mkdir()
    (release / "02_b" / "02_b.ipynb").write_text("lesson 2")
    second = student_lab.sync_notebooks(release, lab)
    assert second.copied == ["02_b/02_b.ipynb"] and second.newer_not_copied == []
    assert mine.read_text() == "my answers"

    (release / "01_a" / "01_a.ipynb").write_text("release v2")
    third = student_lab.sync_notebooks(release, lab)
    assert third.newer_not_copied == ["01_a/01_a.ipynb"]
    assert "release/ has a newer 01_a/01_a.ipynb: NOT copied" in third.summary()
    assert mine.read_text() == "my answers"
    assert student_lab.sync_notebooks(release, lab, ask=lambda q: False).newer_not_copied == [
        "01_a/01_a.ipynb"]

    questions = []
    fourth = student_lab.sync_notebooks(release, lab,
                                        ask=lambda q: questions.append(q) or True)
    assert fourth.replaced == ["01_a/01_a.ipynb"] and len(questions) == 1
    assert mine.read_text() == "release v2"
    kept = [p for p in mine.parent.glob("01_a.*.ipynb")]
    assert [p.read_text() for p in kept] == ["my answers"]
    assert student_lab.sync_notebooks(release, lab).newer_not_copied == []


def test_the_lab_folder_defaults_to_the_users_data_folder_outside_the_repository(monkeypatch,
                                                                                tmp_path):
    monkeypatch.delenv("COURSE_STUDENT_LAB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = student_lab.default_folder(student_lab.course_id(ROOT / "release"))
    assert folder == tmp_path / "data" / "course-student-lab" / "backprop"
    assert not folder.is_relative_to(ROOT)
    monkeypatch.setenv("COURSE_STUDENT_LAB", str(tmp_path / "elsewhere"))
    assert student_lab.default_folder() == tmp_path / "elsewhere"


def test_the_lab_command_turns_off_the_instructors_nbgrader_tools_on_localhost(tmp_path):
    prepared, cmd, env = student_lab.prepare(ROOT / "release", tmp_path / "lab", 8899, "t0k")
    args = " ".join(cmd)
    assert "--ServerApp.ip=127.0.0.1" in args and "--IdentityProvider.token=t0k" in args
    assert f"--ServerApp.root_dir={prepared.notebooks}" in args
    assert "--ServerApp.jpserver_extensions=nbgrader.server_extensions.formgrader=False" in args
    assert ("--ServerApp.jpserver_extensions=nbgrader.server_extensions.validate_assignment=True"
            in args)
    assert "--LabApp.news_url=None" in args
    page_config = json.loads((tmp_path / "lab" / "jupyter-config" / "labconfig"
                              / "page_config.json").read_text())
    assert set(page_config["disabledExtensions"]) == {
        "@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
        "@jupyter/nbgrader:course-list"}
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0] == str(tmp_path / "lab" /
                                                                 "jupyter-config")
    kernel = json.loads((tmp_path / "lab" / "student-env" / "kernels" / "python3"
                         / "kernel.json").read_text())
    assert "-S" in kernel["argv"]
    assert not (tmp_path / "lab" / "student-env" / "course_lib" / "reference").exists()


@pytest.mark.kernel
@pytest.mark.slow
def test_answering_and_validating_in_the_lab_leaves_the_repository_unchanged(tmp_path):
    before = git_status()
    prepared, cmd, env = student_lab.prepare(ROOT / "release", tmp_path / "lab", 8899, "t")
    copy = prepared.notebooks / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert sorted(prepared.copied) == sorted(
        p.relative_to(ROOT / "release").as_posix() for p in (ROOT / "release").glob("*/*")
        if p.is_file())
    answer_every_exercise(copy, ASSIGNMENT)
    for sub in ("config", "data", "runtime", "ipython"):
        (tmp_path / sub).mkdir()
    env = dict(env, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), IPYTHONDIR=str(tmp_path / "ipython"))
    validate = subprocess.run([sys.executable, "-m", "nbgrader", "validate", str(copy)],
                              cwd=prepared.notebooks, env=env, capture_output=True, text=True,
                              timeout=VALIDATE_S)
    assert "Success! Your notebook passes all the tests." in validate.stdout, (
        validate.stdout[-3000:] + validate.stderr[-3000:])
    assert git_status() == before


# ---------------------------------------------------------------------------
# In a browser
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student_lab_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("student-lab")
    prepared, cmd, env = student_lab.prepare(ROOT / "release", root / "lab", 0,
                                             "t" + os.urandom(12).hex())
    with lab_server(cmd, env, root, cwd=prepared.notebooks) as server:
        yield server


@pytest.mark.kernel
@pytest.mark.slow
def test_student_lab_shows_validate_and_the_assignment_list_but_no_formgrader(
        student_lab_server):
    lab = student_lab_server
    with pytest.raises(urllib.error.HTTPError) as missing:
        lab.api("GET", "/formgrader/api/status")
    assert missing.value.code == 404
    with chromium_page(width=1400, height=1000) as page:
        page.goto(f"{lab.base}/lab/tree/{ASSIGNMENT}/{ASSIGNMENT}.ipynb?token={lab.token}",
                  wait_until="domcontentloaded")
        page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for()
        dismiss_dialogs(page)
        page.locator(".jp-NotebookPanel-toolbar .validate-button").first.wait_for()
        assert page.locator(".validate-button", has_text="Validate").count() >= 1

        page.locator(".lm-MenuBar-item", has_text="Nbgrader").first.click()
        menu = page.locator("#jp-mainmenu-nbgrader")
        menu.wait_for()
        labels = [t.strip() for t in menu.locator(
            ".lm-Menu-item:not(.lm-mod-hidden) .lm-Menu-itemLabel").all_inner_texts()]
        screenshot(page, "student_lab_menu.png")
        assert "Assignment List" in labels, labels
        assert not [t for t in labels if "Formgrader" in t or "Create Assignment" in t], labels
        page.keyboard.press("Escape")
        assert page.get_by_text("Create Assignment", exact=True).count() == 0
