"""The students' Python for `make lab`: course_lib without the answers.

JupyterLab itself runs from the course's .venv, but the notebooks' kernel must
see only what a student installs (the student wheel's course_lib: no
reference answers, no checks, no tooling). This writes, in a folder of the
course (``.student-env/`` by default),

    course_lib/          the student's copy (course_lib.judge.GRADING_ONLY left out)
    kernels/python3/     a kernelspec named like the notebooks' own ("python3")
                         that starts Python with -S and only that copy and the
                         installed libraries on its path

and prints the folder to put on JUPYTER_PATH (the Makefile's `lab` target
does). -S keeps .pth files, and so the editable install of the full
course_lib, out of the kernel.

    python -m course_lib.instructor.student_env [FOLDER]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import course_lib

from ..judge import GRADING_ONLY
from ..judge.sealed import _library_paths


def prepare(folder: Path) -> Path:
    """Write the student course_lib and the kernelspec into ``folder``; return it."""
    folder = Path(folder).resolve()
    shutil.rmtree(folder / "course_lib", ignore_errors=True)
    shutil.copytree(Path(course_lib.__file__).parent, folder / "course_lib",
                    ignore=shutil.ignore_patterns(*GRADING_ONLY, "__pycache__", "*.pyc"))
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-S", "-m", "ipykernel_launcher", "-f",
                     "{connection_file}"],
            "display_name": "Python 3 (student course_lib)", "language": "python",
            "env": {"PYTHONPATH": os.pathsep.join([str(folder), *_library_paths()])}}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(prepare(Path(args[0] if args else ".student-env")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
