"""Collect a class's notebooks into nbgrader's submitted/ folder and gradebook.

Instructors get submissions in whatever shape their LMS exports: a folder or
a zip of notebooks named by student id. ``collect`` accepts

    alice.ipynb                                   flat: the file name is the student id
    alice/02_sigmoid.ipynb  (or alice/any.ipynb)  one folder per student, one notebook
    alice/02_sigmoid/02_sigmoid.ipynb             nbgrader's own layout, with or
    submitted/alice/02_sigmoid/02_sigmoid.ipynb   without the submitted/ prefix

and places each as ``submitted/<student>/<assignment>/<assignment>.ipynb`` with
a ``timestamp.txt``, adding the student to the gradebook. The input is never
modified. A resubmission replaces the previous notebook, which is first copied
to ``submitted/.archive/<student>/<assignment>/<time>.ipynb``: nothing a
student handed in is lost. Anything that cannot be placed is reported with the
reason, never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import filecmp
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .course import check_assignments, find_course_root, open_api

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints", ".DS_Store"}


@dataclass
class CollectReport:
    """What collect did: placed (student -> path), unchanged, and not placed (file -> reason)."""

    assignment: str
    placed: dict[str, Path] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    not_placed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.assignment}: {len(self.placed)} placed, {len(self.unchanged)} "
                 f"unchanged, {len(self.not_placed)} not placed"]
        lines += [f"  not placed: {name}: {why}" for name, why in sorted(self.not_placed.items())]
        return "\n".join(lines)


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a zip, refusing members that would land outside dest."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                target = (dest / member.filename).resolve()
                if not str(target).startswith(str(dest.resolve())):
                    raise ValueError(f"{archive}: member {member.filename!r} points outside the "
                                     "archive; refusing to extract")
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{archive}: not a zip file ({exc})") from None


def _candidates(folder: Path, assignment: str) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Map student id -> notebooks found for them; plus files that fit no layout."""
    found: dict[str, list[Path]] = {}
    rejected: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_dir() or any(p in IGNORED_PARTS or p.startswith("._") for p in rel.parts):
            continue
        parts = list(rel.parts)
        if parts[0] == "submitted":
            parts = parts[1:]
        if path.suffix != ".ipynb":
            if path.name != "timestamp.txt":
                rejected[str(rel)] = "not a notebook (.ipynb)"
            continue
        if len(parts) == 1:
            student = path.stem
        elif len(parts) == 2:
            student = parts[0]
        elif len(parts) == 3 and parts[1] == assignment:
            student = parts[0]
        elif len(parts) == 3:
            rejected[str(rel)] = f"in a folder for assignment {parts[1]!r}, not {assignment!r}"
            continue
        else:
            rejected[str(rel)] = "nested too deep to tell whose it is"
            continue
        if not STUDENT_ID.match(student):
            rejected[str(rel)] = (f"{student!r} is not a usable student id (letters, digits, "
                                  "and _ . @ - only)")
            continue
        found.setdefault(student, []).append(path)
    return found, rejected


def collect(source, assignment: str, course_root: Path | None = None) -> CollectReport:
    """Place a folder or zip of student notebooks for one assignment.

    Args:
        source: a folder or a .zip file.
        assignment: the assignment id (must exist in source/).
        course_root: the course folder.
    Returns:
        a CollectReport.
    Raises:
        ValueError: the source does not exist, is not a folder or zip, or the
            assignment is unknown.
    """
    from nbgrader.api import Gradebook

    course_root = Path(course_root) if course_root else find_course_root()
    check_assignments(course_root, [assignment])
    source = Path(source)
    if not source.exists():
        raise ValueError(f"{source}: no such file or folder")
    _, cd = open_api(course_root)
    report = CollectReport(assignment)
    with tempfile.TemporaryDirectory(prefix="course-collect-") as tmp:
        if source.is_file():
            _safe_extract(source, Path(tmp))
            folder = Path(tmp)
        elif source.is_dir():
            folder = source
        else:
            raise ValueError(f"{source}: expected a folder or a .zip file")
        found, report.not_placed = _candidates(folder, assignment)
        stamp = dt.datetime.now(dt.UTC)
        with Gradebook(cd.db_url, cd.course_id) as gb:
            for student, paths in sorted(found.items()):
                if len(paths) > 1:
                    names = ", ".join(str(p.relative_to(folder)) for p in paths)
                    report.not_placed[names] = f"{len(paths)} notebooks for {student}; expected one"
                    continue
                dest_dir = Path(cd.format_path(cd.submitted_directory, student, assignment))
                dest = dest_dir / f"{assignment}.ipynb"
                if dest.is_file() and filecmp.cmp(paths[0], dest, shallow=False):
                    report.unchanged.append(student)
                    continue
                if dest.is_file():
                    archive = (Path(cd.format_path(cd.submitted_directory, ".archive", "."))
                               / student / assignment)
                    archive.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(dest, archive / f"{stamp:%Y%m%dT%H%M%S%fZ}.ipynb")
                dest_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(paths[0], dest)
                (dest_dir / "timestamp.txt").write_text(f"{stamp:%Y-%m-%d %H:%M:%S.%f} UTC")
                gb.update_or_create_student(student)
                report.placed[student] = dest
    return report
