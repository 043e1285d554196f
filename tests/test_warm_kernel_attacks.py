"""Red team for the warm kernels (judge.warm): a student graded just before or just after
a victim, in the same class run, attacks the kernel started ahead for the next notebook.

The promise under test (issue 17): each notebook still gets a fresh process that no
earlier submission touched. While a notebook runs, the kernel for the NEXT notebook is
already started (its own bubblewrap sandbox, numpy imported, sockets bound, waiting on
its stdin); the attacks below run in that earlier notebook and try to reach it, leave
state for it, read what it will be given, or outlive their own notebook.

Each attack is a submission in a toy class (tests/toycourse.py) graded by
``grade_class``, as ``course grade`` does, with ``--jobs 1`` (one worker: each notebook
is followed by the very kernel its grading started) and ``--jobs 2``. Success would
show in a score:

- an attacker's answer is right only if the attack got what it wanted (``stolen``):
  blocked, it scores exactly 0;
- a *probe* student graded right after each attacker looks, from inside its own
  (warm) kernel, for anything an earlier notebook left (files in /tmp, the home, the
  working folder, byte code beside the grading runtime or numpy, other processes,
  modules); its answer is right only if it finds nothing, so a clean kernel scores 2;
- an honest victim graded after an attacker must get exactly its normal grade.

The machinery (PRELUDE, H(), the Target) is the sandbox red team's
(tests/test_sandbox_attacks.py); attacks that succeed stay here as failing tests.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from test_sandbox_attacks import PRELUDE, SANDBOX_PIDS, STOLEN_ANSWER
from toycourse import ASSIGNMENT, RIGHT, graded_path, hand_in, make_course, submission

from course_lib.instructor.grade import _WORKER_API, grade_class
from course_lib.judge import warm

pytestmark = [pytest.mark.slow]

NORMAL = "awaiting_hand_grading"  # the toy's written answer waits for a human
TOKEN = uuid.uuid4().hex[:12]  # in every marker an attacker plants
VICTIM_MARK = "victim-secret-" + uuid.uuid4().hex[:12]  # only in the victim's written answer


def fill(template: str, **values) -> str:
    for name, value in {"pids": repr(SANDBOX_PIDS), **values}.items():
        template = template.replace(f"<<{name}>>", value)
    return template


# -- attacks on the kernel started ahead, and what they leave for it --------------------------

PLANT_FOR_THE_NEXT_KERNEL = '''
token = <<token>>
# files where the next kernel's own folders would be, were they shared
for path in ("/tmp/rt-" + token, os.path.expanduser("~/rt-" + token), "rt-" + token,
             "/dev/shm/rt-" + token, "/submission/rt-" + token):
    attempt("plant " + path, lambda: write(path, token))
# byte code beside the grading runtime and numpy: what the next kernel imports
course_lib_dir = M("course_lib").__path__[0]
numpy_dir = M("numpy").__path__[0]
for folder in (course_lib_dir + "/__pycache__", course_lib_dir + "/judge/__pycache__",
               numpy_dir + "/__pycache__"):
    done = attempt("plant byte code in " + folder[-40:],
                   lambda: write(folder + "/rt-" + token + ".cpython-311.pyc", token))
    stolen = stolen or bool(done)
# the kernel started ahead: its process, its sockets, its folder beside ours
pids = sorted(p for p in os.listdir("/proc") if p.isdigit())
print("pids:", pids)
stolen = stolen or pids != <<pids>>
connection = os.path.dirname([a for a in sys.argv if a.endswith("kernel.json")][0])
kernels = os.path.dirname(os.path.dirname(connection))
boxes = attempt("list the kernels' folders", lambda: os.listdir(kernels)) or []
print("boxes:", boxes)
stolen = stolen or len(boxes) > 1
for box in boxes:
    for leaf in ("/c", "/work", "/kernel.log"):
        if box + leaf != connection[len(kernels) + 1:]:
            stolen = stolen or attempt("reach " + box + leaf,
                                       lambda: os.listdir(kernels + "/" + box + leaf)) is not None
# signals: every process this one may signal (pid 1 is spared by kill(-1))
attempt("signal every process", lambda: os.kill(-1, 9))
'''

PROBE_FOR_AN_EARLIER_NOTEBOOK = '''
token = <<token>>
dirty = []


def walk(top):
    for folder, subfolders, files in os.walk(top):
        dirty.extend(os.path.join(folder, f) for f in files + subfolders if token in f)


for top in ("/tmp", os.path.expanduser("~"), ".", "/dev/shm", "/submission",
            M("course_lib").__path__[0], M("numpy").__path__[0]):
    walk(top)
pids = sorted(p for p in os.listdir("/proc") if p.isdigit())
if pids != <<pids>>:
    dirty.append(f"other processes: {pids}")
if pids == ["1", "2"] and open("/proc/1/cmdline").read() != "/init\\0":
    dirty.append("pid 1 is not the sandbox's /init")
dirty += [name for name in sys.modules if token in name]
for leaf in ("/tmp", os.path.expanduser("~")):
    extra = [n for n in os.listdir(leaf) if n not in ("matplotlib", "jupyter", ".ipython",
                                                      "work", ".cache", ".local", ".config")]
    print(leaf, "holds", extra)  # what a fresh kernel makes itself; printed, not judged
print("DIRTY" if dirty else "CLEAN", dirty)
stolen = not dirty  # here: the kernel is clean
'''

READ_THROUGH_A_HANDED_IN_LINK = '''
found = []
for name in ("victim.txt", "source.txt", "g.txt"):
    text = attempt("read the handed-in link " + name, lambda: read(name))
    if has(text, <<victim_mark>>) or has(text, "BEGIN SOLUTION") or has(text, "SQLite format"):
        found.append(name)
print("read through links:", found)
stolen = bool(found)
'''

# After the notebook's own test cell (so its own grade is untouched): four connections
# to the judge, which serves four at a time, then a fifth that waits in the listen
# backlog carrying the other four as SCM_RIGHTS. When this kernel is killed, the four
# stay open: the kernel's file table is gone, but the sockets are "in flight" in the
# queued connection, which the judge never accepts while the four hold its slots.
PARK_THE_JUDGES_CONNECTIONS = '''
def park():
    so = M("_socket")
    address = judge_address()
    held = []
    for _ in range(4):
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        s.connect(address)
        held.append(s)
    time.sleep(1)  # the judge has taken all four
    queued = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    queued.connect(address)  # in the backlog: the judge has no slot left
    fds = struct.pack(f"{len(held)}i", *[s.fileno() for s in held])
    queued.sendmsg([b"x"], [(so.SOL_SOCKET, so.SCM_RIGHTS, fds)])
    return len(held)


attempt("park the judge's connections past this notebook", park)
'''


def attack_notebook(body: str, answer: str | None = None):
    """A submission whose answer cell is ``PRELUDE + body``, then sigmoid_prime: right
    only if ``stolen`` (answer None), or ``answer``."""
    source = PRELUDE + body.rstrip() + "\n" + (STOLEN_ANSWER if answer is None
                                               else "\n\n" + answer + "\n")
    return submission(source)


def after_the_test_cell(body: str):
    """An honest, right submission with one more code cell at its end: ``body``."""
    nb = submission(RIGHT)
    nb.cells.append(nbformat.v4.new_code_cell(PRELUDE + body))
    return nb


def hand_in_links(course: Path, student: str, links: dict[str, Path]) -> None:
    """Symbolic links beside the notebook in submitted/ (nbgrader's exchange or a
    folder copied by hand can bring them; `course collect` places notebooks only)."""
    folder = course / "submitted" / student / ASSIGNMENT
    for name, target in links.items():
        (folder / name).symlink_to(target)


# -- the classes ------------------------------------------------------------------------------

# Graded in name order: with one worker each attacker is followed by its probe, whose
# kernel was started while the attacker's notebook ran.
STUDENTS = {
    "a0_victim": "honest, right; its written answer holds VICTIM_MARK",
    "a1_plant": "plants files and byte code, looks for the next kernel, signals everything",
    "a2_probe": "looks for what a1 left",
    "b1_link": "hands in links to the victim's notebook, source/ and the course database: "
               "refused before nbgrader copies anything (grade.not_regular_files)",
    "b2_probe": "looks for what b1 left",
    "c1_plant": "a1 again, later in the run",
    "c2_probe": "looks for what c1 left",
}
EXPECTED = {"a0_victim": (2.0, NORMAL), "a1_plant": (0.0, NORMAL), "a2_probe": (2.0, NORMAL),
            "b1_link": (0.0, "unreadable"), "b2_probe": (2.0, NORMAL), "c1_plant": (0.0, NORMAL),
            "c2_probe": (2.0, NORMAL)}


def _hand_in_class(course: Path) -> None:
    token = repr(TOKEN)
    hand_in(course, "a0_victim", submission(RIGHT, written=f"{VICTIM_MARK}: σ' peaks at 1/4."))
    for attacker, probe in (("a1_plant", "a2_probe"), ("c1_plant", "c2_probe")):
        hand_in(course, attacker, attack_notebook(fill(PLANT_FOR_THE_NEXT_KERNEL, token=token)))
        hand_in(course, probe, attack_notebook(fill(PROBE_FOR_AN_EARLIER_NOTEBOOK, token=token)))
    hand_in(course, "b1_link", attack_notebook(fill(READ_THROUGH_A_HANDED_IN_LINK,
                                                    victim_mark=repr(VICTIM_MARK))))
    hand_in_links(course, "b1_link", {
        "victim.txt": course / "submitted" / "a0_victim" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        "source.txt": course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        "g.txt": course / "gradebook.db"})
    hand_in(course, "b2_probe", attack_notebook(fill(PROBE_FOR_AN_EARLIER_NOTEBOOK,
                                                     token=token)))


def _sandbox_processes(judge_folder: Path) -> list[int]:
    """Host pids of bwrap processes whose command line names ``judge_folder`` (one
    grading process's folders: a standby or a kernel of it that is still running; the
    sandboxes of other gradings on the machine are not counted)."""
    found, folder = [], str(judge_folder).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"bwrap") and any(folder in a for a in cmd):
            found.append(int(pid))
    return found


def _grade(tmp_path_factory, jobs: int):
    course = make_course(tmp_path_factory.mktemp(f"warm{jobs}") / "course", timeout=120)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Judge.notebook_timeout = 60\n"
                      "c.Judge.manual_gradient_assignments = ['99_toy']\n")
    _hand_in_class(course)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("COURSE_UNSEALED", raising=False)
        # a standby waits while the notebook before it runs, up to its 60 s here: it
        # must not expire then (warm.IDLE, 60 s), or a busy machine starts one cold and
        # the count of warm kernels below comes out one short
        mp.setattr(warm, "IDLE", 3600.0)
        results = {r.student: r for r in grade_class(course, jobs=jobs)}
    return course, results


@pytest.fixture(scope="module")
def graded_one_worker(tmp_path_factory):
    """The class graded by one worker in this process: its warm pool can be read."""
    course, results = _grade(tmp_path_factory, jobs=1)
    api = _WORKER_API[str(course.resolve())]
    pool = api.sealed.sandbox.warm
    try:
        yield course, results, pool
    finally:
        pool.close()
        _WORKER_API.pop(str(course.resolve()), None)


@pytest.fixture(scope="module")
def graded_two_workers(tmp_path_factory):
    return _grade(tmp_path_factory, jobs=2)


def _answer_output(course: Path, student: str) -> str:
    path = graded_path(course, student)
    if not path.is_file():
        return ""
    nb = nbformat.read(str(path), as_version=4)
    return "\n".join(o.get("text", "") + o.get("evalue", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _assert_expected(course, results, student):
    r = results[student]
    assert (r.score, r.status, r.flags) == (*EXPECTED[student], []), (
        r.reason, r.flags, r.messages, _answer_output(course, student)[-3000:])


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_one_worker_each_attack_scores_nothing_and_each_probe_finds_a_clean_kernel(
        graded_one_worker, student):
    course, results, _ = graded_one_worker
    _assert_expected(course, results, student)


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_two_workers_each_attack_scores_nothing_and_each_probe_finds_a_clean_kernel(
        graded_two_workers, student):
    course, results = graded_two_workers
    _assert_expected(course, results, student)


def test_the_probes_ran_in_kernels_started_ahead_and_said_clean(graded_one_worker):
    """Not a vacuous pass: every notebook got a warm kernel (the first one's started
    while the grader loaded nbgrader; the attackers did not kill or spoil the one
    started ahead, or it would have been started cold), and each probe printed what
    it saw."""
    course, results, pool = graded_one_worker
    # b1_link is refused before any kernel starts (its links), so one notebook fewer
    assert (pool.adopted, pool.cold) == (len(STUDENTS) - 1, 0)
    for probe in ("a2_probe", "b2_probe", "c2_probe"):
        assert "CLEAN []" in _answer_output(course, probe)


def test_the_planting_attacks_were_refused_by_the_sandbox(graded_one_worker):
    course, *_ = graded_one_worker
    for attacker in ("a1_plant", "c1_plant"):
        output = _answer_output(course, attacker)
        assert "BLOCKED plant byte code" in output and "Read-only file system" in output, output
        assert f"pids: {SANDBOX_PIDS}" in output and "boxes: [" in output, output


def test_the_victims_work_never_reaches_another_students_kernel(graded_one_worker):
    course, *_ = graded_one_worker
    found = [str(p) for p in (course / "autograded").rglob("*")
             if p.is_file() and not p.is_relative_to(course / "autograded" / "a0_victim")
             and VICTIM_MARK.encode() in p.read_bytes()]
    assert found == []


def test_no_kernel_started_ahead_outlives_the_class(graded_one_worker):
    """A kernel is started ahead for each next notebook; after the last one there is
    none to come, and grading the class kills that standby with its folder at once
    (not IDLE seconds later, and not only when the grading process ends)."""
    course, _, pool = graded_one_worker
    judge_folder = Path(_WORKER_API[str(course.resolve())].sealed.judge.folder)
    assert pool.adopted >= 1  # kernels were started ahead, and taken
    assert not pool.has_standby()
    assert _sandbox_processes(judge_folder) == []
    kernels = judge_folder / "kernels"
    assert not kernels.is_dir() or list(kernels.iterdir()) == []


# -- a notebook that holds the judge past its own end -----------------------------------------

@pytest.fixture(scope="module")
def parked(tmp_path_factory):
    """One worker: a notebook that parks the judge's connections in its last cell, then
    an honest student. Short limits: a stuck victim is stopped after 20 s."""
    course = make_course(tmp_path_factory.mktemp("parked") / "course", timeout=20)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Judge.notebook_timeout = 40\n")
    hand_in(course, "a_parker", after_the_test_cell(PARK_THE_JUDGES_CONNECTIONS))
    hand_in(course, "b_victim", submission(RIGHT))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("COURSE_UNSEALED", raising=False)
        started = time.monotonic()
        results = {r.student: r for r in grade_class(course, jobs=1)}
        took = time.monotonic() - started
    api = _WORKER_API.pop(str(course.resolve()), None)
    if api is not None:
        api.sealed.sandbox.warm.close()
        api.sealed.close()  # the listener: what is parked in its backlog goes with it
    return course, results, took


def test_connections_parked_in_the_judges_backlog_do_not_stop_the_next_notebook(parked):
    """The attacker's own test cell ran before it parked anything; the victim graded
    next by the same worker must get exactly its normal grade."""
    course, results, _ = parked
    victim = results["b_victim"]
    assert (victim.score, victim.status, victim.flags) == (2.0, NORMAL, []), (
        victim.reason, victim.messages)
    assert "DONE park" in _answer_output(course, "a_parker")  # the attack did run
