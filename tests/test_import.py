"""`import course_lib` stays light: no torch, no matplotlib, no answers."""

import subprocess
import sys

import pytest


def modules_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("stmt", [
    "import course_lib",
    "import course_lib.gradcheck, course_lib.nets, course_lib.data",
    "import course_lib.reference",
])
def test_import_loads_neither_torch_nor_matplotlib(stmt):
    loaded = modules_after(stmt)
    assert "torch" not in loaded
    assert "matplotlib" not in loaded


def test_student_helpers_do_not_load_the_answers():
    loaded = modules_after("import course_lib.gradcheck, course_lib.nets, course_lib.data")
    assert not any(m.startswith("course_lib.reference") for m in loaded)


def test_torch_names_load_lazily_and_work():
    loaded = modules_after("import course_lib.reference as R\nR.MySigmoid")
    assert "torch" in loaded  # asked for, so loaded; and only then


def test_unknown_attribute_is_an_attribute_error():
    import course_lib
    import course_lib.reference as R

    with pytest.raises(AttributeError, match="no_such_thing"):
        course_lib.no_such_thing  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_thing"):
        R.no_such_thing  # noqa: B018
