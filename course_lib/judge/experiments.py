"""The fixed probes the judge may run on a student's object inside the kernel.

Most checks only *call* the student's function: the arguments go to the kernel
and the result comes back as plain data (judge.wire). Some answers cannot be
called that way: a ``torch.autograd.Function`` subclass must be applied and
back-propagated where it lives, and a graph walker needs a live autograd graph.
For those, a check asks for one of the experiments below by name, with plain
inputs (arrays, numbers, strings); the experiment runs the student's object on
them in the kernel and returns plain data (arrays, numbers, strings, tuples,
lists, dicts of those). The check compares that data with the reference in the
grading process.

An experiment holds no answer: it only says *what to do* with the student's
object (apply it, call backward, read .grad). Exceptions raised by the
student's code propagate unchanged.

Inputs arrive as numpy arrays and become float64 tensors here; results leave
as copies (a tensor detached, an array copied), never as live objects such as
a ctx, a grad_fn or a tensor whose graph matters: those are read here and
reported as facts (a bool, a class name, a list of copies). torch is imported
inside the experiments that need it, so that this module loads in a kernel
without torch.

An experiment's report is only as honest as the kernel it runs in: a notebook
can replace this module. So a check earns points only from values that the
student's code computed for the judge's inputs (an output, the gradients after
backward, the names of a graph's nodes), which a forged experiment could only
send by computing the right answer. A fact an experiment reports about the
kernel itself (that an object is a Function class, that two calls received the
very same objects) may only take points away, never give them.
"""

from __future__ import annotations

import sys

EXPERIMENTS: dict = {}


def experiment(fn):
    """Register ``fn(obj, **inputs) -> plain data`` under its name."""
    EXPERIMENTS[fn.__name__] = fn
    return fn


def run_experiment(obj, name: str, inputs: dict):
    """Run experiment ``name`` on the student's object ``obj`` with ``inputs``."""
    if name not in EXPERIMENTS:
        raise KeyError(f"no experiment named {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name](obj, **inputs)


# ----------------------------------------------------------------------------
# Helpers: plain inputs in, plain facts out
# ----------------------------------------------------------------------------

def _leaf(a, requires_grad: bool = False):
    """A float64 tensor of its own (never sharing the caller's array) from plain data."""
    import numpy as np
    import torch

    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64,
                        requires_grad=bool(requires_grad))


def _leaves(args, requires_grad):
    requires_grad = list(requires_grad) if requires_grad is not None else [False] * len(args)
    return [_leaf(a, rg) for a, rg in zip(args, requires_grad, strict=True)]


def _tensor_class():
    """torch.Tensor, or None: no tensor can exist before torch is imported, nor while
    a lesson of manual gradients is graded ("torch" is then a stub whose every
    attribute raises ImportError, judge.sandbox.NO_TORCH)."""
    try:
        return sys.modules["torch"].Tensor
    except (KeyError, ImportError, AttributeError):
        return None


