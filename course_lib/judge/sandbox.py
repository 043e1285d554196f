"""The grading kernel's operating-system sandbox (bubblewrap).

Everything the grader believes about a submission must come from outside the
process that runs the student's code: an audit hook or a path check inside
that process is a speed bump, since the code it guards can reach it. So the
kernel runs in a sandbox that the Linux kernel enforces, built by ``bwrap``
for each notebook:

    namespaces   new user (uid 65534, no capabilities, no further user
                 namespaces), pid (the kernel sees no process but its own and,
                 for a kernel forked from a zygote, INIT's, which it can neither
                 ptrace nor read: no bwrap init beside it), ipc, uts, cgroup and
                 network (no interface but loopback: no network at all)
    start        a kernel is forked, with numpy (and torch) imported, from a
                 zygote outside every sandbox, and joins the sandbox bwrap has
                 built around INIT (judge.zygote); where that fails, it starts
                 cold: bwrap runs the kernel's command itself, as pid 1
    files        an empty root with, read-only: /usr (and the /bin, /lib
                 links), the Python runtime, the virtual environment's
                 libraries, and the grading runtime (the *student's*
                 course_lib and the judge's client). Writable: one scratch copy
                 of the submission (the kernel's working folder), a small
                 tmpfs home and /tmp, and the folder of the kernel's own
                 sockets; the root itself is read-only. The course folder,
                 the gradebook, source/, other students' work, the full
                 course_lib with the answers and the grader's own files do
                 not exist inside.
    environment  an allow-list (ALLOWED_ENV and what the kernel needs):
                 nothing of the grader's, no database URL, no credentials
    limits       address space, file size, open files and CPU time
                 (setrlimit, before bwrap starts, so nothing inside can raise
                 them); the number of processes through a pids cgroup where
                 one can be made
    lifetime     ``--die-with-parent``: when the grading process dies, every
                 process of the sandbox gets SIGKILL
    channels     Jupyter's protocol over ``ipc`` (Unix sockets in the kernel's
                 own folder) and the judge's socket in a folder bound read-only:
                 no TCP port, so two kernels never race for one either

``SandboxKernelManager`` is the jupyter_client kernel manager that nbclient
(and so nbgrader's Execute) uses while grading: it launches the kernelspec's
command inside such a sandbox and tells the judge the pid of the process it
started, which is the only pid the judge ever signals.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..data import sandbox_digits_binds
from .polled_client import PolledKernelManager
from .warm import Standby, WarmPool
from .zygote import Zygote, ZygoteFailed

HOME = "/home/student"
WORK = HOME + "/work"  # the kernel's working folder: a copy of the submission
SUBMISSION = "/submission"  # the submission as handed in, read-only
SANDBOX_UID = 65534  # nobody
INIT = "/init"  # a forked kernel's pid 1: an execute-only cat (judge.zygote)
LAUNCHER = "course_lib.judge.launcher"  # the kernel a zygote can fork

# What differs from one kernel to the next: the judge's socket is new for each
# submission. A zygote (judge.zygote) is started without it; each kernel it forks gets
# its own with the rest of its environment.
PER_KERNEL_ENV = ("COURSE_JUDGE",)

# Zygotes this process was given (sealed.share_zygotes): a warm `course check` server's,
# which its graders inherit as it forks them (instructor.check_server), or those the
# main process of `course grade` hands its workers (grade._share_zygotes). Never closed
# here (their owner ends them); several processes may ask one for a kernel at once
# (each request has its own answer: Zygote.fork_kernel).
INHERITED_ZYGOTES: dict[tuple, Zygote] = {}

# Variables the kernel may see (their values are the grader's); the rest of
# its environment is set here, and nothing else crosses into the sandbox.
ALLOWED_ENV = ("LANG", "LC_ALL", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

NO_TORCH = '''"""torch is not available while this lesson is graded.

The lesson asks for the gradients by hand: a graded function must compute
with numpy. ``import torch`` still works, so a notebook that compares its
answers with autograd runs as before; whatever uses torch stops with the
message below, and only a graded function that needs torch loses its points.
"""
MESSAGE = ("torch is not available while this lesson is graded: the graded functions must "
           "compute their results with numpy (comparing with torch is fine while you work; "
           "those cells stop here when the notebook is graded)")
__path__ = []


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(MESSAGE)
'''


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run here: grading would not be sealed."""


