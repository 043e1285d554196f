"""The grading side of the judge: runs the hidden checks and keeps their verdicts.

One ``Judge`` per grading process listens on a Unix socket in a private
temporary folder. While nbgrader executes a submission, nbclient tells the
judge which cell is running (the ``on_cell_execute`` hooks); when a hidden
test cell asks for a check (judge.client), the judge runs that check of
``course_lib.grading`` here, with a ``Remote`` handle in place of the
student's function: every call crosses to the kernel as plain data and comes
back the same way. The verdict is kept per test cell; the grade of a cell is
its verdict, whatever the kernel printed.

Nothing the kernel says about itself is believed. A check is accepted only
from the test cell that runs it, as the manifest says (course_lib.manifest:
test cell ``<function>_<part>`` runs ``check_<function>`` with that part; the
release verifies each cell's hidden block against it): a check called from
anywhere else is refused and flagged. The pid the
judge stops when a notebook runs past its total time is the one the kernel
manager started (judge.sandbox), never one the kernel names. What the kernel
may send is bounded (connections at once, connections and bytes per
submission, the size of a frame): past a bound, or on a frame that is not
plain data, the connection is dropped and the submission flagged, so a flood
costs the student their grade, not the grader its memory.

A check may reuse what the student's object returned to an earlier check of the
same notebook (``Remote.remembered``: lesson 04's capstone trains its network once for
its two graded cells). What it reuses belongs to that notebook alone: the judge keeps
it in a store of its own that it replaces at every submission's start and end, every
kernel start and stop, and every cell that is not a test cell (a student's cell may
redefine anything), and the kernel's number for its object (``ref``) keys it within
that store. The kernel may forge that number, but only to be given back its own
earlier result.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field

from . import wire

SESSION_TIMEOUT = 300.0  # seconds the judge waits for the kernel's answer to one request


class UnknownTestCell(ValueError):
    """An autograded test cell whose grade id no exercise of the manifest has."""


def expected_checks(cell) -> list[tuple[str, str]]:
    """The (check, part) pairs an autograded test cell's hidden test calls; [] for any
    other cell.

    They come from the cell's grade id through the manifest (course_lib.manifest:
    ``<function>_<part>`` runs ``check_<function>`` with that part), never from the
    cell's text, which the release step checks against the same manifest.

    Raises:
        UnknownTestCell: a test cell the manifest does not know (grading it would
            guess): the message names it and where its entry belongs.
    """
    from .. import manifest

    meta = cell.get("metadata", {}).get("nbgrader", {})
    if not (meta.get("grade") and not meta.get("solution") and cell.get("cell_type") == "code"):
        return []
    grade_id = meta.get("grade_id")
    try:
        return [manifest.part_for(grade_id)]
    except KeyError:
        raise UnknownTestCell(
            f"test cell {grade_id!r} grades no part of an exercise in the manifest, so the "
            "judge cannot tell which check it runs: add the exercise to its lesson's "
            "course_lib/manifest/<slug>.toml (test cells are named <function>_<part>)"
        ) from None


@dataclass
class Verdict:
    check: str
    part: str
    passed: bool
    message: str = ""
    exc: str = "AssertionError"


@dataclass
class Flag:
    """Something the notebook did that grading does not allow."""

    what: str  # file, process, import, torch, introspection, check
    detail: str
    cell: str | None = None  # grade_id (or "#index") of the cell that did it

    def __str__(self) -> str:
        where = f" (in cell {self.cell})" if self.cell else ""
        return f"{self.what}: {self.detail}{where}"


@dataclass
class Record:
    """What the judge saw of one submission."""

    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)  # grade_id -> verdicts
    kernel_ok: dict[str, bool] = field(default_factory=dict)  # grade_id -> no error output
    executed: list[str] = field(default_factory=list)  # grade_ids of the test cells that ran
    flags: list[Flag] = field(default_factory=list)
    out_of_time: bool = False
    kernel_pid: int | None = None  # the sandbox's outermost process, as the manager started it
    kernel_log: str = ""  # the last lines the kernel wrote to stderr (why it did not start)


class RemoteError(Exception):
    """An exception raised by the student's code in the kernel."""


def _exception_class(name: str):
    # Same class name as in the kernel: checks and messages say "raised ValueError".
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        return builtin
    return type(name if name.isidentifier() else "RemoteError", (RemoteError,), {})