def _snapshot(value):
    """``value`` with every tensor detached and copied and every array copied.

    A tensor's graph, ``.grad`` and identity must not leave the experiment (the
    boundary would not carry them anyway); copying now also freezes what the
    student returned against later changes. Tuples and lists (subclasses too)
    become plain ones, as the boundary would see them only if plain; anything
    else is left for the boundary to describe (type name and repr).
    """
    import numpy as np

    tensor = _tensor_class()
    if tensor is not None and isinstance(value, tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    return value


def _apply(cls, args, requires_grad):
    """``cls.apply`` on fresh float64 leaves: (leaves, output)."""
    leaves = _leaves(args, requires_grad)
    return leaves, cls.apply(*leaves)


# ----------------------------------------------------------------------------
# torch.autograd.Function subclasses (MySigmoid, MyLinear)
# ----------------------------------------------------------------------------

@experiment
def autograd_function_kind(obj):
    """Whether ``obj`` is a class subclassing torch.autograd.Function, and its repr."""
    import torch

    is_function = isinstance(obj, type) and issubclass(obj, torch.autograd.Function)
    return {"is_function_class": bool(is_function), "repr": repr(obj)[:200]}


@experiment
def function_apply(cls, args, requires_grad=None):
    """``cls.apply(*args)`` on float64 tensors: the output (detached) and whether it has a grad_fn.

    ``requires_grad`` (one bool per argument) makes leaves that require grad, so
    that autograd records the call (and forward's ctx) as the output's grad_fn.
    """
    _, out = _apply(cls, args, requires_grad)
    return {"out": _snapshot(out), "has_grad_fn": getattr(out, "grad_fn", None) is not None}


@experiment
def function_apply_many(cls, args_list):
    """``cls.apply(*args)`` for each argument list of ``args_list`` (no input requires grad),
    in one request: the outputs, detached, in order.

    For a check that needs many forward values of the same class (finite
    differences: two for each entry of each input), which would otherwise cost a
    round trip to the kernel each.
    """
    return [_snapshot(_apply(cls, args, None)[1]) for args in args_list]


@experiment
def function_backward(cls, args, grad_out):
    """``cls.backward(ctx, grad_out)`` called directly, on the ctx that forward filled.

    Every argument requires grad. Autograd would reduce a gradient of the wrong
    shape (it sums a (N, n_out) bias gradient by itself); the direct call shows
    exactly what backward returns.
    """
    _, out = _apply(cls, args, [True] * len(args))
    return _snapshot(cls.backward(out.grad_fn, _leaf(grad_out)))


@experiment
def function_autograd_grads(cls, args, requires_grad, grad_out, how="backward"):
    """The leaves' ``.grad`` (copied; None where there is none) after back-propagating.

    how: "backward" runs ``cls.apply(*args).backward(grad_out)``; "weighted_sum"
    runs ``(cls.apply(*args) * grad_out).sum().backward()``. Both give the same
    gradients for a right answer; they fail differently on a wrong output shape.
    """
    leaves, out = _apply(cls, args, requires_grad)
    g = _leaf(grad_out)
    if how == "backward":
        out.backward(g)
    elif how == "weighted_sum":
        (out * g).sum().backward()
    else:
        raise ValueError(f"how: expected 'backward' or 'weighted_sum', got {how!r}")
    return [None if leaf.grad is None else _snapshot(leaf.grad) for leaf in leaves]


@experiment
def function_grads_input_changed(cls, args, change, grad_out):
    """The leaves' ``.grad`` when the inputs change in place between forward and backward.

    Each argument becomes a leaf that requires grad and enters ``cls.apply`` as a
    copy (``leaf.clone()``, which may change in place); after forward, ``change[i]``
    is added to copy i in place (as to a buffer reused before backward runs; None
    leaves that input alone), then
    ``out.backward(grad_out)``. Only the gradients come back: what a backward
    computes from what forward kept decides them (or autograd refuses a saved
    tensor whose version changed, and that error propagates).
    """
    import torch

    leaves = _leaves(args, [True] * len(args))
    inputs = [leaf.clone() for leaf in leaves]
    out = cls.apply(*inputs)
    with torch.no_grad():
        for x, d in zip(inputs, change, strict=True):
            if d is not None:
                x.add_(_leaf(d))
    out.backward(_leaf(grad_out))
    return [None if leaf.grad is None else _snapshot(leaf.grad) for leaf in leaves]


@experiment
def function_grads_saved_replaced(cls, args, saved, grad_out):
    """The leaves' ``.grad`` after back-propagating, with what forward saved read back as ``saved``.

    ``cls.apply(*leaves)`` (every argument requires grad) runs under saved-tensor
    hooks (``torch.autograd.graph.saved_tensors_hooks``): every tensor that forward
    stores with ``ctx.save_for_backward`` and that has the shape of ``saved`` reads
    back in backward as a fresh tensor of the values ``saved`` (any other reads
    back unchanged); then ``out.backward(grad_out)``. Only the gradients come back:
    they show what backward computes from what it reads in ``ctx.saved_tensors``.
    """
    import torch

    leaves = _leaves(args, [True] * len(args))
    replacement = _leaf(saved)

    def unpack(t):
        return replacement.clone() if tuple(t.shape) == tuple(replacement.shape) else t

    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, unpack):
        out = cls.apply(*leaves)
    out.backward(_leaf(grad_out))
    return [None if leaf.grad is None else _snapshot(leaf.grad) for leaf in leaves]


# ----------------------------------------------------------------------------
# Functions that need identity across calls (torch_backprop)
# ----------------------------------------------------------------------------

