"""Start the grading kernel inside its sandbox: no new programs, then ipykernel.

Run (by judge.sandbox, inside bubblewrap) as
``python -S -m course_lib.judge.launcher -f CONNECTION_FILE``, or, in a kernel
forked from a zygote that has joined its sandbox, as ``main()`` with that
command line (judge.zygote).

After ipykernel has set itself up and before it takes its first message (so
before the first line of the notebook runs), this installs a seccomp filter
(Linux's system-call filter: once installed, in every thread of the process,
no code in it can remove or loosen it) that refuses

- ``execve``/``execveat``: no program can be started, by ``subprocess``,
  ``os.system``, ``%%bash``, ``os.posix_spawn``, ``ctypes`` or a thread;
- ``fork``/``vfork`` and a ``clone`` that makes a process rather than a
  thread: nothing can outlive the notebook or run beside it unseen
  (threads still work: ``clone`` with ``CLONE_THREAD``; ``clone3`` answers
  ENOSYS, so the C library falls back to ``clone`` for threads);
- every system call of another ABI (32-bit or x32 calls on a 64-bit kernel),
  whose numbers would slip past the rules above;
- ``prctl(PR_SET_PDEATHSIG, ...)``: a cold kernel keeps the parent-death signal
  bwrap gave it (``--die-with-parent``), so it dies with its sandbox's bwrap
  instead of living on after grading (a forked one dies with its namespace's
  init, which has that signal); and ``ptrace``, of no use to a notebook;
- ``chmod`` and ``chown`` in all their forms, and setting or removing extended
  attributes (an access ACL *is* the mode): the kernel's socket folder on the
  grading machine's disk is made read-only to it once its sockets exist
  (sandbox.SandboxKernelManager.seal_socket_folder), and stays so;
- ``io_uring_setup`` (answered ENOSYS, as where io_uring is absent): a ring's
  operations would make those calls without passing through the filter;
- ``add_key``, ``request_key`` and ``keyctl``: the kernel's keyrings are not
  namespaced, and a process inherits its session keyring, so a kernel could read
  the keys of whoever started the grader (a login's keyring: Kerberos tickets,
  filesystem keys) and leave one for the next kernel. Before the filter the
  kernel also joins a new, empty session keyring (``leave_the_keyrings``), and
  the sandbox hides ``/proc/keys``.

A refused call fails with EPERM: Python raises PermissionError, which the
student reads. The sandbox already keeps such a program away from anything
that matters; the filter makes "no other program ran" true as well. A kernel
started cold is pid 1 of its sandbox (bwrap --as-pid-1); one forked from a
zygote (judge.zygote) is pid 2, beside an init it cannot ptrace or read: no
process beside it, without the filter, can be made to start programs.

As pid 1 the kernel would ignore the signals it sends itself (Linux protects a
namespace's init): ``raise(SIGSEGV)``, ``abort()``, ``os.kill(os.getpid(),
SIGTERM)`` would not end it. ``die_on_fatal_signals`` gives those signals a
handler that exits, so a kernel that crashes still dies.

The same ``main`` runs in both: a cold kernel imports (``prepare``) here, a
forked one finds everything imported by its zygote.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import signal
import struct
import sys

# BPF opcodes (linux/filter.h) and seccomp constants (linux/seccomp.h)
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
CLONE_THREAD = 0x00010000

# (audit arch, {syscall: errno}, clone's number, prctl's number, first number of a
# foreign ABI or None)
ARCHES = {
    "x86_64": (0xC000003E, {59: errno.EPERM, 322: errno.EPERM,  # execve, execveat
                            57: errno.EPERM, 58: errno.EPERM,  # fork, vfork
                            101: errno.EPERM,  # ptrace
                            # chmod, fchmod, fchmodat, fchmodat2, chown, fchown, lchown,
                            # fchownat
                            90: errno.EPERM, 91: errno.EPERM, 268: errno.EPERM,
                            452: errno.EPERM, 92: errno.EPERM, 93: errno.EPERM,
                            94: errno.EPERM, 260: errno.EPERM,
                            # setxattr, lsetxattr, fsetxattr, removexattr, lremovexattr,
                            # fremovexattr, setxattrat, removexattrat
                            188: errno.EPERM, 189: errno.EPERM, 190: errno.EPERM,
                            197: errno.EPERM, 198: errno.EPERM, 199: errno.EPERM,
                            463: errno.EPERM, 466: errno.EPERM,
                            425: errno.ENOSYS,  # io_uring_setup
                            # add_key, request_key, keyctl
                            248: errno.EPERM, 249: errno.EPERM, 250: errno.EPERM,
                            435: errno.ENOSYS}, 56, 157, 0x40000000),  # clone3; clone; prctl; x32
    "aarch64": (0xC00000B7, {221: errno.EPERM, 281: errno.EPERM, 117: errno.EPERM,
                             # fchmod, fchmodat, fchmodat2, fchown, fchownat
                             52: errno.EPERM, 53: errno.EPERM, 452: errno.EPERM,
                             55: errno.EPERM, 54: errno.EPERM,
                             # setxattr, lsetxattr, fsetxattr, removexattr, lremovexattr,
                             # fremovexattr, setxattrat, removexattrat
                             5: errno.EPERM, 6: errno.EPERM, 7: errno.EPERM,
                             14: errno.EPERM, 15: errno.EPERM, 16: errno.EPERM,
                             463: errno.EPERM, 466: errno.EPERM,
                             425: errno.ENOSYS,  # io_uring_setup
                             # add_key, request_key, keyctl
                             217: errno.EPERM, 218: errno.EPERM, 219: errno.EPERM,
                             435: errno.ENOSYS}, 220, 167, None),
}


class _Filter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def seccomp_program(machine: str) -> bytes:
    """The filter as BPF instructions (struct sock_filter, 8 bytes each)."""
    arch, refused, clone_nr, prctl_nr, foreign = ARCHES[machine]
    deny = SECCOMP_RET_ERRNO | errno.EPERM
    prog = [_insn(LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
            _insn(JEQ_K, 1, 0, arch),
            _insn(RET_K, 0, 0, deny),  # another ABI: nothing at all
            _insn(LD_W_ABS, 0, 0, 0)]  # seccomp_data.nr
    if foreign is not None:
        prog += [_insn(JGE_K, 0, 1, foreign), _insn(RET_K, 0, 0, deny)]
    for nr, err in refused.items():
        prog += [_insn(JEQ_K, 0, 1, nr), _insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | err)]
    prog += [_insn(JEQ_K, 0, 4, prctl_nr),
             _insn(LD_W_ABS, 0, 0, 16),  # prctl's option: args[0], low 32 bits
             _insn(JEQ_K, 0, 1, PR_SET_PDEATHSIG),
             _insn(RET_K, 0, 0, deny),
             _insn(RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    prog += [_insn(JEQ_K, 0, 3, clone_nr),
             _insn(LD_W_ABS, 0, 0, 16),  # clone's flags: args[0], low 32 bits
             _insn(JSET_K, 1, 0, CLONE_THREAD),
             _insn(RET_K, 0, 0, deny),  # a new process
             _insn(RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    return b"".join(prog)


SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 1, 1
SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING = {"x86_64": 250, "aarch64": 219}, 1


def leave_the_keyrings() -> None:
    """Join a new, empty, anonymous session keyring: the one inherited from whoever
    started the grader is no longer this process's (its keys no longer "possessed").
    Best effort: where it fails, the filter still refuses every keyring call."""
    import platform

    number = SYS_KEYCTL.get(platform.machine())
    if number is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        libc.syscall(number, KEYCTL_JOIN_SESSION_KEYRING, None)


def forbid_new_programs() -> None:
    """Install the filter in every thread of this process (TSYNC: ipykernel's own
    threads, started before, included) and every thread started later."""
    import platform

    machine = platform.machine()
    if machine not in ARCHES or sys.byteorder != "little":
        raise SystemExit(f"grading kernel: no system-call filter for {machine}; sealed grading "
                         f"runs on {' and '.join(ARCHES)} Linux")
    code = seccomp_program(machine)
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = _Filter(len(code) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p,
                           ctypes.c_ulong, ctypes.c_ulong]
    libc.syscall.argtypes = [ctypes.c_long, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
    # seccomp() answers a thread it could not synchronise with that thread's id (> 0)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0 or \
            libc.syscall(SYS_SECCOMP[machine], SECCOMP_SET_MODE_FILTER,
                         SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog)) != 0:
        err = ctypes.get_errno()
        raise SystemExit(f"grading kernel: the system-call filter was refused: "
                         f"{errno.errorcode.get(err, err)}")


# Signals whose default action ends a process (those the kernel itself sends or
# raises; the kernel generates the others, and those reach pid 1 anyway).
FATAL_SIGNALS = ("SIGHUP", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
                 "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGSYS")


def die_on_fatal_signals() -> None:
    """As pid 1: each fatal signal calls _exit(signal number) (a C handler, so it also
    ends the process on a fault in C code, where a Python handler never runs)."""
    if os.getpid() != 1:
        return
    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    exit_now = ctypes.cast(libc._exit, ctypes.c_void_p)
    for name in FATAL_SIGNALS:
        libc.signal(getattr(signal, name), exit_now)


def fill_work_folder(env=os.environ) -> None:
    """Copy the submission (bound read-only at COURSE_SUBMISSION) into the working
    folder, which lives on the sandbox's size-limited home: what the notebook writes
    costs memory the sandbox caps, never the grading machine's disk."""
    import shutil

    source, work = env.get("COURSE_SUBMISSION"), os.getcwd()
    if source and os.path.isdir(source):
        shutil.copytree(source, work, dirs_exist_ok=True, symlinks=True)


