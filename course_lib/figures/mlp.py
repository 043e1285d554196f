"""Figures and a widget for lesson 04 (backpropagation through an MLP).

    draw_network(...)             a layered network with numbers on its neurons and edges
    plot_outer_products(dZ, A)    dW = dZᵀ A drawn as the sum of one outer product per sample
    plot_training(...)            loss curve and decision regions of a trained classifier
    plot_gradient_costs(...)      finite differences against backprop, timed (the capstone)
    LiveCurves(...)               loss and accuracy curves redrawn while a network trains

Nothing here computes a gradient for you: functions that train take your own
``backprop`` and ``sgd_step`` as arguments. matplotlib is imported here, so only
notebooks that draw import this module. The explorers with sliders (the network's
∂J/∂w, the learning rate with a mean or a sum loss) are in course_lib.widgets.mlp.
"""

from __future__ import annotations

import numpy as np

from .._drawing import draws, plt

__all__ = ["draw_network", "plot_outer_products", "plot_training",
           "plot_gradient_costs", "LiveCurves"]

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


# ---------------------------------------------------------------------------
# The capstone: "why backprop, measured" and live training curves
# ---------------------------------------------------------------------------

@draws
def plot_gradient_costs(n_params, seconds_fd, seconds_bp):
    """Time for all gradients by finite differences and by backprop, against the
    number of parameters (log-log), with the ratio on a second panel.

    Args:
        n_params: the networks' numbers of parameters P.
        seconds_fd, seconds_bp: measured seconds for one full gradient each way.
    Returns:
        the Figure.
    """
    P = np.asarray(n_params, dtype=float)
    fd, bp = np.asarray(seconds_fd, dtype=float), np.asarray(seconds_bp, dtype=float)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.loglog(P, fd, "o-", color=_RED, label="finite differences (2P forward passes)")
    ax0.loglog(P, bp, "o-", color=_BLUE, label="backprop (one forward, one backward)")
    ax0.set_xlabel("parameters P")
    ax0.set_ylabel("seconds for the whole gradient")
    ax0.legend(loc="upper left", fontsize=9)
    ax0.grid(alpha=0.3, which="both")
    ratio = fd / bp
    ax1.loglog(P, ratio, "o-", color=_ORANGE)
    # c·P through the middle of the points (c the geometric mean of ratio / P): a line
    # through one point would carry that one timing's noise
    ax1.loglog(P, P * np.exp(np.mean(np.log(ratio / P))), ":", color=_GREY, label="∝ P")
    ax1.set_xlabel("parameters P")
    ax1.set_ylabel("finite differences / backprop")
    ax1.legend(loc="upper left")
    ax1.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


class LiveCurves:
    """Loss and accuracy curves that redraw while a network trains.

    Pass it as ``on_epoch`` to a training loop that calls ``on_epoch(epoch, history)``
    after every epoch, ``history`` holding the lists "loss", "train_acc" and "val_acc".
    It redraws after every ``every``-th epoch (and after epoch ``epochs - 1``, the
    last, when ``epochs`` is given), in one output area under the cell, so the
    picture updates in place; a redraw costs about a tenth of a second, training
    an epoch a few milliseconds. While a notebook is graded it draws nothing.

    ``redraw_epochs`` lists the epochs after which it (would have) redrawn: its logic
    is testable without a browser.
    """

    def __init__(self, every: int = 5, epochs: int | None = None):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every: expected a positive whole number, got {every!r}")
        self.every, self.epochs = every, epochs
        self.redraw_epochs: list[int] = []
        self._out = None

    def wants_redraw(self, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0 or (self.epochs is not None
                                                 and epoch == self.epochs - 1)

    def __call__(self, epoch: int, history: dict) -> bool:
        if not self.wants_redraw(epoch):
            return False
        self.redraw_epochs.append(epoch)
        self._draw(epoch, {k: list(history.get(k, ())) for k in ("loss", "train_acc",
                                                                  "val_acc")})
        return True

    @draws
    def _draw(self, epoch, history):
        import ipywidgets as widgets
        from IPython.display import clear_output, display

        if self._out is None:
            self._out = widgets.Output()
            display(self._out)
        with self._out:
            clear_output(wait=True)
            fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.6))
            epochs = np.arange(1, len(history["loss"]) + 1)
            ax0.plot(epochs, history["loss"], "o-", color=_BLUE, ms=3)
            ax0.set_xlabel("epoch")
            ax0.set_ylabel("mean training loss")
            ax0.set_yscale("log")
            ax0.grid(alpha=0.3)
            for key, colour, label in (("train_acc", _ORANGE, "training"),
                                       ("val_acc", _BLUE, "validation")):
                if history[key]:
                    ax1.plot(epochs[:len(history[key])], history[key], "o-", color=colour,
                             ms=3, label=f"{label} ({history[key][-1]:.1%})")
            ax1.set_xlabel("epoch")
            ax1.set_ylabel("accuracy")
            ax1.set_ylim(min(0.8, *(history["val_acc"] or [0.8])) - 0.02, 1.005)
            ax1.legend(loc="lower right")
            ax1.grid(alpha=0.3)
            fig.suptitle(f"after epoch {epoch + 1}")
            fig.tight_layout()
            plt.show()
