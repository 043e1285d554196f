"""Figures for lesson 05: the graph of grad_fn nodes that autograd records.

``draw_grad_fn_graph(t)`` draws the backward graph of a tensor as layered
boxes: ``t.grad_fn`` at the top, the ``AccumulateGrad`` nodes of the leaves at
the bottom, one arrow per entry of ``next_functions`` (the direction in which
``backward()`` sends gradients). No graphviz needed: plain matplotlib.

The nodes are read through their public attributes only (``next_functions``,
``variable``), so this module does not import torch itself.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque

from .._drawing import draws, plt

__all__ = ["draw_grad_fn_graph", "graph_layers"]

LEAF_COLOR = "#d9f2d9"     # AccumulateGrad: where gradients come to rest
CUSTOM_COLOR = "#fde2c4"   # a Python torch.autograd.Function you wrote
OP_COLOR = "#dbe8f7"       # a built-in operation's backward


def _children(node):
    return [child for child, _ in getattr(node, "next_functions", ()) if child is not None]


def graph_layers(t, leaves_at_bottom=False):
    """The nodes of ``t``'s backward graph, arranged in layers for drawing.

    A node's layer is the length of the LONGEST path from ``t.grad_fn`` to it,
    so every arrow points down.

    Args:
        t: a tensor with a ``grad_fn`` (the result of operations on tensors
            that require grad).
        leaves_at_bottom: move every ``AccumulateGrad`` node to the bottom layer.
    Returns:
        (layers, edges): ``layers`` is a list of lists of nodes, top to bottom;
        ``edges`` a Counter of (parent, child) pairs, counting how many entries
        of the parent's ``next_functions`` point to that child (2 for ``w * w``).
    """
    root = getattr(t, "grad_fn", None)
    if root is None:
        raise ValueError("t: has no grad_fn (a leaf, or computed without requires_grad=True); "
                         "there is no graph to draw")
    # Every node reachable from the root, breadth first (so that siblings keep the order
    # of their parent's inputs), and the edges between them.
    nodes, edges, queue = [], Counter(), deque([root])
    seen = {root}
    while queue:
        node = queue.popleft()
        nodes.append(node)
        for child in _children(node):
            edges[(node, child)] += 1
            if child not in seen:
                seen.add(child)
                queue.append(child)
    # Longest-path layering in topological order (Kahn's algorithm).
    n_parents = Counter(child for (_, child) in edges)
    depth = {root: 0}
    ready = [root]
    while ready:
        node = ready.pop()
        for child in dict.fromkeys(_children(node)):
            depth[child] = max(depth.get(child, 0), depth[node] + 1)
            n_parents[child] -= 1
            if n_parents[child] == 0:
                ready.append(child)
    bottom = max(depth.values())
    if leaves_at_bottom:
        for node in nodes:
            if type(node).__name__ == "AccumulateGrad":
                depth[node] = bottom
    layers = [[] for _ in range(bottom + 1)]
    for node in nodes:
        layers[depth[node]].append(node)
    return [layer for layer in layers if layer], edges


def _label(node, names):
    kind = type(node).__name__
    if kind == "AccumulateGrad":
        var = getattr(node, "variable", None)
        name = next((k for k, v in (names or {}).items() if v is var), None)
        shape = tuple(var.shape) if var is not None else ()
        what = name if name else "leaf"
        return f"AccumulateGrad\n{what} {shape if shape else '(scalar)'}"
    return kind


def _color(node):
    kind = type(node).__name__
    if kind == "AccumulateGrad":
        return LEAF_COLOR
    if type(node).__module__.startswith("torch.autograd.function"):
        return CUSTOM_COLOR
    return OP_COLOR


@draws
def draw_grad_fn_graph(t, names=None, ax=None, title=None, leaves_at_bottom=False):
    """Draw the backward graph of ``t`` from ``t.grad_fn`` down to the leaves.

    Blue boxes are built-in operations' backward nodes, orange ones your own
    ``torch.autograd.Function`` classes, green ones the ``AccumulateGrad``
    nodes that add into a leaf's ``.grad``. An arrow marked "×2" stands for
    two entries of ``next_functions`` pointing to the same node (a tensor used
    twice by one operation, as in ``w * w``).

    Args:
        t: a tensor with a grad_fn.
        names: optional {name: leaf tensor}, to label the leaves ("W1", "b1", ...).
        ax: a matplotlib Axes to draw into (default: a new figure sized to the graph).
        title: optional title.
        leaves_at_bottom: put every leaf on the bottom row (default: each node
            sits one row below its lowest parent).
    Returns:
        the Axes.
    """
    layers, edges = graph_layers(t, leaves_at_bottom)
    width = max(len(layer) for layer in layers)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 2.3 * width), 0.62 * len(layers) + 0.8))
    # x positions: each layer centred, ordered by the mean x of its parents
    # (the barycentre heuristic keeps most arrows short and uncrossed).
    parents = defaultdict(list)
    for parent, child in edges:
        parents[child].append(parent)
    pos = {}
    for row, layer in enumerate(layers):
        if row > 0:
            layer.sort(key=lambda n: sum(pos[p][0] for p in parents[n] if p in pos)
                       / max(1, sum(p in pos for p in parents[n])))
        for i, node in enumerate(layer):
            pos[node] = (i - (len(layer) - 1) / 2, -row)

    boxes = {}
    for node, (x, y) in pos.items():
        boxes[node] = ax.text(x, y, _label(node, names), ha="center", va="center", fontsize=8.5,
                              family="monospace", zorder=3,
                              bbox=dict(boxstyle="round,pad=0.35", fc=_color(node),
                                        ec="black" if node is t.grad_fn else "0.45",
                                        lw=1.6 if node is t.grad_fn else 0.8))
    for (parent, child), count in edges.items():
        # Drawn after the boxes (higher zorder), which places their patches first.
        ax.annotate("", xy=pos[child], xytext=pos[parent], zorder=4,
                    arrowprops=dict(arrowstyle="-|>", color="0.35", lw=0.9, shrinkA=0,
                                    shrinkB=0, patchA=boxes[parent].get_bbox_patch(),
                                    patchB=boxes[child].get_bbox_patch()))
        if count > 1:
            (x0, y0), (x1, y1) = pos[parent], pos[child]
            ax.text((x0 + x1) / 2 + 0.08, (y0 + y1) / 2, f"×{count}", fontsize=8,
                    color="firebrick", zorder=5)
    ax.set_xlim(-width / 2 - 0.2, width / 2 + 0.2)
    ax.set_ylim(-len(layers) + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(title or "backward graph: t.grad_fn at the top, gradients flow down",
                 fontsize=10)
    return ax
