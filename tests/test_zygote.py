"""Kernels forked from a zygote (course_lib.judge.zygote, issue 17): as sealed as a cold start.

A zygote imports ipykernel and numpy (and torch) once, outside every sandbox, and forks
each grading kernel, which then joins the sandbox bwrap built around /init. These tests
look at such a kernel from the host, where nothing it does can forge what is seen
(/proc/<pid> of the grading machine), and attack /init from inside. The red-team suites
(test_sandbox_attacks.py, test_warm_kernel_attacks.py) grade every attack through
forked kernels too.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from toycourse import ASSIGNMENT, RIGHT, RIGHT_ONLY_AS_PID_2, hand_in, make_course, submission

from course_lib.instructor.grade import _WORKER_API, grade_class
from course_lib.judge import zygote as zygote_module
from course_lib.judge.sandbox import PER_KERNEL_ENV, SandboxKernelManager
from course_lib.judge.sealed import KERNEL_NAME, Sealed

pytestmark = [pytest.mark.kernel]

NAMESPACES = ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _until(what, seconds: float = 60.0):
    """``what()`` once it is truthy (polled: a condition, never a measured time)."""
    deadline = time.monotonic() + seconds
    while not (value := what()):
        assert time.monotonic() < deadline, f"still not so after {seconds} s: {what}"
        time.sleep(0.01)
    return value


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _fd_targets(pid: int) -> set[str]:
    """The pipes and sockets ``pid`` holds (their inodes name them)."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("pipe:", "socket:")):
            targets.add(target)
    return targets


class Kernel:
    """One grading kernel started as nbclient starts it, with its host-side pids."""

    def __init__(self, sealed: Sealed, folder: Path):
        self.sealed, self.folder = sealed, folder
        self.km = SandboxKernelManager(kernel_name=KERNEL_NAME)

    async def start(self) -> Kernel:
        self.folder.mkdir(parents=True, exist_ok=True)
        await self.km.start_kernel(cwd=str(self.folder))
        self.client = self.km.client()
        self.client.start_channels()
        await self.client.wait_for_ready(timeout=120)
        self.bwrap = self.km.provisioner.process
        self.init = _until(lambda: _children(self.bwrap.pid))[0]
        return self

    def forked_pid(self) -> int:
        """The kernel's pid on the host: the zygote's child (its reaper) in /init's pid
        namespace."""
        init_ns = os.readlink(f"/proc/{self.init}/ns/pid")
        zygotes = [z.process.pid for z in self.sealed.sandbox.zygotes.values()]

        def find():
            return [k for z in zygotes for k in _children(z)
                    if os.readlink(f"/proc/{k}/ns/pid") == init_ns]
        return _until(find)[0]

    async def run(self, code: str) -> str:
        said = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                said.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                said.append("\n".join(msg["content"]["traceback"]))
        await self.client.execute_interactive(code, output_hook=hook, timeout=120)
        return "".join(said)

    async def stop(self) -> None:
        self.client.stop_channels()
        await self.km.shutdown_kernel(now=False)


@pytest.fixture
def sealed(tmp_path, monkeypatch):
    # a secret of the grader's, which must not reach a zygote or a kernel
    monkeypatch.setenv("COURSE_DB_URL", "postgresql://grader:zygote-secret@db/course")
    monkeypatch.delenv("COURSE_FORK_KERNELS", raising=False)
    course = make_course(tmp_path / "course")
    sealed = Sealed(course)
    sealed.begin(ASSIGNMENT, {})
    sealed.expect_next(False)  # no kernel started ahead: each test starts its own
    yield sealed
    sealed.end()
    sealed.sandbox.close()
    sealed.close()


