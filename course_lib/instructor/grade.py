"""Grade a whole class: nbgrader's autograde on every submission, with a status for each.

Stock nbgrader either grades a submission or logs an error and moves on; the
gradebook then holds nothing for it, and an export shows a bare 0. Here every
(student, assignment) pair ends with a ``SubmissionResult`` whose ``status``
says how far grading got: a ``status.Status`` (ok, awaiting_hand_grading,
missing, unreadable, timeout, kernel_died, tampered, error), each member with
the line that says what it means. A tampered notebook loses what it touched;
code that only looks suspicious (exec, inspect, a patched module) is a note,
not a cost: course_lib.judge.tamper says why.

One submission goes through ``STEPS``, chained as nbgrader chains its
preprocessors: read (the notebook, or missing / unreadable), inspect (the
hidden checks each test cell calls, tampering), run sealed (autograde with
the judge), settle verdicts (``status.cell_verdict`` for every test cell),
write (the gradebook, the autograded notebook, the result).

Grading is sealed (course_lib.judge): the kernel runs the student's code with
no answers in reach, and each hidden test's verdict is reached in this
process, so a test cell's grade is the judge's verdict, not what the kernel
printed.

A submission that could not be graded normally is never a silent 0: its status
and reason travel to grades.csv and the report.

What surrounds the student's code is kept short, each shortcut leaving the
gradebook as stock nbgrader's steps would: one gradebook engine per grading
process (shared_gradebook), registration only when the gradebook is not already
current (ensure_registered), nbgrader's metadata check once and the kernel stopped
as soon as the notebook has run (sealed_autograde), and the worker processes
started, each with a kernel ahead, while the assignments are registered.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import nbformat

from ..judge.server import Record, expected_checks, sweep_stale_folders
from ..judge.tamper import ALL, inspect_submission
from .course import check_assignments, find_course_root, load_config, open_api
from .status import FAILED, NO_VERDICT, NORMAL, Status, cell_verdict
from .workers import start_workers_early, worker_context

MAX_NOTEBOOK_BYTES = 20 * 2**20  # a lesson notebook with outputs is well under 2 MiB


@dataclass
class SubmissionResult:
    """One student's grade on one assignment."""

    student: str
    assignment: str
    score: float
    max_score: float
    status: Status  # a str: grades.csv and results.json hold its value
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


# ---------------------------------------------------------------------------
# One gradebook engine per grading scope
# ---------------------------------------------------------------------------

class _GradebookScope(threading.local):
    """This thread's open scope (shared_gradebook): the engine of each db_url opened in
    it, and the (db_url, course id) pairs whose course row is known to exist."""

    def __init__(self):
        self.depth = 0
        self.engines: dict[str, object] = {}
        self.courses: set[tuple[str, str]] = set()


_SCOPE = _GradebookScope()


@contextmanager
def shared_gradebook():
    """Within: every nbgrader ``Gradebook`` this thread opens on a db_url shares one engine.

    Grading one submission opens the gradebook about a dozen times (autograde's
    init_assignment five times, OverwriteKernelspec, OverwriteCells, SaveAutoGrades,
    AssignLatePenalties, then ours: the maximum score, the grades read back), and
    each stock open creates an SQLAlchemy engine (its statement cache empty),
    inspects the table names, runs ``create_all`` and checks the course row: about
    5 ms each. Here the first open of a db_url in the scope does all of that; every
    later one is a new session on that engine's pool, its tables and course row
    already made sure of (a course id not seen yet in the scope is still checked, as
    nbgrader does). Each Gradebook keeps its own session, queries and commits, so
    what is read and written is unchanged: only connections and compiled statements
    are reused. Closing a shared Gradebook ends its session; the scope's end
    disposes the engines. Nested scopes are one; other threads are untouched.
    """
    _open_gradebook_scope()
    try:
        yield
    finally:
        _SCOPE.depth -= 1
        if _SCOPE.depth == 0:
            engines, _SCOPE.engines, _SCOPE.courses = _SCOPE.engines, {}, set()
            for engine in engines.values():
                engine.dispose()


def _open_gradebook_scope() -> None:
    """Enter shared_gradebook's scope (a grading worker stays in it until it ends)."""
    _share_gradebook_engines()
    _SCOPE.depth += 1


def _share_gradebook_engines() -> None:
    """Teach nbgrader's Gradebook about shared_gradebook's scope (once per process).

    Outside a scope, a Gradebook opens and closes exactly as stock nbgrader's. Its
    class is adapted rather than configured because nbgrader builds it by name in
    each converter and preprocessor; nothing else of nbgrader changes.
    """
    from nbgrader.api import Gradebook
    from sqlalchemy.orm import scoped_session, sessionmaker

    if getattr(Gradebook, "_course_shares_engines", False):
        return
    stock_init, stock_close = Gradebook.__init__, Gradebook.close

    def __init__(self, db_url, course_id="default_course", authenticator=None):
        scope = _SCOPE
        engine = scope.engines.get(db_url) if scope.depth else None
        if engine is None:
            stock_init(self, db_url, course_id, authenticator)
            if scope.depth:
                scope.engines[db_url] = self.engine
                scope.courses.add((db_url, course_id))
                self._course_shared = True
            return
        # stock __init__ without what the scope's first open already did
        self.engine = engine
        self.db = scoped_session(sessionmaker(autoflush=True, bind=engine, future=True))
        self._course_shared = True
        if (db_url, course_id) not in scope.courses:
            self.check_course(course_id=course_id)
            scope.courses.add((db_url, course_id))
        self.course_id = course_id
        self.authenticator = authenticator

    def close(self):
        if getattr(self, "_course_shared", False) and _SCOPE.depth \
                and self.engine in _SCOPE.engines.values():
            self.db.remove()  # the session ends; the scope keeps the engine
        else:
            stock_close(self)

    Gradebook.__init__, Gradebook.close = __init__, close
    Gradebook._course_shares_engines = True


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


