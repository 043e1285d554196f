"""Grade one notebook on its own, with nbgrader, without touching the gradebook.

``check_notebook(path, assignment)`` builds a throw-away course folder (the
assignment's source, a private SQLite gradebook, the notebook as the only
submission), runs nbgrader's own ``generate_assignment`` and ``autograde`` in
it, and reads back every graded cell's score and, for a failed test cell, the
message of its error. Nothing in the real course folder changes.

This is the engine of ``course check`` and of the tests that grade the source
and release notebooks and submissions that make a known mistake.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .course import find_course_root, open_api

STUDENT = "selfcheck"


@dataclass
class CellResult:
    """One graded cell: its nbgrader grade_id, score, and the failure message.

    ``autograded`` is False for a cell graded by hand (a written answer), whose
    score stays 0 until an instructor grades it in the formgrader.
    """

    grade_id: str
    score: float
    max_score: float
    message: str = ""
    autograded: bool = True


@dataclass
class CheckResult:
    """The grade of one notebook, as ``course check --json`` prints it."""

    assignment: str
    score: float
    max_score: float
    status: str  # "ok", or why it could not be graded normally
    cells: list[CellResult] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def cell(self, grade_id: str) -> CellResult:
        for c in self.cells:
            if c.grade_id == grade_id:
                return c
        raise KeyError(f"no graded cell {grade_id!r} in {self.assignment}")


def error_message(cell) -> str:
    """The error a cell's output shows (``Name: message``), or '' if it has none."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
    return ""


def check_notebook(path, assignment: str, course_root: Path | None = None) -> CheckResult:
    """Autograde one notebook file in a private, temporary course.

    Args:
        path: the notebook to grade (a student's submission, or a source or
            release notebook).
        assignment: its nbgrader assignment id, e.g. "02_sigmoid".
        course_root: the course folder (default: see find_course_root).
    Returns:
        CheckResult with one CellResult per graded cell, in notebook order.
    """
    from nbgrader.api import Gradebook

    course_root = Path(course_root) if course_root else find_course_root()
    source = course_root / "source" / assignment
    if not source.is_dir():
        raise ValueError(f"assignment: no source folder {source}")
    path = Path(path)
    if not path.is_file():
        return CheckResult(assignment, 0.0, 0.0, "missing")
    try:
        nbformat.read(str(path), as_version=4)
    except Exception:  # noqa: BLE001 - any unreadable file is a status, not a crash
        return CheckResult(assignment, 0.0, 0.0, "unreadable")

    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp, warnings.catch_warnings():
        # nbgrader's gradebook emits SQLAlchemy "not in session" warnings that
        # concern its internals, not the grade.
        warnings.simplefilter("ignore", category=Warning)
        tmp = Path(tmp)
        shutil.copytree(source, tmp / "source" / assignment)
        dest = tmp / "submitted" / STUDENT / assignment
        dest.mkdir(parents=True)
        shutil.copy(path, dest / f"{assignment}.ipynb")
        db_url = f"sqlite:///{tmp / 'gradebook.db'}"
        # The course's settings, with every folder and the gradebook in tmp.
        api, _ = open_api(course_root, CourseDirectory__root=str(tmp),
                          CourseDirectory__db_url=db_url)
        for step, result in (("generate_assignment", api.generate_assignment(assignment)),
                             ("autograde", api.autograde(assignment, STUDENT))):
            if not result["success"]:
                raise RuntimeError(f"nbgrader {step} failed for {path}:\n"
                                   f"{result.get('error') or result.get('log')}")
        graded = nbformat.read(str(tmp / "autograded" / STUDENT / assignment /
                                   f"{assignment}.ipynb"), as_version=4)
        messages = {c.metadata.get("nbgrader", {}).get("grade_id"): error_message(c)
                    for c in graded.cells}
        # nbgrader: a grade cell that is also a solution cell is graded by hand.
        by_hand = {c.metadata["nbgrader"].get("grade_id") for c in graded.cells
                   if c.metadata.get("nbgrader", {}).get("solution")}
        cells = []
        with Gradebook(db_url) as gb:
            nb = gb.find_submission_notebook(assignment, assignment, STUDENT)
            by_id = {g.name: g for g in nb.grades}
            for c in graded.cells:
                gid = c.metadata.get("nbgrader", {}).get("grade_id")
                if gid in by_id:
                    g = by_id[gid]
                    cells.append(CellResult(gid, float(g.score or 0.0), float(g.max_score),
                                            messages.get(gid, ""),
                                            autograded=gid not in by_hand))
            needs_manual = nb.needs_manual_grade
    score = sum(c.score for c in cells)
    max_score = sum(c.max_score for c in cells)
    result = CheckResult(assignment, score, max_score, "ok", cells)
    if needs_manual:
        result.flags.append("needs_manual_grading")
    return result
