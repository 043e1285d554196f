"""Figures and a widget for lesson 01: computational graphs with their numbers on them.

Every edge of a drawn graph carries two numbers: the value that flows forward
along it (above the edge, green) and the gradient of the output with respect to
that value, as it flows back along that edge (below the edge, red). Where a
value feeds two nodes, each edge shows its own share and the input's label
shows their sum: gradients add at a fan-out.

The numbers come from :class:`Graph`, a tiny reverse-mode engine written for
these pictures (a node stores its value on the way forward and its gradient on
the way back), never from the functions a student writes. Its inputs are
rounded to the two decimals the drawing shows: a graph illustrates the lesson's
examples, and is no calculator for the exercises at any other inputs (COURSE.md:
no helper a student can import returns a graded function's answer).

    from course_lib.figures import chain_rule as figs
    figs.draw_graph(figs.neuron_graph((2, -3, -3), (-1, -2)))
    figs.neuron_explorer()          # sliders for w and x (needs ipywidgets)

This module imports matplotlib, so only notebooks that draw import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import nets
from .._drawing import draws, plt
from ..gradcheck import numerical_gradient

__all__ = [
    "VALUE_COLOR",
    "GRAD_COLOR",
    "Graph",
    "example_graph",
    "gates_graph",
    "fanout_graph",
    "neuron_graph",
    "draw_graph",
    "draw_neuron",
    "neuron_explorer",
    "plot_seed003",
]

VALUE_COLOR = "#1a7f37"  # forward values: green
GRAD_COLOR = "#c0392b"  # gradients: red
_BOX_W, _BOX_H = 0.62, 0.42

# op name -> symbol drawn in the box (None: the constant, "+1" or "×-1");
# Graph.op computes each one
_OPS = {"add": "+", "mul": "×", "max": "max", "add_const": None, "mul_const": None,
        "exp": "exp", "inv": "1/x", "sigmoid": "σ"}

#: the decimals of a graph's inputs: what draw_graph shows by default
DECIMALS = 2


@dataclass
class GraphNode:
    """One node: an input (a leaf) or an operation on earlier nodes."""

    name: str
    op: str
    inputs: tuple[str, ...]
    const: float | None
    value: float
    pos: tuple[float, float]
    label: str
    grad: float = 0.0


class Graph:
    """A scalar computational graph: build it forward, then call :meth:`backward`.

    Nodes are added in the order of the forward pass, so that order reversed is
    a valid order for the backward pass.
    """

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.nodes: dict[str, GraphNode] = {}
        self.edge_grads: dict[tuple[str, str], float] = {}
        self.output: str | None = None
        self.label_at: dict[tuple[str, str], float] = {}  # where an edge's numbers sit

    def input(self, name: str, value: float, pos, label: str | None = None) -> float:
        """Add a leaf (a variable or parameter) drawn as a plain label at ``pos``.

        ``value`` is rounded to :data:`DECIMALS` (2) decimals, the precision the
        drawing shows, so that every number in the figure belongs to the inputs it
        shows. (It also keeps a graph from serving as a calculator for the gates'
        or the neuron's gradients at the random inputs of a hidden check.)
        Returns the rounded value.
        """
        value = round(float(value), DECIMALS) + 0.0  # + 0.0: no -0.0
        self._add(GraphNode(name, "input", (), None, value, tuple(pos), label or name))
        return value

    def op(self, name: str, op: str, inputs, pos, const: float | None = None,
           label: str | None = None) -> float:
        """Add an operation node; its value is computed from its inputs at once."""
        if op not in _OPS:
            raise ValueError(f"op: unknown value {op!r}; expected one of {', '.join(_OPS)}")
        inputs = tuple(inputs)
        for i in inputs:
            if i not in self.nodes:
                raise ValueError(f"inputs: no node {i!r} yet (add nodes in forward order)")
        symbol = _OPS[op]
        a = [self.nodes[i].value for i in inputs]
        # the gates, written out here: each sees only values of this graph's nodes
        if op == "add":
            value = a[0] + a[1]
        elif op == "mul":
            value = a[0] * a[1]
        elif op == "max":
            value = max(a[0], a[1])
        elif op == "add_const":
            value = a[0] + const
        elif op == "mul_const":
            value = a[0] * const
        elif op == "exp":
            value = math.exp(a[0])
        elif op == "inv":
            value = 1.0 / a[0]
        else:  # sigmoid, stable: the exponent is never positive
            e = math.exp(-abs(a[0]))
            value = 1.0 / (1.0 + e) if a[0] >= 0 else e / (1.0 + e)
        value = float(value)
        if label is None:
            label = symbol if symbol else (f"+{const:g}" if op == "add_const" else f"×{const:g}")
        self._add(GraphNode(name, op, inputs, const, value, tuple(pos), label))
        self.output = name
        return value

    def _add(self, node: GraphNode) -> None:
        if node.name in self.nodes:
            raise ValueError(f"name: a node {node.name!r} already exists")
        self.nodes[node.name] = node

    def local_grads(self, name: str) -> tuple[float, ...]:
        """∂(node)/∂(each input), at the values of the forward pass."""
        n = self.nodes[name]
        a = [self.nodes[i].value for i in n.inputs]
        if n.op == "add":
            return (1.0, 1.0)
        if n.op == "mul":
            return (a[1], a[0])  # the swapper
        if n.op == "max":
            return (1.0, 0.0) if a[0] >= a[1] else (0.0, 1.0)  # the router; ties to the first
        if n.op == "add_const":
            return (1.0,)
        if n.op == "mul_const":
            return (float(n.const),)
        if n.op == "exp":
            return (n.value,)
        if n.op == "inv":
            return (-1.0 / a[0] ** 2,)
        if n.op == "sigmoid":
            return (n.value * (1.0 - n.value),)
        return ()

    def backward(self) -> None:
        """Fill every node's ``grad`` with ∂(output)/∂(node), in reverse order."""
        for n in self.nodes.values():
            n.grad = 0.0
        self.edge_grads = {}
        self.nodes[self.output].grad = 1.0
        for n in reversed(list(self.nodes.values())):
            for inp, local in zip(n.inputs, self.local_grads(n.name), strict=True):
                share = local * n.grad  # local gradient × upstream gradient
                self.edge_grads[(inp, n.name)] = share
                self.nodes[inp].grad += share  # += : gradients add at a fan-out

    @property
    def value(self) -> float:
        return self.nodes[self.output].value

    def grads(self) -> dict[str, float]:
        """The gradient of the output with respect to every input (leaf)."""
        return {k: n.grad for k, n in self.nodes.items() if n.op == "input"}

    def table(self) -> str:
        """One line per node: forward value, local gradient(s), gradient."""
        lines = [f"{'node':<8}{'op':<10}{'value':>10}   {'local grad(s)':<20}{'grad':>9}"]
        for n in self.nodes.values():
            local = ", ".join(f"{g:.4g}" for g in self.local_grads(n.name)) or "-"
            lines.append(f"{n.name:<8}{n.label:<10}{n.value:>10.4f}   {local:<20}{n.grad:>9.4f}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# The graphs of the lesson
# ---------------------------------------------------------------------------

def example_graph(x: float = -2.0, y: float = 5.0, z: float = -4.0) -> Graph:
    """f = (x + y) z, the first graph of the lesson (CS231n's numbers by default)."""
    g = Graph("f = (x + y)·z")
    g.input("x", x, (0, 2))
    g.input("y", y, (0, 1))
    g.input("z", z, (0, 0))
    g.op("q", "add", ("x", "y"), (1.3, 1.5))
    g.op("f", "mul", ("q", "z"), (2.6, 0.75))
    g.backward()
    return g


def gates_graph(x: float = 3.0, y: float = -4.0, z: float = 2.0, w: float = -1.0) -> Graph:
    """f = 2·(x·y + max(z, w)): an add, a mul and a max gate side by side."""
    g = Graph("f = 2·(x·y + max(z, w))")
    for i, (name, v) in enumerate((("x", x), ("y", y), ("z", z), ("w", w))):
        g.input(name, v, (0, 3 - i))
    g.op("p", "mul", ("x", "y"), (1.3, 2.5))
    g.op("m", "max", ("z", "w"), (1.3, 0.5))
    g.op("s", "add", ("p", "m"), (2.6, 1.5))
    g.op("f", "mul_const", ("s",), (3.9, 1.5), const=2.0)
    g.backward()
    return g


def fanout_graph(x: float = 3.0, y: float = 2.0) -> Graph:
    """f = x·y + max(x, y): x and y each feed two gates."""
    g = Graph("f = x·y + max(x, y)")
    g.input("x", x, (0, 2.4))
    g.input("y", y, (0, 0.0))
    g.op("p", "mul", ("x", "y"), (2.0, 2.4))
    g.op("m", "max", ("x", "y"), (2.0, 0.0))
    g.op("f", "add", ("p", "m"), (3.4, 1.2))
    g.label_at.update({("x", "p"): 0.25, ("y", "m"): 0.25, ("x", "m"): 0.3, ("y", "p"): 0.3})
    g.backward()
    return g


def neuron_graph(w=(2.0, -3.0, -3.0), x=(-1.0, -2.0), grouped: bool = False) -> Graph:
    """f = σ(w0·x0 + w1·x1 + w2) node by node (CS231n's neuron by default).

    Args:
        w: three numbers (two weights, then the bias).
        x: two numbers.
        grouped: True draws σ as one gate; False splits it into ×(-1), exp, +1, 1/x.
    """
    w = [float(v) for v in np.asarray(w, dtype=float).ravel()]
    x = [float(v) for v in np.asarray(x, dtype=float).ravel()]
    if len(w) != 3 or len(x) != 2:
        raise ValueError(f"w, x: expected 3 and 2 numbers, got {len(w)} and {len(x)}")
    g = Graph("f = σ(w0·x0 + w1·x1 + w2)" + (", σ as one gate" if grouped else ", node by node"))
    g.input("w0", w[0], (0, 4.0))
    g.input("x0", x[0], (0, 2.9))
    g.input("w1", w[1], (0, 1.6))
    g.input("x1", x[1], (0, 0.5))
    g.op("a", "mul", ("w0", "x0"), (1.5, 3.45))
    g.op("b", "mul", ("w1", "x1"), (1.5, 1.05))
    g.op("c", "add", ("a", "b"), (2.8, 2.25))
    g.input("w2", w[2], (2.9, 0.7))
    g.op("q", "add", ("c", "w2"), (4.1, 1.7))
    if grouped:
        g.op("f", "sigmoid", ("q",), (5.4, 1.7))
    else:
        g.op("d", "mul_const", ("q",), (5.4, 1.7), const=-1.0)
        g.op("e", "exp", ("d",), (6.7, 1.7))
        g.op("h", "add_const", ("e",), (8.0, 1.7), const=1.0)
        g.op("f", "inv", ("h",), (9.3, 1.7))
    g.backward()
    return g


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------

def _edge_ends(src: GraphNode, dst: GraphNode):
    """Start at the right of the source (a label or a box), end at the left of the box."""
    sx, sy = src.pos
    dx, dy = dst.pos
    start = (sx + (0.22 if src.op == "input" else _BOX_W / 2), sy)
    end = (dx - _BOX_W / 2, dy)
    return start, end


@draws
def draw_graph(graph: Graph, ax=None, digits: int = 2, show: bool = True,
               title: str | None = None):
    """Draw a graph: boxes for operations, values above each edge, gradients below.

    Args:
        graph: a :class:`Graph` whose ``backward()`` has run.
        ax: a matplotlib Axes to draw into (a new figure when None).
        digits: decimals shown.
        show: call ``plt.show()`` (True, in a notebook) or return the figure.
        title: the title (default: the graph's own).

    Returns:
        the Figure when ``show`` is False, else None.
    """
    from matplotlib.patches import FancyBboxPatch  # with pyplot: only when drawing

    nodes = graph.nodes
    xs = [n.pos[0] for n in nodes.values()]
    ys = [n.pos[1] for n in nodes.values()]
    if ax is None:
        width = max(xs) - min(xs) + 2.0
        height = max(ys) - min(ys) + 1.3
        fig, ax = plt.subplots(figsize=(1.15 * width + 0.5, 1.0 * height + 0.6))
    else:
        fig = ax.figure
    fmt = f"{{:.{digits}f}}"
    off = 0.07

    def numbers(px, py, value, grad):
        # a white background keeps the digits readable where they cross an edge
        style = {"ha": "center", "fontsize": 10, "fontweight": "bold", "zorder": 4,
                 "bbox": {"boxstyle": "square,pad=0.05", "facecolor": "white",
                          "edgecolor": "none", "alpha": 0.85}}
        # (+ 0.0 turns a -0.0, e.g. 0 × a negative upstream gradient, into 0.0)
        ax.text(px, py + off, fmt.format(value + 0.0), color=VALUE_COLOR, va="bottom", **style)
        ax.text(px, py - off, fmt.format(grad + 0.0), color=GRAD_COLOR, va="top", **style)

    for n in nodes.values():
        if n.op == "input":
            ax.text(n.pos[0], n.pos[1], n.label, ha="right", va="center", fontsize=12,
                    fontstyle="italic")
            fans = sum(1 for (src, _dst) in graph.edge_grads if src == n.name)
            if fans > 1:  # show the total where the shares meet
                ax.text(n.pos[0], n.pos[1] - 0.22, f"Σ = {fmt.format(n.grad)}",
                        ha="right", va="top", color=GRAD_COLOR, fontsize=10)
            continue
        box = FancyBboxPatch((n.pos[0] - _BOX_W / 2, n.pos[1] - _BOX_H / 2), _BOX_W, _BOX_H,
                             boxstyle="round,pad=0.02,rounding_size=0.12", facecolor="#f4f6f8",
                             edgecolor="#555555", linewidth=1.2)
        ax.add_patch(box)
        ax.text(n.pos[0], n.pos[1], n.label, ha="center", va="center", fontsize=11)
        for inp in n.inputs:
            src = nodes[inp]
            (x0, y0), (x1, y1) = _edge_ends(src, n)
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.1,
                                    "shrinkA": 0, "shrinkB": 0})
            # numbers near the start of an input's edge (where edges still run apart)
            t = graph.label_at.get((inp, n.name), 0.3 if src.op == "input" else 0.5)
            numbers(x0 + t * (x1 - x0), y0 + t * (y1 - y0), src.value,
                    graph.edge_grads.get((inp, n.name), 0.0))
    # the output edge, with dout = 1 flowing in from the right
    out = nodes[graph.output]
    x0 = out.pos[0] + _BOX_W / 2
    ax.annotate("", xy=(x0 + 0.75, out.pos[1]), xytext=(x0, out.pos[1]),
                arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.1})
    numbers(x0 + 0.38, out.pos[1], out.value, out.grad)
    ax.text(x0 + 0.82, out.pos[1], "f", ha="left", va="center", fontsize=12, fontstyle="italic")

    ax.set_xlim(min(xs) - 0.7, max(xs) + 1.3)
    ax.set_ylim(min(ys) - 0.65, max(ys) + 0.55)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(graph.title if title is None else title, fontsize=11, loc="left")
    if not fig.legends:
        fig.legend(handles=[plt.Line2D([], [], color=VALUE_COLOR, lw=3, label="forward value"),
                            plt.Line2D([], [], color=GRAD_COLOR, lw=3,
                                       label="gradient ∂f/∂(edge)")],
                   loc="lower center", fontsize=9, frameon=False, ncol=2)
    if show:
        plt.show()
        return None
    return fig