REGISTERED = "registered.json"  # in course check's cache folder: see ensure_registered


def ensure_registered(api, course_root: Path, assignment: str) -> bool:
    """register_assignment, unless the gradebook already holds what it would write;
    True when it registered.

    Registering (nbgrader's generate_assignment) takes a few tenths of a second per
    assignment, on every `course grade`, for a gradebook that release already filled.
    What it writes depends only on the source folder, nbgrader_config.py and
    nbgrader's version (check.preparation_key, the digest `course check` keys its
    prepared courses by): after each registration, the gradebook's record of the
    assignment (``registration_digest``) is remembered under that key, and a later
    grading whose gradebook holds exactly that record, for a source with the same
    key, skips registering again: it would write the same rows. An edited lesson or
    configuration, or a gradebook changed in any way, registers as before.
    """
    import json

    from .check import cache_root, preparation_key

    key = f"{assignment}-{preparation_key(course_root, assignment)}"
    marks_file = cache_root() / REGISTERED
    known = _read_marks(marks_file).get(key)
    if known is not None and known == registration_digest(api.coursedir, assignment):
        return False
    register_assignment(api, assignment)
    marks = _read_marks(marks_file)
    marks.pop(key, None)
    marks[key] = registration_digest(api.coursedir, assignment)
    marks = dict(list(marks.items())[-200:])  # the most recent lessons' marks
    try:
        marks_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = marks_file.with_name(f".{REGISTERED}.{os.getpid()}")
        tmp.write_text(json.dumps(marks, indent=0))
        tmp.replace(marks_file)  # whole or not at all: another grading may write too
    except OSError:
        pass  # no mark: the next grading registers again
    return True


def _read_marks(path: Path) -> dict:
    import json

    try:
        marks = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return marks if isinstance(marks, dict) else {}


def registration_digest(coursedir, assignment: str) -> str | None:
    """A digest of every row nbgrader's registration wrote for ``assignment``: the
    assignment, its notebooks (their kernelspec), and their grade, solution, task and
    source cells with every column (points, type, locked, source, checksum) but the
    row ids; None when the gradebook does not know the assignment."""
    import hashlib

    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy import inspect

    def row(kind, obj):
        columns = sorted(a.key for a in inspect(obj).mapper.column_attrs
                         if a.key not in ("id", "notebook_id", "assignment_id"))
        return repr((kind, [(c, getattr(obj, c)) for c in columns]))

    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        try:
            found = gb.find_assignment(assignment)
        except MissingEntry:
            return None
        rows = [row("assignment", found)]
        for nb in sorted(found.notebooks, key=lambda n: n.name):
            rows.append(row("notebook", nb))
            for kind in ("grade_cells", "solution_cells", "task_cells", "source_cells"):
                rows += sorted(row(kind, cell) for cell in getattr(nb, kind))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


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


def _status_from_log(text: str) -> Status:
    if any(words in text for words in KERNEL_START_FAILED):
        return Status.KERNEL_START_FAILED
    if "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text:
        return Status.KERNEL_DIED
    if "CellTimeoutError" in text or "TimeoutError" in text:
        return Status.TIMEOUT
    return Status.ERROR


def _kernel_limits(sealed) -> str:
    """What the course's settings allow a grading kernel, for a kernel that did not start
    (whose own last words may be a library's, e.g. libzmq's "Resource temporarily
    unavailable" when a thread finds no address space left)."""
    if sealed is None:  # graded unsealed: no sandbox
        return ""
    limits = sealed.settings
    return (f" (its sandbox allows {limits.kernel_memory_mb} MiB of address space per "
            f"process and {limits.kernel_processes} processes: Judge.kernel_memory_mb and "
            "Judge.kernel_processes in nbgrader_config.py)")


def _kernel_words(log: str) -> str:
    """The kernel's own last error lines (its stderr), on one line."""
    lines = [ln.strip() for ln in (log or "").splitlines() if ln.strip()]
    return " | ".join(lines[-4:])[-600:]


# an exception as a traceback's last line shows it: "jsonschema.exceptions.ValidationError: ..."
_EXCEPTION_LINE = re.compile(r"^\s*(?:\w+\.)*(\w*(?:Error|Exception)): (.+)$")


def _error_line(text: str) -> str:
    """The last exception in nbgrader's log, without its module (``ValidationError: Notebook
    failed to validate; ...``), else its last line: nbgrader's own last words are "Please
    see the above traceback", which tell an instructor nothing."""
    for line in reversed((text or "").splitlines()):
        if found := _EXCEPTION_LINE.match(line):
            return f"{found.group(1)}: {found.group(2).strip()}"[:300]
    return _last_line(text)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


# ---------------------------------------------------------------------------
# One submission: a short pipeline of named steps
# ---------------------------------------------------------------------------

