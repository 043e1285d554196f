"""Red team of kernels forked from a zygote (course_lib.judge.zygote): what is new with them.

A forked kernel is pid 2 beside ``/init`` (an execute-only ``cat``), holds the write end
of ``/init``'s stdin, and starts as a copy of the zygote's memory: a process that
imported ipykernel and numpy *outside* every sandbox, as the grader's user. These tests
attack what that adds; the generic attacks are in test_sandbox_attacks.py, and
test_zygote.py checks the forked kernel from the host.

The first three were weaknesses, found by this red team and mended (each docstring says
what it was); the others are regression tests of refusals no other file asserts.
"""

from __future__ import annotations

import asyncio
import os

import pytest
import test_zygote
from test_zygote import Kernel, _children, _until

from course_lib.judge import sandbox as sandbox_module

pytestmark = [pytest.mark.kernel]

sealed = test_zygote.sealed  # the fixture: a Sealed whose kernels are forked


def _run(coro):
    return asyncio.run(coro)


# -- weaknesses found here, mended ------------------------------------------------------

PLANTED = '''
import os
with open({marker!r}, "w") as f:
    f.write(f"pid={{os.getpid()}} uid={{os.getuid()}} mnt={{os.readlink('/proc/self/ns/mnt')}}")
raise ImportError("planted: ran where no sandbox is")
'''


def test_the_zygote_imports_nothing_from_the_kernels_work_folder_path_on_the_host(
        sealed, tmp_path, monkeypatch):
    """The zygote runs on the host, outside every sandbox, as the grader. It had WORK
    (``/home/student/work``) first on its import path while it imported ipykernel, numpy
    and torch: where that folder exists on the grading machine (an account named
    ``student``), whoever can write there would run code as the grader, unsandboxed.
    Here WORK names a host folder holding a ``numpy.py``. Mended: the zygote has no such
    entry; the kernel puts its working folder first itself, inside its sandbox
    (zygote._become_kernel)."""
    host_work = tmp_path / "host-home-student-work"
    host_work.mkdir()
    marker = tmp_path / "planted-ran"
    (host_work / "numpy.py").write_text(PLANTED.format(marker=str(marker)))
    monkeypatch.setattr(sandbox_module, "WORK", str(host_work))

    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            said = await kernel.run("import numpy; print('numpy from', numpy.__file__)")
            assert "site-packages" in said, said  # inside, the kernel's own numpy
        finally:
            await kernel.stop()
    _run(main())
    assert not marker.exists(), "code planted on the host ran in the zygote: " + \
        marker.read_text()


def test_a_forked_kernel_reports_the_sandboxs_hostname_not_the_grading_machines(
        sealed, tmp_path):
    """The sandbox's hostname is "grading" (bwrap --hostname), as a cold kernel's
    ``platform.node()`` says. A forked kernel inherited ``platform._uname_cache``, filled
    in the zygote on the host, and named the grading machine (an information leak).
    Mended: the kernel forgets what the zygote read from the host
    (zygote._forget_the_host)."""
    code = ("import platform, socket\n"
            "print('node', platform.node(), platform.uname().node, socket.gethostname())")

    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            said = await kernel.run(code)
            assert said.split() == ["node", "grading", "grading", "grading"], said
        finally:
            await kernel.stop()
    _run(main())


ACL = '''
import os, struct
folder = os.path.dirname(sys.argv[sys.argv.index("-f") + 1])
print("mode before", oct(os.stat(folder).st_mode & 0o777))
# user::rwx group::r-x other::r-x: the same as chmod 755, said as an access ACL
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
                                     for tag, perm in ((1, 7), (4, 5), (0x20, 5)))
try:
    os.setxattr(folder, "system.posix_acl_access", acl)
    print("ACL SET")
except OSError as exc:
    print("acl refused", type(exc).__name__)
print("mode after", oct(os.stat(folder).st_mode & 0o777))
for name, call in (("removexattr", lambda: os.removexattr(folder, "system.posix_acl_access")),
                   ("user xattr", lambda: os.setxattr(".", "user.x", b"1"))):
    try:
        call()
        print(name, "DONE")
    except OSError as exc:
        print(name, "refused", exc.errno)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)  # struct io_uring_params
print("io_uring_setup", libc.syscall(425, 4, params), ctypes.get_errno())
try:
    with open(os.path.join(folder, "planted"), "w") as f:
        f.write("x")
    print("WROTE into the sealed folder")
except OSError as exc:
    print("write refused", type(exc).__name__)
'''