def preload(env=os.environ) -> None:
    """Import what the notebook will import anyway (COURSE_PRELOAD: numpy, torch where
    the lesson may use it) before the submission arrives (judge.warm). A module that
    fails here is left for the notebook to import, and to fail on, itself."""
    import importlib

    for name in filter(None, env.get("COURSE_PRELOAD", "").split(",")):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the notebook's own import says what is wrong
            pass


def wait_for_submission(fd: int = 0) -> None:
    """Block until the grader says the submission is in place ("go" on stdin). A kernel
    started ahead (judge.warm) waits here, having run nothing of any student's; one
    whose stdin closes without "go" was not needed and ends."""
    said = b""
    while not said.endswith(b"\n"):
        chunk = os.read(fd, 16)
        if not chunk:
            os._exit(0)
        said += chunk
    if said.strip() != b"go":
        os._exit(0)


def prepare():
    """Everything a kernel imports before it has a connection file: ipykernel's
    application and what COURSE_PRELOAD names (judge.zygote does this once and forks)."""
    # No debugger in a grading kernel: nothing attaches one, and ipykernel imports
    # debugpy (about a fifth of a kernel's start-up) only to offer it; without it,
    # ipykernel says in kernel_info that it has no debugger.
    sys.modules["debugpy"] = None
    from course_lib.judge.kernel_app import GradingKernelApp

    preload()
    # What start-up imported lives as long as the kernel: frozen, it is left out of the
    # full collections that the notebook's own allocations trigger (each walked it
    # again: in lesson 05, two of 0.1-0.25 s; 0.01-0.03 s frozen).
    gc.freeze()
    return GradingKernelApp


