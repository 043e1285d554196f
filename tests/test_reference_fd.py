"""Every gradient in course_lib.reference agrees with central finite differences.

Each function that returns a gradient is compared with the central difference
(f(x + h e_i) - f(x - h e_i)) / (2h) of the forward quantity it differentiates,
computed by ``course_lib.gradcheck.numerical_gradient`` (which perturbs the
float64 array in place, one entry at a time, and restores it).

Tolerances (looser than the course's rtol=1e-7, atol=1e-10, on purpose): with
h = 1e-5 in float64 the central difference has truncation error about
h^2 |f'''| / 6 ~ 1e-11 and rounding error about eps |f| / h ~ 2e-11 |f| for the
O(1)-to-O(10) values used here, so a correct gradient agrees to ~1e-9 or
better. rtol=1e-6, atol=1e-8 leaves a wide margin against that noise while a
real mistake (a missing 1/N, a transpose, a sign, a factor 2) is off by far more.
Points within 1e-3 of a kink (ReLU at 0, a max-gate tie) are avoided: there the
function is not differentiable and the central difference straddles the kink.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes
from mlp_strategies import HIDDEN, OUTPUT_LOSS, batch_sizes, networks, seeds, sizes

import course_lib.reference as ref
from course_lib.gradcheck import numerical_gradient

H = 1e-5
FD_RTOL, FD_ATOL = 1e-6, 1e-8
KINK_MARGIN = 1e-3

# database=None: do not write a .hypothesis/ directory into the shared tree.
fast = settings(max_examples=25, deadline=None, database=None)

any_shapes = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
batched_shapes = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
bce_shapes = array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4)


def arr(a):
    """A fresh, writeable float64 ndarray (0-d for scalars): what numerical_gradient needs."""
    return np.array(a, dtype=np.float64)


def num(f, x):
    """Central-difference gradient of the scalar f() with respect to the array x.

    f takes no argument: it reads x (and anything else) through its closure, so
    the same closure differentiates with respect to each of several arrays.
    """
    return numerical_gradient(lambda _: f(), x, h=H)


def fd_close(analytic, numeric):
    analytic = np.asarray(analytic)
    assert analytic.shape == numeric.shape, (analytic.shape, numeric.shape)
    assert analytic.dtype == np.float64
    np.testing.assert_allclose(analytic, numeric, rtol=FD_RTOL, atol=FD_ATOL)


# ---------------------------------------------------------------------------
# lesson 01
# ---------------------------------------------------------------------------

@fast
@given(shape=any_shapes, seed=seeds)
def test_add_gate_backward_fd(shape, seed):
    rng = np.random.default_rng(seed)
    x, y, dout = (arr(rng.standard_normal(shape)) for _ in range(3))

    def f():
        return np.sum((x + y) * dout)

    dx, dy = ref.add_gate_backward(dout)
    fd_close(dx, num(f, x))
    fd_close(dy, num(f, y))


@fast
@given(shape=any_shapes, seed=seeds)
def test_mul_gate_backward_fd(shape, seed):
    rng = np.random.default_rng(seed)
    x, y, dout = (arr(rng.standard_normal(shape)) for _ in range(3))

    def f():
        return np.sum(x * y * dout)

    dx, dy = ref.mul_gate_backward(x, y, dout)
    fd_close(dx, num(f, x))
    fd_close(dy, num(f, y))


@fast
@given(shape=any_shapes, seed=seeds)
def test_max_gate_backward_fd_away_from_ties(shape, seed):
    rng = np.random.default_rng(seed)
    x, dout = arr(rng.standard_normal(shape)), arr(rng.standard_normal(shape))
    gap = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.01, 2.0, shape)
    y = arr(x + gap)  # |x - y| >= 0.01 >> h: no ties, no kink inside the stencil

    def f():
        return np.sum(np.maximum(x, y) * dout)

    dx, dy = ref.max_gate_backward(x, y, dout)
    fd_close(dx, num(f, x))
    fd_close(dy, num(f, y))


@fast
@given(seed=seeds)
def test_neuron_forward_backward_fd(seed):
    rng = np.random.default_rng(seed)
    w, x = arr(rng.standard_normal(3) * 2), arr(rng.standard_normal(2) * 2)
    f_value, dw, dx = ref.neuron_forward_backward(w, x)

    def f():
        return 1.0 / (1.0 + np.exp(-(w[0] * x[0] + w[1] * x[1] + w[2])))

    assert f_value == pytest.approx(f(), rel=1e-12)
    fd_close(dw, num(f, w))
    fd_close(dx, num(f, x))


@fast
@given(m=sizes, n=sizes, seed=seeds)
def test_matmul_l2_forward_backward_fd(m, n, seed):
    rng = np.random.default_rng(seed)
    W, x = arr(rng.standard_normal((m, n))), arr(rng.standard_normal(n))
    f_value, dW, dx = ref.matmul_l2_forward_backward(W, x)

    def f():
        return np.sum((W @ x) ** 2)

    assert f_value == pytest.approx(f(), rel=1e-12)
    fd_close(dW, num(f, W))
    fd_close(dx, num(f, x))


@fast
@given(n=st.integers(1, 8), seed=seeds)
def test_ssr_output_grads_fd(n, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-2, 2, n), rng.uniform(-1, 2, n)
    params = dict(zip(("w1", "w2", "w3", "w4", "b1", "b2", "b3"),
                      (float(v) for v in rng.uniform(-3, 3, 7)), strict=True))
    out = arr([params["b3"], params["w3"], params["w4"]])

    def ssr():
        p = dict(params, b3=out[0], w3=out[1], w4=out[2])
        return np.sum((y - ref.ssr_forward(x, p)["y_green"]) ** 2)

    g = ref.ssr_output_grads(x, y, params)
    fd_close(np.array([g["b3"], g["w3"], g["w4"]]), num(ssr, out))


# ---------------------------------------------------------------------------
# lesson 02
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn,prime", [(ref.sigmoid, ref.sigmoid_prime),
                                      (ref.tanh, ref.tanh_prime),
                                      (ref.relu, ref.relu_prime)],
                         ids=["sigmoid", "tanh", "relu"])
@fast
@given(shape=any_shapes, seed=seeds)
def test_activation_derivatives_fd(fn, prime, shape, seed):
    rng = np.random.default_rng(seed)
    # |z| >= KINK_MARGIN: keeps ReLU's stencil off its kink at 0.
    z = arr(rng.choice([-1.0, 1.0], shape) * rng.uniform(KINK_MARGIN, 4.0, shape))
    # Elementwise, so the gradient of sum(fn(z)) is fn'(z) entry by entry.
    fd_close(prime(z), num(lambda: np.sum(fn(z)), z))


@fast
@given(shape=bce_shapes, seed=seeds, hard=st.booleans())
def test_bce_sigmoid_delta_fd(shape, seed, hard):
    rng = np.random.default_rng(seed)
    z = arr(rng.uniform(-6, 6, shape))
    y = (rng.random(shape) < 0.5).astype(float) if hard else rng.random(shape)
    fd_close(ref.bce_sigmoid_delta(z, y), num(lambda: ref.bce(ref.sigmoid(z), y), z))
    # And from the logits directly (the same function, computed stably).
    fd_close(ref.bce_sigmoid_delta(z, y), num(lambda: ref.bce_with_logits(z, y), z))


# ---------------------------------------------------------------------------
# lesson 03
# ---------------------------------------------------------------------------

@fast
@given(n=sizes, seed=seeds)
def test_softmax_jacobian_columns_fd(n, seed):
    z = arr(np.random.default_rng(seed).standard_normal(n) * 2)
    J = ref.softmax_jacobian(z)
    assert J.shape == (n, n)
    for j in range(n):  # column j = ds/dz_j, by a central difference in z_j
        e = np.zeros(n)
        e[j] = H
        column = (ref.softmax(z + e) - ref.softmax(z - e)) / (2 * H)
        fd_close(J[:, j], column)


@fast
@given(shape=batched_shapes, seed=seeds)
def test_softmax_backward_fd(shape, seed):
    rng = np.random.default_rng(seed)
    z, dout = arr(rng.standard_normal(shape) * 2), rng.standard_normal(shape)
    fd_close(ref.softmax_backward(z, dout), num(lambda: np.sum(ref.softmax(z) * dout), z))


@fast
@given(N=batch_sizes, C=sizes, seed=seeds, kind=st.sampled_from(["labels", "onehot", "soft"]))
def test_softmax_cross_entropy_grad_fd(N, C, seed, kind):
    rng = np.random.default_rng(seed)
    Z = arr(rng.standard_normal((N, C)) * 3)
    labels = rng.integers(0, C, N)
    Y = {"labels": labels, "onehot": np.eye(C)[labels],
         "soft": rng.dirichlet(np.ones(C), N)}[kind]
    fd_close(ref.softmax_cross_entropy_grad(Z, Y), num(lambda: ref.cross_entropy(Z, Y), Z))


# ---------------------------------------------------------------------------
# lesson 04
# ---------------------------------------------------------------------------

@fast
@given(N=batch_sizes, n_in=sizes, n_out=sizes, seed=seeds)
def test_dense_backward_fd(N, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    A = arr(rng.standard_normal((N, n_in)))
    W, b = arr(rng.standard_normal((n_out, n_in))), arr(rng.standard_normal(n_out))
    dZ = rng.standard_normal((N, n_out))

    def f():
        return np.sum(ref.dense_forward(A, W, b) * dZ)

    dA, dW, db = ref.dense_backward(dZ, A, W)
    fd_close(dA, num(f, A))
    fd_close(dW, num(f, W))
    fd_close(db, num(f, b))


@pytest.mark.parametrize("name", ["sigmoid", "relu", "tanh", "identity", "softmax"])
@fast
@given(N=batch_sizes, n=sizes, seed=seeds)
def test_activation_backward_fd(name, N, n, seed):
    rng = np.random.default_rng(seed)
    Z = arr(rng.choice([-1.0, 1.0], (N, n)) * rng.uniform(KINK_MARGIN, 3.0, (N, n)))
    dA = rng.standard_normal((N, n))
    A = ref.activation_forward(name, Z)
    numeric = num(lambda: np.sum(ref.activation_forward(name, Z) * dA), Z)
    fd_close(ref.activation_backward(name, Z, A, dA), numeric)


def forward_loss(params, X, Y, activations, loss):
    """The loss from the forward pass alone (no backward code involved)."""
    Z, A = ref.mlp_forward(params, X, activations)[-1]
    if loss == "mse":
        return ref.mse(A, Y)
    if loss == "bce":
        return ref.bce_with_logits(Z, Y)
    return ref.cross_entropy(Z, Y)


def check_backprop_fd(params, X, Y, activations, loss):
    """backprop's loss equals the forward loss; every dW, db entry matches FD."""
    value, grads = ref.backprop(params, X, Y, activations, loss)
    assert value == pytest.approx(forward_loss(params, X, Y, activations, loss),
                                  rel=1e-12, abs=1e-14)
    assert len(grads) == len(params)

    def f():
        return forward_loss(params, X, Y, activations, loss)

    for (W, b), (dW, db) in zip(params, grads, strict=True):
        fd_close(dW, num(f, W))
        fd_close(db, num(f, b))
    return value, grads




