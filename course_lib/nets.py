"""The course's seed networks, ready to use, plus random parameters for any MLP.

Every lesson works through a small network whose numbers you can check by
hand. Typing its weights into a notebook is where transcription errors creep
in, so they live here instead::

    >>> from course_lib.nets import seed000, describe
    >>> net = seed000()
    >>> print(describe(net))          # layer shapes and activations
    >>> W1, b1 = net.params[0]
    >>> Z1 = net.X @ W1.T + b1        # (1, 4): the seed's z^1 as one row

Conventions (the same as the rest of the course):

* float64 everywhere; **rows are samples**, so ``X`` has shape ``(N, n_in)``
  and ``Y`` has shape ``(N, n_out)``;
* a layer is a pair ``(W, b)`` with ``W`` of shape ``(n_out, n_in)`` (like
  ``torch.nn.Linear.weight``) and ``b`` of shape ``(n_out,)``;
  its pre-activation is ``Z = A_prev @ W.T + b``;
* a batch loss is the mean over samples.

The seeds write their networks in their own notations; each ``SeedNet`` has a
``notation`` field that says how to translate.

Every ``seedXXX()`` call builds new arrays, so you may change the ones you get
(an SGD step in place, say) without affecting the next call.

This module only needs numpy: it does not import the reference answers, torch
or matplotlib.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from course_lib._validate import Dims, as_float, check_choice, check_positive, check_same_shape

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "SeedNet",
    "SSRExample",
    "seed000",
    "seed001",
    "seed003",
    "seed004",
    "softplus",
    "ssr_forward",
    "ssr",
    "init_params",
    "describe",
]

ACTIVATIONS = ("sigmoid", "relu", "tanh", "identity", "softmax")
LOSSES = ("mse", "bce", "cross_entropy")


# --------------------------------------------------------------------------
# Multi-layer perceptrons (seeds 000, 001, 004)
# --------------------------------------------------------------------------

# eq=False: the generated __eq__ would compare numpy arrays with ``==`` and
# fail with "truth value of an array is ambiguous"; identity is enough here.
@dataclass(frozen=True, eq=False)
class SeedNet:
    """A seed's network together with the input and target it is worked on.

    Attributes:
        name: short id, e.g. ``"seed000"``.
        description: one line: architecture, activations, loss.
        params: list of ``(W, b)``, one per layer; ``W`` has shape
            ``(n_out, n_in)``, ``b`` has shape ``(n_out,)``, both float64.
        X: inputs, shape ``(N, n_in)``.
        Y: targets, shape ``(N, n_out)``.
        activations: one name per layer, from :data:`ACTIVATIONS`.
        loss: one of :data:`LOSSES`.
        layer_sizes: ``(n_in, n_hidden..., n_out)``.
        notation: how the seed's symbols map to ``params`` (a few lines).

    The dataclass is frozen (you cannot rebind ``net.X``), but the arrays
    themselves are ordinary writable arrays; ask for a fresh copy by calling
    the ``seedXXX()`` function again.
    """

    name: str
    description: str
    params: list[tuple[np.ndarray, np.ndarray]]
    X: np.ndarray
    Y: np.ndarray
    activations: tuple[str, ...]
    loss: str
    layer_sizes: tuple[int, ...]
    notation: str

    def __post_init__(self) -> None:
        # Catch an inconsistent network when it is built, not when a student
        # first multiplies two mismatched matrices.
        sizes = self.layer_sizes
        n_layers = len(sizes) - 1
        if len(self.params) != n_layers or len(self.activations) != n_layers:
            raise ValueError(
                f"params, activations: expected {n_layers} layers to match layer_sizes="
                f"{sizes}, got {len(self.params)} and {len(self.activations)}")
        for i, name in enumerate(self.activations):
            check_choice(f"activations[{i}]", name, ACTIVATIONS)
        check_choice("loss", self.loss, LOSSES)
        # One Dims for the whole network: X and Y must agree on N.
        dims = Dims()
        _check_array("X", self.X, ("N", sizes[0]), dims)
        _check_array("Y", self.Y, ("N", sizes[-1]), dims)
        for i, (W, b) in enumerate(self.params):
            _check_array(f"params[{i}][0] (W{i + 1})", W, (sizes[i + 1], sizes[i]), dims)
            _check_array(f"params[{i}][1] (b{i + 1})", b, (sizes[i + 1],), dims)


def _check_array(name: str, arr, spec, dims: Dims) -> None:
    """A float64 ndarray of shape ``spec`` (how SeedNet checks its fields)."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float64:
        got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"{name}: expected a float64 numpy array, got {got}")
    dims.check(name, arr, spec)


