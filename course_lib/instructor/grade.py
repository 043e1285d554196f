"""Grade a whole class: nbgrader's autograde on every submission, with a status for each.

Stock nbgrader either grades a submission or logs an error and moves on; the
gradebook then holds nothing for it, and an export shows a bare 0. Here every
(student, assignment) pair ends with a ``SubmissionResult`` whose ``status``
says how far grading got:

    ok                    autograded; every point is final
    awaiting_hand_grading autograded; written answers wait for the formgrader:
                          ``open_points`` says how many points are still open
                          (``course finalize`` reads the hand grades back)
    missing               the student has no notebook for this assignment
    unreadable            the file is not a notebook (bad JSON, not nbformat)
    timeout               a cell ran past the time limit (graded as far as it got)
    kernel_died           the kernel died (os._exit, segfault, out of memory); the
                          test cells that ran before keep their grades
    tampered              the notebook deleted or changed a test cell's grading, or
                          kept a hidden test from reaching the judge (or hid its
                          failure); what it touched scores 0. Code that only looks
                          suspicious (exec, inspect, a patched module) is a note,
                          not a cost: course_lib.judge.tamper says why
    error                 nbgrader itself failed; ``reason`` holds its message

Grading is sealed (course_lib.judge): the kernel runs the student's code with
no answers in reach, and each hidden test's verdict is reached in this
process, so a test cell's grade is the judge's verdict, not what the kernel
printed.

A submission that could not be graded normally is never a silent 0: its status
and reason travel to grades.csv and the report.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..judge.server import Record, expected_checks, sweep_stale_folders
from ..judge.tamper import ALL, inspect_submission
from .course import check_assignments, find_course_root, load_config, open_api

NORMAL = ("ok", "awaiting_hand_grading")
# Status names of earlier versions, as results stored then may still hold them.
RENAMED_STATUSES = {"needs_manual_grading": "awaiting_hand_grading"}
MAX_NOTEBOOK_BYTES = 20 * 2**20  # a lesson notebook with outputs is well under 2 MiB


@dataclass
class SubmissionResult:
    """One student's grade on one assignment."""

    student: str
    assignment: str
    score: float
    max_score: float
    status: str
    reason: str = ""
    messages: dict[str, str] = field(default_factory=dict)  # grade_id -> failed test's message
    cell_scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # tampering that cost points, with where
    notes: list[str] = field(default_factory=list)  # suspicious code that cost nothing
    sealed: bool = True  # False: graded by stock nbgrader (--unsealed), the code unconfined
    # points of written answers no one has graded yet (status awaiting_hand_grading): not
    # in ``score``, and not lost either
    open_points: float = 0.0


