"""`course formgrader`: nbgrader's formgrader on the course folder, grading sealed.

Hand grading (the written answers) happens in nbgrader's formgrader, a page of
JupyterLab's server. Started by hand it fails in three ways this command
prevents:

- nbgrader runs ``alembic`` as a program when it creates a gradebook; with
  ``.venv/bin/python`` not on PATH the first page is a 500 ("No such file:
  'alembic'"). The server gets this Python's bin folder on PATH.
- A gradebook left half made (tables without alembic's version table, an
  upgrade interrupted after it changed the tables but before it recorded the
  revision) makes every page a 500. ``ensure_gradebook`` repairs it before the
  server starts: nbgrader's own migrations where they apply, the missing
  tables and columns of nbgrader's schema otherwise, then alembic's stamp;
  a SQLite file is copied aside first, as ``nbgrader db upgrade`` does.
- The formgrader's Autograde button runs stock ``nbgrader autograde``: the
  student's code unconfined, with the answers in reach. The course's
  nbgrader_config.py refuses that, so the button would only show a traceback.
  On this server the button grades the one submission sealed instead
  (grade.open_grading_api + grade_reliably, in a child process so that the
  judge and its sandboxed kernel never live in the web server), and updates
  grades.csv and the report of the last `course grade` when there is one.

The server listens on 127.0.0.1 with a random token, news and update checks
off, its root the course folder (nbgrader needs the course inside the server's
root), and runs nbgrader's formgrader extension through this module
(``course_lib.instructor.formgrader`` is the Jupyter server extension that
loads nbgrader's, with the Autograde route replaced).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from .course import ensure_tools_on_path, jupyterlab_server, load_config, serving_port

STOCK_EXTENSION = "nbgrader.server_extensions.formgrader"
THIS_EXTENSION = "course_lib.instructor.formgrader"
AUTOGRADE_ROUTE = r"/formgrader/api/submission/([^/]+)/([^/]+)/autograde"
# What the child process that grades one submission prints before its JSON line.
RESULT_MARK = "COURSE-FORMGRADER-RESULT "


# ---------------------------------------------------------------------------
# The gradebook: created, upgraded or repaired before the server starts
# ---------------------------------------------------------------------------

def _alembic_config(db_url: str, stack):
    """alembic's Config for nbgrader's migrations (nbgrader writes the ini the same way)."""
    from alembic.config import Config
    from nbgrader.dbutil import _temp_alembic_ini

    return Config(stack.enter_context(_temp_alembic_ini(db_url)))


def _head(db_url: str) -> str:
    import contextlib

    from alembic.script import ScriptDirectory

    with contextlib.ExitStack() as stack:
        return ScriptDirectory.from_config(_alembic_config(db_url, stack)).get_current_head()


def _alembic(db_url: str, command: str, revision: str = "head") -> None:
    import contextlib

    from alembic import command as commands

    with contextlib.ExitStack() as stack:
        getattr(commands, command)(_alembic_config(db_url, stack), revision)


def _revision(engine) -> str | None:
    """The revision alembic recorded, or None (no alembic_version table, or it is empty)."""
    from sqlalchemy import inspect, text

    if "alembic_version" not in inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return row[0] if row else None


def missing_schema(engine) -> list[str]:
    """What nbgrader's gradebook schema (nbgrader.api's tables) lacks here: 'table' or
    'table.column', in the schema's order; [] when every table and column exists."""
    from nbgrader.api import Base
    from sqlalchemy import inspect

    insp = inspect(engine)
    tables = set(insp.get_table_names())
    missing = []
    for table in Base.metadata.sorted_tables:
        if table.name not in tables:
            missing.append(table.name)
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in have]
    return missing


def _add_missing_schema(engine) -> None:
    """Create nbgrader's missing tables, and add its missing columns (nullable where the
    column has no default a new column could take, as SQLite requires)."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from nbgrader.api import Base
    from sqlalchemy import inspect

    Base.metadata.create_all(bind=engine)
    with engine.begin() as conn:
        insp = inspect(conn)
        ops = Operations(MigrationContext.configure(conn))
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in insp.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                new = column._copy()
                new.foreign_keys, new.constraints = set(), set()
                if new.server_default is None and not new.nullable:
                    default = getattr(column.default, "arg", None)
                    if isinstance(default, str | int | float):
                        new.server_default = str(default)
                    else:
                        new.nullable = True
                ops.add_column(table.name, new)


def _backup(db_url: str) -> Path | None:
    """A copy of a SQLite gradebook beside it, named like `nbgrader db upgrade`'s."""
    if not db_url.startswith("sqlite:///"):
        return None
    path = Path(db_url.split(":///", 1)[1])
    if not path.is_file():
        return None
    backup = path.with_name(path.name + datetime.now().strftime(".%Y-%m-%d-%H%M%S.%f"))
    shutil.copy2(path, backup)
    return backup


