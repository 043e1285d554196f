"""Figures for lesson 03 (softmax and its Jacobian).

Only the lesson's notebook imports this module (it needs matplotlib). It
computes softmax and its Jacobian with its own few lines of numpy, so every
picture works before your exercises do. Those
lines sit inside the drawing code, which draws them and returns nothing else: a
helper returning softmax(z) or its Jacobian for any z would return an answer of
this lesson (COURSE.md: no helper a student can import returns a graded
function's answer), and while a notebook is graded nothing here runs at all::

    from course_lib.figures import softmax as figs
    figs.plot_jacobians([[0.1, 0.0, -0.1], [4.0, 0.0, 0.0]])
    figs.plot_loss_gradients()

The explorer with sliders (logits, a shift c, the Jacobian and ∂L/∂z live) is
``course_lib.widgets.SoftmaxExplorer``.
"""

from __future__ import annotations

import numpy as np

from .._drawing import draws, plt
from .._validate import as_float

__all__ = ["plot_jacobians", "plot_loss_gradients"]

# No entry of a softmax Jacobian exceeds 1/4 in size: s_i(1 - s_i) <= 1/4 on the
# diagonal and s_i s_j <= 1/4 off it (s_i + s_j <= 1). One fixed colour scale
# from -1/4 to 1/4, centred at 0, makes panels comparable.
_JMAX = 0.25
_CMAP = "RdBu_r"  # diverging: blue < 0, white = 0, red > 0


@draws  # nothing while grading: the picture is all it is for
def _draw(ax_bar, ax_mat, z, title=None, annotate=True):
    """Bars of s = softmax(z) above a heatmap of J; returns the heatmap's image."""
    e = np.exp(z - z.max())  # shifted by the max: nothing overflows
    s = e / e.sum()
    J = np.diag(s) - np.outer(s, s)
    n = z.size
    idx = np.arange(1, n + 1)
    ax_bar.bar(idx, s, color="tab:blue")
    ax_bar.set_ylim(0, 1.15)
    ax_bar.set_xticks(idx)
    ax_bar.set_xlim(0.4, n + 0.6)
    ax_bar.set_ylabel("$s_i$")
    ax_bar.set_title(title or "z = " + np.array2string(z, precision=2, separator=", "),
                     fontsize=9)
    for i, p in zip(idx, s, strict=True):
        ax_bar.text(i, p + 0.02, f"{p:.2f}", ha="center", va="bottom", fontsize=7)
    im = ax_mat.imshow(J, cmap=_CMAP, vmin=-_JMAX, vmax=_JMAX)
    ax_mat.set_xticks(range(n), [str(j) for j in idx])
    ax_mat.set_yticks(range(n), [str(i) for i in idx])
    ax_mat.set_xlabel("j (logit $z_j$)")
    ax_mat.set_ylabel("i (output $s_i$)")
    if annotate and n <= 6:
        for i in range(n):
            for j in range(n):
                v = J[i, j]
                ax_mat.text(j, i, f"{v:.3f}".replace("-0.000", "0.000"), ha="center",
                            va="center", fontsize=7,
                            color="white" if abs(v) > 0.6 * _JMAX else "black")
    return im


@draws
def plot_jacobians(logits, titles=None) -> None:
    """Draw softmax(z) and its Jacobian J = diag(s) - s sᵀ for a few logit vectors.

    Top row: the probabilities s_i as bars. Bottom row: J[i, j] = ∂s_i/∂z_j as
    a heatmap on a diverging colour map centred at 0 (red positive, blue
    negative, white zero), all panels on the same scale [-1/4, 1/4].

    Args:
        logits: a sequence of 1-D logit vectors (each of any length n >= 1).
        titles: optional sequence of panel titles, one per vector.
    """
    zs = [as_float(f"logits[{k}]", z, ndim=1) for k, z in enumerate(logits)]
    if not zs:
        raise ValueError("logits: expected at least one logit vector, got none")
    titles = list(titles) if titles is not None else [None] * len(zs)
    if len(titles) != len(zs):
        raise ValueError(f"titles: expected {len(zs)} titles, one per logit vector, "
                         f"got {len(titles)}")
    k = len(zs)
    fig, axes = plt.subplots(2, k, figsize=(3.3 * k + 0.8, 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 2.2]}, layout="constrained")
    im = None
    for c, (z, t) in enumerate(zip(zs, titles, strict=True)):
        im = _draw(axes[0, c], axes[1, c], z, t)
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.85, label="$J_{ij} = ∂s_i/∂z_j$")
    plt.show()


@draws
def plot_loss_gradients(n_classes: int = 3, margin_range: float = 8.0) -> None:
    """Cross-entropy vs mean squared error after a softmax, as the true class's logit moves.

    The true class is class 1; its logit is t and the other logits are 0.
    Left: both losses as functions of t. Right: ∂L/∂t, the gradient on the true
    class's logit. Cross-entropy gives s_1 - 1, which tends to -1 when the
    network is confidently wrong (t very negative); MSE gives J(s - y), whose
    factor s makes it vanish exactly there.

    Args:
        n_classes: C >= 2.
        margin_range: t runs over [-margin_range, margin_range].
    """
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes: expected an int >= 2, got {n_classes!r}")
    t = np.linspace(-margin_range, margin_range, 401)
    Z = np.zeros((t.size, n_classes))
    Z[:, 0] = t
    E = np.exp(Z - Z.max(axis=1, keepdims=True))  # each row shifted by its max
    S = E / E.sum(axis=1, keepdims=True)
    y = np.eye(n_classes)[0]
    ce = -np.log(S[:, 0])
    mse = 0.5 * ((S - y) ** 2).sum(axis=1)
    g_ce = S[:, 0] - 1.0
    # MSE through softmax: dz = Jᵀ (s - y) = s ⊙ ((s - y) - (s - y)·s), first entry
    d = S - y
    g_mse = S[:, 0] * (d[:, 0] - (d * S).sum(axis=1))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    ax1.plot(t, ce, label="cross-entropy  $-\\log s_1$")
    ax1.plot(t, mse, label="MSE  $\\frac{1}{2}\\|s - y\\|^2$")
    ax1.set_xlabel("$t$ = logit of the true class (the others are 0)")
    ax1.set_ylabel("loss")
    ax1.set_ylim(0, min(float(ce.max()), 6.0))
    ax1.legend()
    ax2.plot(t, g_ce, label="cross-entropy: $s_1 - 1$")
    ax2.plot(t, g_mse, label="MSE: $(J(s - y))_1$")
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.axvspan(-margin_range, -3, color="tab:red", alpha=0.08)
    ax2.text(-margin_range + 0.3, -0.9, "confidently wrong:\nMSE barely pushes", fontsize=8,
             va="bottom")
    ax2.set_xlabel("$t$")
    ax2.set_ylabel("$∂L/∂t$")
    ax2.set_ylim(-1.1, 0.1)
    ax2.legend(loc="lower right")
    plt.show()
