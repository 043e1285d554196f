"""course_lib: the library behind the backpropagation course.

Student-facing (no answers inside):
    course_lib.gradcheck   numerical gradients, rel_error, a gradient checker
    course_lib.nets        the seed networks as ready-made parameters
    course_lib.data        small generated data sets (spirals, XOR, moons, blobs)
    course_lib.figures     the lessons' plots (matplotlib)
    course_lib.widgets     interactive explorers (ipywidgets), gradients by complex step

Grading side (answers inside, installed only where grading runs):
    course_lib.reference   the reference implementation of every graded function
    course_lib.grading     the checks hidden tests call
    course_lib.instructor  the `course` command: release, collect, grade, report, check

Importing ``course_lib`` loads none of these, and never torch or matplotlib:
each submodule is imported on first access (``course_lib.nets`` works without
an explicit ``import course_lib.nets``), and modules that need torch or
matplotlib import them themselves.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {"gradcheck", "nets", "data", "figures", "widgets",  # student-facing
               "reference", "grading", "instructor"}                 # grading side


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES)
