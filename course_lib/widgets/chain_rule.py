"""Lesson 01: a computational graph whose every edge shows its numbers live.

Each edge ``u -> v`` (the value of node ``u`` flowing into gate ``v``) shows

* its **forward value** (green, above the edge),
* the **local gradient** ∂v/∂u: how gate ``v``'s output moves with this input,
  the gate looked at on its own,
* the **upstream gradient** ∂f/∂v: how the final output moves with ``v``,
* their **product** ∂f/∂u along this edge (red, below the edge): the chain rule.

Every gradient is computed by complex step (see
:mod:`course_lib.widgets.complex_step`): the local one by evaluating the gate
alone at ``u + ih``, the upstream one by evaluating the whole graph with
``v``'s value nudged to ``v + ih``. Nothing here is a backward pass, so the
product column is a genuine check of the chain rule, not its restatement.

    >>> from course_lib.widgets import GateExplorer
    >>> GateExplorer()                      # σ(w0·x0 + w1·x1 + w2), CS231n's neuron
    >>> GateExplorer("neuron_expanded")     # σ split into ×(-1), exp, +1, 1/x
    >>> GateExplorer("gates")               # 2·(x·y + max(z, w)): add, mul, max gates
    >>> GateExplorer("fanout")              # x used twice: gradients add

The numbers without a widget: ``GateLogic("neuron").set("w0", 1.5)``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

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

__all__ = ["GRAPHS", "OPS", "Node", "GraphNumbers", "GateLogic", "GateExplorer"]


@dataclass(frozen=True)
class Node:
    """One node of a graph: an input (a slider) or a gate applied to earlier nodes.

    Attributes:
        name: short id, used in the readout's keys (``"w0"``, ``"p0"``, ...).
        op: ``"input"``, ``"add"``, ``"mul"``, ``"max"``, ``"sigmoid"``,
            ``"exp"``, ``"inv"`` (1/x), ``"mul_const"``, ``"add_const"``.
        inputs: names of the nodes it reads.
        const: the constant of ``mul_const`` / ``add_const``.
        pos: (column, row) where it is drawn.
        expr: what it computes, for the readout (``"w0·x0"``).
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    const: float = 0.0
    pos: tuple[float, float] = (0.0, 0.0)
    expr: str = ""


#: the gates a Node may apply (evaluated in GraphNumbers._forward)
OPS = ("add", "mul", "max", "sigmoid", "exp", "inv", "mul_const", "add_const")

#: how far f_of may move an input away from its slider: enough for a central
#: difference (gradcheck's h = 1e-5), far too little to reach another input
NUDGE = 1e-4


def _symbol(node: Node) -> str:
    return {"add": "+", "mul": "×", "max": "max", "sigmoid": "σ", "exp": "exp",
            "inv": "1/x", "mul_const": f"×{node.const:g}",
            "add_const": f"+{node.const:g}"}[node.op]


@dataclass(frozen=True)
class _Graph:
    title: str
    nodes: tuple[Node, ...]
    defaults: dict[str, float]
    ranges: dict[str, tuple[float, float]]


def _inputs(names_rows: list[tuple[str, float]]) -> list[Node]:
    return [Node(n, "input", pos=(0.0, r), expr=n) for n, r in names_rows]


_NEURON_INPUTS = _inputs([("w0", 4.0), ("x0", 3.0), ("w1", 2.0), ("x1", 1.0), ("w2", 0.0)])
_NEURON_DEFAULTS = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}
_NEURON_RANGES = {n: (-4.0, 4.0) for n in _NEURON_DEFAULTS}
_NEURON_SUM = [
    Node("p0", "mul", ("w0", "x0"), pos=(1, 3.5), expr="w0·x0"),
    Node("p1", "mul", ("w1", "x1"), pos=(1, 1.5), expr="w1·x1"),
    Node("s", "add", ("p0", "p1"), pos=(2, 2.5), expr="w0·x0 + w1·x1"),
    Node("z", "add", ("s", "w2"), pos=(3, 1.25), expr="z = w0·x0 + w1·x1 + w2"),
]

