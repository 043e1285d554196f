"""`make lab`: the student's JupyterLab, on a copy of release/ that is the student's own.

The notebooks a student opens must not be the committed release/: answering
an exercise would change the repository, and `make release` would overwrite
the answers. So the lab serves a scratch copy kept outside the repository,

    $XDG_DATA_HOME/course-student-lab/<course_id>/    (~/.local/share/... by default;
                                                       COURSE_STUDENT_LAB sets another)
        notebooks/<id>/<id>.ipynb   the student's copies: the server's root
        releases.json               the digest of each file as release/ had it when copied
        student-env/                the students' Python (student_env.py: no answers)
        jupyter-config/             this server's JupyterLab page config

XDG's data folder is where a user's own files live between runs; outside the
repository, `git status` stays clean and `git clean` cannot delete a
student's answers. The copy is kept between runs and never overwritten: a
notebook is copied only when it is not there yet, and when release/ has a
version different from the one copied, the lab says so, and asks (on a
terminal) whether to replace it, keeping the student's as ``<name>.<time>.ipynb``.

The lab shows a student's tools only: nbgrader's Validate button and the
assignment list, not the formgrader or the Create Assignment toolbar (their
JupyterLab plugins are disabled through this server's page config, the way
`jupyter labextension disable` does at a config level, and the formgrader's
and course list's server extensions are off on this server only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import student_env
from .course import jupyterlab_server

COURSE_ID = "backprop"
# nbgrader's JupyterLab plugins a student must not see, and the server extensions behind them.
INSTRUCTOR_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                      "@jupyter/nbgrader:course-list")
INSTRUCTOR_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader",
                                "nbgrader.server_extensions.course_list")
STUDENT_SERVER_EXTENSIONS = ("nbgrader.server_extensions.validate_assignment",
                             "nbgrader.server_extensions.assignment_list")
MANIFEST = "releases.json"


def course_id(release: Path) -> str:
    """The course id of nbgrader_config.py beside release/, else COURSE_ID."""
    config = Path(release).resolve().parent / "nbgrader_config.py"
    if config.is_file():
        from .course import load_config

        return str(load_config(config.parent).CourseDirectory.get("course_id") or COURSE_ID)
    return COURSE_ID


def default_folder(course_id: str = COURSE_ID) -> Path:
    """$COURSE_STUDENT_LAB, else $XDG_DATA_HOME (~/.local/share)/course-student-lab/<id>."""
    if os.environ.get("COURSE_STUDENT_LAB"):
        return Path(os.environ["COURSE_STUDENT_LAB"]).expanduser().resolve()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser().resolve() / "course-student-lab" / course_id


@dataclass
class Prepared:
    """The lab folder, what was copied, and what release/ has newer but was not copied."""

    folder: Path
    copied: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # asked, and the student said yes
    newer_not_copied: list[str] = field(default_factory=list)

    @property
    def notebooks(self) -> Path:
        return self.folder / "notebooks"

    def summary(self) -> str:
        lines = [f"student lab: {self.notebooks}"]
        lines += [f"  copied {p} from release/" for p in self.copied]
        lines += [f"  replaced {p} with release/'s newer version (yours kept beside it)"
                  for p in self.replaced]
        lines += [f"  release/ has a newer {p}: NOT copied, your copy is kept (to take the "
                  "new one, rename yours and run `make lab` again)" for p in self.newer_not_copied]
        return "\n".join(lines)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _release_files(release: Path) -> list[Path]:
    """The files of release/<id>/ (relative), checkpoints and caches left out."""
    skip = {".ipynb_checkpoints", "__pycache__"}
    return sorted(p.relative_to(release) for p in release.glob("*/**/*")
                  if p.is_file() and not skip.intersection(p.relative_to(release).parts))


def sync_notebooks(release: Path, folder: Path, ask=None) -> Prepared:
    """Copy into ``folder``/notebooks each file of release/ that is not there yet.

    A file already there is the student's and stays. When release/ has changed it
    since it was copied (its digest differs from the one recorded then), ``ask``
    (a callable taking a question, returning True for yes) decides whether to
    replace it, the student's copy kept as ``<name>.<time><suffix>``; without
    ``ask`` it is listed in ``newer_not_copied``.
    """
    release, folder = Path(release).resolve(), Path(folder).resolve()
    if not release.is_dir():
        raise FileNotFoundError(f"{release}: no release folder (`make release` writes it)")
    prepared = Prepared(folder)
    notebooks = prepared.notebooks
    notebooks.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for rel in _release_files(release):
        src, dst, key = release / rel, notebooks / rel, rel.as_posix()
        digest = _digest(src)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            manifest[key] = digest
            prepared.copied.append(key)
        elif manifest.get(key) != digest:
            if ask is not None and ask(f"release/ has a newer {key}; replace your copy? "
                                       "(yours is kept beside it) [y/N] "):
                stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
                dst.rename(dst.with_name(f"{dst.stem}.{stamp}{dst.suffix}"))
                shutil.copy2(src, dst)
                manifest[key] = digest
                prepared.replaced.append(key)
            else:
                prepared.newer_not_copied.append(key)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return prepared


def write_page_config(folder: Path) -> Path:
    """A Jupyter config folder whose labconfig/page_config.json disables the instructor's
    nbgrader plugins (put on JUPYTER_CONFIG_PATH of this server only)."""
    config = Path(folder) / "jupyter-config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {p: True for p in INSTRUCTOR_PLUGINS}}, indent=1) + "\n")
    return config


def lab_command(folder: Path, port: int, token: str) -> tuple[list[str], dict[str, str]]:
    """The JupyterLab command and environment for a prepared lab folder."""
    folder = Path(folder).resolve()
    env_dir = folder / "student-env"
    config = folder / "jupyter-config"
    cmd, env = jupyterlab_server(folder / "notebooks", port, token)
    env.update(JUPYTER_PATH=os.pathsep.join(filter(None, [str(env_dir),
                                                          os.environ.get("JUPYTER_PATH")])),
               JUPYTER_CONFIG_PATH=os.pathsep.join(filter(None, [
                   str(config), os.environ.get("JUPYTER_CONFIG_PATH")])))
    env.pop("COURSE_ROOT", None)
    cmd.append("--KernelSpecManager.ensure_native_kernel=False")
    cmd += [f"--ServerApp.jpserver_extensions={e}=False" for e in INSTRUCTOR_SERVER_EXTENSIONS]
    cmd += [f"--ServerApp.jpserver_extensions={e}=True" for e in STUDENT_SERVER_EXTENSIONS]
    return cmd, env


def prepare(release: Path, folder: Path | None = None, port: int = 8888,
            token: str | None = None, ask=None) -> tuple[Prepared, list[str], dict[str, str]]:
    """Prepare the lab folder (notebooks, the students' Python, the page config) and
    return it with the JupyterLab command and environment that serve it."""
    folder = Path(folder).resolve() if folder else default_folder(course_id(release))
    prepared = sync_notebooks(release, folder, ask=ask)
    student_env.prepare(folder / "student-env")
    write_page_config(folder)
    cmd, env = lab_command(folder, port, token or secrets.token_hex(24))
    return prepared, cmd, env


def _ask_on_terminal(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_lib.instructor.student_lab",
                                description="JupyterLab for a student, on a copy of release/")
    p.add_argument("--release", type=Path, default=Path("release"), help="default: release")
    p.add_argument("--folder", type=Path, default=None,
                   help=f"the lab folder (default: {default_folder()})")
    p.add_argument("--port", type=int, default=8888)
    args = p.parse_args(argv)
    token = secrets.token_hex(24)
    try:
        prepared, cmd, env = prepare(args.release, args.folder, args.port, token,
                                     ask=_ask_on_terminal if sys.stdin.isatty() else None)
    except FileNotFoundError as exc:
        print(f"make lab: {exc}", file=sys.stderr)
        return 2
    print(prepared.summary())
    print(f"JupyterLab: http://127.0.0.1:{args.port}/lab?token={token}  (Ctrl-C stops it)",
          flush=True)
    os.chdir(prepared.notebooks)
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