def test_a_forked_kernel_seen_from_the_host_holds_no_capability_and_lives_in_its_sandbox(
        sealed, tmp_path):
    """From the host: no capability in any set, the system-call filter and no new
    privileges, the sandbox's seven namespaces and cgroup (those of its /init), pid 2
    there, the sandbox's rlimits, and the zygote as its parent (it reaps it)."""
    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            pid = kernel.forked_pid()
            status = _status(pid)
            for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(status[field], 16) == 0, (field, status[field])
            assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
            assert status["NSpid"].split()[-1] == "2", status["NSpid"]
            for ns in NAMESPACES:
                assert os.readlink(f"/proc/{pid}/ns/{ns}") == \
                    os.readlink(f"/proc/{kernel.init}/ns/{ns}"), ns
                assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
            assert Path(f"/proc/{pid}/cgroup").read_text() == \
                Path(f"/proc/{kernel.init}/cgroup").read_text()
            limits = Path(f"/proc/{pid}/limits").read_text()
            memory = sealed.sandbox.limits.memory_mb * 2**20
            assert f"Max address space         {memory}" in limits, limits
            assert "Max open files            1024" in limits, limits
            assert int(status["PPid"]) in [z.process.pid for z in sealed.sandbox.zygotes.values()]
            assert Path(f"/proc/{kernel.init}/cmdline").read_bytes() == b"/init\0"
        finally:
            await kernel.stop()
    asyncio.run(main())


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "cold"])
def test_bwrap_and_the_sandbox_run_in_its_cgroup_under_its_rlimits(sealed, tmp_path, forked):
    """bwrap and everything it starts (the kernel, cold; /init beside a forked one) run
    in the sandbox's pids cgroup, under the sandbox's rlimits, soft and hard: set by sh
    and prlimit before bwrap runs (Sandbox.limited), nothing inside can raise them."""
    sealed.sandbox.fork_kernels = forked

    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            cgroup = kernel.km.cgroup
            memory = sealed.sandbox.limits.memory_mb * 2**20
            cpu = sealed.sandbox.limits.cpu_seconds
            for pid in (kernel.bwrap.pid, kernel.init):
                limits = Path(f"/proc/{pid}/limits").read_text()
                for row in (f"Max address space         {memory:<21}{memory}",
                            f"Max cpu time              {cpu:<21}{cpu}",
                            "Max open files            1024                 1024",
                            "Max core file size        0                    0"):
                    assert row in limits, (pid, row, limits)
                if cgroup is not None:
                    assert str(cgroup).split("/sys/fs/cgroup", 1)[1].split("/", 2)[2] \
                        in Path(f"/proc/{pid}/cgroup").read_text(), pid
            said = await kernel.run("import resource\n"
                                    "print(resource.getrlimit(resource.RLIMIT_AS))")
            assert said.strip() == f"({memory}, {memory})", said
        finally:
            await kernel.stop()
    asyncio.run(main())


def test_the_kernel_cannot_read_write_signal_or_trace_the_sandboxs_init(sealed, tmp_path):
    """/init is pid 1 beside the kernel: an execute-only program, so non-dumpable (its
    /proc files refuse the kernel), immune to its namespace's signals, and ptrace is
    refused by the filter. After every attempt it still runs, and so does the kernel."""
    code = '''
import ctypes, os
for path in ("/proc/1/mem", "/proc/1/environ", "/proc/1/maps", "/proc/1/syscall"):
    try:
        open(path, "rb").read(1)
        print("READ", path)
    except OSError as exc:
        print("refused", path, type(exc).__name__)
for what, fn in (("readlink", os.readlink), ("open", lambda p: open(p, "rb"))):
    try:
        fn("/proc/1/fd/0")  # /init's stdin: the pipe the kernel's end of life closes
        print("READ /proc/1/fd/0 by", what)
    except OSError as exc:
        print("refused /proc/1/fd/0 by", what, type(exc).__name__)
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", libc.ptrace(16, 1, None, None), ctypes.get_errno())
for sig in (9, 15, 19):
    os.kill(1, sig)
print("pids", sorted(p for p in os.listdir("/proc") if p.isdigit()), "me", os.getpid())
'''

    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            said = await kernel.run(code)
            assert "READ" not in said, said
            for path in ("/proc/1/mem", "/proc/1/environ", "/proc/1/maps", "/proc/1/syscall"):
                assert f"refused {path} PermissionError" in said, said
            for what in ("readlink", "open"):
                assert f"refused /proc/1/fd/0 by {what} PermissionError" in said, said
            assert "ptrace -1 1" in said, said  # EPERM
            assert "pids ['1', '2'] me 2" in said, said
            assert "ok" in await kernel.run("print('ok')")  # the kernel lives on
            assert Path(f"/proc/{kernel.init}/cmdline").read_bytes() == b"/init\0"
        finally:
            await kernel.stop()
    asyncio.run(main())


def test_a_forked_kernel_holds_no_descriptor_of_the_zygote_or_the_grader(sealed, tmp_path):
    """Of the zygote's socket and pipes, and of the grading process's, the kernel holds
    none: it got its stdin, its log and /init's pipe, and made the rest itself."""
    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            pid = kernel.forked_pid()
            theirs = _fd_targets(os.getpid())
            for zygote in sealed.sandbox.zygotes.values():
                theirs |= _fd_targets(zygote.process.pid)
            assert not (_fd_targets(pid) & theirs)
            assert os.readlink(f"/proc/{pid}/fd/1") == "/dev/null" or \
                os.readlink(f"/proc/{pid}/fd/1").startswith("pipe:")  # ipykernel's capture
        finally:
            await kernel.stop()
    asyncio.run(main())


