"""The course folder and nbgrader's API, set up once for every instructor command.

A course folder holds ``nbgrader_config.py`` and nbgrader's folders
(source/, release/, submitted/, autograded/, feedback/). Every command finds it
the same way and talks to nbgrader through ``NbGraderAPI`` configured from that
file, so what runs here is exactly what ``nbgrader`` on the command line does.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

ASSIGNMENT_NOTEBOOK = "{assignment}.ipynb"


def ensure_tools_on_path() -> None:
    """nbgrader runs `alembic` as a command: make this Python's bin folder findable.

    When the course runs as `.venv/bin/python ...` without the venv activated,
    that folder is not on PATH and nbgrader fails with "No such file: alembic".
    """
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def jupyterlab_server(root_dir: Path, port: int, token: str) -> tuple[list[str], dict[str, str]]:
    """The JupyterLab command and environment every server of the course starts from:
    on 127.0.0.1 only, with a token, no news or update checks (nothing fetched at run
    time), and this Python's bin folder first on PATH (nbgrader runs `alembic`)."""
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", "--ServerApp.allow_root=True",
           f"--ServerApp.root_dir={root_dir}",
           "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    return cmd, env


def serving_port(proc, env: dict[str, str]) -> int | None:
    """The port the Jupyter server ``proc`` (started with ``env``) listens on, from the
    file every Jupyter server writes about itself (``jpserver-<pid>.json`` in its runtime
    folder, what `jupyter server list` reads); None when the server exited first.

    Start the server on port 0 and ask this: a port chosen beforehand and passed on
    could be taken by another process before the server binds it. Waits as long as the
    server lives: how long it takes to start depends on the machine, not on anything here.
    """
    import json
    import time

    from jupyter_core.paths import jupyter_runtime_dir

    info = Path(env.get("JUPYTER_RUNTIME_DIR") or jupyter_runtime_dir()) / \
        f"jpserver-{proc.pid}.json"
    while proc.poll() is None:
        try:
            return int(json.loads(info.read_text())["port"])
        except (OSError, ValueError, KeyError):  # not written yet, or half written
            time.sleep(0.2)
    return None


def find_course_root(start: Path | None = None) -> Path:
    """The folder holding nbgrader_config.py and source/: $COURSE_ROOT or a parent of cwd."""
    if os.environ.get("COURSE_ROOT"):
        return Path(os.environ["COURSE_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "source").is_dir():
            return folder
    raise FileNotFoundError("no course folder (with nbgrader_config.py and source/) here or "
                            "above; run from the course folder or set COURSE_ROOT")


def load_config(course_root: Path, **overrides):
    """The course's nbgrader_config.py as a traitlets Config, with overrides.

    Overrides are given as ``Section__option=value`` (double underscore), e.g.
    ``CourseDirectory__db_url="sqlite:////tmp/gb.db"``.
    """
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course_root)).load_config()
    for key, value in overrides.items():
        section, option = key.split("__", 1)
        config[section][option] = value
    return config


def open_api(course_root: Path, **overrides):
    """An NbGraderAPI for the course folder (quiet: errors only), and its CourseDirectory.

    The settings come from course_root's nbgrader_config.py; ``overrides`` (as
    in load_config) win, ``CourseDirectory__root`` included.
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    ensure_tools_on_path()
    config = load_config(course_root, **{"CourseDirectory__root": str(course_root), **overrides})
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config, log=NBGRADER_LOG)
    NBGRADER_LOG.setLevel(logging.ERROR)
    # A gradebook migration in this process (nbgrader's alembic env.py: logging's
    # fileConfig) disables every logger that exists: nbgrader's answers then hold no
    # log, and a notebook that could not be graded no reason but "see the above
    # traceback" (seen after the formgrader repaired a gradebook in the same process).
    NBGRADER_LOG.disabled = False
    return api, coursedir


# nbgrader's messages, on a logger of the course's own (not that of whatever Jupyter
# application runs in this process, traitlets' get_logger): nbgrader's answers
# (autograde's "log") are read from it.
NBGRADER_LOG = logging.getLogger("course_lib.nbgrader")
NBGRADER_LOG.addHandler(logging.NullHandler())  # quiet unless the host configures logging


def source_assignments(course_root: Path) -> list[str]:
    """Assignment ids: the folders of source/ that hold a notebook of their own name."""
    source = course_root / "source"
    if not source.is_dir():
        return []
    return sorted(p.name for p in source.iterdir()
                  if (p / ASSIGNMENT_NOTEBOOK.format(assignment=p.name)).is_file())


def check_assignments(course_root: Path, assignments) -> list[str]:
    """The given ids (default: all), each checked to exist in source/."""
    known = source_assignments(course_root)
    assignments = list(assignments) if assignments else known
    unknown = [a for a in assignments if a not in known]
    if unknown:
        raise ValueError(f"assignment: unknown id(s) {', '.join(unknown)}; "
                         f"source/ has {', '.join(known) or 'none'}")
    return assignments