def ensure_gradebook(db_url: str, course_id: str) -> list[str]:
    """Make the gradebook at ``db_url`` one nbgrader's formgrader can open: created if
    there is none, upgraded if it is older, repaired if it was left half made.

    Returns what was done, one sentence each ([] when it was already up to date).
    Raises RuntimeError naming what is still wrong (and the backup) if it cannot.
    """
    from nbgrader.api import Gradebook
    from sqlalchemy import create_engine, inspect, text

    ensure_tools_on_path()  # Gradebook() runs `alembic heads` when it creates the tables
    head = _head(db_url)
    engine = create_engine(db_url, future=True)
    try:
        done: list[str] = []
        tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
        revision = _revision(engine)
        if not tables:
            if "alembic_version" in inspect(engine).get_table_names():
                with engine.begin() as conn:  # a version table alone: Gradebook adds its own
                    conn.execute(text("DROP TABLE alembic_version"))
            with Gradebook(db_url, course_id):
                pass
            return [f"created the gradebook ({db_url})"]
        missing = missing_schema(engine)
        if revision == head and not missing:
            return []
        backup = _backup(db_url)
        if backup:
            done.append(f"copied the gradebook to {backup} before changing it")
        if revision is not None and revision != head and missing:
            try:  # nbgrader's own migrations: they also move data between tables
                engine.dispose()
                _alembic(db_url, "upgrade")
                done.append(f"upgraded the gradebook from revision {revision} to {head}")
            except Exception as exc:  # noqa: BLE001 - a half-applied migration: repaired below
                done.append(f"nbgrader's upgrade from {revision} stopped ({_first_line(exc)})")
            missing = missing_schema(engine)
        if missing:
            _add_missing_schema(engine)
            done.append("added what the gradebook lacked of nbgrader's schema: "
                        + ", ".join(missing))
            missing = missing_schema(engine)
        if missing:
            raise RuntimeError(f"the gradebook {db_url} still lacks {', '.join(missing)}"
                               + (f"; the original is in {backup}" if backup else ""))
        if _revision(engine) != head:
            engine.dispose()
            _alembic(db_url, "stamp")
            done.append(f"recorded alembic revision {head} (was {revision or 'none'}): the "
                        "tables now have nbgrader's current schema")
        with Gradebook(db_url, course_id):  # the course row, as the formgrader expects
            pass
        return done
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:200]


# ---------------------------------------------------------------------------
# The Jupyter server extension: nbgrader's formgrader, Autograde graded sealed
# ---------------------------------------------------------------------------

def _jupyter_server_extension_points():
    return [{"module": THIS_EXTENSION}]


def _load_jupyter_server_extension(serverapp) -> None:
    """nbgrader's formgrader, with the Autograde route answered by the sealed grader.

    Tornado tries the handlers added first first, so this route, added before
    nbgrader adds its own, is the one that answers.
    """
    from jupyter_server.utils import url_path_join
    from nbgrader.server_extensions.formgrader import formgrader as stock

    webapp = serverapp.web_app
    pattern = url_path_join(webapp.settings["base_url"], AUTOGRADE_ROUTE.lstrip("/"))
    webapp.add_handlers(".*$", [(pattern, _sealed_autograde_handler())])
    stock.load_jupyter_server_extension(serverapp)
    serverapp.log.info("formgrader: Autograde grades sealed (course_lib.judge)")


def _sealed_autograde_handler():
    import asyncio

    from nbgrader.server_extensions.formgrader.base import (
        BaseApiHandler,
        check_notebook_dir,
        check_xsrf,
    )
    from tornado import web

    class SealedAutogradeHandler(BaseApiHandler):
        """The formgrader's Autograde button: one submission graded sealed, in a child
        process; answers in the formgrader's format (success, log, error)."""

        @web.authenticated
        @check_xsrf
        @check_notebook_dir
        async def post(self, assignment_id, student_id):
            root = Path(self.coursedir.root)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "course_lib.instructor.formgrader", "--autograde",
                assignment_id, student_id, cwd=str(root),
                env=dict(os.environ, COURSE_ROOT=str(root)),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            self.write(json.dumps(parse_child_output(out.decode(errors="replace"),
                                                     proc.returncode)))

    return SealedAutogradeHandler


