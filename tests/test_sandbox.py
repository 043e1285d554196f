"""The grading sandbox's set-up: every grading path sealed, any home, clear refusals.

The attacks themselves (what a student's code cannot reach from inside) are in
test_sandbox_attacks.py; here, what an instructor meets: a course whose folder is
$HOME grades like any other, nbgrader's own autograde is refused with the command
to use, `--unsealed` grades with stock nbgrader and says so everywhere, and a
machine without bubblewrap gets a message that says what is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from toycourse import ASSIGNMENT, RIGHT, SIGMOID_INSTEAD, hand_in, make_course, submission

from course_lib.instructor.grade import grade_class
from course_lib.judge import sandbox

BIN = Path(sys.executable).parent
EXPECTED = {"amy": 2.0, "ben": 0.0, "cat": 2.0}  # autograded points (the written 1 is by hand)


def _class(course: Path) -> Path:
    for student, answer in (("amy", RIGHT), ("ben", SIGMOID_INSTEAD), ("cat", RIGHT)):
        hand_in(course, student, submission(answer))
    return course


def _scores(results) -> dict:
    return {r.student: (r.score, r.status) for r in results}


@pytest.mark.kernel
def test_a_course_whose_folder_is_home_grades_like_any_other(tmp_path, monkeypatch):
    """nbgrader's usual layout on JupyterHub: the instructor's home is the course."""
    course = _class(make_course(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(course))
    results = grade_class(course, jobs=2)
    assert _scores(results) == {s: (p, "awaiting_hand_grading") for s, p in EXPECTED.items()}
    assert all(r.flags == [] and r.sealed for r in results)


@pytest.mark.kernel
def test_nbgraders_own_autograde_is_refused_with_the_command_to_use(tmp_path):
    """The formgrader's Autograde button calls the same nbgrader API as this command."""
    course = _class(make_course(tmp_path / "course"))
    env = {k: v for k, v in os.environ.items() if k != "COURSE_UNSEALED"}
    subprocess.run([str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force"],
                   cwd=course, env=env, capture_output=True, check=True)
    run = subprocess.run([str(BIN / "nbgrader"), "autograde", ASSIGNMENT, "--force"],
                         cwd=course, env=env, capture_output=True, text=True)
    out = run.stdout + run.stderr
    assert "course grade" in out and "outside the course's sandbox" in out, out[-2000:]
    assert not list((course / "autograded").rglob("*.ipynb")) or run.returncode != 0
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert all(s.score == 0 for a in gb.assignments for s in a.submissions)


@pytest.mark.kernel
def test_unsealed_grades_with_stock_nbgrader_and_says_so_everywhere(tmp_path, monkeypatch):
    import html

    from course_lib.instructor.cli import main

    monkeypatch.delenv("COURSE_UNSEALED", raising=False)
    course = _class(make_course(tmp_path / "course"))
    monkeypatch.chdir(course)
    monkeypatch.setenv("COURSE_ROOT", str(course))
    code = main(["grade", "--unsealed", "--jobs", "1", "--quiet", "--no-feedback"])
    assert code == 0
    report = html.unescape((course / "reports" / "report.html").read_text())
    assert "3 submissions graded unsealed" in report
    lines = (course / "grades.csv").read_text().splitlines()
    assert any(line.startswith("amy,99_toy,2,3,awaiting_hand_grading") for line in lines)
    assert any(line.startswith("ben,99_toy,0,3,awaiting_hand_grading") for line in lines)


def test_unsealed_prints_its_warning_on_every_run(tmp_path, monkeypatch, capsys):
    from course_lib.instructor import cli

    monkeypatch.setattr("course_lib.instructor.check.check_notebook",
                        lambda *a, **k: (_ for _ in ()).throw(ValueError("stop here")))
    monkeypatch.setenv("COURSE_ROOT", str(make_course(tmp_path / "c")))
    assert cli.main(["check", "x.ipynb", "--assignment", ASSIGNMENT, "--unsealed"]) == 2
    assert "grading UNSEALED" in capsys.readouterr().err


def test_without_bubblewrap_grading_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.check_available.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
            grade_class(_class(make_course(tmp_path / "c")), jobs=1)
        with pytest.raises(sandbox.SandboxUnavailable, match="--unsealed"):
            sandbox.check_available()
    finally:
        sandbox.check_available.cache_clear()


def test_without_prlimit_grading_says_what_is_missing(monkeypatch):
    """The sandbox's rlimits are set by util-linux's prlimit (Sandbox.limited)."""
    which = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which",
                        lambda name: None if name == "prlimit" else which(name))
    sandbox.check_available.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="prlimit.*util-linux"):
            sandbox.check_available()
    finally:
        sandbox.check_available.cache_clear()