@dataclass
class Submission:
    """One submission on its way through ``STEPS``: what each step found, for the next.

    The steps are chained as nbgrader chains its preprocessors: each takes
    this object, adds what it found, and either returns None (go on) or a
    ``SubmissionResult`` (grading ends there: a missing file, a notebook that
    did not run to its end, the grades written).
    """

    api: object
    assignment: str
    student: str
    max_score: float = 0.0
    submitted: object = None  # read: the student's notebook
    source: object = None  # read: the assignment's source notebook
    expected: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # inspect
    findings: list = field(default_factory=list)  # inspect: tampering that costs points
    notes: list[str] = field(default_factory=list)  # inspect: suspicious code, no cost
    outcome: dict = field(default_factory=dict)  # run: nbgrader's autograde answer
    record: Record = field(default_factory=Record)  # run: what the judge saw
    graded: object = None  # settle: the autograded notebook
    status: Status = Status.OK  # settle
    reason: str = ""  # settle
    messages: dict[str, str] = field(default_factory=dict)  # settle: grade_id -> message
    zeroed: dict[str, str] = field(default_factory=dict)  # settle: grade_id -> why it scores 0
    warned: set[str] = field(default_factory=set)  # settle: cells nbgrader failed for stderr
    flags: list[str] = field(default_factory=list)  # settle: tampering that cost points

    @property
    def sealed(self):
        """The judge in use (course_lib.judge.sealed.Sealed), or None: --unsealed."""
        return self.api.sealed

    def path(self, directory: str) -> Path:
        """The submission's notebook in one of nbgrader's folders (submitted, autograded)."""
        cd = self.api.coursedir
        return Path(cd.format_path(directory, self.student, self.assignment)) / \
            f"{self.assignment}.ipynb"

    def end(self, status: Status, reason: str) -> SubmissionResult:
        """A result with no points: grading ends here, and says why."""
        return SubmissionResult(self.student, self.assignment, 0.0, self.max_score, status,
                                reason)


def not_regular_files(top: Path) -> list[str]:
    """What in a submission folder (``submitted/<student>/<assignment>``) is neither a
    folder nor a regular file, each as 'a link x.txt' or 'a special file y' (a FIFO, a
    socket, a device); the folder and its student folder included. Nothing is followed."""
    import stat

    found = [f"a link {folder.name}/" for folder in (top.parent, top) if folder.is_symlink()]
    if found or not top.is_dir():
        return found
    for folder, dirs, files in os.walk(top):  # never into a linked folder
        for name in dirs + files:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                found.append(f"a link {path.relative_to(top)}")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found.append(f"a special file {path.relative_to(top)}")
    return sorted(found)


def read_notebooks(s: Submission) -> SubmissionResult | None:
    """Read: the student's notebook and the assignment's source notebook.

    A notebook that is missing, too large, or not a valid notebook ends grading
    here, with status missing or unreadable and the reason; so does a submission
    that holds a link or a special file (``not_regular_files``).
    """
    api = s.api
    cd = api.coursedir
    s.max_score = _max_score(api, s.assignment)
    notebook = s.path(cd.submitted_directory)
    strange = not_regular_files(notebook.parent)
    if strange:
        # nbgrader reads the notebook and copies every other file to autograded/ as the
        # grader, outside the sandbox, following links: a link would hand the kernel
        # another student's notebook, the source or the gradebook (and a FIFO would hang)
        return s.end(Status.UNREADABLE,
                     f"the submission holds {', '.join(strange[:3])}"
                     f"{' and more' if len(strange) > 3 else ''}: grading reads regular "
                     "files only; hand in the files themselves")
    if not notebook.is_file():
        return s.end(Status.MISSING,
                     f"no {notebook.name} in submitted/{s.student}/{s.assignment}/")
    size = notebook.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return s.end(Status.UNREADABLE,
                     f"the file is {size / 2**20:.0f} MiB; a notebook of this course "
                     f"is under {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    try:
        s.submitted = nbformat.read(str(notebook), as_version=4)
        nbformat.validate(s.submitted)
    except Exception as exc:  # noqa: BLE001 - every unreadable file is a status
        return s.end(Status.UNREADABLE, f"{type(exc).__name__}: {_last_line(str(exc))}")
    s.source = nbformat.read(str(Path(cd.format_path(cd.source_directory, ".", s.assignment))
                                 / f"{s.assignment}.ipynb"), as_version=4)
    return None


def inspect_notebook(s: Submission) -> None:
    """Inspect: which hidden checks each test cell runs (by its grade id, from the
    manifest: judge.server.expected_checks), and what the notebook touched.

    ``expected`` is what the judge must see (empty when grading unsealed: the
    checks then run in the student's kernel and nbgrader's grades stand). The
    tamper reader's findings either cost points (a test cell deleted or its
    grading changed) or are notes that cost nothing (judge.tamper says why).
    """
    # expected_checks is [] for any cell but an autograded test cell
    expected = {c.metadata["nbgrader"]["grade_id"]: checks for c in s.source.cells
                if (checks := expected_checks(c))}
    s.expected = expected if s.sealed is not None else {}
    findings = inspect_submission(s.submitted, s.source)
    s.notes = [str(f) for f in findings if not f.costs_points]
    s.findings = [f for f in findings if f.costs_points]


def run_sealed(s: Submission) -> None:
    """Run sealed: nbgrader's autograde, the kernel sandboxed and every hidden check
    answered by the judge in this process, whose record keeps each cell's verdicts."""
    sealed = s.sealed
    if sealed is not None:
        sealed.begin(s.assignment, s.expected)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=Warning)  # SQLAlchemy noise from nbgrader
            s.outcome = s.api.autograde(s.assignment, s.student, force=True, create=True)
    finally:
        s.record = sealed.end() if sealed is not None else Record()


