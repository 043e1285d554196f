"""Grade one notebook on its own, with nbgrader, without touching the gradebook.

``check_notebook(path, assignment)`` grades in a throw-away course folder (the
assignment's source, a private SQLite gradebook, the notebook as the only
submission) with nbgrader's own ``autograde``, and reads back every graded
cell's score and, for a failed test cell, the message of its error. Nothing in
the real course folder changes.

What does not depend on the notebook is prepared once and kept (``prepared``):
the assignment's source and a gradebook in which nbgrader's
``generate_assignment`` registered it (creating a gradebook runs alembic's
migrations: seconds). It is kept under the user's cache folder, one folder per
course and assignment whose name is a digest of everything the registration
reads (the assignment's source files, nbgrader_config.py, nbgrader's version), so
an edited lesson or configuration gets a new one; each check copies it into its
own temporary folder, so checks running at once share nothing writable. The
sealed kernel is started while nbgrader sets up (judge.warm), and ``timings``
says where the time went (``course check --timings``).

This is the engine of ``course check`` and of the tests that grade the source
and release notebooks and submissions that make a known mistake.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .course import check_assignments, find_course_root, load_config, open_api
from .status import NORMAL, Status

# nbformat and .grade (nbgrader, numpy) are imported where they are used: a check
# that a warm server answers (check_server.forward) reads only the cache's folder here.

STUDENT = "selfcheck"
CACHE_VERSION = "2"  # bump when what a prepared folder holds changes


@dataclass
class CellResult:
    """One graded cell: its nbgrader grade_id, score, and the failure message.

    ``autograded`` is False for a cell graded by hand (a written answer), whose
    score stays 0 until an instructor grades it in the formgrader.
    """

    grade_id: str
    score: float
    max_score: float
    message: str = ""
    autograded: bool = True


@dataclass
class CheckResult:
    """The grade of one notebook, as ``course check --json`` prints it."""

    assignment: str
    score: float
    max_score: float
    status: str  # "ok", or why it could not be graded normally
    cells: list[CellResult] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # suspicious code that cost nothing

    def to_json(self) -> str:
        """The JSON object `course check --json` prints (cells without `autograded`)."""
        data = asdict(self)
        for cell in data["cells"]:
            del cell["autograded"]
        return json.dumps(data, indent=2, ensure_ascii=False)

    def cell(self, grade_id: str) -> CellResult:
        for c in self.cells:
            if c.grade_id == grade_id:
                return c
        raise KeyError(f"no graded cell {grade_id!r} in {self.assignment}")


def cache_root() -> Path:
    """Where prepared courses are kept: $COURSE_CHECK_CACHE, else the user's cache folder.
    Never bound into a grading sandbox (and masked there if a bound tree holds it)."""
    if os.environ.get("COURSE_CHECK_CACHE"):
        return Path(os.environ["COURSE_CHECK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "course-check"


def preparation_key(course_root: Path, assignment: str) -> str:
    """A digest of everything the gradebook's registration of ``assignment`` reads."""
    from importlib.metadata import version

    nbgrader_version = version("nbgrader")
    digest = hashlib.sha256(f"{CACHE_VERSION}\0{nbgrader_version}\0{assignment}\0".encode())
    config = Path(course_root) / "nbgrader_config.py"
    digest.update(config.read_bytes() if config.is_file() else b"")
    source = Path(course_root) / "source" / assignment
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and not any(p in ("__pycache__", ".ipynb_checkpoints")
                                      for p in rel.parts):
            digest.update(f"\0{rel.as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def course_cache(course_root: Path) -> Path:
    """The course's folder in the cache (made private to the user): its prepared
    assignments, and its warm grader's socket (check_server)."""
    course_root = Path(course_root).resolve()
    folder = cache_root() / hashlib.sha256(str(course_root).encode()).hexdigest()[:12]
    made = False
    if not folder.is_dir():
        _sweep_gone_courses(folder.parent)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
            made = True
        except FileExistsError:
            pass  # made since, or not a folder: said below
    # A folder someone else made first (a cache under a shared /tmp) would be theirs to
    # fill: a gradebook, a server's socket. Only a real folder of this user's is used.
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"the check cache {folder} is not a folder of this user's: "
                           "remove it, or set COURSE_CHECK_CACHE to a private folder")
    folder.chmod(0o700)
    if made:
        (folder / "course").write_text(str(course_root))
    return folder


