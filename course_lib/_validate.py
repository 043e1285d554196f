"""Input checks shared by every public function of course_lib.

A student who passes a ``(3,)`` vector where an ``(N, 3)`` matrix is expected
should read *which* argument is wrong and *what* shape was expected, not a
broadcasting error three calls deeper. Every check here raises ``ValueError``
with a message of the form::

    W: expected shape (n_out, n_in) = (4, 3), got (3, 4)

Shapes are described with a tuple whose entries are either an int (that size
exactly) or a name (any size; the same name must mean the same size wherever it
appears in one call, which is checked by :class:`Dims`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["as_float", "check_shape", "Dims", "check_choice", "check_positive"]


def _fmt_shape(shape) -> str:
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def as_float(name: str, value, *, ndim: int | tuple[int, ...] | None = None,
             finite: bool = True) -> np.ndarray:
    """Convert ``value`` to a float64 ndarray, naming ``name`` in any error.

    Args:
        name: the argument's name as the caller wrote it (e.g. ``"W"``).
        value: anything ``np.asarray`` accepts (scalar, list, array, tensor).
        ndim: required number of dimensions, or a tuple of allowed ones.
        finite: reject NaN and inf (default), since every gradient computed
            from them is meaningless.

    Returns:
        float64 ndarray (a new array when a conversion was needed; never a view
        that the function could later modify in the caller's data).
    """
    if value is None:
        raise ValueError(f"{name}: expected an array of numbers, got None")
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected an array of numbers, got {type(value).__name__}"
                         f" ({exc})") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name}: expected a {want} array, got shape {_fmt_shape(arr.shape)}"
                             if arr.ndim else
                             f"{name}: expected a {want} array, got a scalar")
    # ndarray's own .all() and math.isfinite: numpy's np.all wrapper costs more than the
    # test itself for the small arrays and scalars these checks see thousands of times
    # (a numerical gradient of a seed network calls this for every parameter)
    if finite and not (math.isfinite(arr) if arr.ndim == 0 else np.isfinite(arr).all()):
        bad = "NaN" if np.any(np.isnan(arr)) else "inf"
        raise ValueError(f"{name}: contains {bad}; every entry must be finite")
    return arr


class Dims:
    """Binds symbolic dimension names across several arrays of one call.

    >>> d = Dims()
    >>> d.check("X", X, ("N", "n_in"))
    >>> d.check("W", W, ("n_out", "n_in"))   # n_in must agree with X's

    The message names the argument, the expected shape with the sizes known so
    far filled in, and the shape actually received.
    """

    def __init__(self, **known: int) -> None:
        self.sizes: dict[str, int] = dict(known)

    def expected(self, spec) -> str:
        parts = []
        for s in spec:
            if isinstance(s, str) and s in self.sizes:
                parts.append(f"{s}={self.sizes[s]}")
            else:
                parts.append(str(s))
        return _fmt_shape(parts)

    def check(self, name: str, arr: np.ndarray, spec) -> np.ndarray:
        spec = tuple(spec)
        if arr.ndim != len(spec):
            raise ValueError(f"{name}: expected shape {self.expected(spec)}, "
                             f"got {_fmt_shape(arr.shape)}")
        # Bind names in a copy and commit only if the whole array fits, so the
        # message never quotes a size that this (wrong) array itself supplied.
        sizes = dict(self.sizes)
        for axis, (want, got) in enumerate(zip(spec, arr.shape, strict=True)):
            if isinstance(want, str):
                if want in sizes and sizes[want] != got:
                    raise ValueError(
                        f"{name}: expected shape {self.expected(spec)}, got "
                        f"{_fmt_shape(arr.shape)} (axis {axis} must be {want}="
                        f"{sizes[want]} to match the other arguments)")
                sizes.setdefault(want, got)
            elif want != got:
                raise ValueError(f"{name}: expected shape {self.expected(spec)}, "
                                 f"got {_fmt_shape(arr.shape)}")
        self.sizes = sizes
        return arr


def check_shape(name: str, arr: np.ndarray, spec) -> np.ndarray:
    """Check one array against a shape spec (see :class:`Dims`)."""
    return Dims().check(name, arr, spec)


def check_same_shape(names: tuple[str, ...], arrays: tuple[np.ndarray, ...]) -> None:
    """All ``arrays`` must have one shape (the first one's)."""
    first = arrays[0].shape
    for n, a in zip(names[1:], arrays[1:], strict=True):
        if a.shape != first:
            raise ValueError(f"{n}: expected the same shape as {names[0]}, "
                             f"{_fmt_shape(first)}, got {_fmt_shape(a.shape)}")


def check_choice(name: str, value, choices) -> str:
    """``value`` must be one of ``choices`` (strings); the message lists them."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: unknown value {value!r}; expected one of {listed}")
    return value


def check_positive(name: str, value, *, integer: bool = False, allow_zero: bool = False):
    """A positive (or non-negative) scalar; ``integer`` also requires an int."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or not np.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite value {bound}, got {value!r}")
    return value