def settle_verdicts(s: Submission) -> SubmissionResult | None:
    """Settle verdicts: which test cells keep their points, and the submission's status.

    Every test cell is decided by ``status.cell_verdict`` (its hidden checks'
    verdicts, and whether the kernel ran it without error); what tampering
    touched scores 0 too. A notebook that did not run to its end (nbgrader
    failed: the kernel died, the total time ran out) has no grades in the
    gradebook: grading ends here, with the points of the test cells that
    passed before it stopped.
    """
    if not s.outcome.get("success"):
        return _unfinished(s)
    s.graded = nbformat.read(str(s.path(s.api.coursedir.autograded_directory)), as_version=4)
    for index, cell in enumerate(s.graded.cells):
        meta = cell.metadata.get("nbgrader", {})
        msg = error_message(cell) if cell.cell_type == "code" else ""
        if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
            where = meta.get("grade_id") or f"#{index + 1}"
            s.status = Status.TIMEOUT
            s.reason = f"cell {where} ran past the time limit and was stopped"
        if meta.get("grade") and msg:
            s.messages[meta["grade_id"]] = msg
    ran_clean: dict[str, bool] = {}  # grade_id -> no copy of the cell shows an error
    for cell in s.graded.cells:
        if gid := cell.metadata.get("nbgrader", {}).get("grade_id"):
            ran_clean[gid] = ran_clean.get(gid, True) and not _has_error(cell)
    s.zeroed, s.flags = _judge(s.record, s.expected, s.findings, s.messages, ran_clean)
    s.warned = _only_warned(s.graded, s.zeroed)
    return None


def _unfinished(s: Submission) -> SubmissionResult:
    """nbgrader could not finish: say why, and keep what the judge graded before.

    A kernel that died or a notebook stopped at its total time is graded as far
    as it got: each test cell that ran before scores as cell_verdict decides
    (the kernel's own report on the cell stands in for nbgrader's). A tampered
    notebook keeps nothing, even what ran before the failure.
    """
    record = s.record
    text = (s.outcome.get("error") or "") + (s.outcome.get("log") or "")
    status = _status_from_log(text)
    reason = {Status.KERNEL_DIED: "the kernel died while running the notebook (os._exit, a "
                                  "crash, or out of memory)",
              Status.TIMEOUT: "the notebook ran past the time limit"}.get(status)
    if status == Status.KERNEL_START_FAILED:
        reason = ("the grading kernel did not start: "
                  + (_kernel_words(record.kernel_log) or _last_line(text))
                  + _kernel_limits(s.sealed))
    reason = reason or _error_line(text)
    if status == Status.ERROR and GRADEBOOK_LOCKED in text:
        reason = f"{GRADEBOOK_LOCKED}: another grading process was writing the gradebook"
    if record.out_of_time:
        status = Status.TIMEOUT
        reason = "the notebook ran past its total time limit and was stopped"
    result = s.end(status, reason)
    result.sealed, result.notes = s.sealed is not None, s.notes
    if status in (Status.KERNEL_DIED, Status.TIMEOUT):
        for cell in s.source.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("grade"):
                continue
            gid, points = meta["grade_id"], float(meta.get("points", 0))
            verdict = cell_verdict(s.expected.get(gid, ()), record.verdicts.get(gid, []),
                                   record.kernel_ok.get(gid, False))
            result.cell_scores[gid] = (points if verdict.passed else 0.0, points)
            if verdict.kind == FAILED:
                result.messages[gid] = verdict.why
        result.score = sum(score for score, _ in result.cell_scores.values())
        ran = sum(1 for gid in s.expected if gid in record.kernel_ok)
        result.reason += f" (graded as far as it got: {ran} of {len(s.expected)} test cells ran)"
    flags = _flags(s.findings, record)
    if flags:
        result.flags, result.score = flags, 0.0
        result.cell_scores = {g: (0.0, m) for g, (_, m) in result.cell_scores.items()}
        if result.status == Status.ERROR or record.flags:  # the judge saw it attack
            result.status, result.reason = Status.TAMPERED, "; ".join(
                result.flags + ([result.reason] if result.status != Status.ERROR else []))
    return result


def write_grades(s: Submission) -> SubmissionResult:
    """Write: the settled scores into the gradebook (a cell the judge failed scores 0,
    one nbgrader failed only for a warning on stderr keeps its points), why a cell
    scored 0 into the autograded notebook (and so into the feedback), then the
    submission's score read back from the gradebook."""
    api, cd = s.api, s.api.coursedir
    if s.zeroed:
        _set_auto_scores(api, s.assignment, s.student, s.zeroed, full=False)
        _mark_cells(s.path(cd.autograded_directory), s.graded, s.zeroed, s.messages)
    if s.warned:
        _set_auto_scores(api, s.assignment, s.student, s.warned, full=True)
    order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in s.graded.cells]
    score, cell_scores, open_points = read_grades(cd, s.assignment, s.student, order)
    if score is None:
        return s.end(Status.ERROR, "autograde reported success but wrote no grades")
    status, reason = s.status, s.reason
    if s.flags:
        status, reason = Status.TAMPERED, "; ".join(s.flags)
    elif status == Status.OK and open_points > 0:
        status = Status.AWAITING_HAND_GRADING
    return SubmissionResult(s.student, s.assignment, score, s.max_score, status, reason,
                            s.messages, cell_scores, s.flags, s.notes, s.sealed is not None,
                            open_points)


STEPS = (read_notebooks, inspect_notebook, run_sealed, settle_verdicts, write_grades)


