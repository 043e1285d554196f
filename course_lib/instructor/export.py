"""`course export --to canvas|moodle|csv`: the class's grades as a file an LMS imports.

One row per student, one column per assignment, from the stored results of
``course grade`` / ``course finalize`` (reports/results.json), and who each
student is from nbgrader's gradebook (``Student``: id, first_name,
last_name, email, lms_user_id; ``nbgrader db student import`` fills them).

What a cell holds is decided by the submission's status, never silently:

    ok                            the score
    timeout, kernel_died,         the score: under the course's rules it is the
    tampered                      real one (graded as far as it got; what a
                                  tampered notebook touched scores 0), but the
                                  instructor should know: listed as a warning
    awaiting_hand_grading,        empty: there is no final grade yet (an LMS
    missing, unreadable, error,   keeps an empty cell as "not graded"; a 0
    any other, no result at all   would look like one), listed as a warning;
                                  ``--missing-as-zero`` writes 0 for missing
                                  (nothing handed in) where that is the rule

Every warning is printed and written next to the file
(``<name>-warnings.csv``: student, assignment, status, what was exported, why),
so nothing unusual reaches an LMS unseen.

Formats:

canvas
    Canvas's gradebook import: ``Student`` ("Last, First"), ``ID`` (Canvas's
    user id: nbgrader's ``lms_user_id``), ``SIS User ID`` (empty: nbgrader has
    none), ``SIS Login ID`` (the nbgrader id, the hub login), ``Section``
    (empty), then one column per assignment. Canvas matches an existing
    assignment by the id in parentheses, "01_chain_rule (12345)"
    (``--canvas-id 01_chain_rule=12345``); a column without one creates a new
    assignment of that name. A "Points Possible" row follows the header, as in
    Canvas's own export.
moodle
    Moodle's "Import grades from CSV": ``Username`` (the nbgrader id), ``Email
    address``, ``First name``, ``Last name``, then one column per grade item;
    the import's preview maps the identifier (username, or email to
    useremail) and each column to a grade item.
csv
    Plain: student, first_name, last_name, email, lms_user_id, then per
    assignment its score and its status.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .grade import SubmissionResult
from .status import Status

FORMATS = ("canvas", "moodle", "csv")
# Statuses whose score is exported as it is, with a warning: the score is real under the
# course's rules, but the instructor should look.
SCORED_WITH_WARNING = (Status.TIMEOUT, Status.KERNEL_DIED, Status.TAMPERED)
CANVAS_FIXED = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_POINTS_ROW = "    Points Possible"  # the first cell of the row Canvas's export writes
MOODLE_FIXED = ("Username", "Email address", "First name", "Last name")
PLAIN_FIXED = ("student", "first_name", "last_name", "email", "lms_user_id")
WARNING_COLUMNS = ("student", "assignment", "status", "exported", "why")


@dataclass(frozen=True)
class Student:
    """Who a student is, as nbgrader's gradebook knows them."""

    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""

    @property
    def sortable_name(self) -> str:
        """"Last, First" as Canvas shows it; the id when the gradebook has no name."""
        if self.last_name and self.first_name:
            return f"{self.last_name}, {self.first_name}"
        return self.last_name or self.first_name or self.id


@dataclass(frozen=True)
class ExportWarning:
    """A (student, assignment) whose cell is not simply a final score."""

    student: str
    assignment: str
    status: str
    exported: str  # what the LMS file holds: a score, or "" (empty)
    why: str

    def __str__(self) -> str:
        value = f"exported {self.exported}" if self.exported else "left empty"
        return f"{self.student}/{self.assignment}: {self.status}, {value}: {self.why}"


@dataclass
class GradeTable:
    """What an export writes: students, assignments, each cell's value, and the warnings."""

    students: list[Student]
    assignments: list[str]
    max_scores: dict[str, float]
    values: dict[tuple[str, str], str]  # (student, assignment) -> "" or a score
    statuses: dict[tuple[str, str], str]
    warnings: list[ExportWarning] = field(default_factory=list)


def roster(coursedir) -> dict[str, Student]:
    """Every student in the gradebook, by nbgrader id."""
    from nbgrader.api import Gradebook

    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        return {s.id: Student(s.id, s.first_name or "", s.last_name or "", s.email or "",
                              s.lms_user_id or "") for s in gb.students}