@dataclass
class Limits:
    """What one grading kernel may use (nbgrader_config.py, section ``Judge``)."""

    memory_mb: int = 6144  # address space of each process
    processes: int = 256  # processes and threads in the sandbox (pids cgroup)
    file_mb: int = 64  # largest file it may write
    cpu_seconds: int = 600  # CPU time of each process, a backstop behind the judge's clock
    tmpfs_mb: int = 256  # home and /tmp, each


def _prlimit() -> str:
    """util-linux's prlimit (every Debian and Ubuntu has it: util-linux is essential)."""
    found = shutil.which("prlimit")
    if found is None:
        raise SandboxUnavailable("sealed grading needs prlimit (util-linux): install it "
                                 "(Debian/Ubuntu: apt-get install util-linux), or pass "
                                 "--unsealed to grade with stock nbgrader")
    return found


@functools.cache
def check_available() -> str:
    """The path of a bwrap that works here, or SandboxUnavailable saying what is missing."""
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(
            f"sealed grading needs Linux (bubblewrap and user namespaces); this is {sys.platform}. "
            "Grade on a Linux machine, or pass --unsealed to grade with stock nbgrader "
            "(the students' code then runs unconfined, with the answers in reach)")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "sealed grading needs bubblewrap: install it (Debian/Ubuntu: apt-get install "
            "bubblewrap; `make setup` does it), or pass --unsealed to grade with stock nbgrader")
    probe = [bwrap, *_namespaces(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
             "true"]
    run = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise SandboxUnavailable(
            "bubblewrap cannot make a sandbox here: " + (run.stderr.strip() or "exit "
                                                         f"{run.returncode}")
            + ". It needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1"
            " or user.max_user_namespaces > 0; in a container, one started with them allowed), "
            "or pass --unsealed to grade with stock nbgrader")
    _prlimit()
    return bwrap


def _namespaces() -> list[str]:
    return ["--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
            "--unshare-uts", "--unshare-cgroup-try", "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID)]


@dataclass
class KernelBox:
    """One kernel's sandbox: its folders on the host and how to start it."""

    folder: Path  # private; removed when the kernel is gone
    connection: Path  # the kernel's sockets and connection file (bound read-write)
    work: Path  # the scratch copy of the submission (bound read-write at WORK)
    log: Path  # the kernel's stderr, for a kernel that does not start


# What a lesson that uses torch imports anyway: torch, and what autograd imports the
# first time a backward is given its gradient (``y.backward(g)``, gradcheck): torch's
# symbolic shapes, with sympy, 0.3-0.4 s of that cell, a fifth of lesson 05's own time.
TORCH_PRELOAD = ("torch", "torch.fx.experimental.symbolic_shapes")

# What the lessons import of the course's own student modules (their import cells; a
# test keeps this in step with them), imported before the submission like numpy: a
# kernel forked from a zygote (judge.zygote) has them for nothing, where each notebook
# paid 40-50 ms to import them. In grading mode (course_lib._drawing) none of them
# imports matplotlib or ipywidgets. The torch lesson's own come with torch.
COURSE_PRELOAD = ("course_lib.nets", "course_lib.gradcheck", "course_lib.data",
                  "course_lib.grading", "course_lib.figures.chain_rule",
                  "course_lib.figures.sigmoid", "course_lib.figures.softmax",
                  "course_lib.figures.mlp", "course_lib.widgets")
COURSE_TORCH_PRELOAD = ("course_lib.figures.autograd", "course_lib.widgets.autograd")
# numpy 2 imports numpy.random only when first used (`np.random.default_rng`), which
# four lessons of five do, in their visible tests: 10 ms each, paid by the first such
# cell; preloaded, a forked kernel has it for nothing. (The zygote seeded its global
# generator once: each forked kernel seeds it again, judge.zygote._fresh_random_state.)
NUMPY_PRELOAD = ("numpy", "numpy.random")

# Sandbox.next_kernel: the kernel started ahead is one like the current notebook's (what
# `course check` and the bench assume); None: start none, no notebook follows.
SAME = "same"


class Sandbox:
    """The sandbox every grading kernel of this process runs in.

    Args:
        folder: the grading process's private folder (judge.server.Judge.folder):
            kernels get their own folders below it.
        runtime: the grading runtime (the student's course_lib, the judge's client).
        judge_dir: the folder of the judge's socket (bound read-only).
        hidden: folders that must not exist inside even where a bound tree holds
            them (the course folders, the full course_lib).
        limits: Limits.
    """

    def __init__(self, folder: Path, runtime: Path, judge_dir: Path, hidden=(),
                 limits: Limits | None = None):
        self.bwrap = check_available()
        self.folder, self.runtime, self.judge_dir = Path(folder), Path(runtime), Path(judge_dir)
        self.limits = limits or Limits()
        self.hidden = [os.path.realpath(p) for p in hidden]
        self.no_torch = False  # set per assignment (Sealed.for_assignment)
        self.preload_torch = True  # likewise: does the lesson import torch?
        # the kernel the next notebook needs (Sealed.expect_next): SAME, None, or its
        # (no_torch, preload_torch)
        self.next_kernel: str | tuple[bool, bool] | None = SAME
        self.env: dict[str, str] = {}  # set by Sealed: what the kernel needs
        self._torch_stub = self.folder / "no-torch"
        (self._torch_stub).mkdir(exist_ok=True)
        (self._torch_stub / "__init__.py").write_text(NO_TORCH)
        self.warm = WarmPool()  # the next notebook's kernel, started ahead (judge.warm)
        # Kernels forked from a zygote per kind of kernel (judge.zygote), unless that is
        # off (COURSE_FORK_KERNELS=0) or failed once in this process (then: cold starts).
        self.fork_kernels = os.environ.get("COURSE_FORK_KERNELS", "1") != "0"
        self.zygotes: dict[tuple, Zygote] = {}
        self.zygotes_started = 0  # the bench and tests read it: one per kind of kernel
        self._init = self.folder / "init"
        self._empty = self.folder / "empty"  # bound over what the kernel must not read
        self._empty.write_bytes(b"")
        atexit.register(self.close)  # after the pool's own (atexit runs the last first)
        _compile_runtime(self.runtime)

    def forks(self, kernel_cmd: list[str]) -> bool:
        """Is a kernel with this command forked from a zygote (else started cold)?"""
        return self.fork_kernels and kernel_cmd[:4] == [sys.executable, "-S", "-m", LAUNCHER]

    def stop_forking(self, why: str) -> None:
        """Start every kernel cold from now on (a zygote failed: said once, on stderr)."""
        if self.fork_kernels:
            self.fork_kernels = False
            print(f"course: grading kernels start cold from now on ({why})", file=sys.stderr)
        self.close_zygotes()

    def zygote(self) -> Zygote:
        """The zygote of the kernels this sandbox starts now (one per environment: with
        numpy, or with numpy and torch): one this process inherited (INHERITED_ZYGOTES),
        else its own, started now."""
        env = {k: v for k, v in self.kernel_env().items() if k not in PER_KERNEL_ENV}
        key = tuple(sorted(env.items()))
        if not self._init.exists():
            shutil.copyfile(shutil.which("cat") or "/usr/bin/cat", self._init)
            self._init.chmod(0o111)  # execute-only: judge.zygote says why
        zygote = self.zygotes.get(key)
        if zygote is None and key in INHERITED_ZYGOTES:
            return INHERITED_ZYGOTES[key]  # a dead one fails its fork: then cold starts
        if zygote is None or not zygote.alive():
            if zygote is not None:
                zygote.close()
            zygote = self.zygotes[key] = Zygote(env, self.folder / "zygotes" / uuid.uuid4().hex[:8])
            self.zygotes_started += 1
        return zygote

    def close_zygotes(self) -> None:
        zygotes, self.zygotes = list(self.zygotes.values()), {}
        for zygote in zygotes:
            zygote.close()

    def close(self) -> None:
        """Kill the standby kernel and end the zygotes (kernels running live on)."""
        self.warm.close()
        self.close_zygotes()

    def preload(self) -> list[str]:
        """What a kernel imports before it waits for its submission (judge.warm): numpy
        (with numpy.random) and the course's student modules, and torch with the torch
        lesson's own where the lesson imports torch (never where torch is the stub)."""
        torch = self.preload_torch and not self.no_torch and _torch_folder()
        return [*NUMPY_PRELOAD, *COURSE_PRELOAD,
                *((*TORCH_PRELOAD, *COURSE_TORCH_PRELOAD) if torch else ())]

    # -- the folders --------------------------------------------------------------
    def new_box(self, submission: Path | None = None) -> KernelBox:
        """A kernel's folders; its work folder (bound read-only at SUBMISSION) stays
        empty until ``place_submission`` (a standby kernel gets its submission late)."""
        folder = self.folder / "kernels" / uuid.uuid4().hex[:12]
        box = KernelBox(folder, folder / "c", folder / "work", folder / "kernel.log")
        box.connection.mkdir(parents=True)
        box.work.mkdir()
        if submission is not None:
            self.place_submission(box, submission)
        return box

    def place_submission(self, box: KernelBox, submission: Path | None) -> None:
        _copy_submission(submission, box.work)

    def key(self, kernel_cmd: list[str]) -> tuple:
        """What makes two kernels' sandboxes the same: the bwrap command but for the
        box's own folders, the kernel's command, and the limits (a standby is adopted
        only for the same key)."""
        argv = self.command(_SAME_BOX, kernel_cmd, forked=self.forks(kernel_cmd))
        return (tuple(argv), tuple(kernel_cmd), tuple(vars(self.limits).items()))

    # -- the command ----------------------------------------------------------------
    def command(self, box: KernelBox, kernel_cmd: list[str], forked: bool = False) -> list[str]:
        """``kernel_cmd`` wrapped in bwrap: the sandbox described in this module; with
        ``forked``, the sandbox is built around INIT, which a kernel forked from a
        zygote then joins as pid 2 (judge.zygote)."""
        # --as-pid-1: the kernel (or INIT) is pid 1. Without it bwrap's own init would
        # be pid 1: same uid, dumpable, no system-call filter, so the kernel could
        # ptrace it (or write /proc/1/mem) and have it start programs, or clear its
        # parent-death signal and outlive grading (tests/test_sandbox_attacks.py).
        argv = [self.bwrap, *_namespaces(), "--as-pid-1", "--disable-userns",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "grading",
                "--proc", "/proc",
                # the keys of every keyring the kernel's uid may view, by name (the kernel
                # has none of its own: judge.launcher.leave_the_keyrings)
                "--ro-bind", str(self._empty), "/proc/keys",
                "--ro-bind", str(self._empty), "/proc/key-users",
                "--dev", "/dev",
                # bwrap's /dev is a tmpfs without a size (/dev/shm a folder in it): read-only;
                # the device nodes in it (/dev/null...) stay writable
                "--remount-ro", "/dev",
                "--size", str(self.limits.tmpfs_mb * 2**20), "--tmpfs", "/tmp",
                "--size", str(self.limits.tmpfs_mb * 2**20), "--tmpfs", HOME]
        bound = []
        for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64"):
            path = Path("/") / top
            if path.is_symlink():
                argv += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                argv += ["--ro-bind", str(path), str(path)]
                bound.append(str(path))
        for etc in ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives"):
            argv += ["--ro-bind-try", etc, etc]
        for tree in _python_trees():
            if not any(_under(tree, b) for b in bound):
                argv += ["--ro-bind", tree, tree]
                bound.append(tree)
        # What a bound tree may hold but the kernel must not see: an empty
        # folder mounted over it (the course, the full course_lib with the answers).
        for path in self.hidden:
            if any(_under(path, b) for b in bound) and os.path.isdir(path):
                argv += ["--tmpfs", path, "--remount-ro", path]
        if self.no_torch and (torch := _torch_folder()):
            argv += ["--ro-bind", str(self._torch_stub), torch]
        # scikit-learn's digits without the judge's held-out samples, mounted over the
        # installed file: they never exist where the student's code runs (course_lib.data)
        argv += sandbox_digits_binds(self.folder)
        if forked:
            argv += ["--ro-bind", str(self._init), INIT]
        argv += ["--ro-bind", str(self.runtime), str(self.runtime),
                 "--ro-bind", str(self.judge_dir), str(self.judge_dir),
                 "--bind", str(box.connection), str(box.connection),
                 # the submission read-only; the launcher copies it into WORK, on the
                 # size-limited home (judge.launcher.fill_work_folder)
                 "--ro-bind", str(box.work), SUBMISSION, "--dir", WORK,
                 # bwrap's root is a tmpfs without a size: read-only once everything is
                 # mounted, so that only the sized tmpfs and the bound folders take writes
                 "--remount-ro", "/", "--chdir", WORK, "--clearenv"]
        for key, value in self.kernel_env().items():
            argv += ["--setenv", key, value]
        return [*argv, "--", *([INIT] if forked else kernel_cmd)]

    def kernel_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ALLOWED_ENV if k in os.environ}
        env.setdefault("LANG", "C.UTF-8")
        env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME,
                    "TMPDIR": "/tmp", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                    "IPYTHONDIR": HOME + "/.ipython", "MPLCONFIGDIR": "/tmp/matplotlib",
                    "JUPYTER_RUNTIME_DIR": "/tmp/jupyter", "COURSE_SUBMISSION": SUBMISSION,
                    # judge.launcher: import these, then wait for the submission (judge.warm)
                    "COURSE_PRELOAD": ",".join(self.preload())})
        env.update(self.env)
        return env

    def rlimits(self) -> list[tuple[int, int]]:
        """The resource limits of every process of the sandbox (soft and hard alike)."""
        lim = self.limits
        return [(resource.RLIMIT_AS, lim.memory_mb * 2**20),
                (resource.RLIMIT_FSIZE, lim.file_mb * 2**20),
                (resource.RLIMIT_CPU, lim.cpu_seconds),
                (resource.RLIMIT_NOFILE, 1024),
                (resource.RLIMIT_CORE, 0)]

    def limited(self, command: list[str], cgroup: Path | None) -> list[str]:
        """``command`` started under the limits nothing inside can raise: in ``cgroup``
        (the sandbox's pids limit) and with rlimits(), both set by the programs that exec
        it (sh, util-linux's prlimit), not by Python code in the forked child (Popen's
        preexec_fn): that forked the whole grading process, torch and all (30 ms a
        kernel), with its other threads' locks held, where subprocess can vfork."""
        names = {resource.RLIMIT_AS: "as", resource.RLIMIT_FSIZE: "fsize",
                 resource.RLIMIT_CPU: "cpu", resource.RLIMIT_NOFILE: "nofile",
                 resource.RLIMIT_CORE: "core"}
        limited = [_prlimit(), *(f"--{names[which]}={value}:{value}"
                                 for which, value in self.rlimits()), "--", *command]
        if cgroup is None:
            return limited
        # sh joins the cgroup ("0": the writer), then becomes prlimit, then the command
        return ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', str(cgroup / "cgroup.procs"),
                *limited]