def error_message(cell) -> str:
    """The error a cell's output shows (``Name: message``), or '' if it has none."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            name, text = out.get("ename", "Error"), (out.get("evalue") or "").strip()
            if not text:  # a bare `raise X()` or `assert cond`: say what it means
                text = _BARE_ERRORS.get(name, "(no message)")
            return f"{name}: {text}"
    return ""


_BARE_ERRORS = {
    "NotImplementedError": "not answered yet (the function still raises NotImplementedError)",
    "AssertionError": "a test in this cell failed (it gave no message)",
}


def register_assignment(api, assignment: str) -> None:
    """Record the assignment's cells in the gradebook (autograde needs them).

    This is generate_assignment writing into a throw-away folder, so that
    grading never rewrites the committed release/.
    """
    with tempfile.TemporaryDirectory(prefix="course-register-") as tmp:
        release_dir = api.coursedir.release_directory
        api.coursedir.release_directory = tmp
        try:
            result = api.generate_assignment(assignment, force=True, create=True)
        finally:
            api.coursedir.release_directory = release_dir
    if not result["success"]:
        raise RuntimeError(f"nbgrader could not register {assignment}:\n"
                           f"{result.get('error') or result.get('log')}")


def submitted_students(course_root: Path, coursedir) -> list[str]:
    """Every student with a folder in submitted/ (any assignment)."""
    submitted = Path(coursedir.format_path(coursedir.submitted_directory, ".", "."))
    if not submitted.is_dir():
        return []
    return sorted(p.name for p in submitted.iterdir() if p.is_dir() and not p.name.startswith("."))


def _max_score(api, assignment: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        return float(gb.find_assignment(assignment).max_score)


# jupyter_client's words when a kernel never came up (nothing the notebook did:
# two kernels started at once can race for the same free port).
KERNEL_START_FAILED = ("before replying to kernel_info", "didn't respond in")


def _status_from_log(text: str) -> str:
    if any(words in text for words in KERNEL_START_FAILED):
        return "kernel_start_failed"
    if "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text:
        return "kernel_died"
    if "CellTimeoutError" in text or "TimeoutError" in text:
        return "timeout"
    return "error"


def _kernel_words(log: str) -> str:
    """The kernel's own last error lines (its stderr), on one line."""
    lines = [ln.strip() for ln in (log or "").splitlines() if ln.strip()]
    return " | ".join(lines[-4:])[-600:]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def grade_submission(api, assignment: str, student: str) -> SubmissionResult:
    """Autograde one submission and read back its score, status and messages.

    ``api`` comes from open_grading_api: the submission is read for tampering
    first, runs in the sealed kernel, and each test cell's grade is the
    judge's verdict.
    """
    if not hasattr(api, "sealed"):
        raise ValueError("grade_submission: the API must come from open_grading_api "
                         "(sealed grading), not from a plain NbGraderAPI")
    sealed = api.sealed  # None: --unsealed, stock nbgrader's own grades
    cd = api.coursedir
    notebook = Path(cd.format_path(cd.submitted_directory, student, assignment)) / \
        f"{assignment}.ipynb"
    max_score = _max_score(api, assignment)
    if not notebook.is_file():
        return SubmissionResult(student, assignment, 0.0, max_score, "missing",
                                f"no {notebook.name} in submitted/{student}/{assignment}/")
    size = notebook.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return SubmissionResult(student, assignment, 0.0, max_score, "unreadable",
                                f"the file is {size / 2**20:.0f} MiB; a notebook of this course "
                                f"is under {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    try:
        submitted = nbformat.read(str(notebook), as_version=4)
        nbformat.validate(submitted)
    except Exception as exc:  # noqa: BLE001 - every unreadable file is a status
        return SubmissionResult(student, assignment, 0.0, max_score, "unreadable",
                                f"{type(exc).__name__}: {_last_line(str(exc))}")

    source_nb = nbformat.read(str(Path(cd.format_path(cd.source_directory, ".", assignment))
                                  / f"{assignment}.ipynb"), as_version=4)
    expected = {c.metadata["nbgrader"]["grade_id"]: checks for c in source_nb.cells
                if _is_test_cell(c) and (checks := expected_checks(c.source))}
    if sealed is None:
        expected = {}  # the checks ran in the student's kernel: nbgrader's grades stand
    else:
        sealed.begin(assignment, expected)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=Warning)  # SQLAlchemy noise from nbgrader
            outcome = api.autograde(assignment, student, force=True, create=True)
    finally:
        record = sealed.end() if sealed is not None else Record()
    findings = inspect_submission(submitted, source_nb)
    notes = [str(f) for f in findings if not f.costs_points]
    findings = [f for f in findings if f.costs_points]
    if not outcome["success"]:
        result = _failed(outcome, student, assignment, max_score, source_nb, expected, record)
        result.sealed, result.notes = sealed is not None, notes
        flags = _flags(findings, record)
        if flags:  # a tampered notebook keeps nothing, even what ran before the failure
            result.flags, result.score = flags, 0.0
            result.cell_scores = {g: (0.0, m) for g, (_, m) in result.cell_scores.items()}
            if result.status == "error" or record.flags:  # the judge saw it attack
                result.status, result.reason = "tampered", "; ".join(
                    result.flags + ([result.reason] if result.status != "error" else []))
        return result

    graded_path = Path(cd.format_path(cd.autograded_directory, student, assignment)) / \
        f"{assignment}.ipynb"
    graded = nbformat.read(str(graded_path), as_version=4)
    messages, status, reason = {}, "ok", ""
    for cell in graded.cells:
        meta = cell.metadata.get("nbgrader", {})
        msg = error_message(cell) if cell.cell_type == "code" else ""
        if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
            where = meta.get("grade_id") or f"#{graded.cells.index(cell) + 1}"
            status, reason = "timeout", f"cell {where} ran past the time limit and was stopped"
        if meta.get("grade") and msg:
            messages[meta["grade_id"]] = msg
    zeroed, flags = _judge(record, expected, findings, messages)
    if zeroed:
        _zero_in_gradebook(api, assignment, student, zeroed)
        _mark_cells(graded_path, graded, zeroed, messages)
    warned = _only_warned(graded, zeroed)
    if warned:
        _full_in_gradebook(api, assignment, student, warned)
    order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in graded.cells]
    score, cell_scores, open_points = read_grades(cd, assignment, student, order)
    if score is None:
        return SubmissionResult(student, assignment, 0.0, max_score, "error",
                                "autograde reported success but wrote no grades")
    if flags:
        status, reason = "tampered", "; ".join(flags)
    elif status == "ok" and open_points > 0:
        status = "awaiting_hand_grading"
    return SubmissionResult(student, assignment, score, max_score, status, reason, messages,
                            cell_scores, flags, notes, sealed is not None, open_points)