def _arr(rows) -> np.ndarray:
    # Every call builds a new float64 array from the literal, which is what
    # makes each seedXXX() result independent of the previous one.
    return np.array(rows, dtype=np.float64)


def seed000() -> SeedNet:
    """Seed 000: the 3-4-2 network (sigmoid hidden layer, softmax output, MSE).

    One sample, ``x = (1, 0.5, -1)`` with target ``y = (1, 0)``.

    Returns:
        SeedNet with ``X`` (1, 3), ``Y`` (1, 2), ``W1`` (4, 3), ``b1`` (4,),
        ``W2`` (2, 4), ``b2`` (2,); loss ``"mse"`` = ½ Σ_j (a_j - y_j)²
        (averaged over the one sample).
    """
    W1 = _arr([[0.2, -0.3, 0.5],
               [0.7, 0.1, -0.2],
               [-0.5, 0.4, 0.3],
               [0.1, -0.4, 0.2]])
    b1 = _arr([0.1, -0.2, 0.05, 0.0])
    W2 = _arr([[0.3, -0.6, 0.2, 0.1],
               [-0.2, 0.1, 0.4, -0.5]])
    b2 = _arr([0.05, -0.1])
    return SeedNet(
        name="seed000",
        description="3-4-2 network: sigmoid hidden layer, softmax output, "
                    "MSE loss 1/2 sum (a - y)^2; one sample",
        params=[(W1, b1), (W2, b2)],
        X=_arr([[1.0, 0.5, -1.0]]),
        Y=_arr([[1.0, 0.0]]),
        activations=("sigmoid", "softmax"),
        loss="mse",
        layer_sizes=(3, 4, 2),
        notation=(
            "Seed 000 writes w^l_jk for the weight from neuron k of layer l-1 to\n"
            "neuron j of layer l: that is params[l-1][0][j-1, k-1] (same layout,\n"
            "1-based indices). b^l_j is params[l-1][1][j-1]. Its a^0 is the row X[0]\n"
            "and its column vector z^l = W^l a^(l-1) + b^l is our row Z = A @ W.T + b."
        ),
    )


def seed001() -> SeedNet:
    """Seed 001: the 2-2-1 network with sigmoid everywhere and BCE.

    One sample, ``x = (0.5, 1)`` with label ``y = 1``. The seed has no
    biases; they are zeros here so that every layer has the same ``(W, b)``
    form (leave them at zero to reproduce the seed's numbers).

    Returns:
        SeedNet with ``X`` (1, 2), ``Y`` (1, 1), ``W1`` (2, 2) all 0.5,
        ``b1`` (2,) zeros, ``W2`` (1, 2) all 1.0, ``b2`` (1,) zeros.
    """
    return SeedNet(
        name="seed001",
        description="2-2-1 network: sigmoid hidden and output, BCE loss; one sample; "
                    "the seed has no biases, so b1 and b2 are zeros",
        params=[(_arr([[0.5, 0.5], [0.5, 0.5]]), np.zeros(2)),
                (_arr([[1.0, 1.0]]), np.zeros(1))],
        X=_arr([[0.5, 1.0]]),
        Y=_arr([[1.0]]),
        activations=("sigmoid", "sigmoid"),
        loss="bce",
        layer_sizes=(2, 2, 1),
        notation=(
            "Seed 001 indexes weights the other way: v_ij goes from input i to\n"
            "hidden neuron j, so v_ij is params[0][0][j-1, i-1] (the transpose of\n"
            "its index order), and the output weights w_1, w_2 are params[1][0][0, :].\n"
            "Its general w^(l)_jk (neuron j of layer l-1 to neuron k of layer l) is\n"
            "params[l-1][0][k-1, j-1]. It uses column vectors (z = W x, grad = delta x^T);\n"
            "with rows as samples that is Z = X @ W.T and dW = dZ.T @ X."
        ),
    )


