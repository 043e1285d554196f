"""Lesson 05: PyTorch's grad_fn graph, the gradients it produces, and how .grad accumulates.

A small expression is built from leaf tensors ``a, b, c`` (float64,
``requires_grad=True``). The figure draws the graph that autograd recorded,
found by walking ``f.grad_fn.next_functions`` back to the leaves'
``AccumulateGrad`` nodes, with the gradient that arrived at each node during
``backward()`` (read with a hook) and each leaf's ``.grad``.

Two buttons show what trips people up:

* **backward() again** runs ``f.backward(retain_graph=True)`` a second time:
  ``.grad`` is *added to*, not replaced, so it doubles (then triples...);
* **zero_grad()** sets every ``.grad`` back to zero, as ``optimizer.zero_grad()``
  does before each step of a training loop.

Every number autograd produces is shown beside the same gradient computed by
complex step (:mod:`course_lib.widgets.complex_step`), which knows nothing of
PyTorch. One real difference shows up: at a tie ``a == c``, ``torch.maximum``
splits the gradient equally between its inputs, while the course's max gate
(and complex step here) sends all of it to the first.

:class:`EngineExplorer` does the same for the engine students write in part A of
the lesson: it builds a small expression with *their* ``Value`` class, runs their
``backward()``, and draws the graph with each node's ``data`` and ``grad``, marking
every number that differs from PyTorch's for the same expression.

This module imports torch, so it is not loaded by ``import course_lib.widgets``::

    >>> from course_lib.widgets.autograd import AutogradExplorer
    >>> AutogradExplorer()                    # f = (a·b + max(a, c))·σ(b)
    >>> AutogradExplorer("fanout")            # f = (a + b)·(a·c)
    >>> EngineExplorer(Value)                 # the student's Value: tanh(w1·x1 + w2·x2 + b)·w1
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import torch

from course_lib._drawing import GRADING
from course_lib._validate import check_choice
from course_lib.gradcheck import numerical_gradient

from ._base import (
    Control,
    Explorer,
    Logic,
    _ipywidgets,
    check_span,
    fmt,
    num_span,
    rel_err,
    table,
)
from .chain_rule import GraphNumbers, Node

__all__ = ["EXPRESSIONS", "Expression", "AutogradLogic", "AutogradExplorer", "walk_grad_fn",
           "ENGINE_EXPRESSIONS", "EngineExpression", "EngineLogic", "EngineExplorer"]


@dataclass(frozen=True)
class Expression:
    """A small expression: its inputs with default values, and its nodes in order."""

    title: str
    defaults: dict[str, float]
    nodes: tuple[Node, ...]


EXPRESSIONS: dict[str, Expression] = {
    "default": Expression(
        title="f = (a·b + max(a, c))·σ(b)",
        defaults={"a": 1.5, "b": -2.0, "c": 0.5},
        nodes=(Node("a", "input"), Node("b", "input"), Node("c", "input"),
               Node("p", "mul", ("a", "b"), expr="p = a·b"),
               Node("m", "max", ("a", "c"), expr="m = max(a, c)"),
               Node("s", "add", ("p", "m"), expr="s = p + m"),
               Node("g", "sigmoid", ("b",), expr="g = σ(b)"),
               Node("f", "mul", ("s", "g"), expr="f = s·g"))),
    "fanout": Expression(
        title="f = (a + b)·(a·c)",
        defaults={"a": 2.0, "b": -1.0, "c": 3.0},
        nodes=(Node("a", "input"), Node("b", "input"), Node("c", "input"),
               Node("q", "add", ("a", "b"), expr="q = a + b"),
               Node("r", "mul", ("a", "c"), expr="r = a·c"),
               Node("f", "mul", ("q", "r"), expr="f = q·r"))),
}

# op -> torch function of (inputs...)
_TORCH_OPS = {
    "add": lambda x, y: x + y,
    "mul": lambda x, y: x * y,
    "max": torch.maximum,
    "sigmoid": torch.sigmoid,
    "exp": torch.exp,
}


def walk_grad_fn(root) -> tuple[list, list[tuple[int, int]]]:
    """The autograd graph below ``root`` (a grad_fn): its nodes and edges.

    Follows ``next_functions`` (pairs ``(node, input_nr)``; ``None`` for an
    input that needs no gradient) depth first from ``root``.

    Returns:
        (nodes, edges): the distinct grad_fn objects, root first, and pairs
        ``(i, j)`` of indices into ``nodes``: node i passes gradient to node j.
    """
    nodes, index, edges = [], {}, []
    stack = [root]
    while stack:
        fn = stack.pop()
        if id(fn) in index:
            continue
        index[id(fn)] = len(nodes)
        nodes.append(fn)
        for nxt, _ in reversed(fn.next_functions):
            if nxt is not None and id(nxt) not in index:
                stack.append(nxt)
    for fn in nodes:
        for nxt, _ in fn.next_functions:
            if nxt is not None:
                edges.append((index[id(fn)], index[id(nxt)]))
    return nodes, edges


class AutogradLogic(GraphNumbers, Logic):
    """The numbers of :class:`AutogradExplorer`: PyTorch's gradients and complex step's.

    Args:
        expression: ``"default"`` (f = (a·b + max(a, c))·σ(b) at a = 1.5,
            b = -2, c = 0.5) or ``"fanout"`` (f = (a + b)·(a·c)).
        zero_before_backward: if True (default) every slider move zeroes
            ``.grad`` before its ``backward()``; if False the gradients pile
            up across moves, the bug of a training loop without ``zero_grad()``.

    The leaves are kept (their values are overwritten in place), so ``.grad``
    lives across calls as in a real training loop. Each :meth:`set` rebuilds
    ``f`` (a new graph) and calls ``f.backward(retain_graph=True)`` once;
    :meth:`backward_again` calls it once more on the same graph;
    :meth:`zero_grad` zeroes every ``.grad``.

    :meth:`values` returns ``"f"``; for each leaf x: ``"x"`` (its value),
    ``"x.grad"`` (PyTorch, accumulated), ``"df/dx"`` (complex step, one
    backward's worth), ``"df/dx (finite diff)"``; for each operation node n:
    ``"df/dn (torch)"`` (what reached its grad_fn in the last backward, via a
    hook) and ``"df/dn"`` (complex step); and ``"backward calls"`` since the
    last zeroing.
    """

    def __init__(self, expression: str = "default", zero_before_backward: bool = True) -> None:
        check_choice("expression", expression, tuple(EXPRESSIONS))
        self.expression = EXPRESSIONS[expression]
        self.nodes = self.expression.nodes
        self.leaves = [n.name for n in self.nodes if n.op == "input"]
        self.ops = [n.name for n in self.nodes if n.op != "input"]
        self.output = self.nodes[-1].name
        self.controls = {n: Control(n, v, -4.0, 4.0, 0.05, n)
                         for n, v in self.expression.defaults.items()}
        self.zero_before_backward = bool(zero_before_backward)
        super().__init__()
        self.tensors = {n: torch.tensor(self.state[n], dtype=torch.float64, requires_grad=True)
                        for n in self.leaves}
        self.backward_calls = 0
        self._hook_grads: dict[str, float] = {}
        self._build()
        self._backward()

    # --- torch --------------------------------------------------------------

    def _build(self) -> None:
        """Write the sliders into the leaves (in place) and record a new graph."""
        with torch.no_grad():
            for n in self.leaves:
                self.tensors[n].fill_(self.state[n])
        vals = dict(self.tensors)
        for node in self.nodes:
            if node.op != "input":
                vals[node.name] = _TORCH_OPS[node.op](*(vals[i] for i in node.inputs))
        self.values_t = vals
        self.f = vals[self.output]
        self.graph_nodes, self.graph_edges = walk_grad_fn(self.f.grad_fn)
        # which expression node each grad_fn belongs to
        self.node_of = {}
        for name, t in vals.items():
            fn = t.grad_fn if t.grad_fn is not None else _accumulator(t)
            self.node_of[id(fn)] = name
        self._hook_grads = {}
        for fn in self.graph_nodes:
            name = self.node_of.get(id(fn))
            if name is None or name in self.leaves:
                continue
            fn.register_prehook(lambda grads, name=name: self._record(name, grads))

    def _record(self, name: str, grads) -> None:
        self._hook_grads[name] = float(grads[0])

    def _backward(self) -> None:
        self.f.backward(retain_graph=True)
        self.backward_calls += 1

    def zero_grad(self) -> dict[str, float]:
        """Set every leaf's ``.grad`` to zero (as ``optimizer.zero_grad()``)."""
        for t in self.tensors.values():
            if t.grad is not None:
                t.grad.zero_()
        self.backward_calls = 0
        return self.values()

    def backward_again(self) -> dict[str, float]:
        """``f.backward(retain_graph=True)`` once more: every ``.grad`` grows by one gradient."""
        self._backward()
        return self.values()

    def _changed(self, names: set[str]) -> None:
        if not hasattr(self, "tensors"):
            return
        if self.zero_before_backward:
            for t in self.tensors.values():
                if t.grad is not None:
                    t.grad.zero_()
            self.backward_calls = 0
        self._build()
        self._backward()

    def reset(self) -> dict[str, float]:
        for t in self.tensors.values():
            t.grad = None
        self.backward_calls = 0
        return super().reset()

    # --- numbers --------------------------------------------------------------

    def values(self) -> dict[str, float]:
        out: dict[str, float] = {"f": float(self.f.detach())}
        for n in self.leaves:
            out[n] = self.state[n]
            g = self.tensors[n].grad
            out[f"{n}.grad"] = 0.0 if g is None else float(g)
            out[f"df/d{n}"] = self.df(n)
        x = np.array([self.state[n] for n in self.leaves])
        fd = numerical_gradient(lambda v: self.f_of(dict(zip(self.leaves, v, strict=True))), x)
        for n, g in zip(self.leaves, fd, strict=True):
            out[f"df/d{n} (finite diff)"] = float(g)
        for n in self.ops:
            if n == self.output:
                continue
            out[n] = float(self.values_t[n].detach())
            out[f"df/d{n}"] = self.df(n)
            out[f"df/d{n} (torch)"] = self._hook_grads.get(n, float("nan"))
        out["backward calls"] = float(self.backward_calls)
        return out

    def ties(self) -> list[str]:
        """max nodes whose two inputs are equal (where torch and the course differ)."""
        vals = self._forward()
        return [n.expr or n.name for n in self.nodes
                if n.op == "max" and vals[n.inputs[0]].real == vals[n.inputs[1]].real]


def _accumulator(t):
    """A leaf's AccumulateGrad node (what ``next_functions`` points at for it)."""
    return t.view_as(t).grad_fn.next_functions[0][0]


class AutogradExplorer(Explorer):
    """Sliders on a, b, c; the grad_fn graph with the gradients autograd computed.

    Args:
        expression: ``"default"`` or ``"fanout"`` (see :class:`AutogradLogic`).

    Controls: a slider per input, buttons ``backward() again`` and
    ``zero_grad()``, a checkbox ``zero .grad before each backward``.

    Displays (readout text): ``f = -0.1788``, ``backward calls = 1``; per
    leaf ``a.grad = -0.1192`` (class ``cl-torch``) and, as table cells with
    the number alone and the name in ``data-name``, ``df/da`` (complex step,
    ``cl-grad``) and ``df/da (finite diff)`` (``cl-fd``); per operation node
    ``df/dp (torch)`` (from a hook on its grad_fn) and ``df/dp``.
    """

    def __init__(self, expression: str = "default", zero_before_backward: bool = True) -> None:
        logic = AutogradLogic(expression, zero_before_backward)
        self.title = f"autograd: {logic.expression.title}"
        if GRADING:  # nothing is drawn while grading: no controls, no ipywidgets import
            super().__init__(logic)
            return
        W = _ipywidgets()
        self.again_button = W.Button(description="backward() again", icon="repeat",
                                     button_style="primary", layout=W.Layout(width="160px"))
        self.zero_button = W.Button(description="zero_grad()", icon="eraser",
                                    layout=W.Layout(width="160px"))
        self.zero_box = W.Checkbox(value=logic.zero_before_backward,
                                   description="zero .grad before each backward",
                                   indent=False, layout=W.Layout(width="330px"))
        self.again_button.on_click(lambda _b: self._guarded(self.logic.backward_again))
        self.zero_button.on_click(lambda _b: self._guarded(self.logic.zero_grad))
        self.zero_box.observe(lambda ch: setattr(self.logic, "zero_before_backward",
                                                 bool(ch["new"])), names="value")
        super().__init__(logic)

    def _control_children(self) -> list:
        W = _ipywidgets()
        return list(self.sliders.values()) + [
            W.HBox([self.again_button, self.zero_button]), self.zero_box]

    def _build_figure(self):
        from ._render import COLORS, BlitFigure

        lg: AutogradLogic = self.logic
        nodes, edges = lg.graph_nodes, lg.graph_edges
        # column = height above the leaves (leaves 0, the root the highest)
        children: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
        for i, j in edges:
            children[i].append(j)
        col: dict[int, int] = {}

        def height(i: int) -> int:
            if i not in col:
                col[i] = 1 + max((height(j) for j in children[i]), default=-1)
            return col[i]

        for i in range(len(nodes)):
            height(i)
        dmax = max(col.values())
        cols: dict[int, list[int]] = {}
        for i in range(len(nodes)):
            cols.setdefault(col[i], []).append(i)
        tall = max(len(v) for v in cols.values())
        bf = BlitFigure((10.5, max(3.6, 0.95 * tall + 1.3)))
        ax = bf.fig.add_axes((0.0, 0.0, 1.0, 0.9))
        ax.set_axis_off()
        ax.set_xlim(-0.75, dmax + 0.9)
        ax.set_ylim(-tall / 2 - 0.1, tall / 2 + 0.1)
        bf.fig.text(0.01, 0.95, f"grad_fn graph of {lg.expression.title}", fontsize=12,
                    weight="bold", va="center")
        bf.fig.text(0.99, 0.95, "arrows: f.grad_fn → next_functions (the way backward() goes)"
                    "    red: gradient arriving at a node", fontsize=8.5, ha="right",
                    va="center", color=COLORS["local"])
        pos = {}
        leaf_order = {name: k for k, name in enumerate(lg.leaves)}
        for c in range(dmax + 1):
            members = cols.get(c, [])
            if c == 0:
                members.sort(key=lambda i: leaf_order.get(lg.node_of.get(id(nodes[i])), 99))
            else:  # barycentre of the children: fewer crossings
                members.sort(key=lambda i: -np.mean([pos[j][1] for j in children[i]]))
            n = len(members)
            for r, i in enumerate(members):
                pos[i] = (float(c), (n - 1) / 2.0 - r)
        renderer = bf.canvas.get_renderer()
        inv = ax.transData.inverted()
        extents = {}
        self._leaf_lab, self._op_lab = {}, {}
        for i, fn in enumerate(nodes):
            x, y = pos[i]
            cls = type(fn).__name__
            name = lg.node_of.get(id(fn), "?")
            is_leaf = cls == "AccumulateGrad"
            node = next((n for n in lg.nodes if n.name == name), None)
            sub = name if is_leaf else (node.expr if node is not None else "")
            t = ax.text(x, y, f"{cls}\n{sub}", ha="center", va="center", fontsize=8.5,
                        linespacing=1.3, zorder=3,
                        bbox=dict(boxstyle="round,pad=0.45",
                                  fc="#eef6ff" if is_leaf else "#f6f8fa",
                                  ec=COLORS["accent"] if is_leaf else COLORS["node_edge"],
                                  lw=1.3))
            t.update_bbox_position_size(renderer)
            bb = t.get_bbox_patch().get_window_extent(renderer)
            (x0, y0), (x1, y1) = inv.transform([(bb.x0, bb.y0), (bb.x1, bb.y1)])
            extents[i] = (x0, y0, x1, y1)
            if is_leaf:
                self._leaf_lab[name] = (
                    bf.label(ax, x, y1, offset=(0, 3), va="bottom", size=9.5, bold=True,
                             color=COLORS["value"]),
                    bf.label(ax, x, y0, offset=(0, -3), va="top", size=10, bold=True,
                             color=COLORS["grad"]))
            else:
                self._op_lab[name] = bf.label(ax, x, y0, offset=(0, -3), va="top", size=9,
                                              bold=True, color=COLORS["grad"])
        for i, j in edges:
            (sx0, sy0, _, sy1), (_, ty0, tx1, ty1) = extents[i], extents[j]
            ax.annotate("", xy=(tx1, (ty0 + ty1) / 2), xytext=(sx0, (sy0 + sy1) / 2),
                        arrowprops=dict(arrowstyle="-|>", color=COLORS["grad"], lw=1.2,
                                        mutation_scale=11, shrinkA=1, shrinkB=1, alpha=0.8))
        rx1 = extents[0][2]
        ry = (extents[0][1] + extents[0][3]) / 2
        ax.annotate("", xy=(rx1, ry), xytext=(rx1 + 0.45, ry),
                    arrowprops=dict(arrowstyle="-|>", color=COLORS["grad"], lw=1.2,
                                    mutation_scale=11, shrinkA=0, shrinkB=1))
        ax.text(rx1 + 0.47, ry, "f", ha="left", va="center", fontsize=12, style="italic",
                weight="bold")
        self._f_lab = bf.label(ax, rx1 + 0.24, ry, offset=(0, 3), va="bottom", size=9.5,
                               bold=True, color=COLORS["value"])
        ax.annotate("f.backward()\nseeds 1", (rx1 + 0.24, ry), xytext=(0, -5),
                    textcoords="offset points", ha="center", va="top", fontsize=7.5,
                    color=COLORS["local"])
        self._calls_lab = bf.label(ax, 0.01, 0.02, coords="axes", ha="left", va="bottom",
                                   size=9.5, bold=True, color="#1f2328")
        return bf

    def _draw(self, v) -> None:
        lg: AutogradLogic = self.logic
        for n, (val, grad) in self._leaf_lab.items():
            val.text = f"{n} = {fmt(v[n], 3)}"
            grad.text = f"{n}.grad = {fmt(v[f'{n}.grad'], 4)}"
        for n, lab in self._op_lab.items():
            lab.text = (f"∂f/∂{n} = {fmt(v[f'df/d{n} (torch)'], 4)}" if n != lg.output
                        else "∂f/∂f = 1")
        self._f_lab.text = fmt(v["f"], 4)
        k = lg.backward_calls
        self._calls_lab.text = (f"backward() calls since zero_grad(): {k}"
                                + (f"  →  .grad = {k} × the gradient" if k > 1 else ""))

    def _readout(self, v) -> str:
        lg: AutogradLogic = self.logic
        k = int(v["backward calls"])
        parts = [f'<div class="cl-big">{num_span("f", v["f"], "value")} &nbsp; '
                 f'{num_span("backward calls", k, "value")}</div>']
        rows = []
        for n in lg.leaves:
            g, cs_g, fd = v[f"{n}.grad"], v[f"df/d{n}"], v[f"df/d{n} (finite diff)"]
            rows.append([n, num_span(n, v[n], "value", bare=True),
                         num_span(f"{n}.grad", g, "torch"),
                         num_span(f"df/d{n}", cs_g, bare=True),
                         check_span(rel_err(g, k * cs_g), 1e-9),
                         num_span(f"df/d{n} (finite diff)", fd, "fd", bare=True)])
        parts.append(table(["leaf", "value", ".grad (PyTorch)", "∂f/∂x (complex step)",
                            f".grad = {k} × ∂f/∂x?", "finite diff."], rows))
        orow = []
        for fn in lg.graph_nodes:
            n = lg.node_of.get(id(fn))
            if n is None or n in lg.leaves or n == lg.output:
                continue
            node = next(x for x in lg.nodes if x.name == n)
            orow.append([html.escape(type(fn).__name__), html.escape(node.expr),
                         num_span(f"df/d{n} (torch)", v[f"df/d{n} (torch)"], "torch",
                                  bare=True),
                         num_span(f"df/d{n}", v[f"df/d{n}"], bare=True),
                         check_span(rel_err(v[f"df/d{n} (torch)"], v[f"df/d{n}"]), 1e-9)])
        parts.append(table(["grad_fn", "node", "∂f/∂node (hook)", "complex step", "check"],
                           orow))
        ties = lg.ties()
        if ties:
            parts.append('<div class="cl-note">tie in ' + html.escape(", ".join(ties))
                         + ": torch.maximum splits the gradient equally between its inputs; "
                         "the course's max gate (and complex step here) sends it all to the "
                         "first argument.</div>")
        if k > 1:
            parts.append(f'<div class="cl-note">.grad holds the sum of {k} backward passes: '
                         "PyTorch adds into .grad, it never overwrites. Call zero_grad() "
                         "before each backward in a training loop.</div>")
        elif k == 0:
            parts.append('<div class="cl-note">.grad is zero: press backward() again.</div>')
        return "".join(parts)


# ============================================================================
# The student's own engine (lesson 05, part A): their Value graph, live
# ============================================================================

@dataclass(frozen=True)
class EngineExpression:
    """An expression for :class:`EngineExplorer`: leaves (slider name -> default) and
    the operations, in ``judge.experiments.build_expression``'s node format, whose
    leaf nodes are the sliders in order."""

    title: str
    defaults: dict[str, float]
    ops: tuple[tuple, ...]  # operation nodes; indices count the leaves first
    names: tuple[str, ...]  # a label per operation node


ENGINE_EXPRESSIONS: dict[str, EngineExpression] = {
    "neuron": EngineExpression(
        title="f = tanh(w1·x1 + w2·x2 + b)·w1",
        defaults={"w1": 0.8, "x1": 1.5, "w2": -1.2, "x2": 0.5, "b": 0.3},
        ops=(("mul", 0, 1), ("mul", 2, 3), ("add", 5, 6), ("add", 7, 4), ("tanh", 8),
             ("mul", 9, 0)),
        names=("w1·x1", "w2·x2", "+", "+ b", "tanh", "f = ·w1")),
    "diamond": EngineExpression(
        title="f = e^u·σ(u) + u² with u = a·b",
        defaults={"a": 0.7, "b": -1.1},
        ops=(("mul", 0, 1), ("exp", 2), ("sigmoid", 2), ("mul", 3, 4), ("pow", 2, 2.0),
             ("add", 5, 6)),
        names=("u = a·b", "e^u", "σ(u)", "e^u·σ(u)", "u²", "f = +")),
}


class EngineLogic(Logic):
    """The numbers of :class:`EngineExplorer`: the student's Value graph and PyTorch's.

    Args:
        value_class: the student's ``Value`` (``Value(x)``, operators, ``.exp()``,
            ``.tanh()``, ``.sigmoid()``, ``.relu()``, ``.backward()``, ``.data``, ``.grad``).
        expression: ``"neuron"`` or ``"diamond"`` (:data:`ENGINE_EXPRESSIONS`).

    Each move rebuilds the expression from fresh leaves with the student's class and
    calls its ``backward()``, then does the same with float64 tensors. :meth:`values`
    returns, for every node ``n`` (leaves by their slider's name, operations by their
    label): ``n`` (its ``.data``), ``"n.grad"`` (the student's), ``"n.grad (torch)"``
    and ``"n (torch)"``. When the student's class raises (or is not written yet),
    their numbers are NaN and :attr:`error` says why (``None`` otherwise; an
    unwritten exercise gives no message).
    """

    def __init__(self, value_class=None, expression: str = "neuron") -> None:
        check_choice("expression", expression, tuple(ENGINE_EXPRESSIONS))
        self.value_class = value_class
        self.expression = ENGINE_EXPRESSIONS[expression]
        self.leaves = list(self.expression.defaults)
        self.node_names = [*self.leaves, *self.expression.names]
        self.controls = {n: Control(n, v, -3.0, 3.0, 0.05, n)
                         for n, v in self.expression.defaults.items()}
        self.error: str | None = None
        super().__init__()

    def nodes(self) -> list:
        """The expression at the sliders, as plain data (build_expression's format)."""
        return [["leaf", self.state[n]] for n in self.leaves] + [list(op) for op in
                                                                 self.expression.ops]

    def edges(self) -> list[tuple[int, int]]:
        """(input node, user node) pairs, once per use (``a * a`` gives two)."""
        return [(int(i), k + len(self.leaves)) for k, op in enumerate(self.expression.ops)
                for i in op[1:1 + EXPRESSION_ARITY[op[0]]]]

    def _student(self, nodes):
        from ..judge.experiments import build_expression

        def run():
            built = build_expression(self.value_class, nodes)
            built[-1].backward()
            return [(float(v.data), float(v.grad)) for v in built]

        if self.value_class is None:
            return None, None
        try:
            return run(), None
        except NotImplementedError:
            return None, None
        except Exception as exc:  # noqa: BLE001 - their error is shown, not raised
            return None, f"{type(exc).__name__}: {exc}"

    def values(self) -> dict[str, float]:
        from ..judge.experiments import build_expression

        nodes = self.nodes()
        built = build_expression(lambda x: torch.tensor(x, dtype=torch.float64,
                                                        requires_grad=True), nodes)
        for t in built:
            if not t.is_leaf:
                t.retain_grad()
        built[-1].backward()
        mine, self.error = self._student(nodes)
        out: dict[str, float] = {}
        for i, (name, t) in enumerate(zip(self.node_names, built, strict=True)):
            out[f"{name} (torch)"] = float(t.detach())
            out[f"{name}.grad (torch)"] = float(t.grad)
            out[name] = mine[i][0] if mine else float("nan")
            out[f"{name}.grad"] = mine[i][1] if mine else float("nan")
        return out

    def agrees(self, values, name: str) -> bool:
        """The student's value and gradient of node ``name`` agree with PyTorch's."""
        return (rel_err(values[name], values[f"{name} (torch)"]) < 1e-9
                and rel_err(values[f"{name}.grad"], values[f"{name}.grad (torch)"]) < 1e-9)


EXPRESSION_ARITY = {"add": 2, "mul": 2, "sub": 2, "div": 2, "neg": 1, "pow": 1, "add_const": 1,
                    "mul_const": 1, "radd": 1, "rmul": 1, "exp": 1, "tanh": 1, "sigmoid": 1,
                    "relu": 1}


class EngineExplorer(Explorer):
    """Sliders on the leaves; the graph of the student's ``Value``, each node's data and grad.

    Args:
        value_class: the student's ``Value`` class.
        expression: ``"neuron"`` (default) or ``"diamond"``.

    The figure draws the expression's graph (inputs on the left, the output on the
    right), with each node's ``data`` (green) and ``grad`` (red) as the student's
    engine computed them; the numbers of a node that differ from PyTorch's are marked
    ✗ on a pink background. The readout lists every node: data and grad, the
    student's and PyTorch's, and whether they agree.
    """

    def __init__(self, value_class=None, expression: str = "neuron") -> None:
        logic = EngineLogic(value_class, expression)
        self.title = f"your engine: {logic.expression.title}"
        super().__init__(logic)

    def _build_figure(self):
        from ._render import COLORS, BlitFigure

        lg: EngineLogic = self.logic
        n = len(lg.node_names)
        depth = [0] * n
        for i, j in lg.edges():
            depth[j] = max(depth[j], depth[i] + 1)
        columns: dict[int, list[int]] = {}
        for i in range(n):
            columns.setdefault(depth[i], []).append(i)
        tall = max(len(c) for c in columns.values())
        width = max(depth) + 1
        bf = BlitFigure((10.0, max(3.0, 0.7 * tall + 0.9)))
        ax = bf.fig.add_axes((0.0, 0.0, 1.0, 0.9))
        ax.set_axis_off()
        ax.set_xlim(-0.6, width - 0.4)
        ax.set_ylim(-tall / 2 - 0.2, tall / 2 + 0.1)
        bf.fig.text(0.01, 0.95, f"your Value graph of {lg.expression.title}", fontsize=12,
                    weight="bold", va="center")
        bf.fig.text(0.99, 0.95, "green: .data    red: .grad (after your backward())",
                    fontsize=8.5, ha="right", va="center", color=COLORS["local"])
        pos = {}
        for d, members in columns.items():
            for r, i in enumerate(members):
                pos[i] = (float(d), (len(members) - 1) / 2.0 - r)
        for i, j in lg.edges():
            (x0, y0), (x1, y1) = pos[i], pos[j]
            ax.annotate("", xy=(x1 - 0.22, y1), xytext=(x0 + 0.22, y0),
                        arrowprops=dict(arrowstyle="-|>", color=COLORS["edge"], lw=1.1,
                                        mutation_scale=10, shrinkA=2, shrinkB=2))
        self._data_lab, self._grad_lab = {}, {}
        for i, name in enumerate(lg.node_names):
            x, y = pos[i]
            leaf = i < len(lg.leaves)
            # static boxes (drawn once); the numbers are fast labels, so a move redraws text only
            ax.text(x, y, name, ha="center", va="center", fontsize=9, zorder=3,
                    bbox=dict(boxstyle="round,pad=0.4", fc="#eef6ff" if leaf else "#f6f8fa",
                              ec=COLORS["accent"] if leaf else COLORS["node_edge"], lw=1.2))
            self._data_lab[name] = bf.label(ax, x, y, offset=(0, 11), va="bottom", size=9,
                                            bold=True, color=COLORS["value"])
            self._grad_lab[name] = bf.label(ax, x, y, offset=(0, -11), va="top", size=9,
                                            bold=True, color=COLORS["grad"])
        self._status_lab = bf.label(ax, 0.01, 0.02, coords="axes", ha="left", va="bottom",
                                    size=9, color="#cf222e")
        return bf

    def _draw(self, v) -> None:
        lg: EngineLogic = self.logic
        for name in lg.node_names:
            wrong = not lg.agrees(v, name) and not math.isnan(v[name])
            mark = " ✗" if wrong else ""
            self._data_lab[name].text = f"{fmt(v[name], 4)}{mark}"
            self._grad_lab[name].text = f"grad {fmt(v[f'{name}.grad'], 4)}{mark}"
            for lab in (self._data_lab[name], self._grad_lab[name]):
                lab.background = "#ffd8d3" if wrong else None
        self._status_lab.text = (lg.error or "") if lg.error else (
            "" if lg.value_class is not None and not math.isnan(v[lg.node_names[-1]]) else
            "write Value (exercise A.3) to see your engine's numbers")

    def _readout(self, v) -> str:
        lg: EngineLogic = self.logic
        rows = []
        for name in lg.node_names:
            rows.append([html.escape(name),
                         num_span(name, v[name], "value", bare=True),
                         num_span(f"{name}.grad", v[f"{name}.grad"], "student", bare=True),
                         num_span(f"{name}.grad (torch)", v[f"{name}.grad (torch)"], "torch",
                                  bare=True),
                         check_span(max(rel_err(v[name], v[f"{name} (torch)"]),
                                        rel_err(v[f"{name}.grad"], v[f"{name}.grad (torch)"])),
                                    1e-9)])
        parts = [table(["node", ".data", ".grad (yours)", "grad (PyTorch)", "agree?"], rows)]
        if lg.error:
            parts.append(f'<div class="cl-note">your Value raised {html.escape(lg.error)}</div>')
        return "".join(parts)
