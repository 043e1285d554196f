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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .course import check_assignments, find_course_root
from .grade import NORMAL, grade_reliably, open_grading_api, register_assignment

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
    notes: list[str] = field(default_factory=list)  # suspicious code that cost nothing

    def to_json(self) -> str:
        """The JSON object `course check --json` prints (cells without `autograded`)."""
        data = asdict(self)
        for cell in data["cells"]:
            del cell["autograded"]
        return json.dumps(data, indent=2, ensure_ascii=False)

    def cell(self, grade_id: str) -> CellResult:
        for c in self.cells:
            if c.grade_id == grade_id:
                return c
        raise KeyError(f"no graded cell {grade_id!r} in {self.assignment}")


def check_notebook(path, assignment: str, course_root: Path | None = None,
                   unsealed: bool = False) -> CheckResult:
    """Autograde one notebook file in a private, temporary course.

    The same code path as ``course grade`` (grade.grade_reliably), in a
    throw-away course folder with its own gradebook.

    Args:
        path: the notebook to grade (a student's submission, or a source or
            release notebook).
        assignment: its nbgrader assignment id, e.g. "02_sigmoid".
        course_root: the course folder (default: see find_course_root).
    Returns:
        CheckResult with one CellResult per graded cell, in notebook order;
        status "ok" or why the notebook could not be graded normally.
    """
    course_root = Path(course_root) if course_root else find_course_root()
    check_assignments(course_root, [assignment])
    path = Path(path)
    source_nb = course_root / "source" / assignment / f"{assignment}.ipynb"
    # nbgrader: a grade cell that is also a solution cell is graded by hand.
    by_hand = {c.metadata["nbgrader"]["grade_id"]
               for c in nbformat.read(str(source_nb), as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("grade")
               and c.metadata["nbgrader"].get("solution")}

    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(course_root / "source" / assignment, tmp / "source" / assignment)
        dest = tmp / "submitted" / STUDENT / assignment
        dest.mkdir(parents=True)
        if path.is_file():
            shutil.copyfile(path, dest / f"{assignment}.ipynb")
        # The course's settings, with every folder and the gradebook in tmp.
        api = open_grading_api(course_root, guard_roots=[course_root], unsealed=unsealed,
                               CourseDirectory__root=str(tmp),
                               CourseDirectory__db_url=f"sqlite:///{tmp / 'gradebook.db'}")
        try:
            register_assignment(api, assignment)
            graded = grade_reliably(api, assignment, STUDENT)
        finally:
            if api.sealed is not None:
                api.sealed.close()

    cells = [CellResult(gid, score, max_score, graded.messages.get(gid, ""),
                        autograded=gid not in by_hand)
             for gid, (score, max_score) in graded.cell_scores.items()]
    status = "ok" if graded.status in NORMAL else graded.status
    result = CheckResult(assignment, graded.score, graded.max_score, status, cells,
                         notes=list(graded.notes))
    if graded.status == "awaiting_hand_grading":
        result.flags.append("awaiting_hand_grading")
    result.flags.extend(graded.flags)
    if graded.reason and not graded.flags:
        result.flags.append(graded.reason)
    return result