@draws
def draw_neuron(w=(2.0, -3.0, -3.0), x=(-1.0, -2.0), show: bool = True):
    """The neuron twice: node by node, then with σ as one gate (same input gradients)."""
    full, grouped = neuron_graph(w, x), neuron_graph(w, x, grouped=True)
    fig, axes = plt.subplots(2, 1, figsize=(12, 8.6))
    draw_graph(full, ax=axes[0], show=False)
    draw_graph(grouped, ax=axes[1], show=False)
    axes[1].set_xlim(axes[0].get_xlim())
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.05, hspace=0.08)
    if show:
        plt.show()
        return None
    return fig


@draws
def neuron_explorer(w=(2.0, -3.0, -3.0), x=(-1.0, -2.0)):
    """Sliders for w0, w1, w2, x0, x1 that redraw the neuron's graph (ipywidgets).

    Returns:
        the widget (display it, or leave it as the last line of a cell).
    """
    import ipywidgets as widgets  # imported here: only the widget needs it

    def slider(name, v):
        return widgets.FloatSlider(value=float(v), min=-4.0, max=4.0, step=0.1,
                                   description=name, continuous_update=False,
                                   readout_format=".1f",
                                   layout=widgets.Layout(width="260px"))

    sliders = {n: slider(n, v) for n, v in zip(("w0", "w1", "w2"), w, strict=True)}
    sliders.update({n: slider(n, v) for n, v in zip(("x0", "x1"), x, strict=True)})
    grouped = widgets.Checkbox(value=False, description="σ as one gate")

    def redraw(w0, w1, w2, x0, x1, grouped):
        g = neuron_graph((w0, w1, w2), (x0, x1), grouped=grouped)
        draw_graph(g, show=True)
        dw = [g.nodes[k].grad for k in ("w0", "w1", "w2")]
        dx = [g.nodes[k].grad for k in ("x0", "x1")]
        print(f"f = {g.value:.4f}   df/dw = {np.round(dw, 4)}   df/dx = {np.round(dx, 4)}")

    out = widgets.interactive_output(redraw, {**sliders, "grouped": grouped})
    controls = widgets.HBox([widgets.VBox([sliders["w0"], sliders["w1"], sliders["w2"]]),
                             widgets.VBox([sliders["x0"], sliders["x1"], grouped])])
    return widgets.VBox([controls, out])