def _is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade") and not meta.get("solution") and cell.cell_type == "code")


def _judge(record, expected, findings, messages) -> tuple[dict[str, str], list[str]]:
    """The test cells that score 0 ({grade_id: why}) and the flags, from the judge's record.

    A test cell keeps its points only when the kernel ran it without error,
    every hidden check it contains reached a passing verdict in the judge, and
    nothing the notebook did touches it.
    """
    flags = _flags(findings, record)
    cost = set().union(*(f.scope for f in findings)) if findings else set()
    if record.flags:
        cost.add(ALL)  # refused at run time: the whole run is suspect
    zeroed = {}
    for gid, checks in expected.items():
        verdicts = record.verdicts.get(gid, [])
        passed = [(v.check, v.part) for v in verdicts if v.passed]
        failed = [v for v in verdicts if not v.passed]
        if failed:
            zeroed[gid] = failed[0].message
        elif any(passed.count(c) < checks.count(c) for c in set(checks)):
            zeroed[gid] = "its hidden test did not run to a verdict"
            if record.kernel_ok.get(gid):
                flags.append(f"check: test cell {gid} ran without error, but its hidden test "
                             "never reached the grader (something skipped or rewrote it)")
                cost.add(ALL)
        if failed and record.kernel_ok.get(gid):
            flags.append(f"check: test cell {gid} showed no error, but its hidden test failed "
                         "(something in the notebook hid the failure)")
            cost.add(ALL)
    for gid in expected:
        if gid not in zeroed and (ALL in cost or gid in cost):
            why = [str(f) for f in findings if ALL in f.scope or gid in f.scope]
            zeroed[gid] = "not graded: " + ("; ".join(why) or "; ".join(flags))
    for gid, why in zeroed.items():
        messages.setdefault(gid, why)
    return zeroed, list(dict.fromkeys(flags))


def _flags(findings, record) -> list[str]:
    """What the tamper reader found and what the kernel's guard refused, once each."""
    return list(dict.fromkeys([str(f) for f in findings] + [str(f) for f in record.flags]))


