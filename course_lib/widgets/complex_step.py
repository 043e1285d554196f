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
  :func:`relu` and :func:`maximum`). A piecewise-linear function is analytic on
  each piece, so complex step is exact there too, and at a kink it returns the
  derivative of the branch that ``np.where`` picked (ReLU'(0) = 0 here, and a
  ``max`` tie sends the gradient to its first argument, as in the course).
* ``float(...)``, ``.real`` or ``np.asarray(..., dtype=float)`` in the middle of
  ``f`` throw the imaginary part away, and with it the derivative.
* For a numerically stable softmax or sigmoid, shift by the maximum of the
  *real* part (a real constant): see :func:`softmax` and :func:`sigmoid`.

Use::

    >>> from course_lib.widgets import complex_step as cs
    >>> cs.derivative(cs.sigmoid, 0.0)           # σ'(0)
    0.25
    >>> cs.gradient(lambda w: cs.sigmoid(w @ x), w)     # any scalar function

This module needs only numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "H",
    "derivative",
    "gradient",
    "jacobian",
    "sigmoid",
    "relu",
    "tanh",
    "identity",
    "maximum",
    "softplus",
    "softmax",
    "log_softmax",
    "ACTIVATIONS",
]

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
        f: an elementwise, complex-safe function (such as :func:`sigmoid`).
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
# complex-safe building blocks (forward passes only)
# ---------------------------------------------------------------------------

def _real(z):
    return np.real(z)


def relu(z):
    """max(z, 0), deciding on the real part: complex-safe, ReLU'(0) = 0."""
    z = np.asarray(z)
    return np.where(_real(z) > 0, z, 0 * z)


def identity(z):
    """z itself."""
    return np.asarray(z)


def maximum(a, b):
    """The larger of ``a`` and ``b`` by real part; a tie picks ``a`` (the first)."""
    a, b = np.asarray(a), np.asarray(b)
    return np.where(_real(a) >= _real(b), a, b)


def _minus_abs(z):
    """-|Re z| + i·(±Im z): the argument whose exp can never overflow."""
    return np.where(_real(z) >= 0, -z, z)


def sigmoid(z):
    """The logistic function 1 / (1 + e^-z), stable for any finite z, complex-safe.

    ``e = exp(-|z|)`` (in the sense of :func:`_minus_abs`) lies in (0, 1], so
    neither branch overflows; ``z >= 0`` uses 1 / (1 + e), ``z < 0`` uses
    e / (1 + e). Both are the same analytic function, so complex step is exact.
    """
    z = np.asarray(z)
    e = np.exp(_minus_abs(z))
    return np.where(_real(z) >= 0, 1 / (1 + e), e / (1 + e))


def tanh(z):
    """np.tanh (works on complex arrays)."""
    return np.tanh(z)


def softplus(z):
    """log(1 + e^z) = relu(z) + log1p(e^-|z|): stable, complex-safe."""
    z = np.asarray(z)
    return relu(z) + np.log1p(np.exp(_minus_abs(z)))


def softmax(z, axis: int = -1):
    """e^z / Σ e^z along ``axis``, shifted by the max of the real part (stable)."""
    z = np.asarray(z)
    shifted = z - np.max(_real(z), axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(z, axis: int = -1):
    """z - logsumexp(z) along ``axis``, stable, complex-safe."""
    z = np.asarray(z)
    shifted = z - np.max(_real(z), axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


#: name -> complex-safe activation, for the names the course uses.
ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": sigmoid,
    "relu": relu,
    "tanh": tanh,
    "identity": identity,
    "softmax": softmax,
}
