"""Complex-step differentiation: a third way to get a gradient.

The course computes gradients two ways: by **backpropagation** (the chain
rule, written by hand) and by **finite differences** (nudge an input, see how
the output moves). There is a third way, and the explorers in
``course_lib.widgets`` use it for every gradient they show, so that nothing in
them is a copy of an exercise's answer.

The idea
--------
Take a real function ``f`` that is *analytic* (made of +, -, ×, /, exp, log,
tanh, ...: functions with a Taylor series) and evaluate it at a complex point
one tiny step ``h`` off the real axis::

    f(x + i h) = f(x) + i h f'(x) - h² f''(x) / 2 - i h³ f'''(x) / 6 + ...

The real part is ``f(x) - O(h²)`` and the imaginary part is ``h f'(x) - O(h³)``,
so ::

    f'(x) = Im f(x + i h) / h  +  O(h²).

Unlike the finite difference ``(f(x + h) - f(x - h)) / 2h`` there is **no
subtraction of two nearly equal numbers**, so nothing cancels and ``h`` can be
as small as we like. With ``h = 1e-30`` the O(h²) error is 1e-60: the result is
exact to machine precision (relative error ~1e-16), whereas finite differences
are stuck near 1e-10 at best (rounding error grows as ``h`` shrinks). The
price: one evaluation per input, like finite differences, and ``f`` must be
written with complex-safe operations.

Writing a complex-safe forward pass
-----------------------------------
numpy's ``exp``, ``log``, ``log1p``, ``tanh``, ``@``, ``sum``, ``mean`` and the
arithmetic operators all work on complex arrays. What does *not* work:

* ``abs``, ``np.maximum``, ``np.clip``, comparisons such as ``z > 0``: they are
  not analytic, or numpy compares complex numbers lexicographically. Decide
  with the **real part** instead and pick a branch with ``np.where`` (see
  :func:`maximum`; a ReLU is ``np.where(z.real > 0, z, 0 * z)``). A
  piecewise-linear function is analytic on each piece, so complex step is exact
  there too, and at a kink it returns the derivative of the branch that
  ``np.where`` picked (ReLU'(0) = 0 that way, and a ``max`` tie sends the
  gradient to its first argument, as in the course).
* ``float(...)``, ``.real`` or ``np.asarray(..., dtype=float)`` in the middle of
  ``f`` throw the imaginary part away, and with it the derivative.
* To keep an exponential from overflowing, shift its argument by a *real*
  constant (the maximum of the real part, say), never by something computed
  with ``abs``.

Why there are no activations here
---------------------------------
This module holds the differentiators and nothing that is an exercise: a
complex-safe σ or softmax here would *be* σ or softmax for any input a student
passes, and ``derivative`` or ``jacobian`` of it would be σ' or the softmax
Jacobian, answers of lessons 02 and 03 (COURSE.md: no helper a student can
import returns a graded function's answer). Each explorer writes its own forward
pass inside its logic, where it only ever sees the sliders' values.

Use::

    >>> from course_lib.widgets import complex_step as cs
    >>> cs.derivative(np.exp, 1.0)                    # exp'(1) = e, to the last bit
    2.718281828459045
    >>> cs.gradient(lambda w: np.sum(np.tanh(w @ x)), w)   # any scalar function

This module needs only numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["H", "derivative", "gradient", "jacobian", "maximum"]

#: The step: small enough that the O(h²) error is far below float64's rounding
#: (1e-60), large enough that h·f'(x) does not underflow for any sensible f'.
H = 1e-30


def _to_complex(x) -> np.ndarray:
    arr = np.array(x, dtype=np.complex128)  # a copy: we write into it
    if not np.all(np.isfinite(arr)):
        raise ValueError("x: contains NaN or inf; every entry must be finite")
    return arr


def _imag_over_h(value, h: float, what: str) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind != "c":
        raise ValueError(
            f"{what}: f returned a real {value.dtype} result, so the imaginary part "
            "(which carries the derivative) was lost. Write f with complex-safe "
            "operations: np.where on z.real instead of np.maximum/abs/comparisons, "
            "and no float(...) or .real inside f")
    return value.imag / h


def derivative(f: Callable, x, h: float = H):
    """Elementwise derivative of an elementwise function: ``f'(x) = Im f(x + ih) / h``.

    Args:
        f: an elementwise, complex-safe function (``np.exp``, ``np.tanh``, ...).
        x: a number or an array of any shape.
        h: the step (default :data:`H` = 1e-30).

    Returns:
        float for a scalar ``x``, else a float64 array of ``x``'s shape.
    """
    z = _to_complex(x)
    d = _imag_over_h(f(z + 1j * h), h, "derivative")
    return float(d) if d.ndim == 0 else d


def gradient(f: Callable, x, h: float = H) -> np.ndarray:
    """Gradient of a scalar function of an array, one complex evaluation per entry.

    Entry ``k`` of the result is ``Im f(x + i h e_k) / h``, where ``e_k`` is
    the array with a 1 at position ``k`` and 0 elsewhere.

    Args:
        f: complex-safe function taking an array of ``x``'s shape and returning
            a scalar (a complex number, or a 0-d / 1-element complex array).
        x: array of any shape (real; it is copied, never modified).
        h: the step.

    Returns:
        float64 array of ``x``'s shape.
    """
    z = _to_complex(x)
    grad = np.zeros(z.shape)
    for ix in np.ndindex(z.shape):
        old = z[ix]
        z[ix] = old + 1j * h
        try:
            out = _imag_over_h(f(z), h, "gradient")
        finally:
            z[ix] = old
        if out.size != 1:
            raise ValueError(f"gradient: f must return a scalar, got shape {out.shape}; "
                             "use jacobian() for an array-valued f")
        grad[ix] = out.reshape(())
    return grad


def jacobian(f: Callable, x, h: float = H) -> np.ndarray:
    """Jacobian of an array function: ``J[i..., k...] = ∂f(x)[i...] / ∂x[k...]``.

    Column ``k`` (all outputs' derivatives with respect to input ``k``) comes
    from one complex evaluation, ``Im f(x + i h e_k) / h``.

    Args:
        f: complex-safe function taking an array of ``x``'s shape.
        x: array of any shape (copied, never modified).
        h: the step.

    Returns:
        float64 array of shape ``f(x).shape + x.shape``.
    """
    z = _to_complex(x)
    out_shape = np.shape(f(z))
    J = np.zeros(out_shape + z.shape)
    for ix in np.ndindex(z.shape):
        old = z[ix]
        z[ix] = old + 1j * h
        try:
            col = _imag_over_h(f(z), h, "jacobian")
        finally:
            z[ix] = old
        J[(...,) + ix] = col
    return J


# ---------------------------------------------------------------------------
# the one complex-safe building block: the course's max gate (not an exercise's answer)
# ---------------------------------------------------------------------------

def maximum(a, b):
    """The larger of ``a`` and ``b`` by real part; a tie picks ``a`` (the first)."""
    a, b = np.asarray(a), np.asarray(b)
    return np.where(np.real(a) >= np.real(b), a, b)