def _copy_submission(submission: Path | None, work: Path, max_files: int = 1000,
                     max_bytes: int = 64 * 2**20) -> None:
    """The submission's regular files into ``work``: no links, no hidden folders,
    at most ``max_files`` files and ``max_bytes`` in all (nbgrader's autograded
    folder of one student: the notebook and whatever they handed in with it)."""
    work.mkdir(parents=True, exist_ok=True)
    if submission is None or not Path(submission).is_dir():
        return
    submission = Path(submission)
    files, total = [], 0
    for src in sorted(submission.rglob("*")):  # listed in full before anything is written
        rel = src.relative_to(submission)
        if src.is_symlink() or any(p.startswith(".") for p in rel.parts) or not src.is_file():
            continue
        total += src.stat().st_size
        if len(files) == max_files or total > max_bytes:
            break
        files.append(rel)
    for rel in files:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(submission / rel, work / rel)


# The box every kernel's command is compared with (Sandbox.key): its folders stand for
# whichever box a kernel gets.
_SAME_BOX = KernelBox(Path("/box"), Path("/box/c"), Path("/box/work"), Path("/box/kernel.log"))


def _compile_runtime(runtime: Path) -> None:
    """Byte-compile the grading runtime once, here: the kernel imports it read-only with
    PYTHONDONTWRITEBYTECODE, so without this every kernel compiled course_lib again."""
    import compileall

    if Path(runtime).is_dir():
        compileall.compile_dir(str(runtime), quiet=2, workers=1)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@functools.cache