def _points(x: float) -> str:
    return f"{x:g}"


def cell_value(r: SubmissionResult | None, missing_as_zero: bool = False) -> tuple[str, str]:
    """(what the LMS file holds for this result, why it needs a warning or '')."""
    if r is None:
        return "", "no result: not graded (run `course grade`)"
    if r.status == Status.OK:
        return _points(r.score), ""
    if r.status in SCORED_WITH_WARNING:
        return _points(r.score), (f"the score grading reached; {r.reason}" if r.reason
                                  else "the score grading reached")
    if r.status == Status.AWAITING_HAND_GRADING:
        return "", (f"{_points(r.open_points)} point{'s' * (r.open_points != 1)} of written "
                    f"answers not graded yet ({_points(r.score)} so far): grade them in "
                    "the formgrader, then `course finalize`")
    if r.status == Status.MISSING and missing_as_zero:
        return "0", "nothing handed in; 0 by --missing-as-zero"
    return "", r.reason or "not graded normally"


def grade_table(results, students: dict[str, Student], assignments=None,
                missing_as_zero: bool = False) -> GradeTable:
    """The cells of an export: every student of the gradebook or the results, sorted by id."""
    by_pair = {(r.student, r.assignment): r for r in results}
    assignments = sorted(assignments or {r.assignment for r in results})
    ids = sorted(set(students) | {r.student for r in results})
    table = GradeTable([students.get(s, Student(s)) for s in ids], assignments,
                       {a: max((r.max_score for r in results if r.assignment == a),
                               default=0.0) for a in assignments}, {}, {})
    for s in ids:
        for a in assignments:
            r = by_pair.get((s, a))
            value, why = cell_value(r, missing_as_zero)
            status = r.status if r else Status.NOT_GRADED
            table.values[(s, a)], table.statuses[(s, a)] = value, status
            if why:
                table.warnings.append(ExportWarning(s, a, status, value, why))
    return table


