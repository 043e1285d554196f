"""A grading run killed part-way, then run again, loses and duplicates nothing.

The requirement: "killing a grading run part-way and running it again finishes
the class with nothing lost or duplicated in the gradebook; a submission is
never modified in place". Two identical copies of a toy class are graded with
`course grade --jobs 2`: course A undisturbed, course B with a worker process
(or the whole command) killed by SIGKILL in the middle, then graded again.
B must end with A's grades.csv, A's gradebook (one submission per student,
one grade per graded cell, the same scores), and its submitted/ folder
byte-for-byte as it was handed in.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from toycourse import SIGMOID_INSTEAD, hand_in, make_course, submission

# Deadlines that must not trip, in seconds: one `course grade` of this class needs 13 s
# on a quiet 2-core machine and up to 90 s on a saturated one (measured: a CPU-burning
# process per core, `make test-stress`); the moment of the kill comes within seconds.
RUN_TIMEOUT = 900  # one whole `course grade`
KILL_WAIT = 900  # to reach the moment of the kill; for the killed run to end (it may recover)

# kernels start in the `course grade` subprocesses, where tests/conftest.py cannot see them;
# a test's time limit: the fixture's run, the killed run (two waits) and the re-run
pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(4 * RUN_TIMEOUT)]

COURSE_ID = "backprop"  # nbgrader_config.py
GRADE = [sys.executable, "-m", "course_lib.instructor.cli", "grade", "--jobs", "2",
         "--no-feedback", "--quiet"]
STUDENTS = {
    "alice": submission(),
    "bob": submission(SIGMOID_INSTEAD),
    "carol": submission(written="YOUR ANSWER HERE"),
    "dan": submission("import os\nos._exit(3)"),
    "erin": submission(),
    "fay": submission(SIGMOID_INSTEAD),
}
GRADED_CELLS = {"sigmoid_prime_values", "written_why"}


# --- the courses ----------------------------------------------------------------------

def tree_hashes(folder: Path) -> dict[str, str]:
    """{path relative to folder: sha256} of every file below folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The toy class, handed in and not yet graded, and the sha256 of its submissions."""
    course = make_course(tmp_path_factory.mktemp("kill") / "template")
    for student, nb in STUDENTS.items():
        hand_in(course, student, nb)
    return course, tree_hashes(course / "submitted")


def copy_course(template, dst: Path) -> Path:
    course, _ = template
    shutil.copytree(course, dst)
    return dst


def env_for(course: Path) -> dict[str, str]:
    env = dict(os.environ, COURSE_ROOT=str(course))
    env.pop("COURSE_DB_URL", None)  # the course's own SQLite gradebook
    return env


def run_grade(course: Path) -> subprocess.CompletedProcess:
    return subprocess.run(GRADE, cwd=course, env=env_for(course), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def said(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def read_csv(course: Path) -> list[dict]:
    with (course / "grades.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def gradebook(course: Path):
    """What the gradebook holds: submissions per (student, assignment), and every grade.

    Returns ({(student, assignment): how many submissions},
             Counter of (student, assignment, notebook, grade_id, auto, manual, max),
             {(student, assignment): score}).
    """
    from nbgrader.api import Gradebook, SubmittedAssignment

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        subs = gb.db.query(SubmittedAssignment).all()
        count = Counter((s.student.id, s.assignment.name) for s in subs)
        grades = Counter((s.student.id, s.assignment.name, nb.name, g.name, g.auto_score,
                          g.manual_score, g.max_score)
                         for s in subs for nb in s.notebooks for g in nb.grades)
        scores = {(s.student.id, s.assignment.name): s.score for s in subs}
    return count, grades, scores


@pytest.fixture(scope="module")
def undisturbed(template, tmp_path_factory):
    """Course A, graded once with nothing in the way: (course, grades.csv rows, gradebook)."""
    course = copy_course(template, tmp_path_factory.mktemp("A") / "course")
    proc = run_grade(course)
    # dan's kernel dies (os._exit): a status other than ok, so `course grade` says 1
    assert proc.returncode == 1, said(proc)
    rows = read_csv(course)
    assert [r["student"] for r in rows] == sorted(STUDENTS), said(proc)
    statuses = {r["student"]: r["status"] for r in rows}
    assert statuses["dan"] == "kernel_died", said(proc)
    assert statuses["carol"] == "ok", said(proc)  # no written answer: nothing to grade by hand
    assert statuses["alice"] == "awaiting_hand_grading", said(proc)
    assert tree_hashes(course / "submitted") == template[1], said(proc)
    return course, rows, gradebook(course)


# --- processes (from /proc: no psutil) ------------------------------------------------

def parents() -> dict[int, int]:
    """{pid: parent pid} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            out[int(name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return out


def children(pid: int, ppids: dict[int, int]) -> list[int]:
    return sorted(p for p, parent in ppids.items() if parent == pid)


def descendants(pid: int, ppids: dict[int, int]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop(), ppids)
        found += kids
        todo += kids
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def is_kernel(pid: int) -> bool:
    """A grading kernel: started through course_lib.judge.launcher (bwrap's command), or
    forked by a zygote (course_lib.judge.zygote) into a sandbox's pid namespace."""
    command = cmdline(pid)
    if any(word in command for word in ("judge.launcher", "ipykernel")):
        return True
    try:
        nspid = Path(f"/proc/{pid}/status").read_text().split("NSpid:")[1].split("\n")[0]
    except (OSError, IndexError):
        return False
    return "judge.zygote" in command and len(nspid.split()) > 1


def is_sandbox(pid: int) -> bool:
    """A grading kernel's sandbox, started by the worker that grades in it: bwrap around
    the kernel, or around the /init beside a kernel forked into it by a zygote (the
    zygotes are the main process's, shared by the workers: course_lib.judge.zygote)."""
    return is_kernel(pid) or cmdline(pid).startswith(shutil.which("bwrap") or "/usr/bin/bwrap")


FORKSERVER = "multiprocessing.forkserver"


def is_worker(pid: int, ppids: dict[int, int]) -> bool:
    """A ProcessPoolExecutor worker: a process multiprocessing's forkserver forked
    (instructor/workers.py), not the forkserver itself nor the resource tracker."""
    return FORKSERVER in cmdline(pid) and FORKSERVER in cmdline(ppids.get(pid, 0))


def autograded_students(course: Path) -> list[str]:
    folder = course / "autograded"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class Watched:
    """`course grade` started in the background, and every process it started since."""

    def __init__(self, course: Path, log_dir: Path):
        self.course = course
        self.out = (log_dir / "killed-run.out").open("w+")
        self.err = (log_dir / "killed-run.err").open("w+")
        self.proc = subprocess.Popen(GRADE, cwd=course, env=env_for(course), stdout=self.out,
                                     stderr=self.err, start_new_session=True)
        self.seen: dict[int, str] = {}  # pid: cmdline, of every descendant seen

    def look(self) -> dict[int, int]:
        ppids = parents()
        for pid in descendants(self.proc.pid, ppids):
            self.seen.setdefault(pid, cmdline(pid))
        return ppids

    def wait_for(self, condition, what: str):
        """Poll until condition(ppids) is true; fail if the run ends or time runs out."""
        deadline = time.monotonic() + KILL_WAIT
        while time.monotonic() < deadline:
            ppids = self.look()
            found = condition(ppids)
            if found:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"`course grade` ended before {what}: {self.said()}")
            time.sleep(0.1)
        pytest.fail(f"no {what} within {KILL_WAIT} s: {self.said()}")

    def wait_end(self) -> int:
        """The exit code of the killed run, which must end by itself within KILL_WAIT."""
        deadline = time.monotonic() + KILL_WAIT
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"`course grade` did not end within {KILL_WAIT} s after the "
                            f"kill: {self.said()}")
            self.look()
            time.sleep(0.1)
        return self.proc.returncode

    def said(self) -> str:
        self.out.seek(0)
        self.err.seek(0)
        return (f"exit {self.proc.poll()}\n--- stdout\n{self.out.read()}\n"
                f"--- stderr\n{self.err.read()}\n--- processes seen\n"
                + "\n".join(f"{pid} {cmd}" for pid, cmd in self.seen.items()))

    def alive(self) -> list[int]:
        # still the same process, not a reused pid
        return [pid for pid, cmd in self.seen.items() if cmd and cmdline(pid) == cmd]

    def leftovers(self, grace: float = 5.0) -> list[str]:
        """What the run started and left running `grace` seconds after it ended (kernels
        live in sessions of their own), killed; returns what that was."""
        self.proc.poll()
        deadline = time.monotonic() + grace
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = []
        for pid in self.alive():
            alive.append(f"{pid} {self.seen[pid]}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return alive

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.leftovers(grace=0)
        self.out.close()
        self.err.close()


@pytest.fixture
def watched():
    runs = []

    def start(course: Path, log_dir: Path) -> Watched:
        runs.append(Watched(course, log_dir))
        return runs[-1]

    yield start
    for run in runs:
        run.close()


# --- what both tests check after the re-run --------------------------------------------

def left_behind(course: Path, undisturbed) -> str:
    """The gradebook as the killed run left it, against A's (for the failure message)."""
    if not (course / "gradebook.db").exists():
        return "no gradebook.db"
    count, grades, _ = gradebook(course)
    differ = sorted(set(grades) - set(undisturbed[2][1]), key=str)
    return (f"submissions {dict(sorted(count.items()))}; grades unlike the undisturbed "
            f"run's (student, assignment, notebook, cell, auto, manual, max): {differ}")


def assert_same_as_undisturbed(course: Path, undisturbed, template, rerun, context: str):
    _, a_rows, (a_count, a_grades, a_scores) = undisturbed
    _, hashes = template
    why = f"{context}\n=== re-run: {said(rerun)}"
    # dan's kernel dies every time: the re-run says 1, as the undisturbed run did
    assert rerun.returncode == 1, why

    assert read_csv(course) == a_rows, why
    assert not (course / "grades.csv.tmp").exists(), why

    count, grades, scores = gradebook(course)
    assert count == a_count, why
    assert set(count.values()) == {1}, f"duplicated submissions {count}\n{why}"
    graded = {s for s, _ in count}
    assert graded >= set(STUDENTS) - {"dan"}, why  # everyone who ran to the end is there
    per_cell = Counter(g[:4] for g in grades)
    assert set(per_cell.values()) == {1}, f"duplicated grades {per_cell}\n{why}"
    for student, assignment in count:
        cells = {g[3] for g in grades if g[:2] == (student, assignment)}
        assert cells == GRADED_CELLS, (student, cells, why)
    assert grades == a_grades, why
    assert scores == a_scores, why
    with sqlite3.connect(course / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), why

    # Submissions are read, never written: same files, same bytes, nothing left beside them.
    assert tree_hashes(course / "submitted") == hashes, why


# --- the tests ------------------------------------------------------------------------

def test_a_worker_killed_mid_grading_then_a_rerun_gives_the_undisturbed_grades(
        template, undisturbed, watched, tmp_path):
    """SIGKILL to one grading worker while its kernel runs a notebook (after at least one
    submission was graded); `course grade` ends (or recovers); a re-run finishes the
    class exactly as an undisturbed run did."""
    course = copy_course(template, tmp_path / "B")
    run = watched(course, tmp_path)

    def worker_in_the_middle(ppids):
        # a third submission started, so with two workers one was graded already
        if len(autograded_students(course)) < 3:
            return None
        busy = [w for w in descendants(run.proc.pid, ppids)
                if is_worker(w, ppids) and any(is_sandbox(k) for k in descendants(w, ppids))]
        return busy[0] if busy else None

    victim = run.wait_for(worker_in_the_middle, "a worker grading a third submission")
    grading, before = autograded_students(course), sorted(run.seen)
    os.kill(victim, signal.SIGKILL)
    killed_rc = run.wait_end()
    first = run.said()
    orphans = run.leftovers()
    context = (f"killed worker {victim} while autograded/ held {grading}; processes seen "
               f"before the kill: {before}\n"
               f"=== killed run: {first}\n=== left running after it: {orphans}\n"
               f"=== gradebook after it: {left_behind(course, undisturbed)}")
    print(context)  # shown by pytest -s (or -rP): what the kill looked like
    assert killed_rc in (0, 1, 2), context  # recovered (0/1), or stopped with a message (2)
    if killed_rc in (0, 1):  # it says it finished the class: then with the right grades
        assert read_csv(course) == undisturbed[1], context

    rerun = run_grade(course)
    assert_same_as_undisturbed(course, undisturbed, template, rerun, context)


def test_the_whole_command_killed_then_a_rerun_gives_the_undisturbed_grades(
        template, undisturbed, watched, tmp_path):
    """SIGKILL to `course grade` and its workers at once (its process group), part-way
    through the class; a re-run finishes it exactly as an undisturbed run did."""
    course = copy_course(template, tmp_path / "C")
    run = watched(course, tmp_path)

    def kernels_running(ppids):
        return len(autograded_students(course)) >= 2 and any(
            is_kernel(k) for k in descendants(run.proc.pid, ppids))

    run.wait_for(kernels_running, "two submissions started and a kernel running")
    grading, before = autograded_students(course), sorted(run.seen)
    os.killpg(run.proc.pid, signal.SIGKILL)
    killed_rc = run.wait_end()
    orphans = run.leftovers()
    context = (f"killed the process group while autograded/ held {grading}; processes seen "
               f"before the kill: {before}\n"
               f"=== killed run: {run.said()}\n=== left running after it: {orphans}\n"
               f"=== gradebook after it: {left_behind(course, undisturbed)}")
    print(context)
    assert killed_rc == -signal.SIGKILL, context
    assert not (course / "grades.csv").exists(), context  # it really stopped part-way

    rerun = run_grade(course)
    assert_same_as_undisturbed(course, undisturbed, template, rerun, context)
