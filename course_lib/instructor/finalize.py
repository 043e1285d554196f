"""`course finalize ID...`: read the formgrader's hand grades back into the class's results.

``course grade`` autogrades; the written answers are then graded by hand in
nbgrader's formgrader, which writes each ``manual_score`` (and comment) into
the gradebook and nowhere else. Until something reads them back, grades.csv,
the report and the feedback still show those answers as open. ``finalize``:

1. reads each submission's scores from the gradebook (nbgrader: a hand score
   wins over the autograder's, and the formgrader may also correct an
   autograded cell), so ``score``, ``cell_scores`` and ``open_points`` become
   the gradebook's, and the status turns ``ok`` once no point is open;
2. writes nbgrader's feedback (generate_feedback, the course's preprocessors:
   the comments appear next to the cells) for every submission with nothing
   open. One with written answers still ungraded gets none, since its
   feedback would show a grade that is not final, unless ``--force``; the
   output names each one held back;
3. rewrites grades.csv, the stored results and the report.

Only submissions graded normally (ok, awaiting_hand_grading) are read back:
any other status (missing, timeout, tampered, ...) says grading did not run
through, and keeps the result ``course grade`` gave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .course import check_assignments, open_api
from .grade import (
    Feedback,
    SubmissionResult,
    feedback_due,
    generate_feedback,
    read_grades,
    write_grades_csv,
)
from .status import NORMAL, Status


@dataclass
class Finalized:
    """What finalize did, submission by submission."""

    results: list[SubmissionResult]  # the whole class, as now stored
    updated: list[SubmissionResult] = field(default_factory=list)  # read back from the gradebook
    feedback: list[Path] = field(default_factory=list)  # feedback files written
    held_back: list[SubmissionResult] = field(default_factory=list)  # open points, no feedback
    skipped: list[SubmissionResult] = field(default_factory=list)  # not graded normally
    comments: dict[tuple[str, str], int] = field(default_factory=dict)  # hand comments read

    @property
    def still_open(self) -> list[SubmissionResult]:
        return [r for r in self.updated if r.open_points > 0]


def hand_comments(coursedir, assignment: str, student: str) -> dict[str, str]:
    """{grade_id: comment} of every cell the formgrader commented on."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return {}
        return {c.name: c.manual_comment for nb in sub.notebooks for c in nb.comments
                if c.manual_comment}


def reread(coursedir, r: SubmissionResult) -> SubmissionResult:
    """``r`` with its score, cell scores, open points and status as the gradebook has them now."""
    score, cells, open_points = read_grades(coursedir, r.assignment, r.student,
                                            list(r.cell_scores))
    if score is None:
        raise RuntimeError(f"{r.student}/{r.assignment}: status {r.status}, but the gradebook "
                           "has no such submission (was gradebook.db replaced since grading?)")
    r.score, r.cell_scores, r.open_points = score, cells, open_points
    r.status = Status.AWAITING_HAND_GRADING if open_points > 0 else Status.OK
    return r


def finalize(course_root: Path, assignments, force: bool = False,
             feedback: bool = True) -> Finalized:
    """Read hand grades back for ``assignments``; rewrite feedback, grades.csv and the report.

    Args:
        course_root: the course folder (results of ``course grade`` stored in it).
        assignments: assignment ids (each must be in source/ and graded).
        force: write feedback even where written answers are still ungraded.
        feedback: False: no feedback at all (grades.csv and the report only).
    Raises:
        ValueError: an unknown assignment, or one with no stored results.
    """
    from .cli import GRADES_CSV, REPORT_HTML, RESULTS_JSON
    from .report import load_results, save_results, write_report

    course_root = Path(course_root)
    assignments = check_assignments(course_root, assignments)
    stored = course_root / RESULTS_JSON
    if not stored.is_file():
        raise ValueError(f"no graded results in {stored}: run `course grade "
                         f"{' '.join(assignments)}` first")
    results = load_results(stored)
    ungraded = [a for a in assignments if not any(r.assignment == a for r in results)]
    if ungraded:
        raise ValueError(f"{stored} holds no results for {', '.join(ungraded)}: run "
                         f"`course grade {' '.join(ungraded)}` first")
    api, cd = open_api(course_root)
    done = Finalized(results)
    for r in results:
        if r.assignment not in assignments:
            continue
        if r.status not in NORMAL:
            done.skipped.append(r)
            continue
        done.updated.append(reread(cd, r))
        comments = hand_comments(cd, r.assignment, r.student)
        if comments:
            done.comments[(r.student, r.assignment)] = len(comments)
        if not feedback:
            continue
        if not feedback_due(r, Feedback.ALL if force else Feedback.FINAL):
            done.held_back.append(r)
            continue
        done.feedback.extend(generate_feedback(api, [r]))
    write_grades_csv(results, course_root / GRADES_CSV)
    save_results(results, stored)
    write_report(results, course_root / REPORT_HTML, course_root=course_root)
    return done


def describe(done: Finalized, force: bool = False) -> list[str]:
    """The lines ``course finalize`` prints: one per submission it read or left alone."""
    from .report import open_points_text

    lines = []
    for r in done.updated:
        n = done.comments.get((r.student, r.assignment), 0)
        said = f"{r.student}/{r.assignment}: {r.score:g}/{r.max_score:g}, " + (
            Status.OK if r.open_points == 0 else open_points_text(r)) + \
            (f", {n} comment{'s' * (n != 1)}" if n else "")
        if any(r is h for h in done.held_back):
            said += ("; feedback held back until its written answers are graded "
                     "(--force writes it anyway)")
        elif r.open_points > 0 and force:
            said += "; feedback written although points are open (--force)"
        lines.append(said)
    for r in done.skipped:
        lines.append(f"{r.student}/{r.assignment}: left as graded, status {r.status}"
                     + (f" ({r.reason})" if r.reason else ""))
    return lines


def run(args, root: Path) -> int:
    """``course finalize``: 0 when no point is left open, 1 otherwise."""
    from .cli import GRADES_CSV, REPORT_HTML

    done = finalize(root, args.assignments, force=args.force, feedback=not args.no_feedback)
    for line in describe(done, args.force):
        print(line)
    if done.feedback:
        print(f"feedback: {len(done.feedback)} file{'s' * (len(done.feedback) != 1)} in "
              f"{root / 'feedback'}")
    open_total = sum(r.open_points for r in done.still_open)
    if open_total:
        print(f"still awaiting hand grading: {len(done.still_open)} submission"
              f"{'s' * (len(done.still_open) != 1)}, {open_total:g} point"
              f"{'s' * (open_total != 1)} open "
              "(grade them in the formgrader, then finalize again)")
    print(f"grades:   {root / GRADES_CSV}\nreport:   {root / REPORT_HTML}")
    return 1 if done.still_open else 0


def register(subparsers) -> None:
    """Add ``course finalize`` to the ``course`` command's subparsers."""
    s = subparsers.add_parser(
        "finalize", help="read the formgrader's hand grades back: scores, feedback, "
                         "grades.csv, report")
    s.add_argument("assignments", nargs="+", metavar="ID", help="assignment ids")
    s.add_argument("--force", "--force-feedback", dest="force", action="store_true",
                   help="write feedback even for submissions whose written answers are "
                        "not graded yet (they show 0 for those)")
    s.add_argument("--no-feedback", action="store_true", help="skip the feedback files")
    s.set_defaults(run=run)
