"""Grade a class on a dask.distributed cluster (`course grade --scheduler ADDRESS`).

The design keeps grading exactly what it is on one machine and only moves
where each submission is graded:

- One task is one whole submission: ``grade._grade_task(course_root,
  assignment, student, feedback)``, the function ``grade_class``'s local
  processes run. nbgrader runs inside the worker process: it starts the
  grading kernel on the worker's machine, writes autograded/ (and feedback/)
  and records the grades, then the task returns the SubmissionResult. Retries
  (a kernel that never started, a death once) happen inside the task, as
  they do locally, so a cluster run gives the same results as a local one.
- Every machine sees the course folder at the same path (a shared
  filesystem: NFS, CephFS, ...). The task carries the path, not the files:
  nbgrader reads submitted/ and source/ there and writes autograded/ and
  feedback/ there, where the instructor's machine reads them afterwards.
- The gradebook is PostgreSQL. Workers on several machines cannot share a
  SQLite file (its locking does not hold over a network filesystem), so a
  SQLite gradebook is refused; every machine sets the same
  ``COURSE_DB_URL=postgresql://...``, which nbgrader_config.py reads.
- Workers run one task at a time (``--nthreads 1``); a machine grades several
  submissions at once with several worker processes (``--nworkers N``).
  nbgrader keeps state per process, not per thread.

Before grading, one check runs on every worker and says what it lacks:
course_lib (the course's .venv), the course folder at this path (the same
folder, not a copy: a marker file written a moment before must be visible),
write access there, and the same gradebook URL. The check is sent by value,
so that a worker without course_lib can still explain itself.
docs/cluster.md describes setting up a real cluster.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

CONNECT_TIMEOUT = 10  # seconds to reach the scheduler
WORKERS_TIMEOUT = 30  # seconds to wait for a first worker
SETUP_HELP = "see docs/cluster.md"


class ClusterError(RuntimeError):
    """The cluster cannot grade this course; the message says why and what to do."""


def grade_on_cluster(scheduler: str, course_root, tasks, feedback=False,
                     progress=None) -> list:
    """Grade each (assignment, student) of ``tasks`` as one task on the cluster.

    Args:
        scheduler: the dask scheduler's address, e.g. ``tcp://host:8786``.
        course_root: the course folder, at the same path on every worker.
        tasks: (assignment, student) pairs.
        feedback: which submissions get their feedback page (grade.Feedback).
        progress: callable(done, total, label) called after each submission.
    Returns:
        one SubmissionResult per task, in the order they finished.
    Raises:
        ClusterError: a SQLite gradebook, an unreachable scheduler, no
            workers, or workers that cannot grade this course.
    """
    from .course import open_api
    from .grade import add_students

    course_root, tasks = Path(course_root).resolve(), list(tasks)
    _, coursedir = open_api(course_root)
    db_url = shared_gradebook_url(coursedir)
    client = connect(scheduler)
    try:
        check_workers(client, scheduler, course_root, db_url)
        add_students(coursedir, sorted({student for _, student in tasks}))  # see grade.py
        return _grade(client, course_root, tasks, feedback, progress)
    finally:
        client.close()


def hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def shared_gradebook_url(coursedir) -> str:
    """The gradebook's URL (from the course's CourseDirectory), if workers can share it."""
    from sqlalchemy.engine import make_url

    url = coursedir.db_url
    if make_url(url).get_backend_name() == "sqlite":
        raise ClusterError(
            f"the gradebook is SQLite ({url}): a cluster's workers on several machines "
            "cannot share a SQLite file (its locks do not hold over a network filesystem). "
            "Put the gradebook on PostgreSQL: set COURSE_DB_URL=postgresql://USER@HOST/DB "
            f"here and on every worker ({SETUP_HELP})")
    return url


def connect(scheduler: str):
    """A Client of the scheduler, or a ClusterError naming the address."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the dask scheduler at {scheduler} (waited {CONNECT_TIMEOUT} s): "
            f"{exc}. Is `dask scheduler` running there, and is its port open from this "
            f"machine? ({SETUP_HELP})") from None


