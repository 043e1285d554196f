"""Drawing, or not: while a notebook is graded, the course draws nothing.

The grading kernel (course_lib.judge) runs with ``COURSE_GRADING=1``. Figures
and slider explorers carry no points, yet drawing them (and importing
matplotlib's pyplot) is most of a lesson's run time: bench/grading_bench.py
measures about a second per lesson. So, in grading mode, the figure functions
marked ``@draws`` return None at once and an explorer keeps its numbers
(``explorer.logic``) but builds no figure. Outside grading nothing changes.
"""

from __future__ import annotations

import functools
import importlib
import os

GRADING = os.environ.get("COURSE_GRADING") == "1"


def draws(fn):
    """Mark a function that only draws: in grading mode it does nothing, returns None."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if GRADING:
            return None
        return fn(*args, **kwargs)

    return wrapper


class _LazyPyplot:
    """``matplotlib.pyplot``, imported on first use (0.3 s that grading never pays)."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("matplotlib.pyplot"), name)


plt = _LazyPyplot()
