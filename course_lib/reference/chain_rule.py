"""Lesson 01, the chain rule: gates, one sigmoid neuron, f = ‖Wx‖², seed 003.

Every gate's backward pass is "local gradient times upstream gradient":
for z = g(x, y) and an upstream gradient dout = ∂L/∂z,

    ∂L/∂x = ∂z/∂x · dout,        ∂L/∂y = ∂z/∂y · dout.

Inputs may be Python scalars or arrays (all of one shape); outputs are float64
arrays of that shape (0-d arrays for scalars).
"""

from __future__ import annotations

import numpy as np

from .. import nets
from .._validate import Dims, as_float, check_same_shape
from .sigmoid import sigmoid

__all__ = [
    "add_gate_backward",
    "mul_gate_backward",
    "max_gate_backward",
    "fanout_forward_backward",
    "neuron_forward_backward",
    "matmul_l2_forward_backward",
    "ssr_forward",
    "ssr_output_grads",
]


def add_gate_backward(dout):
    """z = x + y. The add gate *distributes* dout unchanged to both inputs.

    Args:
        dout: ∂L/∂z, any shape S.
    Returns:
        (dx, dy): each of shape S, both equal to dout (copies, not views, so
        that later in-place accumulation into one cannot change the other).
    """
    dout = as_float("dout", dout)
    return dout.copy(), dout.copy()


def mul_gate_backward(x, y, dout):
    """z = x * y (elementwise). The mul gate *swaps*: ∂z/∂x = y, ∂z/∂y = x.

    Args:
        x, y, dout: arrays of one shape S (dout = ∂L/∂z).
    Returns:
        (dx, dy) = (y * dout, x * dout), each of shape S.
    """
    x, y, dout = as_float("x", x), as_float("y", y), as_float("dout", dout)
    check_same_shape(("x", "y", "dout"), (x, y, dout))
    return y * dout, x * dout


def max_gate_backward(x, y, dout):
    """z = max(x, y) (elementwise). The max gate *routes* dout to the larger input.

    The other input had no influence on z, so its gradient is exactly 0. On a
    tie (x == y) the course sends the whole gradient to the first argument x,
    as ``torch.maximum`` does not (it splits it); one convention, stated once.

    Args:
        x, y, dout: arrays of one shape S.
    Returns:
        (dx, dy), each of shape S; dx + dy == dout entrywise.
    """
    x, y, dout = as_float("x", x), as_float("y", y), as_float("dout", dout)
    check_same_shape(("x", "y", "dout"), (x, y, dout))
    x_wins = x >= y
    return np.where(x_wins, dout, 0.0), np.where(x_wins, 0.0, dout)


def fanout_forward_backward(x, y):
    """f = x·y + max(x, y): each input feeds two gates, so its gradients ADD.

    x reaches f along two paths (through the mul gate and through the max
    gate); the multivariable chain rule sums the contributions of all paths:
        df/dx = y + [x >= y],    df/dy = x + [x < y]
    (ties go to x, as in max_gate_backward). Overwriting instead of adding,
    e.g. ``dx = ...`` twice instead of ``dx += ...``, keeps only one path.

    Args:
        x, y: arrays of one shape S (scalars allowed).
    Returns:
        (f, dx, dy), each of shape S.
    """
    x, y = as_float("x", x), as_float("y", y)
    check_same_shape(("x", "y"), (x, y))
    f = x * y + np.maximum(x, y)
    ones = np.ones_like(x)
    dx_mul, dy_mul = mul_gate_backward(x, y, ones)
    dx_max, dy_max = max_gate_backward(x, y, ones)
    return f, dx_mul + dx_max, dy_mul + dy_max


