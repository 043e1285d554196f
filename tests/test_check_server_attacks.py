"""Red team of the warm `course check` grader (instructor/check_server.py).

One server per course keeps nbgrader, the judge's checks and a zygote per kind of kernel
loaded, and forks a grader per check; each check must still be graded as if it were
alone: a fresh kernel that no earlier submission touched, and a server that nobody but
its user can use. Every test here is one attack, written as a dishonest student (whose
notebook the instructor checks) or another local user would try it; each test passes
when the attack fails. Where the attack is in a notebook, its success is made visible
in the score: the graded function ``sigmoid_prime`` is right only if the attack found
what it looked for (so a working attack gets 2/2), and says what it found otherwise
(the failure message, which the test reads to know the probe ran to its end).

The server is started as an instructor's login starts programs: from a process with a
session keyring of its own (pam_keyinit in a login session, runc in a container) that
holds one of the instructor's keys.

Weaknesses this red team found (their tests fail until they are mended):

- the session keyring: every kernel inherits the keyring of the process that started
  the server (zygote, then kernel; bwrap makes no new one) and the system-call filter
  allows add_key/keyctl, so a key one submission adds is found by the next one, and
  the instructor's own keys can be read (a cold check shares it the same way);
- a socket in a cache folder another user made first is trusted: the client checks
  neither the folder's owner nor the server's SO_PEERCRED, and sends that user its
  arguments, environment and terminal, and prints the grade they make up;
- a request the server cannot parse leaves its descriptors open in the server;
- a connection that sends nothing holds the server (and every `course check` after
  it, which waits for its answer without a limit).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from toycourse import ASSIGNMENT, RIGHT, make_course, submission
from warmgrader import (
    as_nobody,
    children,
    course_cmd,
    environment,
    gone,
    server_state,
    walkable_cache,
    zygotes_of,
)

pytestmark = pytest.mark.kernel

GRADED = "sigmoid_prime_values"
# add_key, keyctl (the kernel's keyrings: no glibc wrapper)
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}.get(platform.machine(),
                                                                    (None, None))
INSTRUCTOR_KEY = "course-instructor-secret"


def until(predicate, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@dataclass
class Served:
    course: Path
    cache: Path
    env: dict
    pid: int
    socket: Path
    zygotes: set
    keyring: bool  # the server runs with a session keyring holding INSTRUCTOR_KEY
    secret: str


STARTER = '''
import ctypes, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
add_key, keyctl, secret = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
# as a login session (pam_keyinit) or a container (runc) gives one: a session keyring of
# its own, where the instructor's programs keep their keys
keyring = libc.syscall(keyctl, 1, None) > 0 and libc.syscall(
    add_key, b"user", sys.argv[4].encode(), secret, len(secret), ctypes.c_long(-3)) > 0
print("keyring", keyring, flush=True)
sys.exit(subprocess.call([sys.executable, "-m", "course_lib.instructor.cli", "check-server",
                          "start"]))
'''


def stop_server(env: dict, pid: int | None, zygotes=()) -> None:
    try:
        course_cmd(env, "check-server", "stop", timeout=120)
    except subprocess.TimeoutExpired:
        pass  # a server that no longer answers: killed below
    for process in [pid, *zygotes]:
        if process and not gone(process, 30):
            os.kill(process, signal.SIGKILL)


def sweep(cache: Path, within: float = 0.0) -> None:
    """SIGKILL what this file started for the cache folder ``cache`` and left running
    (servers and graders carry it in their environment), once ``within`` seconds passed."""
    needle = f"COURSE_CHECK_CACHE={cache}".encode() + b"\0"
    deadline = time.monotonic() + within
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if needle in Path(f"/proc/{pid}/environ").read_bytes() and int(pid) != os.getpid():
                    found.append(int(pid))
            except OSError:
                pass
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    for pid in found:
        for zygote in zygotes_of(pid):
            os.kill(zygote, signal.SIGKILL)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacked")
    # 30 s a cell: the probes below walk the sandbox's whole file tree, 3-5 s on a busy
    # machine, and an honest cell must never meet its limit; an attack that never ends
    # costs this much (and at most the notebook's limit, 40 s)
    course = make_course(folder / "course", timeout=30)
    cache = walkable_cache("check-server-attacks-")
    env = environment(course, cache, COURSE_NOTEBOOK_TIMEOUT="40")
    secret = "instructor-" + os.urandom(8).hex()
    state = None
    try:
        if ADD_KEY is not None:
            started = subprocess.run([sys.executable, "-c", STARTER, str(ADD_KEY), str(KEYCTL),
                                      secret, INSTRUCTOR_KEY], env=env, cwd=course,
                                     capture_output=True, text=True, timeout=300)
        else:
            started = course_cmd(env, "check-server", "start")
        assert started.returncode == 0, started.stdout + started.stderr
        state = server_state(env)
        assert state is not None
        zygotes = zygotes_of(state["pid"])
        assert zygotes, "the server started no zygote"
        yield Served(course, cache, env, state["pid"], state["socket"], zygotes,
                     "keyring True" in started.stdout, secret)
    finally:
        stop_server(env, state and state["pid"], zygotes_of(state["pid"]) if state else ())
        sweep(cache, within=10)
        shutil.rmtree(cache, ignore_errors=True)


def check(served: Served, folder: Path, name: str, answer: str,
          timeout: float = 240) -> tuple[float, str, subprocess.CompletedProcess]:
    """`course check` of a toy submission whose answer cell is ``answer``, as the
    instructor runs it; (the graded cell's score, its message, the run). Fails unless the
    warm grader answered (else this file would test a check graded alone)."""
    path = folder / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(submission(answer), str(path))
    done = course_cmd(served.env, "check", str(path), "--assignment", ASSIGNMENT, "--json",
                      "--timings", timeout=timeout)
    assert "reach the warm grader" in done.stderr, \
        "not graded by the warm grader:\n" + done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    [cell] = [c for c in result["cells"] if c["grade_id"] == GRADED]
    return cell["score"], cell["message"], done


def assert_still_serving(served: Served) -> None:
    try:
        state = _raw(served.socket, {"status": True}, timeout=30)
    except OSError as exc:
        state = f"{exc!r}; the server's log: " + served.socket.with_suffix(".log").read_text()
    assert state and state[0]["pid"] == served.pid, state
    assert zygotes_of(served.pid) == served.zygotes  # the same zygotes, all alive


# The graded function of a probing notebook: right only if FOUND names something (the
# attack worked); otherwise it raises, saying that the probe ran to its end.
RIGHT_IF_FOUND = '''def sigmoid_prime(z):
    import numpy as np
    if not FOUND:
        raise RuntimeError("PROBE-RAN: found nothing")
    s = 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
    return s * (1 - s)
'''

# The graded function of a control notebook (the attack and the probe in one kernel):
# right only if every channel in CHANNELS was planted and then found, which shows that
# the probe does see what the attack leaves, where it is left.
RIGHT_IF_ALL_FOUND = '''def sigmoid_prime(z):
    import numpy as np
    missing = sorted((set(CHANNELS) - set(PLANTED)) | (set(CHANNELS) - set(FOUND)))
    if missing:
        raise RuntimeError("CONTROL: missing %r planted=%r found=%r" % (missing, PLANTED, FOUND))
    s = 1 / (1 + np.exp(-np.asarray(z, dtype=float)))
    return s * (1 - s)
'''


def assert_attack_failed(score: float, message: str, done) -> None:
    assert score == 0 and "PROBE-RAN: found nothing" in message, (
        f"the attack worked (score {score}): {message or 'it found what it looked for'}\n"
        + done.stderr[-2000:])


# -- 1. state left for the next check ----------------------------------------------------

PLANT = r'''
import ctypes, ctypes.util, os, socket
_libc = ctypes.CDLL(None, use_errno=True)
MARK = b"planted-by-an-earlier-check"
PLANTED = []
def _try(name, fn):
    try:
        if fn() is not False:
            PLANTED.append(name)
    except Exception:
        pass
def _write(path):
    with open(path, "wb") as f:
        f.write(MARK)
for _d in ("/tmp", "/dev/shm", "/var/tmp", "/run", "/", os.path.expanduser("~"), os.getcwd()):
    _try("file " + _d, lambda d=_d: _write(os.path.join(d, "planted-marker")))
for _root, _dirs, _files in os.walk("/"):  # every folder the kernel sees
    if _root.startswith(("/proc", "/sys")):
        _dirs[:] = []
        continue
    _try("file " + _root, lambda r=_root: _write(os.path.join(r, "planted-marker")))
_kept = [socket.socket(socket.AF_UNIX), socket.socket(socket.AF_INET)]
_try("abstract socket", lambda: (_kept[0].bind("\0planted-marker"), _kept[0].listen(1)))
_try("tcp port", lambda: (_kept[1].bind(("127.0.0.1", 47111)), _kept[1].listen(1)))
def _shm():
    shmid = _libc.shmget(0x5EED, 4096, 0o1000 | 0o666)  # IPC_CREAT: outlives the process
    if shmid < 0:
        return False
    _libc.shmat.restype = ctypes.c_void_p
    ctypes.memmove(_libc.shmat(shmid, None, 0), MARK, len(MARK))
_try("sysv shm", _shm)
_try("sysv msg", lambda: _libc.msgget(0x5EED, 0o1000 | 0o666) >= 0 or False)
_try("sysv sem", lambda: _libc.semget(0x5EED, 1, 0o1000 | 0o666) >= 0 or False)
_rt = _libc if hasattr(_libc, "mq_open") else ctypes.CDLL(ctypes.util.find_library("rt"))
_try("posix mq", lambda: _rt.mq_open(b"/planted-marker", os.O_CREAT | os.O_RDWR, 0o666,
                                     None) >= 0 or False)
os.environ["PLANTED_MARKER"] = "1"
_try("environment", lambda: os.putenv("PLANTED_MARKER", "1"))
'''

PROBE = r'''
import ctypes, ctypes.util, os, socket
_libc = ctypes.CDLL(None, use_errno=True)
FOUND = []
def _look(name, fn):
    try:
        if fn():
            FOUND.append(name)
    except Exception:
        pass
for _root, _dirs, _files in os.walk("/"):
    if _root.startswith(("/proc", "/sys")):
        _dirs[:] = []
        continue
    if "planted-marker" in _files:
        FOUND.append("file " + _root)
def _connect(address, family=socket.AF_UNIX):
    with socket.socket(family) as s:
        s.settimeout(2)
        s.connect(address)
        return True
_look("abstract socket", lambda: _connect("\0planted-marker"))
_look("tcp port", lambda: _connect(("127.0.0.1", 47111), socket.AF_INET))
_look("sysv shm", lambda: _libc.shmget(0x5EED, 0, 0o666) >= 0)
_look("sysv msg", lambda: _libc.msgget(0x5EED, 0o666) >= 0)
_look("sysv sem", lambda: _libc.semget(0x5EED, 0, 0o666) >= 0)
_rt = _libc if hasattr(_libc, "mq_open") else ctypes.CDLL(ctypes.util.find_library("rt"))
_look("posix mq", lambda: _rt.mq_open(b"/planted-marker", os.O_RDONLY) >= 0)
_look("environment", lambda: "PLANTED_MARKER" in os.environ)
_look("/proc/sysvipc", lambda: any(len(open(f"/proc/sysvipc/{k}").read().splitlines()) > 1
                                   for k in ("shm", "msg", "sem")))
'''

CHANNELS = ["file /tmp", "file /home/student", "file /home/student/work", "abstract socket",
            "tcp port", "sysv shm", "sysv msg", "sysv sem", "posix mq", "environment"]


def test_nothing_a_submission_leaves_in_its_sandbox_reaches_the_next_check(served, tmp_path):
    """Files in every folder the kernel can write (/tmp, its home, its work folder...),
    an abstract Unix socket and a TCP port left listening, System V shared memory,
    message queue and semaphores and a POSIX message queue (which outlive the process),
    and the environment: the next check of the same server, an honest-looking notebook
    that is right only if it finds any of them, finds none."""
    channels = f"CHANNELS = {CHANNELS!r}\n"
    score, message, done = check(served, tmp_path, "control",
                                 RIGHT_IF_ALL_FOUND + channels + PLANT + PROBE)
    assert score == 2, "the control (plant, then look, in one kernel) failed: " + message
    score, message, done = check(served, tmp_path, "next", RIGHT_IF_FOUND + PROBE)
    assert_attack_failed(score, message, done)
    assert_still_serving(served)


# -- 1b, 2b. the session keyring ----------------------------------------------------------

KEY_PLANT = r'''
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
PLANTED = []
for _name, _ring in (("session keyring", -3), ("user keyring", -4), ("user session keyring", -5)):
    if _libc.syscall(ADD_KEY, b"user", b"planted-marker-" + _name.encode(), b"x", 1,
                     ctypes.c_long(_ring)) > 0:
        PLANTED.append(_name)
'''

KEY_PROBE = r'''
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
FOUND = []
for _name, _ring in (("session keyring", -3), ("user keyring", -4), ("user session keyring", -5)):
    if _libc.syscall(KEYCTL, 10, ctypes.c_long(_ring), b"user",  # KEYCTL_SEARCH
                     b"planted-marker-" + _name.encode(), 0) > 0:
        FOUND.append(_name)
try:
    if "planted-marker" in open("/proc/keys").read():
        FOUND.append("/proc/keys")
except OSError:
    pass
'''

KEY_CHANNELS = ["session keyring", "user keyring", "user session keyring"]


def _keys(code: str) -> str:
    return code.replace("ADD_KEY", str(ADD_KEY)).replace("KEYCTL", str(KEYCTL))


def test_a_key_a_submission_adds_to_its_keyrings_never_reaches_the_next_check(served,
                                                                            tmp_path):
    """The kernel's keyrings (session, user, user session) are the Linux kernel's, not the
    sandbox's files: a key added there by one submission must not be found by the next
    one, which is right only if it finds one (KEYCTL_SEARCH, /proc/keys). The kernel may
    not even add one: add_key and keyctl are refused (judge.launcher), so the control
    (add, then search, in one kernel) finds nothing it planted."""
    if not served.keyring:
        pytest.skip("no keyrings here (keyctl refused)")
    channels = f"CHANNELS = {KEY_CHANNELS!r}\n"
    score, message, done = check(served, tmp_path, "control",
                                 RIGHT_IF_ALL_FOUND + channels + _keys(KEY_PLANT + KEY_PROBE))
    assert score == 0 and "planted=[] found=[]" in message, \
        "a kernel added a key to its keyrings: " + message
    score, message, done = check(served, tmp_path, "next", RIGHT_IF_FOUND + _keys(KEY_PROBE))
    assert_attack_failed(score, message, done)


STEAL_KEY = r'''
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
FOUND = []
for _ring in (-3, -4, -5):
    _key = _libc.syscall(KEYCTL, 10, ctypes.c_long(_ring), b"user", b"INSTRUCTOR_KEY", 0)
    if _key > 0:
        _buffer = ctypes.create_string_buffer(256)
        _n = _libc.syscall(KEYCTL, 11, ctypes.c_long(_key), _buffer, 256)  # KEYCTL_READ
        FOUND.append(("read %r" % _buffer.raw[:max(_n, 0)]) if _n > 0 else "found, not read")
'''


def test_a_kernel_can_neither_find_nor_read_the_instructors_keys(served, tmp_path):
    """The instructor's session keyring holds a key of theirs (a login keeps Kerberos
    tickets, file-system keys... there). A submission's kernel must neither find it nor
    read it."""
    if not served.keyring:
        pytest.skip("no keyrings here (keyctl refused)")
    code = _keys(STEAL_KEY).replace("INSTRUCTOR_KEY", INSTRUCTOR_KEY)
    score, message, done = check(served, tmp_path, "steal", RIGHT_IF_FOUND + code)
    assert_attack_failed(score, message, done)


# -- 2. the server, its cache, its zygotes, its grader -----------------------------------

REACH = r'''
import ctypes, errno, json, os, signal, socket, stat
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
TARGETS = json.loads(TARGETS_JSON)
FOUND, SOCKETS = [], []
def _ptrace(pid):
    if _libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
def _status(sock):
    sock.settimeout(2)
    socket.send_fds(sock, [b'{"status": true}'], [])
    said = sock.recv(65536)
    if b"checks" in said or b"pid" in said:
        FOUND.append("answered: %r" % said[:200])
# the server's socket, its cache folder, the course, the server's and zygotes' folders
for _path in TARGETS["paths"]:
    try:
        _names = os.listdir(_path)
        # a folder bwrap made as the parent of a bound one is empty but for that one
        if set(_names) - {"runtime"}:
            FOUND.append("listed %s: %r" % (_path, _names[:5]))
    except OSError:
        pass
    try:
        with open(_path, "rb") as _f:
            _f.read(1)
        FOUND.append("opened " + _path)
    except OSError:
        pass
for _path in [TARGETS["socket"]] + [os.path.join(r, n) for r, _, ns in os.walk("/")
                                    if not r.startswith(("/proc", "/sys")) for n in ns]:
    try:
        if not stat.S_ISSOCK(os.lstat(_path).st_mode):
            continue
    except OSError:
        continue
    SOCKETS.append(_path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as _s:
            _s.settimeout(2)
            _s.connect(_path)
            _status(_s)
    except OSError:
        pass
# every descriptor the kernel holds: a server's or a zygote's socket among them?
for _fd in map(int, os.listdir("/proc/self/fd")):
    try:
        _s = socket.socket(fileno=os.dup(_fd))
    except OSError:
        continue
    with _s:
        if _s.type == socket.SOCK_SEQPACKET:
            try:
                _status(_s)
            except OSError:
                pass
# the processes outside: the server, its zygotes (by their pids on the host)
for _pid in TARGETS["pids"]:
    for _what, _call in (("signal 0", lambda: os.kill(_pid, 0)),
                         ("pidfd", lambda: os.close(os.pidfd_open(_pid))),
                         ("environ", lambda: open(f"/proc/{_pid}/environ", "rb").read()),
                         ("ptrace", lambda: _ptrace(_pid))):
        try:
            _call()
            FOUND.append("%s of %d" % (_what, _pid))
        except OSError:
            pass
_visible = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
if set(_visible) - {1, 2}:
    FOUND.append("processes %r" % _visible)
try:
    os.kill(-1, signal.SIGKILL)  # every process it can signal but itself
except OSError:
    pass
_own = {1} | {int(t) for t in os.listdir("/proc/self/task")}  # init, and its own threads
for _pid in range(2, 1 << 15):
    if _pid in _own:
        continue
    try:
        os.kill(_pid, signal.SIGSTOP)
        FOUND.append("stopped %d" % _pid)
    except OSError:
        pass
if not SOCKETS:
    raise RuntimeError("the probe is broken: it saw no socket at all (its kernel has some)")
'''


def test_a_kernel_reaches_neither_the_server_nor_its_cache_zygotes_or_grader(served,
                                                                            tmp_path):
    """From inside the kernel: connect to the server's socket (by its path, and to every
    socket file and SEQPACKET descriptor the kernel can find, asking each for the
    server's status), list or open the cache folder, the course, the server's and the
    zygotes' folders, signal / pidfd_open / ptrace / read the environment of the server
    and its zygotes, and SIGKILL or SIGSTOP every process it can. Nothing answers, and
    the server and its zygotes go on as before."""
    zygote_folders = [os.readlink(f"/proc/{z}/cwd") for z in served.zygotes]
    work = str(Path(zygote_folders[0]).parent.parent)  # the server's folder
    targets = {"socket": str(served.socket),
               "paths": [str(served.socket), str(served.socket.parent), str(served.cache),
                         str(served.course), str(served.course / "nbgrader_config.py"),
                         str(served.socket.with_suffix(".log")), work,
                         os.path.join(work, "zygotes"), os.path.join(work, "judge"),
                         *zygote_folders, *(os.path.join(z, "zygote.log")
                                            for z in zygote_folders)],
               "pids": [served.pid, *served.zygotes]}
    code = REACH.replace("TARGETS_JSON", repr(json.dumps(targets)))
    score, message, done = check(served, tmp_path, "reach", RIGHT_IF_FOUND + code)
    assert_attack_failed(score, message, done)
    assert_still_serving(served)
    score, message, done = check(served, tmp_path, "honest", RIGHT)
    assert score == 2, message


# -- 3. two students, one after the other --------------------------------------------------

FIRST_STUDENT = RIGHT + r'''

import os
TOKEN = "alice-" + "private-work-" + "5f1c93"
print(TOKEN)
for _path in ("answers.txt", "/tmp/answers.txt", os.path.expanduser("~/answers.txt")):
    with open(_path, "w") as _f:
        _f.write(TOKEN)
os.environ["ALICE"] = TOKEN
'''

SECOND_STUDENT = r'''
import os
FOUND = []
_token = "-".join(["alice", "private", "work", "5f1c93"]).encode()
SKIP = ("/proc", "/sys", "/usr", "/lib", "/bin", "/sbin", "/etc")
for _root, _dirs, _files in os.walk("/"):
    if _root.startswith(SKIP) or "site-packages" in _root or "/python3" in _root:
        _dirs[:] = []
        continue
    for _name in _files:
        _path = os.path.join(_root, _name)
        try:
            if os.path.getsize(_path) < 8 << 20 and _token in open(_path, "rb").read():
                FOUND.append(_path)
        except OSError:
            pass
for _pid in (p for p in os.listdir("/proc") if p.isdigit()):
    for _what in ("cmdline", "environ"):
        try:
            if _token in open(f"/proc/{_pid}/{_what}", "rb").read():
                FOUND.append(f"/proc/{_pid}/{_what}")
        except OSError:
            pass
if _token.decode() in str(os.environ) or "ALICE" in os.environ:
    FOUND.append("environment")
'''


def test_the_second_students_kernel_sees_nothing_of_the_first_students(served, tmp_path):
    """Alice's notebook writes its work into its folder, /tmp and its home, prints it and
    puts it in its environment; Bob's, checked next by the same server, reads every file
    it can (but the system's) and every process's command line and environment looking
    for it: it is right only if it finds Alice's work. Alice's output appears nowhere in
    Bob's result either."""
    score, message, _ = check(served, tmp_path / "alice", ASSIGNMENT, FIRST_STUDENT)
    assert score == 2, message
    score, message, done = check(served, tmp_path / "bob", ASSIGNMENT,
                                 RIGHT_IF_FOUND + SECOND_STUDENT)
    assert_attack_failed(score, message, done)
    assert "alice-private-work-5f1c93" not in done.stdout + done.stderr


# -- 4. other local users, forged requests -------------------------------------------------

def _raw(path: Path, request, fds=(), timeout: float = 120.0, raw: bytes | None = None):
    """Send one request to the server as ``course check`` does (or ``raw`` bytes); every
    answer it gives until it closes the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        message = raw if raw is not None else json.dumps(request).encode()
        if len(message) > 100000:  # a send buffer that holds it (past wmem_max: root only)
            sock.setsockopt(socket.SOL_SOCKET, 32 if os.geteuid() == 0 else socket.SO_SNDBUF,
                            2 * len(message) + 65536)  # 32: SO_SNDBUFFORCE
        socket.send_fds(sock, [message], list(fds))
        answers = []
        while data := sock.recv(1 << 20):
            answers.append(json.loads(data))
        return answers


def _forge_check_request(address: str, course: str, notebook: str) -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(address)
    except OSError as exc:
        return f"refused: {exc.strerror}"
    with sock:
        sock.settimeout(30)
        request = {"argv": ["check", notebook, "--assignment", ASSIGNMENT], "cwd": "/",
                   "env": {"COURSE_ROOT": course, "PATH": "/usr/bin:/bin"}}
        try:
            socket.send_fds(sock, [json.dumps(request).encode()], [1, 2])
            said = sock.recv(65536)
        except OSError as exc:
            return f"closed: {exc.strerror}"
        return "answered: " + said.decode() if said else "closed unanswered"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_another_user_cannot_have_the_server_run_a_check(served, tmp_path):
    """uid 65534 sends a well-formed check request with its own two descriptors: refused
    by the 0700 folder, and, with the folder and socket opened up, by the server itself
    (SO_PEERCRED): no grader forked, no answer, and the server serves on."""
    notebook = tmp_path / "nobody.ipynb"
    nbformat.write(submission(RIGHT), str(notebook))
    tmp_path.chmod(0o755)
    notebook.chmod(0o644)
    before = server_state(served.env)["checks"]
    said = as_nobody(_forge_check_request, str(served.socket), str(served.course),
                      str(notebook))
    assert said.startswith("refused") and "Permission denied" in said, said
    folder_mode, socket_mode = served.socket.parent.stat().st_mode, served.socket.stat().st_mode
    served.socket.parent.chmod(0o711)
    served.socket.chmod(0o777)
    try:
        said = as_nobody(_forge_check_request, str(served.socket), str(served.course),
                          str(notebook))
    finally:
        served.socket.parent.chmod(folder_mode & 0o7777)
        served.socket.chmod(socket_mode & 0o7777)
    assert "pid" not in said and "exit" not in said, said
    assert server_state(served.env)["checks"] == before  # nothing was run for it
    assert_still_serving(served)


def _impersonate(folder: str, path: str, ready: int) -> str:
    """As another user: a fake server in a cache folder of its own; records what the
    instructor's `course check` sends it, and prints a fake grade on their terminal."""
    os.makedirs(folder, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    os.chmod(path, 0o777)
    listener.listen(1)
    listener.settimeout(150)
    os.write(ready, b"1")
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        return "no request"
    with conn:
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
        request = json.loads(message)
        if len(fds) == 2:
            os.write(fds[0], b"FAKE-GRADE: 2/2 (ok)\n")
        conn.sendall(json.dumps({"pid": 1}).encode())
        conn.sendall(json.dumps({"exit": 0}).encode())
    return json.dumps({"env": request.get("env", {}).get("INSTRUCTORS_TOKEN"),
                       "argv": request.get("argv"), "fds": len(fds)})


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_a_server_socket_another_user_planted_is_never_used(served, tmp_path):
    """The cache is in a folder every user may write to (COURSE_CHECK_CACHE=/tmp/...,
    sticky like /tmp). Another user creates the course's cache folder first (its name is
    a digest of the course's path) and listens where the server's socket will be (its
    name a digest of the code and the COURSE_* settings, which they can read). The
    instructor's `course check` must not send them its arguments, its environment (here
    a token) and its terminal, nor print the grade they make up."""
    shared = Path(tempfile.mkdtemp(prefix="shared-cache-"))
    shared.chmod(0o1777)
    env = {**served.env, "COURSE_CHECK_CACHE": str(shared), "COURSE_CHECK_SERVER_IDLE": "5",
           "INSTRUCTORS_TOKEN": "token-" + os.urandom(6).hex()}
    folder = shared / hashlib.sha256(str(served.course.resolve()).encode()).hexdigest()[:12]
    key = subprocess.run([sys.executable, "-c", "from course_lib.instructor import "
                          "check_server as c; print(c.code_key())"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    path = folder / f"server-{key}.sock"  # where the instructor's check will look
    notebook = tmp_path / "right.ipynb"
    nbformat.write(submission(RIGHT), str(notebook))
    report_read, report_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_read)
            os.close(ready_read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                said = _impersonate(str(folder), str(path), ready_write)
            except BaseException as exc:  # noqa: BLE001
                said = f"{type(exc).__name__}: {exc}"
            os.write(report_write, said.encode())
        finally:
            os._exit(0)
    os.close(report_write)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"1", "the other user's listener did not start"
        done = course_cmd(env, "check", str(notebook), "--assignment", ASSIGNMENT,
                          timeout=300)
        os.kill(pid, signal.SIGKILL) if not select.select([report_read], [], [], 5)[0] else None
        said = os.read(report_read, 65536).decode()
    finally:
        os.waitpid(pid, 0)
        os.close(report_read)
        os.close(ready_read)
        stop_server(env, None)
        state = server_state(env)
        if state is not None:
            stop_server(env, state["pid"], zygotes_of(state["pid"]))
        sweep(shared, within=15)  # a server a check started in the background ends idle
        shutil.rmtree(shared, ignore_errors=True)
    assert "FAKE-GRADE" not in done.stdout, (
        "the instructor's check was answered by another user's server: it printed "
        f"{done.stdout!r}, and that user received {said}")
    assert env["INSTRUCTORS_TOKEN"] not in said, said
    assert said in ("no request", ""), said


def test_forged_requests_do_not_crash_the_server_or_leave_anything(served, tmp_path):
    """The same user, straight over the socket: what is not JSON, not an object, nested
    past the parser's depth, bigger than a message, a check with the wrong number of
    descriptors, with arguments, environment, folder or start time of the wrong kind, for a
    course that does not exist, and with output descriptors that cannot be written. Each
    is refused or ends in its grader with a failing exit status; the graders leave
    nothing in their temporary folder, and the server serves the next check as before."""
    private_tmp = tmp_path / "graders-tmp"
    private_tmp.mkdir()
    notebook = tmp_path / "right.ipynb"
    nbformat.write(submission(RIGHT), str(notebook))
    env = {**served.env, "TMPDIR": str(private_tmp)}
    argv = ["check", str(notebook), "--assignment", ASSIGNMENT]
    good = {"argv": argv, "cwd": str(served.course), "env": env}
    out_read, out_write = os.pipe()
    os.set_blocking(out_read, False)  # a descriptor the server kept must not hang the test
    readonly = os.open(os.devnull, os.O_RDONLY)
    closed_read, closed_write = os.pipe()
    os.close(closed_read)  # writing there: EPIPE
    big = 4 << 20
    try:
        answers = {}
        for name, raw in (("empty", b""), ("not json", b"not json"),
                          ("not utf-8", b"\xff\xfe\x00"), ("a list", b"[1, 2]"),
                          ("a string", b'"argv"'), ("null", b"null"),
                          ("too deep", b"[" * 20000 + b"]" * 20000)):
            answers[name] = _raw(served.socket, None, raw=raw)
        # bigger than the server reads (MESSAGE_BYTES); without descriptors: what becomes
        # of those of a message the server cannot read is the next test's
        try:
            answers["huge"] = _raw(served.socket, {**good, "pad": "x" * big})
        except OSError as exc:
            answers["huge"] = f"not sent: {exc.strerror}"
        for name, request, fds in (
                ("no descriptors", good, []), ("one descriptor", good, [out_write]),
                ("argv a string", {**good, "argv": "check"}, [out_write, out_write]),
                ("argv of numbers", {**good, "argv": [1, 2]}, [out_write, out_write]),
                ("no env", {"argv": argv, "cwd": str(served.course)}, [out_write, out_write]),
                ("no cwd", {"argv": argv, "env": env}, [out_write, out_write]),
                ("env a string", {**good, "env": "COURSE_ROOT=/"}, [out_write, out_write]),
                ("env of numbers", {**good, "env": {**env, "X": 1}}, [out_write, out_write]),
                ("cwd missing", {**good, "cwd": "/nonexistent/folder"}, [out_write, out_write]),
                ("age a string", {**good, "age": "old"}, [out_write, out_write]),
                ("another course", {**good, "env": {**env, "COURSE_ROOT": "/nonexistent"}},
                 [out_write, out_write]),
                ("status and argv", {**good, "status": True}, [out_write, out_write]),
                ("output read-only", good, [readonly, readonly]),
                ("output closed", good, [closed_write, closed_write]),
                ("three descriptors", {**good, "argv": ["check", "--help"]},
                 [out_write, out_write, out_write])):
            answers[name] = _raw(served.socket, request, fds)
    finally:
        for fd in (out_write, readonly, closed_write):
            os.close(fd)
        output = b""
        try:
            while chunk := os.read(out_read, 1 << 20):
                output += chunk
        except BlockingIOError:
            pass
        os.close(out_read)
    # refused unanswered: not a request, or one whose fields have the wrong types
    for name in ("empty", "not json", "not utf-8", "a list", "a string", "null", "too deep",
                 "no descriptors", "one descriptor", "argv a string", "argv of numbers",
                 "no env", "no cwd", "env a string", "env of numbers", "age a string"):
        assert answers[name] == [], (name, answers[name])
    assert answers["huge"] == [] or str(answers["huge"]).startswith("not sent"), answers["huge"]
    for name in ("cwd missing", "another course", "output read-only", "output closed"):
        # a grader's pid, then its exit status (in that order: the caller needs the pid)
        assert [list(a) for a in answers[name]] == [["pid"], ["exit"]], (name, answers[name])
        assert answers[name][1]["exit"] != 0, (name, answers[name])
    assert answers["status and argv"][0]["pid"] == served.pid  # answered as a status
    assert answers["three descriptors"][-1] == {"exit": 0} and b"--assignment" in output
    assert list(private_tmp.iterdir()) == [], "the graders left files behind"
    assert_still_serving(served)
    score, message, _ = check(served, tmp_path, "after", RIGHT)
    assert score == 2, message


def test_malformed_requests_leave_no_descriptor_open_in_the_server(served):
    """A message the server cannot parse, sent with two descriptors (as a check sends
    its stdout and stderr), must not leave them open in the server: each one kept is kept
    for as long as it runs (the reader of such a pipe never sees its end) and is
    inherited by every grader it forks; enough of them and accept() fails with EMFILE,
    which ends the server."""
    def count() -> int:
        return len(os.listdir(f"/proc/{served.pid}/fd"))

    _raw(served.socket, {"status": True})
    before = count()
    for raw in (b"not json", b"\xff\xfe", b"[" * 20000):
        for _ in range(5):
            read, write = os.pipe()
            try:
                assert _raw(served.socket, None, [read, write], raw=raw) == []
            finally:
                os.close(read)
                os.close(write)
    _raw(served.socket, {"status": True})  # every request before it has been handled
    assert count() <= before + 2, (
        f"the server holds {count() - before} more descriptors after 15 malformed requests "
        f"(before: {before}): " + ", ".join(sorted(
            os.readlink(f"/proc/{served.pid}/fd/{fd}") for fd in os.listdir(
                f"/proc/{served.pid}/fd"))[-8:]))


def test_a_connection_that_says_nothing_does_not_stall_the_server(served):
    """A client that connects and sends nothing (a process stopped or stuck between its
    connect and its request) must not hold the server: the next `course check` would wait
    for it for ever (its client has no time limit and no fallback once connected)."""
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        silent.connect(str(served.socket))
        time.sleep(0.5)  # the server has accepted it
        try:
            answered = _raw(served.socket, {"status": True}, timeout=60)
        except TimeoutError:
            answered = None
    finally:
        silent.close()
    assert answered and answered[0].get("pid") == served.pid, \
        "the server answered nothing for 60 s while a silent connection was open"
    assert_still_serving(served)


# -- 5. a kernel that never ends, and makes threads and processes ---------------------------

NEVER_ENDS = RIGHT + r'''

import os, signal, threading, time
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(_sig, signal.SIG_IGN)
def _forever():
    while True:
        time.sleep(0.5)
for _ in range(400):  # past the sandbox's process limit
    try:
        threading.Thread(target=_forever, daemon=True).start()
    except Exception:
        break
for _ in range(50):
    try:
        if os.fork() == 0:
            _forever()
    except OSError:
        pass
while True:
    try:
        time.sleep(1)
    except BaseException:  # the interrupt too
        pass
'''


def test_a_kernel_that_never_ends_and_multiplies_harms_no_later_check(served, tmp_path):
    """A notebook that ignores signals and interrupts, starts threads past the sandbox's
    limit, tries to fork, and never ends: its check ends (at the cell limit), scoring
    nothing; nothing of its sandbox is left (the zygotes have no child, the server no
    child but its zygotes), and the next check is graded, 2/2, by the same server."""
    started = time.monotonic()
    score, message, _ = check(served, tmp_path, "never", NEVER_ENDS, timeout=200)
    assert score == 0 and time.monotonic() - started < 150
    assert until(lambda: children(served.pid) == served.zygotes
                 and not any(children(z) for z in served.zygotes), 30), \
        {z: children(z) for z in children(served.pid)}
    score, message, _ = check(served, tmp_path, "next", RIGHT)
    assert score == 2, message
    assert_still_serving(served)
