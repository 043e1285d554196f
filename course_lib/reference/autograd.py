"""Lesson 05: a scalar autograd engine of your own, then PyTorch's.

Two halves, one lesson:

* **The engine** (``Value``, ``engine_train``): a reverse-mode autograd engine on
  Python floats, micrograd-style. Each operation builds a node that knows its
  inputs and how to send a gradient back to them; ``backward()`` visits the
  nodes in reverse topological order. Pure Python (``math``) and numpy only:
  this half imports without torch.
* **PyTorch** (``torch_backprop``, ``MySigmoid``, ``MyLinear``, ``grad_fn_chain``):
  the same engine, industrial strength. torch is imported the first time one of
  these names is used (``MySigmoid`` and ``MyLinear`` subclass
  ``torch.autograd.Function``, so they are built on first access, PEP 562).
  Everything runs in float64, so that autograd and the numpy ``backprop`` agree
  to ~1e-15.

``course_lib.reference`` loads this module lazily, the first time one of its
names is used.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import as_float, check_choice, check_positive
from .mlp import LOSSES, _check_network
from .softmax import targets_as_probabilities

# MySigmoid and MyLinear are built on first use (module __getattr__, below).
__all__ = ["Value", "engine_train", "torch_backprop", "MySigmoid", "MyLinear",  # noqa: F822
           "grad_fn_chain"]


# ----------------------------------------------------------------------------
# The engine: a scalar Value and the graph that made it
# ----------------------------------------------------------------------------

def _number(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise ValueError(f"{name}: expected a number, got {type(x).__name__}")
    return float(x)


class Value:
    """A scalar that remembers how it was computed, so that it can be differentiated.

    ``Value(2.0)`` is a leaf. Every operation on Values returns a new Value whose
    ``_prev`` holds its inputs and whose ``_backward`` adds, into each input's
    ``grad``, the input's share of the output's gradient: the **local
    derivative times the upstream gradient** (the chain rule of Lesson 1). Each
    operation's backward is written beside its forward, so the two cannot drift
    apart.

    Attributes:
        data: the value (a Python float).
        grad: ∂(root)/∂(this node) after ``root.backward()``; 0.0 before.
            Gradients are *added* into ``grad`` (``+=``): a node used twice (a
            fan-out) receives one contribution per use, and the multivariable
            chain rule says they sum. ``backward()`` itself never resets
            ``grad``, exactly as PyTorch's ``.grad``: zero it between
            training steps.
        _prev: the input nodes (a tuple; ``a * a`` lists ``a`` twice).
        _op: the operation's symbol, for display (``"+"``, ``"exp"``, ...).

    Operations: ``+ - * /`` with Values or Python numbers on either side,
    ``-v``, ``v ** k`` for a constant number ``k``, and ``v.exp()``,
    ``v.tanh()``, ``v.sigmoid()``, ``v.relu()``. A Python number is wrapped
    in a leaf ``Value`` whose gradient nobody reads.
    """

    def __init__(self, data, _children=(), _op: str = ""):
        self.data = _number(data, "data")
        self.grad = 0.0
        self._backward = lambda: None  # a leaf has no inputs to pass a gradient to
        self._prev = tuple(_children)
        self._op = _op

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    @staticmethod
    def _wrap(other) -> Value:
        return other if isinstance(other, Value) else Value(other)

    # --- the primitive operations: forward and backward side by side ---------

    def __add__(self, other) -> Value:
        """out = a + b.

        ∂out/∂a = ∂out/∂b = 1: an add gate hands the upstream gradient to both
        inputs unchanged (Lesson 1's "gradient distributor").
        """
        other = self._wrap(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other) -> Value:
        """out = a · b.

        ∂out/∂a = b and ∂out/∂b = a: each input's local derivative is the
        *other* input's value (the "swap" of Lesson 1's multiply gate). For
        ``a * a`` both lines add into ``a.grad``, giving 2a, as d(a²)/da says.
        """
        other = self._wrap(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, k) -> Value:
        """out = x^k for a constant number k (not a Value).

        ∂out/∂x = k·x^(k-1), the power rule. (The derivative with respect to
        the exponent, x^k·ln x, is a different quantity: k is a constant here
        and gets no gradient.) x^k must be defined: a non-integer k needs
        x > 0, a negative k needs x ≠ 0.
        """
        k = _number(k, "k (the exponent: a constant number)")
        out = Value(self.data ** k, (self,), f"**{k:g}")

        def _backward():
            self.grad += k * self.data ** (k - 1) * out.grad

        out._backward = _backward
        return out

    def exp(self) -> Value:
        """out = e^x.

        ∂out/∂x = e^x = out.data: the derivative is the output itself, so
        backward reuses it instead of computing the exponential again.
        """
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward():
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        """out = tanh(x) = (e^x - e^-x) / (e^x + e^-x).

        ∂out/∂x = 1 - tanh²(x) = 1 - out.data²: with t = tanh x,
        d/dx (sinh/cosh) = (cosh² - sinh²)/cosh² = 1 - t² (Lesson 2). Like the
        sigmoid, a function of the output alone.
        """
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward():
            self.grad += (1.0 - t * t) * out.grad

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        """out = σ(x) = 1 / (1 + e^-x), computed without overflow for any finite x.

        ∂out/∂x = σ(x)(1 - σ(x)) = s(1 - s) with s = out.data (Lesson 2:
        σ' = e^-x/(1 + e^-x)² = σ · (1 - σ)). For x < 0 the equal form
        e^x/(1 + e^x) is used, so that e^-x never overflows.
        """
        x = self.data
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:
            e = math.exp(x)
            s = e / (1.0 + e)
        out = Value(s, (self,), "sigmoid")

        def _backward():
            self.grad += s * (1.0 - s) * out.grad

        out._backward = _backward
        return out

    def relu(self) -> Value:
        """out = max(0, x).

        ∂out/∂x = 1 where x > 0 and 0 elsewhere; ReLU'(0) = 0 (the course's
        convention, and PyTorch's). The gradient passes through an active unit
        unchanged and is blocked by an inactive one.
        """
        x = self.data
        out = Value(x if x > 0 else 0.0, (self,), "relu")

        def _backward():
            self.grad += (1.0 if x > 0 else 0.0) * out.grad

        out._backward = _backward
        return out

    # --- everything else, built from the primitives ------------------------
    # Composites need no backward of their own: the graph records their
    # primitive steps, and the chain rule through them gives, e.g., for
    # a / b = a · b^-1: ∂/∂b = a · (-1) b^-2 = -a/b².

    def __neg__(self) -> Value:  # -x = x · (-1): ∂/∂x = -1
        return self * -1.0

    def __sub__(self, other) -> Value:  # a - b = a + (-b): ∂/∂a = 1, ∂/∂b = -1
        return self + (-self._wrap(other))

    def __truediv__(self, other) -> Value:  # a / b = a · b^-1: ∂/∂a = 1/b, ∂/∂b = -a/b²
        return self * self._wrap(other) ** -1

    def __radd__(self, other) -> Value:  # c + x (a number on the left)
        return self + other

    def __rmul__(self, other) -> Value:  # c · x
        return self * other

    def __rsub__(self, other) -> Value:  # c - x
        return self._wrap(other) + (-self)

    def __rtruediv__(self, other) -> Value:  # c / x
        return self._wrap(other) * self ** -1

    # --- the backward pass -----------------------------------------------

    def topological_order(self) -> list[Value]:
        """Every node this one depends on, each once, **inputs before the nodes that use them**.

        Depth-first post-order: a node is appended only after all its inputs
        have been (so the list ends with ``self``). Reversed, it visits the
        output first and a node only after every node that uses it: by then
        all of the node's gradient contributions have arrived, so passing its
        gradient on is final. A ``visited`` set lists a node reached along two
        paths (a fan-out) once; listed twice, its backward would run twice
        and send its gradient down twice.

        Iterative (an explicit stack) rather than recursive, so that a deep
        graph (a long training loop unrolled) cannot hit Python's recursion
        limit.
        """
        order: list[Value] = []
        visited: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:
            node, inputs_done = stack.pop()
            if inputs_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))  # appended after its inputs, below on the stack
            stack.extend((child, False) for child in reversed(node._prev)
                         if id(child) not in visited)
        return order

    def backward(self) -> None:
        """∂self/∂node into every node's ``grad``: seed 1 here, then reverse topological order.

        ∂self/∂self = 1. Then each node, from the output down, runs its
        ``_backward``, adding local derivative × its (now complete) gradient
        into its inputs. Gradients add to whatever ``grad`` held before, as in
        PyTorch: call it on fresh graphs, or zero the leaves first.
        """
        order = self.topological_order()
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


# ----------------------------------------------------------------------------
# Training the 3-4-2 network of seed 000 with the engine
# ----------------------------------------------------------------------------

def network_loss(layers, X, Y) -> Value:
    """The MSE loss of a sigmoid-hidden, softmax-output network, as a graph of Values.

    Args:
        layers: list of (W, b) with W a list of rows of Values (n_out × n_in) and
            b a list of n_out Values.
        X: (N, n_in) numbers; Y: (N, n_out) numbers.
    Returns:
        J = (1/N) Σ_n ½ Σ_j (a_nj - y_nj)² as a Value; every sigmoid layer but
        the last, a softmax on the last, z_j = Σ_k w_jk a_k + b_j.

    The softmax is e^{z_j - m} / Σ_k e^{z_k - m} with m = max_k z_k taken as a
    plain number: shifting every logit by the same constant changes neither the
    softmax nor its derivatives, and keeps e^z from overflowing.
    """
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    N = X.shape[0]
    total = Value(0.0)
    for x, y in zip(X, Y, strict=True):
        a = [float(v) for v in x]
        for i, (W, b) in enumerate(layers):
            z = [sum((w * ak for w, ak in zip(row, a, strict=True)), bj)
                 for row, bj in zip(W, b, strict=True)]
            if i < len(layers) - 1:
                a = [zj.sigmoid() for zj in z]
            else:
                m = max(zj.data for zj in z)
                e = [(zj - m).exp() for zj in z]
                s = sum(e[1:], e[0])
                a = [ej / s for ej in e]
        total = total + 0.5 * sum(((aj - float(yj)) ** 2 for aj, yj in zip(a, y, strict=True)),
                                  Value(0.0))
    return total / N


def engine_train(params, X, Y, lr, steps):
    """Gradient descent on the seed-000 architecture, every gradient by the ``Value`` engine.

    The network: sigmoid hidden layers, a softmax output layer, the loss
    J = (1/N) Σ_n ½ Σ_j (a_nj - y_nj)² (``network_loss``). The parameters
    become Values once, before the loop, and are updated in place
    (``p.data -= lr * p.grad``), so their ``grad`` lives across steps and must
    be zeroed before each ``backward()``: otherwise step t would follow the
    sum of the gradients of steps 1..t.

    Args:
        params: list of (W, b) numpy arrays, W (n_out, n_in), b (n_out,). Not modified.
        X: (N, n_0); Y: (N, n_L); lr: the learning rate; steps: how many updates.
    Returns:
        (losses, params): the loss before each update (a list of ``steps``
        floats) and the parameters after the last one (new float64 arrays).
    """
    n_layers = len(params) if isinstance(params, list | tuple) and params else 1
    checked, X, dims = _check_network(params, X, ["sigmoid"] * (n_layers - 1) + ["softmax"])
    Y = dims.check("Y", as_float("Y", Y), ("N", f"n_{len(checked)}"))
    check_positive("lr", lr)
    check_positive("steps", steps, integer=True, allow_zero=True)
    layers = [([[Value(w) for w in row] for row in W], [Value(v) for v in b])
              for W, b in checked]
    leaves = [p for W, b in layers for p in [*(w for row in W for w in row), *b]]
    losses = []
    for _ in range(steps):
        loss = network_loss(layers, X, Y)
        for p in leaves:  # zero_grad(): the previous step's gradients must not add in
            p.grad = 0.0
        loss.backward()
        for p in leaves:
            p.data -= lr * p.grad
        losses.append(loss.data)
    return losses, [(np.array([[w.data for w in row] for row in W]),
                     np.array([v.data for v in b])) for W, b in layers]


# ----------------------------------------------------------------------------
# PyTorch: the same engine, industrial strength (torch imported on first use)
# ----------------------------------------------------------------------------

def _torch_activation(torch, name: str, Z):
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
    import torch

    check_choice("loss", loss, LOSSES)
    checked, X, _ = _check_network(params, X, activations)
    leaves = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
              for W, b in checked]
    A = torch.tensor(X)
    Z = A
    for (W, b), act in zip(leaves, activations, strict=True):
        Z = A @ W.T + b
        A = _torch_activation(torch, act, Z)
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


def _functions() -> dict:
    """MySigmoid and MyLinear, built the first time either is asked for (they need torch)."""
    import torch

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

    for cls in (MySigmoid, MyLinear):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return {"MySigmoid": MySigmoid, "MyLinear": MyLinear}


def __getattr__(name):
    # PEP 562: the Function subclasses exist once torch is imported, on first use.
    if name in ("MySigmoid", "MyLinear"):
        globals().update(_functions())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    import torch

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
