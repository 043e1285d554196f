"""What every test file shares: the test tiers (markers), hypothesis settings, the
parametrisation of the shared lesson harness, and the order in which files are handed
to parallel workers.

The lesson harness (tests/lessons.py, LessonHarness) runs in each lesson's test file,
on that lesson's exercises as the manifest (course_lib/manifest/) lists them:
pytest_generate_tests below gives a test of a class with a ``LESSON`` the arguments
``exercise`` (each exercise), ``part`` (each of its parts, then "all") and ``seed``
(each grading seed; "all" with the first one only), so that no test file keeps its
own list of parts.

Markers (registered in pyproject.toml):

    kernel   starts a Jupyter kernel (grading, nbclient, JupyterLab): seconds per test
    browser  drives Chromium
    slow     takes more than a few seconds for another reason

`make test-fast` runs what has none of them; `make test-stress` runs the `kernel` tests
while every core is busy (tests/stress.py).

A test is marked `kernel` here, automatically, when the test, one of its fixtures, or a
helper of tests/ they call names one of the entry points that start a kernel
(_kernel_starters: `check_notebook`, which lessons.grade calls, `grade_class`, the
`course` command, nbclient's `NotebookClient`), and `browser` when it names
browser.chromium_page. Tests whose kernels start in another process, where nothing here
can see it (a `course grade` subprocess, a JupyterLab server), say so themselves with
`pytestmark = [pytest.mark.kernel, ...]`.
"""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

TESTS = Path(__file__).resolve().parent

