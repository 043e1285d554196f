"""`course`: the instructor's command, in nbgrader's vocabulary.

    course release [ID...]                       source/ -> release/ (student versions)
    course collect FOLDER_OR_ZIP --assignment ID  -> submitted/, students into the gradebook
    course grade [ID...]                         autograde, feedback, grades.csv, report
    course report                                the HTML report of the last grading
    course check NOTEBOOK --assignment ID [--json]  grade one file, gradebook untouched
    course check-server start|stop|status        the warm grader `course check` leaves
    course formgrader [--port N]                 nbgrader's formgrader, Autograde graded sealed
    course finalize ID...                        read hand grades back: feedback, grades.csv
    course export --to canvas|moodle|csv         grades for an LMS, warnings beside them

`course grade --scheduler tcp://HOST:8786` grades on a dask.distributed
cluster instead, each worker grading whole submissions, with the gradebook on
PostgreSQL (docs/cluster.md).

Run it from the course folder (the one with nbgrader_config.py), or set
COURSE_ROOT. Every command is nbgrader underneath; nothing here replaces the
gradebook, the formgrader or nbgrader's folders.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .course import find_course_root

UNSEALED_HELP = ("grade with stock nbgrader, without the sandbox (where bubblewrap cannot "
                 "run): the students' code is then unconfined; a warning says so every time")
GRADES_CSV = "grades.csv"
RESULTS_JSON = Path("reports") / "results.json"
REPORT_HTML = Path("reports") / "report.html"


def _release(args, root: Path) -> int:
    from .release import release_assignments

    for path in release_assignments(root, args.assignments):
        print(f"released {path.relative_to(root)}")
    return 0


def _collect(args, root: Path) -> int:
    from .collect import collect

    report = collect(args.source, args.assignment, root)
    print(report.summary())
    for student, path in sorted(report.placed.items()):
        print(f"  placed {student}: {path.relative_to(root)}")
    return 0 if not report.not_placed else 1


def _grade(args, root: Path) -> int:
    from .course import check_assignments
    from .workers import start_workers_early, stop_forkserver

    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs: expected a number of processes >= 1, got {args.jobs}")
    if args.jobs is not None and args.scheduler:
        raise ValueError("--jobs and --scheduler: choose one (on a cluster, each worker's "
                         "--nworkers sets how many submissions it grades at once)")
    if not args.scheduler:  # the workers' imports, beside this process's own (workers.py)
        start_workers_early(root, check_assignments(root, args.assignments), args.students,
                            args.jobs)
    from .grade import feedback_due, grade_class, merge_results, text_progress, write_grades_csv
    from .report import load_results, save_results, write_report
    from .status import NORMAL

    progress = text_progress if not args.quiet else None
    _warn_if_unsealed(args)
    policy = _feedback_policy(args)
    fresh = results = grade_class(root, args.assignments, args.students, progress=progress,
                                  jobs=args.jobs, feedback=policy, meanwhile=_warm_report,
                                  scheduler=args.scheduler, unsealed=args.unsealed)
    stop_forkserver()
    if (args.students or args.assignments) and (root / RESULTS_JSON).is_file():
        # only these students or lessons were graded (a resubmission, this week's lesson):
        # every other (student, lesson) keeps its stored result and its grades.csv row
        results = merge_results(load_results(root / RESULTS_JSON), fresh)
    write_grades_csv(results, root / GRADES_CSV)
    save_results(results, root / RESULTS_JSON)
    write_report(results, root / REPORT_HTML, course_root=root)
    _print_summary(results)
    _warn_if_unsealed(args)
    if not args.no_feedback:
        print(f"feedback: {root / 'feedback'}")
        waiting = [r for r in fresh if r.status in NORMAL and not feedback_due(r, policy)]
        if waiting:
            n = len(waiting)
            print(f"          {n} submission{'s' * (n != 1)} {'have' if n != 1 else 'has'} no "
                  "feedback yet: written answers wait for hand grading (`course formgrader`); "
                  "`course finalize` writes it then (--force-feedback writes it now)")
    print(f"grades:   {root / GRADES_CSV}\nreport:   {root / REPORT_HTML}")
    bad = [r for r in fresh if r.status not in NORMAL]
    return 0 if not bad else 1


def _warm_report() -> None:
    """The report's first figure's cost (report.figures.warm_up), paid while the workers
    grade; a failure here is the report's to say, when it draws."""
    try:
        from .report.figures import warm_up

        warm_up()
    except Exception:  # noqa: BLE001
        pass


