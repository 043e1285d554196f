"""The machinery behind every check in course_lib.grading.

A check calls the student's function on fresh inputs, compares each result
with the reference answer and, when they differ, raises ``AssertionError``
with a message written for the student:

    softmax_jacobian(z) for z of shape (4,): wrong values.
      expected shape (4, 4), got (4, 4); 12 of 16 entries differ;
      worst at [1, 1]: expected 0.2193, got -0.0305 (error 0.2498).
      This matches a known mistake: the diagonal term diag(s) is missing
      (you returned -s sᵀ instead of diag(s) - s sᵀ).

Known mistakes are computed, not guessed: each check passes the values that a
specific wrong answer would produce for the same inputs, and the message names
the first one the student's result matches. A catalogue that costs real work (a
whole epoch replayed per mistake) is passed as a function and computed only when
the answer differs: the student's kernel waits for every check, so a right answer
should cost the judge no more than its comparison. A mistake the exercise's manifest
lists (course_lib/manifest/) is worded there once and read with
``known_mistake(id)``; a check's parts are the manifest's (``run_parts``).

Inputs are random but reproducible: each check draws from a generator seeded by
its own name (and ``COURSE_GRADING_SEED`` when set), so grading a class twice
gives identical results, while the inputs differ from the visible tests'.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np

RTOL, ATOL = 1e-7, 1e-10
T = TypeVar("T")

__all__ = ["RTOL", "ATOL", "rng_for", "call", "experiment", "expect_close", "expect_tuple",
           "once_per_notebook", "run_parts", "known_mistake", "fmt", "shape_str", "Mistakes",
           "mistakes_of"]

#: {description: the value that wrong answer gives}, or a function that computes it,
#: called only when the student's answer differs from the expected one
Mistakes = Mapping[str, object] | Callable[[], Mapping[str, object] | None] | None


def mistakes_of(mistakes: Mistakes) -> Mapping[str, object]:
    """The catalogue itself: ``mistakes`` called if it is a function ({} for None)."""
    if callable(mistakes):
        mistakes = mistakes()
    return mistakes or {}


def rng_for(check_name: str) -> np.random.Generator:
    """A generator seeded by the check's name (and COURSE_GRADING_SEED)."""
    base = int(os.environ.get("COURSE_GRADING_SEED", "20261125"))
    return np.random.default_rng([base, zlib.crc32(check_name.encode())])


def shape_str(shape) -> str:
    shape = tuple(shape)
    if shape == ():
        return "a scalar"
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def fmt(x) -> str:
    """A short, readable rendering of a number or small array."""
    arr = np.asarray(x)
    if arr.ndim == 0:
        return f"{float(arr):.6g}" if np.issubdtype(arr.dtype, np.number) else repr(x)
    text = np.array2string(arr, precision=4, suppress_small=True, threshold=12, separator=", ",
                           max_line_width=10**6)
    return text.replace("\n", "")  # one line: a matrix's rows follow each other


def _copy(v):
    return v.copy() if isinstance(v, np.ndarray) else v


def call(fn: Callable, fn_name: str, args: Mapping[str, object]):
    """Call ``fn(**args)`` positionally on copies of the inputs and report problems.

    Fails (AssertionError) when the function raises, or when it modified one of
    its array arguments in place (that would corrupt the caller's data).

    Args:
        fn: the student's function.
        fn_name: its name, for messages.
        args: ordered mapping of argument name to value.
    Returns:
        whatever fn returned.
    """
    copies = {k: _copy(v) for k, v in args.items()}
    where = f"{fn_name}({', '.join(args)})"
    try:
        out = fn(*copies.values())
    except NotImplementedError:
        # Kept as NotImplementedError: an unanswered exercise is not a wrong answer.
        raise NotImplementedError(f"{where} is not implemented yet. Replace the "
                                  "`raise NotImplementedError()` line with your code.") from None
    except Exception as exc:  # report the student's error without our frames
        raise AssertionError(f"{where} raised {type(exc).__name__}: {exc}\n"
                             f"  inputs: {describe_inputs(args)}") from None
    for k, v in args.items():
        if isinstance(v, np.ndarray) and not np.array_equal(copies[k], v, equal_nan=True):
            raise AssertionError(f"{where} modified its argument {k} in place: expected {k} "
                                 f"unchanged, {_first_change(k, v, copies[k])}. Compute new arrays "
                                 f"instead (e.g. `x = x * 2`, not `x *= 2`): the caller still "
                                 f"needs the original.")
    return out