def grade_submission(api, assignment: str, student: str) -> SubmissionResult:
    """Autograde one submission and read back its score, status and messages.

    ``api`` comes from open_grading_api. The submission goes through ``STEPS``
    (read, inspect, run sealed, settle verdicts, write) until one of them
    returns its result.
    """
    if not hasattr(api, "sealed"):
        raise ValueError("grade_submission: the API must come from open_grading_api "
                         "(sealed grading), not from a plain NbGraderAPI")
    submission = Submission(api, assignment, student)
    for step in STEPS:
        result = step(submission)
        if result is not None:
            return result
    raise AssertionError("the last step of grading returns the result")


def _is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade") and not meta.get("solution") and cell.cell_type == "code")


def _has_error(cell) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def _judge(record, expected, findings, messages, ran_clean) -> tuple[dict[str, str], list[str]]:
    """The test cells that score 0 ({grade_id: why}) and the flags, from the judge's record.

    Each test cell with hidden checks keeps its points only when cell_verdict
    passes it and nothing the notebook did touches it. A cell whose kernel
    showed no error although its hidden check failed, or never reached the
    judge, means something in the notebook hid or skipped it: a flag, and the
    whole run is suspect.
    """
    flags = _flags(findings, record)
    cost = set().union(*(f.scope for f in findings)) if findings else set()
    if record.flags:
        cost.add(ALL)  # refused at run time: the whole run is suspect
    zeroed = {}
    for gid, checks in expected.items():
        verdict = cell_verdict(checks, record.verdicts.get(gid, []), ran_clean.get(gid, False))
        if not verdict.passed:
            zeroed[gid] = verdict.why
        if record.kernel_ok.get(gid) and verdict.kind == NO_VERDICT:
            flags.append(f"check: test cell {gid} ran without error, but its hidden test "
                         "never reached the grader (something skipped or rewrote it)")
            cost.add(ALL)
        if record.kernel_ok.get(gid) and verdict.kind == FAILED:
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


def _worth_retrying(result: SubmissionResult, attempt: int) -> bool:
    if attempt == ATTEMPTS:
        return False
    if result.status == Status.ERROR and GRADEBOOK_LOCKED in result.reason:
        return True
    return result.status == Status.KERNEL_START_FAILED or (
        result.status == Status.KERNEL_DIED and attempt == 1)


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
    (status missing).
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


def grading_settings(config) -> dict:
    """What the sealed kernel needs from the course's configuration (load_config of
    nbgrader_config.py): the section ``Judge`` (judge.sealed.Settings) and
    ``Execute.extra_arguments``. Plain data, so that a grading worker gets it from its
    parent and `course check` keeps it in its cache: reading the file imports nbgrader
    (its settings name nbgrader's classes), a third of a second that can then run while
    the kernel starts."""
    from dataclasses import asdict

    from ..judge.sealed import Settings

    return {"judge": asdict(Settings.from_config(config)),
            "extra_arguments": list(config.Execute.get("extra_arguments", []))}


def open_grading_api(course_root: Path, guard_roots=(), unsealed: bool = False,
                     first: str | None = None, then: str | bool = True,
                     settings: dict | None = None, **overrides):
    """An NbGraderAPI that grades sealed: the judge, its sandboxed kernel, the course's limits.

    ``guard_roots``: more folders the kernel must not see (besides the course).
    ``first``: an assignment whose next notebook's kernel starts as soon as the
    sandbox exists, before nbgrader is imported (start_kernel_ahead; ``then``: what
    follows that notebook). ``settings``: the course's grading_settings, when the
    caller has them already. The API's ``sealed`` attribute is the
    course_lib.judge.sealed.Sealed in use, or None with ``unsealed`` (stock nbgrader:
    see UNSEALED_WARNING); without it, a machine where the sandbox cannot run raises
    SandboxUnavailable.
    """
    from ..judge import sandbox
    from ..judge.sealed import Sealed, Settings

    if unsealed:
        from ..judge.polled_client import PolledKernelManager

        os.environ["COURSE_UNSEALED"] = "1"  # nbgrader_config.py lets stock autograde run
        # stock nbgrader, but with no widget cell waiting out its time limit
        api, _ = open_api(Path(course_root), Execute__kernel_manager_class=PolledKernelManager,
                          **overrides)
        api.sealed = None
        return api
    settings = settings or grading_settings(load_config(Path(course_root)))
    check_nbgrader_schema_once()
    roots = [overrides.get("CourseDirectory__root", course_root), *guard_roots]
    sealed = Sealed(roots, Settings(**settings["judge"]), settings["extra_arguments"])
    if then is False and not sandbox.INHERITED_ZYGOTES:
        # One notebook (course check): a zygote would import, then fork one kernel, which
        # a cold start does at once, beside nbgrader's import (judge.zygote). A warm
        # check server's grader forks it from the zygotes it inherited (check_server).
        sealed.sandbox.fork_kernels = False
    if first:
        start_kernel_ahead(sealed, first, then)
    api, _ = open_api(Path(course_root), **overrides,
                      **sealed_autograde(sealed.config_overrides()))
    api.sealed = sealed
    return api