def _python_trees() -> tuple[str, ...]:
    """The Python runtime and the virtual environment (each as a real path)."""
    trees = []
    for p in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))):
        real = os.path.realpath(p)
        if not any(_under(real, t) for t in trees):
            trees = [t for t in trees if not _under(t, real)] + [real]
    return tuple(trees)


@functools.cache
def _torch_folder() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    return os.path.dirname(os.path.realpath(spec.origin))


# -- the pids cgroup --------------------------------------------------------------------

def _cgroup_parent() -> Path | None:
    """Where this process may make pids cgroups (cgroup v2 or v1), or None."""
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/pids")):
        controllers = root / "cgroup.controllers"
        if root == Path("/sys/fs/cgroup") and not (
                controllers.is_file() and "pids" in controllers.read_text().split()):
            continue
        if not (root / "cgroup.procs").is_file():
            continue
        if os.access(root, os.W_OK):
            parent = root / "course-grading"
            try:
                parent.mkdir(exist_ok=True)
                if root == Path("/sys/fs/cgroup"):  # v2: let children limit pids
                    (root / "cgroup.subtree_control").write_text("+pids")
                    (parent / "cgroup.subtree_control").write_text("+pids")
                return parent
            except OSError:
                continue
    return None


def make_cgroup(processes: int) -> Path | None:
    """A pids cgroup limited to ``processes``, or None where none can be made."""
    parent = _cgroup_parent()
    if parent is None:
        return None
    _sweep_stale_cgroups(parent)
    group = parent / f"k{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "pids.max").write_text(str(processes))
    except OSError:
        return None
    return group


