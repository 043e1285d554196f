"""Checks for lesson 04: dense layers, backpropagation through an MLP, SGD.

Course layout: rows are samples, ``W`` is ``(n_out, n_in)``, ``Z = A_prev @ W.T + b``
and the batch loss is a mean over the N samples, so the 1/N lives in ``dZ``.

Every check compares the student's function with ``course_lib.reference`` on
fresh random inputs. The backprop check builds random networks (depth 1 to 3,
widths 1 to 6, a batch of 1 and of many, every activation in the hidden
layers, every valid pair of output activation and loss) and reports the FIRST
wrong quantity in backward order (the loss value, then the output layer's dW
and db, then the layer before it, ...), which says where the mistake is: in
the output error (BP1), in moving the error back a layer (BP2), or in turning
dZ into dW and db (BP3, BP4).

Two rules the lesson states are graded by behaviour, each in one part only, so that
breaking one costs that cell's point and nothing else: backprop leaves ``params``
unchanged (part "shapes" compares them before and after the call), and its loss does
not overflow (part "saturated": output logits of hundreds, where the exact loss is
finite and log(sigmoid) or log(softmax) is not; results the student gets right on the
same network with small logits must stay right, everything else must stay finite).
sgd_step's rule (arguments unchanged) is its part "inputs".
"""

from __future__ import annotations

import functools

import numpy as np

from .. import reference as R
from ._core import (
    call,
    expect_close,
    expect_tuple,
    fmt,
    known_mistake,
    mistakes_of,
    once_per_notebook,
    rng_for,
    run_parts,
    shape_str,
)

ACTIVATIONS = R.ACTIVATIONS

# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------


def _probe_hint(run_probe) -> str:
    """Run a probe on inputs where a mistaken formula does not crash; '' if nothing found."""
    try:
        run_probe()
    except AssertionError as exc:
        text = str(exc)
        if "known mistake" in text:
            return ("On square inputs (n_in = n_out), where your code does run, its result "
                    "matches a known mistake:" + text.split("known mistake:", 1)[1])
    except Exception:  # noqa: BLE001 - the probe is only a hint; never fail because of it
        return ""
    return ""


def _call(fn, fn_name, args, probe=None):
    """``_core.call``; when the student's code raises, try to say which formula it was."""
    try:
        return call(fn, fn_name, args)
    except AssertionError as exc:
        if probe is None or " raised " not in str(exc).split("\n", 1)[0]:
            raise
        hint = _probe_hint(probe)
        if not hint:
            raise
        raise AssertionError(f"{exc}\n  {hint}") from None


def _expect_shape(label, got, expected_shape, known=None):
    """Check only the shape of ``got``; ``known`` maps a wrong shape to its explanation."""
    try:
        arr = np.asarray(got, dtype=np.float64)
    except Exception:  # noqa: BLE001
        raise AssertionError(f"{label}: expected an array of shape {shape_str(expected_shape)}, "
                             f"got {type(got).__name__}") from None
    if arr.shape == tuple(expected_shape):
        return
    msg = f"{label}: expected shape {shape_str(expected_shape)}, got {shape_str(arr.shape)}."
    for shape, why in (known or {}).items():
        if arr.shape == tuple(shape):
            msg += f"\n  This matches a known mistake: {why}."
            break
    else:
        if arr.ndim == 2 and arr.shape == tuple(expected_shape)[::-1]:
            msg += " That is the transpose: a gradient always has the shape of its variable."
    raise AssertionError(msg)


def _close(label, got, expected, mistakes=None, **kwargs):
    """``expect_close``, also for known mistakes whose shape differs from the expected one.

    (``_core`` compares a matching mistake with the expected value, which fails for a
    mistake of another shape, e.g. a transposed gradient; those are handled here.)
    """
    expected = np.asarray(expected, dtype=np.float64)
    catalogue = functools.cache(lambda: mistakes_of(mistakes))  # computed once, if needed
    try:
        arr = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.shape != expected.shape:
        for description, value in catalogue().items():
            value = np.asarray(value, dtype=np.float64)
            if value.shape == arr.shape and np.allclose(arr, value, rtol=1e-6, atol=1e-10):
                raise AssertionError(
                    f"{label}: expected shape {shape_str(expected.shape)}, got "
                    f"{shape_str(arr.shape)}.\n  This matches a known mistake: {description}.")
    expect_close(label, got, expected, **kwargs, mistakes=lambda: {
        d: v for d, v in catalogue().items() if np.shape(v) == expected.shape})


def _layer(rng, N, n_in, n_out):
    A_prev = rng.normal(0.0, 1.0, size=(N, n_in))
    W = rng.normal(0.0, 1.0, size=(n_out, n_in))
    b = rng.normal(0.0, 1.0, size=(n_out,))
    return A_prev, W, b


def _sizes(rng, square=False):
    """(N, n_in, n_out): N, n_in and n_out all different unless square (n_in = n_out)."""
    while True:
        N, n_in, n_out = (int(v) for v in rng.integers(1, 8, size=3))
        if square:
            return N, n_in, n_in
        if len({N, n_in, n_out}) == 3 and N > 1:
            return N, n_in, n_out


# ---------------------------------------------------------------------------
# dense_forward
# ---------------------------------------------------------------------------

def _dense_forward_mistakes(A_prev, W, b):
    m = {"the bias is missing: Z = A_prev @ W.T + b": A_prev @ W.T,
         "the bias is subtracted: Z = A_prev @ W.T + b, with a plus": A_prev @ W.T - b}
    if W.shape[0] == W.shape[1]:
        m["W is not transposed: W has shape (n_out, n_in), so Z = A_prev @ W.T + b "
          "(A_prev @ W only runs when n_in = n_out, and then it is the wrong matrix)"] = \
            A_prev @ W + b
    return m


def check_dense_forward(dense_forward, part="all"):
    """dense_forward(A_prev, W, b) = A_prev @ W.T + b, shape (N, n_out)."""
    rng = rng_for("dense_forward")

    def run(N, n_in, n_out, shape_only):
        A_prev, W, b = _layer(rng, N, n_in, n_out)
        args = {"A_prev": A_prev, "W": W, "b": b}

        def probe():
            A2, W2, b2 = _layer(rng, 4, 3, 3)
            got = call(dense_forward, "dense_forward", {"A_prev": A2, "W": W2, "b": b2})
            _close("dense_forward", got, R.dense_forward(A2, W2, b2),
                         mistakes=_dense_forward_mistakes(A2, W2, b2))

        Z = _call(dense_forward, "dense_forward", args, probe)
        label = (f"dense_forward(A_prev, W, b) for A_prev of shape {shape_str((N, n_in))}, "
                 f"W of shape {shape_str((n_out, n_in))}")
        if shape_only:
            _expect_shape(label, Z, (N, n_out), {(n_out, N): "you returned Zᵀ: W @ A_prev.T "
                                                 "has one column per sample; rows are samples, "
                                                 "so Z = A_prev @ W.T + b"})
        else:
            _close(label, Z, R.dense_forward(A_prev, W, b),
                         mistakes=_dense_forward_mistakes(A_prev, W, b))

    def shape():
        for N, n_in, n_out in [(1, 3, 2), _sizes(rng), (50, 4, 1)]:
            run(N, n_in, n_out, shape_only=True)

    def values():
        for N, n_in, n_out in [(1, 3, 2), _sizes(rng), _sizes(rng, square=True), (50, 1, 6)]:
            run(N, n_in, n_out, shape_only=False)

    run_parts(part, {"shape": shape, "values": values})


# ---------------------------------------------------------------------------
# dense_backward
# ---------------------------------------------------------------------------

_NAMES_DENSE = ("dA_prev", "dW", "db")


def _dense_backward_mistakes(dZ, A_prev, W):
    """{name: {description: value}} for each of dA_prev, dW, db."""
    N = dZ.shape[0]
    dA = {}
    if W.shape[0] == W.shape[1]:
        dA["dA_prev = dZ @ W.T is the wrong product: dA_prev[n, k] = Σ_j dZ[n, j] W[j, k], "
           "so dA_prev = dZ @ W, shape (N, n_out) @ (n_out, n_in) = (N, n_in)"] = dZ @ W.T
    dA["you divided dA_prev by N: the 1/N of the mean is already inside dZ"] = dZ @ W / N
    dW = {
        known_mistake("transposed-dW"): A_prev.T @ dZ,
        "the 1/N is applied twice: dZ already holds the 1/N of the batch mean, so "
        "dW = dZ.T @ A_prev is a plain sum over the samples (no mean)": dZ.T @ A_prev / N,
        "dW was overwritten instead of accumulated: it holds only the LAST sample's outer "
        "product dZ[-1] A_prev[-1]ᵀ (a loop over samples with `=` instead of `+=`); "
        "dW = dZ.T @ A_prev sums all of them": np.outer(dZ[-1], A_prev[-1]),
        "dW holds only the FIRST sample's outer product; dW = dZ.T @ A_prev sums the "
        "outer products of all samples": np.outer(dZ[0], A_prev[0]),
    }
    db = {
        "the 1/N is applied twice: dZ already holds the 1/N of the batch mean, so "
        "db = dZ.sum(axis=0), not dZ.mean(axis=0)": dZ.sum(axis=0) / N,
        known_mistake("db-last-sample"): dZ[-1],
        "db holds only the first sample's row dZ[0]; db = dZ.sum(axis=0)": dZ[0],
    }
    return {"dA_prev": dA, "dW": dW, "db": db}


