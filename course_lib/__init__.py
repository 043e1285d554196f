"""course_lib: the library behind the backpropagation course.

Student-facing (no answers inside):
    course_lib.gradcheck   numerical gradients, rel_error, a gradient checker
    course_lib.nets        the seed networks as ready-made parameters
    course_lib.data        small generated data sets (spirals, XOR, moons, blobs)
    course_lib.figures     the lessons' plots (matplotlib)
    course_lib.widgets     interactive explorers (ipywidgets), gradients by complex step

Grading side (answers inside, installed only where grading runs):
    course_lib.manifest    each lesson's exercises: parts, points, known mistakes (no answers)
    course_lib.reference   the reference implementation of every graded function
    course_lib.grading     the checks hidden tests call
    course_lib.instructor  the `course` command: release, collect, grade, report, check

One name per lesson in every layer: lesson 02 is ``reference/sigmoid.py``,
``grading/sigmoid.py``, ``widgets/sigmoid.py``, ``figures/sigmoid.py`` and
``manifest/sigmoid.toml`` (slugs: chain_rule, sigmoid, softmax, mlp, autograd).

Importing ``course_lib`` loads none of these, and never torch or matplotlib:
each submodule is imported on first access (``course_lib.nets`` works without
an explicit ``import course_lib.nets``), and modules that need torch or
matplotlib import them themselves.

Derivative names: what a function's suffix says it returns
-----------------------------------------------------------
``f_prime(z)``
    f'(z), the derivative of an elementwise function, at the pre-activation z
    (``sigmoid_prime``, ``relu_prime``, ``tanh_prime``): same shape as z.
``f_jacobian(z)``
    the whole Jacobian matrix J[i, j] = ∂f_i/∂z_j of a vector function
    (``softmax_jacobian``: n × n), for looking at, never for a backward pass.
``node_backward(..., dout)``
    one node's backward pass: given the upstream gradient ``dout`` = ∂L/∂out,
    the downstream gradients ∂L/∂input = local × upstream, one per input and of
    its shape (``add_gate_backward``, ``dense_backward``; ``softmax_backward`` is
    the vector-Jacobian product doutᵀ J without building J).
``graph_forward_backward(inputs)``
    a small whole graph, both passes at once: its value and the gradient of that
    value with respect to each input (``fanout_forward_backward``,
    ``neuron_forward_backward``, ``matmul_l2_forward_backward``); no ``dout``,
    the output's own gradient is 1.
``loss_grad(Z, Y)``
    ∂J/∂Z, the gradient of a scalar loss with respect to its logits, through
    the activation and the loss at once (``softmax_cross_entropy_grad``).
``loss_delta(z, y)``
    δ = ∂J/∂z, the error signal at a layer's pre-activation in Nielsen's
    notation, with the batch mean's 1/N inside (``bce_sigmoid_delta``).
``example_output_grads(x, y, params)``
    the gradients of a loss with respect to the output layer's parameters
    only, by name (``ssr_output_grads``: a dict for b3, w3, w4).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {"gradcheck", "nets", "data", "figures", "widgets",       # student-facing
               "manifest", "reference", "grading", "instructor"}         # grading side


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES)
