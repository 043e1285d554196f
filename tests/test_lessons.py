"""Every lesson, as nbgrader sees it: source gets full marks, release gets 0.

These tests run real kernels (nbclient and nbgrader's autograde), a few
seconds per notebook each. How fast a lesson runs is measured by `make bench`
(bench/grading_bench.py), not asserted here.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from lessons import ASSIGNMENTS, ROOT, grade_id, printed, release_path, run_notebook, source_path

from course_lib.instructor.cli import main as course
from course_lib.instructor.release import release_assignments

SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
NO_TORCH = [a for a in ASSIGNMENTS if a != "05_autograd"]


def execute(path, extra_cells=(), allow_errors=False):
    """Run a notebook top to bottom in a fresh kernel; returns the executed notebook
    (the lesson's cells, then ``extra_cells``)."""
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in extra_cells)
    return run_notebook(nb, path.parent, allow_errors=allow_errors)


def errors(nb):
    return [(i, o.ename, o.evalue) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.output_type == "error"]


def autograded_cells(nb):
    return [grade_id(c) for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_is_committed_without_outputs(assignment):
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, grade_id(cell)
    assert len(autograded_cells(nb)) >= 3


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_runs_clean_and_imports_torch_only_in_lesson_05(assignment):
    probe = "import sys; print('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH')"
    nb = execute(source_path(assignment), [probe])
    assert errors(nb) == []
    loaded = printed(nb.cells[-1]).strip()
    assert loaded == ("TORCH_LOADED" if assignment == "05_autograd" else "NO_TORCH")


def course_check_json(path, assignment, capsys, monkeypatch) -> dict:
    """`course check NOTEBOOK --assignment ID --json`, parsed."""
    monkeypatch.setenv("COURSE_ROOT", str(ROOT))
    course(["check", str(path), "--assignment", assignment, "--json"])
    return json.loads(capsys.readouterr().out)


def graded_by_hand(assignment) -> set[str]:
    nb = nbformat.read(str(source_path(assignment)), as_version=4)
    return {grade_id(c) for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
            and c.metadata["nbgrader"].get("solution")}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_graded_as_a_submission_gets_full_marks(assignment, capsys, monkeypatch):
    result = course_check_json(source_path(assignment), assignment, capsys, monkeypatch)
    assert result["status"] == "ok" and result["assignment"] == assignment
    assert set(result) == {"assignment", "score", "max_score", "status", "cells", "flags", "notes"}
    assert result["flags"] == ["awaiting_hand_grading"] and result["notes"] == [], result
    manual = graded_by_hand(assignment)
    assert manual, "no hand-graded written answer"
    auto = [c for c in result["cells"] if c["grade_id"] not in manual]
    assert len(auto) >= 3
    for cell in auto:
        assert cell["score"] == cell["max_score"] > 0 and cell["message"] == "", cell
    assert "awaiting_hand_grading" in result["flags"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_holds_no_solution_and_no_hidden_test(assignment):
    source = nbformat.read(str(source_path(assignment)), as_version=4)
    release = nbformat.read(str(release_path(assignment)), as_version=4)
    text = json.dumps([c.source for c in release.cells])
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "course_lib.grading",
                   "course_lib.reference", "grading.check_", "from course_lib import grading"):
        assert marker not in text
    released_code = {line.strip() for c in release.cells if c.cell_type == "code"
                     for line in c.source.splitlines()}
    secret = set()
    for cell in source.cells:
        for block in SOLUTION.findall(cell.source) + HIDDEN.findall(cell.source):
            secret |= {ln.strip() for ln in block.splitlines() if len(ln.strip()) > 12}
    leaked = sorted(secret & released_code - {"raise NotImplementedError()"})
    assert leaked == []
    # every answer cell became the stub; every written answer the text stub
    for s_cell, r_cell in zip(source.cells, release.cells, strict=True):
        meta = s_cell.metadata.get("nbgrader", {})
        if meta.get("solution") and s_cell.cell_type == "code":
            assert "raise NotImplementedError()" in r_cell.source, meta["grade_id"]
        elif meta.get("solution"):
            assert r_cell.source.strip() == "YOUR ANSWER HERE", meta["grade_id"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_runs_with_only_the_stubs_errors(assignment):
    nb = execute(release_path(assignment), allow_errors=True)
    found = errors(nb)
    assert found, "a release notebook with every answer stubbed must hit the stubs"
    assert {name for _, name, _ in found} == {"NotImplementedError"}, found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_scores_zero_and_nbgrader_validate_agrees(assignment, capsys, monkeypatch):
    from nbgrader.validator import Validator

    result = course_check_json(release_path(assignment), assignment, capsys, monkeypatch)
    assert result["score"] == 0 and result["max_score"] > 0 and result["status"] == "ok"
    manual = graded_by_hand(assignment)
    auto = [c for c in result["cells"] if c["grade_id"] not in manual]
    assert auto
    for cell in auto:
        assert cell["score"] == 0 and cell["message"].startswith("NotImplementedError: "), cell
    report = Validator().validate(str(release_path(assignment)))
    assert len(report.get("failed", [])) == len(result["cells"])


@pytest.mark.slow  # nbgrader generate_assignment for every lesson: several seconds
def test_release_is_regenerated_identically(tmp_path):
    """`make release` into a temporary folder reproduces the committed release/."""
    made = release_assignments(ROOT, release_dir=tmp_path / "release",
                               db_url=f"sqlite:///{tmp_path / 'gradebook.db'}")
    assert sorted(p.parent.name for p in made) == sorted(ASSIGNMENTS)
    for path in made:
        committed = release_path(path.parent.name)
        assert json.loads(path.read_text()) == json.loads(committed.read_text()), (
            f"release/{path.parent.name} is stale: run `make release` and commit it")
    committed_dirs = sorted(p.name for p in (ROOT / "release").iterdir() if p.is_dir())
    assert committed_dirs == sorted(ASSIGNMENTS)