# No hypothesis test may depend on the machine's speed: no deadline per example, and
# no "too slow" health check (data generation is slow only when the machine is busy).
# The @settings(...) of each test inherit this profile.
settings.register_profile("course", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("course")


# The course's own limits (nbgrader_config.py: 20 s per cell, 180 s per notebook) are
# sized for grading; a lesson-05 cell that imports torch needs 1.4 s on a quiet 2-core
# machine and 10 s on a saturated one (load average 9, measured), a whole lesson 17 s.
# Tests that grade the real lessons check scores, not speed (that is `make bench`), so
# they grade with limits more than 10 times any need. (A widget cell once waited out
# its whole limit: nbclient missed the kernel's reply, jupyter/nbclient#312;
# course_lib/judge/polled_client.py now bounds that to a second.) Toy courses and the
# pipeline test set their own limit per cell (tests/toycourse.py, test_pipeline.py).
GRADING_LIMITS = {"COURSE_CELL_TIMEOUT": "120", "COURSE_NOTEBOOK_TIMEOUT": "600"}


@pytest.fixture(scope="session", autouse=True)
def _grading_limits(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for name, seconds in GRADING_LIMITS.items():
            mp.setenv(name, seconds)
        # `course check` caches the course it prepares (instructor/check.py): the tests'
        # caches go to their own temporary folder, never the user's ~/.cache
        mp.setenv("COURSE_CHECK_CACHE", str(tmp_path_factory.mktemp("check-cache")))
        # and a check leaves no warm grader behind (instructor/check_server.py), but in
        # the tests of that server, which stop theirs
        mp.setenv("COURSE_CHECK_SERVER", "0")
        yield


# Exercises whose check trains a network on each call (seconds, not milliseconds): their
# harness cases are in the slow tier, so that `make test-fast` stays under a minute.
TRAINS_A_NETWORK = {"train_digits"}


def pytest_generate_tests(metafunc):
    """The lesson harness's arguments, from the manifest of the class's LESSON."""
    slug = getattr(metafunc.cls, "LESSON", None)
    if slug is None:
        return
    from lessons import SEEDS

    from course_lib import manifest

    exercises = manifest.lesson(slug).exercises
    names = metafunc.fixturenames

    def case(*values):  # a check that trains a network takes seconds: the slow tier
        marks = [pytest.mark.slow] if values[0].function in TRAINS_A_NETWORK else []
        return pytest.param(*values, marks=marks)

    if "part" in names and "seed" in names:
        # each part for every seed; "all" (the parts in order, which no hidden test calls)
        # for the first seed only: the same work again adds nothing but minutes
        cases = [(e, p.name, seed) for e in exercises for p in e.parts for seed in SEEDS]
        cases += [(e, "all", SEEDS[0]) for e in exercises]
        metafunc.parametrize(("exercise", "part", "seed"), [case(*c) for c in cases],
                             ids=[f"{e.function}-{p}-{seed}" for e, p, seed in cases])
        return
    if "part" in names:
        pairs = [(e, p) for e in exercises for p in (*(q.name for q in e.parts), "all")]
        metafunc.parametrize(("exercise", "part"), [case(*c) for c in pairs],
                             ids=[f"{e.function}-{p}" for e, p in pairs])
    elif "exercise" in names:
        metafunc.parametrize("exercise", [case(e) for e in exercises],
                             ids=[e.function for e in exercises])
    if "seed" in names:
        metafunc.parametrize("seed", SEEDS)


def _kernel_starters() -> list[object]:
    """What starts a Jupyter kernel when a test calls it."""
    from nbclient import NotebookClient

    from course_lib.instructor import check, cli, grade

    return [
        NotebookClient,
        check.check_notebook,  # `course check`: lessons.grade, ...
        grade.grade_class, grade.grade_submission, grade.grade_reliably,  # `course grade`
        cli.main,  # the `course` command (check and grade start kernels)
    ]


def _browser_starters() -> list[object]:
    from browser import chromium_page

    return [chromium_page]


def _names(code: types.CodeType) -> set[str]:
    """Every global or attribute name a code object (and the code nested in it) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _in_tests(obj) -> bool:
    try:
        return Path(inspect.getfile(obj)).resolve().is_relative_to(TESTS)
    except (TypeError, OSError):
        return False


def _reaches(func, targets: list[object], seen: set[int]) -> bool:
    """Does func, or a function of tests/ that it names, name one of targets?"""
    func = inspect.unwrap(func)
    code = getattr(func, "__code__", None)
    if code is None or id(func) in seen:
        return False
    seen.add(id(func))
    found, names = getattr(func, "__globals__", {}), _names(code)
    # imported inside the function: `from browser import chromium_page`
    if any(getattr(t, "__module__", None) in names and getattr(t, "__name__", None) in names
           for t in targets):
        return True
    for name in names:
        obj = found.get(name)
        if obj is None:
            continue
        if any(obj is t for t in targets):
            return True
        if inspect.isfunction(obj) and _in_tests(obj) and _reaches(obj, targets, seen):
            return True
    return False


def _uses(item, targets: list[object], cache: dict) -> bool:
    funcs = [item.function] if hasattr(item, "function") else []
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        funcs += [d.func for d in defs if _in_tests(d.func)]
    for func in funcs:
        key = (id(func), id(targets))
        if key not in cache:
            cache[key] = _reaches(func, targets, set())
        if cache[key]:
            return True
    return False


# The heaviest files first, so that parallel workers (`make test`: pytest-xdist,
# --dist loadfile, one file at a time per worker) start on them and finish together:
# these, heaviest first (seconds per file on 2 cores, quiet machine to kernel tests
# under `make test-stress`), then any other file that starts kernels, then the rest,
# each in its usual order. Only the order depends on this list, never an outcome.
HEAVY_FIRST = [
    "test_pipeline.py",  # 120-220
    "test_sandbox_attacks.py",  # 100-240
    "test_lessons.py",  # 120-350
    "test_kill_resume.py",  # 110-250
    "test_fair_grading.py",  # 190-260
    "test_distributed.py",  # 95-210
    "test_integrity.py",  # 50-190
    "test_warm_kernel_attacks.py",  # 80-150 (two classes graded; serial runs)
    "test_semester.py",  # 65-85 (the demo class's lesson 01 graded, then Chromium)
    "test_browser_widgets.py",  # 55-120
    "test_grade_statuses.py",  # 55-90
    "test_sandbox.py",  # 30-80
    "test_lesson_05_autograd.py",  # 15-90
    "test_student_wheel.py",  # 17-75
    "test_lesson_04_backprop_mlp.py",  # 17-55
    "test_lesson_03_softmax_jacobian.py",  # 11-40
    "test_lesson_02_sigmoid.py",  # 13-40
    "test_lesson_01_chain_rule.py",  # 10-30
]


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    kernel, browser, cache = _kernel_starters(), _browser_starters(), {}
    for item in items:
        if not item.get_closest_marker("kernel") and _uses(item, kernel, cache):
            item.add_marker(pytest.mark.kernel)
        if not item.get_closest_marker("browser") and _uses(item, browser, cache):
            item.add_marker(pytest.mark.browser)

    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    kernels = {item.path.name for item in items if item.get_closest_marker("kernel")}
    order = {id(item): k for k, item in enumerate(items)}
    items.sort(key=lambda item: (
        rank.get(item.path.name, len(rank) + (item.path.name not in kernels)), order[id(item)]))
