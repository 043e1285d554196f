"""Grading on a dask.distributed cluster with a PostgreSQL gradebook.

A small class (a right answer, a wrong one, an infinite loop, a kernel crash,
a missing notebook, bad JSON) is graded three ways: locally on SQLite
(jobs=1, the reference), on a local cluster of two worker processes on
loopback with the gradebook on PostgreSQL, and with jobs=2 on PostgreSQL.
All three must give the same SubmissionResults. The PostgreSQL server is
Debian's, started here in a temporary folder (`make test` installs it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from toycourse import ASSIGNMENT, NEVER_ENDS, SIGMOID_INSTEAD, hand_in, make_course, submission

from course_lib.instructor import distributed as D
from course_lib.instructor.grade import grade_class

# PostgreSQL, a dask cluster and grading kernels, for every test of the file
pytestmark = [pytest.mark.slow, pytest.mark.kernel]

CLASS = {  # student: what they handed in
    "alice": submission(),
    "bob": submission(SIGMOID_INSTEAD),
    "carol": submission(NEVER_ENDS),
    "dan": submission("import os\nos._exit(3)"),
    "erin": "{this is not json",
    "gus": None,  # a folder, no notebook
}


@contextlib.contextmanager
def closed_port():
    """A loopback port that nothing can listen on while the block runs: it is held by a
    socket bound to it that does not listen, so a connection there is refused (a port
    found free and released could be taken again by any test's kernel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


class PostgresServer:
    """Debian's PostgreSQL in a temporary folder, reached through its Unix socket there.

    No TCP port: one picked free would be free only until the server bound it, seconds
    later, and the tests' kernels take loopback ports meanwhile. (`5432` only names the
    socket file, `.s.PGSQL.5432`, in the server's own folder.)

    initdb refuses to run as root, so as root (CI) the server runs as the
    Debian `postgres` user in a folder it owns.
    """

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not found:
            pytest.fail("PostgreSQL is not installed: `make test` installs Debian's "
                        "postgresql (apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="course-pg-"))
        self.data, self.log = self.folder / "data", self.folder / "server.log"
        self.as_owner = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.port = 5432
        self.url = f"postgresql://postgres@/gradebook?host={self.folder}&port={self.port}"

    # Seconds for one step (initdb, the server's start, createdb); each needs a few at
    # most, also on a busy machine: a limit far above, that only a hung step reaches.
    STEP_TIMEOUT = 300

    def run(self, *args):
        return subprocess.run([*self.as_owner, *map(str, args)], capture_output=True,
                              text=True, timeout=self.STEP_TIMEOUT)

    def start(self) -> PostgresServer:
        steps = [
            ("initdb", self.bin / "initdb", "-D", self.data, "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--no-sync"),
            ("pg_ctl start", self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-w",
             "-t", str(self.STEP_TIMEOUT - 60),
             "-o", f"-h '' -p {self.port} -k {self.folder} -c fsync=off", "start"),
            ("createdb", self.bin / "createdb", "-h", self.folder, "-p", self.port,
             "-U", "postgres", "gradebook"),
        ]
        for name, *command in steps:
            done = self.run(*command)
            if done.returncode != 0:
                log = self.log.read_text() if self.log.is_file() else "(no server log)"
                pytest.fail(f"PostgreSQL: {name} failed ({done.returncode}):\n{done.stdout}\n"
                            f"{done.stderr}\nserver log:\n{log}")
        return self

    def stop(self) -> None:
        self.run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("cluster") / "course")
    for student, handed_in in CLASS.items():
        hand_in(course, student, handed_in)
    return course


@pytest.fixture(scope="module")
def local_results(course):
    """The reference: one process, the SQLite gradebook beside nbgrader_config.py."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("COURSE_DB_URL", raising=False)
        return grade_class(course, jobs=1)


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def on_postgres(postgres):
    """COURSE_DB_URL for this process and every worker started while it is set."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_DB_URL", postgres.url)
        yield postgres.url


@pytest.fixture(scope="module")
def cluster(on_postgres):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        yield cluster