def _feedback_policy(args):
    from .grade import Feedback

    if args.no_feedback and args.force_feedback:
        raise ValueError("--no-feedback and --force-feedback: choose one")
    if args.no_feedback:
        return Feedback.NONE
    return Feedback.ALL if args.force_feedback else Feedback.FINAL


def _warn_if_unsealed(args) -> None:
    if args.unsealed:
        from .grade import UNSEALED_WARNING

        print(UNSEALED_WARNING, file=sys.stderr)


def _print_summary(results) -> None:
    """A table: one row per student, one column per assignment (score/max, status)."""
    from .status import NORMAL

    assignments = sorted({r.assignment for r in results})
    students = sorted({r.student for r in results})
    cell = {(r.student, r.assignment): r for r in results}
    width = max([len(a) for a in assignments] + [14])
    print(f"{'student':<16}" + "".join(f"{a:>{width + 2}}" for a in assignments))
    for s in students:
        row = []
        for a in assignments:
            r = cell.get((s, a))
            text = "" if r is None else f"{r.score:g}/{r.max_score:g}"
            if r is not None and r.status not in NORMAL:
                text = r.status
            elif r is not None and r.open_points:
                text += f" ({r.open_points:g} open)"
            row.append(f"{text:>{width + 2}}")
        print(f"{s:<16.16}" + "".join(row))


def _report(args, root: Path) -> int:
    from .report import load_results, write_report

    path = write_report(load_results(root / RESULTS_JSON), root / REPORT_HTML, course_root=root)
    print(f"report: {path}")
    return 0