def test_the_sealed_socket_folder_cannot_be_made_writable_again_through_an_acl(
        sealed, tmp_path):
    """Not only forked kernels: cold ones too. Once the kernel's sockets exist, its
    connection folder on the grading machine's disk is made 0500, and the launcher's
    filter refuses chmod in every form so that it stays so. But an access ACL *is* the
    mode: ``setxattr(folder, "system.posix_acl_access", user::rwx...)``, allowed to the
    owner (the kernel's uid is the grader's), gave the folder 0755 again, and the kernel
    could write files onto the grader's disk. Mended: the filter refuses every call that
    sets or removes an extended attribute, and io_uring_setup (whose SETXATTR operations
    would not pass through the filter)."""
    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            kernel.km.seal_socket_folder()  # as the judge does once the kernel answers
            said = await kernel.run("import sys\n" + ACL)
            assert "mode before 0o500" in said, said
            assert "ACL SET" not in said and "mode after 0o500" in said, said
            assert "write refused PermissionError" in said, said
            assert "removexattr refused 1" in said and "user xattr refused 1" in said, said
            assert "io_uring_setup -1 38" in said, said  # ENOSYS: no ring to go around it
            assert not (kernel.km.box.connection / "planted").exists()
        finally:
            await kernel.stop()
    _run(main())


# -- refusals (regression tests) ----------------------------------------------------------

INIT_BY_PIDFD = '''
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.process_vm_readv.restype = libc.process_vm_writev.restype = ctypes.c_ssize_t


def err(result):
    return "DONE" if result >= 0 else errno.errorcode[ctypes.get_errno()]


pidfd = os.pidfd_open(1)
print("getfd", *[err(libc.syscall(438, pidfd, fd, 0)) for fd in range(5)])  # pidfd_getfd


class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


buf = ctypes.create_string_buffer(16)
local, remote = iovec(ctypes.addressof(buf), 16), iovec(0x400000, 16)
for name in ("process_vm_readv", "process_vm_writev"):
    call = getattr(libc, name)
    print(name, err(call(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)))
for path in ("ns/user", "ns/mnt", "ns/pid", "ns/net", "cwd", "root", "exe", "fd/0", "fd/3"):
    try:
        os.readlink("/proc/1/" + path)
        print("REACHED /proc/1/" + path)
    except OSError as exc:
        print("refused", path, errno.errorcode[exc.errno])
'''


def test_the_kernel_cannot_take_inits_descriptors_memory_or_namespaces(sealed, tmp_path):
    """/init holds the read end of its own pipe, and its namespaces are the sandbox's:
    pidfd_getfd (which would hand the kernel /init's descriptors), process_vm_readv and
    process_vm_writev (its memory, without ptrace, which the filter refuses anyway), and
    the links /proc/1/ns/*, cwd, root, exe and fd/* are all refused: /init is not
    dumpable. (Where the grader runs as root, the kernel's uid is root's and owns
    /proc/1's files: it may *list* /proc/1/fd, never follow a link in it.)"""
    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            said = await kernel.run(INIT_BY_PIDFD)
            assert "DONE" not in said and "REACHED" not in said, said
            assert "getfd EPERM EPERM EPERM EPERM EPERM" in said, said
            assert "process_vm_readv EPERM" in said and "process_vm_writev EPERM" in said
            assert said.count("refused ") == 9, said
        finally:
            await kernel.stop()
    _run(main())