def test_a_class_graded_on_a_cluster_gets_the_local_grades(course, local_results, cluster,
                                                            on_postgres):
    seen = []
    results = grade_class(course, scheduler=cluster.scheduler_address, feedback=True,
                          progress=lambda done, total, label: seen.append((done, total)))
    assert results == local_results
    assert [r.status for r in results] == ["awaiting_hand_grading", "awaiting_hand_grading",
                                           "timeout", "kernel_died", "unreadable", "missing"]
    assert seen == [(n, len(CLASS)) for n in range(1, len(CLASS) + 1)]

    from nbgrader.api import Gradebook

    with Gradebook(on_postgres, "backprop") as gb:  # the workers wrote PostgreSQL
        assert gb.find_submission(ASSIGNMENT, "alice").score == 2
        assert gb.find_submission(ASSIGNMENT, "bob").score == 0
    for student in ("alice", "bob", "carol"):  # and the shared folder
        assert (course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").is_file()
    assert not list(course.glob(".cluster-check-*"))  # the workers' check leaves nothing


def test_parallel_processes_on_postgresql_get_the_local_grades(course, local_results,
                                                               on_postgres):
    assert grade_class(course, jobs=2) == local_results


def test_a_sqlite_gradebook_is_refused_with_a_scheduler(course, monkeypatch):
    monkeypatch.delenv("COURSE_DB_URL", raising=False)
    with pytest.raises(D.ClusterError, match="COURSE_DB_URL=postgresql://") as err:
        D.grade_on_cluster("tcp://127.0.0.1:1", course, [(ASSIGNMENT, "alice")])
    assert "cannot share a SQLite file" in str(err.value)


def test_an_unreachable_scheduler_is_named(course, on_postgres, monkeypatch, capsys):
    from course_lib.instructor.cli import main

    monkeypatch.setattr(D, "CONNECT_TIMEOUT", 2)
    monkeypatch.setenv("COURSE_ROOT", str(course))
    with closed_port() as port:
        address = f"tcp://127.0.0.1:{port}"
        assert main(["grade", "--scheduler", address, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"cannot reach the dask scheduler at {address} (waited 2 s)" in err
        assert main(["grade", "--scheduler", address, "--jobs", "2"]) == 2
        assert "--jobs and --scheduler: choose one" in capsys.readouterr().err


def test_a_scheduler_without_workers_is_named(course, on_postgres, monkeypatch):
    from distributed import LocalCluster

    monkeypatch.setattr(D, "WORKERS_TIMEOUT", 1)
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=":0") as empty, \
            pytest.raises(D.ClusterError, match="has no workers .*--nthreads 1"):
        D.grade_on_cluster(empty.scheduler_address, course, [(ASSIGNMENT, "alice")])


def test_workers_that_cannot_grade_the_course_say_why(course, cluster, on_postgres, tmp_path):
    from distributed import Client, LocalCluster

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        assert set(D._ask_workers(client, course, on_postgres).values()) == {""}

    problem = D.worker_problem(str(course), "marker", on_postgres, module="course_lib_nowhere")
    assert "cannot import course_lib_nowhere (ModuleNotFoundError" in problem
    problem = D.worker_problem(str(tmp_path / "elsewhere"), "marker", on_postgres)
    assert f"sees no {tmp_path / 'elsewhere' / 'nbgrader_config.py'}" in problem
    problem = D.worker_problem(str(course), ".cluster-check-gone", on_postgres)
    assert "not the shared one" in problem
    (course / "marker").touch()
    problem = D.worker_problem(str(course), "marker", "postgresql://postgres@elsewhere/gb")
    (course / "marker").unlink()
    assert "set COURSE_DB_URL to the same URL" in problem

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      host="127.0.0.1", dashboard_address=":0") as threaded, \
            pytest.raises(D.ClusterError, match="runs 2 threads: .* --nthreads 1"):
        D.grade_on_cluster(threaded.scheduler_address, course, [(ASSIGNMENT, "alice")])
