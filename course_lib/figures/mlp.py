"""Figures and a widget for lesson 04 (backpropagation through an MLP).

    draw_network(...)             a layered network with numbers on its neurons and edges
    plot_outer_products(dZ, A)    dW = dZᵀ A drawn as the sum of one outer product per sample
    plot_training(...)            loss curve and decision regions of a trained classifier
    learning_rate_explorer(...)   widget: the same learning rate with a mean or a sum loss

Nothing here computes a gradient for you: functions that train take your own
``backprop`` and ``sgd_step`` as arguments. matplotlib (and ipywidgets for the
widget) are imported here, so only notebooks that draw import this module.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._drawing import draws, plt

__all__ = ["draw_network", "plot_outer_products", "plot_training", "learning_rate_explorer"]

_BLUE, _ORANGE, _GREY, _RED = "#1f77b4", "#ff7f0e", "#b0b0b0", "#d62728"


@draws
def draw_network(layer_sizes, node_text=None, layer_names=None, highlight_edges=(),
                 edge_text=None, highlight_node=None, ax=None, title=None):
    """Draw a fully connected network, inputs on the left.

    Args:
        layer_sizes: e.g. (3, 4, 2).
        node_text: optional list (one per layer) of lists of strings written
            beside each neuron.
        layer_names: optional list of strings under each layer.
        highlight_edges: iterable of (l, j, k): the edge from neuron k of layer
            l-1 to neuron j of layer l (0-based j and k; layers counted from 0 =
            the input, so l >= 1), drawn in colour.
        edge_text: optional dict {(l, j, k): text} written on those edges.
        highlight_node: optional (l, j), drawn filled.
        ax: a matplotlib Axes (default: a new figure).
        title: optional title.
    Returns:
        the Axes.
    """
    sizes = [int(n) for n in layer_sizes]
    if ax is None:
        _, ax = plt.subplots(figsize=(2.3 * len(sizes) + 1, 0.9 * max(sizes) + 1.2))
    pos = {}
    for li, n in enumerate(sizes):
        for j in range(n):
            pos[li, j] = (li, (n - 1) / 2 - j)
    highlight = set(map(tuple, highlight_edges))
    for li in range(1, len(sizes)):
        for j in range(sizes[li]):
            for k in range(sizes[li - 1]):
                (x0, y0), (x1, y1) = pos[li - 1, k], pos[li, j]
                hot = (li, j, k) in highlight
                ax.plot([x0, x1], [y0, y1], color=_ORANGE if hot else _GREY,
                        lw=2.4 if hot else 0.8, zorder=2 if hot else 1)
                if edge_text and (li, j, k) in edge_text:
                    t = 0.62
                    ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), edge_text[li, j, k],
                            fontsize=9, color=_ORANGE, ha="center", va="center",
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"},
                            zorder=4)
    for (li, j), (x, y) in pos.items():
        filled = highlight_node is not None and tuple(highlight_node) == (li, j)
        ax.scatter([x], [y], s=420, color=_BLUE if filled else "white", edgecolor=_BLUE,
                   linewidth=1.8, zorder=3)
        ax.text(x, y, f"{j + 1}", ha="center", va="center", fontsize=9, zorder=4,
                color="white" if filled else _BLUE)
        if node_text and node_text[li] and node_text[li][j]:
            ax.text(x + 0.13, y + 0.18, node_text[li][j], fontsize=9, ha="left", va="bottom",
                    zorder=4)
    if layer_names:
        for li, name in enumerate(layer_names):
            ax.text(li, -(max(sizes) - 1) / 2 - 0.75, name, ha="center", va="top", fontsize=10)
    ax.set_xlim(-0.5, len(sizes) - 0.3)
    ax.set_ylim(-(max(sizes) - 1) / 2 - 1.2, (max(sizes) - 1) / 2 + 0.6)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def _heatmap(ax, M, title, vmax, fmt="{:.3f}"):
    ax.imshow(M, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    for (i, j), v in np.ndenumerate(M):
        ax.text(j, i, fmt.format(v + 0.0), ha="center", va="center", fontsize=8)  # no -0.000
    ax.set_xticks(range(M.shape[1]))
    ax.set_yticks(range(M.shape[0]))
    ax.set_xlabel("k (input neuron)")
    ax.set_ylabel("j (output neuron)")
    ax.set_title(title, fontsize=10)


@draws
def plot_outer_products(dZ, A_prev, names=("dZ", "A_prev")):
    """Show dW = dZᵀ @ A_prev as the sum over samples n of the outer products dZ[n] A_prev[n]ᵀ.

    Args:
        dZ: shape (N, n_out), ∂J/∂Z of one layer (with the 1/N already in it).
        A_prev: shape (N, n_in), that layer's input.
        names: how the two arrays are called in the titles.
    Returns:
        the Figure.
    """
    dZ = np.asarray(dZ, dtype=float)
    A_prev = np.asarray(A_prev, dtype=float)
    N = dZ.shape[0]
    parts = [np.outer(dZ[n], A_prev[n]) for n in range(N)]
    total = dZ.T @ A_prev
    vmax = max(1e-12, max(np.abs(p).max() for p in parts + [total]))
    fig, axes = plt.subplots(1, N + 1, figsize=(2.4 * (N + 1) + 0.5, 2.9))
    for n, ax in enumerate(axes[:-1]):
        _heatmap(ax, parts[n], f"sample {n}: {names[0]}[{n}] ⊗ {names[1]}[{n}]", vmax)
        if n < N - 1:
            ax.text(1.08, 0.5, "+", transform=ax.transAxes, fontsize=18, va="center")
    axes[-2].text(1.08, 0.5, "=", transform=axes[-2].transAxes, fontsize=18, va="center")
    _heatmap(axes[-1], total, f"dW = {names[0]}ᵀ @ {names[1]}", vmax)
    fig.tight_layout()
    return fig


@draws
def plot_training(losses, predict, X, y, title=None, resolution=250):
    """Loss curve and decision regions of a trained classifier.

    Args:
        losses: the training loss at every step.
        predict: function mapping points of shape (M, 2) to class scores (M, C).
        X: training inputs, shape (N, 2).
        y: integer labels, shape (N,).
        title: optional figure title.
        resolution: grid points per axis for the regions.
    Returns:
        the Figure.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.3))
    ax0.plot(np.arange(len(losses)), losses, color=_BLUE)
    ax0.set_yscale("log")
    ax0.set_xlabel("step (one full batch each)")
    ax0.set_ylabel("training loss J (log scale)")
    ax0.set_title("loss curve")
    ax0.grid(alpha=0.3)

    pad = 0.25
    (x0, y0), (x1, y1) = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    scores = np.asarray(predict(np.column_stack([gx.ravel(), gy.ravel()])))
    regions = scores.argmax(axis=1).reshape(gx.shape)
    n_classes = max(int(y.max()) + 1, scores.shape[1])
    cmap = plt.get_cmap("tab10")
    colours = [cmap(c) for c in range(n_classes)]
    from matplotlib.colors import ListedColormap
    ax1.contourf(gx, gy, regions, levels=np.arange(n_classes + 1) - 0.5,
                 cmap=ListedColormap(colours), alpha=0.25)
    ax1.scatter(X[:, 0], X[:, 1], c=[colours[c] for c in y], s=14, edgecolor="k",
                linewidth=0.3)
    accuracy = float(np.mean(np.asarray(predict(X)).argmax(axis=1) == y))
    ax1.set_title(f"decision regions (training accuracy {accuracy:.1%})")
    ax1.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