GRAPHS: dict[str, _Graph] = {
    "neuron": _Graph(
        title="f = σ(w0·x0 + w1·x1 + w2)",
        nodes=tuple(_NEURON_INPUTS + _NEURON_SUM + [
            Node("f", "sigmoid", ("z",), pos=(4, 1.25), expr="f = σ(z)")]),
        defaults=_NEURON_DEFAULTS, ranges=_NEURON_RANGES),
    "neuron_expanded": _Graph(
        title="f = 1 / (1 + exp(-(w0·x0 + w1·x1 + w2)))",
        nodes=tuple(_NEURON_INPUTS + _NEURON_SUM + [
            Node("n", "mul_const", ("z",), const=-1.0, pos=(4, 1.25), expr="-z"),
            Node("e", "exp", ("n",), pos=(5, 1.25), expr="exp(-z)"),
            Node("d", "add_const", ("e",), const=1.0, pos=(6, 1.25), expr="1 + exp(-z)"),
            Node("f", "inv", ("d",), pos=(7, 1.25), expr="f = 1 / (1 + exp(-z))")]),
        defaults=_NEURON_DEFAULTS, ranges=_NEURON_RANGES),
    "gates": _Graph(
        title="f = 2·(x·y + max(z, w))",
        nodes=tuple(_inputs([("x", 3.0), ("y", 2.0), ("z", 1.0), ("w", 0.0)]) + [
            Node("q", "mul", ("x", "y"), pos=(1, 2.5), expr="q = x·y"),
            Node("m", "max", ("z", "w"), pos=(1, 0.5), expr="m = max(z, w)"),
            Node("a", "add", ("q", "m"), pos=(2, 1.5), expr="a = q + m"),
            Node("f", "mul_const", ("a",), const=2.0, pos=(3, 1.5), expr="f = 2·a")]),
        defaults={"x": 3.0, "y": -4.0, "z": 2.0, "w": -1.0},
        ranges={n: (-5.0, 5.0) for n in "xyzw"}),
    "fanout": _Graph(
        title="f = (x + y)·(x·z): x feeds two gates",
        nodes=tuple(_inputs([("x", 1.5), ("y", 3.0), ("z", 0.0)]) + [
            Node("q", "add", ("x", "y"), pos=(1, 2.5), expr="q = x + y"),
            Node("r", "mul", ("x", "z"), pos=(1, 0.5), expr="r = x·z"),
            Node("f", "mul", ("q", "r"), pos=(2, 1.5), expr="f = q·r")]),
        defaults={"x": 2.0, "y": -1.0, "z": 3.0},
        ranges={n: (-4.0, 4.0) for n in "xyz"}),
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


class GateLogic(GraphNumbers, Logic):
    """The numbers of a small computational graph, every gradient by complex step.

    Args:
        graph: ``"neuron"`` (default; CS231n's f = σ(w0·x0 + w1·x1 + w2) with
            w = (2, -3, -3), x = (-1, -2)), ``"neuron_expanded"`` (σ written as
            ×(-1), exp, +1, 1/x), ``"gates"`` (f = 2·(x·y + max(z, w)) at
            (3, -4, 2, -1)) or ``"fanout"`` (f = (x + y)·(x·z)).
        student_neuron: optional, for the neuron graphs: your
            ``neuron_forward_backward(w, x) -> (f, dw, dx)``; its gradients are
            shown next to the complex-step ones (nothing is shown while it
            raises NotImplementedError).

    ``state`` holds the inputs (the sliders). :meth:`values` returns, with
    ``u->v`` naming the edge from node ``u`` into gate ``v``:

    * ``"f"`` and every node's forward value under its name (``"p0"``, ...);
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
            n: Control(n, self.graph.defaults[n], *self.graph.ranges[n], step=0.01)
            for n in self.input_names}
        super().__init__()

    # --- evaluation (GraphNumbers) ------------------------------------------

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


class GateExplorer(Explorer):
    """Sliders on a graph's inputs; the graph drawn with every edge's four numbers.

    Args:
        graph: see :class:`GateLogic` (``"neuron"``, ``"neuron_expanded"``,
            ``"gates"``, ``"fanout"``).
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
        from ._render import COLORS, BlitFigure

        lg: GateLogic = self.logic
        n_cols = max(n.pos[0] for n in lg.nodes) + 2
        rows = [n.pos[1] for n in lg.nodes]
        width = min(11.5, 1.45 * n_cols + 0.8)
        wide = width >= 9.0  # room for the legend beside the title
        head = 0.5 if wide else 0.75  # inches above the graph
        height = 0.72 * (max(rows) - min(rows)) + 0.9 + head
        bf = BlitFigure((width, height))
        ax = bf.fig.add_axes((0.0, 0.0, 1.0, 1.0 - head / height))
        ax.set_axis_off()
        ax.set_xlim(-0.45, n_cols - 1 + 0.25)
        ax.set_ylim(min(rows) - 0.45, max(rows) + 0.4)
        top = 1.0 - 0.25 / height
        bf.fig.text(0.01, top, lg.graph.title, fontsize=12, weight="bold", va="center")
        legend = ("green: forward value    red: ∂f/∂(edge value) = local × upstream (grey)")
        if wide:
            bf.fig.text(0.99, top, legend, fontsize=8.5, ha="right", va="center",
                        color=COLORS["local"])
        else:
            bf.fig.text(0.01, top - 0.25 / height, legend, fontsize=8.5, va="center",
                        color=COLORS["local"])
        n_uses = {n.name: sum(u == n.name for v in lg.nodes for u in v.inputs)
                  for n in lg.nodes}

        def xy(name):
            if name == "__out__":
                c, r = lg.by_name[lg.output].pos
                return c + 1.0, r
            c, r = lg.by_name[name].pos
            return float(c), float(r)

        node_pt = 17  # radius of a gate's circle, in points
        self._edge_text = {}
        for u, v in list(lg.edges) + [(lg.output, "__out__")]:
            (x0, y0), (x1, y1) = xy(u), xy(v)
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="-|>", color=COLORS["edge"], lw=1.3,
                                        mutation_scale=12,
                                        shrinkA=12 if lg.by_name[u].op == "input" else node_pt,
                                        shrinkB=node_pt + 1 if v != "__out__" else 2))
            # the labels sit part way along the edge, where edges into one gate are apart
            # near a single-use input the labels sit early, where edges are apart; an
            # input feeding two gates has two edges leaving one point: go further
            t = 0.3 if lg.by_name[u].op == "input" and n_uses[u] == 1 else 0.5
            mx, my = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            val = bf.label(ax, mx, my, offset=(0, 3), va="bottom", size=10, bold=True,
                           color=COLORS["value"])
            grad = bf.label(ax, mx, my, offset=(0, -3), va="top", size=10, bold=True,
                            color=COLORS["grad"])
            loc = bf.label(ax, mx, my, offset=(0, -16), va="top", size=7.5,
                           color=COLORS["local"])
            self._edge_text[(u, v)] = (val, grad, loc)
        for node in lg.nodes:
            x, y = xy(node.name)
            if node.op == "input":
                ax.text(x, y, node.name, ha="right", va="center", fontsize=12,
                        style="italic", weight="bold")
            else:
                sym = _symbol(node)
                ax.plot([x], [y], "o", ms=2 * node_pt, mfc=COLORS["node"],
                        mec=COLORS["node_edge"], mew=1.4, zorder=3)
                ax.text(x, y, sym, ha="center", va="center", zorder=4,
                        fontsize=13 if len(sym) <= 2 else 9, weight="bold")
        ox, oy = xy("__out__")
        ax.text(ox + 0.03, oy, "f", ha="left", va="center", fontsize=12, style="italic",
                weight="bold")
        return bf

    def _draw(self, values) -> None:
        for (u, v), (val, grad, loc) in self._edge_text.items():
            if v == "__out__":
                val.text, grad.text, loc.text = fmt(values["f"], 3), "1", "(∂f/∂f)"
                continue
            key = f"{u}->{v}"
            val.text = fmt(values[f"{key} value"], 3)
            grad.text = fmt(values[f"{key} product"], 3)
            loc.text = f"{fmt(values[f'{key} local'], 3)} × {fmt(values[f'{key} upstream'], 3)}"

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