@functools.cache
def check_nbgrader_schema_once() -> None:
    """nbgrader's cell-metadata check (CheckCellMetadata, once per submission) calls
    ``jsonschema.validate`` for each nbgrader cell, which first checks the schema itself
    against JSON Schema's metaschema: 24 times per lesson notebook, 40 ms of the worker's
    CPU. Here nbgrader's check gets a ``validate`` that checks each schema once, then
    validates as ``jsonschema.validate`` does (the best match of the same validator's
    errors): the same cells pass, and the same error is raised. Only nbgrader's
    nbgraderformat module sees it."""
    import json
    import types

    import jsonschema
    from nbgrader.nbgraderformat import common

    validators: dict[str, object] = {}

    def validate(instance, schema, cls=None, *args, **kwargs):
        key = json.dumps([schema, repr(cls), args, sorted(kwargs.items())], sort_keys=True,
                         default=repr)
        validator = validators.get(key)
        if validator is None:
            kind = cls or jsonschema.validators.validator_for(schema)
            kind.check_schema(schema)
            validator = validators[key] = kind(schema, *args, **kwargs)
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error

    common.jsonschema = types.SimpleNamespace(validate=validate)


@functools.cache
def save_autogrades_at_once():
    """nbgrader's SaveAutoGrades, a notebook's grades and comments committed together.

    Stock commits after each graded, solution or task cell: 29 commits for a lesson
    notebook, and on SQLite each one waits for the disk (an fsync, about 2 ms here: 70 ms
    per notebook, on the worker's path). Here a cell's changes are flushed (sent in the
    notebook's transaction, so nbgrader's next query sees them), and committed with the
    last cell's: the same rows, written all or none."""
    from nbgrader.preprocessors import SaveAutoGrades

    class SaveAutoGradesAtOnce(SaveAutoGrades):
        def preprocess(self, nb, resources):
            self._last_cell = len(nb.cells) - 1
            return super().preprocess(nb, resources)

        def preprocess_cell(self, cell, resources, cell_index):
            session = self.gradebook.db
            session.commit = session.flush  # stock's per-cell commit (an instance's own)
            try:
                cell, resources = super().preprocess_cell(cell, resources, cell_index)
            finally:
                del session.commit
            if cell_index == self._last_cell:
                session.commit()
            return cell, resources

    return SaveAutoGradesAtOnce


def sealed_autograde(config: dict) -> dict:
    """nbgrader's autograde settings for sealed grading: Sealed's (its kernel, its
    Execute), less what the course does not need; every change is an nbgrader setting.

    - Autograde checks the nbgrader metadata (CheckCellMetadata) twice: at the end of
      the sanitize pass and again at the end of the autograde pass. The second reads
      the notebook the first checked and wrote (the grader's autograded/ copy, out of
      the kernel's reach), changed since only by the steps after it: Execute adds
      outputs (and nbclient's timing metadata), IgnorePattern, ClearMetadataPreprocessor
      (disabled unless configured), LimitOutput, SaveAutoGrades and AssignLatePenalties
      touch no nbgrader metadata. So the sanitize pass's check is the one kept; what a
      student could do to the metadata before it (a deleted or rewritten test cell)
      is course_lib.judge.tamper's to find, against the source.
    - The kernel is stopped at once when the notebook has run (Execute's
      ``shutdown_kernel = "immediate"``) instead of asked to shut down and waited for:
      its sandbox is killed and removed right after anyway
      (sandbox.SandboxKernelManager), every cell's reply and every verdict is in by
      then, and the wait is time the notebook's own code does not use.
    - nbconvert validates the notebook against its schema after each of a pass's
      preprocessors (5 or 6 per pass, two passes per submission); with
      ``Exporter.optimistic_validation`` it validates once, after the last. The
      submission itself is validated when it is read (read_notebooks), and a notebook
      that a step made invalid still fails its pass, as before, at its end.
    - SaveAutoGrades writes the same grades and comments, in one transaction per
      notebook instead of one per cell (SaveAutoGradesAtOnce).
    """
    from nbgrader.preprocessors import CheckCellMetadata, SaveAutoGrades

    config = dict(config)
    steps = config["Autograde__autograde_preprocessors"]
    config["Autograde__autograde_preprocessors"] = [
        save_autogrades_at_once() if s is SaveAutoGrades else s
        for s in steps if s is not CheckCellMetadata]
    config["JudgedExecute__shutdown_kernel"] = "immediate"
    config["Exporter__optimistic_validation"] = True
    return config


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
    if result.status == Status.KERNEL_START_FAILED:
        result.status = Status.ERROR
    return result


class Feedback(StrEnum):
    """Which submissions get their feedback page written (nbgrader's feedback/ folder,
    what `nbgrader release_feedback` hands back)."""

    NONE = "none"  # no page at all (--no-feedback)
    FINAL = "final"  # only a submission whose points are all final: no written answer open
    ALL = "all"  # also while written answers wait for hand grading (--force-feedback)

    @classmethod
    def of(cls, value) -> Feedback:
        """A policy from a Feedback, its string, or a bool (True: ALL, every autograded
        submission's page, as asked; False: NONE). `course grade` asks for FINAL."""
        if isinstance(value, bool):
            return cls.ALL if value else cls.NONE
        return cls(value)


def feedback_due(r: SubmissionResult, policy) -> bool:
    """Does ``r`` get its feedback page under ``policy``? A page written while written
    answers are ungraded would hand back a grade that is not final."""
    policy = Feedback.of(policy)
    return policy == Feedback.ALL or (policy == Feedback.FINAL and r.open_points == 0)


