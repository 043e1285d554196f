"""Lesson 01: the computational graph, the one engine behind its figures and its explorer.

A graph (:data:`GRAPHS`) is a list of :class:`Node`: inputs (sliders) and gates
applied to earlier nodes. :class:`GraphNumbers` evaluates one at its sliders'
values; :class:`GraphDrawing` draws one and writes its numbers on it. The
lesson's static figures (:mod:`course_lib.figures.chain_rule`) and the
explorer (:class:`GateExplorer`) are both these two, so a figure and an
explorer of the same graph always show the same numbers in the same places.

Each edge ``u -> v`` (the value of node ``u`` flowing into gate ``v``) shows

* its **forward value** (green, above the edge),
* the **gradient** ∂f/∂u carried by this edge (red, below it): the product of
  the **local gradient** ∂v/∂u (the gate looked at on its own) and the
  **upstream gradient** ∂f/∂v, the chain rule (the explorer writes both factors
  in grey beneath).

Every gradient is computed by complex step (see
:mod:`course_lib.widgets.complex_step`): the local one by evaluating the gate
alone at ``u + ih``, the upstream one by evaluating the whole graph with
``v``'s value nudged to ``v + ih``. Nothing here is a backward pass, so the
product is a genuine check of the chain rule, not its restatement.

    >>> from course_lib.widgets import GateExplorer
    >>> GateExplorer()                      # σ(w0·x0 + w1·x1 + w2), CS231n's neuron
    >>> GateExplorer("neuron_expanded")     # σ split into ×(-1), exp, +1, 1/x
    >>> GateExplorer("gates")               # 2·(x·y + max(z, w)): add, mul, max gates
    >>> GateExplorer("fanout")              # x·y + max(x, y): gradients add at a fan-out
    >>> GateExplorer("example")             # (x + y)·z

The numbers without a widget: ``GateLogic("neuron").set("w0", 1.5)``, or
``GateLogic("gates").evaluate()`` for every node's value and gradient.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from course_lib._validate import check_choice
from course_lib.gradcheck import numerical_gradient

from . import complex_step as cs
from ._base import (
    CSS,
    Control,
    Explorer,
    Logic,
    as_array,
    call_student,
    check_span,
    fmt,
    num_span,
    rel_err,
    table,
)

__all__ = ["GRAPHS", "OPS", "Node", "GraphSpec", "GraphNumbers", "Evaluation", "GateLogic",
           "GraphDrawing", "GateExplorer"]

VALUE_COLOR = "#1a7f37"  # forward values: green
GRAD_COLOR = "#c0392b"   # gradients: red
LOCAL_COLOR = "#57606a"  # the factors local × upstream: grey


@dataclass(frozen=True)
class Node:
    """One node of a graph: an input (a slider) or a gate applied to earlier nodes.

    Attributes:
        name: short id, used in the readout's keys (``"w0"``, ``"a"``, ...).
        op: ``"input"``, ``"add"``, ``"mul"``, ``"max"``, ``"sigmoid"``,
            ``"exp"``, ``"inv"`` (1/x), ``"mul_const"``, ``"add_const"``.
        inputs: names of the nodes it reads.
        const: the constant of ``mul_const`` / ``add_const``.
        pos: (x, y) where it is drawn.
        expr: what it computes, for the readout (``"w0·x0"``).
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    const: float = 0.0
    pos: tuple[float, float] = (0.0, 0.0)
    expr: str = ""

    @property
    def symbol(self) -> str:
        """What the drawing writes in the gate's box."""
        return {"input": self.name, "add": "+", "mul": "×", "max": "max", "sigmoid": "σ",
                "exp": "exp", "inv": "1/x", "mul_const": f"×{self.const:g}",
                "add_const": f"+{self.const:g}"}[self.op]


#: the gates a Node may apply (evaluated in GraphNumbers._forward)
OPS = ("add", "mul", "max", "sigmoid", "exp", "inv", "mul_const", "add_const")

#: how far f_of may move an input away from its slider: enough for a central
#: difference (gradcheck's h = 1e-5), far too little to reach another input
NUDGE = 1e-4

