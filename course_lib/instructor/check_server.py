"""A warm grader for `course check`: after the first check, the next ones start at once.

A check from scratch spends most of its time before the notebook runs: starting
Python and importing nbgrader (about 1 s), importing torch for lesson 5's checks
(1 s), and starting the kernel (0.3 s of CPU, 1.8 s with torch). After a check,
``course check`` leaves this server running in the background, one per course and
per version of the code. It has all of that imported once, and one zygote per kind
of kernel started (judge.zygote). For each check it forks a grader that runs
``course check`` as the command would (cli.main), with the caller's arguments,
working folder, environment, stdout and stderr (passed over the socket): the
output and the exit status are the command's own, and so is the grading:

    course check (client)           server (imports done)         grader (a fork)
    ---------------------           ---------------------         ---------------
    connects, sends its argv,  -->  forks a grader per check -->  cli.main(argv): a fresh
    cwd, environment, fds 1, 2      (one at a time), waits        temporary course, judge
    prints nothing itself;     <--  for it                        and sandbox; the kernel
    exits with the grader's code                                  forked from the zygote

Every check still grades in its own throw-away course, with its own judge, in a
new sandbox around a new kernel that no other submission touched: what a forked
kernel inherits is the zygote's, as in ``course grade`` (judge.zygote).

- **Who can use it.** Its socket is in the user's cache folder (check.cache_root,
  made 0700), which every grading sandbox hides; it serves only its own user
  (SO_PEERCRED) and forks its graders before anything a submission does runs.
- **When it is used.** Its socket's name is a digest of everything it has loaded
  (course_lib's code, Python, nbgrader's version, the ``COURSE_*`` settings):
  after an edit of course_lib, a check starts a new one. An edited lesson or
  nbgrader_config.py needs none: each grader prepares the course as it is now.
- **When it ends.** After ``COURSE_CHECK_SERVER_IDLE`` seconds without a check
  (default 600), when its socket is removed, when the course folder is, or with
  ``course check-server stop``. ``COURSE_CHECK_SERVER=0`` turns it off: each check
  then grades in its own process, as the first one does.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULE = "course_lib.instructor.check_server"
IDLE_SECONDS = 600.0
MESSAGE_BYTES = 1 << 20  # one request: arguments, working folder, environment
REQUEST_SECONDS = 5.0  # for a caller to send its request once connected


def enabled() -> bool:
    return os.environ.get("COURSE_CHECK_SERVER", "1") != "0"


def idle_seconds() -> float:
    value = os.environ.get("COURSE_CHECK_SERVER_IDLE", "")
    try:
        return float(value) if value else IDLE_SECONDS
    except ValueError:
        raise ValueError(f"COURSE_CHECK_SERVER_IDLE: expected seconds, got {value!r}") from None


# -- where the server listens ----------------------------------------------------------

def code_key() -> str:
    """A digest of what a server has loaded that a check could differ in: course_lib's
    code, the Python that runs it, nbgrader's version, the COURSE_* settings."""
    from importlib.metadata import version

    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{sys.executable}\0{version('nbgrader')}\0".encode())
    for name in sorted(k for k in os.environ
                       if k.startswith("COURSE_") and k != "COURSE_CHECK_SERVER"):
        digest.update(f"{name}={os.environ[name]}\0".encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(f"{path.relative_to(package)}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def socket_path(course_root: Path) -> Path:
    """The server's socket for this course and this code (in the course's cache folder)."""
    from .check import course_cache

    return course_cache(course_root) / f"server-{code_key()}.sock"


def _address(path: Path) -> tuple[str, int | None]:
    """An address for ``path`` that fits a socket's 107 bytes: through /proc/self/fd
    and a descriptor on its folder where the path is longer (a test's cache folder)."""
    if len(os.fsencode(path)) < 100:
        return str(path), None
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def _connect(path: Path, timeout: float | None = None) -> socket.socket | None:
    """A connection to the server at ``path``: only one this user runs (another
    user's socket, even in a folder of ours, is never talked to)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    address, fd = _address(path)
    try:
        sock.settimeout(5.0)
        sock.connect(address)
        if _peer_uid(sock) != os.getuid():
            raise PermissionError(f"{path} is another user's")
        sock.settimeout(timeout)
        return sock
    except OSError:
        sock.close()
        return None
    finally:
        if fd is not None:
            os.close(fd)


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _request(message: bytes) -> dict | None:
    """A request as the server reads it, or None: a JSON object whose fields have the
    types a check, a status or a stop needs."""
    try:
        request = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(request, dict):
        return None
    if request.get("status") is True or request.get("stop") is True:
        return request
    argv, env = request.get("argv"), request.get("env")
    fine = (isinstance(argv, list) and all(isinstance(a, str) for a in argv)
            and isinstance(request.get("cwd"), str) and isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
            and isinstance(request.get("age"), (int, float, type(None))))
    return request if fine else None


def _ask(sock: socket.socket, request: dict, fds=()) -> None:
    socket.send_fds(sock, [json.dumps(request).encode()], list(fds))


def _answer(sock: socket.socket) -> dict | None:
    try:
        data = sock.recv(MESSAGE_BYTES)
    except OSError:
        return None
    return json.loads(data) if data else None


# -- the client: `course check` --------------------------------------------------------

def forward(argv: list[str], course_root: Path) -> int | None:
    """Run ``course check`` with ``argv`` in this course's warm server; its exit status,
    or None when no server answered (the caller then checks in its own process)."""
    if not enabled():
        return None
    try:
        sock = _connect(socket_path(course_root))
    except (OSError, RuntimeError):
        return None  # a cache folder that is not ours: the command says so itself
    if sock is None:
        return None
    with sock:
        sys.stdout.flush()
        sys.stderr.flush()
        from .check import process_age

        _ask(sock, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                    "age": process_age()}, [1, 2])
        started = _answer(sock)
        if not started or "pid" not in started:
            return None  # it refused or ended: nothing was printed yet
        try:
            done = _answer(sock)
        except KeyboardInterrupt:
            os.kill(started["pid"], signal.SIGINT)  # the grader cleans up as the command does
            done = _answer(sock)
            return 130 if done is None else done["exit"]
    if done is None or "exit" not in done:
        print("course check: the warm grader stopped before it finished (its log: "
              f"{socket_path(course_root).with_suffix('.log')}); checking again without it",
              file=sys.stderr)
        return None
    return done["exit"]


def _spawn(course_root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", MODULE, str(course_root)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def start_in_background(course_root: Path) -> None:
    """Start this course's server for the next checks, unless it is off, running (a
    server that finds another one running ends at once), or failed to start with this
    code (its ``.failed`` file says why; ``course check-server start`` tries again)."""
    try:
        failed = socket_path(course_root).with_suffix(".failed").exists()
    except (OSError, RuntimeError):
        return
    if enabled() and not failed:
        _spawn(course_root)


def status(course_root: Path) -> dict | None:
    """The running server's pid, start time and number of checks, or None."""
    sock = _connect(socket_path(course_root), timeout=30.0)
    if sock is None:
        return None
    with sock:
        _ask(sock, {"status": True})
        return _answer(sock)


def start(course_root: Path, wait: float = 300.0) -> dict:
    """Start the server (unless it runs) and return its status once it answers."""
    if (running := status(course_root)) is not None:
        return running
    path = socket_path(course_root)
    path.with_suffix(".failed").unlink(missing_ok=True)
    process = _spawn(course_root)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if (running := status(course_root)) is not None:
            return running
        if process.poll() not in (None, 0):
            break
        time.sleep(0.1)
    failed = path.with_suffix(".failed")
    why = failed.read_text(errors="replace").strip() if failed.is_file() else "no answer"
    raise RuntimeError(f"the warm grader did not start: {why} (its log: "
                       f"{path.with_suffix('.log')})")


def stop(course_root: Path) -> dict | None:
    """Ask the server to end (after the check it is grading); its last status, or None."""
    sock = _connect(socket_path(course_root), timeout=60.0)
    if sock is None:
        return None
    with sock:
        _ask(sock, {"stop": True})
        answer = _answer(sock)
        sock.recv(1)  # the server closes it when it has ended
        return answer


# -- the server -------------------------------------------------------------------------

def _warm_up(course_root: Path, folder: Path):
    """Import what a check imports and start a zygote per kind of kernel the course's
    assignments use; returns the Sandbox that owns the zygotes."""
    import importlib

    from .. import grading
    from ..judge import sealed
    from . import cli, grade
    from .course import load_config
    from .workers import GRADER_MODULES

    for name in GRADER_MODULES:
        importlib.import_module(name)
    cli.build_parser()  # imports every command's module
    grading.all_checks()  # the judge's checks of every lesson (torch for lesson 5)
    settings = grade.grading_settings(load_config(course_root))
    assignments = sorted(p.name for p in (course_root / "source").iterdir() if p.is_dir())
    box = sealed.share_zygotes(course_root, assignments, sealed.Settings(**settings["judge"]),
                               folder)
    for zygote in box.zygotes.values():
        zygote.wait_ready()
    sealed.use_shared_zygotes(box.runtime, box.zygotes)
    return box


class Server:
    """The loop: one check at a time, each in a forked grader."""

    def __init__(self, course_root: Path, path: Path, listener: socket.socket, box):
        self.course_root, self.path, self.listener, self.box = course_root, path, listener, box
        self.started, self.checks, self.running = time.time(), 0, True
        self.inode = path.stat().st_ino

    def status(self) -> dict:
        return {"pid": os.getpid(), "started": self.started, "checks": self.checks,
                "socket": str(self.path), "course": str(self.course_root)}

    def owns_socket(self) -> bool:
        """Is the socket file still this server's (not removed, nor another's since)?"""
        try:
            return self.path.stat().st_ino == self.inode
        except OSError:
            return False

    def still_wanted(self) -> bool:
        return self.owns_socket() and (self.course_root / "source").is_dir()

    def serve(self) -> None:
        idle, last = idle_seconds(), time.monotonic()
        self.listener.settimeout(min(5.0, idle))
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                if time.monotonic() - last > idle or not self.still_wanted():
                    return
                continue
            with conn:
                try:
                    self.handle(conn)
                except Exception:  # noqa: BLE001 - one failed request is not the server's end
                    import traceback

                    traceback.print_exc()
            last = time.monotonic()
            if not all(z.alive() for z in self.box.zygotes.values()):
                print("a zygote ended: the next check starts a new server", flush=True)
                return

    def handle(self, conn: socket.socket) -> None:
        if _peer_uid(conn) != os.getuid():
            return  # only this user (the folder's mode already says so)
        conn.settimeout(REQUEST_SECONDS)  # a caller that says nothing holds no one up
        try:
            message, fds, _, _ = socket.recv_fds(conn, MESSAGE_BYTES, 2)
        except OSError:
            return
        try:  # whatever the request is, the descriptors it carried are closed here
            request = _request(message)
            if request is None:
                return
            conn.settimeout(None)
            if request.get("status"):
                _ask(conn, self.status())
            elif request.get("stop"):
                _ask(conn, self.status())
                self.running = False
            elif len(fds) == 2:
                self.check(conn, request, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def check(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        """Fork a grader for one `course check` and wait for it. The caller hears the
        grader's pid first (to pass on a Ctrl-C), then its exit status."""
        self.checks += 1
        received = time.monotonic()
        told, tell = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(tell)
                os.read(told, 1)  # the caller has the pid
                os.close(told)
                code = _grade_as_the_command(self, request, fds, received)
            finally:
                try:
                    _ask(conn, {"exit": code})
                finally:
                    os._exit(0)
        os.close(told)
        try:
            _ask(conn, {"pid": pid})
        except OSError:
            pass  # the caller went away: its grader still runs, alone, and is waited for
        finally:
            os.write(tell, b"x")
            os.close(tell)
            os.waitpid(pid, 0)


def _grade_as_the_command(server: Server, request: dict, fds: list[int],
                          received: float) -> int:
    """In the forked grader: `course check` with the caller's arguments, folder,
    environment and output; its exit status."""
    from . import check, cli

    server.listener.close()
    atexit.unregister(server.box.close)  # the server's zygotes are the server's
    atexit.unregister(server.box.warm.close)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    if request.get("age") is not None:
        check.STARTUP = ("start Python, reach the warm grader",
                         request["age"] + time.monotonic() - received)
    try:
        code = cli.main(request["argv"], forward=False)
    except SystemExit as exc:  # argparse: --help, a bad argument
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # as Python reports an uncaught exception, to the caller
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()  # the grader's own: its judge's and sandbox's folders
    return code


def serve(course_root: Path) -> int:
    """Run this course's server until it is idle, stopped or out of date."""
    # numpy's and torch's thread pools start with their import (first thing here): one
    # thread each, so that this process has no other when it forks (workers.py).
    from .workers import ONE_MATH_THREAD

    os.environ.update(ONE_MATH_THREAD)  # for the server's life
    course_root = Path(course_root).resolve()
    path = socket_path(course_root)  # in course_cache's folder: the user's own, 0700
    lock = open(path.with_suffix(".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another one runs, or is starting
    log = open(path.with_suffix(".log"), "w")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    work = Path(tempfile.mkdtemp(prefix="course-check-server-"))
    try:
        try:
            box = _warm_up(course_root, work)
            threads = len(os.listdir("/proc/self/task"))
            if threads != 1:  # a thread could hold a lock a grader would wait for forever
                raise RuntimeError(f"{threads} threads after the imports: forking graders "
                                   "is not safe")
        except Exception as exc:
            # said once: the next checks grade in their own process, and start no server
            path.with_suffix(".failed").write_text(f"{type(exc).__name__}: {exc}\n")
            raise
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        address, fd = _address(temporary)
        try:
            listener.bind(address)
        finally:
            if fd is not None:
                os.close(fd)
        listener.listen(16)
        temporary.replace(path)  # ready: a client connects only once everything is
        print(f"serving {course_root} on {path} (pid {os.getpid()})", flush=True)
        server = Server(course_root, path, listener, box)
        try:
            server.serve()
        finally:
            if server.owns_socket():
                path.unlink(missing_ok=True)
        print(f"ended after {server.checks} check(s)", flush=True)
        return 0
    finally:
        if "box" in locals():
            box.close()  # its zygotes
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
