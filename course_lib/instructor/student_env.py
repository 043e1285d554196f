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

import sys
from pathlib import Path

from ..judge.sealed import copy_student_package, write_kernelspec


def prepare(folder: Path) -> Path:
    """Write the student course_lib and the kernelspec into ``folder``; return it."""
    folder = Path(folder).resolve()
    copy_student_package(folder)
    write_kernelspec(folder / "kernels", "python3", "ipykernel_launcher", folder,
                     "Python 3 (student course_lib)")
    return folder


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(prepare(Path(args[0] if args else ".student-env")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