def check_dense_backward(dense_backward, part="all"):
    """dense_backward(dZ, A_prev, W) -> (dZ @ W, dZ.T @ A_prev, dZ.sum(0))."""
    rng = rng_for("dense_backward")

    def probe():
        N, n = 4, 3
        A_prev, W, _ = _layer(rng, N, n, n)
        dZ = rng.normal(size=(N, n))
        out = expect_tuple(call(dense_backward, "dense_backward",
                                {"dZ": dZ, "A_prev": A_prev, "W": W}),
                           "dense_backward", _NAMES_DENSE)
        mistakes = _dense_backward_mistakes(dZ, A_prev, W)
        for name, got, exp in zip(_NAMES_DENSE, out, R.dense_backward(dZ, A_prev, W),
                                  strict=True):
            _close(name, got, exp, mistakes=mistakes[name])

    def run(N, n_in, n_out, shape_only):
        A_prev, W, _ = _layer(rng, N, n_in, n_out)
        dZ = rng.normal(0.0, 1.0, size=(N, n_out)) / N  # like a real dZ: carries the 1/N
        args = {"dZ": dZ, "A_prev": A_prev, "W": W}
        out = expect_tuple(_call(dense_backward, "dense_backward", args, probe),
                           "dense_backward", _NAMES_DENSE)
        where = (f"dense_backward(dZ, A_prev, W) for dZ of shape {shape_str((N, n_out))}, "
                 f"A_prev of shape {shape_str((N, n_in))}, W of shape {shape_str((n_out, n_in))}")
        expected = R.dense_backward(dZ, A_prev, W)
        want = [e.shape for e in expected]
        got_shapes = [np.shape(o) for o in out]
        if shape_only:
            if got_shapes != want and sorted(map(str, got_shapes)) == sorted(map(str, want)):
                raise AssertionError(
                    f"{where}: the results come in the wrong order: expected (dA_prev, dW, db) "
                    f"with shapes {', '.join(map(shape_str, want))}, got shapes "
                    f"{', '.join(map(shape_str, got_shapes))}.")
            known = {
                "dA_prev": {(N, n_out): "dA_prev must have the shape of A_prev, (N, n_in): "
                                        "dA_prev = dZ @ W"},
                "dW": {(n_in, n_out): known_mistake("transposed-dW")},
                "db": {(1, n_out): "db has shape (1, n_out): sum without keepdims, "
                                   "db = dZ.sum(axis=0), shape (n_out,) like b",
                       (N,): "db was summed over the wrong axis: sum over the samples "
                             "(axis=0), giving one entry per neuron"},
            }
            for name, got, shape in zip(_NAMES_DENSE, out, want, strict=True):
                _expect_shape(f"{where}: {name}", got, shape, known[name])
            return
        mistakes = _dense_backward_mistakes(dZ, A_prev, W)
        for name, got, exp in zip(_NAMES_DENSE, out, expected, strict=True):
            _close(f"{where}: {name}", got, exp, mistakes=mistakes[name])

    def shapes():
        for N, n_in, n_out in [(1, 3, 2), _sizes(rng), _sizes(rng)]:
            run(N, n_in, n_out, shape_only=True)

    def single():
        # One sample: dW is the outer product δ aᵀ and db is δ.
        for n_in, n_out in [(3, 2), (1, 5), tuple(int(v) for v in rng.integers(2, 7, size=2))]:
            run(1, n_in, n_out, shape_only=False)

    def batch():
        # Many samples: dW and db are SUMS over the rows of dZ.
        for N, n_in, n_out in [_sizes(rng), _sizes(rng, square=True), (64, 5, 3)]:
            run(max(N, 2), n_in, n_out, shape_only=False)

    run_parts(part, {"shapes": shapes, "single": single, "batch": batch})


# ---------------------------------------------------------------------------
# backprop
# ---------------------------------------------------------------------------

def _act_backward(name, Z, A, dA, at_A=(), skip=False, relu_at_zero=0.0, softmax_diag=False):
    """dZ from dA through A = act(Z), correctly or with a known mistake.

    at_A: names of the activations whose derivative is (wrongly) evaluated at the
    activation A instead of at Z; skip: the activation derivative is left out (dZ = dA);
    relu_at_zero: the value used for ReLU'(0); softmax_diag: softmax treated as an
    elementwise function, dZ = dA ⊙ s(1 - s).
    """
    if skip:
        return dA
    at = A if name in at_A else Z
    if name == "sigmoid":
        s = R.sigmoid(at)
        return dA * s * (1.0 - s)
    if name == "relu":
        return dA * np.where(at > 0, 1.0, np.where(at == 0, relu_at_zero, 0.0))
    if name == "tanh":
        return dA * (1.0 - np.tanh(at) ** 2)
    if name == "softmax":
        if softmax_diag:
            return dA * A * (1.0 - A)
        return R.softmax_backward(at, dA)
    return dA


def _variant(params, X, Y, acts, loss, *, at_A=(), skip_hidden=False, skip_out=False,
             out="right", scale=1.0, relu_at_zero=0.0, softmax_diag=False):
    """Gradients of a backprop with one known mistake (all defaults: the right ones)."""
    cache = R.mlp_forward(params, X, acts)
    Z, A = cache[-1]
    N = X.shape[0]
    if loss == "cross_entropy":
        P = _targets_probabilities(Y, N, Z.shape[1])
        if out == "ce_on_A":
            dZ = R.softmax_backward(Z, R.softmax_cross_entropy_grad(A, P))
        else:
            dZ = (R.softmax(Z) - P) / N
            if out == "extra_jacobian":
                dZ = R.softmax_backward(Z, dZ)
    elif loss == "bce":
        dZ = (A - Y) / N
        if out == "extra_prime":
            dZ = dZ * A * (1.0 - A)
    else:
        dZ = _act_backward(acts[-1], Z, A, (A - Y) / N, at_A, skip_out, relu_at_zero,
                           softmax_diag)
    dZ = dZ * scale
    grads = [None] * len(params)
    for k in range(len(params) - 1, -1, -1):
        W = params[k][0]
        Z_prev, A_prev = cache[k]
        grads[k] = (dZ.T @ A_prev, dZ.sum(axis=0))
        if k > 0:
            dZ = _act_backward(acts[k - 1], Z_prev, A_prev, dZ @ W, at_A, skip_hidden,
                               relu_at_zero, softmax_diag)
    return grads


def _targets_probabilities(Y, N, C):
    Y = np.asarray(Y)
    if Y.ndim == 1:
        P = np.zeros((N, C))
        P[np.arange(N), Y.astype(int)] = 1.0
        return P
    return np.asarray(Y, dtype=np.float64)


