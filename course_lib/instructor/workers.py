"""The processes that grade a class: forked from a forkserver that imported once.

``course grade --jobs N`` grades in N worker processes (grade.grade_class). Each
one needs nbgrader, nbconvert, nbclient, jupyter_client, zmq, the judge and the
lessons' checks: a second and a half of imports. Spawned, every worker imported
them itself, after the main process had imported its own share, on a machine
whose two cores then had nothing else to do. Here multiprocessing's forkserver,
a process of its own (nothing of the main process's: no gradebook connection, no
kernel manager), imports them once (GRADER_MODULES), beside the main process's
own start, and forks each worker from there.

torch is not among them: only lesson 5's checks need it, and a worker imports it
when it first grades that lesson, both workers at once on the two cores; in the
forkserver it would be a second of one core before any worker exists.

Pure standard library here: the `course grade` command starts the forkserver
before it imports anything of its own (start_workers_early).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

# What a grading process imports before its first notebook (the judge's checks but
# torch's among them): the forkserver imports them, and so does a warm `course check`
# server (check_server), which adds torch's.
GRADER_MODULES = ("course_lib.instructor.grade", "course_lib.instructor.check",
                  "course_lib.judge.sealed", "course_lib.judge.sandbox",
                  "course_lib.judge.polled_client", "nbgrader.apps.api",
                  "nbgrader.converters.autograde", "nbgrader.preprocessors", "nbclient",
                  "jupyter_client.manager", "jupyter_client.launcher", "zmq",
                  "course_lib.grading.chain_rule", "course_lib.grading.sigmoid",
                  "course_lib.grading.softmax", "course_lib.grading.mlp")


# numpy's and torch's thread pools start with their import: with these, a process has
# one thread after them (a process that forks must have no other; the grading
# processes compute little outside their kernels).
ONE_MATH_THREAD = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                 "MKL_NUM_THREADS"), "1")


@contextmanager
def environment(values: dict[str, str]):
    """These environment variables set within (for a process started there), then
    put back as they were."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def worker_context():
    """multiprocessing's forkserver context, its server started now (importing
    GRADER_MODULES) unless it runs already."""
    import multiprocessing
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(GRADER_MODULES))
    with environment(ONE_MATH_THREAD):
        forkserver.ensure_running()
    return ctx


def start_workers_early(course_root: Path, assignments, students, jobs: int | None) -> None:
    """Start the forkserver now when more than one worker will grade: from the
    submitted/ folder, or the students asked for (before the gradebook says who is in
    the class). A worker forked later then finds everything imported."""
    if (jobs or os.cpu_count() or 1) < 2:
        return
    submitted = Path(course_root) / "submitted"
    count = len(students) if students else (
        sum(1 for p in submitted.iterdir() if p.is_dir()) if submitted.is_dir() else 0)
    if len(assignments or ()) * count > 1:
        worker_context()


def stop_forkserver() -> None:
    """End the forkserver once a command has graded: nothing of the grading outlives
    the command, and the CPU of the forkserver and its workers counts as the command's
    (its children's). multiprocessing has no public way to; its own tests call this."""
    from multiprocessing import forkserver

    try:
        forkserver._forkserver._stop()
    except (AttributeError, OSError):
        pass