def _sweep_stale_cgroups(parent: Path) -> None:
    """Remove the empty cgroups of grading processes that are gone (k<pid>-...)."""
    for group in parent.glob("k*-*"):
        pid = group.name[1:].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                group.rmdir()
            except OSError:
                pass  # not empty: a sandbox of it still runs (it dies with its parent)


def remove_cgroup(group: Path | None, wait: float = 2.0) -> None:
    """Remove the sandbox's pids cgroup, killing whatever is still in it (only the
    sandbox's own processes can be)."""
    if group is None:
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            group.rmdir()  # empty once the sandbox's processes are gone
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)


# -- the kernel manager --------------------------------------------------------------

def _bwrap_child(bwrap_pid: int) -> int | None:
    """bwrap's child, the sandbox's pid 1, or None while there is none yet (OSError:
    bwrap is gone, or Linux has no /proc children file)."""
    pids = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()
    return int(pids[0]) if pids else None


def _init_of(process, box: KernelBox, wait: float = 30.0) -> int:
    """The pid of INIT, bwrap's child, once it runs INIT (the sandbox is complete)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ZygoteFailed(f"bwrap ended ({process.returncode}) before the sandbox was "
                               "complete: " + box.log.read_text(errors="replace").strip())
        try:
            init = _bwrap_child(process.pid)
            if init and Path(f"/proc/{init}/comm").read_text().strip() == "init":
                return init
        except OSError:
            pass
        time.sleep(0.001)
    raise ZygoteFailed(f"the sandbox was not complete after {wait:.0f} s")


def _kill_group(process) -> None:
    """SIGKILL bwrap's session (the sandbox dies with it) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass
    process.wait()