NAMESPACE_ESCAPES = '''
import ctypes, errno, fcntl, os
libc = ctypes.CDLL(None, use_errno=True)
for name in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup"):
    fd = os.open(f"/proc/self/ns/{name}", os.O_RDONLY)
    for ioctl, request in (("NS_GET_USERNS", 0xB701), ("NS_GET_PARENT", 0xB702)):
        try:
            got = fcntl.ioctl(fd, request)
            print("GOT", ioctl, name, os.readlink(f"/proc/self/fd/{got}"))
        except OSError as exc:
            print("refused", ioctl, name, errno.errorcode[exc.errno])
    print("setns", name, libc.setns(fd, 0), errno.errorcode.get(ctypes.get_errno()))
for name, flag in (("mnt", 0x20000), ("net", 0x40000000), ("pid", 0x20000000),
                   ("ipc", 0x08000000), ("cgroup", 0x02000000), ("time", 0x80)):
    print("unshare", name, libc.unshare(flag), errno.errorcode.get(ctypes.get_errno()))
'''


def test_the_kernel_cannot_reach_the_namespace_that_owns_its_sandbox_or_make_new_ones(
        sealed, tmp_path):
    """The zygote's child joins bwrap's outer user namespace (which owns the sandbox's
    other namespaces) before the sandbox's own; the kernel must keep no way back to it:
    NS_GET_USERNS / NS_GET_PARENT on its namespaces are refused (outside its scope),
    setns into any of them and unshare of any kind fail (no capability left)."""
    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            said = await kernel.run(NAMESPACE_ESCAPES)
            assert "GOT" not in said, said
            for line in said.splitlines():
                if line.startswith(("setns", "unshare")):
                    assert line.split()[2] == "-1", line
        finally:
            await kernel.stop()
    _run(main())


PLANT_IN_A_FORKED_KERNEL = '''
import ctypes, os, sys, numpy, string
numpy.pi = 3.0                     # the inherited modules, as the zygote imported them
string.ascii_letters = "planted"
sys.modules["planted_by_the_first"] = sys
os.environ["PLANTED"] = "1"
open("/tmp/planted", "w").write("x")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
key = libc.syscall(248, b"user", b"planted-key", b"x", 1, ctypes.c_long(-3))  # add_key
print("planted", key > 0)
'''

LOOK_FOR_THE_PLANTS = '''
import os, string, sys, numpy
keys = open("/proc/keys").read() if os.path.exists("/proc/keys") else ""
print("pi", numpy.pi, "letters", string.ascii_letters[:3],
      "module", "planted_by_the_first" in sys.modules,
      "env", "PLANTED" in os.environ, "file", os.path.exists("/tmp/planted"),
      "key", "planted-key" in keys)
'''


def test_what_a_forked_kernel_changes_never_reaches_the_next_kernel_of_its_zygote(
        sealed, tmp_path):
    """A kernel changes the modules it inherited, its environment, its /tmp and its
    session keyring; the next kernel forked from the same zygote (a later student's)
    finds none of it: the zygote's memory is copied, never shared, and each sandbox
    has its own files and keyrings."""
    async def main():
        first = await Kernel(sealed, tmp_path / "a").start()
        try:
            assert "planted" in await first.run(PLANT_IN_A_FORKED_KERNEL)
            zygotes = [z.process.pid for z in sealed.sandbox.zygotes.values()]
        finally:
            await first.stop()
        second = await Kernel(sealed, tmp_path / "b").start()
        try:
            said = await second.run(LOOK_FOR_THE_PLANTS)
            assert said.split() == ["pi", "3.141592653589793", "letters", "abc", "module",
                                    "False", "env", "False", "file", "False", "key",
                                    "False"], said
            assert [z.process.pid for z in sealed.sandbox.zygotes.values()] == zygotes
        finally:
            await second.stop()
    _run(main())