@experiment
def call_twice(fn, args):
    """``fn(*args)`` twice on the very same argument objects, as a caller reusing them would.

    Identity matters here and would not cross the boundary: a function that
    caches state keyed on its arguments (leaves kept per params list) shows it
    only when called twice with the same objects, and arrays it returned from
    the first call may share memory with state that the second call changes.
    Returns copies of the first result as returned (``first``), of the same
    objects after the second call (``first_later``), of the second result
    (``second``), and the arguments after both calls (``args_after``).
    """
    first = fn(*args)
    at_return = _snapshot(first)
    second = fn(*args)
    return {"first": at_return, "first_later": _snapshot(first), "second": _snapshot(second),
            "args_after": _snapshot(list(args))}


# ----------------------------------------------------------------------------
# Graph walkers (grad_fn_chain)
# ----------------------------------------------------------------------------

_CUBE = []


def _cube_function():
    """A custom autograd Function that is no exercise's answer: z ↦ z³ (built on first use)."""
    if not _CUBE:
        import torch

        class Cube(torch.autograd.Function):
            @staticmethod
            def forward(ctx, z):
                ctx.save_for_backward(z)
                return z ** 3

            @staticmethod
            def backward(ctx, grad_out):
                (z,) = ctx.saved_tensors
                return grad_out * 3 * z ** 2

        _CUBE.append(Cube)
    return _CUBE[0]


def build_graph(graph: str, arrays: dict):
    """The tensor at the top of the autograd graph named ``graph``, from plain arrays.

    The judge builds the same graph in the grading process (same function, same
    arrays) to know the expected walk; here it is built for the student's walker.
    Which leaves require grad is part of the graph's definition.
    """
    import torch
    import torch.nn.functional as F

    a = {k: _leaf(v) for k, v in arrays.items()}

    def grad(*names):
        for name in names:
            a[name].requires_grad_(True)

    if graph == "sigmoid_affine":  # f = sigmoid(w @ x + b); x does not require grad
        grad("w", "b")
        return torch.sigmoid(a["w"] @ a["x"] + a["b"])
    if graph == "two_layer_mse":  # 0.5 * ((A2 - Y) ** 2).sum() / N
        grad("W1", "b1", "W2", "b2")
        A2 = torch.softmax(torch.tanh(a["X"] @ a["W1"].T + a["b1"]) @ a["W2"].T + a["b2"], dim=1)
        return 0.5 * ((A2 - a["Y"]) ** 2).sum() / a["X"].shape[0]
    if graph == "linear_mse_loss":  # F.linear and F.mse_loss
        grad("W1", "b1", "W2", "b2")
        return F.mse_loss(F.linear(torch.relu(F.linear(a["X"], a["W1"], a["b1"])), a["W2"],
                                   a["b2"]), a["Y"])
    if graph == "square_sum":  # (a * a).sum(): one leaf used twice
        grad("a")
        return (a["a"] * a["a"]).sum()
    if graph == "fan_out":  # u = M @ v feeds three uses
        grad("M")
        u = a["M"] @ a["v"]
        return (torch.tanh(u) * torch.exp(u) + u).sum()
    if graph == "diamond":  # (h + h * w).exp() with h = w * c
        grad("w", "c")
        h = a["w"] * a["c"]
        return (h + h * a["w"]).exp()
    if graph == "custom_function":  # a node of a custom autograd Function
        grad("z")
        return _cube_function().apply(a["z"] * 2.0).sum()
    raise KeyError(f"no graph named {graph!r}")


@experiment
def walk_graph(fn, graph, arrays):
    """``fn(t)`` for the tensor ``t`` of ``build_graph(graph, arrays)``, described item by item.

    A walker returns a list of class names; wrong ones return grad_fn nodes,
    tensors or their printed forms, which would not cross the boundary as
    themselves. Returns ``{"type", "sequence", "items"}``: the result's type name,
    whether it is a list or tuple, and for each item ``[kind, type name, text]``
    with kind "node" (it has next_functions), "tensor", "str" (text: the string)
    or "other" (text: its repr).
    """
    import torch

    got = fn(build_graph(graph, arrays))
    sequence = isinstance(got, list | tuple)
    items = []
    for item in (got if sequence else ()):
        if hasattr(item, "next_functions"):
            kind, text = "node", ""
        elif isinstance(item, torch.Tensor):
            kind, text = "tensor", ""
        elif isinstance(item, str):
            kind, text = "str", str.__str__(item)
        else:
            kind, text = "other", repr(item)[:200]
        items.append([kind, type(item).__name__, text])
    return {"type": type(got).__name__, "sequence": sequence, "items": items}