def seed004() -> SeedNet:
    """Seed 004: the 2-3-2-1 network (ReLU, ReLU, sigmoid) with mean BCE.

    A batch of two samples, ``X = [[1, 2], [3, 4]]`` with labels ``[[0], [1]]``.
    The weights are the ones the seed sets by hand, not the random
    initial ones it prints first.

    Returns:
        SeedNet with ``X`` (2, 2), ``Y`` (2, 1), ``W1`` (3, 2), ``b1`` (3,),
        ``W2`` (2, 3), ``b2`` (2,), ``W3`` (1, 2), ``b3`` (1,).
    """
    W1 = _arr([[-1.0, 2.0], [3.0, 0.5], [-0.1, -4.0]])
    b1 = _arr([1.0, -2.0, 0.3])
    W2 = _arr([[0.5, 1.0, -2.0], [0.7, 0.1, 0.3]])
    b2 = _arr([-4.0, 5.0])
    W3 = _arr([[0.5, -0.3]])
    b3 = _arr([0.1])
    return SeedNet(
        name="seed004",
        description="2-3-2-1 network: ReLU, ReLU, sigmoid output, BCE averaged "
                    "over a batch of 2",
        params=[(W1, b1), (W2, b2), (W3, b3)],
        X=_arr([[1.0, 2.0], [3.0, 4.0]]),
        Y=_arr([[0.0], [1.0]]),
        activations=("relu", "relu", "sigmoid"),
        loss="bce",
        layer_sizes=(2, 3, 2, 1),
        notation=(
            "Seed 004 uses the course's layout: rows are samples, W^[l] has one row\n"
            "per neuron of layer l (as torch's nn.Linear), Z^[l] = A^[l-1] W^[l]^T + b^[l].\n"
            "So W^[l] is params[l-1][0], b^[l] is params[l-1][1], A^[0] is X and its\n"
            "column y is Y. Its J (the cost) is the course's batch loss (mean over samples)."
        ),
    )


# --------------------------------------------------------------------------
# Seed 003: softplus network, sum of squared residuals
# --------------------------------------------------------------------------

_SSR_KEYS = ("w1", "w2", "w3", "w4", "b1", "b2", "b3")


@dataclass(frozen=True, eq=False)
class SSRExample:
    """Seed 003's scalar network and data.

    The network maps a scalar ``x`` to::

        y_blue   = softplus(w1 * x + b1)
        y_orange = softplus(w2 * x + b2)
        y_green  = w3 * y_blue + w4 * y_orange + b3      (the prediction)

    and is judged by the sum of squared residuals ``Σ_i (y_i - y_green_i)²``.

    Attributes:
        x: inputs, shape ``(3,)``.
        y: targets, shape ``(3,)``.
        params: dict with keys ``w1 w2 w3 w4 b1 b2 b3`` (Python floats).
        learning_rate: 0.01, the value the seed's code uses.
        description: one line.
    """

    x: np.ndarray
    y: np.ndarray
    params: dict[str, float]
    learning_rate: float
    description: str


def seed003() -> SSRExample:
    """Seed 003: the softplus network with the sum of squared residuals.

    The seed draws ``w1..w4`` with ``np.random.seed(42)`` followed by four
    ``np.random.normal(0, 1)`` calls and sets the biases to 0. We repeat the
    draw with ``np.random.RandomState(42)`` (the same legacy generator, whose
    stream numpy keeps stable across versions) so that the global random
    state of your notebook is left alone.

    Returns:
        SSRExample with ``x`` (3,), ``y`` (3,), ``params`` (7 floats) and
        ``learning_rate`` 0.01. (The seed's text says 0.001; its code uses 0.01.)
    """
    rng = np.random.RandomState(42)
    w = [float(rng.normal(0.0, 1.0)) for _ in range(4)]
    params = {"w1": w[0], "w2": w[1], "w3": w[2], "w4": w[3],
              "b1": 0.0, "b2": 0.0, "b3": 0.0}
    return SSRExample(
        x=_arr([0.1, 0.53, 0.82]),
        y=_arr([1.2, 3.2, 1.1]),
        params=params,
        learning_rate=0.01,
        description="1-2-1 scalar network: softplus hidden units, linear output, "
                    "sum of squared residuals; 3 data points",
    )