def test_where_user_namespaces_are_refused_grading_says_so(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: str(fake))
    sandbox.check_available.cache_clear()
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="user namespaces") as err:
            sandbox.check_available()
        assert "No permissions to create new namespace" in str(err.value)
    finally:
        sandbox.check_available.cache_clear()


def test_the_sandbox_binds_no_course_folder_and_hides_the_answers(tmp_path, monkeypatch):
    """The command itself: what is bound, read-only or not, what is masked, what crosses."""
    import course_lib

    monkeypatch.setenv("COURSE_DB_URL", "postgresql://grader:secret@db/course")

    runtime, judge = tmp_path / "runtime", tmp_path / "judge"
    runtime.mkdir()
    judge.mkdir()
    package = str(Path(course_lib.__file__).resolve().parent)
    box_maker = sandbox.Sandbox(tmp_path, runtime, judge, hidden=[package])
    box = box_maker.new_box(None)
    argv = box_maker.command(box, ["python", "-m", "x"])
    pairs = list(zip(argv, argv[1:], argv[2:], strict=False))
    writable = [dest for flag, _src, dest in pairs if flag == "--bind"]
    assert writable == [str(box.connection)]  # WORK is on the sized tmpfs home
    assert "--unshare-net" in argv and "--unshare-pid" in argv and "--clearenv" in argv
    assert "--die-with-parent" in argv and "--disable-userns" in argv
    root = str(Path(__file__).resolve().parents[1])
    bound = [dest for flag, _src, dest in pairs if flag in ("--ro-bind", "--bind")]
    assert not any(p == root or p.startswith(root + "/") and ".venv" not in p for p in bound)
    if any(package.startswith(b + "/") for b in bound):  # an installed copy: masked
        assert ["--tmpfs", package] in [argv[i:i + 2] for i in range(len(argv))]
    assert "COURSE_DB_URL" not in argv and "secret" not in " ".join(argv)
    assert ["--setenv", "HOME", sandbox.HOME] in [argv[i:i + 3] for i in range(len(argv))]


@pytest.mark.kernel
def test_a_kernel_that_does_not_start_says_why_in_its_own_words(tmp_path):
    """A sandbox too small for ipykernel (120 MiB of address space): the reason quotes the
    kernel's own last error lines, not nbgrader's "see the above traceback", and says
    what the sandbox allows and where that is set (the kernel's words may be a library's:
    libzmq's "Resource temporarily unavailable" for a thread with no address space)."""
    course = make_course(tmp_path / "course")
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Judge.kernel_memory_mb = 120\n")
    hand_in(course, "amy", submission(RIGHT))
    [result] = grade_class(course, jobs=1)
    assert result.status == "error", result
    assert result.reason.startswith("the grading kernel did not start: "), result.reason
    assert "above traceback" not in result.reason, result.reason
    kernel_words = result.reason.removeprefix("the grading kernel did not start: ")
    assert kernel_words.split(" (its sandbox allows")[0].strip(), result.reason  # its own
    assert result.reason.endswith(" (its sandbox allows 120 MiB of address space per process "
                                  "and 256 processes: Judge.kernel_memory_mb and "
                                  "Judge.kernel_processes in nbgrader_config.py)"), result.reason
    assert not list(Path(tempfile.gettempdir()).glob(f"course-judge-{os.getpid()}-*/kernels/*"))


def test_cgroups_left_by_a_killed_grading_process_are_swept(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale, alive = tmp_path / f"k{gone}-ab12", tmp_path / f"k{os.getpid()}-cd34"
    stale.mkdir()
    alive.mkdir()
    sandbox._sweep_stale_cgroups(tmp_path)
    assert not stale.exists() and alive.exists()