class Remote:
    """The judge's handle on the student's object in the kernel.

    ``ref`` is the kernel's number for that object (judge.client: the same while the name
    is bound to the same object, a new one when the student redefines it), ``memo`` the
    judge's store of earlier results for this notebook (``Judge._memo``), ``check`` the
    check that holds this handle.
    """

    judge_remote = True

    def __init__(self, conn, name: str, *, check: str = "", ref: int | None = None,
                 memo: dict | None = None):
        self._conn, self.__name__ = conn, name
        self._check, self._ref, self._memo = check, ref, memo

    def remembered(self, what: str, compute):
        """``compute()``, once per notebook for this object: the value (or the failure,
        an AssertionError) it gave an earlier check of this notebook for the same object,
        if the judge's store still holds it (it is dropped whenever a cell other than a
        test cell runs, and with every submission and kernel); computed, and kept, when
        not. Without a store or a number for the object, simply ``compute()``."""
        if self._memo is None or self._ref is None:
            return compute()
        key = (self._check, what, self._ref)
        if key not in self._memo:
            try:
                self._memo[key] = (True, compute())
            except AssertionError as exc:
                self._memo[key] = (False, str(exc))
        ok, value = self._memo[key]
        if not ok:
            raise AssertionError(value)
        return value

    def _ask(self, request: dict, args=None):
        wire.send(self._conn, request)
        reply = wire.recv(self._conn)
        if reply.get("op") == "raised":
            raise _exception_class(str(reply.get("type")))(str(reply.get("message", "")))
        if reply.get("op") != "result":
            raise wire.WireError(f"unexpected reply {reply.get('op')!r}")
        if args is not None and "args_changed" in reply:
            _copy_back_changed(args, wire.decode(reply["args_changed"]))
        return wire.decode(reply["value"], args)

    def __call__(self, *args):
        return self._ask({"op": "call", "args": wire.encode(args)}, args)

    def run_experiment(self, name: str, inputs: dict):
        return self._ask({"op": "experiment", "name": name, "inputs": wire.encode(inputs)})

    def __repr__(self) -> str:
        return f"<the student's {self.__name__}>"


def _copy_back_changed(args, changed) -> None:
    """The arguments the kernel says the call changed (``{"<position>": value after}``,
    judge.client) change here too; the others came back as they were sent."""
    if not isinstance(changed, dict):
        raise wire.WireError("args_changed must map argument positions to values")
    for key, after in changed.items():
        if not (key.isdigit() and int(key) < len(args)):
            raise wire.WireError(f"args_changed names no argument: {key!r:.20}")
        _copy_back([args[int(key)]], [after])


def _copy_back(args, after) -> None:
    """Arrays the student's code changed in place change here too (checks look)."""
    import numpy as np

    for a, b in zip(args, after, strict=False):
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            if a.shape == b.shape and a.flags.writeable:
                np.copyto(a, b, casting="unsafe")
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            _copy_back(a, b)
        elif isinstance(a, dict) and isinstance(b, dict):
            # `params["b3"] -= ...` in the kernel: the caller's dict changes the same way
            # (its arrays in place, so that views the check holds see it too)
            for key in set(a) - set(b):
                del a[key]
            for key, value in b.items():
                old = a.get(key)
                if isinstance(old, np.ndarray) and isinstance(value, np.ndarray) and \
                        old.shape == value.shape and old.flags.writeable:
                    np.copyto(old, value, casting="unsafe")
                elif isinstance(old, dict) and isinstance(value, dict):
                    _copy_back([old], [value])
                else:
                    a[key] = value


# What one submission's kernel may send the judge (an honest lesson needs a few
# hundred connections and a few MiB); past these it is flooding.
MAX_OPEN = 4  # connections at once
MAX_CONNECTIONS = 5000  # connections per submission
MAX_BYTES = 1 << 30  # bytes received per submission
FOLDER_PREFIX = "course-judge-"


class Flood(Exception):
    """The kernel sent more than a submission may."""


class _Metered:
    """A connection whose received bytes count against the submission's budget."""

    def __init__(self, conn, judge):
        self._conn, self._judge = conn, judge

    def recv(self, n):
        data = self._conn.recv(n)
        with self._judge._lock:
            self._judge._bytes_in += len(data)
            over = self._judge._bytes_in > MAX_BYTES
        if over:
            raise Flood(f"the kernel sent the grader more than {MAX_BYTES >> 20} MiB")
        return data

    def sendall(self, data):
        self._conn.sendall(data)


