"""Finite-difference gradient checks.

A backward pass is easy to get subtly wrong: a missing transpose, a forgotten
``1/N``, a sign. The cure is to compare it with the gradient measured directly
from the definition of a derivative,

    df/dx_i  ~  (f(x + h e_i) - f(x - h e_i)) / (2h),

which needs nothing but the forward function. The central difference has error
O(h^2) rather than the O(h) of the one-sided (f(x + h) - f(x)) / h, so with
``h = 1e-5`` and float64 a correct gradient typically shows a relative error
(see :func:`rel_error`) of 1e-7 or less.

Typical use in a notebook::

    W = np.random.default_rng(0).standard_normal((3, 4))
    assert_gradient(lambda W: my_loss(W, X), W, my_loss_backward(W, X))

``x`` is perturbed in place, one entry at a time, and restored afterwards. So
``f`` must read that very array, either as its argument or through a closure
over the same object (a weight matrix inside a model, say); a function that
reads a copy of it sees no change and gets a gradient of zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validate import as_float, check_positive, check_same_shape

__all__ = [
    "rel_error",
    "numerical_gradient",
    "numerical_gradient_array",
    "GradCheckResult",
    "check_gradient",
    "assert_gradient",
]


def rel_error(x, y) -> float:
    """Largest relative error between two arrays (or two numbers).

    Computes ``max |x - y| / max(1e-8, |x| + |y|)`` over all entries, as in
    CS231n. The 1e-8 floor keeps two entries that are both (nearly) zero from
    producing 0/0 or a huge ratio out of rounding noise.

    Args:
        x: scalar or array.
        y: scalar or array of the same shape as ``x``.

    Returns:
        float; 0.0 for two empty arrays, NaN if either contains NaN.
    """
    x = as_float("x", x, finite=False)
    y = as_float("y", y, finite=False)
    check_same_shape(("x", "y"), (x, y))
    if x.size == 0:
        return 0.0
    err = np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))
    return float(np.max(err))


# ---------------------------------------------------------------------------
# numerical gradients
# ---------------------------------------------------------------------------

def _check_perturbable(x) -> np.ndarray:
    """``x`` must be an array we can write float64 values into and read back."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        got = f"a {x.dtype} array" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(
            f"x: expected a float64 numpy array, got {got}. x is modified in place "
            "(one entry at a time, then restored), so it must be a float64 numpy "
            "array that f reads; convert it first, e.g. x = np.asarray(x, dtype=float)")
    if not x.flags.writeable:
        raise ValueError("x: expected a writeable array (it is perturbed in place), "
                         "got a read-only one; pass a copy, e.g. x.copy()")
    # Perturbing NaN or inf gives NaN or inf again: the result would be meaningless.
    as_float("x", x)
    return x


def _describe(value) -> str:
    """Say what a value is, briefly: 'ndarray of shape (3,)', 'str 'a'', 'None'."""
    if value is None:
        return "None"
    try:
        shape = np.shape(value)
    except ValueError:  # a ragged list
        shape = None
    if shape:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return f"{type(value).__name__} {value!r}"


def _to_numpy(value):
    # Accept a torch tensor without importing torch (students may not have it).
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def _scalar_output(value) -> float:
    """f(x) as a Python float, or a ValueError saying what came back instead."""
    arr = np.asarray(_to_numpy(value))
    if arr.shape != () or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"f: expected f(x) to return a scalar (one real number), got {_describe(value)}; "
            "for an array-valued f use numerical_gradient_array(f, x, dout)")
    return float(arr)


def _array_output(value) -> np.ndarray:
    """f(x) as a new float64 array.

    A copy matters: f may return a view of x (``lambda x: x.T``), which would
    silently change when the next entry of x is perturbed.
    """
    arr = np.asarray(_to_numpy(value))
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"f: expected f(x) to return an array of real numbers, "
                         f"got {_describe(value)}")
    return np.array(arr, dtype=np.float64, copy=True)