def _check(args, root: Path) -> int:
    from .check import check_notebook
    from .status import Status, full_marks

    _warn_if_unsealed(args)
    timings = {} if args.timings else None
    result = check_notebook(args.notebook, args.assignment, root, unsealed=args.unsealed,
                            timings=timings)
    if args.json:
        print(result.to_json())
    else:
        print(f"{args.notebook}: {result.score:g}/{result.max_score:g} ({result.status})")
        for c in result.cells:
            passed = full_marks(c.score, c.max_score)
            mark = "ok " if passed else ("-- " if c.autograded else "?? ")
            print(f"  {mark}{c.grade_id:<32} {c.score:g}/{c.max_score:g}"
                  + ("" if c.autograded else "  (graded by hand)"))
            if c.message:
                print("      " + c.message.replace("\n", "\n      "))
        for note in result.notes:
            print(f"  note (costs nothing): {note}")
    if timings is not None:  # on stderr: --json's stdout stays one JSON object
        print("where the time went:", file=sys.stderr)
        for step, seconds in timings.items():
            print(f"  {seconds:6.2f} s  {step}", file=sys.stderr)
        print(f"  {sum(timings.values()):6.2f} s  in all", file=sys.stderr)
    return 0 if result.status == Status.OK else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:12]))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("release", help="generate the student versions with nbgrader")
    s.add_argument("assignments", nargs="*", metavar="ID", help="assignment ids (default: all)")
    s.set_defaults(run=_release)

    s = sub.add_parser("collect", help="place a folder or zip of submissions")
    s.add_argument("source", type=Path, metavar="FOLDER_OR_ZIP")
    s.add_argument("--assignment", required=True, metavar="ID")
    s.set_defaults(run=_collect)

    s = sub.add_parser("grade", help="autograde every submission, feedback, grades.csv, report")
    s.add_argument("assignments", nargs="*", metavar="ID",
                   help="assignment ids (default: all); the other assignments keep their "
                        "stored results and grades.csv rows")
    s.add_argument("--students", "--student", nargs="+", metavar="STUDENT",
                   help="only these students (a regrade, a resubmission): everyone else keeps "
                        "their stored result, grades.csv row and feedback")
    s.add_argument("--no-feedback", action="store_true", help="skip the feedback files")
    s.add_argument("--force-feedback", action="store_true",
                   help="also write the feedback of submissions whose written answers are "
                        "not graded yet (by default it waits for `course finalize`)")
    s.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="submissions graded at once (default: the number of cores)")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="grade on the workers of this dask scheduler (tcp://HOST:8786); "
                        "needs a PostgreSQL gradebook (COURSE_DB_URL) and the course "
                        "folder at the same path on every worker: see docs/cluster.md")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--unsealed", action="store_true", help=UNSEALED_HELP)
    s.set_defaults(run=_grade)

    s = sub.add_parser("report", help="write the HTML report of the last grading")
    s.set_defaults(run=_report)

    s = sub.add_parser("check", help="grade one notebook without touching the gradebook")
    s.add_argument("notebook", type=Path, metavar="NOTEBOOK")
    s.add_argument("--assignment", required=True, metavar="ID")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--unsealed", action="store_true", help=UNSEALED_HELP)
    s.add_argument("--timings", action="store_true",
                   help="say where the time went, step by step (on stderr)")
    s.set_defaults(run=_check)

    s = sub.add_parser("check-server", help="the warm grader that answers `course check`",
                       description="After a check, `course check` leaves a warm grader "
                       "running for the course (imports done, kernels forked): the next "
                       "checks start at once. It ends after COURSE_CHECK_SERVER_IDLE "
                       "seconds without a check (default 600); COURSE_CHECK_SERVER=0 "
                       "turns it off.")
    s.add_argument("action", choices=("start", "stop", "status"),
                   help="start it (and wait until it answers), stop it, or say whether "
                        "it runs")
    s.set_defaults(run=_check_server)

    from .export import register as register_export
    from .finalize import register as register_finalize
    from .formgrader import register as register_formgrader

    register_formgrader(sub)
    register_finalize(sub)
    register_export(sub)
    return p


def _check_server(args, root: Path) -> int:
    from . import check_server

    if args.action == "start":
        state = check_server.start(root)
    elif args.action == "stop":
        state = check_server.stop(root)
    else:
        state = check_server.status(root)
    if state is None:
        print("no warm grader runs for this course and this code")
        return 0 if args.action == "stop" else 1
    since = time.strftime("%H:%M:%S", time.localtime(state["started"]))
    print(f"{'stopped' if args.action == 'stop' else 'running'}: pid {state['pid']}, "
          f"{state['checks']} check(s) since {since}, socket {state['socket']}")
    return 0


def main(argv=None, forward: bool = True) -> int:
    """The command; ``course check`` goes to the course's warm grader where one runs
    (check_server), and a check done here starts one for the next checks."""
    argv = sys.argv[1:] if argv is None else list(argv)
    checking = forward and argv[:1] == ["check"] and "--unsealed" not in argv
    if checking:
        from . import check_server

        try:
            root = find_course_root()
        except FileNotFoundError:
            checking = False  # said below, as the command says it
        else:
            if (code := check_server.forward(argv, root)) is not None:
                return code
    args = build_parser().parse_args(argv)
    try:
        root = find_course_root()
        code = args.run(args, root)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # SandboxUnavailable too
        print(f"course {args.command}: {exc}", file=sys.stderr)
        return 2
    if checking:
        check_server.start_in_background(root)
    return code


if __name__ == "__main__":
    sys.exit(main())