def _grade_task(course_root: str, assignment: str, student: str,
                feedback, then: str | bool = True) -> SubmissionResult:
    """Grade (and write feedback for) one submission; runs in a worker process.
    ``feedback``: a Feedback policy (or a bool, see Feedback.of); ``then``: what this
    process grades next (Sealed.expect_next: an assignment, False for nothing, True
    when not known)."""
    api = _WORKER_API.get(course_root)
    if api is None:
        # --unsealed reaches worker processes through the environment they inherit
        api = open_grading_api(Path(course_root),
                               unsealed=os.environ.get("COURSE_UNSEALED") == "1")
        _WORKER_API[course_root] = api
    sealed = getattr(api, "sealed", None)
    if sealed is not None:
        sealed.expect_next(then)
    with shared_gradebook():  # within the worker's own scope, if it has one
        result = grade_reliably(api, assignment, student)
        if Feedback.of(feedback) != Feedback.NONE and _has_feedback(api, result):
            if feedback_due(result, feedback):
                _feedback_one(api, result)
            else:
                withdraw_feedback(api, result)
    return result


def _then(tasks: list[tuple[str, str]], i: int, jobs: int) -> str | bool:
    """The assignment the process grading ``tasks[i]`` most likely grades next (its
    kernel is started ahead for it), or False for nothing: workers take the tasks in
    order as each is free, so a worker's next task is ``jobs`` places on."""
    return tasks[i + jobs][0] if i + jobs < len(tasks) else False


def start_kernel_ahead(sealed, assignment: str, then: str | bool = True) -> None:
    """Start, now, the sealed kernel the next notebook of ``assignment`` will take
    (judge.warm: started as nbclient's manager would start it, in a sandbox of its own),
    the sandbox's copy of the digits taken from the cache (check.digits_from_cache);
    ``then``: what follows that notebook (Sealed.expect_next; False: nothing, as in
    `course check` and the formgrader, which grade one)."""
    from ..judge.sandbox import SandboxKernelManager
    from ..judge.sealed import KERNEL_NAME
    from .check import digits_from_cache

    digits_from_cache(sealed.sandbox)
    sealed.for_assignment(assignment)  # the kernel's sandbox, as Sealed.begin sets it
    sealed.expect_next(then)
    SandboxKernelManager.start_ahead(sealed.sandbox, KERNEL_NAME, sealed.extra_arguments)


def _share_zygotes(course_root: Path, assignments, settings: dict):
    """The zygotes every worker forks its kernels from (judge.sealed.share_zygotes): one
    per kind of kernel for the whole class, not one per worker (torch's import, a second
    and a half of CPU, once). Their folder is a judge's (server.FOLDER_PREFIX and this
    pid), which sweep_stale_folders removes if this process is killed. None if they
    cannot start: each worker then starts its own."""
    from ..judge import sealed, server

    folder = Path(tempfile.mkdtemp(prefix=f"{server.FOLDER_PREFIX}{os.getpid()}-zygotes-"))
    try:
        return sealed.share_zygotes(course_root, assignments,
                                    sealed.Settings(**settings["judge"]), folder)
    except Exception:  # noqa: BLE001 - the workers start their own, as before
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _end_shared(box) -> None:
    """End the shared zygotes (once no worker holds them) and remove their folder."""
    if box is not None:
        box.close()
        shutil.rmtree(box.folder, ignore_errors=True)


def _start_pool(jobs: int, course_root: Path, first: str | None = None,
                settings: dict | None = None, shared=None):
    """``jobs`` grading worker processes, each starting on its grading API at once
    (and on a kernel for a notebook of ``first``, the assignment graded first), with
    the grading ``settings``, the environment this process has now and the ``shared``
    zygotes' Sandbox (_share_zygotes), if any."""
    import concurrent.futures as cf

    handed = (str(shared.runtime), shared.zygotes) if shared is not None else None
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=worker_context(),
                                  initializer=_start_worker,
                                  initargs=(str(course_root), first, settings, dict(os.environ),
                                            handed))
    for _ in range(jobs):  # a process is forked per task submitted while none is idle
        pool.submit(os.getpid)
    return pool


def _start_worker(course_root: str, first: str | None = None, settings: dict | None = None,
                  environ: dict | None = None, shared=None) -> None:
    """A grading worker process, before its first task: the grading API (the judge and
    sandbox, a kernel started for a notebook of ``first``, then nbgrader's imports),
    and one gradebook engine for all its submissions (shared_gradebook, left open
    until the process ends).

    A worker forked by the forkserver has the forkserver's environment: ``environ`` is
    the grading's (as a spawned worker's would be). ``shared``: the grading runtime and
    the zygotes of every worker (_share_zygotes), which its kernels are forked from. It
    ends with os._exit, as every forked multiprocessing process does: the exit handlers
    (atexit: the judge's and the sandbox's folders, its own zygotes if it started any)
    run from multiprocessing's own last step instead."""
    import atexit
    from multiprocessing import util

    from ..judge.sealed import use_shared_zygotes

    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    if shared is not None:
        use_shared_zygotes(*shared)
    util.Finalize(None, atexit._run_exitfuncs, exitpriority=0)
    _open_gradebook_scope()
    try:
        _WORKER_API[course_root] = open_grading_api(
            Path(course_root), unsealed=os.environ.get("COURSE_UNSEALED") == "1",
            first=first, settings=settings)
    except Exception:  # noqa: BLE001 - the first task opens it again and reports why
        pass


