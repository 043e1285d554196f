"""What grading concludes: a submission's ``Status``, and whether a test cell passed.

Every (student, assignment) pair ends with one ``Status``; the strings are what
grades.csv, reports/results.json, the report and the exports hold, so a
member's value never changes (a renamed status keeps its old spelling in
``RENAMED_STATUSES``, read back from results stored before). Each member
carries a one-line description: the README's list, the report's legend and
grade.py's docstring say the same thing (tests/test_grade_statuses.py checks
the README).

A test cell's points are all or nothing, and one rule gives them:
``cell_verdict`` (the judge's verdicts and whether the kernel ran the
cell without error). Grading applies it to every test cell, whether the
notebook ran to its end or not (grade.py); afterwards a cell's score says
what it decided, and ``full_marks`` is how the feedback page and the report
read a graded cell as passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """How far grading got with one submission (a ``str``: ``Status.OK == "ok"``)."""

    description: str

    def __new__(cls, value: str, description: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    OK = ("ok", "autograded; every point is final")
    AWAITING_HAND_GRADING = (
        "awaiting_hand_grading",
        "autograded; written answers wait for the formgrader (open_points says how many "
        "points are still open; `course finalize` reads the hand grades back)")
    MISSING = ("missing", "the student has no notebook for this assignment")
    UNREADABLE = ("unreadable", "the file is not a notebook (bad JSON, not nbformat, too "
                                "large), or the submission holds links or special files")
    TIMEOUT = ("timeout", "a cell ran past the time limit (graded as far as it got)")
    KERNEL_DIED = ("kernel_died", "the kernel died (os._exit, segfault, out of memory); the "
                                  "test cells that ran before keep their grades")
    KERNEL_START_FAILED = (
        "kernel_start_failed",
        "the grading kernel never came up (the machine's fault: two kernels raced for a "
        "port): graded again, and stored as error if it never starts")
    TAMPERED = ("tampered", "the notebook changed or deleted a test cell's grading, or kept a "
                            "hidden test from the judge or hid its failure: what it touched "
                            "scores 0")
    ERROR = ("error", "nbgrader itself failed; the reason holds its message")
    NOT_GRADED = ("not_graded", "exports only: no result at all for this student and "
                                "assignment (run `course grade`)")

    @property
    def normal(self) -> bool:
        """Graded normally: every test cell ran and has its verdict."""
        return self in NORMAL

    @classmethod
    def read(cls, value: str) -> Status | str:
        """A stored status string as a Status (an old name as its new one); a string no
        version of the course wrote (a newer one's status) is kept as it is."""
        value = RENAMED_STATUSES.get(value, value)
        try:
            return cls(value)
        except ValueError:
            return value


NORMAL = (Status.OK, Status.AWAITING_HAND_GRADING)
# Status names of earlier versions, as results stored then may still hold them.
RENAMED_STATUSES = {"needs_manual_grading": Status.AWAITING_HAND_GRADING}
# What a stored result (grades.csv, results.json, the report) can hold: kernel_start_failed
# is retried and then stored as error; not_graded is an export's word for no result.
STORED = tuple(s for s in Status if s not in (Status.KERNEL_START_FAILED, Status.NOT_GRADED))


def describe(status: str) -> str:
    """A status's one-line description ('' for a status this version does not know)."""
    known = Status.read(status)
    return known.description if isinstance(known, Status) else ""


# ---------------------------------------------------------------------------
# whether a test cell passed
# ---------------------------------------------------------------------------

PASSED, FAILED, NO_VERDICT, RAISED = "passed", "failed", "no_verdict", "raised"
NO_VERDICT_WHY = "its hidden test did not run to a verdict"


@dataclass(frozen=True)
class CellVerdict:
    """The rule's answer for one test cell."""

    kind: str  # PASSED, FAILED (a hidden check failed), NO_VERDICT, RAISED (the kernel's error)
    why: str = ""  # '' when passed; else the first failing check's message, or what went wrong

    @property
    def passed(self) -> bool:
        return self.kind == PASSED


def cell_verdict(checks, verdicts, ran_clean: bool) -> CellVerdict:
    """Did a test cell pass? Its points are all or nothing: this decides which.

    A test cell passes when every hidden check it calls reached a passing
    verdict in the judge (each (check, part) as many times as the cell calls it:
    a cell that calls ``check_sigmoid`` twice needs two verdicts), and the kernel
    ran the cell without an error. Nothing the kernel printed counts.

    Args:
        checks: the (check, part) pairs the cell calls (judge.server.expected_checks);
            empty for a cell with no hidden check.
        verdicts: the judge's verdicts for the cell (objects with ``check``, ``part``,
            ``passed`` and ``message``).
        ran_clean: the kernel ran the cell to its end without an error.
    Returns:
        the verdict; when it failed, ``why`` is the first failing check's message, or
        that a check never reached a verdict, or that the cell raised.
    """
    failed = [v for v in verdicts if not v.passed]
    if failed:
        return CellVerdict(FAILED, failed[0].message)
    passed = [(v.check, v.part) for v in verdicts if v.passed]
    if any(passed.count(c) < list(checks).count(c) for c in set(checks)):
        return CellVerdict(NO_VERDICT, NO_VERDICT_WHY)
    if not ran_clean:
        return CellVerdict(RAISED, "the cell did not run to its end without an error")
    return CellVerdict(PASSED)


def full_marks(score: float, points: float) -> bool:
    """Does a graded test cell's score say it passed (all its points, up to rounding)?"""
    return score >= points or math.isclose(score, points, rel_tol=1e-9, abs_tol=1e-9)
