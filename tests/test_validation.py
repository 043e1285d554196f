"""Bad input to every public reference function: a ValueError that says what was expected."""

import numpy as np
import pytest

from course_lib import reference as R

rng = np.random.default_rng(0)
v3, v2, m23, m32 = np.ones(3), np.ones(2), np.ones((2, 3)), np.ones((3, 2))
NET = [(np.ones((4, 3)), np.zeros(4)), (np.ones((2, 4)), np.zeros(2))]
X13, Y12 = np.ones((1, 3)), np.array([[1.0, 0.0]])
SSR = dict(w1=0.5, w2=-0.1, w3=0.6, w4=1.5, b1=0.0, b2=0.0, b3=0.0)

CASES = [
    # (id, call, regex the message must match)
    ("mul shapes", lambda: R.mul_gate_backward(v3, v2, v3), r"y: expected the same shape as x, \(3,\)"),
    ("mul dout", lambda: R.mul_gate_backward(v3, v3, m23), r"dout: expected the same shape as x"),
    ("max shapes", lambda: R.max_gate_backward(v2, v3, v2), r"y: expected the same shape as x"),
    ("add none", lambda: R.add_gate_backward(None), r"dout: expected an array of numbers"),
    ("add text", lambda: R.add_gate_backward("abc"), r"dout: expected an array of numbers"),
    ("fanout shapes", lambda: R.fanout_forward_backward(v3, v2), r"y: expected the same shape as x, \(3,\)"),
    ("neuron w", lambda: R.neuron_forward_backward(v2, v2), r"w: expected shape \(3,\), got \(2,\)"),
    ("neuron x", lambda: R.neuron_forward_backward(v3, v3), r"x: expected shape \(2,\), got \(3,\)"),
    ("l2 W 1-D", lambda: R.matmul_l2_forward_backward(v3, v3), r"W: expected shape \(m, n\)"),
    ("l2 x", lambda: R.matmul_l2_forward_backward(m23, v2), r"x: expected shape \(n=3,\), got \(2,\)"),
    ("ssr keys", lambda: R.ssr_output_grads(v3, v3, {"w1": 1.0}), r"params: missing key\(s\) w2"),
    ("ssr type", lambda: R.ssr_output_grads(v3, v3, [1, 2]), r"params: expected a dict"),
    ("ssr y", lambda: R.ssr_output_grads(v3, v2, SSR), r"y: expected shape \(n=3,\)"),
    ("ssr fwd x", lambda: R.ssr_forward(m23, SSR), r"x: expected a 1-D array"),
    ("sigmoid nan", lambda: R.sigmoid([0.0, np.nan]), r"z: contains NaN"),
    ("relu' inf", lambda: R.relu_prime([np.inf]), r"z: contains inf"),
    ("bce shapes", lambda: R.bce(np.full(3, 0.5), np.ones((3, 1))), r"y: expected the same shape as y_hat"),
    ("bce range", lambda: R.bce([1.5], [1.0]), r"y_hat: expected probabilities in \[0, 1\]"),
    ("bce 3-D", lambda: R.bce(np.ones((1, 1, 1)), np.ones((1, 1, 1))), r"y_hat: expected a 0-D or 1-D or 2-D"),
    ("bce y range", lambda: R.bce([0.5], [2.0]), r"y: expected targets in \[0, 1\]"),
    ("delta shapes", lambda: R.bce_sigmoid_delta(v3, v2), r"y: expected the same shape as z"),
    ("softmax scalar", lambda: R.softmax(1.0), r"z: expected shape \(\.\.\., n\)"),
    ("jacobian 2-D", lambda: R.softmax_jacobian(m23), r"z: expected shape \(n,\), got \(2, 3\)"),
    ("vjp shapes", lambda: R.softmax_backward(m23, m32), r"dout: expected the same shape as z, \(2, 3\)"),
    ("ce 1-D Z", lambda: R.cross_entropy(v3, v3), r"Z: expected shape \(N, C\), got \(3,\)"),
    ("ce labels", lambda: R.cross_entropy(m23, np.array([0, 3])), r"Y: integer class labels must lie in \[0, 2\]"),
    ("ce label count", lambda: R.cross_entropy(m23, np.array([0, 1, 2])), r"Y: expected shape \(N=2,\)"),
    ("ce one-hot shape", lambda: R.cross_entropy(m23, m32), r"Y: expected shape \(N=2, C=3\)"),
    ("ce not one-hot", lambda: R.cross_entropy(m23, np.ones((2, 3))), r"Y: each row must be one-hot"),
    ("ce float labels", lambda: R.softmax_cross_entropy_grad(m23, np.array([0.0, 1.0])), r"use an integer dtype"),
    ("mse shapes", lambda: R.mse(m23, m32), r"Y: expected shape \(N=2, n_out=3\)"),
    ("dense X 1-D", lambda: R.dense_forward(v3, m23, v2), r"A_prev: expected shape \(N, n_in\), got \(3,\)"),
    ("dense W.T", lambda: R.dense_forward(np.ones((5, 3)), m32, v2), r"W: expected shape \(n_out, n_in=3\), got \(3, 2\) \(axis 1 must be n_in=3"),
    ("dense b", lambda: R.dense_forward(np.ones((5, 3)), m23, v3), r"b: expected shape \(n_out=2,\), got \(3,\)"),
    ("dense_backward dZ", lambda: R.dense_backward(np.ones((5, 3)), np.ones((5, 3)), m23), r"dZ: expected shape \(N=5, n_out=2\)"),
    ("activation name", lambda: R.activation_forward("softplus", m23), r"activation: unknown value 'softplus'; expected one of 'sigmoid'"),
    ("activation_backward name", lambda: R.activation_backward("gelu", m23, m23, m23), r"unknown value 'gelu'"),
    ("backprop loss", lambda: R.backprop(NET, X13, Y12, ("sigmoid", "softmax"), "hinge"), r"loss: unknown value 'hinge'; expected one of 'mse', 'bce', 'cross_entropy'"),
    ("backprop act", lambda: R.backprop(NET, X13, Y12, ("sigmoid", "Softmax"), "mse"), r"activations\[1\]: unknown value 'Softmax'"),
    ("backprop act count", lambda: R.backprop(NET, X13, Y12, ("sigmoid",), "mse"), r"activations: expected one name per layer \(2 layers\), got 1"),
    ("backprop act str", lambda: R.backprop(NET, X13, Y12, "sigmoid", "mse"), r"activations: expected a sequence of names"),
    ("backprop X 1-D", lambda: R.backprop(NET, np.ones(3), Y12, ("sigmoid", "softmax"), "mse"), r"X: expected shape \(N, n_0\), got \(3,\)"),
    ("backprop X width", lambda: R.backprop(NET, np.ones((1, 2)), Y12, ("sigmoid", "softmax"), "mse"), r"params\[0\] W: expected shape \(n_1, n_0=2\), got \(4, 3\)"),
    ("backprop chain", lambda: R.backprop([NET[0], (np.ones((2, 5)), np.zeros(2))], X13, Y12, ("sigmoid", "softmax"), "mse"), r"params\[1\] W: expected shape \(n_2, n_1=4\), got \(2, 5\)"),
    ("backprop b", lambda: R.backprop([(np.ones((4, 3)), np.zeros(3))], X13, np.ones((1, 4)), ("sigmoid",), "mse"), r"params\[0\] b: expected shape \(n_1=4,\), got \(3,\)"),
    ("backprop Y", lambda: R.backprop(NET, X13, np.ones((1, 3)), ("sigmoid", "softmax"), "mse"), r"Y: expected shape \(N=1, n_2=2\), got \(1, 3\)"),
    ("backprop pair", lambda: R.backprop(NET[0], X13, Y12, ("sigmoid",), "mse"), r"params: expected a list of \(W, b\) pairs, one per layer; got a single"),
    ("backprop empty", lambda: R.backprop([], X13, Y12, (), "mse"), r"params: expected a non-empty list"),
    ("backprop bce act", lambda: R.backprop(NET, X13, Y12, ("sigmoid", "softmax"), "bce"), r"with loss 'bce' the last layer must be 'sigmoid'"),
    ("backprop ce act", lambda: R.backprop(NET, X13, Y12, ("sigmoid", "sigmoid"), "cross_entropy"), r"with loss 'cross_entropy' the last layer must be 'softmax' or 'identity'"),
    ("sgd lr", lambda: R.sgd_step(NET, NET, -0.1), r"lr: expected a finite value > 0"),
    ("sgd lr type", lambda: R.sgd_step(NET, NET, "0.1"), r"lr: expected a number"),
    ("sgd count", lambda: R.sgd_step(NET, NET[:1], 0.1), r"grads: expected one \(dW, db\) pair per layer \(2\), got 1"),
    ("sgd shape", lambda: R.sgd_step(NET, [(np.ones((3, 4)), np.zeros(4)), NET[1]], 0.1), r"grads\[0\] dW: expected shape \(n_out=4, n_in=3\), got \(3, 4\)"),
]