#: the sliders' grid: every input of a graph is a multiple of it, the two decimals
#: the figures show (so every number drawn belongs to the inputs drawn)
STEP = 0.01


@dataclass(frozen=True)
class GraphSpec:
    """A graph's shape: title, nodes in forward order, the inputs' defaults and ranges.

    ``label_at`` moves the numbers of an edge (u, v) to a fraction t of its length
    (default 0.3 for an input's edge, 0.5 otherwise), where edges would cross.
    """

    title: str
    nodes: tuple[Node, ...]
    defaults: dict[str, float]
    ranges: dict[str, tuple[float, float]]
    label_at: dict[tuple[str, str], float] = field(default_factory=dict)


def _inputs(*names_pos: tuple[str, float, float]) -> list[Node]:
    return [Node(n, "input", pos=(x, y), expr=n) for n, x, y in names_pos]


def _neuron(expanded: bool) -> GraphSpec:
    nodes = _inputs(("w0", 0, 4.0), ("x0", 0, 2.9), ("w1", 0, 1.6), ("x1", 0, 0.5)) + [
        Node("a", "mul", ("w0", "x0"), pos=(1.5, 3.45), expr="a = w0·x0"),
        Node("b", "mul", ("w1", "x1"), pos=(1.5, 1.05), expr="b = w1·x1"),
        Node("c", "add", ("a", "b"), pos=(2.8, 2.25), expr="c = a + b"),
        *_inputs(("w2", 2.9, 0.7)),
        Node("q", "add", ("c", "w2"), pos=(4.1, 1.7), expr="q = w0·x0 + w1·x1 + w2")]
    if expanded:
        nodes += [Node("d", "mul_const", ("q",), const=-1.0, pos=(5.4, 1.7), expr="d = -q"),
                  Node("e", "exp", ("d",), pos=(6.7, 1.7), expr="e = exp(-q)"),
                  Node("h", "add_const", ("e",), const=1.0, pos=(8.0, 1.7),
                       expr="h = 1 + exp(-q)"),
                  Node("f", "inv", ("h",), pos=(9.3, 1.7), expr="f = 1 / (1 + exp(-q))")]
        title = "f = σ(w0·x0 + w1·x1 + w2), node by node"
    else:
        nodes += [Node("f", "sigmoid", ("q",), pos=(5.4, 1.7), expr="f = σ(q)")]
        title = "f = σ(w0·x0 + w1·x1 + w2), σ as one gate"
    return GraphSpec(title, tuple(nodes),
                     defaults={"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0},
                     ranges={n: (-4.0, 4.0) for n in ("w0", "x0", "w1", "x1", "w2")})


GRAPHS: dict[str, GraphSpec] = {
    "example": GraphSpec(
        "f = (x + y)·z",
        tuple(_inputs(("x", 0, 2.0), ("y", 0, 1.0), ("z", 0, 0.0)) + [
            Node("q", "add", ("x", "y"), pos=(1.3, 1.5), expr="q = x + y"),
            Node("f", "mul", ("q", "z"), pos=(2.6, 0.75), expr="f = q·z")]),
        defaults={"x": -2.0, "y": 5.0, "z": -4.0}, ranges={n: (-5.0, 5.0) for n in "xyz"}),
    "gates": GraphSpec(
        "f = 2·(x·y + max(z, w))",
        tuple(_inputs(("x", 0, 3.0), ("y", 0, 2.0), ("z", 0, 1.0), ("w", 0, 0.0)) + [
            Node("p", "mul", ("x", "y"), pos=(1.3, 2.5), expr="p = x·y"),
            Node("m", "max", ("z", "w"), pos=(1.3, 0.5), expr="m = max(z, w)"),
            Node("s", "add", ("p", "m"), pos=(2.6, 1.5), expr="s = p + m"),
            Node("f", "mul_const", ("s",), const=2.0, pos=(3.9, 1.5), expr="f = 2·s")]),
        defaults={"x": 3.0, "y": -4.0, "z": 2.0, "w": -1.0},
        ranges={n: (-5.0, 5.0) for n in "xyzw"}),
    "fanout": GraphSpec(
        "f = x·y + max(x, y)",
        tuple(_inputs(("x", 0, 2.4), ("y", 0, 0.0)) + [
            Node("p", "mul", ("x", "y"), pos=(2.0, 2.4), expr="p = x·y"),
            Node("m", "max", ("x", "y"), pos=(2.0, 0.0), expr="m = max(x, y)"),
            Node("f", "add", ("p", "m"), pos=(3.4, 1.2), expr="f = p + m")]),
        defaults={"x": 3.0, "y": 2.0}, ranges={n: (-4.0, 4.0) for n in "xy"},
        label_at={("x", "p"): 0.25, ("y", "m"): 0.25, ("x", "m"): 0.3, ("y", "p"): 0.3}),
    "neuron": _neuron(expanded=False),
    "neuron_expanded": _neuron(expanded=True),
}


class GraphNumbers:
    """The numbers of a graph of :class:`Node` at the sliders' values, by complex step.

    For a logic with ``nodes`` (in forward order), ``output`` (the last node's
    name) and ``state`` (the sliders). Every evaluation starts from the sliders:
    the gates are written out inside :meth:`_forward`, and no method takes a
    number to evaluate a gate at. A gate any caller could evaluate would hand out
    σ (a ``sigmoid`` gate) and, through complex step, σ' and the neuron's
    gradients for any input: answers of lessons 01 and 02 (COURSE.md: no helper
    a student can import returns a graded function's answer).
    """

    nodes: tuple[Node, ...]
    output: str

    def _forward(self, perturb: str | None = None, nudge: dict | None = None,
                 local: bool = False):
        """Every node's complex value at the sliders' values.

        Args:
            perturb: a node whose value gets ``+ih`` once computed: Im(f) / h is
                then ∂f/∂(that node), every later node reacting to it.
            nudge: {input: offset} moving inputs off their sliders by at most
                :data:`NUDGE` (for central differences).
            local: also return {(u, v): ∂v/∂u}, each gate's local gradient with
                respect to each input: the gate alone, evaluated with that input
                at its value + ih.
        Returns:
            {node name: complex value}, and the local gradients if asked for.
        """
        nudge = dict(nudge or {})
        for name, offset in nudge.items():
            if name not in self.state or not abs(float(offset)) <= NUDGE:
                raise ValueError(f"nudge: expected inputs {', '.join(self.state)} moved by at "
                                 f"most {NUDGE:g} from their sliders, got {name}={offset!r}")

        def gate(node: Node, args: list) -> complex:
            a, c = args[0], node.const
            if node.op == "add":
                return a + args[1]
            if node.op == "mul":
                return a * args[1]
            if node.op == "max":
                return complex(cs.maximum(a, args[1]))  # ties go to the first input
            if node.op == "sigmoid":  # stable for any z: the exponent is never positive
                e = np.exp(-a if a.real >= 0 else a)
                return 1 / (1 + e) if a.real >= 0 else e / (1 + e)
            if node.op == "exp":
                return np.exp(a)
            if node.op == "inv":
                return 1.0 / a
            if node.op == "mul_const":
                return a * c
            if node.op == "add_const":
                return a + c
            raise ValueError(f"op: unknown value {node.op!r}; expected one of {', '.join(OPS)}")

        vals: dict[str, complex] = {}
        for node in self.nodes:
            if node.op == "input":
                v = complex(self.state[node.name] + float(nudge.get(node.name, 0.0)))
            else:
                v = complex(gate(node, [vals[i] for i in node.inputs]))
            if node.name == perturb:
                v = v + 1j * cs.H
            vals[node.name] = v
        if not local:
            return vals
        grads = {}
        for node in self.nodes:
            for pos, u in enumerate(node.inputs):
                args = [vals[i] for i in node.inputs]
                args[pos] = args[pos] + 1j * cs.H
                grads[(u, node.name)] = float(np.imag(gate(node, args)) / cs.H)
        return vals, grads

    def f_of(self, inputs) -> float:
        """The output f for ``inputs`` (name -> value), each within :data:`NUDGE` of its
        slider: the central differences around the sliders' position."""
        return float(self._forward(nudge={n: float(v) - self.state[n]
                                          for n, v in dict(inputs).items()})[self.output].real)

    def df(self, node: str) -> float:
        """∂f/∂(node) at the sliders' values, by complex step."""
        return float(self._forward(perturb=node)[self.output].imag / cs.H)


@dataclass(frozen=True)
class NodeNumbers:
    """A node's forward value and the gradient ∂f/∂(node)."""

    value: float
    grad: float


@dataclass(frozen=True)
class Evaluation:
    """A graph evaluated at its sliders: what a figure of it shows (see GateLogic.evaluate)."""

    graph: GraphSpec
    values: dict[str, float]

    @property
    def title(self) -> str:
        return self.graph.title

    @property
    def output(self) -> str:
        return self.graph.nodes[-1].name

    @property
    def nodes(self) -> dict[str, NodeNumbers]:
        v, out = self.values, self.output
        return {n.name: NodeNumbers(v["f"] if n.name == out else v[n.name],
                                    1.0 if n.name == out else v[f"df/d{n.name}"])
                for n in self.graph.nodes}

    @property
    def value(self) -> float:
        return self.values["f"]

    @property
    def edge_grads(self) -> dict[tuple[str, str], float]:
        """∂f/∂u along each edge (u, v): local × upstream."""
        return {(u, n.name): self.values[f"{u}->{n.name} product"]
                for n in self.graph.nodes for u in n.inputs}

    def grads(self) -> dict[str, float]:
        """∂f/∂(input) for every input."""
        return {n.name: self.values[f"df/d{n.name}"] for n in self.graph.nodes
                if n.op == "input"}


class GateLogic(GraphNumbers, Logic):
    """The numbers of a small computational graph, every gradient by complex step.

    Args:
        graph: ``"neuron"`` (default; CS231n's f = σ(w0·x0 + w1·x1 + w2) with
            w = (2, -3, -3), x = (-1, -2)), ``"neuron_expanded"`` (σ written as
            ×(-1), exp, +1, 1/x), ``"gates"`` (f = 2·(x·y + max(z, w)) at
            (3, -4, 2, -1)), ``"fanout"`` (f = x·y + max(x, y)) or
            ``"example"`` (f = (x + y)·z).
        student_neuron: optional, for the neuron graphs: your
            ``neuron_forward_backward(w, x) -> (f, dw, dx)``; its gradients are
            shown next to the complex-step ones (nothing is shown while it
            raises NotImplementedError).

    ``state`` holds the inputs (the sliders, multiples of 0.01). :meth:`values`
    returns, with ``u->v`` naming the edge from node ``u`` into gate ``v``:

    * ``"f"`` and every node's forward value under its name (``"a"``, ...);
    * ``"df/d<node>"`` for every node but f (complex step on the whole graph);
    * ``"<u->v> value"``, ``"<u->v> local"`` (∂v/∂u), ``"<u->v> upstream"``
      (∂f/∂v) and ``"<u->v> product"`` (local × upstream) for every edge;
    * ``"df/d<input> (finite diff)"`` for every input (central differences);
    * ``"df/d<input> (yours)"`` when ``student_neuron`` gave an answer.
    """

    def __init__(self, graph: str = "neuron", student_neuron: Callable | None = None) -> None:
        check_choice("graph", graph, tuple(GRAPHS))
        self.graph_name = graph
        self.graph = GRAPHS[graph]
        self.nodes = self.graph.nodes
        self.by_name = {n.name: n for n in self.nodes}
        self.output = self.nodes[-1].name
        self.input_names = [n.name for n in self.nodes if n.op == "input"]
        self.edges = [(u, v.name) for v in self.nodes for u in v.inputs]
        if student_neuron is not None and not graph.startswith("neuron"):
            raise ValueError("student_neuron: only the 'neuron' and 'neuron_expanded' graphs "
                             f"compute neuron_forward_backward; got graph={graph!r}")
        self.student_neuron = student_neuron
        self.student_error: str | None = None
        self.controls = {
            n: Control(n, self.graph.defaults[n], *self.graph.ranges[n], step=STEP)
            for n in self.input_names}
        super().__init__()

    def values(self) -> dict[str, float]:
        vals, locals_ = self._forward(local=True)
        out: dict[str, float] = {"f": float(vals[self.output].real)}
        for node in self.nodes[:-1]:
            out[node.name] = float(vals[node.name].real)
        grad = {self.output: 1.0}
        for node in self.nodes[:-1]:
            grad[node.name] = self.df(node.name)
            out[f"df/d{node.name}"] = grad[node.name]
        for node in self.nodes:
            for u in node.inputs:
                key = f"{u}->{node.name}"
                local = locals_[(u, node.name)]
                out[f"{key} value"] = float(vals[u].real)
                out[f"{key} local"] = local
                out[f"{key} upstream"] = grad[node.name]
                out[f"{key} product"] = local * grad[node.name]
        # central finite differences, for comparison
        x = np.array([self.state[n] for n in self.input_names], dtype=np.float64)
        fd = numerical_gradient(lambda v: self.f_of(dict(zip(self.input_names, v, strict=True))), x)
        for n, g in zip(self.input_names, fd, strict=True):
            out[f"df/d{n} (finite diff)"] = float(g)
        out.update(self._student())
        return out

    def evaluate(self) -> Evaluation:
        """Every number of the graph at the sliders, as a figure of it shows them."""
        return Evaluation(self.graph, self.values())

    def _student(self) -> dict[str, float]:
        self.student_error = None
        if self.student_neuron is None:
            return {}
        w = np.array([self.state["w0"], self.state["w1"], self.state["w2"]])
        x = np.array([self.state["x0"], self.state["x1"]])
        result, err = call_student(self.student_neuron, w, x)
        if result is None:
            self.student_error = err
            return {}
        try:
            f, dw, dx = result
            f = float(as_array(f))
            dw, dx = as_array(dw).reshape(3), as_array(dx).reshape(2)
        except (TypeError, ValueError) as exc:
            self.student_error = ("expected (f, dw, dx) with dw of shape (3,) and dx of "
                                  f"shape (2,): {exc}")
            return {}
        out = {"f (yours)": f}
        for n, g in zip(("w0", "w1", "w2", "x0", "x1"), list(dw) + list(dx), strict=True):
            out[f"df/d{n} (yours)"] = float(g)
        return out


# ---------------------------------------------------------------------------
# drawing: the same for a static figure and for the explorer
# ---------------------------------------------------------------------------

_BOX_W, _BOX_H = 0.62, 0.42


def graph_figsize(graph: GraphSpec, extra_height: float = 0.0) -> tuple[float, float]:
    """The figure size (inches) that fits ``graph`` at the drawing's scale."""
    xs = [n.pos[0] for n in graph.nodes]
    ys = [n.pos[1] for n in graph.nodes]
    return (1.15 * (max(xs) - min(xs) + 2.0) + 0.5,
            1.0 * (max(ys) - min(ys) + 1.3) + 0.6 + extra_height)


class GraphDrawing:
    """A graph drawn into a matplotlib Axes, with a number slot on each edge.

    The boxes, arrows and names are ordinary (static) artists; the numbers are
    :class:`course_lib.widgets._render.Label` objects made by ``label`` (a
    ``BlitFigure.label`` for the explorer, which redraws only them on a move; a
    plain list for a static figure, whose labels become matplotlib texts, see
    :func:`course_lib.widgets._render.bake_labels`). :meth:`update` writes the
    numbers of :meth:`GateLogic.values` into the slots.

    Args:
        graph: the :class:`GraphSpec` to draw.
        ax: the Axes (its limits, aspect and frame are set here).
        label: ``label(ax, x, y, text="", **style) -> Label``.
        number: how a number is written (``fmt`` to 3 digits by default).
        factors: also write "local × upstream" (grey) under each edge's gradient.
        title: the title (default: the graph's own); "" for none.
        boxed: a white box behind each number, where it crosses an edge (the
            explorer leaves it out: each box costs as much to draw as its text).
    """

    def __init__(self, graph: GraphSpec, ax, label: Callable, number: Callable | None = None,
                 factors: bool = False, title: str | None = None, boxed: bool = True) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import FancyBboxPatch

        self.graph, self.ax, self.factors = graph, ax, factors
        self.number = number or (lambda v: fmt(v, 3))
        nodes = {n.name: n for n in graph.nodes}
        out = graph.nodes[-1]
        uses = {n.name: sum(n.name in m.inputs for m in graph.nodes) for n in graph.nodes}
        style = dict(ha="center", size=10, bold=True, background="#ffffffd8" if boxed else None)
        self.edge_slots: dict[tuple[str, str], tuple] = {}
        self.sums: dict[str, object] = {}

        def slots(x, y):
            val = label(ax, x, y, offset=(0, 3), va="bottom", color=VALUE_COLOR, **style)
            grad = label(ax, x, y, offset=(0, -3), va="top", color=GRAD_COLOR, **style)
            loc = (label(ax, x, y, offset=(0, -17), va="top", size=7.5, color=LOCAL_COLOR)
                   if factors else None)
            return val, grad, loc

        for n in graph.nodes:
            x, y = n.pos
            if n.op == "input":
                ax.text(x, y, n.name, ha="right", va="center", fontsize=12, fontstyle="italic")
                if uses[n.name] > 1:  # the total where the shares meet
                    self.sums[n.name] = label(ax, x, y, offset=(0, -16), ha="right", va="top",
                                              size=10, color=GRAD_COLOR)
                continue
            ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                        boxstyle="round,pad=0.02,rounding_size=0.12",
                                        facecolor="#f4f6f8", edgecolor="#555555",
                                        linewidth=1.2))
            ax.text(x, y, n.symbol, ha="center", va="center",
                    fontsize=11 if len(n.symbol) <= 3 else 9)
            for u in n.inputs:
                src = nodes[u]
                x0 = src.pos[0] + (0.22 if src.op == "input" else _BOX_W / 2)
                y0 = src.pos[1]
                x1, y1 = x - _BOX_W / 2, y
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                            arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.1,
                                        "shrinkA": 0, "shrinkB": 0})
                t = graph.label_at.get((u, n.name), 0.3 if src.op == "input" else 0.5)
                self.edge_slots[(u, n.name)] = slots(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
        # the output edge, with df/df = 1 flowing in from the right
        x0 = out.pos[0] + _BOX_W / 2
        ax.annotate("", xy=(x0 + 0.75, out.pos[1]), xytext=(x0, out.pos[1]),
                    arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.1})
        self.out_slots = slots(x0 + 0.38, out.pos[1])
        ax.text(x0 + 0.82, out.pos[1], "f", ha="left", va="center", fontsize=12,
                fontstyle="italic")
        xs = [n.pos[0] for n in graph.nodes]
        ys = [n.pos[1] for n in graph.nodes]
        ax.set_xlim(min(xs) - 0.7, max(xs) + 1.3)
        ax.set_ylim(min(ys) - 0.65, max(ys) + 0.55)
        ax.set_aspect("equal")
        ax.axis("off")
        title = graph.title if title is None else title
        if title:
            ax.set_title(title, fontsize=11, loc="left")
        fig = ax.figure
        if not fig.legends:
            fig.legend(handles=[Line2D([], [], color=VALUE_COLOR, lw=3, label="forward value"),
                                Line2D([], [], color=GRAD_COLOR, lw=3,
                                       label="gradient ∂f/∂(edge)")]
                       + ([Line2D([], [], color=LOCAL_COLOR, lw=3,
                                  label="local × upstream")] if factors else []),
                       loc="lower center", fontsize=9, frameon=False, ncol=3)

    def update(self, values: dict[str, float]) -> None:
        """Write the numbers of ``values`` (GateLogic.values()) into the slots."""
        num = self.number
        for (u, v), (val, grad, loc) in self.edge_slots.items():
            key = f"{u}->{v}"
            val.text = num(values[f"{key} value"])
            grad.text = num(values[f"{key} product"])
            if loc is not None:
                loc.text = f"{num(values[f'{key} local'])} × {num(values[f'{key} upstream'])}"
        val, grad, loc = self.out_slots
        val.text, grad.text = num(values["f"]), num(1.0)
        if loc is not None:
            loc.text = "(∂f/∂f)"
        for name, lab in self.sums.items():
            lab.text = f"Σ = {num(values[f'df/d{name}'])}"