async def _child_pidfd(bwrap_pid: int, wait: float = 5.0) -> int | None:
    """A pidfd on bwrap's child (the sandbox's pid 1), or None (no /proc children file,
    or bwrap already gone)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            child = _bwrap_child(bwrap_pid)
        except OSError:
            return None
        if child:
            try:
                return os.pidfd_open(child)
            except OSError:
                return None
        await asyncio.sleep(0.01)
    return None


# Stands for the connection file in a kernel's command template (absolute, so that
# jupyter_client's realpath leaves it as it is).
CONNECTION_FILE = "/{connection_file}"
_ACTIVE: Sandbox | None = None  # the sandbox of this process (set by Sealed)
_WATCHER = None  # the judge: kernel_started(pid), kernel_stopped(last stderr lines)


def activate(sandbox: Sandbox | None, watcher=None) -> None:
    """Kernels started in this process from now on run in ``sandbox`` and are
    reported to ``watcher`` (the judge)."""
    global _ACTIVE, _WATCHER
    _ACTIVE, _WATCHER = sandbox, watcher


class SandboxKernelManager(PolledKernelManager):
    """A kernel manager that starts its kernel inside the active Sandbox, over ipc
    (its clients poll in slices: polled_client says why)."""

    fork = True  # a kernel forked from the sandbox's zygote where it can be (judge.zygote)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if _ACTIVE is None:
            raise SandboxUnavailable("no sandbox is active in this process (course_lib.judge."
                                     "sealed.Sealed sets one up)")
        self.sandbox = _ACTIVE
        self.box: KernelBox | None = None
        self.cgroup: Path | None = None
        self.init_pidfd: int | None = None  # the sandbox's pid 1 (kernel or INIT), for cleanup
        self.transport = "ipc"
        self.template: list[str] = []  # the kernel's command, CONNECTION_FILE left open
        self.key: tuple | None = None  # its sandbox (Sandbox.key), as judge.warm compares them
        self.standby: Standby | None = None
        self.warm = False  # did this kernel start ahead (a standby)?
        self.submission = None

    async def _async_pre_start_kernel(self, **kw):
        # The kernel's command with its connection file left open: what a standby was
        # started with (judge.warm), and what a cold start runs now.
        self.connection_file = CONNECTION_FILE
        self.template = self.format_kernel_cmd(extra_arguments=kw.get("extra_arguments", []))
        self.submission = kw.get("cwd")
        self.key = (type(self).__name__, *self.sandbox.key(self.template))
        self.standby, self.warm = self.sandbox.warm.take(self.key, self._new_standby)
        try:
            self.standby.entered()
        except ZygoteFailed as exc:  # costs speed, never a grade: a cold start instead
            self.standby.kill()
            self.sandbox.stop_forking(str(exc))
            self.standby, self.warm = self._new_standby(), False
        self.box = self.standby.box
        self.connection_file = str(self.box.connection / "kernel.json")
        # the sockets, key and scheme the kernel already has (ipc "ports": k-1, k-2...)
        self.load_connection_info(self.standby.info)
        self._connection_file_written = True
        try:
            return await super()._async_pre_start_kernel(**kw)
        except BaseException:
            self.standby.kill()
            self.box = None
            raise

    @classmethod
    def start_ahead(cls, sandbox: Sandbox, kernel_name: str, extra_arguments=()) -> None:
        """Start the kernel the next notebook will get (``course check``: while nbgrader
        sets up), as a manager nbclient makes would start it (judge.warm)."""
        previous = _ACTIVE, _WATCHER
        activate(sandbox, previous[1])
        try:
            km = cls(kernel_name=kernel_name)
        finally:
            activate(*previous)
        km.connection_file = CONNECTION_FILE
        km.template = km.format_kernel_cmd(extra_arguments=list(extra_arguments))
        km.key = (cls.__name__, *sandbox.key(km.template))
        sandbox.warm.prepare(km.key, km._new_standby)

    def _new_standby(self, key: tuple | None = None) -> Standby:
        """Start a kernel in a new sandbox (for ``key``, default this manager's); it
        waits for its submission (judge.warm)."""
        from jupyter_client.connect import write_connection_file

        box = self.sandbox.new_box()
        connection_file = str(box.connection / "kernel.json")
        _, info = write_connection_file(connection_file, ip=str(box.connection / "k"),
                                        transport="ipc", key=uuid.uuid4().hex.encode(),
                                        kernel_name=self.kernel_name)
        cmd = [a.replace(CONNECTION_FILE, connection_file) for a in self.template]
        cgroup = make_cgroup(self.sandbox.limits.processes)
        stdin, go = os.pipe()  # the kernel waits on stdin until "go" (judge.launcher)
        try:
            with box.log.open("wb") as log:
                process = forked = None
                if self.fork and self.sandbox.forks(cmd):
                    try:
                        process, forked = self._fork(box, cmd, cgroup, log, stdin)
                    except ZygoteFailed as exc:
                        self.sandbox.stop_forking(str(exc))
                        log.seek(0)  # the log is the cold kernel's alone (it says why)
                        log.truncate()
                if process is None:
                    process = self._launch(box, cmd, cgroup, log, stdin)
        except BaseException:
            os.close(go)
            remove_cgroup(cgroup)
            shutil.rmtree(box.folder, ignore_errors=True)
            raise
        finally:
            os.close(stdin)
        return Standby(key or self.key, box, process, dict(info), cgroup, go, forked=forked)

    def _launch(self, box: KernelBox, cmd: list[str], cgroup, log, stdin: int,
                forked: bool = False):
        """bwrap running ``cmd``, or INIT (``forked``), in its own session (jupyter_client's
        launch)."""
        from jupyter_client.launcher import launch_kernel

        return launch_kernel(self.sandbox.limited(self.sandbox.command(box, cmd, forked),
                                                  cgroup),
                             stdin=stdin, stdout=subprocess.DEVNULL, stderr=log,
                             cwd=str(box.folder),
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})  # bwrap's

    def _fork(self, box: KernelBox, cmd: list[str], cgroup, log, stdin: int):
        """The sandbox built around INIT, and the kernel forked into it (judge.zygote):
        bwrap, which ends when the kernel does, as a cold start's, and the zygote's
        answer (zygote.ForkAnswer), which the kernel's notebook waits for (Standby.entered)
        rather than the notebook graded while it starts."""
        zygote = self.sandbox.zygote()
        life, life_end = os.pipe()  # INIT reads ``life`` until the kernel holds no end
        try:
            process = self._launch(box, cmd, cgroup, log, life, forked=True)
        finally:
            os.close(life)
        pidfd = None
        try:
            init = _init_of(process, box)
            pidfd = os.pidfd_open(init)
            forked = zygote.fork_kernel(init, pidfd, [stdin, log.fileno(), life_end],
                                        cwd=WORK, argv=cmd[4:], env=self.sandbox.kernel_env(),
                                        limits=self.sandbox.rlimits(), cgroup=cgroup)
        except BaseException:
            _kill_group(process)
            raise
        finally:
            os.close(life_end)
            if pidfd is not None:
                os.close(pidfd)
        return process, forked

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        """Hand the submission to the kernel taken in _async_pre_start_kernel."""
        standby, provisioner = self.standby, self.provisioner
        provisioner.process, provisioner.pid = standby.process, standby.process.pid
        try:
            provisioner.pgid = os.getpgid(standby.process.pid)
        except OSError:
            provisioner.pgid = None
        provisioner.cwd = str(standby.box.folder)
        self.cgroup = standby.cgroup
        try:
            self.sandbox.place_submission(standby.box, self.submission)
            self.init_pidfd = await self._kernel_pidfd(standby.process)
        except BaseException:
            standby.close_pipe()  # its stdin ends without "go": it exits (cleanup kills it)
            raise
        standby.go()
        if _WATCHER is not None:
            _WATCHER.kernel_started(standby.process.pid)
        # The next notebook's kernel starts now, beside this one (judge.warm): a short
        # notebook is over before a kernel is up, so waiting until this one answers
        # left the next notebook waiting for most of a start.
        self._start_next()

    def _start_next(self) -> None:
        """Start the kernel the next notebook will take, as Sandbox.next_kernel says: one
        like this (SAME), none (no notebook follows: a kernel started for nothing cost
        as much CPU as a notebook), or one for the next assignment's torch settings
        (this kernel has its sandbox already: the settings now serve the next one)."""
        then = self.sandbox.next_kernel
        if self.key is None or then is None:
            return
        if then != SAME:
            self.sandbox.no_torch, self.sandbox.preload_torch = then
        key = (type(self).__name__, *self.sandbox.key(self.template))
        self.sandbox.warm.prepare(key, functools.partial(self._new_standby, key))

    async def _kernel_pidfd(self, process) -> int | None:
        """A pidfd on the sandbox's pid 1, bwrap's child: the kernel, or INIT beside a forked
        kernel (SIGKILL to either ends the sandbox)."""
        return await _child_pidfd(process.pid)

    def kill_sandbox(self) -> None:
        """SIGKILL bwrap's process group and the sandbox's pid 1, whatever state they are
        in. Cleanup runs even when stopping the kernel failed (nbclient), and bwrap's
        --die-with-parent alone misses a grader that dies while bwrap is starting: a
        sandbox that outlived its notebook was seen (tests/test_sandbox_attacks.py)."""
        process = getattr(self.provisioner, "process", None) if self.provisioner else None
        if process is not None and process.poll() is None:
            try:
                if os.getpgid(process.pid) == process.pid:  # its own session (jupyter_client)
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
            except OSError:
                pass
        if self.init_pidfd is not None:
            try:
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
            except OSError:
                pass  # already gone
            os.close(self.init_pidfd)
            self.init_pidfd = None

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        if not restart:
            self.kill_sandbox()
        await super()._async_cleanup_resources(restart=restart)
        remove_cgroup(self.cgroup)
        self.cgroup = None
        if self.box is not None and not restart:
            if _WATCHER is not None:
                _WATCHER.kernel_stopped(self.last_error_lines())
            try:
                self.box.connection.chmod(0o700)  # sealed: open it again to remove it
            except OSError:
                pass
            shutil.rmtree(self.box.folder, ignore_errors=True)
            self.box = None

    # jupyter_client binds the public name to its own implementation; nbclient calls
    # it (not shutdown_kernel) for a kernel that is already dead, e.g. one that never
    # started: without this, such a sandbox's folder, cgroup and log were left behind.
    cleanup_resources = _async_cleanup_resources

    def seal_socket_folder(self) -> None:
        """Once the kernel has made its sockets (it answers), its folder on the grading
        machine's disk becomes read-only to it: nothing else may be written there. The
        kernel cannot make it writable again (its owner bits; chmod is refused by the
        launcher's system-call filter)."""
        if self.box is not None:
            (self.box.connection / "kernel.json").chmod(0o400)
            self.box.connection.chmod(0o500)

    def last_error_lines(self, n: int = 8) -> str:
        """The end of the kernel's stderr (for a kernel that did not start)."""
        if self.box is None or not self.box.log.is_file():
            return ""
        lines = [ln for ln in self.box.log.read_text(errors="replace").splitlines() if ln.strip()]
        return "\n".join(lines[-n:])
