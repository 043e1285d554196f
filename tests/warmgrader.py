"""Driving `course check` and its warm grader as a user does, for the tests of the server
(test_check_server.py, test_check_server_attacks.py): the command in a process of its own,
the server's state as `course check-server status` says it, its processes from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def course_cmd(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_lib.instructor.cli", *args],
                          env=env, cwd=env["COURSE_ROOT"], capture_output=True, text=True,
                          timeout=timeout)


def walkable_cache(prefix: str) -> Path:
    """A cache folder any user could walk to (pytest's own folders are private): only the
    course's 0700 folder in it, and the server, keep other users out."""
    cache = Path(tempfile.mkdtemp(prefix=prefix))
    cache.chmod(0o755)
    return cache


def environment(course: Path, cache: Path, **more: str) -> dict:
    """The command's environment: the course, a private cache, the warm grader on."""
    return {**os.environ, "COURSE_ROOT": str(course), "COURSE_CHECK_CACHE": str(cache),
            "COURSE_CHECK_SERVER": "1", **more}


def server_state(env: dict) -> dict | None:
    """`course check-server status` as a dict (pid, checks, socket), or None."""
    done = course_cmd(env, "check-server", "status")
    if done.returncode != 0:
        return None
    words = done.stdout.split()
    return {"pid": int(words[words.index("pid") + 1].rstrip(",")),
            "checks": int(words[words.index("pid") + 2]),
            "socket": Path(words[words.index("socket") + 1])}


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def zygotes_of(pid: int) -> set[int]:
    """The server's children that are zygotes (judge.zygote), seen from the host."""
    found = set()
    for child in children(pid):
        try:
            if b"course_lib.judge.zygote" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except OSError:
            pass
    return found


# How long a test waits for a process it asked to end: a bound only for one that never
# ends. Ending (interpreter teardown with torch loaded, zygotes reaped) took over 30 s
# once on a machine at load 5, and a test must not fail for a busy machine.
ENDS_WITHIN = 300.0


def gone(pid: int, within: float = ENDS_WITHIN) -> bool:
    """Has ``pid`` ended (or become a zombie) within ``within`` seconds?"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


def stop(env: dict) -> None:
    """Stop the server of ``env`` (killed if it has not ended within 30 s: a clean-up,
    which asserts nothing)."""
    state = server_state(env)
    course_cmd(env, "check-server", "stop")
    if state and not gone(state["pid"], 30):
        os.kill(state["pid"], 9)


def as_nobody(work, *args) -> str:
    """``work(*args)`` in a child process running as uid/gid 65534; what it returned."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                said = work(*args)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                said = f"{type(exc).__name__}: {exc}"
            os.write(write, str(said).encode()[:60000])
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace")
