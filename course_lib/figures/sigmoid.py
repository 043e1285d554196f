"""Figures and one widget for lesson 02 (the sigmoid, saturation, vanishing gradients, BCE).

Every number drawn here is computed with plain numpy in this module, so the
figures work whether or not the lesson's exercises are solved, and never use the
reference answers. The activations are written out inside each function, where
they only serve that function's own curve or simulation: a helper returning σ,
σ' or ReLU' of any z would return an answer of this lesson (COURSE.md: no helper
a student can import returns a graded function's answer).

    from course_lib.figures import sigmoid as figs
    figs.plot_sigmoid_and_derivative()
    figs.plot_vanishing_gradients()
    figs.plot_bce_vs_mse()

The explorers with sliders are in :mod:`course_lib.widgets.sigmoid`
(``SigmoidExplorer``, ``VanishingExplorer``); the deep-network experiment,
:func:`delta_norms_by_layer`, is theirs too.
"""

from __future__ import annotations

import numpy as np

from course_lib._validate import check_choice, check_positive
from course_lib.widgets.sigmoid import delta_norms_by_layer

from .._drawing import draws, plt

__all__ = [
    "saturation_threshold",
    "plot_sigmoid_and_derivative",
    "delta_norms_by_layer",
    "plot_vanishing_gradients",
    "train_single_neuron",
    "plot_bce_vs_mse",
]

ACTIVATIONS = ("sigmoid", "tanh", "relu")
COLORS = {"sigmoid": "tab:blue", "tanh": "tab:orange", "relu": "tab:green",
          "mse": "tab:red", "bce": "tab:blue"}


def saturation_threshold(threshold: float = 0.01) -> float:
    """The |z| beyond which σ'(z) < threshold.

    σ'(z) = s(1 - s) with s = σ(z) equals t where s = (1 - sqrt(1 - 4t)) / 2,
    and z = log(s / (1 - s)) there (the logit, the inverse of σ).

    Args:
        threshold: a value in (0, 1/4).
    Returns:
        z* > 0 with σ'(±z*) = threshold.
    """
    check_positive("threshold", threshold)
    if not threshold < 0.25:
        raise ValueError(f"threshold: expected a value below 1/4 (the maximum of σ'), "
                         f"got {threshold!r}")
    s = (1.0 - np.sqrt(1.0 - 4.0 * threshold)) / 2.0
    return float(np.log((1.0 - s) / s))