def _write(path: Path, header, rows) -> Path:
    """A UTF-8 CSV (what Canvas and Moodle read), written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)
    return path


def write_canvas(table: GradeTable, path: Path, canvas_ids: dict[str, str] | None = None):
    canvas_ids = canvas_ids or {}
    columns = [f"{a} ({canvas_ids[a]})" if a in canvas_ids else a for a in table.assignments]
    points = [CANVAS_POINTS_ROW, "", "", "", ""] + [_points(table.max_scores[a])
                                                    for a in table.assignments]
    rows = [[s.sortable_name, s.lms_user_id, "", s.id, ""]
            + [table.values[(s.id, a)] for a in table.assignments] for s in table.students]
    return _write(path, [*CANVAS_FIXED, *columns], [points, *rows])


def write_moodle(table: GradeTable, path: Path):
    rows = [[s.id, s.email, s.first_name, s.last_name]
            + [table.values[(s.id, a)] for a in table.assignments] for s in table.students]
    return _write(path, [*MOODLE_FIXED, *table.assignments], rows)


def write_plain(table: GradeTable, path: Path):
    header = [*PLAIN_FIXED] + [c for a in table.assignments for c in (a, f"{a} status")]
    rows = [[s.id, s.first_name, s.last_name, s.email, s.lms_user_id]
            + [c for a in table.assignments
               for c in (table.values[(s.id, a)], table.statuses[(s.id, a)])]
            for s in table.students]
    return _write(path, header, rows)


def warnings_path(out: Path) -> Path:
    """The side file of an export: grades.csv -> grades-warnings.csv."""
    return out.with_name(f"{out.stem}-warnings.csv")


@dataclass
class Exported:
    path: Path
    table: GradeTable
    warnings_path: Path | None  # None: no warnings (and no side file)


def export(course_root: Path, to: str, out: Path | None = None, assignments=None,
           missing_as_zero: bool = False, canvas_ids: dict[str, str] | None = None) -> Exported:
    """Write the class's grades for an LMS, and the warnings beside them.

    Args:
        course_root: the course folder (stored results and gradebook).
        to: "canvas", "moodle" or "csv".
        out: the file to write (default: exports/<to>-grades.csv in the course).
        assignments: ids to export (default: every graded one).
        missing_as_zero: write 0, not an empty cell, for status missing.
        canvas_ids: {assignment: Canvas assignment id} for the Canvas column names.
    Raises:
        ValueError: an unknown format or assignment, or no stored results.
    """
    from .cli import RESULTS_JSON
    from .course import open_api
    from .report import load_results

    if to not in FORMATS:
        raise ValueError(f"--to: expected one of {', '.join(FORMATS)}, got {to!r}")
    course_root = Path(course_root)
    stored = course_root / RESULTS_JSON
    if not stored.is_file():
        raise ValueError(f"no graded results in {stored}: run `course grade` first")
    results = load_results(stored)
    graded = sorted({r.assignment for r in results})
    unknown = sorted(set(assignments or ()) - set(graded))
    if unknown:
        raise ValueError(f"no results for {', '.join(unknown)} in {stored}; graded: "
                         f"{', '.join(graded) or 'none'}")
    unknown = sorted(set(canvas_ids or ()) - set(assignments or graded))
    if unknown:
        raise ValueError(f"--canvas-id names {', '.join(unknown)}, which is not exported")
    _, cd = open_api(course_root)
    table = grade_table(results, roster(cd), assignments, missing_as_zero)
    out = Path(out) if out else course_root / "exports" / f"{to}-grades.csv"
    if to == "canvas":
        write_canvas(table, out, canvas_ids)
    elif to == "moodle":
        write_moodle(table, out)
    else:
        write_plain(table, out)
    side = warnings_path(out)
    if table.warnings:
        _write(side, WARNING_COLUMNS, [[w.student, w.assignment, w.status, w.exported, w.why]
                                       for w in table.warnings])
    else:
        side.unlink(missing_ok=True)  # an old export's warnings no longer hold
        side = None
    return Exported(out, table, side)


def _canvas_ids(pairs) -> dict[str, str]:
    ids = {}
    for pair in pairs or ():
        assignment, sep, number = pair.partition("=")
        if not sep or not assignment or not number.strip().isdigit():
            raise ValueError(f"--canvas-id: expected ASSIGNMENT=NUMBER (the number in the "
                             f"Canvas assignment's URL), got {pair!r}")
        ids[assignment] = number.strip()
    return ids


def run(args, root: Path) -> int:
    """``course export``: 0 when every cell is a final score, 1 when there are warnings."""
    done = export(root, args.to, args.out, args.assignments or None,
                  missing_as_zero=args.missing_as_zero, canvas_ids=_canvas_ids(args.canvas_id))
    for w in done.table.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.to == "canvas":
        unmatched = [s.id for s in done.table.students if not s.lms_user_id]
        if unmatched:
            print(f"note: {len(unmatched)} student{'s' * (len(unmatched) != 1)} without an "
                  "lms_user_id in the gradebook: Canvas matches them by SIS Login ID "
                  f"(their nbgrader id): {', '.join(unmatched[:10])}"
                  + (" ..." if len(unmatched) > 10 else ""), file=sys.stderr)
    print(f"{args.to}: {done.path} ({len(done.table.students)} students, "
          f"{len(done.table.assignments)} assignment"
          f"{'s' * (len(done.table.assignments) != 1)})")
    if done.warnings_path:
        n = len(done.table.warnings)
        print(f"warnings: {n} cell{'s' * (n != 1)} not a plain final score, listed in "
              f"{done.warnings_path}")
    return 1 if done.table.warnings else 0


def register(subparsers) -> None:
    """Add ``course export`` to the ``course`` command's subparsers."""
    s = subparsers.add_parser("export", help="the grades as a file Canvas or Moodle imports "
                                             "(or plain CSV), with warnings beside it")
    s.add_argument("assignments", nargs="*", metavar="ID",
                   help="assignment ids (default: every graded one)")
    s.add_argument("--to", required=True, choices=FORMATS, help="the LMS's format")
    s.add_argument("--out", type=Path, metavar="FILE",
                   help="the file to write (default: exports/<format>-grades.csv)")
    s.add_argument("--missing-as-zero", action="store_true",
                   help="write 0 for a submission that was never handed in (default: empty)")
    s.add_argument("--canvas-id", action="append", metavar="ID=NUMBER",
                   help="the Canvas assignment id of an assignment (repeatable): its column "
                        "then updates that Canvas assignment instead of creating one")
    s.set_defaults(run=run)