def _only_warned(graded, zeroed) -> set[str]:
    """Test cells that nbgrader scored 0 only because something printed to stderr.

    nbgrader fails a code cell with any stderr output (utils.determine_grade), so
    a numpy RuntimeWarning or a logging line inside a right answer would cost the
    cell with no message: a rule no lesson states. Such a cell ran without an
    error, and (sealed) every hidden check in it reached a passing verdict, or it
    would be in ``zeroed``: it keeps its points.
    """
    warned = set()
    for cell in graded.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if not _is_test_cell(cell) or gid in zeroed:
            continue
        outputs = cell.get("outputs", [])
        if any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outputs) \
                and not any(o.get("output_type") == "error" for o in outputs):
            warned.add(gid)
    return warned


def _zero_in_gradebook(api, assignment, student, zeroed) -> None:
    _set_auto_scores(api, assignment, student, zeroed, full=False)


def _full_in_gradebook(api, assignment, student, cells) -> None:
    _set_auto_scores(api, assignment, student, cells, full=True)


def _set_auto_scores(api, assignment, student, cells, full: bool) -> None:
    """Each of ``cells``' autograded score to 0, or to its full points."""
    from nbgrader.api import Gradebook, MissingEntry

    cd = api.coursedir
    with Gradebook(cd.db_url, cd.course_id) as gb:
        for gid in cells:
            try:
                grade = gb.find_grade(gid, assignment, assignment, student)
            except MissingEntry:
                continue
            grade.auto_score = grade.max_score if full else 0.0
        gb.db.commit()


def _mark_cells(graded_path, graded, zeroed, messages) -> None:
    """Say in the autograded notebook (and so in the feedback) why a cell scored 0."""
    for cell in graded.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in zeroed and not error_message(cell):
            cell.outputs.append(nbformat.v4.new_output(
                "error", ename="NotGraded", evalue=zeroed[gid], traceback=[]))
            messages[gid] = f"NotGraded: {zeroed[gid]}"
    nbformat.write(graded, str(graded_path))


def is_open(grade) -> bool:
    """Does this gradebook Grade still wait for a human (no score of any kind yet)?

    nbgrader marks a cell ``needs_manual_grade`` both when nothing scored it
    (a written answer) and when autograde ran again over a hand score (to ask
    for a second look); only the first leaves points open: a hand score, once
    given, stands until the formgrader changes it.
    """
    return bool(grade.needs_manual_grade) and grade.manual_score is None


def read_grades(coursedir, assignment, student, order=()):
    """(score, {grade_id: (score, max)}, open points) of a submission, from the gradebook.

    ``score`` is nbgrader's (a hand score wins over the autograder's);
    ``open_points`` the points of cells no one has scored yet. The cells
    come in ``order`` (the notebook's), then any the order does not name.
    Score None: the gradebook has no such submission.
    """
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return None, {}, 0.0
        grades = {g.name: g for nb in sub.notebooks for g in nb.grades}
        ids = [gid for gid in dict.fromkeys(order) if gid in grades] + \
            sorted(gid for gid in grades if gid not in set(order))
        cell_scores = {gid: (float(grades[gid].score or 0.0), float(grades[gid].max_score))
                       for gid in ids}
        open_points = sum(float(g.max_score) for g in grades.values() if is_open(g))
        return float(sub.score or 0.0), cell_scores, open_points