# ---------------------------------------------------------------------------
# Seed 003: the softplus network and its SSR
# ---------------------------------------------------------------------------

def _ssr_at(ex, params, b3: float) -> float:
    p = dict(params, b3=b3)
    return nets.ssr(ex.y, nets.ssr_forward(ex.x, p)["y_green"])


@draws
def plot_seed003(show: bool = True):
    """The worked example of lesson 1, section 7: predictions, and its b3 "derivative".

    ``nets.seed003()`` builds that example (a published softplus network with
    mistakes; the lesson's references say where). Left: the data, the prediction
    curve of the example's code (y_orange computed with w1, b1, so both hidden
    units are the same curve) and of the fixed forward pass. Right: SSR as a
    function of b3 (the example's forward values, as in its printout), the true
    tangent at b3 = 0 (slope measured by central differences), the example's line
    of slope -2·SSR, and where each update lands.
    """
    ex = nets.seed003()
    seed_params = dict(ex.params, w2=ex.params["w1"], b2=ex.params["b1"])
    grid = np.linspace(0.0, 1.0, 200)

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.3))
    left.plot(ex.x, ex.y, "o", color="black", ms=8, label="data (x, y)", zorder=3)
    for params, style, name in ((seed_params, "--", "the example's code (y_orange uses w1, b1)"),
                                (ex.params, "-", "fixed (y_orange uses w2, b2)")):
        pred = nets.ssr_forward(grid, params)["y_green"]
        ssr = nets.ssr(ex.y, nets.ssr_forward(ex.x, params)["y_green"])
        left.plot(grid, pred, style, lw=2, label=f"{name}: SSR = {ssr:.4f}")
    left.set_xlabel("x")
    left.set_ylabel("prediction ŷ = y_green")
    left.set_title("Predictions before any update (b3 = 0)", loc="left", fontsize=11)
    left.legend(fontsize=8.5, loc="upper left")
    left.set_ylim(0.8, 4.3)

    b3 = np.linspace(-0.45, 0.55, 300)
    curve = [_ssr_at(ex, seed_params, v) for v in b3]
    ssr0 = _ssr_at(ex, seed_params, 0.0)
    theta = np.zeros(1)
    true_slope = float(numerical_gradient(lambda t: _ssr_at(ex, seed_params, float(t[0])),
                                          theta)[0])
    seed_slope = -2.0 * ssr0
    lr = ex.learning_rate
    right.plot(b3, curve, color="black", lw=2, label="SSR(b3), the example's forward values")
    right.plot(b3, ssr0 + true_slope * b3, color=VALUE_COLOR, lw=1.5,
               label=f"true tangent at 0: slope {true_slope:.5f}")
    right.plot(b3, ssr0 + seed_slope * b3, color=GRAD_COLOR, lw=1.5, ls="--",
               label=f"the example's 'derivative' -2·SSR = {seed_slope:.5f}")
    right.plot([0.0], [ssr0], "o", color="black")
    seed_b3 = 0.0 + lr * seed_slope  # the example ADDED the step
    good_b3 = 0.0 - lr * true_slope
    right.plot([seed_b3], [_ssr_at(ex, seed_params, seed_b3)], "v", color=GRAD_COLOR, ms=9,
               label=f"the example's update: b3 = {seed_b3:.5f}, "
                     f"SSR = {_ssr_at(ex, seed_params, seed_b3):.5f}")
    right.plot([good_b3], [_ssr_at(ex, seed_params, good_b3)], "^", color=VALUE_COLOR, ms=9,
               label=f"b3 - lr·(true slope) = {good_b3:.5f}, "
                     f"SSR = {_ssr_at(ex, seed_params, good_b3):.5f}")
    right.set_ylim(min(curve) - 0.1, max(curve) + 0.75)
    right.set_xlabel("b3")
    right.set_ylabel("SSR")
    right.set_title("∂SSR/∂b3 is the slope of this curve at b3 = 0", loc="left", fontsize=11)
    right.legend(fontsize=8, loc="upper center", framealpha=0.95)
    fig.tight_layout()
    if show:
        plt.show()
        return None
    return fig