class Judge:
    """Listens for the grading kernel; one submission at a time.

    Its folder (``FOLDER_PREFIX`` + this pid + random) holds ``judge/judge.sock``,
    the folder the sandbox binds read-only, beside the grading runtime and the
    kernels' own folders (judge.sandbox). A folder left by a grading process that
    was killed is removed by the next Judge (``sweep_stale_folders``).
    """

    def __init__(self, notebook_time_limit: float = 0.0):
        sweep_stale_folders()
        self.folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
        self.socket_dir = os.path.join(self.folder, "judge")
        os.mkdir(self.socket_dir)
        self.address = os.path.join(self.socket_dir, "judge.sock")
        self._lock = threading.Lock()
        self._closed = False
        self._listener = None
        self._conns: set = set()  # the connections being served, to cut between submissions
        self._listen()
        self.notebook_time_limit = notebook_time_limit
        self._open = threading.BoundedSemaphore(MAX_OPEN)
        self._connections = 0
        self._bytes_in = 0
        self._expected: dict[str, list[tuple[str, str]]] = {}
        self._current: tuple[int, str | None] | None = None
        # results a check may reuse within this notebook (Remote.remembered): a new dict,
        # never one emptied, so that a check still running for an earlier submission or
        # cell can only write into one nobody reads again
        self._memo: dict = {}
        self._started_at: float | None = None
        self.record = Record()
        threading.Thread(target=self._accept, daemon=True, name="judge").start()
        threading.Thread(target=self._watch_time, daemon=True, name="judge-clock").start()

    def _listen(self) -> None:
        """A fresh listening socket at ``address`` (replacing the previous one atomically),
        the previous one closed: the connections still waiting in its backlog go with it,
        and so do any sockets a kernel passed through them (SCM_RIGHTS)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fresh = self.address + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fresh)
        listener.bind(fresh)
        os.chmod(fresh, 0o600)
        listener.listen(MAX_OPEN)
        os.replace(fresh, self.address)
        with self._lock:
            old, self._listener = self._listener, listener
        if old is not None:
            with contextlib.suppress(OSError):
                old.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            old.close()

    def _cut_connections(self) -> None:
        """Nothing of an earlier submission reaches the next: every connection still open
        is shut (its thread ends and frees its slot) and the backlog is dropped. (A kernel
        could otherwise keep connections open past its own end, holding every slot, so that
        the next student's checks waited until their cells ran out of time.)"""
        self._listen()  # first: a slot freed below must not accept from the old backlog
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- one submission ---------------------------------------------------------
    def begin(self, expected: dict[str, list[tuple[str, str]]]) -> None:
        """A new submission: ``expected`` maps each test cell's grade_id to its checks."""
        self._cut_connections()
        with self._lock:
            self._expected = dict(expected)
            self._current = None
            self._started_at = None
            self._connections = self._bytes_in = 0
            self.record = Record()
            self._memo = {}
        _load_checks({check for checks in expected.values() for check, _ in checks})

    def end(self) -> Record:
        with self._lock:
            record, self._expected, self._started_at = self.record, {}, None
            self.record = Record()
            self._memo = {}
        return record

    def close(self) -> None:
        with self._lock:
            self._closed = True
            listener, conns = self._listener, list(self._conns)
        for sock in (listener, *conns):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the kernel manager (judge.sandbox) --------------------------------------------
    def kernel_started(self, pid: int) -> None:
        """The process the kernel manager started: the one to stop past the time limit."""
        with self._lock:
            self.record.kernel_pid = pid
            self._memo = {}  # a new kernel: its objects' numbers may repeat the last one's

    def kernel_stopped(self, log_tail: str) -> None:
        with self._lock:
            self.record.kernel_pid = None
            self.record.kernel_log = log_tail
            self._memo = {}
        self._cut_connections()  # what the kernel left open ends with it

    def flag(self, what: str, detail: str) -> None:
        with self._lock:
            self.record.flags.append(Flag(what, detail, self._cell_name()))

    # -- nbclient hooks ---------------------------------------------------------
    def on_cell_execute(self, cell, cell_index: int) -> None:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        with self._lock:
            self._current = (cell_index, grade_id)
            if self._started_at is None:
                self._started_at = time.monotonic()
            if grade_id in self._expected:
                self.record.executed.append(grade_id)
            else:  # a cell the student may have written: earlier results may be stale
                self._memo = {}

    def on_cell_executed(self, cell, cell_index: int, execute_reply=None) -> None:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in self._expected:
            errored = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            status = (execute_reply or {}).get("content", {}).get("status", "ok")
            with self._lock:
                self.record.kernel_ok[grade_id] = not errored and status == "ok"

    def _cell_name(self) -> str | None:
        if self._current is None:
            return None
        index, grade_id = self._current
        return grade_id or f"#{index + 1}"

    # -- the socket ---------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            self._open.acquire()  # at most MAX_OPEN served at once; the rest wait in the backlog
            with self._lock:
                listener = self._listener
            try:
                conn, _ = listener.accept()
            except OSError:
                self._open.release()
                with self._lock:
                    if self._closed:
                        return
                continue  # replaced between submissions (_listen): accept on the new one
            with self._lock:
                self._connections += 1
                too_many = self._connections > MAX_CONNECTIONS
                self._conns.add(conn)
            if too_many:
                if self._connections == MAX_CONNECTIONS + 1:
                    self.flag("flood", f"the notebook opened more than {MAX_CONNECTIONS} "
                                       "connections to the grader")
                with self._lock:
                    self._conns.discard(conn)
                conn.close()
                self._open.release()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        conn.settimeout(SESSION_TIMEOUT)
        try:
            metered = _Metered(conn, self)
            request = wire.recv(metered)
            if request.get("op") == "check":
                self._check(metered, str(request.get("check", "")),
                            str(request.get("part", "all")), str(request.get("object", "?")),
                            _ref(request.get("ref")))
            else:
                raise wire.WireError(f"{request.get('op')!r} is not a request the judge takes")
        except (EOFError, TimeoutError):
            pass  # the kernel went away (interrupted, died): the cell has no verdict
        except Flood as exc:
            self.flag("flood", str(exc))
        except (ValueError, RecursionError, wire.WireError) as exc:  # not plain data
            self.flag("wire", f"the grader received a malformed message: {exc}"[:300])
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()
            self._open.release()

    def _check(self, conn, check: str, part: str, name: str, ref: int | None = None) -> None:
        with self._lock:
            grade_id = self._current[1] if self._current else None
            where = self._cell_name()
            allowed = (check, part) in self._expected.get(grade_id, ())
            memo = self._memo  # as it is now: a check that outlives its cell writes into a
            # store the next cell no longer reads
        if not allowed:
            with self._lock:
                self.record.flags.append(Flag("check", f"{check}(part={part!r}) was called "
                                                       "outside its test cell", where))
            wire.send(conn, {"op": "verdict", "passed": False, "exc": "AssertionError",
                             "message": "hidden tests run only in their own test cells"})
            return
        verdict = self._run(conn, check, part, name, ref, memo)
        with self._lock:
            self.record.verdicts.setdefault(grade_id, []).append(verdict)
        wire.send(conn, {"op": "verdict", "passed": verdict.passed, "exc": verdict.exc,
                         "message": verdict.message})

    def _run(self, conn, check: str, part: str, name: str, ref: int | None = None,
             memo: dict | None = None) -> Verdict:
        run = _check_named(check)
        if run is None:
            return Verdict(check, part, False, f"no check named {check}")
        try:
            run(Remote(conn, name, check=check, ref=ref, memo=memo), part=part)
        except AssertionError as exc:
            return Verdict(check, part, False, str(exc))
        except NotImplementedError as exc:
            return Verdict(check, part, False, str(exc), "NotImplementedError")
        except (EOFError, OSError, wire.WireError, Flood):
            raise  # the kernel is gone, or misbehaves: no verdict to send
        except Exception as exc:  # noqa: BLE001 - a result the check could not read
            return Verdict(check, part, False, f"the grader could not check this answer: "
                                               f"{type(exc).__name__}: {exc}")
        return Verdict(check, part, True)

    # -- the notebook's total time ----------------------------------------------
    def _watch_time(self) -> None:
        while True:
            time.sleep(0.5)
            with self._lock:
                started, pid = self._started_at, self.record.kernel_pid
                limit = self.notebook_time_limit
            if not (limit and started and pid) or time.monotonic() - started < limit:
                continue
            with self._lock:
                self.record.out_of_time = True
                self._started_at = None
            try:
                os.killpg(pid, signal.SIGKILL)  # the sandbox's session (judge.sandbox)
            except OSError:
                pass


def _ref(value) -> int | None:
    """The kernel's number for the object of a check (judge.client._ref), if it is one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    return None


def sweep_stale_folders(tmp: str | None = None) -> None:
    """Remove the folders of judges whose grading process is gone (killed, crashed)."""
    tmp = tmp or tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        if not name.startswith(FOLDER_PREFIX):
            continue
        pid = name[len(FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load_checks(names) -> None:
    """Import the modules of a submission's checks now, while its kernel starts (judge.warm)
    rather than at its first hidden test: lesson 05's import torch, a second or two of
    this process's CPU, was paid after the kernel was ready (`course check`: a third of
    its time). A check that cannot load says so when it runs, as before."""
    for name in sorted(names):
        with contextlib.suppress(Exception):
            _check_named(name)


def _check_named(name: str):
    """The function ``course_lib.grading.<name>``, or None: only a ``check_...`` name is
    looked up (loading its lesson's module, on first use)."""
    from .. import grading

    if not re.fullmatch(r"check_\w+", name):
        return None
    try:
        return getattr(grading, name)
    except AttributeError:
        return None