def test_the_zygote_and_its_kernels_carry_only_the_kernels_environment(sealed, tmp_path):
    """The zygote is started with the kernel's environment, not the grader's: what a
    forked kernel finds in /proc/self/environ is its own allow-list."""
    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            (zygote,) = sealed.sandbox.zygotes.values()
            raw = Path(f"/proc/{zygote.process.pid}/environ").read_bytes()
            env = dict(item.split("=", 1) for item in raw.decode().split("\0") if item)
            kernel_env = sealed.sandbox.kernel_env()
            assert env == {k: v for k, v in kernel_env.items() if k not in PER_KERNEL_ENV}
            said = await kernel.run("import os, json; print(json.dumps(dict(os.environ)))\n"
                                    "print(open('/proc/self/environ', 'rb').read())")
            seen = json.loads(said.splitlines()[0])  # with what ipykernel adds (PAGER...)
            assert kernel_env.items() <= seen.items()  # its own judge's address too
            assert "zygote-secret" not in said and "COURSE_DB_URL" not in said, said
        finally:
            await kernel.stop()
    asyncio.run(main())


def test_a_kernel_that_ends_ends_its_sandbox_and_leaves_no_process(sealed, tmp_path):
    """The kernel ends: /init reads the end of its pipe and exits, bwrap with it (how the
    grader sees a kernel end), and the zygote reaps the kernel: nothing is left."""
    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        pid, bwrap, init = kernel.forked_pid(), kernel.bwrap, kernel.init
        zygotes = [z.process.pid for z in sealed.sandbox.zygotes.values()]
        client = kernel.client
        client.execute("import os; os._exit(3)")  # no reply: the kernel is gone
        assert await asyncio.to_thread(bwrap.wait, 120) == 0  # /init's exit status
        _until(lambda: not os.path.exists(f"/proc/{pid}"))  # reaped, not a zombie
        assert not os.path.exists(f"/proc/{init}")
        assert all(_children(z) == [] for z in zygotes)
        client.stop_channels()
        await kernel.km.shutdown_kernel(now=True)
    asyncio.run(main())


@pytest.mark.parametrize("refused", ["asking", "answering"])
def test_where_the_zygote_fails_kernels_start_cold_and_say_so(sealed, tmp_path, monkeypatch,
                                                              capfd, refused):
    """A zygote that cannot start a kernel costs speed, never a grade: the kernel starts
    cold (pid 1 of its sandbox), and stderr says once that kernels now start cold. Whether
    the request fails, or the answer read when the notebook takes its kernel (started
    ahead: judge.warm) says no: that kernel is killed, never handed its submission."""
    def refuse(*args, **kwargs):
        if refused == "answering":
            args[0].close()
        raise zygote_module.ZygoteFailed("the kernels' zygote: refused for this test")
    if refused == "asking":
        monkeypatch.setattr(zygote_module.Zygote, "fork_kernel", refuse)
    else:
        monkeypatch.setattr(zygote_module.ForkAnswer, "wait", refuse)

    async def main():
        for n in range(2):
            kernel = await Kernel(sealed, tmp_path / f"sub{n}").start()
            try:
                assert "pid 1" in await kernel.run("import os; print('pid', os.getpid())")
            finally:
                await kernel.stop()
    asyncio.run(main())
    err = capfd.readouterr().err
    assert err.count("grading kernels start cold from now on") == 1, err
    assert "refused for this test" in err
    assert not sealed.sandbox.fork_kernels and not sealed.sandbox.zygotes


def test_a_zygote_that_died_is_replaced_by_a_new_one(sealed, tmp_path):
    async def main():
        first = await Kernel(sealed, tmp_path / "a").start()
        await first.stop()
        (zygote,) = sealed.sandbox.zygotes.values()
        zygote.process.kill()
        zygote.process.wait()
        second = await Kernel(sealed, tmp_path / "b").start()
        try:
            assert "pid 2" in await second.run("import os; print('pid', os.getpid())")
            (new,) = sealed.sandbox.zygotes.values()
            assert new is not zygote and new.alive()
        finally:
            await second.stop()
    asyncio.run(main())
    assert sealed.sandbox.fork_kernels


ENDS_ABRUPTLY = '''
import asyncio, json, os, sys
sys.path.insert(0, {tests!r})
from test_zygote import Kernel
from course_lib.judge.sealed import Sealed
from toycourse import ASSIGNMENT
from pathlib import Path

sealed = Sealed(Path({course!r}))
sealed.begin(ASSIGNMENT, {{}})
sealed.expect_next(False)


async def main():
    kernel = await Kernel(sealed, Path({folder!r})).start()
    zygote = [z.process.pid for z in sealed.sandbox.zygotes.values()]
    print(json.dumps({{"zygote": zygote, "kernel": kernel.forked_pid(), "init": kernel.init,
                      "bwrap": kernel.bwrap.pid}}), flush=True)

asyncio.run(main())
os._exit(0)  # no atexit, no cleanup: as a grading process that is killed
'''


