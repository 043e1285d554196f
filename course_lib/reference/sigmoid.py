"""Lesson 02: the sigmoid, its derivative, ReLU and tanh, and binary cross-entropy.

The activation functions work elementwise on arrays of any shape S (scalars
included) and return float64 arrays of shape S. The losses follow the course
convention: rows are samples, and a batch loss is the mean over samples.
"""

from __future__ import annotations

import numpy as np

from .._validate import as_float, check_same_shape

__all__ = [
    "sigmoid",
    "sigmoid_prime",
    "relu",
    "relu_prime",
    "tanh",
    "tanh_prime",
    "bce",
    "bce_with_logits",
    "bce_sigmoid_delta",
]


def sigmoid(z):
    """σ(z) = 1 / (1 + e^{-z}), elementwise, for any finite z without warnings.

    The textbook formula overflows for z < -709 (e^{-z} > 1.8e308). Writing it
    with e^{-|z|}, which lies in (0, 1], avoids that:
        z >= 0:  σ(z) = 1 / (1 + e^{-z})
        z <  0:  σ(z) = e^{z} / (1 + e^{z})
    Both branches are the same function; each is evaluated where it is safe.

    Args:
        z: any shape S.
    Returns:
        shape S, entries in [0, 1].
    """
    z = as_float("z", z)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_prime(z):
    """σ'(z) = σ(z) (1 - σ(z)), taken at the PRE-activation z.

    Proof: σ(z) = (1 + e^{-z})^{-1}, so σ'(z) = e^{-z} / (1 + e^{-z})²
    = [1 / (1 + e^{-z})] · [e^{-z} / (1 + e^{-z})] = σ(z) · (1 - σ(z)).

    Args:
        z: any shape S.
    Returns:
        shape S, entries in [0, 1/4].
    """
    s = sigmoid(z)
    return s * (1.0 - s)


def relu(z):
    """max(0, z) elementwise. Args: z any shape S. Returns: shape S."""
    z = as_float("z", z)
    return np.maximum(z, 0.0)


def relu_prime(z):
    """ReLU'(z) = 1 where z > 0, else 0, with the course convention ReLU'(0) = 0.

    ReLU has no derivative at 0; any value in [0, 1] is a valid subgradient.
    0 is what PyTorch uses, so manual and autograd gradients agree.

    Args:
        z: any shape S.
    Returns:
        shape S, entries 0.0 or 1.0.
    """
    z = as_float("z", z)
    return (z > 0).astype(np.float64)


def tanh(z):
    """tanh(z) elementwise. Args: z any shape S. Returns: shape S, in [-1, 1]."""
    return np.tanh(as_float("z", z))


def tanh_prime(z):
    """tanh'(z) = 1 - tanh(z)². Args: z any shape S. Returns: shape S, in [0, 1]."""
    t = np.tanh(as_float("z", z))
    return 1.0 - t * t


def _n_samples(a: np.ndarray) -> int:
    # Rows are samples: a scalar is one sample, a (N,) or (N, k) array N samples.
    return 1 if a.ndim == 0 else a.shape[0]


def bce(y_hat, y):
    """Binary cross-entropy, mean over samples.

    J = (1/N) Σ_n Σ_k -[y log ŷ + (1 - y) log(1 - ŷ)]

    with 0·log 0 taken as 0 (its limit), so ŷ = y = 1 gives 0, not NaN.
    For the usual one output unit (shape (N,) or (N, 1)) this is the plain mean.

    Args:
        y_hat: predicted probabilities in [0, 1]; shape (), (N,) or (N, k).
        y: targets in [0, 1], same shape as y_hat.
    Returns:
        float. It is +inf when a prediction is exactly 0 or 1 and wrong.
    """
    y_hat, y = as_float("y_hat", y_hat, ndim=(0, 1, 2)), as_float("y", y, ndim=(0, 1, 2))
    check_same_shape(("y_hat", "y"), (y_hat, y))
    if np.any((y_hat < 0) | (y_hat > 1)):
        raise ValueError("y_hat: expected probabilities in [0, 1]; "
                         f"got values in [{y_hat.min():.4g}, {y_hat.max():.4g}] "
                         "(for logits use bce_with_logits)")
    if np.any((y < 0) | (y > 1)):
        raise ValueError("y: expected targets in [0, 1]")
    with np.errstate(divide="ignore"):
        pos = np.where(y > 0, y * np.log(np.where(y > 0, y_hat, 1.0)), 0.0)
        neg = np.where(y < 1, (1 - y) * np.log1p(-np.where(y < 1, y_hat, 0.0)), 0.0)
    return float(-(pos + neg).sum() / _n_samples(y))


def bce_with_logits(z, y):
    """bce(σ(z), y) computed from the logits z, exact even when σ(z) rounds to 0 or 1.

    -[y log σ(z) + (1-y) log(1-σ(z))] = softplus(z) - y z = max(z,0) - y z + log(1+e^{-|z|})

    Args:
        z: logits; shape (), (N,) or (N, k).
        y: targets in [0, 1], same shape.
    Returns:
        float, the mean over samples.
    """
    z, y = as_float("z", z, ndim=(0, 1, 2)), as_float("y", y, ndim=(0, 1, 2))
    check_same_shape(("z", "y"), (z, y))
    if np.any((y < 0) | (y > 1)):
        raise ValueError("y: expected targets in [0, 1]")
    per_entry = np.logaddexp(0.0, z) - y * z
    return float(per_entry.sum() / _n_samples(y))


def bce_sigmoid_delta(z, y):
    """δ = ∂J/∂z for J = bce(σ(z), y): the famous (ŷ - y), divided by N.

    Per sample, ∂ℓ/∂ŷ = (ŷ - y) / (ŷ (1 - ŷ)) and ∂ŷ/∂z = ŷ (1 - ŷ): the two
    ŷ(1 - ŷ) cancel, leaving ŷ - y. The batch loss is a mean, so each sample's
    δ carries the factor 1/N (course convention: the 1/N lives in dZ).

    Args:
        z: pre-activations; shape (), (N,) or (N, k).
        y: targets, same shape.
    Returns:
        same shape as z.
    """
    z, y = as_float("z", z, ndim=(0, 1, 2)), as_float("y", y, ndim=(0, 1, 2))
    check_same_shape(("z", "y"), (z, y))
    return (sigmoid(z) - y) / _n_samples(z)