def _whole_mistakes(params, X, Y, acts, loss):
    """{description: grads} for mistakes that change the gradients of the whole network."""
    N = X.shape[0]
    v = {}

    def add(desc, **kw):
        v[desc] = _variant(params, X, Y, acts, loss, **kw)

    if N > 1:
        add("the 1/N of the batch mean is missing: J is the MEAN of the N samples' losses, "
            "so dZ of the output layer carries a factor 1/N (every gradient here is N times "
            "too large)", scale=N)
        add("the 1/N is applied twice: dZ of the output layer already holds the 1/N of the "
            "mean, so dW = dZ.T @ A_prev and db = dZ.sum(0) are plain sums (every gradient "
            "here is N times too small)", scale=1.0 / N)
        last = R.backprop(params, X[-1:], np.asarray(Y)[-1:], acts, loss)[1]
        v["gradients were overwritten instead of accumulated: your gradients are those of the "
          "LAST sample alone (a loop over samples with `=` instead of `+=`, or db = dZ[-1]); "
          "dW = dZ.T @ A_prev and db = dZ.sum(0) add up every sample's share"] = \
            [(dW / N, db / N) for dW, db in last]
        v["gradients were overwritten instead of accumulated: your gradients are those of the "
          "LAST sample alone, without the 1/N (a loop over samples with `=` instead of `+=`)"] \
            = last
    prime_at_a = ("the derivative is evaluated at the activation A instead of the "
                  "pre-activation Z: ")
    add(prime_at_a + "σ'(Z) = σ(Z)(1 - σ(Z)) = A(1 - A), whereas σ'(A) = σ(A)(1 - σ(A)) is "
        "a different number", at_A=("sigmoid",))
    add(prime_at_a + "tanh'(Z) = 1 - tanh(Z)² = 1 - A², whereas tanh'(A) = 1 - tanh(A)² is "
        "a different number", at_A=("tanh",))
    add(prime_at_a + "σ'(Z) = A(1 - A) and tanh'(Z) = 1 - A², not σ'(A) and tanh'(A)",
        at_A=("sigmoid", "tanh"))
    add("the hidden layers' activation derivative is missing: BP2 is "
        "dZ^l = (dZ^{l+1} @ W^{l+1}) ⊙ act'(Z^l); you used dZ^l = dZ^{l+1} @ W^{l+1}",
        skip_hidden=True)
    if loss == "mse":
        add("the activation derivative is missing everywhere (also in the output layer): "
            "dZ = dA ⊙ act'(Z), not dZ = dA", skip_hidden=True, skip_out=True)
        add("the output layer's activation derivative is missing: for MSE, BP1 is "
            "dZ^L = (A - Y)/N ⊙ act'(Z^L)", skip_out=True)
    if "softmax" in (acts if loss == "mse" else acts[:-1]):
        add("softmax was treated as an elementwise function (dZ = dA ⊙ s(1 - s)): its outputs "
            "are coupled, so dZ needs the whole Jacobian, dZ = s ⊙ (dA - Σ_j dA_j s_j) "
            "(the vector-Jacobian product of lesson 03)", softmax_diag=True)
    if loss == "bce":
        add("for sigmoid + BCE the output error is already dZ = (A - Y)/N: you multiplied it by "
            "σ'(Z) = A(1 - A) once more", out="extra_prime")
    if loss == "cross_entropy":
        add("for softmax + cross-entropy the output error is already dZ = (softmax(Z) - Y)/N: "
            "you pushed it through the softmax Jacobian once more", out="extra_jacobian")
        if acts[-1] == "softmax":
            add("cross_entropy takes the last layer's PRE-activations Z (the logits) and applies "
                "softmax itself; you applied it to A = softmax(Z), i.e. softmax twice",
                out="ce_on_A")
    add("every gradient has the wrong sign: dZ of the output layer is (A - Y)/N "
        "(prediction minus target), not (Y - A)/N", scale=-1.0)
    if any(a == "relu" for a in acts):
        add("ReLU'(0) must be 0 (the course convention, and PyTorch's); you used 1 at Z = 0",
            relu_at_zero=1.0)
    if len(params) > 1:
        right = R.backprop(params, X, Y, acts, loss)[1]
        v["you returned the gradients in backward order (output layer first): grads[k] must "
          "be the pair for params[k], so reverse the list (or fill grads[k] by index)"] = \
            right[::-1]
    return v


def _loss_mistakes(params, X, Y, acts, loss, value):
    N = X.shape[0]
    m = {}
    if N > 1:
        m["you summed the losses over the samples instead of taking the mean"] = value * N
    if loss == "mse":
        m["the ½ of the MSE is missing: J = (1/N) Σ_n ½ Σ_j (a_nj - y_nj)²"] = 2 * value
    n_out = params[-1][0].shape[0]
    if n_out > 1 and loss != "cross_entropy":
        m["you averaged over all N·n_out entries: J sums over the outputs and averages over "
          "the N samples only"] = value / n_out
    if loss == "cross_entropy" and acts[-1] == "softmax":
        A = R.mlp_forward(params, X, acts)[-1][1]
        m["cross_entropy takes the logits Z of the last layer; you applied it to "
          "A = softmax(Z) (softmax twice)"] = R.cross_entropy(
            A, _targets_probabilities(Y, N, A.shape[1]))
    m["the loss has the wrong sign"] = -value
    return m


def _describe_net(params, acts, loss, N):
    sizes = [params[0][0].shape[1]] + [W.shape[0] for W, _ in params]
    return (f"backprop on a {len(params)}-layer network of sizes {'-'.join(map(str, sizes))} "
            f"with activations {tuple(acts)}, loss {loss!r} and a batch of N={N}")


def _deep_copy_params(params):
    return [(np.array(W, copy=True), np.array(b, copy=True)) for W, b in params]


def _call_backprop(backprop, params, X, Y, acts, loss, check_params=False):
    """Call the student's backprop on copies of params (the reference keeps the originals).

    check_params: fail if the copies were changed in place. Only the "shapes" part
    asks, so that this one mistake costs that part's point and no other.
    """
    mine = _deep_copy_params(params)
    Y_in = Y.copy()
    out = call(backprop, "backprop", {"params": mine, "X": X.copy(), "Y": Y_in,
                                      "activations": tuple(acts), "loss": loss})
    if check_params:
        _expect_unchanged(f"{_describe_net(params, acts, loss, X.shape[0])}: backprop",
                          "params", params, mine,
                          "backprop must only read the parameters; `W -= ...` or "
                          "`b += ...` writes into the caller's arrays")
    return out


def _expect_unchanged(where, arg, before, after, why):
    """Rule: a graded function leaves its list of (X, x) pairs unchanged; say which entry moved."""
    for k, ((W0, b0), (W, b)) in enumerate(zip(before, after, strict=True)):
        for name, x0, x in (("W", W0, W), ("b", b0, b)):
            x = np.asarray(x)
            if x.shape == x0.shape and np.array_equal(x, x0):
                continue
            if x.shape != x0.shape:
                got = f"shape {shape_str(x.shape)} instead of {shape_str(x0.shape)}"
            else:
                idx = tuple(int(i) for i in np.argwhere(x != x0)[0])
                got = (f"entry {list(idx)} changed: expected {fmt(x0[idx])} (its value before "
                       f"the call), got {fmt(x[idx])}")
            label = name if arg == "params" else "d" + name
            raise AssertionError(
                f"{where} changed its argument {arg} in place, which the rules forbid (the "
                f"arguments must be left unchanged): layer {k + 1}'s {label}, {got}. {why}.")


def _check_structure(out, params, where):
    """(loss_value, grads) with grads a list of L pairs (dW, db) of the right shapes."""
    loss_value, grads = expect_tuple(out, "backprop", ("loss_value", "grads"))
    arr = np.asarray(loss_value) if isinstance(loss_value, (int, float, np.generic,
                                                           np.ndarray)) else None
    if arr is None or arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number):
        got = (f"an array of shape {shape_str(arr.shape)}" if arr is not None
               else type(loss_value).__name__)
        raise AssertionError(f"{where}: the loss value must be a single number (a float), "
                             f"got {got}.")
    L = len(params)
    if not isinstance(grads, (list, tuple)) or len(grads) != L:
        got = (f"a {type(grads).__name__} of length {len(grads)}"
               if isinstance(grads, (list, tuple)) else type(grads).__name__)
        raise AssertionError(f"{where}: grads must be a list of {L} pairs (dW, db), one per "
                             f"layer like params; got {got}.")
    shapes = [(W.shape, b.shape) for W, b in params]
    got_shapes = []
    for k, pair in enumerate(grads):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise AssertionError(f"{where}: grads[{k}] must be a pair (dW, db) for layer "
                                 f"{k + 1}; got {type(pair).__name__}.")
        got_shapes.append((np.shape(pair[0]), np.shape(pair[1])))
    if got_shapes != shapes and got_shapes[::-1] == shapes:
        raise AssertionError(f"{where}: grads are in backward order (output layer first): "
                             "grads[k] must be the pair (dW, db) for params[k].")
    for k, (pair, (sW, sb)) in enumerate(zip(grads, shapes, strict=True)):
        _expect_shape(f"{where}: layer {k + 1}'s dW = grads[{k}][0]", pair[0], sW,
                      {sW[::-1]: known_mistake("transposed-dW")}
                      if sW[0] != sW[1] else None)
        _expect_shape(f"{where}: layer {k + 1}'s db = grads[{k}][1]", pair[1], sb,
                      {(1, sb[0]): "db has shape (1, n_out): use dZ.sum(axis=0), no keepdims"})
    return loss_value, grads


def _match_all(grads, variant):
    for (gW, gb), (vW, vb) in zip(grads, variant, strict=True):
        for g, v in ((gW, vW), (gb, vb)):
            try:
                g = np.asarray(g, dtype=np.float64)
            except (TypeError, ValueError):
                return False
            if g.shape != v.shape or not np.allclose(g, v, rtol=1e-6, atol=1e-10):
                return False
    return True