class GateExplorer(Explorer):
    """Sliders on a graph's inputs; the graph drawn with every edge's numbers.

    Args:
        graph: see :class:`GateLogic` (``"neuron"``, ``"neuron_expanded"``,
            ``"gates"``, ``"fanout"``, ``"example"``).
        student_neuron: optional ``neuron_forward_backward`` to compare with.

    Displays (readout text, each a ``<span data-name=...>``):
    ``f = 0.7311``; for each input ``df/dw0 = -0.1966`` (class ``cl-grad``,
    complex step), ``df/dw0 (finite diff) = -0.1966`` (``cl-fd``) and, with
    ``student_neuron``, ``df/dw0 (yours) = ...`` (``cl-student``); a table
    of edges with ``u->v value``, ``u->v local``, ``u->v upstream``,
    ``u->v product``.
    """

    def __init__(self, graph: str = "neuron", student_neuron: Callable | None = None) -> None:
        self.title = ("Move an input: every edge shows its forward value (green) and the "
                      "gradient of f with respect to it (red)")
        super().__init__(GateLogic(graph, student_neuron=student_neuron))

    def _build_figure(self):
        from ._render import BlitFigure

        lg: GateLogic = self.logic
        width, height = graph_figsize(lg.graph, extra_height=0.3)
        bf = BlitFigure((min(width, 10.5), height * min(1.0, 10.5 / width)))
        ax = bf.fig.add_axes((0.01, 0.07, 0.98, 0.86))
        self._drawing = GraphDrawing(lg.graph, ax, bf.label, factors=True, boxed=False)
        return bf

    def _draw(self, values) -> None:
        self._drawing.update(values)

    def _readout(self, values) -> str:
        lg: GateLogic = self.logic
        parts = [f'<div class="cl-big">{num_span("f", values["f"], "value")}</div>']
        rows = []
        for n in lg.input_names:
            fd = values[f"df/d{n} (finite diff)"]
            g = values[f"df/d{n}"]
            row = [num_span(n, values[n], "value"), num_span(f"df/d{n}", g),
                   num_span(f"df/d{n} (finite diff)", fd, "fd", text="fd"),
                   check_span(rel_err(g, fd))]
            if f"df/d{n} (yours)" in values:
                mine = values[f"df/d{n} (yours)"]
                row += [num_span(f"df/d{n} (yours)", mine, "student", text="yours"),
                        check_span(rel_err(g, mine), 1e-7)]
            rows.append(row)
        header = ["input", "∂f/∂input (complex step)", "finite differences", "rel. error"]
        if lg.student_neuron is not None and any("(yours)" in k for k in values):
            header += ["your function", "rel. error"]
        parts.append(table(header, rows))
        if lg.student_error:
            parts.append(f'<div class="cl-bad">your neuron_forward_backward raised '
                         f"{html.escape(lg.student_error)}</div>")
        erows = []
        for u, v in lg.edges:
            key = f"{u}->{v}"
            erows.append([html.escape(f"{u} → {v}"),
                          _cell(f"{key} value", values, "value"),
                          _cell(f"{key} local", values, "local"),
                          _cell(f"{key} upstream", values, "upstream"),
                          _cell(f"{key} product", values, "grad")])
        parts.append(table(["edge", "value", "local ∂v/∂u", "upstream ∂f/∂v",
                            "local × upstream"], erows))
        parts.append('<div class="cl-note">local: the gate alone, nudged along this input; '
                     "upstream: the whole graph, nudged at the gate's output (both by complex "
                     "step). Their product is ∂f/∂u along this edge; where u feeds several gates "
                     "its gradient df/du is the sum of its edges' products.</div>")
        return "".join(parts)


def _cell(key: str, values, kind: str) -> str:
    cls = {"value": CSS["value"], "grad": CSS["grad"]}.get(kind, "cl-local")
    return f'<span class="{cls}" data-name="{html.escape(key)}">{fmt(values[key])}</span>'