# More examples than elsewhere: many (depth, activation, loss) combinations, each cheap.
@settings(max_examples=150, deadline=None, database=None)
@given(net=networks())
def test_backprop_fd_random_networks(net):
    params, X, Y, activations, loss = net
    cache = ref.mlp_forward(params, X, activations)
    for (Z, _), act in zip(cache[1:], activations, strict=True):
        if act == "relu":  # stay off ReLU's kink: a perturbation of h must not cross 0
            assume(np.min(np.abs(Z)) > KINK_MARGIN)
    check_backprop_fd(params, X, Y, activations, loss)


def seed000():
    W1 = arr([[0.2, -0.3, 0.5], [0.7, 0.1, -0.2], [-0.5, 0.4, 0.3], [0.1, -0.4, 0.2]])
    b1 = arr([0.1, -0.2, 0.05, 0.0])
    W2 = arr([[0.3, -0.6, 0.2, 0.1], [-0.2, 0.1, 0.4, -0.5]])
    b2 = arr([0.05, -0.1])
    return [(W1, b1), (W2, b2)], arr([[1.0, 0.5, -1.0]]), arr([[1.0, 0.0]])


def test_backprop_fd_seed000_and_its_numbers():
    params, X, Y = seed000()
    acts = ("sigmoid", "softmax")
    value, grads = check_backprop_fd(params, X, Y, acts, "mse")
    # The numbers COURSE.md quotes (printed to 6-7 digits, hence the atol).
    cache = ref.mlp_forward(params, X, acts)
    np.testing.assert_allclose(cache[1][1], [[0.413382, 0.679179, 0.365864, 0.425557]],
                               atol=1e-6)
    np.testing.assert_allclose(cache[2][1], [[0.515852, 0.484148]], atol=1e-6)
    assert value == pytest.approx(0.2343997, abs=1e-7)
    np.testing.assert_allclose(grads[1][1], [-0.241831, 0.241831], atol=1e-6)
    np.testing.assert_allclose(grads[0][1], [-0.029322, 0.036886, 0.011221, -0.035471],
                               atol=1e-6)