def neuron_forward_backward(w, x):
    """One sigmoid neuron, f = σ(w0·x0 + w1·x1 + w2), traced node by node.

    Forward: q = w0·x0 + w1·x1 + w2, f = σ(q).
    Backward: df/dq = σ(q)(1 - σ(q)) = f(1 - f); the add node hands it to each
    term, and each mul node swaps in its other input:
        df/dw = f(1-f)·[x0, x1, 1],   df/dx = f(1-f)·[w0, w1].

    Args:
        w: shape (3,): two weights and the bias.
        x: shape (2,): the inputs.
    Returns:
        (f, dw, dx): f a float, dw shape (3,), dx shape (2,).
    """
    w = Dims().check("w", as_float("w", w), (3,))
    x = Dims().check("x", as_float("x", x), (2,))
    q = w[0] * x[0] + w[1] * x[1] + w[2]
    f = float(sigmoid(q))
    dq = f * (1.0 - f)  # upstream is df/df = 1
    dw = dq * np.array([x[0], x[1], 1.0])
    dx = dq * w[:2].copy()
    return f, dw, dx


def matmul_l2_forward_backward(W, x):
    """f = ‖W x‖² = Σ_i q_i² with q = W x.

    df/dq = 2q; q_i = Σ_j W_ij x_j, so df/dW_ij = 2 q_i x_j (an outer product)
    and df/dx_j = Σ_i 2 q_i W_ij (a product with Wᵀ). Each gradient has the
    shape of the variable it belongs to: always check that.

    Args:
        W: shape (m, n).
        x: shape (n,).
    Returns:
        (f, dW, dx): f a float, dW shape (m, n), dx shape (n,).
    """
    d = Dims()
    W = d.check("W", as_float("W", W), ("m", "n"))
    x = d.check("x", as_float("x", x), ("n",))
    q = W @ x
    f = float(q @ q)
    dq = 2.0 * q
    return f, np.outer(dq, x), W.T @ dq


# ---------------------------------------------------------------------------
# Seed 003: a 1-2-1 network with softplus hidden units and the SSR loss.
#   y_blue   = softplus(w1 x + b1)
#   y_orange = softplus(w2 x + b2)
#   y_green  = w3 y_blue + w4 y_orange + b3          (the prediction ŷ)
#   SSR      = Σ_i (y_i - ŷ_i)²
# ---------------------------------------------------------------------------

def ssr_forward(x, params):
    """Forward pass of seed 003's network, written correctly.

    The forward pass is not an exercise, so students have it too: this is
    ``course_lib.nets.ssr_forward`` (y_orange uses w2, b2, where the seed used
    w1, b1).

    Args:
        x: shape (n,), the inputs.
        params: dict with float entries w1, w2, w3, w4, b1, b2, b3.
    Returns:
        dict of arrays of shape (n,): ``y_blue``, ``y_orange``, ``y_green``.
    """
    return nets.ssr_forward(as_float("x", x, ndim=1), params)


def ssr_output_grads(x, y, params):
    """Gradients of SSR = Σ (y - ŷ)² with respect to the output layer's b3, w3, w4.

    ∂SSR/∂ŷ_i = -2 (y_i - ŷ_i): the residual, not its square, and certainly
    not the whole SSR (seed 003's mistake). Then, since ŷ is linear in them,
        ∂SSR/∂b3 = Σ_i -2 r_i,  ∂SSR/∂w3 = Σ_i -2 r_i y_blue_i,
        ∂SSR/∂w4 = Σ_i -2 r_i y_orange_i.

    Args:
        x, y: shape (n,), inputs and targets.
        params: dict with float entries w1, w2, w3, w4, b1, b2, b3.
    Returns:
        dict with float entries ``b3``, ``w3``, ``w4``.
    """
    d = Dims()
    x = d.check("x", as_float("x", x), ("n",))
    y = d.check("y", as_float("y", y), ("n",))
    fwd = ssr_forward(x, params)
    dy_hat = -2.0 * (y - fwd["y_green"])
    return {
        "b3": float(dy_hat.sum()),
        "w3": float(dy_hat @ fwd["y_blue"]),
        "w4": float(dy_hat @ fwd["y_orange"]),
    }