RANDOM_STATE = '''
import random, sys, numpy
print("state", random.random(), numpy.random.random(), numpy.random.default_rng().random(),
      *([sys.modules["torch"].rand(1).item()] if "torch" in sys.modules else []))
'''


@pytest.mark.parametrize("torch", [False, True], ids=["numpy", "torch"])
def test_each_forked_kernel_has_random_state_of_its_own(sealed, tmp_path, torch):
    """Two kernels forked from one zygote must not draw the same numbers (so one
    student's output cannot predict another's): Python's random, numpy's global
    generator, a fresh default_rng and, in the torch lesson's kernel, torch's global
    generator differ. The zygote imported numpy.random and torch, and seeded them once."""
    sealed.sandbox.preload_torch = torch

    async def main():
        states = []
        for n in range(2):
            kernel = await Kernel(sealed, tmp_path / f"sub{n}").start()
            try:
                states.append((await kernel.run(RANDOM_STATE)).split()[1:])
            finally:
                await kernel.stop()
        assert len(states[0]) == (4 if torch else 3), states  # torch: preloaded, forked
        assert all(a != b for a, b in zip(*states, strict=True)), states
    _run(main())


def test_closing_inits_pipe_ends_only_this_sandbox_and_the_zygote_forks_the_next(
        sealed, tmp_path):
    """The kernel's end of /init's pipe (fd 3) is its sandbox's life: written to, /init
    only copies it to /dev/null and the kernel goes on; closed, /init exits and the
    sandbox with the kernel in it (bwrap ends, the zygote reaps the kernel), and nothing
    else: the zygote lives on and forks the next kernel, pid 2 of a sandbox of its own."""
    async def main():
        kernel = await Kernel(sealed, tmp_path / "a").start()
        pid, bwrap = kernel.forked_pid(), kernel.bwrap
        (zygote,) = sealed.sandbox.zygotes.values()
        said = await kernel.run("import os\nfor _ in range(64): os.write(3, b'x' * 65536)\n"
                                "print('fd 3', os.readlink('/proc/self/fd/3'))")
        assert "fd 3 pipe:" in said, said
        assert "alive" in await kernel.run("print('alive')")
        kernel.client.execute("import os; os.close(3)")  # no reply: the sandbox is gone
        assert await asyncio.to_thread(bwrap.wait, 60) == 0  # /init read the end
        _until(lambda: not os.path.exists(f"/proc/{pid}"))  # killed and reaped
        assert zygote.alive() and _children(zygote.process.pid) == []
        kernel.client.stop_channels()
        await kernel.km.shutdown_kernel(now=True)

        second = await Kernel(sealed, tmp_path / "b").start()
        try:
            assert "pid 2" in await second.run("import os; print('pid', os.getpid())")
            assert list(sealed.sandbox.zygotes.values()) == [zygote]
        finally:
            await second.stop()
    _run(main())


def test_a_forked_kernel_sees_no_zygote_and_cannot_signal_its_parent(sealed, tmp_path):
    """The kernel's parent (the zygote, its reaper) is outside its pid namespace: it reads
    PPid 0, finds no process but /init and itself, and a signal to its process group or
    to every process reaches no one else (the zygote still runs)."""
    code = '''
import os, signal
print("ppid", os.getppid(), "pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
try:
    os.kill(-1, signal.SIGTERM)
    print("kill -1 sent")
except OSError as exc:
    print("kill -1", type(exc).__name__)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
os.killpg(0, signal.SIGUSR1)  # its own process group: the zygote's child made it, alone
print("alive")
'''

    async def main():
        kernel = await Kernel(sealed, tmp_path / "sub").start()
        try:
            (zygote,) = sealed.sandbox.zygotes.values()
            said = await kernel.run(code)
            assert "ppid 0 pids [1, 2]" in said and "alive" in said, said
            assert zygote.alive()
        finally:
            await kernel.stop()
    _run(main())
