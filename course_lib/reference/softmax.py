"""Lesson 03: softmax, its Jacobian, the vector-Jacobian product, cross-entropy.

softmax acts on the LAST axis: z of shape (..., n) gives s of shape (..., n)
with every row summing to 1. Losses take a batch Z of shape (N, C) (rows are
samples) and average over the N samples.
"""

from __future__ import annotations

import numpy as np

from .._validate import Dims, as_float, check_same_shape

__all__ = [
    "softmax",
    "softmax_jacobian",
    "softmax_backward",
    "log_softmax",
    "targets_as_probabilities",
    "cross_entropy",
    "softmax_cross_entropy_grad",
]


def softmax(z):
    """s_i = e^{z_i} / Σ_j e^{z_j} along the last axis, stable for any finite z.

    Softmax does not change when the same constant is added to every logit
    (it cancels between numerator and denominator). Subtracting the row's max
    makes the largest exponent e^0 = 1: nothing overflows, and the sum is at
    least 1 so nothing divides by zero.

    Args:
        z: shape (..., n), n >= 1.
    Returns:
        shape (..., n), entries in [0, 1], each row summing to 1.
    """
    z = as_float("z", z)
    if z.ndim == 0:
        raise ValueError("z: expected shape (..., n) with at least one axis, got a scalar")
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    """log softmax(z) along the last axis, computed as z - logsumexp(z) (stable).

    Args:
        z: shape (..., n).
    Returns:
        shape (..., n), entries <= 0.
    """
    z = as_float("z", z)
    if z.ndim == 0:
        raise ValueError("z: expected shape (..., n) with at least one axis, got a scalar")
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_jacobian(z):
    """J[i, j] = ∂s_i/∂z_j = s_i (δ_ij - s_j), i.e. J = diag(s) - s sᵀ.

    From s_i = e^{z_i} / Σ: the quotient rule gives
    ∂s_i/∂z_j = (δ_ij e^{z_i} Σ - e^{z_i} e^{z_j}) / Σ² = s_i δ_ij - s_i s_j.
    J is symmetric, and each row sums to 0 (the s sum to 1 whatever z is).

    Args:
        z: shape (n,), one sample's logits.
    Returns:
        shape (n, n).
    """
    z = Dims().check("z", as_float("z", z), ("n",))
    s = softmax(z)
    return np.diag(s) - np.outer(s, s)


def softmax_backward(z, dout):
    """Vector-Jacobian product: dz = Jᵀ dout for s = softmax(z), without building J.

    dz_j = Σ_i dout_i s_i (δ_ij - s_j) = s_j (dout_j - Σ_i dout_i s_i).
    That is O(n) per sample instead of the O(n²) of forming J.

    Args:
        z: logits, shape (..., n) (batched: any leading shape).
        dout: ∂L/∂s, same shape as z.
    Returns:
        ∂L/∂z, same shape as z.
    """
    z, dout = as_float("z", z), as_float("dout", dout)
    check_same_shape(("z", "dout"), (z, dout))
    s = softmax(z)
    return s * (dout - np.sum(dout * s, axis=-1, keepdims=True))


def targets_as_probabilities(Y, n_samples: int, n_classes: int, name: str = "Y") -> np.ndarray:
    """Accept integer class labels (N,) or one-hot/probability rows (N, C).

    Returns:
        float64 array of shape (N, C) whose rows are probability vectors.
    """
    Y_arr = np.asarray(Y)
    if Y_arr.ndim == 1 and (np.issubdtype(Y_arr.dtype, np.integer)):
        Dims(N=n_samples).check(name, Y_arr, ("N",))
        if np.any((Y_arr < 0) | (Y_arr >= n_classes)):
            raise ValueError(f"{name}: integer class labels must lie in [0, {n_classes - 1}]"
                             f" (C={n_classes}); got values in [{Y_arr.min()}, {Y_arr.max()}]")
        P = np.zeros((n_samples, n_classes))
        P[np.arange(n_samples), Y_arr] = 1.0
        return P
    P = as_float(name, Y)
    if P.ndim == 1:
        raise ValueError(f"{name}: expected integer labels of shape (N={n_samples},) or "
                         f"one-hot rows of shape (N={n_samples}, C={n_classes}); got a float "
                         f"array of shape {P.shape} (use an integer dtype for class labels)")
    Dims(N=n_samples, C=n_classes).check(name, P, ("N", "C"))
    if np.any(P < 0) or not np.allclose(P.sum(axis=1), 1.0):
        raise ValueError(f"{name}: each row must be one-hot (or a probability vector "
                         "summing to 1)")
    return P


def _logits_and_targets(Z, Y):
    Z = Dims().check("Z", as_float("Z", Z), ("N", "C"))
    return Z, targets_as_probabilities(Y, Z.shape[0], Z.shape[1])


def cross_entropy(Z, Y):
    """Mean cross-entropy of softmax(Z) against targets Y.

    J = -(1/N) Σ_n Σ_c Y_nc log softmax(Z)_nc, with log softmax computed from
    the logits directly, so a confident wrong answer gives a large finite loss
    instead of log(0).

    Args:
        Z: logits, shape (N, C).
        Y: integer labels of shape (N,) or one-hot rows of shape (N, C).
    Returns:
        float.
    """
    Z, P = _logits_and_targets(Z, Y)
    return float(-(P * log_softmax(Z)).sum() / Z.shape[0])


def softmax_cross_entropy_grad(Z, Y):
    """dZ = ∂J/∂Z = (softmax(Z) - Y) / N for J = cross_entropy(Z, Y).

    Through the Jacobian: ∂ℓ/∂s = -y/s, and Jᵀ(-y/s) = s Σ_i y_i - y = s - y
    because the targets sum to 1. The whole softmax Jacobian collapses to a
    subtraction, which is why frameworks fuse the two.

    Args:
        Z: logits, shape (N, C).
        Y: integer labels (N,) or one-hot rows (N, C).
    Returns:
        shape (N, C).
    """
    Z, P = _logits_and_targets(Z, Y)
    return (softmax(Z) - P) / Z.shape[0]