@draws
def plot_sigmoid_and_derivative(threshold: float = 0.01, z_max: float = 8.0):
    """σ and σ' on one figure; where σ' < threshold is shaded; the maximum 1/4 is marked.

    Args:
        threshold: σ' below this counts as saturated (default 0.01).
        z_max: the z axis runs from -z_max to z_max.
    Returns:
        the matplotlib Figure.
    """
    check_positive("z_max", z_max)
    z_star = saturation_threshold(threshold)
    z = np.linspace(-z_max, z_max, 801)
    s = 0.5 * (1.0 + np.tanh(0.5 * z))  # σ(z) = (1 + tanh(z/2)) / 2: never overflows
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for lo, hi in ((-z_max, -z_star), (z_star, z_max)):
        if lo < hi:
            ax.axvspan(lo, hi, color="0.88", zorder=0)
    ax.plot(z, s, color="tab:blue", lw=2, label=r"$\sigma(z)$")
    ax.plot(z, s * (1 - s), color="tab:red", lw=2, label=r"$\sigma'(z)=\sigma(z)(1-\sigma(z))$")
    ax.plot([0], [0.25], "o", color="tab:red")
    ax.annotate(r"maximum $\sigma'(0)=1/4$", xy=(0, 0.25), xytext=(1.2, 0.36),
                arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    if z_star < z_max:
        ax.text(-(z_max + z_star) / 2, 0.62, f"saturated\n$\\sigma'<{threshold:g}$\n"
                f"($z<{-z_star:.2f}$)", ha="center", va="center", fontsize=9, color="0.3")
        ax.text((z_max + z_star) / 2, 0.38, f"saturated\n$\\sigma'<{threshold:g}$\n"
                f"($z>{z_star:.2f}$)", ha="center", va="center", fontsize=9, color="0.3")
    ax.set_xlim(-z_max, z_max)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("pre-activation $z$")
    ax.set_title("The sigmoid and its derivative")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def _draw_vanishing(ax, depth, width, weight_scale, seed, activations=ACTIVATIONS):
    layers = np.arange(1, depth + 1)
    for name in activations:
        res = delta_norms_by_layer(name, depth=depth, width=width, weight_scale=weight_scale,
                                   seed=seed)
        ratio = np.where(res["ratio"] > 0, res["ratio"], np.nan)  # log scale: drop exact 0
        share = 100 * res["saturated"].mean()
        label = (f"relu ({share:.0f}% of units inactive, f' = 0)" if name == "relu" else
                 f"{name} ({share:.0f}% of units saturated, f' < 0.01)")
        ax.semilogy(layers, ratio, "o-", ms=3, color=COLORS[name], label=label)
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel(f"layer $l$ (1 = next to the input; the loss is above layer {depth})")
    ax.set_ylabel(r"$\|\delta^{(l)}\| \,/\, \|\delta^{(L)}\|$, $L$ = " + str(depth))
    ax.set_xlim(0.5, depth + 0.5)
    ax.legend(loc="lower right", fontsize=9)


@draws
def plot_vanishing_gradients(depth: int = 30, width: int = 64, weight_scale: float = 1.0,
                             seed: int = 0):
    """The size of δ per layer, relative to the top layer, for sigmoid, tanh and ReLU.

    Args:
        depth, width, weight_scale, seed: see :func:`delta_norms_by_layer`.
    Returns:
        the matplotlib Figure.
    """
    fig, ax = plt.subplots(figsize=(8, 4.2))
    _draw_vanishing(ax, depth, width, weight_scale, seed)
    ax.set_title(f"How much of the gradient reaches each layer ({depth} layers of {width} units)")
    fig.tight_layout()
    return fig


# @draws: the data of plot_bce_vs_mse's right panel, computed only where figures are
# drawn. While a notebook is graded it returns None: its first prediction, σ(w x + b)
# at a w of the caller's choosing, must not serve as a σ (lesson 02's exercise).
@draws
def train_single_neuron(loss: str, w: float = 2.5, b: float = 2.5, x: float = 1.0,
                        y: float = 0.0, lr: float = 1.0, steps: int = 300) -> np.ndarray:
    """Gradient descent on one sigmoid neuron ŷ = σ(w x + b) with one training pair.

    The gradient with respect to z = w x + b is (ŷ - y) σ'(z) for the loss
    "mse" = ½(ŷ - y)² and ŷ - y for "bce"; then dw = dz·x and db = dz.

    Args:
        loss: "mse" or "bce".
        w, b: the starting parameters (the default starts confidently wrong).
        x, y: the input and its target.
        lr: learning rate.
        steps: number of updates.
    Returns:
        the prediction ŷ before each step, shape (steps,) (None while grading).
    """
    check_choice("loss", loss, ("mse", "bce"))
    check_positive("steps", steps, integer=True)
    out = np.empty(steps)
    for i in range(steps):
        y_hat = float(0.5 * (1.0 + np.tanh(0.5 * (w * x + b))))  # σ(w x + b)
        dz = (y_hat - y) * y_hat * (1 - y_hat) if loss == "mse" else y_hat - y
        w, b = w - lr * dz * x, b - lr * dz
        out[i] = y_hat
    return out


@draws
def plot_bce_vs_mse(z_start: float = 5.0, lr: float = 1.0, steps: int = 300):
    """Why BCE learns fast where MSE stalls: the output gradient, and a training run.

    Left: |∂ℓ/∂z| for target y = 0 as a function of the output's pre-activation z,
    for MSE + sigmoid, (ŷ - y)σ'(z), and BCE + sigmoid, ŷ - y. Right: ŷ during
    gradient descent on one neuron (x = 1, y = 0, w = b = z_start / 2).

    Returns:
        the matplotlib Figure.
    """
    z = np.linspace(-6, 8, 561)
    s = 0.5 * (1.0 + np.tanh(0.5 * z))  # σ(z)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(z, s, color=COLORS["bce"], lw=2, label=r"BCE: $|\hat y - y|$")
    ax1.plot(z, s * s * (1 - s), color=COLORS["mse"], lw=2,
             label=r"MSE: $|\hat y - y|\,\sigma'(z)$")
    ax1.axvline(z_start, color="0.5", ls="--", lw=1)
    ax1.text(z_start + 0.1, 0.55, f"start of the\nrun on the right\n(z = {z_start:g}, "
             f"ŷ = {0.5 * (1.0 + np.tanh(0.5 * z_start)):.3f})", fontsize=9, color="0.3")
    ax1.set_xlabel("output pre-activation $z$ (target $y = 0$: large $z$ is confidently wrong)")
    ax1.set_ylabel(r"$|\partial \ell / \partial z|$")
    ax1.set_title("Gradient at the output")
    ax1.legend(loc="upper left")
    for loss in ("mse", "bce"):
        y_hat = train_single_neuron(loss, w=z_start / 2, b=z_start / 2, lr=lr, steps=steps)
        ax2.plot(np.arange(steps), y_hat, color=COLORS[loss], lw=2, label=loss.upper())
    ax2.set_xlabel("gradient-descent step")
    ax2.set_ylabel(r"prediction $\hat y$ (target 0)")
    ax2.set_title(f"One neuron learning, learning rate {lr:g}")
    ax2.set_ylim(-0.03, 1.03)
    ax2.legend()
    fig.tight_layout()
    return fig