def softplus(x):
    """softplus(x) = log(1 + e^x), elementwise, without overflow.

    ``np.log(1 + np.exp(x))`` overflows for x above about 709 and loses all
    precision for very negative x; ``logaddexp(0, x)`` = log(e^0 + e^x)
    avoids both.

    Args:
        x: number or array of any shape.

    Returns:
        float64 array of the same shape as ``x`` (a numpy scalar for a scalar).
    """
    return np.logaddexp(0.0, as_float("x", x))


def _check_ssr_params(params) -> dict[str, float]:
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected a dict with keys {', '.join(_SSR_KEYS)}, "
                         f"got {type(params).__name__}")
    missing = [k for k in _SSR_KEYS if k not in params]
    if missing:
        raise ValueError(f"params: missing key(s) {', '.join(missing)}; "
                         f"expected keys {', '.join(_SSR_KEYS)}")
    return {k: float(as_float(f"params[{k!r}]", params[k], ndim=0)) for k in _SSR_KEYS}


def ssr_forward(x, params) -> dict[str, np.ndarray]:
    """Forward pass of seed 003's network (correct version).

    Args:
        x: inputs, shape ``(n,)`` (or a scalar).
        params: dict with keys ``w1 w2 w3 w4 b1 b2 b3`` (numbers).

    Returns:
        dict with ``y_blue``, ``y_orange``, ``y_green``, each of ``x``'s shape.
        ``y_orange`` uses ``w2, b2``; the seed's code used ``w1, b1`` there,
        which made the two hidden units identical.
    """
    x = as_float("x", x, ndim=(0, 1))
    p = _check_ssr_params(params)
    y_blue = softplus(p["w1"] * x + p["b1"])
    y_orange = softplus(p["w2"] * x + p["b2"])
    y_green = p["w3"] * y_blue + p["w4"] * y_orange + p["b3"]
    return {"y_blue": y_blue, "y_orange": y_orange, "y_green": y_green}


def ssr(y, y_hat) -> float:
    """Sum of squared residuals, Σ_i (y_i - ŷ_i)².

    Note it is a *sum*, not a mean: its gradient with respect to ŷ_i is
    -2 (y_i - ŷ_i), with no 1/n.

    Args:
        y: targets, any shape.
        y_hat: predictions, the same shape as ``y``.

    Returns:
        float.
    """
    y = as_float("y", y)
    y_hat = as_float("y_hat", y_hat)
    check_same_shape(("y", "y_hat"), (y, y_hat))
    return float(np.sum((y - y_hat) ** 2))


# --------------------------------------------------------------------------
# Random parameters for any MLP
# --------------------------------------------------------------------------

def _check_layer_sizes(layer_sizes) -> tuple[int, ...]:
    # A string is a sequence too ("32" would become sizes 3 and 2): refuse it.
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__iter__"):
        raise ValueError("layer_sizes: expected a sequence of positive ints such as "
                         f"(2, 16, 3), got {layer_sizes!r}")
    sizes = tuple(layer_sizes)
    if len(sizes) < 2:
        raise ValueError("layer_sizes: expected at least two sizes (n_in, ..., n_out), "
                         f"got {sizes!r}")
    for i, n in enumerate(sizes):
        check_positive(f"layer_sizes[{i}]", n, integer=True)
    return tuple(int(n) for n in sizes)


