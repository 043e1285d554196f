"""Build the students' wheel of course_lib: the helpers, without the answers.

Students need the student-facing modules (gradcheck, nets, data, figures,
widgets) to run the release notebooks; they must not get the reference
answers, the grading checks, the instructor tooling or the judge's grading
side (course_lib.judge.GRADING_ONLY). This copies the
package without them into a temporary folder and builds
an ordinary wheel of it with pip (offline: no build isolation, no
dependencies fetched).

    python -m course_lib.instructor.student_wheel dist/     # or: make student-wheel
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import course_lib

from ..judge.sealed import copy_student_package

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "course_lib"
version = "{version}"
description = "Student helpers of the backpropagation course (no reference answers)"
requires-python = ">=3.11"
dependencies = ["numpy>=2", "matplotlib>=3.8", "ipywidgets>=8"]

[project.optional-dependencies]
autograd = ["torch==2.13.0"]  # lesson 05

[tool.setuptools.packages.find]
include = ["course_lib*"]
"""


def build_student_wheel(out_dir: Path) -> Path:
    """Write course_lib-<version>-py3-none-any.whl (no answers) into out_dir; return its path."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="course-student-wheel-") as tmp:
        src = Path(tmp) / "src"
        copy_student_package(src)
        (src / "pyproject.toml").write_text(PYPROJECT.format(version=course_lib.__version__))
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--disable-pip-version-check", "--quiet", "-w", str(out_dir), str(src)],
            capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"pip wheel failed:\n{done.stderr or done.stdout}")
    return out_dir / f"course_lib-{course_lib.__version__}-py3-none-any.whl"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("dist"))
    args = parser.parse_args(argv)
    try:
        wheel = build_student_wheel(args.out_dir)
    except RuntimeError as exc:
        print(f"student-wheel: {exc}", file=sys.stderr)
        return 2
    print(f"student wheel: {wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