def _compare_backprop(out, params, X, Y, acts, loss, extra_loss_mistakes=None):
    """Compare a student's (loss_value, grads) with the reference; explain the first error."""
    N = X.shape[0]
    where = _describe_net(params, acts, loss, N)
    loss_value, grads = _check_structure(out, params, where)
    ref_loss, ref_grads = R.backprop(params, X, Y, acts, loss)
    L = len(params)

    # Everything that is compared, in backward order.
    items = [("the loss value", loss_value, ref_loss, None)]
    for k in range(L - 1, -1, -1):
        tag = " (the output layer)" if k == L - 1 else ""
        items.append((f"layer {k + 1}{tag}: dW = grads[{k}][0]", grads[k][0], ref_grads[k][0],
                      (k, 0)))
        items.append((f"layer {k + 1}{tag}: db = grads[{k}][1]", grads[k][1], ref_grads[k][1],
                      (k, 1)))
    ok = {}
    for _, got, exp, key in items:
        try:
            g = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            ok[key] = False
            continue
        ok[key] = bool(g.shape == np.shape(exp) and np.all(np.isfinite(g))
                       and np.allclose(g, exp, rtol=1e-7, atol=1e-10))
    if all(ok.values()):
        return

    whole = {}
    if any(not ok[(k, i)] for k in range(L) for i in (0, 1)):
        whole = _whole_mistakes(params, X, Y, acts, loss)
    named = next((d for d, v in whole.items() if _match_all(grads, v)
                  and not _match_all(ref_grads, v)), None)

    for label, got, exp, key in items:
        if ok[key]:
            continue
        if key is None:
            mistakes = {**_loss_mistakes(params, X, Y, acts, loss, ref_loss),
                        **(extra_loss_mistakes or {})}
        elif named:
            mistakes = None
        else:
            k, i = key
            mistakes = {d: v[k][i] for d, v in whole.items()}
            if i == 0 and params[k][0].shape[0] == params[k][0].shape[1]:
                mistakes = {"dW is transposed: you computed A_prev.T @ dZ; dW = dZ.T @ A_prev":
                            exp.T, **mistakes}
        try:
            _close(label, got, exp, mistakes=mistakes, check_dtype=key is not None)
        except AssertionError as exc:
            msg = f"{where}:\n  {exc}"
        else:  # only the shape/finiteness test above failed; make it explicit
            msg = f"{where}:\n  {label} is wrong."
        if named:  # more specific than where to look
            msg += f"\n  All your gradients match a known mistake: {named}."
        else:
            msg += _where_hint(key, ok, L, acts)
        raise AssertionError(msg)


def _where_hint(key, ok, L, acts):
    if key is None:
        grads_ok = all(ok[(k, i)] for k in range(L) for i in (0, 1))
        return ("\n  Your gradients are right, so only the formula of the loss value is off."
                if grads_ok else "")
    k, i = key
    if k == L - 1:
        if i == 1 or not ok[(k, 1)]:
            return ("\n  Where to look: the output layer is already wrong, so start with its "
                    "error dZ^L (BP1): the derivative of the loss, the 1/N of the mean and the "
                    "output activation; then db = dZ.sum(0) (BP3).")
        return ("\n  Where to look: db of the output layer is right, so its dZ is right; "
                "dW = dZ.T @ A_prev (BP4) is where it goes wrong.")
    if i == 0 and ok[(k, 1)]:
        return (f"\n  Where to look: db of layer {k + 1} is right, so its dZ is right; "
                "dW = dZ.T @ A_prev (BP4) is where it goes wrong.")
    return (f"\n  Where to look: layer {k + 2} is right, so the mistake is in moving the error "
            f"back from layer {k + 2} to layer {k + 1} (BP2): "
            f"dZ^{k + 1} = (dZ^{k + 2} @ W^{k + 2}) ⊙ act'(Z^{k + 1}) with act = "
            f"{acts[k]!r}.")


def _random_net(rng, last_act, loss, hidden, N, n_out=None):
    """A random network whose hidden layers use the activations in ``hidden``."""
    depth = len(hidden) + 1
    sizes = [int(rng.integers(1, 7)) for _ in range(depth)]
    if n_out is None:
        low = 2 if (last_act == "softmax" or loss == "cross_entropy") else 1
        n_out = int(rng.integers(low, 7))
    sizes.append(n_out)
    params = []
    for n_in, n_o in zip(sizes[:-1], sizes[1:], strict=True):
        params.append((rng.normal(0.0, 1.2 / np.sqrt(n_in), size=(n_o, n_in)),
                       rng.normal(0.0, 0.5, size=(n_o,))))
    X = rng.normal(0.0, 1.0, size=(N, sizes[0]))
    if loss == "cross_entropy":
        Y = np.eye(n_out)[rng.integers(0, n_out, size=N)]
    elif loss == "bce":
        Y = rng.integers(0, 2, size=(N, n_out)).astype(np.float64)
    else:
        Y = rng.normal(0.0, 1.0, size=(N, n_out))
        if last_act in ("sigmoid", "softmax"):
            Y = rng.uniform(0.0, 1.0, size=(N, n_out))
    return params, X, Y, (*hidden, last_act)


def _hidden_cycle():
    """Hidden-layer activation lists of depth 0, 1, 2 that between them use every activation."""
    return [(), ("tanh",), ("sigmoid", "relu"), ("relu",), ("identity", "sigmoid"),
            ("softmax",), ("tanh", "relu"), ("sigmoid",)]


def _run_backprop(backprop, rng, last_act, loss, hidden, N, n_out=None):
    params, X, Y, acts = _random_net(rng, last_act, loss, hidden, N, n_out)
    out = _call_backprop(backprop, params, X, Y, acts, loss)
    _compare_backprop(out, params, X, Y, acts, loss)


SATURATION_RULE = ("the rule for losses: they must not overflow for any finite logits; compute "
                   "BCE from the logits, np.logaddexp(0, z) - y*z, and cross-entropy from the "
                   "log-softmax, Z - max - log(sum(exp(Z - max)))")


def _saturated_net(rng, last_act, loss, N):
    """A 2-layer network whose output logits are hundreds (up to about ±1000) in size.

    The targets are chosen so that some samples sit on the wrong side of a saturated
    output: the exact loss is large but finite (about the size of the logit), while
    log(sigmoid(z)), log(1 - sigmoid(z)) or log(softmax(z)) rounds to log(0) = -inf.
    """
    n_in, n_h = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    n_out = 2 if loss == "bce" else int(rng.integers(3, 5))
    W1 = rng.normal(0.0, 1.0, size=(n_h, n_in))
    b1 = rng.normal(0.0, 0.5, size=n_h)
    W2 = rng.normal(0.0, 1.0, size=(n_out, n_h))
    if loss == "bce":   # 1 - sigmoid(z) rounds to 0 for z > 37, sigmoid(z) for z < -745
        b2 = np.array([rng.uniform(60.0, 900.0), -rng.uniform(800.0, 950.0)])
    else:               # class logits spread over [-500, 500]: exp(-1000) rounds to 0
        b2 = rng.permutation(np.linspace(-500.0, 500.0, n_out))
    params = [(W1, b1), (W2, b2)]
    X = rng.normal(0.0, 1.0, size=(N, n_in))
    Z = R.mlp_forward(params, X, ("tanh", last_act))[-1][0]
    if loss == "bce":
        Y = (Z < 0).astype(np.float64)   # every target on the wrong side of its logit
        Y[0] = (Z[0] > 0)                # ... but the first sample: right and saturated
    else:
        Y = np.eye(n_out)[Z.argmin(axis=1)]      # the least likely class ...
        Y[0] = np.eye(n_out)[Z[0].argmax()]      # ... but the first sample: the likeliest
    return params, X, Y, ("tanh", last_act)


def _is_close(got, expected):
    try:
        g = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(g.shape == np.shape(expected) and np.all(np.isfinite(g))
                and np.allclose(g, expected, rtol=1e-7, atol=1e-10))


def _compare_saturated(out, out_tame, params, tame, X, Y, acts, loss):
    """The overflow rule, and nothing else: on saturated logits every result must be finite,
    and each result the student gets right on the tame network must be right here too."""
    N = X.shape[0]
    where = _describe_net(params, acts, loss, N)
    loss_value, grads = _check_structure(out, params, where)
    tame_value, tame_grads = _check_structure(out_tame, tame, where)
    ref_value, ref_grads = R.backprop(params, X, Y, acts, loss)
    ref_tame_value, ref_tame_grads = R.backprop(tame, X, Y, acts, loss)
    Z = R.mlp_forward(params, X, acts)[-1][0]
    L = len(params)
    items = [("the loss value", loss_value, ref_value, tame_value, ref_tame_value)]
    for k in range(L - 1, -1, -1):
        for i, name in ((0, "dW"), (1, "db")):
            items.append((f"layer {k + 1}: {name} = grads[{k}][{i}]", grads[k][i],
                          ref_grads[k][i], tame_grads[k][i], ref_tame_grads[k][i]))
    for label, got, exp, got_tame, exp_tame in items:
        right_when_tame = _is_close(got_tame, exp_tame)
        arr = np.asarray(got, dtype=np.float64)
        if right_when_tame:
            if _is_close(got, exp):
                continue
            mistakes = (_clipped_losses(params, X, Y, acts, loss)
                        if label == "the loss value" else None)
            if arr.shape == np.shape(exp) and not np.all(np.isfinite(arr)):
                problem = (f"{label}: expected {fmt(exp)}, got {fmt(arr)} (NaN or inf where "
                           "the exact values are finite: an overflow, or log(0)).")
            else:
                try:
                    _close(label, got, exp, mistakes=mistakes, check_dtype=False)
                    problem = f"{label}: expected {fmt(exp)}, got {fmt(arr)}."
                except AssertionError as exc:
                    problem = str(exc)
            note = ("It is right on the same network with small logits, so the saturated "
                    "outputs are what breaks it.")
        elif np.all(np.isfinite(arr)):
            continue    # wrong for another reason, which other cells grade; finite here
        else:
            problem = (f"{label}: expected finite values (exactly {fmt(exp)}), got "
                       f"{fmt(arr)}.")
            note = "(Its values are also wrong on small logits, which other cells grade.)"
        raise AssertionError(
            f"{where}, whose output logits are saturated (|Z| up to {np.abs(Z).max():.0f}):\n"
            f"  {problem}\n  {note}\n  This cell grades {SATURATION_RULE}.")