def _first_change(name: str, before: np.ndarray, after: np.ndarray) -> str:
    """'got x[1] = 0.5 (it was 2)': the first entry of ``name`` that changed."""
    after = np.asarray(after)
    if after.shape != before.shape:
        return f"got shape {shape_str(after.shape)} (it was {shape_str(before.shape)})"
    same = after == before
    if np.issubdtype(before.dtype, np.floating):
        same |= np.isnan(after) & np.isnan(before)
    ix = tuple(int(i) for i in np.argwhere(~same)[0]) if before.ndim else ()
    at = "[" + ", ".join(map(str, ix)) + "]" if ix else ""
    return f"got {name}{at} = {fmt(after[ix])} (it was {fmt(before[ix])})"


def describe_inputs(args: Mapping[str, object]) -> str:
    parts = []
    for k, v in args.items():
        if isinstance(v, np.ndarray):
            parts.append(f"{k} of shape {shape_str(v.shape)}" if v.size > 6 else f"{k} = {fmt(v)}")
        elif isinstance(v, (int, float, str)):
            parts.append(f"{k} = {v!r}")
        else:
            parts.append(f"{k} ({type(v).__name__})")
    return ", ".join(parts)


def expect_tuple(out, fn_name: str, names: tuple[str, ...]):
    """The function must return a tuple (or list) of len(names) values."""
    if not isinstance(out, (tuple, list)) or len(out) != len(names):
        got = (f"a {type(out).__name__} of length {len(out)}" if isinstance(out, (tuple, list))
               else f"a {type(out).__name__}")
        raise AssertionError(f"{fn_name} must return {len(names)} values ({', '.join(names)}): "
                             f"expected a tuple of {len(names)}, got {got}.")
    return tuple(out)


def _as_array(label: str, got):
    if hasattr(got, "detach") and hasattr(got, "numpy"):
        got = got.detach().cpu().numpy()
    try:
        arr = np.asarray(got)
    except Exception:  # noqa: BLE001 - anything unconvertible is the student's error
        arr = None
    if arr is None or arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                                  or arr.dtype == bool):
        raise AssertionError(f"{label}: expected numbers, got {type(got).__name__} ({got!r:.80})")
    return arr.astype(np.float64)