def _failed(outcome, student, assignment, max_score, source_nb, expected, record):
    """nbgrader could not finish: say why, and keep what the judge graded before."""
    text = (outcome.get("error") or "") + (outcome.get("log") or "")
    status = _status_from_log(text)
    reason = {"kernel_died": "the kernel died while running the notebook (os._exit, a "
                             "crash, or out of memory)",
              "timeout": "the notebook ran past the time limit",
              "kernel_start_failed": "the grading kernel did not start: "
                                     + (_kernel_words(record.kernel_log)
                                        or _last_line(text))}.get(status, _last_line(text))
    if status == "error" and GRADEBOOK_LOCKED in text:
        reason = f"{GRADEBOOK_LOCKED}: another grading process was writing the gradebook"
    if record.out_of_time:
        status, reason = "timeout", "the notebook ran past its total time limit and was stopped"
    result = SubmissionResult(student, assignment, 0.0, max_score, status, reason)
    if status not in ("kernel_died", "timeout"):
        return result
    # Graded as far as it got: a test cell that ran, without error, to a passing
    # verdict before the kernel went keeps its points.
    points = {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
              for c in source_nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    for gid, pts in points.items():
        checks = expected.get(gid)
        ok = bool(checks) and record.kernel_ok.get(gid, False) and all(
            v.passed for v in record.verdicts.get(gid, [])) and \
            len(record.verdicts.get(gid, [])) >= len(checks)
        result.cell_scores[gid] = (pts if ok else 0.0, pts)
        verdicts = [v for v in record.verdicts.get(gid, []) if not v.passed]
        if verdicts:
            result.messages[gid] = verdicts[0].message
    result.score = sum(score for score, _ in result.cell_scores.values())
    ran = sum(1 for gid in expected if gid in record.kernel_ok)
    result.reason += f" (graded as far as it got: {ran} of {len(expected)} test cells ran)"
    return result


def _worth_retrying(result: SubmissionResult, attempt: int) -> bool:
    if attempt == ATTEMPTS:
        return False
    if result.status == "error" and GRADEBOOK_LOCKED in result.reason:
        return True
    return result.status == "kernel_start_failed" or (result.status == "kernel_died"
                                                      and attempt == 1)


def add_students(coursedir, students: list[str]) -> None:
    """Every student in the gradebook before the grading processes start.

    nbgrader adds a new student as it grades them; two processes starting the
    same new student's two assignments at the same moment would both add
    them, and the second would fail (SQLite: locked; PostgreSQL: unique key).
    """
    from nbgrader.api import Gradebook

    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        for student in students:
            gb.update_or_create_student(student)


def class_students(course_root: Path, api) -> list[str]:
    """Everyone with a submission, and everyone the gradebook knows.

    A student on the class list who handed nothing in still gets a row
    (status "missing").
    """
    from nbgrader.api import Gradebook

    cd = api.coursedir
    with Gradebook(cd.db_url, cd.course_id) as gb:
        known = {s.id for s in gb.students}
    return sorted(set(submitted_students(course_root, cd)) | known)


GRADEBOOK_LOCKED = "database is locked"
ATTEMPTS = 3

# One API per worker process, opened on its first task.
_WORKER_API: dict[str, object] = {}


UNSEALED_WARNING = ("WARNING: grading UNSEALED (--unsealed): stock nbgrader runs each student's "
                    "code with the answers and the gradebook in reach, so a notebook can "
                    "change its own grade; use it only where the sandbox cannot run")


def open_grading_api(course_root: Path, guard_roots=(), unsealed: bool = False, **overrides):
    """An NbGraderAPI that grades sealed: the judge, its sandboxed kernel, the course's limits.

    ``guard_roots``: more folders the kernel must not see (besides the course).
    The API's ``sealed`` attribute is the course_lib.judge.sealed.Sealed in use,
    or None with ``unsealed`` (stock nbgrader: see UNSEALED_WARNING); without
    it, a machine where the sandbox cannot run raises SandboxUnavailable.
    """
    from ..judge.sealed import Sealed, Settings

    if unsealed:
        from ..judge.polled_client import PolledKernelManager

        os.environ["COURSE_UNSEALED"] = "1"  # nbgrader_config.py lets stock autograde run
        # stock nbgrader, but with no widget cell waiting out its time limit
        api, _ = open_api(Path(course_root), Execute__kernel_manager_class=PolledKernelManager,
                          **overrides)
        api.sealed = None
        return api
    settings = Settings.from_config(load_config(Path(course_root)))
    roots = [overrides.get("CourseDirectory__root", course_root), *guard_roots]
    sealed = Sealed(roots, settings)
    api, _ = open_api(Path(course_root), **overrides, **sealed.config_overrides())
    api.sealed = sealed
    return api


def grade_reliably(api, assignment: str, student: str) -> SubmissionResult:
    """grade_submission, again when a failure was the machine's, not the notebook's.

    - two workers writing the SQLite gradebook at once: the loser waits up to
      SQLite's timeout, then fails with "database is locked" (inside nbgrader,
      or in our own read of the grades);
    - a kernel that never started (two kernels racing for one free port);
    - a kernel that died: once more, so that a death the notebook did not
      cause cannot cost a student their grade (a real crash dies again).
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            result = grade_submission(api, assignment, student)
        except Exception as exc:  # noqa: BLE001 - only the lock is retried
            if GRADEBOOK_LOCKED not in str(exc) or attempt == ATTEMPTS:
                raise
            continue
        if not _worth_retrying(result, attempt):
            break
    if result.status == "kernel_start_failed":
        result.status = "error"
    return result


def _grade_task(course_root: str, assignment: str, student: str,
                feedback: bool) -> SubmissionResult:
    """Grade (and write feedback for) one submission; runs in a worker process."""
    api = _WORKER_API.get(course_root)
    if api is None:
        # --unsealed reaches worker processes through the environment they inherit
        api = open_grading_api(Path(course_root),
                               unsealed=os.environ.get("COURSE_UNSEALED") == "1")
        _WORKER_API[course_root] = api
    result = grade_reliably(api, assignment, student)
    if feedback and _has_feedback(api, result):
        _feedback_one(api, result)
    return result


def grade_class(course_root: Path | None = None, assignments=None, students=None,
                progress=None, jobs: int | None = None, feedback: bool = False,
                scheduler: str | None = None, unsealed: bool = False) -> list[SubmissionResult]:
    """Autograde every submission of every given assignment.

    Args:
        course_root: the course folder.
        assignments: ids (default: all in source/).
        students: ids (default: see class_students).
        progress: callable(done, total, label) called after each submission.
        jobs: submissions graded at once, each in its own process (default:
            the number of cores; 1 grades in this process).
        feedback: also write each autograded submission's feedback.
        scheduler: a dask scheduler's address (``tcp://host:8786``): grade on
            its workers instead, one task per submission (``jobs`` is then
            unused; see distributed.py).
        unsealed: grade with stock nbgrader, the students' code unconfined
            (UNSEALED_WARNING); for machines where the sandbox cannot run.
    Returns:
        one SubmissionResult per (student, assignment), sorted by both; the
        same whatever ``jobs`` or ``scheduler`` is.
    """
    course_root = Path(course_root).resolve() if course_root else find_course_root()
    if unsealed and scheduler:
        raise ValueError("--unsealed grades on this machine only, not with --scheduler")
    if unsealed:
        os.environ["COURSE_UNSEALED"] = "1"
    else:
        from ..judge.sandbox import check_available

        os.environ.pop("COURSE_UNSEALED", None)
        check_available()  # before any worker starts: say once what is missing
    assignments = check_assignments(course_root, assignments)
    api, _ = open_api(course_root)
    students = sorted(students) if students else class_students(course_root, api)
    for assignment in assignments:
        register_assignment(api, assignment)
    tasks = [(a, s) for a in assignments for s in students]
    add_students(api.coursedir, students)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks) or 1))
    results = []

    def done(result):
        results.append(result)
        if progress:
            progress(len(results), len(tasks), f"{result.student}/{result.assignment}")

    if scheduler:
        from .distributed import grade_on_cluster

        results.extend(grade_on_cluster(scheduler, course_root, tasks, feedback, progress))
    elif jobs == 1:
        if str(course_root) not in _WORKER_API:
            _WORKER_API[str(course_root)] = open_grading_api(course_root, unsealed=unsealed)
        for a, s in tasks:
            done(_grade_task(str(course_root), a, s, feedback))
    else:
        import concurrent.futures as cf
        import multiprocessing

        # spawn, not fork: a forked child would share this process's open
        # gradebook connections and kernel-manager state.
        ctx = multiprocessing.get_context("spawn")
        remaining = list(tasks)
        # A worker that dies (killed, out of memory) breaks the whole pool: the
        # submissions it had not finished are graded again by a fresh pool.
        # Grading is idempotent (autograde --force), so nothing is doubled.
        for attempt in range(1, ATTEMPTS + 1):
            finished = set()
            try:
                with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                    futures = {pool.submit(_grade_task, str(course_root), a, s, feedback): (a, s)
                               for a, s in remaining}
                    for future in cf.as_completed(futures):
                        result = future.result()
                        finished.add(futures[future])
                        done(result)
                break
            except cf.process.BrokenProcessPool:
                remaining = [t for t in remaining if t not in finished]
                if attempt == ATTEMPTS:
                    for a, s in remaining:
                        done(SubmissionResult(s, a, 0.0, 0.0, "error", "the grading worker "
                                              f"died {ATTEMPTS} times while grading it"))
    sweep_stale_folders()  # what a worker killed mid-run left in /tmp
    return sorted(results, key=lambda r: (r.student, r.assignment))


GRADES_COLUMNS = ("student", "assignment", "score", "max_score", "status", "open_points",
                  "reason")


def write_grades_csv(results: list[SubmissionResult], path: Path) -> Path:
    """grades.csv: one row per student and assignment, with the status of each."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(GRADES_COLUMNS)
        for r in sorted(results, key=lambda r: (r.student, r.assignment)):
            writer.writerow([r.student, r.assignment, f"{r.score:g}", f"{r.max_score:g}",
                             r.status, f"{r.open_points:g}", r.reason])
    tmp.replace(path)  # never leave a half-written grades.csv behind
    return path


def merge_results(stored, fresh) -> list[SubmissionResult]:
    """The stored results with ``fresh`` ones in place of the same (student, assignment).

    Regrading one student (``course grade ID --student NAME``) grades only
    their submissions; everyone else's stored result, grades.csv row and
    feedback must stay as they were, so the class's results are the stored
    ones with only the regraded pairs replaced (or added).
    """
    merged = {(r.student, r.assignment): r for r in stored}
    merged.update({(r.student, r.assignment): r for r in fresh})
    return sorted(merged.values(), key=lambda r: (r.student, r.assignment))


def _feedback_one(api, r: SubmissionResult) -> Path:
    cd = api.coursedir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        outcome = api.generate_feedback(r.assignment, r.student, force=True)
    if not outcome["success"]:
        raise RuntimeError(f"feedback for {r.student}/{r.assignment} failed:\n"
                           f"{outcome.get('error') or outcome.get('log')}")
    return Path(cd.format_path(cd.feedback_directory, r.student, r.assignment)) / \
        f"{r.assignment}.html"


def generate_feedback(api, results: list[SubmissionResult]) -> list[Path]:
    """nbgrader's generate_feedback for every submission that was autograded.

    The course's nbgrader_config.py hides the hidden tests (feedback.py).
    """
    return [_feedback_one(api, r) for r in results if _has_feedback(api, r)]


def _has_feedback(api, r: SubmissionResult) -> bool:
    """Was it autograded, so that nbgrader can write its feedback? (A notebook stopped
    at its total time, or a kernel that died, has statuses but may have no graded copy.)"""
    if not (r.status in NORMAL or r.status == "timeout"):
        return False
    cd = api.coursedir
    return (Path(cd.format_path(cd.autograded_directory, r.student, r.assignment))
            / f"{r.assignment}.ipynb").is_file()


def text_progress(done: int, total: int, label: str, stream=sys.stderr) -> None:
    """A one-line progress bar: [#####.....] 12/60 alice/02_sigmoid."""
    width = 30
    filled = int(width * done / max(total, 1))
    stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<40.40}")
    if done == total:
        stream.write("\n")
    stream.flush()