def init_params(layer_sizes, seed=0, scale="xavier") -> list[tuple[np.ndarray, np.ndarray]]:
    """Random float64 parameters for an MLP with the given layer sizes.

    Weights are drawn from a normal distribution whose standard deviation
    keeps the variance of the signal roughly constant from layer to layer
    (with all weights ~ N(0, 1) a wide layer's Z would be huge and its
    sigmoids saturated from the start). Biases start at zero: the random
    weights already break the symmetry between neurons.

    Args:
        layer_sizes: ``(n_in, n_hidden..., n_out)``, at least two positive ints.
        seed: int >= 0 for ``np.random.default_rng``; the same seed gives the
            same parameters.
        scale: ``"xavier"`` (Glorot normal, std = sqrt(2 / (n_in + n_out)),
            suits sigmoid and tanh), ``"he"`` (std = sqrt(2 / n_in), suits
            ReLU), or a positive number used as the std of every layer.

    Returns:
        list of ``(W, b)``, one per layer: ``W`` of shape ``(n_out, n_in)``,
        ``b`` of shape ``(n_out,)`` (zeros).
    """
    sizes = _check_layer_sizes(layer_sizes)
    check_positive("seed", seed, integer=True, allow_zero=True)
    if isinstance(scale, str):
        check_choice("scale", scale, ("xavier", "he"))
    elif isinstance(scale, numbers.Real) and not isinstance(scale, bool):
        check_positive("scale", scale)
    else:
        raise ValueError("scale: expected 'xavier', 'he' or a positive number (the std), "
                         f"got {scale!r}")

    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        if scale == "xavier":
            std = np.sqrt(2.0 / (n_in + n_out))
        elif scale == "he":
            std = np.sqrt(2.0 / n_in)
        else:
            std = float(scale)
        W = rng.normal(0.0, std, size=(n_out, n_in))
        params.append((W, np.zeros(n_out)))
    return params


# --------------------------------------------------------------------------
# A printable summary
# --------------------------------------------------------------------------

def describe(net, activations=None) -> str:
    """A short text summary: one line per layer with shapes and activation.

    Args:
        net: a :class:`SeedNet`, or a list of ``(W, b)`` as returned by
            :func:`init_params` (``W`` of shape ``(n_out, n_in)``, ``b`` of
            shape ``(n_out,)``).
        activations: names per layer, for a plain list of ``(W, b)``
            (a SeedNet brings its own).

    Returns:
        a multi-line string, e.g. for ``seed000()``::

            seed000: 3-4-2 network: sigmoid hidden layer, ...
              X (1, 3) -> Y (1, 2), loss 'mse'
              layer 1: W (4, 3), b (4,) -> sigmoid
              layer 2: W (2, 4), b (2,) -> softmax
              26 parameters (20 weights, 6 biases)
    """
    lines = []
    if isinstance(net, SeedNet):
        params, activations = net.params, net.activations
        lines.append(f"{net.name}: {net.description}")
        lines.append(f"  X {net.X.shape} -> Y {net.Y.shape}, loss {net.loss!r}")
    else:
        params = _check_params(net)
        if activations is not None:
            activations = tuple(activations)
            if len(activations) != len(params):
                raise ValueError(f"activations: expected {len(params)} names (one per "
                                 f"layer), got {len(activations)}")
            for i, name in enumerate(activations):
                check_choice(f"activations[{i}]", name, ACTIVATIONS)

    n_w = n_b = 0
    for i, (W, b) in enumerate(params):
        act = f" -> {activations[i]}" if activations is not None else ""
        lines.append(f"  layer {i + 1}: W {W.shape}, b {b.shape}{act}")
        n_w += W.size
        n_b += b.size
    lines.append(f"  {n_w + n_b} parameters ({n_w} weights, {n_b} biases)")
    return "\n".join(lines)


def _check_params(params) -> list[tuple[np.ndarray, np.ndarray]]:
    """A list of (W, b) whose shapes chain: each W's n_in is the previous n_out."""
    if isinstance(params, (str, bytes)) or not hasattr(params, "__len__") or not params:
        raise ValueError("params: expected a non-empty list of (W, b) pairs, "
                         f"got {type(params).__name__}")
    checked = []
    n_prev = None
    for i, layer in enumerate(params):
        if not isinstance(layer, (tuple, list)) or len(layer) != 2:
            raise ValueError(f"params[{i}]: expected a pair (W, b), got {type(layer).__name__}")
        dims = Dims() if n_prev is None else Dims(n_in=n_prev)
        W = dims.check(f"params[{i}][0]", as_float(f"params[{i}][0]", layer[0], ndim=2),
                       ("n_out", "n_in"))
        b = dims.check(f"params[{i}][1]", as_float(f"params[{i}][1]", layer[1], ndim=1),
                       ("n_out",))
        checked.append((W, b))
        n_prev = W.shape[0]
    return checked