def expect_close(label: str, got, expected, *, inputs: Mapping[str, object] | None = None,
                 mistakes: Mistakes = None, check_shape: bool = True,
                 check_dtype: bool = True, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Compare a student's result with the reference; explain any difference.

    Args:
        label: what is compared, e.g. "softmax_jacobian(z)" or "dW".
        got: the student's value.
        expected: the reference value (array-like).
        inputs: the inputs used, described in the message.
        mistakes: {description: value a known wrong answer would give}, or a
            function returning it (called only if ``got`` differs); the first one
            matching ``got`` is named in the message.
        check_shape: False to compare values only (shape is then broadcast).
        check_dtype: require a floating result (an int array loses precision).
        rtol, atol: tolerances (course default 1e-7, 1e-10).
    """
    expected = np.asarray(expected, dtype=np.float64)
    arr = _as_array(label, got)

    def fail(problem: str) -> None:
        # the inputs are described, and the mistakes computed, only for a message
        context = f" for {describe_inputs(inputs)}" if inputs else ""
        msg = f"{label}{context}: {problem}"
        hint = _matching_mistake(arr, expected, mistakes_of(mistakes), rtol, atol)
        if hint:
            msg += f"\n  This matches a known mistake: {hint}."
        raise AssertionError(msg)

    if check_shape and arr.shape != expected.shape:
        if arr.shape == expected.T.shape and arr.ndim == 2:
            fail(f"expected shape {shape_str(expected.shape)}, got {shape_str(arr.shape)}: "
                 "the transpose. A gradient always has the shape of its variable.")
        fail(f"expected shape {shape_str(expected.shape)}, got {shape_str(arr.shape)}.")
    if check_dtype:
        raw = np.asarray(got.detach().cpu().numpy() if hasattr(got, "detach") else got)
        if not np.issubdtype(raw.dtype, np.floating):
            fail(f"expected floating-point numbers, got dtype {raw.dtype}.")
    if np.any(np.isnan(arr)) or np.any(np.isinf(arr)):
        n_nan, n_inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
        fail(f"the result contains {n_nan} NaN and {n_inf} inf value(s) where the expected values "
             "are finite (an overflow, e.g. exp of a large number, or 0/0?).")
    try:
        a, e = np.broadcast_arrays(arr, expected)
    except ValueError:
        fail(f"expected shape {shape_str(expected.shape)}, got {shape_str(arr.shape)}.")
    close = np.isclose(a, e, rtol=rtol, atol=atol)
    if close.all():
        return
    err = np.abs(a - e)
    worst = np.unravel_index(np.argmax(np.where(close, -1.0, err)), e.shape)
    if e.size == 1:
        fail(f"wrong value: expected {e[worst]:.6g}, got {a[worst]:.6g}.")
    fail(f"wrong values: {int((~close).sum())} of {close.size} entries differ;"
         f" worst at {list(map(int, worst))}: expected {e[worst]:.6g}, got {a[worst]:.6g} "
         f"(error {err[worst]:.3g}).")


def _matching_mistake(arr, expected, mistakes, rtol, atol):
    for description, value in mistakes.items():
        value = np.asarray(value, dtype=np.float64)
        same_as_expected = (value.shape == expected.shape
                            and np.allclose(value, expected, rtol=rtol, atol=atol))
        if value.shape == arr.shape and not same_as_expected \
                and np.allclose(arr, value, rtol=max(rtol, 1e-6), atol=atol):
            return description
    return None


def experiment(obj, name: str, **inputs):
    """Run the probe ``name`` of course_lib.judge.experiments on the student's object.

    In a sealed grading run ``obj`` is the judge's handle on an object living in
    the kernel, and the probe runs there; otherwise it runs here. Either way the
    result is plain data (arrays, numbers, strings, tuples, lists, dicts), and an
    exception raised by the student's code comes back as an exception of the
    same class name and message.
    """
    if getattr(type(obj), "judge_remote", False):
        return obj.run_experiment(name, inputs)
    from ..judge.experiments import run_experiment

    return run_experiment(obj, name, inputs)


def once_per_notebook(obj, what: str, compute: Callable[[], T]) -> T:
    """``compute()``, which calls the student's ``obj``; in a sealed grading run, what it
    gave an earlier check of the same notebook for the same object, if there was one.

    The judge keeps such results for one notebook only, drops them whenever a cell other
    than a test cell runs, and keys them on the object (a redefined function is computed
    again): judge.server's ``Remote.remembered``. A failure (AssertionError) is
    remembered too. Elsewhere (``obj`` the function itself), simply ``compute()``.
    """
    remembered = getattr(type(obj), "remembered", None) \
        if getattr(type(obj), "judge_remote", False) else None
    return remembered(obj, what, compute) if remembered is not None else compute()


def run_parts(part: str, parts: Mapping[str, Callable[[], None]], *,
              function: str | None = None) -> None:
    """Run one named part of a check (for partial credit), or all of them in order.

    The parts are the exercise's in the manifest (course_lib.manifest), in its
    order: a check whose ``parts`` differ fails loudly (ManifestError), in tests
    long before a student meets it. The exercise is the calling check's,
    ``check_<function>`` (``function`` names it when another helper calls).
    """
    from .. import manifest

    function = function or _calling_check()
    try:
        exercise = manifest.exercise(function)
    except KeyError:
        raise manifest.ManifestError(
            f"check_{function} grades no exercise of the manifest: add {function}'s entry to "
            "its lesson's course_lib/manifest/<slug>.toml (course_lib/manifest/__init__.py "
            "says how)") from None
    declared = [p.name for p in exercise.parts]
    if list(parts) != declared:
        raise manifest.ManifestError(
            f"check_{function} runs the parts {', '.join(parts)}, but the manifest "
            f"(course_lib/manifest/{exercise.lesson}.toml) gives {function} the parts "
            f"{', '.join(declared)}: make them the same")
    if part != "all" and part not in parts:
        raise ValueError(f"part: unknown value {part!r}; expected 'all' or one of "
                         f"{', '.join(map(repr, parts))}")
    try:
        for name, run in parts.items():
            if part in ("all", name):
                run()
    except AssertionError as exc:
        if not exercise.uses:
            raise
        # graded with the student's own functions, by design: say which, so that a
        # mistake there is looked for there first
        uses = " and ".join(f"your {u}" for u in exercise.uses)
        raise AssertionError(f"{exc}\n  ({function} calls {uses} and is graded with them: if "
                             "their own test cells fail, fix those first.)") from None


def _calling_check() -> str:
    """'sigmoid' when check_sigmoid called run_parts (two frames up from here)."""
    name = sys._getframe(2).f_code.co_name
    if not name.startswith("check_"):
        raise TypeError(f"run_parts was called from {name}, not from a check_<function>: "
                        "pass function=")
    return name[len("check_"):]


def known_mistake(mistake_id: str) -> str:
    """The manifest's wording of a known mistake (what the student reads after
    "This matches a known mistake: "), for a check's catalogue."""
    from .. import manifest

    return manifest.mistake(mistake_id).diagnostic