def _clipped_losses(params, X, Y, acts, loss):
    """{description: value} for losses computed from probabilities clipped to [eps, 1 - eps]."""
    Z, A = R.mlp_forward(params, X, acts)[-1]
    N = X.shape[0]
    P = A if loss == "bce" else R.softmax(Z)
    out = {}
    for eps in (1e-15, 1e-12, 1e-10, 1e-9, 1e-8, 1e-7):
        Pc = np.clip(P, eps, 1.0 - eps)
        if loss == "bce":
            v = -np.sum(Y * np.log(Pc) + (1 - Y) * np.log(1 - Pc)) / N
        else:
            v = -np.sum(Y * np.log(Pc)) / N
        out[f"you clipped the probabilities to [{eps:g}, 1 - {eps:g}] before the log: that "
            "keeps the loss finite but changes its value where the output saturates"] = v
    return out


def check_backprop(backprop, part="all"):
    """backprop(params, X, Y, activations, loss) -> (loss_value, grads), any depth."""
    rng = rng_for("backprop")
    hidden = _hidden_cycle()

    def shapes():
        for i, (last, loss) in enumerate([("identity", "mse"), ("sigmoid", "bce"),
                                          ("softmax", "cross_entropy"), ("tanh", "mse")]):
            params, X, Y, acts = _random_net(rng, last, loss, hidden[(2 * i + 2) % 8],
                                             [1, 6][i % 2])
            out = _call_backprop(backprop, params, X, Y, acts, loss, check_params=True)
            _check_structure(out, params, _describe_net(params, acts, loss, X.shape[0]))

    def mse():
        # Every output activation with MSE; every activation appears in a hidden layer;
        # depths 1 to 3; batches of 1 and of many.
        for i, last in enumerate(ACTIVATIONS):
            for j, N in enumerate((1, int(rng.integers(3, 12)))):
                _run_backprop(backprop, rng, last, "mse", hidden[(2 * i + j) % 8], N)

    def classification():
        pairs = [("sigmoid", "bce"), ("softmax", "cross_entropy"), ("identity", "cross_entropy")]
        for i, (last, loss) in enumerate(pairs):
            for j, N in enumerate((1, int(rng.integers(3, 12)), 40)):
                n_out = 1 if (loss == "bce" and j == 2) else None
                _run_backprop(backprop, rng, last, loss, hidden[(3 * i + j + 1) % 8], N, n_out)

    def edge():
        # Seed 004: a dead ReLU unit and Z2[0, 0] = 0 exactly (ReLU'(0) = 0).
        net = _seed004()
        out = _call_backprop(backprop, net["params"], net["X"], net["Y"], net["acts"], "bce")
        _compare_backprop(out, net["params"], net["X"], net["Y"], net["acts"], "bce")
        # Integer weights and inputs: many pre-activations exactly 0.
        for last, loss in (("identity", "mse"), ("sigmoid", "bce")):
            sizes = [3, 5, 4, 2]
            params = [(rng.integers(-1, 2, size=(o, i)).astype(np.float64),
                       rng.integers(-1, 2, size=o).astype(np.float64))
                      for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
            X = rng.integers(-1, 2, size=(8, 3)).astype(np.float64)
            Y = (rng.integers(0, 2, size=(8, 2)) if loss == "bce"
                 else rng.normal(size=(8, 2))).astype(np.float64)
            acts = ("relu", "relu", last)
            out = _call_backprop(backprop, params, X, Y, acts, loss)
            _compare_backprop(out, params, X, Y, acts, loss)
        # Integer class labels for cross_entropy: Y of shape (N,). The same network is
        # tried with one-hot rows first, so that a mistake unrelated to the labels (in a
        # tanh layer, say) is reported as itself, without a note about labels.
        for last in ("softmax", "identity"):
            params, X, P, acts = _random_net(rng, last, "cross_entropy", ("tanh",), 7, 4)
            labels = P.argmax(axis=1)
            out = _call_backprop(backprop, params, X, P, acts, "cross_entropy")
            _compare_backprop(out, params, X, P, acts, "cross_entropy")
            try:
                out = _call_backprop(backprop, params, X, labels, acts, "cross_entropy")
                _compare_backprop(out, params, X, labels, acts, "cross_entropy")
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}\n  With one-hot rows Y = np.eye({P.shape[1]})[labels] the same "
                    f"network gives the right result; here Y holds integer class labels of "
                    f"shape (N,) = {shape_str(labels.shape)}, e.g. {fmt(labels[:4])}: with "
                    "loss 'cross_entropy', turn them into one-hot rows first, e.g. "
                    "Y = np.eye(C)[Y].") from None

    def saturated():
        # Rule: the loss must not overflow. Output logits of hundreds; the exact loss and
        # gradients are finite, a loss written as log(sigmoid) or log(softmax) is inf or NaN.
        for last, loss in (("sigmoid", "bce"), ("softmax", "cross_entropy"),
                           ("identity", "cross_entropy")):
            params, X, Y, acts = _saturated_net(rng, last, loss, 5)
            # The same network with its output layer scaled down to logits of size 1:
            # whatever the student gets right there must stay right when saturated.
            tame = [params[0], (params[1][0] / 500.0, params[1][1] / 500.0)]
            out = _call_backprop(backprop, params, X, Y, acts, loss)
            out_tame = _call_backprop(backprop, tame, X, Y, acts, loss)
            _compare_saturated(out, out_tame, params, tame, X, Y, acts, loss)

    run_parts(part, {"shapes": shapes, "mse": mse, "classification": classification,
                     "edge": edge, "saturated": saturated})


def _seed004():
    from .. import nets
    net = nets.seed004()
    return {"params": net.params, "X": net.X, "Y": net.Y, "acts": net.activations}


# ---------------------------------------------------------------------------
# sgd_step
# ---------------------------------------------------------------------------

def _random_params_grads(rng):
    depth = int(rng.integers(1, 4))
    sizes = [int(v) for v in rng.integers(1, 6, size=depth + 1)]
    params, grads = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        params.append((rng.normal(size=(n_out, n_in)), rng.normal(size=(n_out,))))
        grads.append((rng.normal(size=(n_out, n_in)), rng.normal(size=(n_out,))))
    return params, grads


def check_sgd_step(sgd_step, part="all"):
    """sgd_step(params, grads, lr) -> new list of (W - lr dW, b - lr db); inputs unchanged."""
    rng = rng_for("sgd_step")

    def run():
        params, grads = _random_params_grads(rng)
        lr = float(rng.choice([0.01, 0.1, 0.5, 2.0]))
        p_in, g_in = _deep_copy_params(params), _deep_copy_params(grads)
        out = call(sgd_step, "sgd_step", {"params": p_in, "grads": g_in, "lr": lr})
        return params, grads, lr, p_in, g_in, out

    def values():
        for _ in range(3):
            params, grads, lr, _, _, out = run()
            where = f"sgd_step(params, grads, lr={lr}) for {len(params)} layer(s)"
            if not isinstance(out, (list, tuple)) or len(out) != len(params):
                got = (f"a {type(out).__name__} of length {len(out)}"
                       if isinstance(out, (list, tuple)) else type(out).__name__)
                raise AssertionError(f"{where}: expected a list of {len(params)} pairs (W, b), "
                                     f"like params; got {got}.")
            expected = R.sgd_step(params, grads, lr)
            for k, (pair, (eW, eb), (W, b), (dW, db)) in enumerate(
                    zip(out, expected, params, grads, strict=True)):
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise AssertionError(f"{where}: element {k} must be a pair (W, b), "
                                         f"got {type(pair).__name__}.")
                for name, got, exp, x, dx in (("W", pair[0], eW, W, dW),
                                              ("b", pair[1], eb, b, db)):
                    _close(f"{where}: layer {k + 1}'s new {name}", got, exp, mistakes={
                        known_mistake("plus-update"): x + lr * dx,
                        f"the learning rate is missing: {name} - lr·d{name}": x - dx,
                        f"{name} was not updated": x,
                        f"you returned the step lr·d{name} instead of the new {name}": lr * dx,
                        f"you returned -lr·d{name} instead of {name} - lr·d{name}": -lr * dx,
                    })

    def inputs():
        # Rule: sgd_step returns new arrays and leaves params and grads unchanged.
        for _ in range(2):
            params, grads, lr, p_in, g_in, _ = run()
            where = f"sgd_step(params, grads, lr={lr})"
            _expect_unchanged(where, "params", params, p_in,
                              "`W -= lr * dW` writes into the caller's array; build new "
                              "arrays, `W - lr * dW`, and return them in a new list")
            _expect_unchanged(where, "grads", grads, g_in, "sgd_step must only read them")

    run_parts(part, {"values": values, "inputs": inputs})