@pytest.mark.parametrize("loss,last", OUTPUT_LOSS)
def test_backprop_fd_seed000_every_output_pair(loss, last):
    # The same 3-4-2 weights under every valid (last activation, loss) pair and
    # every hidden activation, with a batch of 3.
    params, _, _ = seed000()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 3))
    Y = np.eye(2)[[0, 1, 1]] if loss != "mse" else rng.standard_normal((3, 2))
    for hidden in HIDDEN:
        acts = (hidden, last)
        if hidden == "relu":
            Z1 = ref.mlp_forward(params, X, acts)[1][0]
            assert np.min(np.abs(Z1)) > KINK_MARGIN  # this seed stays off the kink
        check_backprop_fd(params, X, Y, acts, loss)


def test_backprop_fd_seed001_and_its_numbers():
    # 2-2-1, no biases (zeros), input weights 0.5, output weights 1, sigmoid, BCE.
    params = [(arr(np.full((2, 2), 0.5)), arr(np.zeros(2))),
              (arr(np.ones((1, 2))), arr(np.zeros(1)))]
    X, Y = arr([[0.5, 1.0]]), arr([[1.0]])
    value, grads = check_backprop_fd(params, X, Y, ("sigmoid", "sigmoid"), "bce")
    assert value == pytest.approx(0.2287937, abs=1e-7)
    np.testing.assert_allclose(grads[1][0], [[-0.138897, -0.138897]], atol=1e-6)
    np.testing.assert_allclose(grads[0][0], [[-0.022281, -0.044561]] * 2, atol=1e-6)