@draws
def learning_rate_explorer(backprop, sgd_step, X, y, layer_sizes=(2, 16, 2),
                           activations=("tanh", "softmax"), batch_sizes=(25, 100, 400),
                           steps=150, seed=0):
    """Widget: train with a mean loss or a sum loss and see what the learning rate does.

    For each batch size N in ``batch_sizes`` it trains the same network (same
    initial weights) on the first N points of a fixed shuffle of ``X``, full
    batch, with YOUR ``backprop`` (mean loss) and ``sgd_step``. With
    "sum", the gradient is N times the mean's (J_sum = N · J_mean), so the
    step is too. The curves always show the mean loss, so they are comparable.

    Args:
        backprop: your backprop(params, X, Y, activations, loss) (mean loss).
        sgd_step: your sgd_step(params, grads, lr).
        X: shape (M, 2); y: integer labels (M,), M >= max(batch_sizes).
        layer_sizes, activations: the network (loss "cross_entropy").
        batch_sizes: the N compared, at most 4 of them.
        steps: full-batch steps per run.
        seed: for the initial weights and the shuffle.
    Returns:
        the ipywidgets object (displayed by the notebook).
    """
    import ipywidgets as widgets

    from .. import nets

    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    order = np.random.default_rng(seed).permutation(len(y))
    start = nets.init_params(layer_sizes, seed=seed)
    # One call outside the widget: if backprop is not written yet, the cell says so.
    backprop(start, X[order[:2]], y[order[:2]], activations, "cross_entropy")

    def train(lr, reduction, N):
        idx = order[:N]
        Xs, ys = X[idx], y[idx]
        params = [(W.copy(), b.copy()) for W, b in start]
        curve = []
        factor = N if reduction == "sum" else 1.0
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for _ in range(steps):
                J, grads = backprop(params, Xs, ys, activations, "cross_entropy")
                if not np.isfinite(J) or J > 1e3:
                    curve.append(np.nan)
                    break
                curve.append(J)
                grads = [(factor * dW, factor * db) for dW, db in grads]
                params = sgd_step(params, grads, lr)
        return curve

    def show(log10_lr, reduction):
        lr = 10.0 ** log10_lr
        fig, ax = plt.subplots(figsize=(8, 3.8))
        for N, colour in zip(batch_sizes, [_BLUE, _ORANGE, "#2ca02c", _RED], strict=False):
            curve = train(lr, reduction, N)
            diverged = bool(curve) and np.isnan(curve[-1])
            ax.plot(curve, color=colour, label=f"N = {N}" + (" (diverged)" if diverged else ""))
            if diverged and len(curve) > 1:
                ax.plot([len(curve) - 2], [min(curve[-2], 1.45)], "x", color=colour, ms=10)
        ax.set_xlabel("step")
        ax.set_ylabel("mean training loss (cut at 1.5)")
        ax.set_ylim(0, 1.5)
        ax.set_xlim(0, steps)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        ax.set_title(f"lr = {lr:.3g}, loss = {reduction} over the batch")
        plt.show()

    return widgets.interactive(
        show,
        log10_lr=widgets.FloatSlider(value=0.0, min=-3.0, max=1.0, step=0.25,
                                     description="log10(lr)", continuous_update=False),
        reduction=widgets.ToggleButtons(options=["mean", "sum"], value="mean",
                                        description="loss"),
    )
