"""The seed examples of COURSE.md, reproduced by course_lib.reference.

Each expected value is the one COURSE.md lists, rounded to 6 decimal places
(or 7-8 significant digits). A value printed to 6 decimals is matched to half a
unit in its last place (atol 5e-7): tighter would fail on the rounding itself,
looser would accept a different number.
"""

import numpy as np
import pytest

from course_lib import nets
from course_lib import reference as R

SIX_DIGITS = {"rtol": 0, "atol": 5e-7}


def run(net):
    cache = R.mlp_forward(net.params, net.X, net.activations)
    loss, grads = R.backprop(net.params, net.X, net.Y, net.activations, net.loss)
    return cache, loss, grads


def test_seed000_forward_loss_and_bias_gradients():
    cache, loss, grads = run(nets.seed000())
    np.testing.assert_allclose(cache[1][1][0], [0.413382, 0.679179, 0.365864, 0.425557],
                               **SIX_DIGITS)
    np.testing.assert_allclose(cache[2][1][0], [0.515852, 0.484148], **SIX_DIGITS)
    assert loss == pytest.approx(0.2343997, rel=1e-6)
    np.testing.assert_allclose(grads[1][1], [-0.241831, 0.241831], **SIX_DIGITS)
    np.testing.assert_allclose(grads[0][1], [-0.029322, 0.036886, 0.011221, -0.035471],
                               **SIX_DIGITS)
    # single sample: every dW is the outer product of δ and the previous activation
    np.testing.assert_allclose(grads[1][0], np.outer(grads[1][1], cache[1][1][0]), rtol=1e-12)


def test_seed001_two_layer_bce():
    cache, loss, grads = run(nets.seed001())
    assert cache[-1][1][0, 0] == pytest.approx(0.7954926, rel=1e-6)
    assert loss == pytest.approx(0.2287937, rel=1e-6)
    np.testing.assert_allclose(grads[1][0], [[-0.138897, -0.138897]], **SIX_DIGITS)
    np.testing.assert_allclose(grads[0][0][:, 0], [-0.022281, -0.022281], **SIX_DIGITS)
    np.testing.assert_allclose(grads[0][0][:, 1], [-0.044561, -0.044561], **SIX_DIGITS)


def test_seed004_batch_of_two_with_dead_unit_and_relu_at_zero():
    net = nets.seed004()
    cache, loss, grads = run(net)
    np.testing.assert_allclose(cache[-1][1][:, 0], [0.09112296, 0.74459692], rtol=1e-7)
    assert loss == pytest.approx(0.19522886, rel=1e-7)
    np.testing.assert_allclose(grads[2][1], [-0.08214], rtol=1e-4)  # listed to 4 digits
    np.testing.assert_allclose(grads[2][0], [[-1.021612, -0.925294]], **SIX_DIGITS)
    # unit 3 of layer 1 is dead for both samples: its gradients are exactly 0
    assert np.all(cache[1][0][:, 2] < 0)
    assert np.all(grads[0][0][2] == 0.0) and grads[0][1][2] == 0.0
    # Z2[0, 0] is exactly 0 and ReLU'(0) = 0 blocks sample 0's gradient through it
    assert cache[2][0][0, 0] == 0.0
    only_sample_1 = R.backprop(net.params, net.X[1:], net.Y[1:], net.activations, net.loss)[1]
    # with the mean over 2 samples, sample 0 adds nothing to layer 2 unit 0's bias
    assert grads[1][1][0] == pytest.approx(only_sample_1[1][1][0] / 2, rel=1e-12)


def test_seed003_output_gradients_and_the_seed_errata():
    ex = nets.seed003()
    right = R.ssr_output_grads(ex.x, ex.y, ex.params)
    assert right["b3"] == pytest.approx(-1.76581, rel=1e-5)
    # the seed's forward pass computed y_orange with w1, b1
    seed_params = dict(ex.params, w2=ex.params["w1"], b2=ex.params["b1"])
    assert R.ssr_output_grads(ex.x, ex.y, seed_params)["b3"] == pytest.approx(-0.28055, rel=1e-5)
    # the seed's -5.71643 is -2 * SSR (its mistake), not the derivative
    fwd = R.ssr_forward(ex.x, seed_params)
    ssr = np.sum((ex.y - fwd["y_green"]) ** 2)
    assert -2 * ssr == pytest.approx(-5.716432424534343, rel=1e-12)
    assert -2 * ssr != pytest.approx(R.ssr_output_grads(ex.x, ex.y, seed_params)["b3"])
    # gradient descent subtracts the step (the seed added it) with lr = 0.01
    assert ex.learning_rate == 0.01
    b3_new = ex.params["b3"] - ex.learning_rate * right["b3"]
    loss_before = np.sum((ex.y - R.ssr_forward(ex.x, ex.params)["y_green"]) ** 2)
    loss_after = np.sum((ex.y - R.ssr_forward(ex.x, dict(ex.params, b3=b3_new))["y_green"]) ** 2)
    assert loss_after < loss_before


def test_cs231n_neuron_and_vectorised_examples():
    f, dw, dx = R.neuron_forward_backward([2.0, -3.0, -3.0], [-1.0, -2.0])
    assert f == pytest.approx(0.7310585786300049, rel=1e-12)  # σ(1)
    np.testing.assert_allclose(dw, [-0.19661193, -0.39322387, 0.19661193], rtol=1e-7)
    np.testing.assert_allclose(dx, [0.39322387, -0.5898358], rtol=1e-7)
    f, dW, dx = R.matmul_l2_forward_backward([[0.1, 0.5], [-0.3, 0.8]], [0.2, 0.4])
    assert f == pytest.approx(0.116, rel=1e-12)
    np.testing.assert_allclose(dW, [[0.088, 0.176], [0.104, 0.208]], rtol=1e-12)
    np.testing.assert_allclose(dx, [-0.112, 0.636], rtol=1e-12)


def test_reference_main_prints_every_seed_number(capsys):
    from course_lib.reference.__main__ import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "Every seed number reproduced." in out