# ----------------------------------------------------------------------------
# A scalar autograd engine (the Value class of lesson 05's first part)
# ----------------------------------------------------------------------------
#
# An expression travels as plain data: a list of nodes, each a list whose first
# item names the operation and whose other items are earlier nodes' indices or
# constant numbers; the last node is the output. A node used by several later
# ones is a fan-out. ``EXPRESSION_OPS`` says what each operation does with the
# student's objects; the same table builds the expression from torch tensors or
# from the reference engine on the grading side, so that the three graphs have
# the same nodes in the same order.
#
#     [["leaf", 2.0], ["leaf", -1.5], ["mul", 0, 1], ["exp", 2], ["add", 3, 0]]
#     is  e^(a·b) + a  with a = 2, b = -1.5

EXPRESSION_OPS = {
    # name: (number of node operands, number of constants, what it does)
    "add": (2, 0, lambda a, b: a + b),
    "mul": (2, 0, lambda a, b: a * b),
    "sub": (2, 0, lambda a, b: a - b),
    "div": (2, 0, lambda a, b: a / b),
    "neg": (1, 0, lambda a: -a),
    "pow": (1, 1, lambda a, k: a ** k),          # a ** k, k a constant number
    "add_const": (1, 1, lambda a, c: a + c),     # a + 2.5
    "mul_const": (1, 1, lambda a, c: a * c),     # a * 2.5
    "radd": (1, 1, lambda a, c: c + a),          # 2.5 + a (__radd__)
    "rmul": (1, 1, lambda a, c: c * a),          # 2.5 * a (__rmul__)
    "exp": (1, 0, lambda a: a.exp()),
    "tanh": (1, 0, lambda a: a.tanh()),
    "sigmoid": (1, 0, lambda a: a.sigmoid()),
    "relu": (1, 0, lambda a: a.relu()),
}


def build_expression(make_leaf, nodes):
    """The objects of expression ``nodes`` (see above), leaves made by ``make_leaf(x)``.

    Returns the list of objects, one per node, in order (the output last).
    """
    built = []
    for node in nodes:
        op, *rest = node
        if op == "leaf":
            built.append(make_leaf(float(rest[0])))
            continue
        if op not in EXPRESSION_OPS:
            raise KeyError(f"no expression operation named {op!r}")
        n_nodes, n_consts, do = EXPRESSION_OPS[op]
        if len(rest) != n_nodes + n_consts:
            raise ValueError(f"{op}: expected {n_nodes} node(s) and {n_consts} constant(s)")
        operands = [built[int(i)] for i in rest[:n_nodes]]
        built.append(do(*operands, *(float(c) for c in rest[n_nodes:])))
    return built


def _reading(obj, attr: str):
    """``obj.<attr>`` as a float, or a description of what is there instead."""
    try:
        value = getattr(obj, attr)
    except AttributeError:
        return {"missing": attr, "type": type(obj).__name__}
    if isinstance(value, bool):
        return {"type": "bool", "repr": repr(value)}
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return {"type": type(value).__name__, "repr": repr(value)[:100]}


@experiment
def value_backward(cls, nodes, backward=True):
    """Build ``nodes`` from the student's ``cls`` (leaves ``cls(x)``), then ``out.backward()``.

    Returns ``{"data": [...], "grad": [...]}``: every node's ``.data`` and
    ``.grad`` as floats, in the order of ``nodes`` (an entry that is not a number
    comes back as a dict describing it). With ``backward=False`` the backward
    pass is not run (the forward values alone).
    """
    built = build_expression(cls, nodes)
    if backward:
        built[-1].backward()
    return {"data": [_reading(v, "data") for v in built],
            "grad": [_reading(v, "grad") for v in built]}


@experiment
def value_topological_order(cls, nodes):
    """``out.topological_order()`` for the output of ``nodes``, told as node indices.

    Returns ``{"type", "sequence", "items"}``: the result's type name, whether it
    is a list or tuple, and for each item the index of the node it is (by
    identity), or ``-1`` for an object of ``cls`` that is none of them (a number
    wrapped into a Value by an operation), or the type name of anything else.
    """
    built = build_expression(cls, nodes)
    index = {id(v): i for i, v in enumerate(built)}
    got = built[-1].topological_order()
    sequence = isinstance(got, list | tuple)
    items = []
    for item in (got if sequence else ()):
        if id(item) in index:
            items.append(index[id(item)])
        else:
            items.append(-1 if isinstance(item, cls) else type(item).__name__)
    return {"type": type(got).__name__, "sequence": sequence, "items": items}
