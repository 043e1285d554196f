"""Figures for lesson 01: computational graphs with their numbers on them, and seed 003.

Every edge of a drawn graph carries two numbers: the value that flows forward
along it (above the edge, green) and the gradient of the output with respect to
that value, as it flows back along that edge (below the edge, red). Where a
value feeds two nodes, each edge shows its own share and the input's label
shows their sum: gradients add at a fan-out.

The graphs, their numbers and their drawing are those of the lesson's explorer
(:mod:`course_lib.widgets.chain_rule`: one engine, :class:`GateLogic` to
evaluate and :class:`GraphDrawing` to draw), never the functions a student
writes. Their inputs are slider positions, multiples of 0.01, the two decimals
the drawing shows: a graph illustrates the lesson's examples, and is no
calculator for the exercises at any other inputs (COURSE.md: no helper a
student can import returns a graded function's answer).

    from course_lib.figures import chain_rule as figs
    figs.draw_graph(figs.neuron_graph((2, -3, -3), (-1, -2)))
    figs.draw_neuron()

The explorer with sliders is ``course_lib.widgets.GateExplorer``.
"""

from __future__ import annotations

import numpy as np

from .. import nets
from .._drawing import draws, plt
from ..gradcheck import numerical_gradient
from ..widgets.chain_rule import GRAD_COLOR, VALUE_COLOR, Evaluation, GateLogic

__all__ = [
    "VALUE_COLOR",
    "GRAD_COLOR",
    "example_graph",
    "gates_graph",
    "fanout_graph",
    "neuron_graph",
    "draw_graph",
    "draw_neuron",
    "plot_seed003",
]


def _evaluate(graph: str, **inputs) -> Evaluation:
    """The graph ``graph`` of the explorer with its sliders at ``inputs``, evaluated."""
    logic = GateLogic(graph)
    logic.update(**inputs)
    return logic.evaluate()


def example_graph(x: float = -2.0, y: float = 5.0, z: float = -4.0) -> Evaluation:
    """f = (x + y) z, the first graph of the lesson (CS231n's numbers by default)."""
    return _evaluate("example", x=x, y=y, z=z)


def gates_graph(x: float = 3.0, y: float = -4.0, z: float = 2.0, w: float = -1.0) -> Evaluation:
    """f = 2·(x·y + max(z, w)): an add, a mul and a max gate side by side."""
    return _evaluate("gates", x=x, y=y, z=z, w=w)


def fanout_graph(x: float = 3.0, y: float = 2.0) -> Evaluation:
    """f = x·y + max(x, y): x and y each feed two gates."""
    return _evaluate("fanout", x=x, y=y)


def neuron_graph(w=(2.0, -3.0, -3.0), x=(-1.0, -2.0), grouped: bool = False) -> Evaluation:
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
    return _evaluate("neuron" if grouped else "neuron_expanded",
                     w0=w[0], w1=w[1], w2=w[2], x0=x[0], x1=x[1])


@draws
def draw_graph(graph: Evaluation, ax=None, digits: int = 2, show: bool = True,
               title: str | None = None):
    """Draw a graph: boxes for operations, values above each edge, gradients below.

    Args:
        graph: an evaluated graph (:func:`example_graph`, :func:`neuron_graph`, ...).
        ax: a matplotlib Axes to draw into (a new figure when None).
        digits: decimals shown.
        show: call ``plt.show()`` (True, in a notebook) or return the figure.
        title: the title (default: the graph's own).

    Returns:
        the Figure when ``show`` is False, else None.
    """
    from ..widgets._render import Label, bake_labels
    from ..widgets.chain_rule import GraphDrawing, graph_figsize

    if ax is None:
        fig, ax = plt.subplots(figsize=graph_figsize(graph.graph))
    else:
        fig = ax.figure
    labels: list[Label] = []

    def label(ax_, x, y, text="", **style):
        labels.append(Label(ax_, x, y, text, **style))
        return labels[-1]

    drawing = GraphDrawing(graph.graph, ax, label, title=title,
                           number=lambda v: f"{v + 0.0:.{digits}f}")  # + 0.0: no -0.00
    drawing.update(graph.values)
    bake_labels(labels, fig)
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