def _central_difference(x: np.ndarray, ix: tuple, h: float, evaluate):
    """Evaluate at ``x[ix] + h`` and ``x[ix] - h``; leave ``x`` exactly as it was."""
    old = x[ix]  # a copy of the entry, not a view
    try:
        x[ix] = old + h
        plus = evaluate(x)
        x[ix] = old - h
        minus = evaluate(x)
    finally:
        # Write back the saved value: undoing the step arithmetically
        # (old + h - h) can be off in the last bit, and an error inside f
        # must not leave the caller's weights perturbed.
        x[ix] = old
    return plus, minus


def numerical_gradient(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of a scalar-valued function.

    Args:
        f: callable taking ``x`` and returning a scalar (a float, a 0-d array,
            or a 0-d tensor). It is called ``2 * x.size`` times.
        x: float64 ndarray of any shape ``S``. Modified in place during the
            call (one entry at a time) and restored exactly before returning,
            also if ``f`` raises.
        h: step size, > 0.

    Returns:
        float64 ndarray of shape ``S``: entry ``i`` is
        ``(f(x + h e_i) - f(x - h e_i)) / (2h)``.
    """
    if not callable(f):
        raise ValueError(f"f: expected a function of x, got {_describe(f)}")
    x = _check_perturbable(x)
    check_positive("h", h)

    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        plus, minus = _central_difference(x, ix, h, lambda v: _scalar_output(f(v)))
        grad[ix] = (plus - minus) / (2 * h)
    return grad


def numerical_gradient_array(f, x: np.ndarray, dout, h: float = 1e-5) -> np.ndarray:
    """Central-difference vector-Jacobian product of an array-valued function.

    This is the gradient of ``sum(f(x) * dout)`` with respect to ``x``, i.e.
    what a layer's backward pass returns when ``dout`` is the upstream gradient
    ``dJ/df``. It never builds the Jacobian.

    Args:
        f: callable taking ``x`` and returning an array of shape ``T``.
            It is called ``2 * x.size + 1`` times.
        x: float64 ndarray of any shape ``S``; same in-place contract as in
            :func:`numerical_gradient`.
        dout: array of shape ``T`` (the shape of ``f(x)``).
        h: step size, > 0.

    Returns:
        float64 ndarray of shape ``S``.
    """
    if not callable(f):
        raise ValueError(f"f: expected a function of x, got {_describe(f)}")
    x = _check_perturbable(x)
    check_positive("h", h)
    dout = as_float("dout", dout)
    out = _array_output(f(x))
    check_same_shape(("f(x)", "dout"), (out, dout))

    def evaluate(v):
        value = _array_output(f(v))
        if value.shape != out.shape:
            raise ValueError(f"f: returned shape {value.shape} after perturbing x, "
                             f"but {out.shape} at x itself")
        return value

    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        plus, minus = _central_difference(x, ix, h, evaluate)
        # Subtract before weighting by dout: the difference of two nearly equal
        # arrays is where the precision is lost, so do it entry by entry.
        grad[ix] = np.sum((plus - minus) * dout) / (2 * h)
    return grad


# ---------------------------------------------------------------------------
# checking an analytic gradient
# ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class GradCheckResult:
    """Outcome of :func:`check_gradient`; ``bool(result)`` is ``result.ok``.

    Attributes:
        ok: every entry satisfies ``|analytic - numeric| <= atol + rtol * |numeric|``.
        max_rel_error: :func:`rel_error` over all entries (inf if the shapes differ).
        worst_index: index of the worst entry: the largest relative error among
            the entries that fail (among all entries if none fails).
        analytic_value, numeric_value: the two gradients at ``worst_index``.
        numeric: the whole numerical gradient, shape of ``x``.
        message: the human-readable report, also given by ``str(result)``.
    """

    ok: bool
    max_rel_error: float
    worst_index: tuple
    analytic_value: float
    numeric_value: float
    numeric: np.ndarray = field(repr=False)
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return self.message


def check_gradient(f, x: np.ndarray, analytic, h: float = 1e-5,
                   rtol: float = 1e-5, atol: float = 1e-8, *,
                   name: str | None = None) -> GradCheckResult:
    """Compare an analytic gradient with :func:`numerical_gradient`.

    Args:
        f: scalar-valued function of ``x`` (see :func:`numerical_gradient`).
        x: float64 ndarray of shape ``S``, perturbed in place and restored.
        analytic: your gradient of ``f`` at ``x``; should have shape ``S``.
        h: finite-difference step, > 0.
        rtol, atol: tolerances, >= 0, used as in ``np.allclose(analytic, numeric)``.
        name: what ``analytic`` is (``"layer 2 dW"``), named first in the message,
            so that a failure among many checks says which one failed.

    Returns:
        :class:`GradCheckResult`. A wrong shape of ``analytic`` gives a failed
        result whose message says which shape was expected, not an exception.
    """
    analytic = as_float("analytic", analytic, finite=False)
    check_positive("rtol", rtol, allow_zero=True)
    check_positive("atol", atol, allow_zero=True)
    numeric = numerical_gradient(f, x, h)
    of = f" of {name}" if name else ""

    if analytic.shape != numeric.shape:
        return GradCheckResult(
            ok=False, max_rel_error=float("inf"), worst_index=(),
            analytic_value=float("nan"), numeric_value=float("nan"), numeric=numeric,
            message=(f"gradient check{of} FAILED: the analytic gradient has the wrong shape: "
                     f"expected {numeric.shape} (the shape of x), got {analytic.shape}"))

    if numeric.size == 0:
        return GradCheckResult(True, 0.0, (), float("nan"), float("nan"), numeric,
                               f"gradient check{of} passed: x is empty, nothing to compare")

    close = np.isclose(analytic, numeric, rtol=rtol, atol=atol)
    err = np.abs(analytic - numeric) / np.maximum(1e-8, np.abs(analytic) + np.abs(numeric))
    ok = bool(np.all(close))
    # Point at an entry that actually fails: a pair of tiny numbers inside atol can
    # have a larger relative error than the real mistake. (argmax picks a NaN first.)
    ranked = err if ok else np.where(close, -1.0, err)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(ranked), err.shape))
    a, n = float(analytic[worst]), float(numeric[worst])
    max_err = float(np.max(err))

    if ok:
        message = f"gradient check{of} passed: max relative error {max_err:.2g}"
    else:
        message = (f"gradient check{of} FAILED at index {worst}: expected {n:.10g} "
                   f"(numeric, finite differences), got analytic {a:.10g} "
                   f"(relative error {float(err[worst]):.2g}); "
                   f"{int(np.sum(~close))} of {close.size} entries differ "
                   f"(rtol={rtol:g}, atol={atol:g}), max relative error {max_err:.2g}")
        if not np.any(numeric) and np.any(analytic):
            # The classic cause: f closes over a different array than the x passed in.
            message += ("\nthe numerical gradient is exactly zero everywhere: does f compute "
                        "its value from the array x it is given (not from a copy of it)?")
    return GradCheckResult(ok, max_err, worst, a, n, numeric, message)


def assert_gradient(f, x: np.ndarray, analytic, *, h: float = 1e-5,
                    rtol: float = 1e-5, atol: float = 1e-8,
                    name: str | None = None) -> GradCheckResult:
    """:func:`check_gradient`, raising ``AssertionError`` with its report on failure.

    Returns the :class:`GradCheckResult` when the check passes.
    """
    __tracebackhide__ = True  # pytest: show the student's line, not this one
    result = check_gradient(f, x, analytic, h=h, rtol=rtol, atol=atol, name=name)
    if not result.ok:
        raise AssertionError(str(result))
    return result
