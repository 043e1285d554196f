"""The students' wheel: no answers, no hidden tests, and every release notebook runs on it."""

from __future__ import annotations

import os
import zipfile

import nbformat
import pytest
from lessons import ASSIGNMENTS, printed, release_path, run_notebook

from course_lib.instructor.student_wheel import build_student_wheel
from course_lib.judge import GRADING_ONLY


@pytest.fixture(scope="module")
def student_kernel(tmp_path_factory, student_site):
    """A kernel that sees the student wheel and the dependencies, not the full package.

    The development install of course_lib is an editable one: a finder that
    site.py installs from a .pth file would still resolve course_lib.reference
    to this repository. The student kernel runs Python with -S (no .pth files)
    and PYTHONPATH = the unpacked wheel, then site-packages for numpy & co.
    """
    import json
    import site
    import sys

    share = tmp_path_factory.mktemp("jupyter")
    spec = share / "kernels" / "student"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-S", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "student", "language": "python"}))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(share))
    path = os.pathsep.join([str(student_site[2]), *site.getsitepackages()])
    yield dict(os.environ, PYTHONPATH=path)
    mp.undo()


@pytest.fixture(scope="module")
def student_site(tmp_path_factory):
    """The wheel, built, and unpacked as a site folder that shadows the full package."""
    out = tmp_path_factory.mktemp("wheel")
    wheel = build_student_wheel(out)
    site = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
        names = zf.namelist()
    return wheel, names, site


def test_the_wheel_holds_no_answers_and_no_hidden_tests(student_site):
    wheel, names, site = student_site
    assert wheel.name == "course_lib-0.1.0-py3-none-any.whl"
    for part in GRADING_ONLY:  # a subpackage (reference/) or a module of the judge (server.py)
        assert not [n for n in names if n.startswith(f"course_lib/{part}/")
                    or n.endswith(f"/{part}")], part
    assert "course_lib/judge/client.py" in names  # what grading asks the kernel to run
    for module in ("gradcheck", "nets", "data"):
        assert f"course_lib/{module}.py" in names
    assert any(n.startswith("course_lib/widgets/") for n in names)
    for path in site.rglob("*.py"):
        text = path.read_text()
        assert "BEGIN HIDDEN TESTS" not in text and "grading.check_" not in text, path


PROBE = """
import importlib.util, course_lib
print("HAS_ANSWERS" if importlib.util.find_spec("course_lib.reference") else "NO_ANSWERS")
print(course_lib.__file__)
"""


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_release_notebook_runs_on_the_student_wheel(student_site, student_kernel,
                                                         assignment):
    _, _, site = student_site
    path = release_path(assignment)
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    run_notebook(nb, path.parent, kernel_name="student", allow_errors=True, env=student_kernel)
    errors = {o.ename for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"}
    assert errors == {"NotImplementedError"}
    answers, location = printed(nb.cells[-1]).split()
    assert answers == "NO_ANSWERS"
    assert location.startswith(str(site))


def test_make_lab_kernel_is_the_students_python(tmp_path):
    """`make lab`'s kernelspec (student_env) starts a Python that cannot import the answers."""
    import json
    import os
    import subprocess

    from course_lib.instructor.student_env import prepare

    folder = prepare(tmp_path / "student-env")
    spec = json.loads((folder / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][1] == "-S"
    env = {**os.environ, **spec["env"]}
    out = subprocess.run([spec["argv"][0], "-S", "-c", PROBE + "import ipykernel, numpy\n"],
                         env=env, capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.splitlines()[0] == "NO_ANSWERS", out.stdout
    assert out.stdout.splitlines()[1].startswith(str(folder)), out.stdout
    assert not (folder / "course_lib" / "reference").exists()
    assert not (folder / "course_lib" / "judge" / "server.py").exists()