def main() -> None:
    die_on_fatal_signals()
    # The kernel's log, as it is before ipykernel captures stderr (through a pipe and a
    # thread, which a kernel dying while it starts may never drain): a kernel that
    # cannot start says why there, in full (judge.sandbox reads its last lines).
    log = os.dup(2)
    try:
        GradingKernelApp = prepare()
        app = GradingKernelApp.instance()
        # IPython's profile, the sockets: still unfiltered. No history database: the
        # sandbox's home is thrown away with it, and the database (SQLite, and a thread
        # that writes it) only slowed the kernel's start (In and Out stay in memory).
        app.initialize([*sys.argv[1:], "--HistoryManager.enabled=False"])
        gc.freeze()  # again: what initialize made lives as long as the kernel too
        wait_for_submission()
        fill_work_folder()  # only now is there a submission to copy
        import importlib

        importlib.invalidate_caches()  # the working folder changed after the imports above
        leave_the_keyrings()
        forbid_new_programs()  # before the first message, so before any of the notebook's code
    except BaseException as exc:  # noqa: BLE001 - whatever stopped it, said in its log
        _say_why(log, exc)
        os._exit(1)
    os.close(log)
    app.start()


def _say_why(fd: int, exc: BaseException) -> None:
    try:
        import traceback

        text = "".join(traceback.format_exception(exc))
    except BaseException:  # noqa: BLE001 - out of memory even for the traceback
        text = f"{type(exc).__name__}: {exc}\n"
    try:
        os.write(fd, text.encode(errors="replace"))
    except OSError:
        pass


if __name__ == "__main__":
    main()