def test_the_zygote_and_its_kernels_end_with_the_grading_process(tmp_path):
    """A grading process that ends without cleaning up (killed) leaves no zygote and no
    kernel: the zygote reads the end of its socket, the sandbox dies with its parent."""
    course = make_course(tmp_path / "course")
    script = ENDS_ABRUPTLY.format(tests=str(Path(__file__).parent), course=str(course),
                                  folder=str(tmp_path / "sub"))
    env = {k: v for k, v in os.environ.items() if k != "COURSE_FORK_KERNELS"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, env=env, cwd=Path(__file__).parent.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    pids = json.loads(run.stdout.strip().splitlines()[-1])
    for pid in [*pids["zygote"], pids["kernel"], pids["init"], pids["bwrap"]]:
        _until(lambda pid=pid: not os.path.exists(f"/proc/{pid}")
               or _status(pid).get("State", "").startswith("Z"))


def test_one_zygote_forks_every_kernel_of_a_class(tmp_path, monkeypatch):
    """A class graded by one worker: every notebook's kernel is forked (pid 2) from the
    one zygote of its kind, though each submission has a judge socket of its own."""
    monkeypatch.delenv("COURSE_FORK_KERNELS", raising=False)
    course = make_course(tmp_path / "course")
    students = ["amy", "ben", "cat", "dan"]
    for student in students:
        hand_in(course, student, submission(RIGHT))
    results = grade_class(course, jobs=1)
    assert [(r.student, r.score) for r in results] == [(s, 2.0) for s in students]
    sandbox = _WORKER_API[str(course.resolve())].sealed.sandbox
    assert sandbox.fork_kernels and sandbox.zygotes_started == 1


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            pid = int(_status(pid)["PPid"])
        except (OSError, KeyError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def _zygotes() -> dict[int, int]:
    """Every zygote this process started, itself or through its workers (not a kernel
    one forked, which shows the same command line; not another grading's, which may run
    beside the tests): its pid and its parent's."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            parent = int(_status(int(entry))["PPid"])
            parent_command = Path(f"/proc/{parent}/cmdline").read_bytes()
        except (OSError, KeyError, ValueError):
            continue
        if zygote_module.MODULE.encode() in command \
                and zygote_module.MODULE.encode() not in parent_command \
                and _descends_from(int(entry), os.getpid()):
            found[int(entry)] = parent
    return found


def test_two_workers_fork_every_kernel_from_the_zygotes_the_class_started_once(
        tmp_path, monkeypatch):
    """`course grade --jobs 2`: the main process starts one zygote per kind of kernel and
    hands it to both workers, which start none of their own (torch's import once per
    class, not once per worker); every kernel is forked (right only as pid 2), and the
    zygotes end with the grading."""
    monkeypatch.delenv("COURSE_FORK_KERNELS", raising=False)
    course = make_course(tmp_path / "course")
    students = ["amy", "ben", "cat", "dan", "eve", "fay"]
    for student in students:
        hand_in(course, student, submission(RIGHT_ONLY_AS_PID_2))
    before, seen = set(_zygotes()), {}
    watching = True

    def watch():
        while watching:
            seen.update((pid, parent) for pid, parent in _zygotes().items()
                        if pid not in before)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = grade_class(course, jobs=2)
    finally:
        watching = False
        watcher.join()
    assert [(r.student, r.score) for r in results] == [(s, 2.0) for s in students]
    assert len(seen) == 1 and set(seen.values()) == {os.getpid()}, seen
    (zygote,) = seen
    _until(lambda: not os.path.exists(f"/proc/{zygote}")
           or _status(zygote).get("State", "").startswith("Z"))


def test_zygotes_shared_before_one_that_cannot_start_are_ended(tmp_path, monkeypatch):
    """share_zygotes starts one zygote per kind of kernel: where one cannot start, those
    started before it end with the error (the caller's workers then start their own)."""
    from course_lib.judge import sealed as sealed_module

    monkeypatch.delenv("COURSE_FORK_KERNELS", raising=False)
    course = make_course(tmp_path / "course")
    started, real_init = [], zygote_module.Zygote.__init__

    def second_fails(self, env, folder):
        if started:
            raise OSError("no second zygote, for this test")
        real_init(self, env, folder)
        started.append(self)

    monkeypatch.setattr(zygote_module.Zygote, "__init__", second_fails)
    folder = tmp_path / "shared"
    folder.mkdir()
    # the toy lesson's kernels (numpy) and, for a lesson whose source cannot be read, torch's
    with pytest.raises(OSError, match="no second zygote"):
        sealed_module.share_zygotes(course, [ASSIGNMENT, "no_such_lesson"],
                                    sealed_module.Settings(), folder)
    (first,) = started
    assert first.process.poll() is not None  # ended and reaped
