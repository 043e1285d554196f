"""Warm grading kernels: the next sandboxed kernel starts while the current notebook runs.

Most of a short notebook's grading time is not the notebook: bwrap setting up
the sandbox, a fresh interpreter importing ipykernel, numpy (and torch for a
lesson that may use it). None of that depends on the submission, so it can be
done ahead of time, while the previous notebook still runs:

    standby   a kernel started in a sandbox of its own (judge.sandbox: cold,
              or forked from a zygote, judge.zygote), that has imported
              ipykernel and the course's libraries, bound its sockets, and
              then waits, blocked reading its stdin
              (judge.launcher.wait_for_submission). It has run no
              student code and holds no submission: its /submission folder (a
              folder of the host bound read-only) is empty, its home and /tmp
              are its own empty tmpfs, and no system-call filter is in place yet
              because it has not started serving.
    adoption  when nbclient asks for a kernel, the kernel manager takes the
              standby whose sandbox is the one it would have built (same bwrap
              command but for the box's own folders: the ``key``), copies the
              submission into the standby's bound submission folder on the
              host, and writes "go" to its stdin. Only then does the kernel
              copy the submission into its working folder, install its
              system-call filter and serve the notebook: from the notebook's
              first line on, it is the same kernel a cold start would give.
    once      each standby is adopted at most once; a kernel that ran a notebook
              is shut down and removed as before, never reused.

So the sealing is unchanged: one fresh process and one fresh sandbox per
notebook, no earlier submission touched either. The only thing the next
submission receives early is a process that imported the course's
libraries, which its first cell would import anyway.

A standby that is not taken is killed: when a kernel with another sandbox is
asked for (another assignment: with or without torch), when the pool is
closed (the grading process ends: atexit; a grading process that dies takes
it along through bwrap's --die-with-parent), and after ``IDLE`` seconds
unused, so an interactive process that graded once keeps nothing running.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

IDLE = 60.0  # seconds a standby may wait for a notebook before it is killed
GO = b"go\n"  # what the kernel manager writes to a standby's stdin to hand it a submission


@dataclass
class Standby:
    """A started sandboxed kernel waiting for its submission."""

    key: tuple  # the sandbox it runs in (Sandbox.key): adopted only for the same one
    box: object  # judge.sandbox.KernelBox: its folders on the host
    process: object  # subprocess.Popen of bwrap (its own session)
    info: dict  # the connection info it was started with (ipc sockets, key)
    cgroup: Path | None = None
    go_fd: int | None = None  # the write end of the pipe that is its stdin
    started: float = field(default_factory=time.monotonic)
    # a kernel forked from a zygote: its zygote.ForkAnswer, until confirmed (entered)
    forked: object | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def entered(self) -> None:
        """Return once the kernel is in its sandbox as it must be (at once for a cold
        start: bwrap put it there); raises zygote.ZygoteFailed for a forked kernel that
        is not. Asked before go(): no submission reaches a kernel not confirmed."""
        forked, self.forked = self.forked, None
        if forked is not None:
            forked.wait()

    def go(self) -> None:
        """Hand it its submission (already in its submission folder): it starts serving.
        Then its stdin is at its end, as for any kernel jupyter_client starts."""
        try:
            os.write(self.go_fd, GO)
        except OSError:
            pass  # it died meanwhile: the client sees a dead kernel, as for a cold start
        self.close_pipe()

    def close_pipe(self) -> None:
        if self.go_fd is not None:
            os.close(self.go_fd)
            self.go_fd = None

    def kill(self) -> None:
        """SIGKILL its sandbox, reap bwrap, remove its folders and cgroup."""
        from .sandbox import remove_cgroup

        # only while it is unreaped: once poll() has reaped it (alive(), take), its pid
        # may already name another process group
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except OSError:
                try:
                    self.process.kill()
                except OSError:
                    pass
        self.close_pipe()
        if self.forked is not None:
            self.forked.close()
            self.forked = None
        try:
            self.process.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a process that will not be reaped stays a zombie
            pass
        remove_cgroup(self.cgroup)
        shutil.rmtree(self.box.folder, ignore_errors=True)


class WarmPool:
    """At most one standby kernel for one Sandbox (one grading process).

    ``take(key, launch)`` returns a kernel for the sandbox ``key`` describes: the
    standby if it matches and is alive, else a new one from ``launch()`` (a cold
    start). ``prepare(key, launch)`` starts the standby for the next notebook: the
    kernel manager calls it as soon as it hands a kernel its submission, for the
    kernel ``Sandbox.next_kernel`` describes (none after a process's last notebook:
    Sealed.expect_next).
    """

    def __init__(self, idle: float | None = None):
        self.idle = IDLE if idle is None else idle  # IDLE read now: a test may set it
        self._standby: Standby | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        self.adopted = 0  # notebooks that got a warm kernel (the bench and tests read these)
        self.cold = 0  # and those that waited for a start
        atexit.register(self.close)

    def take(self, key: tuple, launch) -> tuple[Standby, bool]:
        """A kernel for ``key``, and whether it was warm."""
        with self._lock:
            standby, self._standby = self._standby, None
            self._cancel_timer()
        if standby is not None and standby.key == key and standby.alive():
            self.adopted += 1
            return standby, True
        if standby is not None:
            standby.kill()  # another sandbox (assignment), or it died
        self.cold += 1
        return launch(), False

    def prepare(self, key: tuple, launch) -> None:
        """Start the standby for the next notebook, unless one is there already."""
        with self._lock:
            if self._closed or self._standby is not None:
                return
            self._standby = launch()
            self._timer = threading.Timer(self.idle, self._expire, args=(self._standby,))
            self._timer.daemon = True
            self._timer.start()

    def discard(self) -> None:
        """Kill the standby, if any (the pool stays usable)."""
        with self._lock:
            standby, self._standby = self._standby, None
            self._cancel_timer()
        if standby is not None:
            standby.kill()

    def close(self) -> None:
        """Kill the standby and start no other."""
        self._closed = True
        self.discard()

    def has_standby(self) -> bool:
        return self._standby is not None

    def _expire(self, standby: Standby) -> None:
        with self._lock:
            if self._standby is not standby:
                return
            self._standby = None
        standby.kill()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