# ===========================================================================
# The capstone: layers with caches, a modular network, mini-batch SGD, digits
# ===========================================================================
# Each layer's backward is graded on its own: the judge builds the cache in the form the
# lesson fixes ((x, W, b) for affine, x for ReLU, s = σ(x) for sigmoid), so a mistake in
# a forward costs nothing here. Its result is compared with the reference and, when it
# differs, the message also gives a gradient check of the layer's forward (central
# differences, computed here): two independent witnesses of the right answer.

from .. import data as _data  # noqa: E402 - the capstone's section of this module
from .. import gradcheck as _gradcheck  # noqa: E402
from ..reference import mlp as RM  # noqa: E402

#: what the judge asks of the capstone's trained network, on data it never trained on
VAL_LINE = 0.95  # on the validation set the student's function receives (stated in the text)
HELD_OUT_LINE = 0.93  # on the judge's held-out digits (never inside the sandbox)


def _fd_note(forward, x, dout, got_shape):
    """A gradient check of ``forward`` at x along dout, as a sentence (or '')."""
    try:
        numeric = _gradcheck.numerical_gradient(lambda v: float(np.sum(forward(v) * dout)),
                                                np.array(x, dtype=np.float64))
    except Exception:  # noqa: BLE001 - only a hint
        return ""
    return (f"\n  A gradient check (central differences of the layer's forward, "
            f"Σ out·dout) gives {fmt(numeric)}.")


def _layer_backward_check(fn, fn_name, cases, names, mistakes_for):
    """Each case: (where, args dict, expected tuple, [(forward of one input, x, dout)])."""
    for where, args, expected, fd in cases:
        out = call(fn, fn_name, args)
        if len(names) > 1:
            out = expect_tuple(out, fn_name, names)
        else:
            out = (out,)
        mistakes = functools.cache(functools.partial(mistakes_for, args))  # if needed
        for i, (name, got, exp) in enumerate(zip(names, out, expected, strict=True)):
            try:
                _close(f"{where}: {name}", got, exp,
                       mistakes=lambda m=mistakes, n=name: m().get(n))
            except AssertionError as exc:
                if fd is None:  # a kink in the inputs: finite differences would straddle it
                    raise
                forward, x, dout = fd[i]
                raise AssertionError(f"{exc}{_fd_note(forward, x, dout, np.shape(exp))}") from None


_AFFINE_CACHE = ("the cache is the tuple (x, W, b) that affine_forward returns, the layer's "
                 "inputs themselves")


def check_affine_backward(affine_backward, part="all"):
    """affine_backward(dout, cache=(x, W, b)) -> (dout @ W, dout.T @ x, dout.sum(0))."""
    rng = rng_for("affine_backward")

    def values():
        cases = []
        for N, n_in, n_out in [(1, 3, 2), _sizes(rng), _sizes(rng, square=True), (20, 8, 10)]:
            x, W, b = _layer(rng, N, n_in, n_out)
            dout = rng.normal(size=(N, n_out)) / N
            where = (f"affine_backward(dout, cache) for x of shape {shape_str((N, n_in))}, W "
                     f"of shape {shape_str((n_out, n_in))} (cache = (x, W, b))")
            fd = [(lambda v, W=W, b=b: v @ W.T + b, x, dout),
                  (lambda v, x=x, b=b: x @ v.T + b, W, dout),
                  (lambda v, x=x, W=W: x @ W.T + v, b, dout)]
            cases.append((where, {"dout": dout, "cache": (x, W, b)},
                          RM.affine_backward(dout, (x, W, b)), fd))
        try:
            _layer_backward_check(
                affine_backward, "affine_backward", cases, _NAMES_AFFINE,
                lambda a: _affine_mistakes(a["dout"], *a["cache"]))
        except AssertionError as exc:
            if " raised " in str(exc).split("\n", 1)[0]:
                raise AssertionError(f"{exc}\n  Remember: {_AFFINE_CACHE}.") from None
            raise

    run_parts(part, {"values": values})


_NAMES_AFFINE = ("dx", "dW", "db")


def _affine_mistakes(dout, x, W, b):
    m = _dense_backward_mistakes(dout, x, W)
    return {"dx": m["dA_prev"], "dW": m["dW"], "db": m["db"]}


def check_relu_backward(relu_backward, part="all"):
    """relu_backward(dout, cache=x) -> dout ⊙ [x > 0] (ReLU'(0) = 0)."""
    rng = rng_for("relu_backward")

    def values():
        cases = []
        for shape in [(4, 3), (7, 6), (1, 5)]:
            # integers and halves: many entries exactly 0, where ReLU'(0) = 0 decides (and
            # where finite differences straddle the kink: no gradient check in the message)
            x = rng.integers(-3, 4, size=shape) / 2.0
            x[0, 0] = 0.0
            dout = rng.normal(size=shape)
            where = f"relu_backward(dout, cache) for x of shape {shape_str(shape)} (cache = x)"
            cases.append((where, {"dout": dout, "cache": x}, (RM.relu_backward(dout, x),),
                          None))
        _layer_backward_check(relu_backward, "relu_backward", cases, ("dx",),
                              lambda a: {"dx": _relu_mistakes(a["dout"], a["cache"])})

    run_parts(part, {"values": values})


def _relu_mistakes(dout, x):
    return {
        "ReLU'(0) was taken as 1 (x >= 0): the course takes ReLU'(0) = 0, so the gradient "
        "passes only where x > 0": dout * (x >= 0),
        "the mask was taken from dout instead of the input: dx = dout * (x > 0), where x is "
        "the cache": dout * (dout > 0),
        "you multiplied by relu(x) instead of its derivative [x > 0]": dout * np.maximum(x, 0),
        "dout is missing: dx = dout * (x > 0), not the mask alone": (x > 0).astype(float),
    }


def check_sigmoid_backward(sigmoid_backward, part="all"):
    """sigmoid_backward(dout, cache=s) -> dout ⊙ s(1 - s), where s = σ(x) is the cache."""
    rng = rng_for("sigmoid_backward")

    def values():
        cases = []
        for shape in [(1, 4), (5, 3), (6, 7)]:
            x = rng.normal(0.0, 2.0, size=shape)
            s = R.sigmoid(x)
            dout = rng.normal(size=shape)
            where = (f"sigmoid_backward(dout, cache) for x of shape {shape_str(shape)} "
                     "(cache = s = σ(x), the forward's output)")
            cases.append((where, {"dout": dout, "cache": s}, (RM.sigmoid_backward(dout, s),),
                          [(R.sigmoid, x, dout)]))
        _layer_backward_check(sigmoid_backward, "sigmoid_backward", cases, ("dx",),
                              lambda a: {"dx": _sigmoid_mistakes(a["dout"], a["cache"])})

    run_parts(part, {"values": values})


def _sigmoid_mistakes(dout, s):
    t = R.sigmoid(s)
    return {
        known_mistake("sigmoid-of-the-cache"): dout * t * (1.0 - t),
        "dout is missing: dx = dout * s * (1 - s)": s * (1.0 - s),
        "the factor (1 - s) is missing: σ' = s(1 - s)": dout * s,
        "the factor s is missing: σ' = s(1 - s)": dout * (1.0 - s),
    }


def check_softmax_loss(softmax_loss, part="all"):
    """softmax_loss(scores, y) -> (mean cross-entropy, (softmax(scores) - onehot(y)) / N)."""
    rng = rng_for("softmax_loss")

    def values():
        cases = [(1, 3, 1.0), (int(rng.integers(3, 9)), 4, 2.0), (12, 10, 1.0), (5, 3, 400.0)]
        for N, C, scale in cases:
            scores = rng.normal(0.0, scale, size=(N, C))
            y = rng.integers(0, C, size=N)
            if scale > 100:  # saturated: every label far below its row's largest score
                y = scores.argmin(axis=1)
            where = (f"softmax_loss(scores, y) for scores of shape {shape_str((N, C))}"
                     + (f" with scores up to ±{np.abs(scores).max():.0f}" if scale > 100 else ""))
            loss, dscores = expect_tuple(call(softmax_loss, "softmax_loss",
                                              {"scores": scores, "y": y}),
                                         "softmax_loss", ("loss", "dscores"))
            exp_loss, exp_d = RM.softmax_loss(scores, y)
            P = np.eye(C)[y]
            S = R.softmax(scores)
            _close(f"{where}: loss", loss, exp_loss, check_dtype=False, mistakes={
                "the loss is a sum over the samples; the course's loss is their mean "
                "(divide by N)": exp_loss * N,
                "you averaged over all N·C entries instead of over the N samples":
                    exp_loss / C,
                "the minus sign is missing: J = -mean log softmax(scores)[y]": -exp_loss,
            })
            if scale > 100 and not np.isfinite(np.asarray(loss, dtype=float)).all():
                raise AssertionError(f"{where}: the loss overflowed; compute it from the "
                                     "log-softmax, scores - max - log(sum(exp(scores - max))).")
            try:
                _close(f"{where}: dscores", dscores, exp_d, mistakes={
                    "dscores is not divided by N: the loss is a mean, so dscores = "
                    "(softmax(scores) - onehot(y)) / N": S - P,
                    "the one-hot target is not subtracted: dscores = (softmax(scores) - "
                    "onehot(y)) / N": S / N,
                    "the sign is flipped: dscores = (softmax(scores) - onehot(y)) / N":
                        (P - S) / N,
                })
            except AssertionError as exc:
                fd = _fd_note(lambda Z, y=y: np.array(RM.softmax_loss(Z, y)[0]), scores,
                              np.array(1.0), exp_d.shape) if N * C <= 40 else ""
                raise AssertionError(f"{exc}{fd}") from None

    run_parts(part, {"values": values})