def parse_child_output(output: str, returncode: int) -> dict:
    """The formgrader's answer from the grading child's output."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    return {"success": False, "log": output[-4000:],
            "error": f"the sealed grading process ended with code {returncode} before it "
                     "gave a result; `course grade` grades and says why"}


def autograde_one(root: Path, assignment: str, student: str) -> dict:
    """Grade one submission sealed, as `course grade` would, and say how it went.

    grades.csv, reports/results.json and the report, if a `course grade` wrote
    them, get this submission's new row. Returns the formgrader's answer:
    ``{"success": bool, "log": str, "error": str}``.
    """
    from .cli import GRADES_CSV, REPORT_HTML, RESULTS_JSON
    from .grade import (
        NORMAL,
        add_students,
        ensure_registered,
        grade_reliably,
        merge_results,
        open_grading_api,
        shared_gradebook,
        write_grades_csv,
    )

    try:
        # as `course check` does: the kernel starts while nbgrader loads and the gradebook
        # is read and written
        api = open_grading_api(root, first=assignment, then=False)
    except RuntimeError as exc:  # SandboxUnavailable: say what is missing
        return {"success": False, "log": "",
                "error": f"{exc}\nThe formgrader grades sealed only; where the sandbox cannot "
                         "run, `course grade --unsealed` grades with stock nbgrader."}
    with shared_gradebook():  # one engine for registering, the student and the grades
        ensure_registered(api, root, assignment)
        add_students(api.coursedir, [student])
        result = grade_reliably(api, assignment, student)
    lines = [f"graded sealed (course_lib.judge): {student}/{assignment}: "
             f"{result.score:g}/{result.max_score:g}, status {result.status}"]
    if result.reason:
        lines.append(result.reason)
    lines += [f"{gid}: {msg}" for gid, msg in result.messages.items()]
    lines += [f"flag: {flag}" for flag in result.flags]
    results_json = root / RESULTS_JSON
    if results_json.is_file():
        from .report import load_results, save_results, write_report

        results = merge_results(load_results(results_json), [result])  # only this row changes
        save_results(results, results_json)
        write_grades_csv(results, root / GRADES_CSV)
        write_report(results, root / REPORT_HTML, course_root=root)
        lines.append(f"updated {GRADES_CSV} and {REPORT_HTML}")
    ok = result.status in NORMAL
    return {"success": ok, "log": "\n".join(lines),
            "error": "" if ok else f"status {result.status}: {result.reason}"}


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------

def server_command(root: Path, port: int, token: str) -> tuple[list[str], dict[str, str]]:
    """The JupyterLab command (and its environment) serving the formgrader on ``root``."""
    root = Path(root).resolve()
    cmd, env = jupyterlab_server(root, port, token)
    env["COURSE_ROOT"] = str(root)
    cmd += [  # The login cookie's path defaults to the handler's base_url, which nbgrader's
            # pages set to their own path: opened as /formgrader?token=..., the page got a
            # cookie its own API calls never sent, and its tables stayed "Loading..."
            "--IdentityProvider.cookie_options=path=/",
            f"--ServerApp.jpserver_extensions={STOCK_EXTENSION}=False",
            f"--ServerApp.jpserver_extensions={THIS_EXTENSION}=True"]
    return cmd, env


def prepare(root: Path) -> list[str]:
    """Everything the formgrader needs before the server starts: its gradebook."""
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(config=load_config(root, CourseDirectory__root=str(root)))
    return ensure_gradebook(coursedir.db_url, coursedir.course_id)


def run(args, root: Path) -> int:
    for note in prepare(root):
        print(f"gradebook: {note}")
    token = secrets.token_hex(24)
    # port 0 (the default): the server picks a free one, and says which (serving_port)
    cmd, env = server_command(root, args.port, token)
    proc = subprocess.Popen(cmd, cwd=root, env=env)
    # stopped as a whole: a SIGTERM to this process stops the server it started
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        port = serving_port(proc, env)
        if port is None:
            return proc.wait()  # it could not start: its own log said why
        print(f"formgrader on {root}: http://127.0.0.1:{port}/formgrader?token={token}\n"
              f"  (JupyterLab: http://127.0.0.1:{port}/lab?token={token}; Ctrl-C stops it)\n"
              "  Autograde grades the one submission sealed; `course grade` grades the class",
              flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(subparsers) -> None:
    """`course formgrader [--port N]`."""
    s = subparsers.add_parser(
        "formgrader", help="nbgrader's formgrader on the course (hand grading), "
                           "Autograde graded sealed")
    s.add_argument("--port", type=int, default=0,
                   help="port on 127.0.0.1 (default: a free one, chosen by the server)")
    s.set_defaults(run=run)


def main(argv=None) -> int:
    """``python -m course_lib.instructor.formgrader [--port N]``: `course formgrader`
    (what `make formgrader` runs). ``... --autograde ASSIGNMENT STUDENT``: the child
    process of the Autograde button, which prints one JSON line after RESULT_MARK."""
    import argparse

    from .course import find_course_root

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["--autograde"]:
        if len(args) != 3:
            print("usage: python -m course_lib.instructor.formgrader --autograde ASSIGNMENT "
                  "STUDENT", file=sys.stderr)
            return 2
        try:
            answer = autograde_one(find_course_root(), args[1], args[2])
        except Exception as exc:  # noqa: BLE001 - the button shows it
            import traceback

            answer = {"success": False, "log": "",
                      "error": f"{exc}\n\n{traceback.format_exc()}"}
        print(RESULT_MARK + json.dumps(answer), flush=True)
        return 0 if answer["success"] else 1
    parser = argparse.ArgumentParser(prog="course")
    register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["formgrader", *args])
    try:
        return parsed.run(parsed, find_course_root())
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"course formgrader: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