@pytest.mark.parametrize("call, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_value_error_naming_the_expectation(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


TORCH_CASES = [
    ("torch_backprop loss", lambda R: R.torch_backprop(NET, X13, Y12, ("sigmoid", "softmax"), "l1"), r"loss: unknown value 'l1'"),
    ("torch_backprop act", lambda R: R.torch_backprop(NET, X13, Y12, ("sigmoid", "swish"), "mse"), r"activations\[1\]: unknown value 'swish'"),
    ("torch_backprop Y", lambda R: R.torch_backprop(NET, X13, np.ones((2, 2)), ("sigmoid", "softmax"), "mse"), r"Y: expected shape \(N=1, n_out=2\), got \(2, 2\)"),
    ("torch_backprop W", lambda R: R.torch_backprop(NET, np.ones((1, 5)), Y12, ("sigmoid", "softmax"), "mse"), r"params\[0\] W: expected shape"),
    ("grad_fn_chain type", lambda R: R.grad_fn_chain(np.ones(3)), r"t: expected a torch.Tensor, got ndarray"),
    ("grad_fn_chain leaf", lambda R: R.grad_fn_chain(__import__("torch").ones(3)), r"t: has no grad_fn"),
    ("Value data", lambda R: R.Value("2"), r"data: expected a number, got str"),
    ("Value exponent", lambda R: R.Value(2.0) ** R.Value(2.0), r"k \(the exponent: a constant number\): expected a number, got Value"),
    ("engine_train Y", lambda R: R.engine_train(NET, X13, np.ones((1, 3)), 0.1, 1), r"Y: expected shape \(N=1, n_2=2\), got \(1, 3\)"),
    ("engine_train steps", lambda R: R.engine_train(NET, X13, Y12, 0.1, 2.5), r"steps: expected an integer, got 2.5"),
]


@pytest.mark.parametrize("call, pattern", [c[1:] for c in TORCH_CASES], ids=[c[0] for c in TORCH_CASES])
def test_bad_input_to_torch_functions(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(R)


def test_every_public_function_is_covered():
    """A new public function must get a bad-input case in this file."""
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    # Constants, and autograd Functions whose inputs torch itself checks.
    exempt = {"ACTIVATIONS", "LOSSES", "MySigmoid", "MyLinear"}
    missing = [n for n in R.__all__ if n not in exempt and f"R.{n}" not in source]
    assert not missing, f"no bad-input test for {missing}"


@pytest.mark.parametrize("fn", [R.relu, R.tanh, R.sigmoid_prime, R.tanh_prime, R.log_softmax])
def test_elementwise_functions_reject_nan(fn):
    with pytest.raises(ValueError, match="z: contains NaN"):
        fn([1.0, np.nan])


def test_bce_with_logits_and_mlp_forward_check_shapes():
    with pytest.raises(ValueError, match="y: expected the same shape as z"):
        R.bce_with_logits(v3, v2)
    with pytest.raises(ValueError, match=r"X: expected shape \(N, n_0\)"):
        R.mlp_forward(NET, v3, ("sigmoid", "softmax"))
