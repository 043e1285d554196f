"""Lesson 05: PyTorch autograd reproduces the manual gradients.

This is the only reference module that imports torch; ``course_lib.reference``
loads it lazily, the first time one of its names is used. Everything runs in
float64 so that autograd and the numpy ``backprop`` agree to ~1e-15.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validate import check_choice
from .mlp import LOSSES, _check_network
from .softmax import targets_as_probabilities

__all__ = ["torch_backprop", "MySigmoid", "MyLinear", "grad_fn_chain"]


def _torch_activation(name: str, Z: torch.Tensor) -> torch.Tensor:
    if name == "sigmoid":
        return torch.sigmoid(Z)
    if name == "relu":
        return torch.relu(Z)  # relu'(0) = 0 in torch, as in the course
    if name == "tanh":
        return torch.tanh(Z)
    if name == "softmax":
        return torch.softmax(Z, dim=-1)
    return Z


def torch_backprop(params, X, Y, activations, loss):
    """Same signature and result as ``reference.backprop``, computed by autograd.

    Args:
        params: list of L pairs (W, b) of numpy arrays, W^l: (n_l, n_{l-1}).
        X: shape (N, n_0).
        Y: shape (N, n_L); for "cross_entropy" also integer labels (N,).
        activations: L names; loss: "mse", "bce" or "cross_entropy".
    Returns:
        (loss_value, grads): a float and a list of L (dW, db) numpy pairs.
    """
    check_choice("loss", loss, LOSSES)
    checked, X, _ = _check_network(params, X, activations)
    leaves = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
              for W, b in checked]
    A = torch.tensor(X)
    Z = A
    for (W, b), act in zip(leaves, activations, strict=True):
        Z = A @ W.T + b
        A = _torch_activation(act, Z)
    N, n_out = Z.shape
    if loss == "cross_entropy":
        if activations[-1] not in ("softmax", "identity"):
            raise ValueError("activations: with loss 'cross_entropy' the last layer must be "
                             f"'softmax' or 'identity'; got {activations[-1]!r}")
        P = torch.tensor(targets_as_probabilities(Y, N, n_out))
        J = -(P * torch.log_softmax(Z, dim=-1)).sum() / N
    else:
        Yt = torch.tensor(np.asarray(Y, dtype=np.float64))
        if tuple(Yt.shape) != (N, n_out):
            raise ValueError(f"Y: expected shape (N={N}, n_out={n_out}), got {tuple(Yt.shape)}")
        if loss == "bce":
            if activations[-1] != "sigmoid":
                raise ValueError("activations: with loss 'bce' the last layer must be "
                                 f"'sigmoid', got {activations[-1]!r}")
            # binary_cross_entropy_with_logits averages over all entries; the
            # course averages over samples only, so sum and divide by N.
            J = torch.nn.functional.binary_cross_entropy_with_logits(
                Z, Yt, reduction="sum") / N
        else:
            J = 0.5 * ((A - Yt) ** 2).sum() / N
    J.backward()
    grads = [(W.grad.numpy().copy(), b.grad.numpy().copy()) for W, b in leaves]
    return float(J.detach()), grads


class MySigmoid(torch.autograd.Function):
    """σ(z) as a custom autograd Function: forward saves σ(z), backward uses σ(1-σ).

    Saving the OUTPUT rather than the input is the point: σ' = σ(1 - σ) needs
    nothing else, so backward does no exp at all.
    Shapes: z any shape S -> S; grad_out S -> S.
    """

    @staticmethod
    def forward(ctx, z):
        s = torch.sigmoid(z)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_out):
        (s,) = ctx.saved_tensors
        return grad_out * s * (1 - s)


class MyLinear(torch.autograd.Function):
    """Z = X @ Wᵀ + b as a custom autograd Function with the course's backward.

    forward(X (N, n_in), W (n_out, n_in), b (n_out,)) -> Z (N, n_out);
    backward(dZ (N, n_out)) -> (dZ @ W, dZᵀ @ X, dZ.sum(0)).
    """

    @staticmethod
    def forward(ctx, X, W, b):
        ctx.save_for_backward(X, W)
        return X @ W.T + b

    @staticmethod
    def backward(ctx, dZ):
        X, W = ctx.saved_tensors
        # Only compute what autograd asks for (needs_input_grad): X is often
        # data that needs no gradient.
        dX = dZ @ W if ctx.needs_input_grad[0] else None
        dW = dZ.T @ X if ctx.needs_input_grad[1] else None
        db = dZ.sum(0) if ctx.needs_input_grad[2] else None
        return dX, dW, db


def grad_fn_chain(t):
    """Names of the grad_fn nodes from ``t`` back to the leaves, breadth first.

    Each node appears once (a node reached along two paths, at a fan-out, is
    listed the first time). Leaves that require grad appear as
    "AccumulateGrad", the node that adds into their ``.grad``.

    Args:
        t: a torch.Tensor produced by operations on tensors requiring grad.
    Returns:
        list of str, e.g. ["SumBackward0", "MulBackward0", "AccumulateGrad"].
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t: expected a torch.Tensor, got {type(t).__name__}")
    if t.grad_fn is None:
        raise ValueError("t: has no grad_fn (it is a leaf or was computed without "
                         "requires_grad=True); nothing to trace")
    names, seen, queue = [], set(), [t.grad_fn]
    while queue:
        node = queue.pop(0)
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        queue.extend(child for child, _ in node.next_functions)
    return names
