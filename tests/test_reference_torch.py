"""course_lib.reference agrees with PyTorch autograd (float64) on random inputs.

Every public function of ``course_lib.reference`` is compared here with the same
quantity computed by torch: forward values with torch's own functions, gradients
with ``backward()`` on a graph built in this file (never with the reference's
``torch_backprop``, which is itself checked against ``backprop`` separately).

Shapes and values are drawn by hypothesis: a shape, and a seed for a numpy
generator that fills the arrays, so every failure is reproducible from the
falsifying example hypothesis prints. Tolerances are the course's
``rtol=1e-7, atol=1e-10`` (COURSE.md): numpy and torch evaluate the same float64
formulas in a different order, which costs a few ulps, far below them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes
from mlp_strategies import OUTPUT_LOSS, batch_sizes, networks, seeds, sizes

import course_lib.reference as ref

RTOL, ATOL = 1e-7, 1e-10

# database=None: do not write a .hypothesis/ directory into the shared tree.
fast = settings(max_examples=25, deadline=None, database=None)

# Any shape of 0 to 3 axes of 1 to 5 entries (scalars included).
any_shapes = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=5)
# At least one axis: softmax and friends act on the last one.
batched_shapes = array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
# What bce and friends accept: (), (N,) or (N, k).
bce_shapes = array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=5)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    """Assert two arrays (numpy or torch) agree, with shapes compared exactly."""
    if isinstance(actual, torch.Tensor):
        assert actual.dtype == torch.float64, actual.dtype
        actual = actual.detach().numpy()
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.float64, actual.dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def leaf(a):
    """A float64 torch leaf requiring grad, holding a copy of ``a``."""
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def t(a):
    """A float64 torch tensor (no grad) holding a copy of ``a``."""
    return torch.tensor(np.asarray(a, dtype=np.float64))


# ---------------------------------------------------------------------------
# lesson 01: gates, one neuron, ||Wx||^2, seed 003
# ---------------------------------------------------------------------------

@fast
@given(shape=any_shapes, seed=seeds)
def test_add_gate_backward_matches_torch(shape, seed):
    rng = np.random.default_rng(seed)
    x, y, dout = (rng.standard_normal(shape) for _ in range(3))
    xt, yt = leaf(x), leaf(y)
    (xt + yt).backward(t(dout))
    dx, dy = ref.add_gate_backward(dout)
    close(dx, xt.grad)
    close(dy, yt.grad)
    # Copies, not views: accumulating into one must not change the other.
    dx += 1.0
    close(dy, yt.grad)


@fast
@given(shape=any_shapes, seed=seeds)
def test_mul_gate_backward_matches_torch(shape, seed):
    rng = np.random.default_rng(seed)
    x, y, dout = (rng.standard_normal(shape) for _ in range(3))
    xt, yt = leaf(x), leaf(y)
    (xt * yt).backward(t(dout))
    dx, dy = ref.mul_gate_backward(x, y, dout)
    close(dx, xt.grad)
    close(dy, yt.grad)


@fast
@given(shape=any_shapes, seed=seeds)
def test_max_gate_backward_matches_torch_off_ties_and_course_on_ties(shape, seed):
    rng = np.random.default_rng(seed)
    x, y, dout = (rng.standard_normal(shape) for _ in range(3))
    tie = rng.random(shape) < 0.3
    y = np.where(tie, x, y)  # force some exact ties
    xt, yt = leaf(x), leaf(y)
    torch.maximum(xt, yt).backward(t(dout))
    dx, dy = ref.max_gate_backward(x, y, dout)
    assert dx.shape == dy.shape == np.shape(x)
    # Off ties the gradient is unambiguous: torch and the course must agree.
    close(dx[~tie], xt.grad.numpy()[~tie])
    close(dy[~tie], yt.grad.numpy()[~tie])
    # On ties the course sends everything to the FIRST argument.
    np.testing.assert_array_equal(dx[tie], dout[tie])
    np.testing.assert_array_equal(dy[tie], 0.0)
    # The gradient is routed, never duplicated or lost.
    close(dx + dy, dout)


def test_max_gate_tie_convention_and_what_torch_does():
    x = np.array([2.0, 1.0, -3.0, 0.0])
    y = np.array([2.0, 5.0, -4.0, -0.0])  # ties at 0 and 3 (0.0 == -0.0)
    dout = np.array([3.0, 7.0, 11.0, 13.0])
    dx, dy = ref.max_gate_backward(x, y, dout)
    np.testing.assert_array_equal(dx, [3.0, 0.0, 11.0, 13.0])
    np.testing.assert_array_equal(dy, [0.0, 7.0, 0.0, 0.0])
    # Same with scalars: a tie sends dout to x, none to y.
    sdx, sdy = ref.max_gate_backward(1.5, 1.5, 4.0)
    assert float(sdx) == 4.0 and float(sdy) == 0.0
    # What torch.maximum does on a tie (checked here, not assumed): it SPLITS the
    # gradient, dout/2 to each argument (torch 2.13; derivatives.yaml uses
    # where(self == other, grad / 2, grad)). So the course's convention differs
    # from torch exactly on ties, and this test pins both down.
    xt, yt = leaf(x), leaf(y)
    torch.maximum(xt, yt).backward(t(dout))
    np.testing.assert_array_equal(xt.grad.numpy(), [1.5, 0.0, 11.0, 6.5])
    np.testing.assert_array_equal(yt.grad.numpy(), [1.5, 7.0, 0.0, 6.5])


@fast
@given(seed=seeds)
def test_neuron_forward_backward_matches_torch(seed):
    rng = np.random.default_rng(seed)
    w, x = rng.standard_normal(3) * 2, rng.standard_normal(2) * 2
    wt, xt = leaf(w), leaf(x)
    ft = torch.sigmoid(wt[0] * xt[0] + wt[1] * xt[1] + wt[2])
    ft.backward()
    f, dw, dx = ref.neuron_forward_backward(w, x)
    assert isinstance(f, float)
    close(f, ft)
    close(dw, wt.grad)
    close(dx, xt.grad)


@fast
@given(m=sizes, n=sizes, seed=seeds)
def test_matmul_l2_forward_backward_matches_torch(m, n, seed):
    rng = np.random.default_rng(seed)
    W, x = rng.standard_normal((m, n)), rng.standard_normal(n)
    Wt, xt = leaf(W), leaf(x)
    ft = ((Wt @ xt) ** 2).sum()
    ft.backward()
    f, dW, dx = ref.matmul_l2_forward_backward(W, x)
    assert isinstance(f, float)
    close(f, ft)
    close(dW, Wt.grad)
    close(dx, xt.grad)


SSR_KEYS = ("w1", "w2", "w3", "w4", "b1", "b2", "b3")


def _random_ssr_problem(rng, n):
    x = rng.uniform(-2, 2, n)
    y = rng.uniform(-1, 2, n)
    params = {k: float(v) for k, v in zip(SSR_KEYS, rng.uniform(-3, 3, 7), strict=True)}
    return x, y, params


@fast
@given(n=st.integers(1, 8), seed=seeds)
def test_ssr_forward_matches_torch(n, seed):
    rng = np.random.default_rng(seed)
    x, _, p = _random_ssr_problem(rng, n)
    xt = t(x)
    blue = F.softplus(p["w1"] * xt + p["b1"])
    orange = F.softplus(p["w2"] * xt + p["b2"])
    green = p["w3"] * blue + p["w4"] * orange + p["b3"]
    out = ref.ssr_forward(x, p)
    assert set(out) == {"y_blue", "y_orange", "y_green"}
    close(out["y_blue"], blue)
    close(out["y_orange"], orange)
    close(out["y_green"], green)


@fast
@given(n=st.integers(1, 8), seed=seeds)
def test_ssr_output_grads_matches_torch(n, seed):
    rng = np.random.default_rng(seed)
    x, y, p = _random_ssr_problem(rng, n)
    xt, yt = t(x), t(y)
    pt = {k: leaf(v) for k, v in p.items()}
    blue = F.softplus(pt["w1"] * xt + pt["b1"])
    orange = F.softplus(pt["w2"] * xt + pt["b2"])
    green = pt["w3"] * blue + pt["w4"] * orange + pt["b3"]
    ((yt - green) ** 2).sum().backward()
    g = ref.ssr_output_grads(x, y, p)
    assert set(g) == {"b3", "w3", "w4"}
    for k in ("b3", "w3", "w4"):
        assert isinstance(g[k], float)
        close(g[k], pt[k].grad)


# ---------------------------------------------------------------------------
# lesson 02: activations and BCE
# ---------------------------------------------------------------------------

ELEMENTWISE = [
    (ref.sigmoid, ref.sigmoid_prime, torch.sigmoid),
    (ref.relu, ref.relu_prime, torch.relu),
    (ref.tanh, ref.tanh_prime, torch.tanh),
]


@pytest.mark.parametrize("fn,prime,torch_fn", ELEMENTWISE,
                         ids=["sigmoid", "relu", "tanh"])
@fast
@given(shape=any_shapes, seed=seeds, scale=st.sampled_from([1.0, 5.0, 30.0]))
def test_activation_and_derivative_match_torch(fn, prime, torch_fn, shape, seed, scale):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape) * scale
    z = np.where(rng.random(shape) < 0.2, 0.0, z)  # exact zeros: ReLU'(0) must be 0
    zt = leaf(z)
    out = torch_fn(zt)
    out.sum().backward()  # elementwise, so d(sum)/dz_i = f'(z_i)
    close(fn(z), out)
    close(prime(z), zt.grad)


EXTREME_Z = [-1e308, -1000.0, -710.0, 0.0, 710.0, 1000.0, 1e308]


def test_sigmoid_no_warnings_at_extremes_and_matches_torch():
    z = np.array(EXTREME_Z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ref.sigmoid(z)
        scalars = [float(ref.sigmoid(v)) for v in EXTREME_Z]
        sp = ref.sigmoid_prime(z)
    # sigmoid(-710) = e^-710 / (1 + e^-710) is subnormal (~4.5e-309), not 0.
    np.testing.assert_array_equal(s[[0, 1, 3, 4, 5, 6]], [0.0, 0.0, 0.5, 1.0, 1.0, 1.0])
    assert 4.4e-309 < s[2] < 4.6e-309
    np.testing.assert_array_equal(scalars, s)
    assert np.all(np.isfinite(sp))
    close(s, torch.sigmoid(t(z)))
    zt = leaf(z)
    torch.sigmoid(zt).sum().backward()
    close(sp, zt.grad)
    # Large but representable results: tiny, yet not flushed to 0 early.
    close(ref.sigmoid(np.array([-700.0, -30.0, 30.0])), torch.sigmoid(t([-700.0, -30.0, 30.0])))


def test_relu_prime_at_zero_is_zero_and_torch_agrees():
    z = np.array([-1.0, -0.0, 0.0, 1e-300, 2.0])
    np.testing.assert_array_equal(ref.relu_prime(z), [0.0, 0.0, 0.0, 1.0, 1.0])
    assert float(ref.relu_prime(0.0)) == 0.0
    zt = leaf(z)
    torch.relu(zt).sum().backward()
    np.testing.assert_array_equal(zt.grad.numpy(), [0.0, 0.0, 0.0, 1.0, 1.0])


def _n(shape):
    return 1 if len(shape) == 0 else shape[0]


@fast
@given(shape=bce_shapes, seed=seeds, hard=st.booleans())
def test_bce_matches_torch(shape, seed, hard):
    rng = np.random.default_rng(seed)
    y_hat = rng.uniform(0.01, 0.99, shape)
    y = (rng.random(shape) < 0.5).astype(float) if hard else rng.random(shape)
    expected = F.binary_cross_entropy(t(y_hat), t(y), reduction="sum") / _n(shape)
    value = ref.bce(y_hat, y)
    assert isinstance(value, float)
    close(value, expected)


def test_bce_certain_and_right_is_zero():
    # 0 log 0 = 0: perfect certain predictions cost nothing (torch agrees).
    y = np.array([[1.0], [0.0]])
    assert ref.bce(y, y) == 0.0
    assert float(F.binary_cross_entropy(t(y), t(y))) == 0.0


@fast
@given(shape=bce_shapes, seed=seeds, scale=st.sampled_from([1.0, 10.0, 50.0]))
def test_bce_with_logits_and_delta_match_torch(shape, seed, scale):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape) * scale
    y = (rng.random(shape) < 0.5).astype(float)
    zt = leaf(z)
    J = F.binary_cross_entropy_with_logits(zt, t(y), reduction="sum") / _n(shape)
    J.backward()
    value = ref.bce_with_logits(z, y)
    assert isinstance(value, float)
    close(value, J)
    close(ref.bce_sigmoid_delta(z, y), zt.grad)


# ---------------------------------------------------------------------------
# lesson 03: softmax and cross-entropy
# ---------------------------------------------------------------------------

@fast
@given(shape=batched_shapes, seed=seeds, scale=st.sampled_from([1.0, 10.0, 1e4]))
def test_softmax_and_log_softmax_match_torch(shape, seed, scale):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape) * scale
    s = ref.softmax(z)
    close(s, torch.softmax(t(z), dim=-1))
    close(ref.log_softmax(z), torch.log_softmax(t(z), dim=-1))
    close(s.sum(axis=-1), np.ones(shape[:-1]))


def test_softmax_stable_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4],
                  [1e4, 1e4 - 1.0, 1e4 - 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ref.softmax(z)
        ls = ref.log_softmax(z)
    assert not np.any(np.isnan(s)) and not np.any(np.isnan(ls))
    close(s.sum(axis=1), np.ones(4))
    close(s, torch.softmax(t(z), dim=1))
    close(ls, torch.log_softmax(t(z), dim=1))
    close(s[1], [0.5, 0.5, 0.0])
    close(s[2], np.full(3, 1 / 3))


@fast
@given(n=sizes, seed=seeds)
def test_softmax_jacobian_matches_torch(n, seed):
    z = np.random.default_rng(seed).standard_normal(n) * 2
    J = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, dim=0), t(z))
    Jr = ref.softmax_jacobian(z)
    close(Jr, J)
    close(Jr, Jr.T)
    close(Jr.sum(axis=0), np.zeros(n))


@fast
@given(shape=batched_shapes, seed=seeds)
def test_softmax_backward_matches_torch(shape, seed):
    rng = np.random.default_rng(seed)
    z, dout = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    zt = leaf(z)
    torch.softmax(zt, dim=-1).backward(t(dout))
    close(ref.softmax_backward(z, dout), zt.grad)


@fast
@given(N=batch_sizes, C=sizes, seed=seeds, scale=st.sampled_from([1.0, 10.0, 100.0]))
def test_cross_entropy_and_grad_match_torch(N, C, seed, scale):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((N, C)) * scale
    labels = rng.integers(0, C, N)
    onehot = np.eye(C)[labels]
    Zt = leaf(Z)
    J = F.cross_entropy(Zt, torch.tensor(labels))  # mean over the N samples
    J.backward()
    for Y in (labels, onehot):
        value = ref.cross_entropy(Z, Y)
        assert isinstance(value, float)
        close(value, J)
        close(ref.softmax_cross_entropy_grad(Z, Y), Zt.grad)
    # torch's probability-target form gives the same for one-hot rows.
    close(ref.cross_entropy(Z, onehot), F.cross_entropy(t(Z), t(onehot)))


@fast
@given(N=batch_sizes, C=sizes, seed=seeds)
def test_cross_entropy_soft_targets_match_torch(N, C, seed):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((N, C)) * 3
    P = rng.dirichlet(np.ones(C), N)
    Zt = leaf(Z)
    J = F.cross_entropy(Zt, t(P))
    J.backward()
    close(ref.cross_entropy(Z, P), J)
    close(ref.softmax_cross_entropy_grad(Z, P), Zt.grad)


# ---------------------------------------------------------------------------
# lesson 04: dense layers, activations by name, backprop, SGD
# ---------------------------------------------------------------------------

@fast
@given(N=batch_sizes, n=sizes, seed=seeds)
def test_mse_matches_torch(N, n, seed):
    rng = np.random.default_rng(seed)
    A, Y = rng.standard_normal((N, n)), rng.standard_normal((N, n))
    At = leaf(A)
    J = 0.5 * F.mse_loss(At, t(Y), reduction="sum") / N
    J.backward()
    value = ref.mse(A, Y)
    assert isinstance(value, float)
    close(value, J)
    close((A - Y) / N, At.grad)  # the gradient the docstring promises


@fast
@given(N=batch_sizes, n_in=sizes, n_out=sizes, seed=seeds)
def test_dense_forward_backward_match_torch(N, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N, n_in))
    W, b = rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)
    dZ = rng.standard_normal((N, n_out))
    At, Wt, bt = leaf(A), leaf(W), leaf(b)
    Z = F.linear(At, Wt, bt)
    Z.backward(t(dZ))
    close(ref.dense_forward(A, W, b), Z)
    dA, dW, db = ref.dense_backward(dZ, A, W)
    close(dA, At.grad)
    close(dW, Wt.grad)
    close(db, bt.grad)


TORCH_ACT = {
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "identity": lambda z: z,
    "softmax": lambda z: torch.softmax(z, dim=-1),
}


def test_every_activation_is_covered():
    assert set(TORCH_ACT) == set(ref.ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(TORCH_ACT))
@fast
@given(N=batch_sizes, n=sizes, seed=seeds)
def test_activation_forward_backward_match_torch(name, N, n, seed):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((N, n)) * 3
    Z = np.where(rng.random((N, n)) < 0.15, 0.0, Z)  # relu at exactly 0
    dA = rng.standard_normal((N, n))
    Zt = leaf(Z)
    At = TORCH_ACT[name](Zt)
    At.backward(t(dA))
    A = ref.activation_forward(name, Z)
    close(A, At)
    close(ref.activation_backward(name, Z, A, dA), Zt.grad)




def _torch_loss_and_grads(params, X, Y, activations, loss):
    """The loss and its gradients by autograd, built here independently."""
    leaves = [(leaf(W), leaf(b)) for W, b in params]
    A = t(X)
    for (W, b), act in zip(leaves, activations, strict=True):
        Z = A @ W.T + b
        A = TORCH_ACT[act](Z)
    N = X.shape[0]
    if loss == "mse":
        J = 0.5 * F.mse_loss(A, t(Y), reduction="sum") / N
    elif loss == "bce":
        J = F.binary_cross_entropy(A, t(Y), reduction="sum") / N
    else:  # cross_entropy takes the last layer's pre-activations Z
        target = torch.tensor(Y) if np.ndim(Y) == 1 else t(Y)
        J = F.cross_entropy(Z, target)
    J.backward()
    return float(J.detach()), [(W.grad.numpy(), b.grad.numpy()) for W, b in leaves]


# More examples than elsewhere: many (depth, activation, loss) combinations, each cheap.
@settings(max_examples=150, deadline=None, database=None)
@given(net=networks())
def test_backprop_matches_torch_autograd(net):
    params, X, Y, activations, loss = net
    before = [(W.copy(), b.copy()) for W, b in params]
    value, grads = ref.backprop(params, X, Y, activations, loss)
    expected_value, expected_grads = _torch_loss_and_grads(params, X, Y, activations, loss)
    assert isinstance(value, float)
    close(value, expected_value)
    assert len(grads) == len(params)
    for (dW, db), (eW, eb), (W, b) in zip(grads, expected_grads, params, strict=True):
        assert dW.shape == W.shape and db.shape == b.shape
        close(dW, eW)
        close(db, eb)
    for (W, b), (W0, b0) in zip(params, before, strict=True):  # inputs untouched
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_backprop_covers_every_valid_output_pair():
    # The strategy above draws from OUTPUT_LOSS; make sure it is the full list.
    assert {loss for loss, _ in OUTPUT_LOSS} == set(ref.LOSSES)
    assert {a for loss, a in OUTPUT_LOSS if loss == "mse"} == set(ref.ACTIVATIONS)


@settings(max_examples=60, deadline=None, database=None)
@given(net=networks())
def test_torch_backprop_equals_backprop(net):
    params, X, Y, activations, loss = net
    value, grads = ref.backprop(params, X, Y, activations, loss)
    tvalue, tgrads = ref.torch_backprop(params, X, Y, activations, loss)
    assert isinstance(tvalue, float)
    close(tvalue, value)
    for (dW, db), (tW, tb) in zip(grads, tgrads, strict=True):
        assert isinstance(tW, np.ndarray) and isinstance(tb, np.ndarray)
        close(tW, dW)
        close(tb, db)


@pytest.mark.parametrize("fn", [ref.backprop, "torch_backprop"])
@pytest.mark.parametrize("loss,last", [("bce", "softmax"), ("bce", "identity"),
                                       ("cross_entropy", "sigmoid"), ("cross_entropy", "relu")])
def test_invalid_output_loss_pairs_are_rejected(fn, loss, last):
    fn = ref.torch_backprop if fn == "torch_backprop" else fn
    rng = np.random.default_rng(0)
    params = [(rng.standard_normal((2, 3)), rng.standard_normal(2))]
    with pytest.raises(ValueError, match="activations"):
        fn(params, rng.standard_normal((4, 3)), np.eye(2)[[0, 1, 1, 0]], (last,), loss)


@fast
@given(net=networks(), lr=st.sampled_from([1e-3, 0.1, 1.0, 2.5]))
def test_sgd_step_matches_torch_optim_sgd(net, lr):
    params, X, Y, activations, loss = net
    _, grads = ref.backprop(params, X, Y, activations, loss)
    before = [(W.copy(), b.copy()) for W, b in params]
    new = ref.sgd_step(params, grads, lr)
    leaves = [p for W, b in params for p in (leaf(W), leaf(b))]
    for p, g in zip(leaves, [g for pair in grads for g in pair], strict=True):
        p.grad = t(g)
    torch.optim.SGD(leaves, lr=lr).step()
    flat_new = [p for pair in new for p in pair]
    for got, want in zip(flat_new, leaves, strict=True):
        close(got, want)
    for (W, b), (W0, b0) in zip(params, before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


# ---------------------------------------------------------------------------
# lesson 05: custom autograd Functions and the grad_fn graph
# ---------------------------------------------------------------------------

@fast
@given(shape=any_shapes, seed=seeds)
def test_my_sigmoid_gradcheck_and_matches_torch_sigmoid(shape, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape) * 3
    dout = rng.standard_normal(shape)
    assert torch.autograd.gradcheck(ref.MySigmoid.apply, (leaf(z),), eps=1e-6, atol=1e-8)
    zt, zr = leaf(z), leaf(z)
    out = ref.MySigmoid.apply(zt)
    expected = torch.sigmoid(zr)
    out.backward(t(dout))
    expected.backward(t(dout))
    assert out.dtype == torch.float64
    close(out, expected)
    close(zt.grad, zr.grad)


@fast
@given(N=batch_sizes, n_in=sizes, n_out=sizes, seed=seeds)
def test_my_linear_gradcheck_and_matches_torch_linear(N, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n_in))
    W, b = rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)
    dZ = rng.standard_normal((N, n_out))
    assert torch.autograd.gradcheck(ref.MyLinear.apply, (leaf(X), leaf(W), leaf(b)),
                                    eps=1e-6, atol=1e-8)
    mine = [leaf(a) for a in (X, W, b)]
    theirs = [leaf(a) for a in (X, W, b)]
    Z = ref.MyLinear.apply(*mine)
    Zr = F.linear(*theirs)
    Z.backward(t(dZ))
    Zr.backward(t(dZ))
    close(Z, Zr)
    for a, r in zip(mine, theirs, strict=True):
        close(a.grad, r.grad)
    # X as plain data (no grad): W and b still get the right gradients.
    Wt, bt = leaf(W), leaf(b)
    ref.MyLinear.apply(t(X), Wt, bt).backward(t(dZ))
    close(Wt.grad, theirs[1].grad)
    close(bt.grad, theirs[2].grad)


def _x(n=3):
    return torch.linspace(-1, 1, n, dtype=torch.float64).requires_grad_()


def test_grad_fn_chain_simple():
    x = _x()
    assert ref.grad_fn_chain((x * 2).sum()) == ["SumBackward0", "MulBackward0", "AccumulateGrad"]


def test_grad_fn_chain_fan_out_lists_shared_node_once():
    x = _x()
    a = x * 2  # used twice below: a fan-out
    chain = ref.grad_fn_chain((a.sin() + a.cos()).sum())
    assert chain == ["SumBackward0", "AddBackward0", "SinBackward0", "CosBackward0",
                     "MulBackward0", "AccumulateGrad"]
    # The same leaf reached twice through one node: one AccumulateGrad.
    assert ref.grad_fn_chain((x * x).sum()) == ["SumBackward0", "MulBackward0",
                                                "AccumulateGrad"]


def test_grad_fn_chain_two_leaves_and_constants():
    x, y = _x(), _x()
    c = torch.ones(3, dtype=torch.float64)  # no grad: no node, nothing listed
    assert ref.grad_fn_chain((x * y).sum()) == ["SumBackward0", "MulBackward0",
                                                "AccumulateGrad", "AccumulateGrad"]
    assert ref.grad_fn_chain((x * c).exp()) == ["ExpBackward0", "MulBackward0",
                                                "AccumulateGrad"]


def test_grad_fn_chain_custom_function_and_leaf():
    x = _x()
    assert ref.grad_fn_chain(ref.MySigmoid.apply(x).sum()) == [
        "SumBackward0", "MySigmoidBackward", "AccumulateGrad"]
    with pytest.raises(ValueError):
        ref.grad_fn_chain(x)  # a leaf has no grad_fn