# ---------------------------------------------------------------------------
# mlp_loss: the modular network
# ---------------------------------------------------------------------------

def _capstone_net(rng, depth, N, hidden, n_out=None):
    sizes = [int(v) for v in rng.integers(2, 7, size=depth + 1)]
    sizes[-1] = n_out or max(sizes[-1], 2)
    params = [(rng.normal(0.0, 1.2 / np.sqrt(i), size=(o, i)), rng.normal(0.0, 0.5, size=o))
              for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    X = rng.normal(size=(N, sizes[0]))
    y = rng.integers(0, sizes[-1], size=N)
    return params, X, y


def _describe_capstone(params, hidden, N):
    sizes = [params[0][0].shape[1]] + [W.shape[0] for W, _ in params]
    return (f"mlp_loss on a {len(params)}-layer network of sizes {'-'.join(map(str, sizes))} "
            f"with hidden={hidden!r} and a batch of N={N}")


def _mlp_variant(params, X, y, hidden, mistake=None):
    """The reference's gradients, or those of one known mistake of a layered network."""
    fwd, bwd = RM.HIDDEN[hidden]
    A, caches = X, []
    for W, b in params[:-1]:
        Z, c1 = RM.affine_forward(A, W, b)
        A, c2 = fwd(Z)
        caches.append((c1, c2))
    scores, c = RM.affine_forward(A, *params[-1])
    if mistake == "hidden_on_scores":
        scores, c_act = fwd(scores)
    _, d = RM.softmax_loss(scores, y)
    if mistake == "hidden_on_scores":
        d = bwd(d, c_act)
    dA, dW, db = RM.affine_backward(d, c)
    grads = [(dW, db)]
    for c1, c2 in reversed(caches):
        dZ = dA if mistake == "skip_activation" else bwd(dA, c2)
        dA, dW, db = RM.affine_backward(dZ, c1)
        grads.append((dW, db))
    return grads[::-1]


_MLP_MISTAKES = {
    "skip_activation": "the hidden layers' activation backward is skipped: each hidden "
                       "layer's dout must go through relu_backward (or sigmoid_backward) with "
                       "that layer's cache before affine_backward",
    "hidden_on_scores": "the last layer has an activation too: the scores are the last affine "
                        "layer's output, fed to softmax_loss as they are",
}


def _compare_mlp(out, params, X, y, hidden, where):
    loss_value, grads = _check_structure(out, params, where)
    exp_loss, exp_grads = RM.mlp_loss(params, X, y, hidden)
    _close(f"{where}: the loss", loss_value, exp_loss, check_dtype=False)
    variants = functools.cache(lambda: {desc: _mlp_variant(params, X, y, hidden, key)
                                        for key, desc in _MLP_MISTAKES.items()})
    for k in range(len(params) - 1, -1, -1):
        for i, name in ((0, "dW"), (1, "db")):
            mistakes = _entry_of(variants, k, i)
            if i == 0 and params[k][0].shape[0] == params[k][0].shape[1]:
                mistakes = _with_transposed(mistakes, exp_grads[k][0])
            _close(f"{where}: layer {k + 1}'s {name} = grads[{k}][{i}]", grads[k][i],
                   exp_grads[k][i], mistakes=mistakes)


def _with_transposed(mistakes, exp_dW):
    """``mistakes`` (a function) with the transposed dW added, for a square W."""
    return lambda: {**mistakes(), known_mistake("transposed-dW"): np.asarray(exp_dW).T}


def check_mlp_loss(mlp_loss, part="all"):
    """mlp_loss(params, X, y, hidden) -> (loss, grads) for a layered network of any depth."""
    rng = rng_for("mlp_loss")

    def run(params, X, y, hidden, check_params=False):
        mine = _deep_copy_params(params)
        out = call(mlp_loss, "mlp_loss", {"params": mine, "X": X.copy(), "y": y.copy(),
                                          "hidden": hidden})
        where = _describe_capstone(params, hidden, X.shape[0])
        if check_params:
            _expect_unchanged(where, "params", params, mine,
                              "mlp_loss must only read the parameters")
        return out, where

    def values():
        for depth, N, hidden in [(1, 4, "relu"), (2, 1, "relu"), (2, 7, "sigmoid"),
                                 (3, 9, "relu"), (3, 5, "sigmoid")]:
            params, X, y = _capstone_net(rng, depth, N, hidden)
            out, where = run(params, X, y, hidden)
            _compare_mlp(out, params, X, y, hidden, where)

    def repeat():
        # Two calls in a row on different batches: the second call's gradients are those
        # of its own batch (nothing left over from the first), and params stay unchanged.
        params, X, y = _capstone_net(rng, 2, 12, "relu", n_out=3)
        first, second = slice(0, 6), slice(6, 12)
        run(params, X[first], y[first], "relu", check_params=True)
        out, where = run(params, X[second], y[second], "relu", check_params=True)
        loss_value, grads = _check_structure(out, params, where + " (the second call)")
        g1 = RM.mlp_loss(params, X[first], y[first], "relu")[1]
        g2 = RM.mlp_loss(params, X[second], y[second], "relu")[1]
        for k in range(len(params) - 1, -1, -1):
            for i, name in ((0, "dW"), (1, "db")):
                _close(f"{where}, called a second time on another batch: layer {k + 1}'s "
                       f"{name}", grads[k][i], g2[k][i], mistakes={
                           "the gradients were not zeroed between calls: the second call "
                           "returned the sum of both calls' gradients (a buffer kept from "
                           "one call to the next and added to with +=); start every call "
                           "from fresh gradients": g1[k][i] + g2[k][i],
                           "the second call returned the first call's gradients (a result "
                           "kept from the previous call)": g1[k][i]})

    run_parts(part, {"values": values, "repeat": repeat})


# ---------------------------------------------------------------------------
# sgd_epoch: one epoch of mini-batch SGD
# ---------------------------------------------------------------------------

def _epoch_variant(params, X, y, lr, batch_size, seed, mistake):
    """RM.sgd_epoch with one known mistake."""
    N = X.shape[0]
    order = (np.arange(N) if mistake == "no_shuffle"
             else np.random.default_rng(seed).permutation(N))
    stop = N - N % batch_size if mistake == "drop_last" else N
    losses, acc = [], None
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        if mistake == "full_batch":
            loss, grads = RM.mlp_loss(params, X, y)
        elif mistake == "labels_unshuffled":
            loss, grads = RM.mlp_loss(params, X[idx], y[start:start + batch_size])
        else:
            loss, grads = RM.mlp_loss(params, X[idx], y[idx])
        if mistake == "accumulate":
            acc = grads if acc is None else [(a + g, c + h) for (a, c), (g, h)
                                             in zip(acc, grads, strict=True)]
            grads = acc
        losses.append(loss)
        params = RM.sgd_step(params, grads, lr)
    return params, losses


def _epoch_variants(params, X, y, lr, batch_size, seed):
    """{description: (params, losses)} of the epoch with each known mistake."""
    return {d: _epoch_variant(params, X, y, lr, batch_size, seed, k)
            for k, d in _epoch_mistakes().items()}


def _entry_of(variants, *index):
    """A catalogue, computed when asked for: ``variants()[d][index...]`` for each mistake d
    (``variants`` a function returning {description: nested results})."""
    def pick():
        picked = {}
        for description, value in variants().items():
            for i in index:
                value = value[i]
            picked[description] = value
        return picked
    return pick


def _epoch_mistakes():
    """{mistake key: its description} (the manifest's wording where it has one)."""
    return {
        "accumulate": "the gradients were not zeroed between steps: each step used the sum of "
                      "the gradients of every batch so far; take each batch's own gradients",
        "no_shuffle": known_mistake("epoch-not-shuffled"),
        "drop_last": "the last, smaller batch was dropped: every sample is used once per epoch",
        "full_batch": "each step used the gradient of the whole data set instead of its batch's",
        "labels_unshuffled": "the inputs were shuffled but the labels were not: take X[idx] and "
                             "y[idx] with the same indices",
    }


def check_sgd_epoch(sgd_epoch, part="all"):
    """sgd_epoch(params, X, y, lr, batch_size, seed) -> (new params, batch losses)."""
    rng = rng_for("sgd_epoch")

    def values():
        for N, B in [(23, 5), (16, 4), (7, 10)]:
            params, X, y = _capstone_net(rng, 2, N, "relu", n_out=3)
            lr, seed = float(rng.choice([0.1, 0.5])), int(rng.integers(0, 1000))
            mine = _deep_copy_params(params)
            out = call(sgd_epoch, "sgd_epoch", {"params": mine, "X": X, "y": y, "lr": lr,
                                                "batch_size": B, "seed": seed})
            where = (f"sgd_epoch(params, X, y, lr={lr}, batch_size={B}, seed={seed}) for "
                     f"N={N} samples")
            _expect_unchanged(where, "params", params, mine, "return new arrays")
            new, losses = expect_tuple(out, "sgd_epoch", ("params", "losses"))
            exp_params, exp_losses = RM.sgd_epoch(params, X, y, lr, B, seed)
            # each mistake's whole epoch, replayed only if an answer differs
            variants = functools.cache(functools.partial(_epoch_variants, params, X, y, lr, B,
                                                         seed))
            n_batches = len(exp_losses)
            try:
                got_n = len(losses)
            except TypeError:
                got_n = None
            if got_n != n_batches:
                note = ""
                if got_n == N // B and N % B:
                    note = f"\n  This matches a known mistake: {_epoch_mistakes()['drop_last']}."
                raise AssertionError(
                    f"{where}: expected the losses of {n_batches} batches (ceil({N}/{B})), "
                    f"got {got_n if got_n is not None else type(losses).__name__}.{note}")
            _close(f"{where}: the batches' losses", losses, exp_losses, check_dtype=False,
                   mistakes=lambda v=variants, n=n_batches: {
                       d: replayed for d, (_, replayed) in v().items() if len(replayed) == n})
            _check_structure((0.0, new), params, where + ": the new params")
            for k in range(len(params)):
                for i, name in ((0, "W"), (1, "b")):
                    _close(f"{where}: layer {k + 1}'s new {name}", new[k][i],
                           exp_params[k][i], mistakes=_entry_of(variants, 0, k, i))

    run_parts(part, {"values": values})


# ---------------------------------------------------------------------------
# train_digits: the capstone, measured by the judge
# ---------------------------------------------------------------------------

def _trained_network(out, where):
    """(params, history) with params a chain of (W, b) from 64 inputs to 10 scores."""
    params, history = expect_tuple(out, "train_digits", ("params", "history"))
    if not isinstance(params, (list, tuple)) or not params:
        raise AssertionError(f"{where}: params must be a non-empty list of (W, b) pairs, got "
                             f"{type(params).__name__}.")
    checked, n_in = [], 64
    for k, pair in enumerate(params):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise AssertionError(f"{where}: params[{k}] must be a pair (W, b).")
        W = np.asarray(pair[0], dtype=np.float64) if _numeric(pair[0]) else None
        b = np.asarray(pair[1], dtype=np.float64) if _numeric(pair[1]) else None
        if W is None or b is None or W.ndim != 2 or W.shape[1] != n_in or b.shape != W.shape[:1]:
            raise AssertionError(
                f"{where}: layer {k + 1} must be (W, b) with W of shape (n_out, {n_in}) and b "
                f"of shape (n_out,); got shapes {np.shape(pair[0])} and {np.shape(pair[1])}.")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise AssertionError(f"{where}: layer {k + 1}'s parameters contain NaN or inf "
                                 "(did training diverge? try a smaller learning rate).")
        checked.append((W, b))
        n_in = W.shape[0]
    if n_in != 10:
        raise AssertionError(f"{where}: the last layer must give 10 scores, one per digit; "
                             f"it gives {n_in}.")
    return checked, history


def _numeric(v):
    try:
        return np.asarray(v, dtype=np.float64).dtype == np.float64
    except (TypeError, ValueError):
        return False


def _diagnose_accuracy(acc_train, acc_new, line, what, params, X_new):
    """Why a trained network scores below the line on new samples."""
    predicted = RM.mlp_scores(params, X_new).argmax(axis=1)
    if np.unique(predicted).size == 1:
        return (f"It gives every {what} digit the same class, {int(predicted[0])}: the network "
                "has not learned (check your layers' cells, and try a smaller learning rate "
                "if the loss grew).")
    if acc_train >= 0.99 and acc_new < line:
        return (f"It is right on {acc_train:.1%} of the samples it was given but on only "
                f"{acc_new:.1%} of {what} ones: it memorised its training samples instead of "
                "learning what makes a digit (fewer epochs, or a smaller network, generalise "
                "better).")
    if acc_train < line:
        return (f"It is right on only {acc_train:.1%} of its own training samples: training "
                "has not converged (more epochs, another learning rate), or a layer's "
                "backward is wrong (see its cell).")
    return ""


def _train_and_measure(train_digits):
    X_train, y_train, X_val, y_val = _data.digits_split()
    where = ("train_digits(X_train, y_train, X_val, y_val) on the digits of "
             "data.digits_split()")
    out = call(train_digits, "train_digits", {"X_train": X_train, "y_train": y_train,
                                              "X_val": X_val, "y_val": y_val})
    params, history = _trained_network(out, where)
    return where, params, history, {
        "train": RM.accuracy(params, X_train, y_train), "val": RM.accuracy(params, X_val, y_val),
        "n_val": len(y_val)}


def check_train_digits(train_digits, part="all"):
    """train_digits(X_train, y_train, X_val, y_val) -> (params, history), judged on new digits.

    Every accuracy is the judge's: it runs the returned parameters through the
    reference forward (ReLU hidden layers, scores out) in the grading process.
    Part "validation": at least VAL_LINE on the validation set, and the history's
    last validation accuracy is that accuracy (not the training set's). Part
    "heldout": at least HELD_OUT_LINE on the judge's held-out digits, which never
    exist inside the sandbox (course_lib.data, judge.sandbox).

    Both parts judge one trained network: the function trains once per call of this
    check, and once per notebook when graded sealed, where the "heldout" cell gets what
    the same function returned to the "validation" cell (``once_per_notebook``: kept by
    the judge for that notebook alone, trained again if the student redefined anything
    in between).
    """
    trained = []

    def measured():
        if not trained:
            trained.append(once_per_notebook(train_digits, "trained on digits_split()",
                                             lambda: _train_and_measure(train_digits)))
        return trained[0]

    def validation():
        where, params, history, acc = measured()
        if acc["val"] < VAL_LINE:
            X_train, y_train, X_val, y_val = _data.digits_split()
            raise AssertionError(
                f"{where}: expected a validation accuracy of at least {VAL_LINE:.0%}, got "
                f"{acc['val']:.1%} (measured by the grader). "
                + _diagnose_accuracy(acc["train"], acc["val"], VAL_LINE, "validation", params,
                                     X_val))
        if not isinstance(history, dict) or not all(
                isinstance(history.get(k), (list, tuple)) and history.get(k)
                for k in ("loss", "train_acc", "val_acc")):
            raise AssertionError(f"{where}: history must be a dict with the lists 'loss', "
                                 "'train_acc' and 'val_acc', one entry per epoch.")
        reported = history["val_acc"][-1]
        if not isinstance(reported, (int, float)) or abs(reported - acc["val"]) > 1e-9:
            note = ""
            if isinstance(reported, (int, float)) and abs(reported - acc["train"]) < 1e-9:
                note = ("\n  This matches a known mistake: "
                        f"{known_mistake('accuracy-on-the-training-set')}.")
            raise AssertionError(
                f"{where}: history['val_acc'][-1] must be the trained network's accuracy on "
                f"the validation set: expected {acc['val']:.6g} (measured by the grader on "
                f"the {acc['n_val']} validation samples), got {reported!r:.40}.{note}")

    def heldout():
        where, params, _, acc = measured()
        X_ho, y_ho = _data.digits_held_out()
        if len(y_ho) == 0:
            raise RuntimeError("the held-out digits are missing where the judge runs")
        acc_ho = RM.accuracy(params, X_ho, y_ho)
        if acc_ho < HELD_OUT_LINE:
            raise AssertionError(
                f"{where}: on the grader's {len(y_ho)} held-out digits (never given to your "
                f"code) your network is right on {acc_ho:.1%}; at least {HELD_OUT_LINE:.0%} "
                f"is needed. " + _diagnose_accuracy(acc["train"], acc_ho, HELD_OUT_LINE,
                                                    "held-out", params, X_ho))

    run_parts(part, {"validation": validation, "heldout": heldout})