def prepared(course_root: Path, assignment: str) -> tuple[Path, bool]:
    """The prepared folder (``source/<assignment>``, ``gradebook.db`` with the assignment
    registered) for the course as it is now, and whether it was built just now."""
    course_root = Path(course_root).resolve()
    key = preparation_key(course_root, assignment)
    folder = course_cache(course_root) / f"{assignment}-{key}"
    if (folder / "gradebook.db").is_file():
        return folder, False
    _sweep_older(folder.parent, assignment, keep=folder.name)
    from .grade import register_assignment

    build = Path(tempfile.mkdtemp(prefix=f".{assignment}-", dir=folder.parent))
    try:
        shutil.copytree(course_root / "source" / assignment, build / "source" / assignment,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        api, _ = open_api(course_root, CourseDirectory__root=str(build),  # runs nothing
                          CourseDirectory__db_url=f"sqlite:///{build / 'gradebook.db'}")
        register_assignment(api, assignment)
        try:
            build.rename(folder)  # whole or not at all; another check may have won the race
        except OSError:
            shutil.rmtree(build, ignore_errors=True)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return folder, True


def _sweep_gone_courses(cache: Path) -> None:
    """The prepared folders of courses that no longer exist (a test's temporary course)."""
    for place in cache.glob("*/course") if cache.is_dir() else ():
        try:
            gone = not Path(place.read_text()).is_dir()
        except OSError:
            continue
        if gone:
            shutil.rmtree(place.parent, ignore_errors=True)


def _sweep_older(parent: Path, assignment: str, keep: str) -> None:
    """Prepared folders of earlier versions of the assignment: no longer needed."""
    for old in parent.glob(f"{assignment}-*"):
        if old.name != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _private_api(course_root: Path, tmp: Path, unsealed: bool, assignment: str,
                 settings: dict | None):
    """The course's settings, with every folder and the gradebook in ``tmp``; the kernel
    for the one notebook of ``assignment`` starts first (none after it)."""
    from .grade import open_grading_api

    return open_grading_api(course_root, guard_roots=[course_root, cache_root()],
                            unsealed=unsealed, first=assignment, then=False,
                            settings=settings, CourseDirectory__root=str(tmp),
                            CourseDirectory__db_url=f"sqlite:///{tmp / 'gradebook.db'}")


SETTINGS = "grading_settings.json"  # in a prepared folder: grade.grading_settings


def cached_settings(ready: Path, course_root: Path) -> dict:
    """grade.grading_settings, kept in the prepared folder (whose name is a digest of
    nbgrader_config.py, among others): read from the file, the sandbox and the kernel
    start before nbgrader is imported, which reading nbgrader_config.py does."""
    from ..judge.sealed import Settings

    path = ready / SETTINGS
    try:
        settings = json.loads(path.read_text())
        Settings(**settings["judge"])  # a file this version cannot read is made again
        if isinstance(settings["extra_arguments"], list):
            return settings
    except (OSError, ValueError, TypeError, KeyError):
        pass
    from .grade import grading_settings

    settings = grading_settings(load_config(course_root))
    tmp = path.with_name(f".{SETTINGS}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(settings))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache: read nbgrader_config.py again next time
    return settings


def digits_from_cache(sandbox) -> None:
    """Put the sandbox's copy of scikit-learn's digits without the held-out rows
    (course_lib.data, mounted in every grading sandbox) in its folder, from the cache:
    written there once per version of the digits file and of the module that writes it
    (both in the folder's name), instead of for every check (0.2 s before the kernel
    can start)."""
    from .. import data

    try:
        original = data.digits_path()
        digest = hashlib.sha256(Path(data.__file__).read_bytes() + original.read_bytes())
    except (ModuleNotFoundError, OSError):
        return  # nothing to mount (data.sandbox_digits_binds says the same)
    try:
        cached = data.write_digits_without_held_out(
            _ensure(cache_root() / f"digits-{digest.hexdigest()[:24]}"))
        shutil.copyfile(cached, Path(sandbox.folder) / cached.name)
    except OSError:
        pass  # two first checks at once: the sandbox writes its own, as without a cache


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_notebook(path, assignment: str, course_root: Path | None = None,
                   unsealed: bool = False, timings: dict | None = None) -> CheckResult:
    """Autograde one notebook file in a private, temporary course.

    The same code path as ``course grade`` (grade.grade_reliably), in a
    throw-away course folder with its own gradebook.

    Args:
        path: the notebook to grade (a student's submission, or a source or
            release notebook).
        assignment: its nbgrader assignment id, e.g. "02_sigmoid".
        course_root: the course folder (default: see find_course_root).
        timings: a dict to fill with seconds per step (``course check --timings``).
    Returns:
        CheckResult with one CellResult per graded cell, in notebook order;
        status "ok" or why the notebook could not be graded normally.
    """
    import nbformat

    from .grade import grade_reliably, shared_gradebook

    clock = _Clock(timings)
    course_root = Path(course_root) if course_root else find_course_root()
    check_assignments(course_root, [assignment])
    path = Path(path)
    source_nb = course_root / "source" / assignment / f"{assignment}.ipynb"
    # nbgrader: a grade cell that is also a solution cell is graded by hand.
    by_hand = {c.metadata["nbgrader"]["grade_id"]
               for c in nbformat.read(str(source_nb), as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("grade")
               and c.metadata["nbgrader"].get("solution")}
    clock.lap("read the assignment")
    ready, built = prepared(course_root, assignment)
    clock.lap("prepare the course (built now)" if built else "prepared course (cached)")

    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(ready, tmp, dirs_exist_ok=True)
        dest = tmp / "submitted" / STUDENT / assignment
        dest.mkdir(parents=True)
        if path.is_file():
            shutil.copyfile(path, dest / f"{assignment}.ipynb")
        settings = None if unsealed else cached_settings(ready, course_root)
        api = _private_api(course_root, tmp, unsealed, assignment, settings)
        clock.lap("open the grader (the sandbox, the kernel started in the background, the "
                  "judge, nbgrader)")
        try:
            with shared_gradebook():  # ended before the folder is removed
                graded = grade_reliably(api, assignment, STUDENT)
            ahead = api.sealed is not None and api.sealed.sandbox.warm.adopted > 0
            clock.lap("grade: nbgrader's autograde, the notebook in its kernel, the judge"
                      + (" (the kernel was ready)" if ahead else ""))
        finally:
            if api.sealed is not None:
                api.sealed.sandbox.warm.close()
                api.sealed.close()

    cells = [CellResult(gid, score, max_score, graded.messages.get(gid, ""),
                        autograded=gid not in by_hand)
             for gid, (score, max_score) in graded.cell_scores.items()]
    status = Status.OK if graded.status in NORMAL else graded.status
    result = CheckResult(assignment, graded.score, graded.max_score, status, cells,
                         notes=list(graded.notes))
    if graded.status == Status.AWAITING_HAND_GRADING:
        result.flags.append(Status.AWAITING_HAND_GRADING)
    result.flags.extend(graded.flags)
    if graded.reason and not graded.flags:
        result.flags.append(graded.reason)
    clock.lap("read the results")
    return result


# The first step of a check's timings: how long the process took to reach the check.
# A warm server's grader (check_server) says how long its caller took instead.
STARTUP: tuple[str, float] | None = None


class _Clock:
    """Seconds per step, into ``timings`` (in order) when one is given."""

    def __init__(self, timings: dict | None):
        self.timings, self.last = timings, time.perf_counter()
        if timings is not None and not timings:
            step, age = STARTUP or ("start Python, read the command", process_age())
            if age is not None:
                timings[step] = age

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[step] = self.timings.get(step, 0.0) + now - self.last
        self.last = now


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), or None."""
    try:
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