def check_workers(client, scheduler: str, course_root: Path, db_url: str) -> None:
    """Refuse a cluster with no workers, or with workers that cannot grade this course."""
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except TimeoutError:
        raise ClusterError(
            f"the scheduler at {scheduler} has no workers (waited {WORKERS_TIMEOUT} s): start "
            f"some with `dask worker {scheduler} --nworkers N --nthreads 1` "
            f"({SETUP_HELP})") from None
    workers = client.scheduler_info(n_workers=-1)["workers"]
    problems = {addr: f"runs {w['nthreads']} threads: nbgrader grades one submission at a "
                      "time per process; start workers with --nthreads 1 (and --nworkers N "
                      "for several at once)"
                for addr, w in workers.items() if w["nthreads"] != 1}
    if not problems:
        problems = {addr: why for addr, why in
                    _ask_workers(client, course_root, db_url).items() if why}
    if problems:
        raise ClusterError("these workers cannot grade the course:\n" + "\n".join(
            f"  {addr}: {why}" for addr, why in sorted(problems.items())) + f"\n({SETUP_HELP})")


def _ask_workers(client, course_root: Path, db_url: str) -> dict[str, str]:
    """worker_problem on every worker, with a marker file only the shared folder holds."""
    import cloudpickle

    marker = course_root / f".cluster-check-{secrets.token_hex(8)}"
    marker.write_text("written by course grade --scheduler to check the workers see this "
                      "folder; removed right after\n")
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # a worker without course_lib can reply
    try:
        return client.run(worker_problem, str(course_root), marker.name, db_url)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        marker.unlink(missing_ok=True)


def worker_problem(course_root: str, marker: str, db_url: str,
                   module: str = "course_lib.instructor.grade") -> str:
    """Why this worker cannot grade the course, or '' if it can. Runs on the worker.

    Only the standard library until ``module`` has been imported: the
    function travels by value and must run where course_lib is missing.
    """
    import importlib
    import os
    import socket
    import sys

    here = f"{socket.gethostname()} ({sys.executable})"
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is the answer
        return (f"{here} cannot import {module} ({type(exc).__name__}: {exc}): start the "
                "worker with the course's Python, e.g. COURSE/.venv/bin/dask worker")
    config = os.path.join(course_root, "nbgrader_config.py")
    if not os.path.isfile(config):
        return (f"{here} sees no {config}: mount the shared course folder at {course_root}, "
                "the same path as on the machine that runs course grade")
    if not os.path.exists(os.path.join(course_root, marker)):
        return (f"{here} sees a course at {course_root}, but not the shared one (the file "
                f"{marker} written there a moment ago is missing): mount the shared folder "
                "at that path instead of a copy")
    if not os.access(course_root, os.W_OK):
        return f"{here} cannot write in {course_root} (autograded/ and feedback/ go there)"
    return _gradebook_problem(here, course_root, db_url)


def _gradebook_problem(here: str, course_root: str, db_url: str) -> str:
    from course_lib.instructor.course import load_config

    try:
        worker_url = load_config(Path(course_root)).CourseDirectory.db_url
    except Exception as exc:  # noqa: BLE001 - the worker's config must load
        return f"{here} cannot load {course_root}/nbgrader_config.py: {type(exc).__name__}: {exc}"
    if worker_url != db_url:
        return (f"{here} would record grades in {hide_password(worker_url)}, not in "
                f"{hide_password(db_url)}: set COURSE_DB_URL to the same URL in the "
                "worker's environment")
    return ""


def _grade(client, course_root: Path, tasks: list, feedback, progress) -> list:
    from distributed import as_completed

    from .grade import _grade_task

    futures = [client.submit(_grade_task, str(course_root), assignment, student, feedback,
                             pure=False) for assignment, student in tasks]
    results = []
    for future in as_completed(futures, loop=client.loop):
        result = future.result()
        results.append(result)
        if progress:
            progress(len(results), len(tasks), f"{result.student}/{result.assignment}")
    return results