def grade_class(course_root: Path | None = None, assignments=None, students=None,
                progress=None, jobs: int | None = None, feedback=Feedback.NONE,
                scheduler: str | None = None, unsealed: bool = False,
                meanwhile=None) -> list[SubmissionResult]:
    """Autograde every submission of every given assignment.

    Args:
        course_root: the course folder.
        assignments: ids (default: all in source/).
        students: ids (default: see class_students).
        progress: callable(done, total, label) called after each submission.
        jobs: submissions graded at once, each in its own process (default:
            the number of cores; 1 grades in this process).
        feedback: which submissions get their feedback page (a Feedback policy, or
            True for all of them; `course grade` asks for Feedback.FINAL: none while
            written answers wait for hand grading).
        scheduler: a dask scheduler's address (``tcp://host:8786``): grade on
            its workers instead, one task per submission (``jobs`` is then
            unused; see distributed.py).
        unsealed: grade with stock nbgrader, the students' code unconfined
            (UNSEALED_WARNING); for machines where the sandbox cannot run.
        meanwhile: a callable run in a thread of this process while its workers
            grade (`course grade`: the report's matplotlib, figures.warm_up), and
            waited for before this returns.
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
    if not scheduler:
        start_workers_early(course_root, assignments, students, jobs)
    api, _ = open_api(course_root)
    with shared_gradebook():
        students = sorted(students) if students else class_students(course_root, api)
        tasks = [(a, s) for a in assignments for s in students]
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks) or 1))
        # the workers start (import nbgrader, build the sealed runtime) while this
        # process registers the assignments
        # what the sealed kernel needs, read once here (open_api read the file)
        settings = None if unsealed or scheduler else grading_settings(api.config)
        local_pool = jobs > 1 and not scheduler and tasks
        shared = (_share_zygotes(course_root, assignments, settings)
                  if local_pool and settings else None)
        pool = _start_pool(jobs, course_root, assignments[0], settings, shared) \
            if local_pool else None
        try:
            for assignment in assignments:
                ensure_registered(api, course_root, assignment)
            add_students(api.coursedir, students)
        except BaseException:
            if pool is not None:  # no worker outlives a grading that never began
                pool.shutdown(cancel_futures=True)
            _end_shared(shared)
            raise
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
            _WORKER_API[str(course_root)] = open_grading_api(
                course_root, unsealed=unsealed, first=tasks[0][0] if tasks else None,
                settings=settings)
        with shared_gradebook():  # one engine for the whole class
            for i, (a, s) in enumerate(tasks):
                done(_grade_task(str(course_root), a, s, feedback, _then(tasks, i, 1)))
        sealed = getattr(_WORKER_API[str(course_root)], "sealed", None)
        if sealed is not None:  # the class is graded: no next notebook needs a kernel
            sealed.sandbox.warm.discard()
    else:
        try:
            _grade_in_pool(pool, jobs, course_root, tasks, feedback, settings, shared, done,
                           meanwhile)
        finally:  # every worker has ended: nothing holds them now
            _end_shared(shared)
    sweep_stale_folders()  # what a worker killed mid-run left in /tmp
    return sorted(results, key=lambda r: (r.student, r.assignment))


def _grade_in_pool(pool, jobs: int, course_root: Path, tasks, feedback, settings, shared,
                   done, meanwhile) -> None:
    """grade_class's ``tasks`` in ``pool`` (or a new one), ``done`` called with each
    result. A worker that dies (killed, out of memory) breaks the whole pool: the
    submissions it had not finished are graded again by a fresh pool. Grading is
    idempotent (autograde --force), so nothing is doubled."""
    import concurrent.futures as cf

    remaining, helper = list(tasks), None
    for attempt in range(1, ATTEMPTS + 1):
        finished = set()
        try:
            first = remaining[0][0] if remaining else None
            with pool or _start_pool(jobs, course_root, first, settings, shared) as pool:
                futures = {pool.submit(_grade_task, str(course_root), a, s, feedback,
                                       _then(remaining, i, jobs)): (a, s)
                           for i, (a, s) in enumerate(remaining)}
                if meanwhile is not None and helper is None:  # this process waits now
                    helper = threading.Thread(target=meanwhile, daemon=True, name="meanwhile")
                    helper.start()
                for future in cf.as_completed(futures):
                    result = future.result()
                    finished.add(futures[future])
                    done(result)
            break
        except cf.process.BrokenProcessPool:
            pool = None
            remaining = [t for t in remaining if t not in finished]
            if attempt == ATTEMPTS:
                for a, s in remaining:
                    done(SubmissionResult(s, a, 0.0, 0.0, Status.ERROR, "the grading worker "
                                          f"died {ATTEMPTS} times while grading it"))
    if helper is not None:
        helper.join()


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


def withdraw_feedback(api, r: SubmissionResult) -> None:
    """Remove the feedback page an earlier grading wrote for ``r``, now that its grade is
    open again (a regrade that went back to waiting for hand grading): otherwise
    `nbgrader release_feedback` would hand back the old grade."""
    import shutil

    cd = api.coursedir
    folder = Path(cd.format_path(cd.feedback_directory, r.student, r.assignment))
    if folder.is_dir():
        shutil.rmtree(folder)


def generate_feedback(api, results: list[SubmissionResult]) -> list[Path]:
    """nbgrader's generate_feedback for every submission that was autograded.

    The course's nbgrader_config.py hides the hidden tests (feedback.py).
    """
    return [_feedback_one(api, r) for r in results if _has_feedback(api, r)]


def _has_feedback(api, r: SubmissionResult) -> bool:
    """Was it autograded, so that nbgrader can write its feedback? (A notebook stopped
    at its total time, or a kernel that died, has statuses but may have no graded copy.)"""
    if not (r.status in NORMAL or r.status == Status.TIMEOUT):
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