# ---------------------------------------------------------------------------
# sgd_step
# ---------------------------------------------------------------------------

def test_sgd_step_subtracts_lr_times_grad():
    params = [(arr([[1.0, 2.0], [3.0, 4.0]]), arr([0.5, -0.5]))]
    grads = [(arr([[0.5, -1.0], [0.0, 2.0]]), arr([1.0, -2.0]))]
    (W, b), = ref.sgd_step(params, grads, 0.1)
    np.testing.assert_allclose(W, [[0.95, 2.1], [3.0, 3.8]], rtol=1e-15)
    np.testing.assert_allclose(b, [0.4, -0.3], rtol=1e-15)


@fast
@given(net=networks(), lr=st.sampled_from([1e-3, 0.1, 1.0]))
def test_sgd_step_is_descent_and_leaves_inputs_alone(net, lr):
    params, X, Y, activations, loss = net
    value, grads = ref.backprop(params, X, Y, activations, loss)
    params0 = [(W.copy(), b.copy()) for W, b in params]
    grads0 = [(dW.copy(), db.copy()) for dW, db in grads]
    new = ref.sgd_step(params, grads, lr)
    assert len(new) == len(params)
    for (W, b), (dW, db), (nW, nb) in zip(params, grads, new, strict=True):
        np.testing.assert_allclose(nW, W - lr * dW, rtol=1e-15, atol=0)
        np.testing.assert_allclose(nb, b - lr * db, rtol=1e-15, atol=0)
        assert nW.shape == W.shape and nb.shape == b.shape
        assert not np.shares_memory(nW, W) and not np.shares_memory(nb, b)
    for (W, b), (W0, b0) in zip(params, params0, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    for (dW, db), (dW0, db0) in zip(grads, grads0, strict=True):
        np.testing.assert_array_equal(dW, dW0)
        np.testing.assert_array_equal(db, db0)
    # A small step along -grad lowers the loss (first order: by ~ eps * |grad|^2).
    g2 = sum(np.sum(dW**2) + np.sum(db**2) for dW, db in grads)
    assume(g2 > 1e-6)
    eps = 1e-4
    stepped = ref.sgd_step(params, grads, eps)
    assert forward_loss(stepped, X, Y, activations, loss) < value - 0.5 * eps * g2
