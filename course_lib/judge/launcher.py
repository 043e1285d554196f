"""Start the grading kernel: a memory limit, an audit hook, then ipykernel.

The grading kernel runs the student's notebook with the *student's* course_lib
(no reference answers, no checks) and Python started with ``-S``, so the full
course_lib of the grading process is not on its path. Before the first line of
the notebook runs, this launcher

- dies with its grading process (no student code outlives a killed run);
- caps the kernel's address space (``COURSE_KERNEL_MEMORY_MB``): a memory bomb
  ends in a MemoryError or a dead kernel, not in a machine swapping;
- says hello to the judge with its pid, so that the judge can stop a notebook
  that runs past its total time limit;
- installs a Python audit hook (PEP 578: once installed, it cannot be removed)
  that refuses, and reports to the judge:
    * reading or writing the course's files outside this submission's folder
      (the gradebook, source/ with the hidden tests, other students' work,
      the full course_lib with the answers),
    * starting other programs from the notebook's code, and links that could
      point anywhere,
    * importing torch in a lesson that asks for gradients by hand
      (``COURSE_NO_TORCH=1``).

Run as ``python -S -m course_lib.judge.launcher -f CONNECTION_FILE``.
"""

from __future__ import annotations

import _socket
import json
import os
import sys

SPAWN_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                "os.fork", "os.forkpty", "pty.spawn"}
PATH_EVENTS = {"open": (0,), "os.remove": (0,), "os.rename": (0, 1), "os.replace": (0, 1),
               "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,),
               "os.truncate": (0,), "os.utime": (0,), "os.listdir": (0,), "os.scandir": (0,),
               "shutil.rmtree": (0,), "shutil.copyfile": (0, 1), "shutil.move": (0, 1)}
LINK_EVENTS = {"os.symlink", "os.link"}
# The guard itself is reachable only through the garbage collector's lists.
GC_EVENTS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents"}


def _split(value: str) -> list[str]:
    return [os.path.realpath(p) for p in value.split(os.pathsep) if p]


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r + os.sep) for r in roots)


class Guard:
    """The audit hook's rules, with the judge to report to."""

    def __init__(self, env=os.environ):
        self.judge = env.get("COURSE_JUDGE", "")
        self.forbidden = _split(env.get("COURSE_GUARD_FORBIDDEN", ""))
        self.guarded = _split(env.get("COURSE_GUARD_ROOTS", ""))
        self.allowed = _split(env.get("COURSE_GUARD_ALLOWED", "")) + [os.path.realpath(".")]
        self.no_torch = env.get("COURSE_NO_TORCH") == "1"
        self._busy = False

    def refused(self, path) -> bool:
        if isinstance(path, int) or path is None:
            return False  # a file descriptor: already opened, so already checked
        try:
            text = os.fsdecode(path)
        except TypeError:
            return False
        full = os.path.abspath(text)
        if _under(full, self.forbidden):
            return True
        return _under(full, self.guarded) and not _under(full, self.allowed)

    def report(self, what: str, detail: str) -> None:
        """Tell the judge (best effort: the refusal itself already protects)."""
        if not self.judge:
            return
        try:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.connect(self.judge)
            body = json.dumps({"op": "flag", "what": what, "detail": detail[:300]}).encode()
            sock.sendall(len(body).to_bytes(8, "big") + body)
            sock.close()
        except OSError:
            pass

    def __call__(self, event: str, args) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            self._check(event, args)
        finally:
            self._busy = False

    def _check(self, event, args):
        if event in PATH_EVENTS:
            for i in PATH_EVENTS[event]:
                if i < len(args) and self.refused(args[i]):
                    self.report("file", f"{event} {os.fsdecode(args[i])}")
                    raise PermissionError(f"grading: {os.fsdecode(args[i])} is outside this "
                                          "submission's folder and may not be read or changed")
        elif event in SPAWN_EVENTS and _from_notebook():
            self.report("process", f"{event} {str(args[0])[:200] if args else ''}")
            raise PermissionError("grading: a notebook may not start other programs")
        elif event in ("os.kill", "os.killpg") and args and args[0] not in (0, os.getpid()):
            self.report("process", f"{event} {args[0]}")
            raise PermissionError("grading: a notebook may signal only itself")
        elif event in LINK_EVENTS:
            self.report("file", f"{event} {args[0]!s:.200} -> {args[1]!s:.200}")
            raise PermissionError("grading: a notebook may not create links")
        elif event in GC_EVENTS:
            self.report("introspection", event)
            raise PermissionError(f"grading: {event} is not available to a notebook")
        elif event == "import" and args and isinstance(args[0], str):
            name = args[0]
            if name.startswith(("course_lib.reference", "course_lib.grading.",
                                "course_lib.instructor", "course_lib.judge.server")):
                self.report("import", name)
                raise ImportError(f"grading: {name} is not available to a notebook")
            if self.no_torch and (name == "torch" or name.startswith("torch.")):
                self.report("torch", name)
                raise ImportError("grading: torch is not available in this lesson, whose "
                                  "exercises ask for the gradients by hand")


def _from_notebook() -> bool:
    """Is code of the notebook's cells on the stack? (Libraries may ask `uname`.)"""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<ipython-input") or "/ipykernel_" in name:
            return True
        frame = frame.f_back
    return False


def _limit_memory(env=os.environ) -> None:
    megabytes = int(env.get("COURSE_KERNEL_MEMORY_MB", "0") or 0)
    if megabytes > 0:
        import resource

        limit = megabytes * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _hello(guard: Guard) -> None:
    if not guard.judge:
        return
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.connect(guard.judge)
        body = json.dumps({"op": "hello", "pid": os.getpid()}).encode()
        sock.sendall(len(body).to_bytes(8, "big") + body)
        sock.close()
    except OSError:
        pass


def _install() -> None:
    guard = Guard()
    _hello(guard)
    # No name keeps the guard once this returns: the interpreter's list of
    # hooks, which Python code cannot read, is its only owner.
    sys.addaudithook(guard)


def _die_with_parent() -> None:
    """Linux: the kernel gets SIGKILL when its grading process dies (killed, crashed),
    so that no student code outlives the grading run. Elsewhere ipykernel's parent
    poller does the same within a second."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    _die_with_parent()
    _limit_memory()
    _install()
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(sys.argv[1:])
    app.start()


if __name__ == "__main__":
    main()
