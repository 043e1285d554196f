"""`course check` answered by a warm grader (issue 17): the command's own output, faster,
with nothing weaker.

After a check, `course check` leaves a server for the course (its imports done, a
zygote per kind of kernel); each later check is graded by a grader it forks, with
the caller's arguments, folder, environment and output (instructor/check_server.py).
These tests run the command as a user does, in processes of its own, on a toy course
with a private cache folder; each stops the servers it started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from toycourse import (
    ASSIGNMENT,
    RIGHT,
    RIGHT_ONLY_AS_PID_2,
    SIGMOID_INSTEAD,
    make_course,
    submission,
)
from warmgrader import (
    as_nobody,
    course_cmd,
    environment,
    gone,
    server_state,
    stop,
    walkable_cache,
    zygotes_of,
)

from course_lib.instructor import check_server

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A toy course whose warm grader runs; (course, env, the server's state)."""
    folder = tmp_path_factory.mktemp("served")
    course = make_course(folder / "course")
    cache = walkable_cache("check-server-")
    env = environment(course, cache)
    try:
        started = course_cmd(env, "check-server", "start")
        assert started.returncode == 0, started.stdout + started.stderr
        state = server_state(env)
        assert state is not None
        yield course, env, state
        stopped = course_cmd(env, "check-server", "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert gone(state["pid"]), "`course check-server stop` did not end the server"
        assert not state["socket"].exists()
    finally:
        stop(env)
        shutil.rmtree(cache, ignore_errors=True)


def write(folder: Path, name: str, answer: str) -> Path:
    path = folder / name
    nbformat.write(submission(answer), str(path))
    return path


def verdicts(done: subprocess.CompletedProcess) -> tuple:
    """A --json check's exit status, score, status and (cell, score, failed?) rows:
    everything but the failure messages' numbers (the judge draws fresh inputs)."""
    result = json.loads(done.stdout)
    return (done.returncode, result["score"], result["status"], result["flags"],
            [(c["grade_id"], c["score"], bool(c["message"])) for c in result["cells"]])


def test_a_check_the_warm_grader_answers_is_the_commands_own(served, tmp_path):
    course, env, state = served
    alone = {**env, "COURSE_CHECK_SERVER": "0"}
    right = write(tmp_path, "right.ipynb", RIGHT)
    wrong = write(tmp_path, "wrong.ipynb", SIGMOID_INSTEAD)
    before = server_state(env)["checks"]
    for notebook in (right, wrong):
        args = ("check", str(notebook), "--assignment", ASSIGNMENT, "--json")
        served_run, own_run = course_cmd(env, *args), course_cmd(alone, *args)
        assert verdicts(served_run) == verdicts(own_run), served_run.stderr + own_run.stderr
    assert verdicts(course_cmd(env, "check", str(right), "--assignment", ASSIGNMENT,
                               "--json"))[:2] == (0, 2.0)
    wrong_run = course_cmd(env, "check", str(wrong), "--assignment", ASSIGNMENT)
    assert wrong_run.returncode == 0 and "0/2" in wrong_run.stdout  # graded: exit 0
    assert server_state(env)["checks"] == before + 4  # the unserved ones were not its
    # its arguments, folder and output are the caller's: argparse's own error
    bad = course_cmd(env, "check", "right.ipynb")
    assert bad.returncode == 2 and "--assignment" in bad.stderr
    assert server_state(env)["checks"] == before + 5


def test_its_graders_fork_the_kernels_from_zygotes_it_started_once(served, tmp_path):
    course, env, state = served
    zygotes = zygotes_of(state["pid"])
    assert zygotes, "the server started no zygote"
    path = write(tmp_path, "forked.ipynb", RIGHT_ONLY_AS_PID_2)
    for _ in range(2):
        done = course_cmd(env, "check", str(path), "--assignment", ASSIGNMENT, "--timings")
        assert done.returncode == 0 and "2/2" in done.stdout, done.stdout + done.stderr
        assert "reach the warm grader" in done.stderr
    assert zygotes_of(state["pid"]) == zygotes  # no zygote started for a check


ATTACK = '''def sigmoid_prime(z):
    import numpy as np
    s = 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
    return s * (1 - s) + REACHED

import os, socket
REACHED = 0.0
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(SOCKET)
    REACHED = 1.0
except OSError:
    pass
try:
    os.listdir(os.path.dirname(SOCKET))
    REACHED = 1.0
except OSError:
    pass'''


def test_a_kernel_cannot_reach_the_warm_graders_socket(served, tmp_path):
    course, env, state = served
    attack = ATTACK.replace("SOCKET)", f"{str(state['socket'])!r})")
    path = write(tmp_path, "attack.ipynb", attack)
    done = course_cmd(env, "check", str(path), "--assignment", ASSIGNMENT)
    assert done.returncode == 0 and "2/2" in done.stdout, done.stdout + done.stderr


def _status_as_nobody(address: str) -> str:
    """Connect to ``address`` and ask for the status (run as uid 65534): what happened."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(address)
        socket.send_fds(sock, [b'{"status": true}'], [])
        sock.settimeout(30)
        return "answered: " + sock.recv(65536).decode() or "closed"
    except OSError as exc:
        return f"refused: {exc.strerror}"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_another_user_can_neither_reach_nor_use_it(served):
    course, env, state = served
    path = state["socket"]
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    said = as_nobody(_status_as_nobody, str(path))
    assert said.startswith("refused") and "Permission denied" in said, said
    # with the folder opened up, the server itself refuses another user (SO_PEERCRED)
    path.parent.chmod(0o711)
    path.chmod(0o777)
    try:
        said = as_nobody(_status_as_nobody, str(path))
    finally:
        path.parent.chmod(0o700)
    assert "pid" not in said and "answered: {" not in said, said  # closed unanswered
    assert server_state(env) is not None  # and goes on serving its user


def test_a_check_starts_one_and_it_ends_when_idle_leaving_nothing(tmp_path):
    course = make_course(tmp_path / "course")
    # idle for 20 s, it ends: long enough that the polls below, each a `course` command
    # that a busy machine can slow to seconds, see it while it lives (at 3 s one was missed)
    env = environment(course, tmp_path / "cache", COURSE_CHECK_SERVER_IDLE="20")
    path = write(tmp_path, "right.ipynb", RIGHT)
    try:
        done = course_cmd(env, "check", str(path), "--assignment", ASSIGNMENT, "--timings")
        assert done.returncode == 0 and "2/2" in done.stdout, done.stdout + done.stderr
        assert "start Python, read the command" in done.stderr  # graded in its own process
        deadline, state = time.monotonic() + 240, None
        while state is None and time.monotonic() < deadline:
            time.sleep(0.5)
            state = server_state(env)
        assert state is not None, "no server started after the check"
        zygotes = zygotes_of(state["pid"])
        assert gone(state["pid"]), "the idle server did not end"
        assert all(gone(z) for z in zygotes)
        assert not state["socket"].exists()
    finally:
        stop(env)


def test_a_server_that_cannot_start_says_why_and_no_check_starts_it_again(tmp_path):
    course = make_course(tmp_path / "course")
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nraise RuntimeError('broken on purpose')\n")
    env = environment(course, tmp_path / "cache")
    done = course_cmd(env, "check-server", "start")
    assert done.returncode == 2 and "broken on purpose" in done.stderr, done.stderr
    [failed] = (tmp_path / "cache").glob("*/server-*.failed")
    assert "broken on purpose" in failed.read_text()
    stamp = failed.stat().st_mtime_ns
    subprocess.run([sys.executable, "-c", "from pathlib import Path; from course_lib."
                    "instructor import check_server as c; "
                    f"c.start_in_background(Path({str(course)!r}))"],
                   env=env, check=True)
    time.sleep(1)
    assert failed.stat().st_mtime_ns == stamp  # not tried again
    assert server_state(env) is None


@pytest.mark.parametrize("long", [False, True])
def test_the_socket_is_named_by_the_code_and_settings_and_reached_at_any_length(
        tmp_path, monkeypatch, long):
    short = Path(tempfile.mkdtemp(prefix="cs-"))  # tmp_path: 60 bytes and more
    monkeypatch.setenv("COURSE_CHECK_CACHE", str(tmp_path / ("c" * 120) if long else short))
    key = check_server.code_key()
    monkeypatch.setenv("COURSE_CELL_TIMEOUT", "7")
    assert check_server.code_key() != key  # a setting the server read
    key = check_server.code_key()
    monkeypatch.setenv("COURSE_CHECK_SERVER", "1")
    assert check_server.code_key() == key  # the switch is not
    path = check_server.socket_path(make_course(tmp_path / "course"))
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    address, fd = check_server._address(path)
    assert (fd is not None) == long and len(address) < 100
    listener.bind(address)
    listener.listen(1)
    if fd is not None:
        os.close(fd)
    sock = check_server._connect(path)
    assert sock is not None
    sock.close()
    listener.close()
    shutil.rmtree(short)
