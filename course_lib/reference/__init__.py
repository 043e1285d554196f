"""Reference answers: every graded function of the course, one module per lesson.

    chain_rule   lesson 01  add/mul/max gates, a sigmoid neuron, ‖Wx‖², seed 003
    sigmoid      lesson 02  sigmoid and friends, their derivatives, BCE
    softmax      lesson 03  softmax, its Jacobian and VJP, cross-entropy
    mlp          lesson 04  dense layers, backprop, SGD
    autograd     lesson 05  a scalar autograd engine, then the same with PyTorch
                            (loaded lazily; torch only for the PyTorch names)

This package holds the answers, so it lives only where grading runs; nothing a
student uses imports it. ``python -m course_lib.reference`` prints every seed
example reproduced by these functions.
"""

from __future__ import annotations

import importlib

from .chain_rule import (
    add_gate_backward,
    fanout_forward_backward,
    matmul_l2_forward_backward,
    max_gate_backward,
    mul_gate_backward,
    neuron_forward_backward,
    ssr_forward,
    ssr_output_grads,
)
from .mlp import (
    ACTIVATIONS,
    LOSSES,
    activation_backward,
    activation_forward,
    backprop,
    dense_backward,
    dense_forward,
    mlp_forward,
    mse,
    sgd_step,
)
from .sigmoid import (
    bce,
    bce_sigmoid_delta,
    bce_with_logits,
    relu,
    relu_prime,
    sigmoid,
    sigmoid_prime,
    tanh,
    tanh_prime,
)
from .softmax import (
    cross_entropy,
    log_softmax,
    softmax,
    softmax_backward,
    softmax_cross_entropy_grad,
    softmax_jacobian,
)

# Lesson 05's names: resolved on first use (PEP 562), so that
# `import course_lib.reference` stays light for lessons 1 to 4 (the PyTorch ones
# import torch then; the engine, Value and engine_train, does not).
_TORCH_NAMES = {"torch_backprop", "MySigmoid", "MyLinear", "grad_fn_chain", "Value",
                "engine_train"}


def __getattr__(name):
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(".autograd", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _TORCH_NAMES)


__all__ = [
    "ACTIVATIONS", "LOSSES",
    "add_gate_backward", "mul_gate_backward", "max_gate_backward", "fanout_forward_backward",
    "neuron_forward_backward", "matmul_l2_forward_backward", "ssr_forward", "ssr_output_grads",
    "sigmoid", "sigmoid_prime", "relu", "relu_prime", "tanh", "tanh_prime",
    "bce", "bce_with_logits", "bce_sigmoid_delta",
    "softmax", "log_softmax", "softmax_jacobian", "softmax_backward",
    "cross_entropy", "softmax_cross_entropy_grad",
    "mse", "dense_forward", "dense_backward", "activation_forward", "activation_backward",
    "mlp_forward", "backprop", "sgd_step",
    *sorted(_TORCH_NAMES),
]
