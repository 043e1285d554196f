"""Checks that hidden tests call: student function in, explained verdict out.

Each lesson has a module of ``check_<function>(student_fn, part="all")``
functions that compare the student's function with ``course_lib.reference`` on
fresh random inputs of several shapes. A failure raises ``AssertionError`` with
a message that says what was expected, what came back (shape, dtype, NaN/inf,
the worst entry) and, when the answer matches a known mistake, which one.
``part`` selects one group of assertions ("shape", "values", "edge", ...) so
that an exercise's points can be split across several graded cells.

    from course_lib import grading
    grading.check_softmax_jacobian(softmax_jacobian, part="values")

Modules: chain_rule (01), sigmoid (02), softmax (03), mlp (04), autograd (05,
needs torch; imported only when one of its checks is used).
"""

from __future__ import annotations

import importlib

_LESSON_MODULES = ("chain_rule", "sigmoid", "softmax", "mlp", "autograd")


def _lesson_modules():
    for module in _LESSON_MODULES:
        try:
            yield importlib.import_module(f".{module}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":  # a real import error inside it
                raise


def __getattr__(name):
    if name.startswith("check_"):
        for mod in _lesson_modules():  # in lesson order: torch (05) is imported last
            if hasattr(mod, name):
                return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def all_checks() -> dict[str, object]:
    """Every check_* function by name (imports every lesson module, torch included)."""
    return {n: getattr(mod, n) for mod in _lesson_modules() for n in dir(mod)
            if n.startswith("check_")}
