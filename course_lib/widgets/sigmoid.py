"""Lesson 02: σ and its slope at a point, saturation, and gradients through a deep stack.

Left: σ(z) with its tangent line at the slider's z; the slope of that line is
σ'(z), read off by complex step. Where σ' < 0.01 (|z| beyond about 4.6) the
curve is flat: shaded, *saturated*, a neuron there barely learns.

Middle: a stack of L layers of one unit each, z_1 = z, a_k = act(z_k),
z_{k+1} = w·a_k + b. The gradient of the top output with respect to a lower
layer is a product of one factor w·act'(z_k) per layer, so it shrinks (or
grows) geometrically with depth: sigmoid's factors are at most w/4, tanh's up
to w, ReLU's exactly w or 0. Each curve shows |∂a_L/∂z_k| for k = 1..L, computed
by complex step on the whole stack (not by multiplying the factors).

    >>> from course_lib.widgets import SigmoidExplorer
    >>> SigmoidExplorer()
    >>> SigmoidExplorer(student_sigmoid_prime=sigmoid_prime)   # your σ' beside it

A second explorer runs the same experiment on a wide network: :class:`VanishingExplorer`
(sliders ``depth`` and ``log2(weights ×)``, a menu for the activation) shows how
much of the backpropagated error δ reaches each layer of a deep random MLP of 64
units per layer, for sigmoid, tanh and ReLU (:func:`delta_norms_by_layer`).

    >>> from course_lib.widgets import VanishingExplorer
    >>> VanishingExplorer()
"""

from __future__ import annotations

import html
from collections.abc import Callable
from functools import cached_property, lru_cache

import numpy as np

from course_lib import nets
from course_lib._drawing import GRADING
from course_lib._validate import check_choice, check_positive
from course_lib.gradcheck import numerical_gradient

from . import complex_step as cs
from ._base import (
    Control,
    Explorer,
    Logic,
    _ipywidgets,
    as_array,
    call_student,
    check_span,
    fmt,
    num_span,
    rel_err,
    table,
)

__all__ = ["SigmoidLogic", "SigmoidExplorer", "STACK_ACTIVATIONS", "SATURATION",
           "delta_norms_by_layer", "VanishingLogic", "VanishingExplorer"]

STACK_ACTIVATIONS = ("sigmoid", "tanh", "relu")
#: σ'(z) below this counts as saturated (shaded)
SATURATION = 0.01
MAX_DEPTH = 20


def _stack(act: Callable, z1: float, depth: int, w: float, b: float):
    """Forward values and complex-step gradients of a depth-``depth`` stack.

    Runs ``depth`` copies of the stack side by side; copy j gets its nudge
    ``+ih`` at layer j's pre-activation, so after the last layer its
    imaginary part / h is ∂a_L/∂z_j. Returns (z, a, grads): the real
    pre-activations and activations per layer and ∂a_L/∂z_k for k = 1..L.
    """
    zc = np.full(depth, z1, dtype=np.complex128)
    zs, acts = [], []
    for k in range(depth):
        zs.append(zc[k].real)
        zc[k] += 1j * cs.H
        a = act(zc)
        acts.append(a[k].real)
        if k < depth - 1:
            zc = w * a + b
    return np.array(zs), np.array(acts), a.imag / cs.H


def _stack_output(act: Callable, z1: float, depth: int, w: float, b: float) -> float:
    z = np.complex128(z1)
    for k in range(depth):
        a = act(z)
        if k < depth - 1:
            z = w * a + b
    return float(np.real(a))


class SigmoidLogic(Logic):
    """The numbers of :class:`SigmoidExplorer`.

    Sliders (``state``): ``z`` (-10..10), ``depth`` (1..20), ``w`` and ``b``
    (the weight and bias between the stacked layers).

    :meth:`values` returns:

    * ``"sigmoid(z)"``, ``"dsigmoid/dz"`` (complex step),
      ``"dsigmoid/dz (finite diff)"`` and, with ``student_sigmoid_prime``,
      ``"dsigmoid/dz (yours)"``;
    * for each act in sigmoid, tanh, relu: ``"a_L (act)"``,
      ``"da_L/dz_k (act)"`` for k = 1..depth (complex step),
      ``"z_k (act)"`` and ``"act'(z_k)"`` (each layer's local slope, complex
      step), ``"product of factors (act)"`` (Π w·act'(z_k), the chain rule
      spelled out, with w^(L-1) as there are L-1 weights) and
      ``"da_L/dz_1 (act) (finite diff)"``.
    """

    def __init__(self, student_sigmoid_prime: Callable | None = None) -> None:
        self.controls = {
            "z": Control("z", 1.0, -10.0, 10.0, 0.05, "z"),
            "depth": Control("depth", 6, 1, MAX_DEPTH, 1, "depth L", integer=True),
            "w": Control("w", 1.0, -4.0, 4.0, 0.05, "weight w"),
            "b": Control("b", 0.0, -4.0, 4.0, 0.05, "bias b"),
        }
        self.student_sigmoid_prime = student_sigmoid_prime
        self.student_error: str | None = None
        super().__init__()

    def values(self) -> dict[str, float]:
        z, L = self.state["z"], int(self.state["depth"])
        w, b = self.state["w"], self.state["b"]

        # The activations, complex-safe (each branch decided on the real part), are
        # written here, inside values(), on purpose: they only ever see the sliders'
        # values. A σ that any caller could evaluate would be σ itself, and its
        # complex-step derivative σ', answers of lesson 02 (COURSE.md: no helper a
        # student can import returns a graded function's answer).
        def sigmoid(v):
            v = np.asarray(v)
            e = np.exp(np.where(v.real >= 0, -v, v))  # the exponent is never positive
            return np.where(v.real >= 0, 1 / (1 + e), e / (1 + e))

        def relu(v):
            v = np.asarray(v)
            return np.where(v.real > 0, v, 0 * v)  # ReLU'(0) = 0

        activations = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": relu}
        out: dict[str, float] = {
            "z": z,
            "sigmoid(z)": float(np.real(sigmoid(z))),
            "dsigmoid/dz": cs.derivative(sigmoid, z),
        }
        x = np.array([z])
        out["dsigmoid/dz (finite diff)"] = float(
            numerical_gradient(lambda v: float(np.real(sigmoid(v[0]))), x)[0])
        self.student_error = None
        res, err = call_student(self.student_sigmoid_prime, np.array([z]))
        if res is not None:
            try:
                out["dsigmoid/dz (yours)"] = float(as_array(res).reshape(-1)[0])
            except (TypeError, ValueError, IndexError) as exc:
                self.student_error = f"expected an array of σ'(z) values: {exc}"
        self.student_error = self.student_error or err
        for name in STACK_ACTIVATIONS:
            act = activations[name]
            zs, acts, grads = _stack(act, z, L, w, b)
            slopes = cs.derivative(act, zs)
            out[f"a_L ({name})"] = float(acts[-1])
            for k in range(L):
                out[f"z_{k + 1} ({name})"] = float(zs[k])
                out[f"{name}'(z_{k + 1})"] = float(slopes[k])
                out[f"da_L/dz_{k + 1} ({name})"] = float(grads[k])
            out[f"product of factors ({name})"] = float(np.prod(slopes) * w ** (L - 1))
            out[f"da_L/dz_1 ({name}) (finite diff)"] = float(numerical_gradient(
                lambda v, act=act: _stack_output(act, v[0], L, w, b), np.array([z]))[0])
        return out

    def relu_kinks(self, tol: float = 1e-4) -> list[int]:
        """Layers k whose ReLU input z_k is within ``tol`` of 0 (ReLU's kink)."""
        z, w, b = self.state["z"], self.state["w"], self.state["b"]
        kinks = []
        for k in range(int(self.state["depth"])):
            if abs(z) < tol:
                kinks.append(k + 1)
            z = w * max(z, 0.0) + b
        return kinks


class SigmoidExplorer(Explorer):
    """Sliders z, depth, w, b; σ with its tangent and saturation, and gradients through depth.

    Args:
        student_sigmoid_prime: optional, your ``sigmoid_prime(z)``; its value
            at z is shown beside the complex-step one.

    Displays (readout text): ``sigmoid(z) = 0.7311``, ``dsigmoid/dz = 0.1966``
    (class ``cl-grad``), ``dsigmoid/dz (finite diff) = ...`` (``cl-fd``),
    ``dsigmoid/dz (yours) = ...``; then tables whose cells carry the number
    alone with its name in ``data-name``: per activation
    ``da_L/dz_1 (sigmoid)``, ``product of factors (sigmoid)``,
    ``da_L/dz_1 (sigmoid) (finite diff)``, and per layer k
    ``z_k (act)``, ``act'(z_k)``, ``da_L/dz_k (act)``.
    """

    title = "σ(z): slope, saturation and vanishing gradients"

    def __init__(self, student_sigmoid_prime: Callable | None = None) -> None:
        super().__init__(SigmoidLogic(student_sigmoid_prime))

    _floor = 1e-14  # |gradients| below this sit on the bottom of the log plot

    def _build_figure(self):
        from ._render import COLORS, BlitFigure

        bf = BlitFigure((10.5, 3.9))
        fig = bf.fig
        ax = fig.add_axes((0.055, 0.13, 0.40, 0.75))
        ax2 = fig.add_axes((0.545, 0.13, 0.315, 0.75))
        self._ax, self._ax2 = ax, ax2

        # σ and σ' on this fixed axis only (|t| <= 10: 1 / (1 + e^-t) is safe), written
        # out here rather than taken from a helper: see values()
        t = np.linspace(-10, 10, 801)
        sc = 1 / (1 + np.exp(-(t + 1j * cs.H)))  # complex step: σ' is in the imaginary part
        s, ds = sc.real, sc.imag / cs.H
        flat = ds < SATURATION
        ax.fill_between(t, -0.15, 1.15, where=flat, color=COLORS["shade"], lw=0,
                        label=f"saturated: σ' < {SATURATION:g}")
        ax.plot(t, s, color=COLORS["sigmoid"], lw=2.2, label="σ(z)")
        ax.plot(t, ds, color="#e36209", lw=1.8, ls="--", label="σ'(z) (complex step)")
        ax.axhline(0, color="#d0d7de", lw=0.8, zorder=0)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-0.12, 1.12)
        ax.set_xlabel("z")
        ax.set_title("σ(z) and its tangent at z", fontsize=11)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.text(-9.7, 0.52, "flat:\nlearns\nslowly", fontsize=8, color="#b42318", va="center")
        ax.text(9.7, 0.52, "flat:\nlearns\nslowly", fontsize=8, color="#b42318", va="center",
                ha="right")
        self._tangent = bf.dynamic(ax.plot([], [], color="#6f42c1", lw=1.6)[0])
        self._vline = bf.dynamic(ax.axvline(0, color="#8c959f", lw=0.8, ls=":"))
        self._pt = bf.dynamic(ax.plot([], [], "o", color=COLORS["sigmoid"], ms=7, zorder=5)[0])
        self._dpt = bf.dynamic(ax.plot([], [], "o", color="#e36209", ms=6, zorder=5)[0])
        self._lab_s = bf.label(ax, 0, 0, offset=(8, 4), ha="left", va="bottom", size=9.5,
                               bold=True, color=COLORS["sigmoid"])
        self._lab_ds = bf.label(ax, 0, 0, offset=(8, -4), ha="left", va="top", size=9.5,
                                bold=True, color=COLORS["grad"])

        ax2.set_yscale("log")
        ax2.set_xlim(0.5, MAX_DEPTH + 0.5)
        ax2.set_ylim(self._floor, 1e14)
        ax2.set_yticks([10.0 ** e for e in range(-14, 15, 4)])
        ax2.set_xticks(range(1, MAX_DEPTH + 1, 2 if MAX_DEPTH > 10 else 1))
        ax2.set_xlabel("layer k")
        ax2.set_ylabel("|∂a_L / ∂z_k|")
        ax2.set_title("gradient reaching layer k from the top layer L", fontsize=11)
        ax2.axhline(1.0, color="#d0d7de", lw=0.8, zorder=0)
        ax2.grid(True, which="major", axis="y", color="#eaeef2", lw=0.6)
        self._lines = {}
        self._end = {}
        for i, name in enumerate(STACK_ACTIVATIONS):
            self._lines[name] = bf.dynamic(ax2.plot([], [], "o-", color=COLORS[name], lw=1.8,
                                                    ms=4, label=name)[0])
            self._end[name] = bf.label(None, 0.868, 0.79 - 0.075 * i, ha="left", va="center",
                                       size=9, bold=True, color=COLORS[name])
        ax2.legend(loc="upper left", fontsize=8, frameon=False, ncols=3)
        self._depth_line = bf.dynamic(ax2.axvline(1, color="#8c959f", lw=0.8, ls=":"))
        fig.text(0.868, 0.86, "∂a_L/∂z_1:", fontsize=9, color=COLORS["local"])
        return bf

    def _draw(self, v) -> None:
        z = v["z"]
        s, ds = v["sigmoid(z)"], v["dsigmoid/dz"]
        t = np.array([z - 3.0, z + 3.0])
        self._tangent.set_data(t, s + ds * (t - z))
        self._vline.set_xdata([z, z])
        self._pt.set_data([z], [s])
        self._dpt.set_data([z], [ds])
        left = z > 4
        for lab, y, text in ((self._lab_s, s, f"σ(z) = {fmt(s, 3)}"),
                             (self._lab_ds, ds, f"σ'(z) = {fmt(ds, 3)}")):
            lab.x, lab.y, lab.text = z, y, text
            lab.ha = "right" if left else "left"
            lab.offset = (-8 if left else 8, lab.offset[1])
        L = int(self.logic.state["depth"])
        k = np.arange(1, L + 1)
        for name in STACK_ACTIVATIONS:
            g = np.abs([v[f"da_L/dz_{j} ({name})"] for j in k])
            self._lines[name].set_data(k, np.maximum(g, self._floor))
        self._depth_line.set_xdata([L, L])
        for name in STACK_ACTIVATIONS:
            g1 = v[f"da_L/dz_1 ({name})"]
            self._end[name].text = f"{name}: {fmt(g1, 3) if g1 != 0 else '0 (dead)'}"

    def _readout(self, v) -> str:
        lg: SigmoidLogic = self.logic
        L = int(lg.state["depth"])
        ds = v["dsigmoid/dz"]
        sat = ds < SATURATION
        parts = [
            '<div class="cl-big">', num_span("sigmoid(z)", v["sigmoid(z)"], "value"), " &nbsp; ",
            num_span("dsigmoid/dz", ds), "</div>",
            "<div>", num_span("dsigmoid/dz (finite diff)", v["dsigmoid/dz (finite diff)"], "fd"),
            " ", check_span(rel_err(ds, v["dsigmoid/dz (finite diff)"])), "</div>"]
        if "dsigmoid/dz (yours)" in v:
            mine = v["dsigmoid/dz (yours)"]
            parts += ["<div>", num_span("dsigmoid/dz (yours)", mine, "student"), " ",
                      check_span(rel_err(ds, mine), 1e-7), "</div>"]
        if lg.student_error:
            parts.append(f'<div class="cl-bad">your sigmoid_prime: '
                         f"{html.escape(lg.student_error)}</div>")
        parts.append(f'<div class="cl-note">{"saturated: " if sat else ""}'
                     f"σ'(z) is {fmt(ds / 0.25 * 100, 3)}% of its maximum 1/4</div>")
        rows = []
        for name in STACK_ACTIVATIONS:
            g = v[f"da_L/dz_1 ({name})"]
            rows.append([name, num_span(f"da_L/dz_1 ({name})", g, bare=True),
                         num_span(f"product of factors ({name})",
                                  v[f"product of factors ({name})"], "value", bare=True),
                         num_span(f"da_L/dz_1 ({name}) (finite diff)",
                                  v[f"da_L/dz_1 ({name}) (finite diff)"], "fd", bare=True)])
        parts.append(f"<div style='margin-top:6px'>a stack of L = {L} layers "
                     f"(w = {fmt(lg.state['w'])}, b = {fmt(lg.state['b'])}):</div>")
        parts.append(table(["", "∂a_L/∂z_1 (complex step)", "Π act'(z_k) · w^(L-1)",
                            "finite differences"], rows))
        kinks = lg.relu_kinks()
        if kinks:
            parts.append('<div class="cl-note">ReLU input z_k = 0 at layer '
                         f"{', '.join(map(str, kinks))}: ReLU'(0) = 0 by the course's convention "
                         "(as in PyTorch), while central differences average the slopes on "
                         "both sides.</div>")
        lrows = []
        for k in range(1, L + 1):
            row = [str(k)]
            for name in STACK_ACTIVATIONS:
                row += [num_span(f"z_{k} ({name})", v[f"z_{k} ({name})"], "value", 3, bare=True),
                        num_span(f"{name}'(z_{k})", v[f"{name}'(z_{k})"], "cl-local", 3,
                                 bare=True),
                        num_span(f"da_L/dz_{k} ({name})", v[f"da_L/dz_{k} ({name})"], "grad", 3,
                                 bare=True)]
            lrows.append(row)
        head = ["k"] + ["z_k", "act'(z_k)", "∂a_L/∂z_k"] * len(STACK_ACTIVATIONS)
        groups = [("", 1)] + [(name, 3) for name in STACK_ACTIVATIONS]
        parts.append('<div style="max-height:190px;overflow-y:auto">'
                     + table(head, lrows, groups=groups) + "</div>")
        return "".join(parts)


# ---------------------------------------------------------------------------
# vanishing gradients in a wide, deep random network
# ---------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _random_stack(scale: str, depth: int, width: int, n_samples: int, seed: int):
    """The weights of a ``depth``-layer MLP of ``width`` units (``nets.init_params``,
    biases 0), an N(0, 1) input batch and a random upstream gradient for its top.

    ``init_params`` draws the layers in order from one generator, so the first d
    layers of a deeper stack are the d-layer stack: one deep stack serves every
    depth (the explorer's depth slider costs no new draw). Read-only arrays.
    """
    Ws = tuple(W for W, _ in nets.init_params([width] * (depth + 1), seed=seed, scale=scale))
    rng = np.random.default_rng([seed, 1])
    A0 = rng.standard_normal((n_samples, width))
    dA = rng.standard_normal((n_samples, width)) / n_samples
    for a in (*Ws, A0, dA):
        a.setflags(write=False)
    return Ws, A0, dA


def _delta_norms(activation: str, Ws, A0, dA, weight_scale: float) -> dict[str, np.ndarray]:
    derivs, weights, A = [], [], A0
    for W in Ws:
        W = W * weight_scale
        Z = A @ W.T  # the biases are 0
        # each layer's activation and its slope f'(Z), for this simulation only
        if activation == "sigmoid":
            A = 0.5 * (1.0 + np.tanh(0.5 * Z))  # σ, written with tanh: never overflows
            d = A * (1.0 - A)
        elif activation == "tanh":
            A = np.tanh(Z)
            d = 1.0 - A * A
        else:
            A = np.maximum(Z, 0.0)
            d = np.where(Z > 0, 1.0, 0.0)  # ReLU'(0) = 0
        derivs.append(d)
        weights.append(W)
    depth = len(Ws)
    norms = np.empty(depth)
    for layer in range(depth - 1, -1, -1):
        dZ = dA * derivs[layer]
        norms[layer] = np.linalg.norm(dZ)
        dA = dZ @ weights[layer]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = norms / norms[-1]
    saturated = np.array([np.mean(d < 0.01) for d in derivs])
    return {"ratio": ratio, "saturated": saturated}


def delta_norms_by_layer(activation: str, depth: int = 30, width: int = 64,
                         n_samples: int = 32, weight_scale: float = 1.0,
                         seed: int = 0) -> dict[str, np.ndarray]:
    """How big the backpropagated error δ is in each layer of a deep random MLP.

    The network has ``depth`` layers of ``width`` units, all with the same
    activation, biases 0 and weights from ``nets.init_params`` (Xavier for
    sigmoid and tanh, He for ReLU: each activation's usual initialisation)
    multiplied by ``weight_scale``. The input is N(0, 1) noise, and the top
    layer receives a random upstream gradient dA. Going down,
    ``dZ = dA * f'(Z)`` and ``dA_prev = dZ @ W``, exactly as in backprop.

    Args:
        activation: "sigmoid", "tanh" or "relu".
        depth: number of layers, >= 1.
        width: units per layer.
        n_samples: rows of the input batch.
        weight_scale: factor applied to every initial weight (1 = the usual init).
        seed: int >= 0.
    Returns:
        dict with ``ratio`` (shape (depth,)): ‖dZ^(l)‖ / ‖dZ^(depth)‖ for
        l = 1..depth (so the last entry is 1), and ``saturated`` (shape
        (depth,)): the share of units per layer with f'(z) < 0.01.
    """
    check_choice("activation", activation, STACK_ACTIVATIONS)
    for name, value in (("depth", depth), ("width", width), ("n_samples", n_samples)):
        check_positive(name, value, integer=True)
    check_positive("weight_scale", weight_scale)
    check_positive("seed", seed, integer=True, allow_zero=True)
    Ws, A0, dA = _random_stack("he" if activation == "relu" else "xavier", int(depth),
                               int(width), int(n_samples), int(seed))
    return _delta_norms(activation, Ws, A0, dA, float(weight_scale))


#: the deepest network of VanishingExplorer's depth slider
MAX_NET_DEPTH = 50
NET_WIDTH = 64


class VanishingLogic(Logic):
    """The numbers of :class:`VanishingExplorer`: δ per layer of a deep 64-unit MLP.

    Sliders (``state``): ``depth`` (2..50) and ``log2_scale`` (-2..2 in steps
    of 0.25: every initial weight is multiplied by 2 ** log2_scale).
    ``activation`` (``"all three"``, ``"sigmoid"``, ``"tanh"``, ``"relu"``)
    chooses the curves drawn; every number is computed for all three.

    :meth:`values` returns ``"depth"``, ``"weights ×"``; for each act in
    sigmoid, tanh, relu: ``"ratio_l (act)"`` = ‖δ^(l)‖ / ‖δ^(L)‖ for l = 1..depth
    (:func:`delta_norms_by_layer`), ``"saturated (act)"`` (the share of the
    network's units with f'(z) < 0.01, in %), and ``"per layer (act)"``, the
    geometric mean factor by which δ shrinks (< 1) or grows per layer.

    The same numbers as :func:`delta_norms_by_layer`, computed so that a slider
    move stays cheap: the forward pass does not depend on the depth (the first L
    layers of the 50-layer stack are the depth-L network), so it runs once per
    weight scale, for every scale when the logic is built (:meth:`_forward`); a move
    then runs only the backward pass, the three activations side by side in one
    batched product per layer. Each (depth, scale) result is kept: a position
    already visited costs nothing.
    """

    CHOICES = ("all three",) + STACK_ACTIVATIONS

    def __init__(self, activation: str = "all three") -> None:
        self.controls = {
            "depth": Control("depth", 20, 2, MAX_NET_DEPTH, 1, "depth", integer=True),
            "log2_scale": Control("log2_scale", 0.0, -2.0, 2.0, 0.25, "log2(weights ×)"),
        }
        self.set_activation(activation)
        self._results: dict[tuple[int, float], tuple] = {}
        self._forwards: dict[float, dict] = {}  # weight scale -> its forward pass
        super().__init__()

    @cached_property
    def _networks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(W, A0, dA), drawn when first needed (30 ms; the grading kernel never needs
        them): W is (layer, activation, out, in), layer l's weights for the three
        networks side by side; the input batch A0 and the upstream dA come from one
        generator, the same for all three."""
        stacks = {name: _random_stack("he" if name == "relu" else "xavier", MAX_NET_DEPTH,
                                      NET_WIDTH, 32, 0) for name in STACK_ACTIVATIONS}
        W = np.stack([np.stack([stacks[name][0][layer] for name in STACK_ACTIVATIONS])
                      for layer in range(MAX_NET_DEPTH)])
        _, A0, dA = stacks["sigmoid"]
        return W, A0, dA

    def precompute(self) -> None:
        """Every weight scale's forward pass, now (some 80 ms, 1.7 MB each): a move of
        either slider then runs only a backward pass. The explorer calls it before it
        shows the sliders; without it each scale's pass runs when first needed (the
        grading kernel, which shows nothing, pays for the one scale it computes)."""
        c = self.controls["log2_scale"]
        for e in (c.snap(v) for v in np.arange(c.min, c.max + c.step / 2, c.step)):
            self._forward_at(e)

    def _forward_at(self, log2_scale: float) -> dict:
        if log2_scale not in self._forwards:
            self._forwards[log2_scale] = self._forward(log2_scale)
        return self._forwards[log2_scale]

    def set_activation(self, activation: str) -> None:
        """Which curves the figure draws (the numbers are always all three)."""
        self.activation = check_choice("activation", activation, self.CHOICES)

    @property
    def shown(self) -> tuple[str, ...]:
        return STACK_ACTIVATIONS if self.activation == "all three" else (self.activation,)

    def _forward(self, log2_scale: float) -> dict:
        """The forward pass through all MAX_NET_DEPTH layers at this weight scale: each
        layer's slopes f'(Z), ``"d"`` (depth, 2, N, width) for sigmoid and tanh and
        ``"relu"`` (depth, N, width) for ReLU (0 or 1: kept as booleans, 8 times
        smaller), and the share of units with f'(Z) < 0.01, ``"saturated"`` (depth,
        3). As in :func:`_delta_norms`, operation for operation: the same numbers."""
        scale = 2.0 ** log2_scale
        W, A0, _ = self._networks
        d = np.empty((MAX_NET_DEPTH, 2) + A0.shape)
        relu = np.empty((MAX_NET_DEPTH,) + A0.shape, dtype=bool)
        saturated = np.empty((MAX_NET_DEPTH, 3))
        A = np.broadcast_to(A0, (3,) + A0.shape)
        for layer in range(MAX_NET_DEPTH):
            Z = A @ (W[layer] * scale).transpose(0, 2, 1)  # the biases are 0
            A = np.empty_like(Z)
            A[0] = 0.5 * (1.0 + np.tanh(0.5 * Z[0]))  # sigmoid
            d[layer, 0] = A[0] * (1.0 - A[0])
            A[1] = np.tanh(Z[1])
            d[layer, 1] = 1.0 - A[1] * A[1]
            A[2] = np.maximum(Z[2], 0.0)
            np.greater(Z[2], 0, out=relu[layer])  # ReLU'(0) = 0
            saturated[layer, :2] = (d[layer] < 0.01).mean(axis=(1, 2))
            saturated[layer, 2] = 1.0 - relu[layer].mean()
        return {"scale": scale, "d": d, "relu": relu, "saturated": saturated}

    def _compute(self, depth: int, log2_scale: float) -> tuple:
        """(‖δ^(l)‖ / ‖δ^(L)‖ as (depth, 3), saturated share (3,), factor per layer (3,))."""
        fw = self._forward_at(log2_scale)
        W, _, dA_out = self._networks
        dZ = np.empty((depth, 3) + dA_out.shape)
        dA = np.broadcast_to(dA_out, (3,) + dA_out.shape)
        for layer in range(depth - 1, -1, -1):
            np.multiply(dA[:2], fw["d"][layer], out=dZ[layer, :2])
            np.multiply(dA[2], fw["relu"][layer], out=dZ[layer, 2])  # × 1.0 or × 0.0
            dA = dZ[layer] @ (W[layer] * fw["scale"])
        norms = np.sqrt(np.einsum("lanw,lanw->la", dZ, dZ))  # ‖dZ‖ per layer and activation
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = norms / norms[-1]
        saturated = np.mean(fw["saturated"][:depth], axis=0)
        r1 = ratio[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(r1 > 0, r1 ** (1.0 / (depth - 1)), 0.0)
        return ratio, saturated, per

    def values(self) -> dict[str, float]:
        L = int(self.state["depth"])
        e = self.state["log2_scale"]
        key = (L, e)
        if key not in self._results:
            self._results[key] = self._compute(L, e)
        ratio, saturated, per = self._results[key]
        out: dict[str, float] = {"depth": float(L), "weights ×": 2.0 ** e}
        for a, name in enumerate(STACK_ACTIVATIONS):
            for layer, r in enumerate(ratio[:, a].tolist(), start=1):
                out[f"ratio_{layer} ({name})"] = r
            out[f"saturated ({name})"] = 100.0 * float(saturated[a])
            out[f"per layer ({name})"] = float(per[a])
        return out


class VanishingExplorer(Explorer):
    """Sliders depth and log2(weights ×), a menu for the activation; δ per layer, live.

    Args:
        activation: the curves shown first (``"all three"`` by default).

    Displays (readout text): per activation ``‖δ¹‖/‖δᴸ‖`` as
    ``ratio_1 (sigmoid) = 3.1e-12`` (class ``cl-grad``), the factor per layer
    and the share of saturated units (inactive, for ReLU).
    """

    title = "How much of the gradient reaches each layer of a deep network (64 units a layer)"
    _decades = 12  # decade labels kept ready on the y axis

    def __init__(self, activation: str = "all three") -> None:
        logic = VanishingLogic(activation)
        if GRADING:  # nothing is drawn while grading: no controls, no ipywidgets import
            super().__init__(logic)
            return
        logic.precompute()  # the sliders move at once from the first touch
        W = _ipywidgets()
        self.activation_menu = W.Dropdown(options=list(logic.CHOICES), value=logic.activation,
                                          description="activation",
                                          style={"description_width": "90px"},
                                          layout=W.Layout(width="260px"))
        self.activation_menu.observe(
            lambda ch: self._guarded(lambda: self.logic.set_activation(ch["new"])),
            names="value")
        super().__init__(logic)

    def _control_children(self) -> list:
        return list(self.sliders.values()) + [self.activation_menu]

    def _build_figure(self):
        from matplotlib.ticker import NullLocator

        from ._render import COLORS, BlitFigure

        bf = BlitFigure((9.0, 4.2))
        ax = bf.fig.add_axes((0.1, 0.13, 0.62, 0.78))
        self._ax = ax
        ax.set_yscale("log")
        # the y axis moves with the data (from 1e-60 to 1e30 over the sliders' range):
        # its ticks, grid and labels are dynamic, so the background never needs redrawing
        ax.set_yticks([])
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlim(0.5, MAX_NET_DEPTH + 0.5)
        ax.set_xlabel("layer l (1 = next to the input; the loss is above the top layer L)")
        ax.set_ylabel("‖δ⁽ˡ⁾‖ / ‖δ⁽ᴸ⁾‖", labelpad=34)
        # every grid line in one artist (x in axes fractions, y in data), broken by NaNs:
        # one draw call a move instead of one per line
        self._grid = bf.dynamic(ax.plot([], [], color="#eaeef2", lw=0.7, zorder=0,
                                        transform=ax.get_yaxis_transform())[0])
        self._ticks = [bf.label(ax, 0.0, 1.0, size=8, ha="right", color="#424a53")
                       for _ in range(self._decades)]
        self._one = bf.dynamic(ax.axhline(1.0, color="#8c959f", lw=0.9, ls=":"))
        self._lines = {name: bf.dynamic(ax.plot([], [], "o-", ms=3, lw=1.6,
                                                color=COLORS[name])[0])
                       for name in STACK_ACTIVATIONS}
        self._legend = {name: bf.label(None, 0.735, 0.84 - 0.12 * i, ha="left", va="center",
                                       size=9.5, bold=True, color=COLORS[name])
                        for i, name in enumerate(STACK_ACTIVATIONS)}
        self._legend2 = {name: bf.label(None, 0.735, 0.80 - 0.12 * i, ha="left", va="center",
                                        size=8.5, color=COLORS["local"])
                         for i, name in enumerate(STACK_ACTIVATIONS)}
        self._head = bf.label(None, 0.1, 0.955, ha="left", va="center", size=11, bold=True)
        return bf

    def _draw(self, v) -> None:
        lg: VanishingLogic = self.logic
        L = int(v["depth"])
        layers = np.arange(1, L + 1)
        shown, lo, hi = lg.shown, 0.0, 0.0
        for name, line in self._lines.items():
            ratio = np.array([v[f"ratio_{k} ({name})"] for k in layers])
            ratio = np.where(ratio > 0, ratio, np.nan)  # log scale: drop exact 0
            line.set_data(layers, ratio)
            line.set_visible(name in shown)
            if name in shown and np.any(np.isfinite(ratio)):
                lo = min(lo, float(np.log10(np.nanmin(ratio))))
                hi = max(hi, float(np.log10(np.nanmax(ratio))))
            per, sat = v[f"per layer ({name})"], v[f"saturated ({name})"]
            self._legend[name].text = (f"{name}: ×{fmt(per, 3)} per layer" if name in shown
                                       else "")
            kind = "inactive (f' = 0)" if name == "relu" else "saturated (f' < 0.01)"
            self._legend2[name].text = f"{sat:.0f}% of units {kind}" if name in shown else ""
        # decades: a step of 1, 2, 5, 10, ... so that at most 8 labels show
        lo, hi = np.floor(lo - 0.5), np.ceil(hi + 0.5)
        step = next(s for s in (1, 2, 5, 10, 15, 20, 30) if (hi - lo) / s <= 8)
        lo, hi = step * np.floor(lo / step), step * np.ceil(hi / step)
        self._ax.set_ylim(10.0 ** lo, 10.0 ** hi)
        exps = np.arange(lo, hi + 0.5, step)
        gy = np.repeat(10.0 ** exps[:len(self._ticks)], 3)
        gy[2::3] = np.nan
        self._grid.set_data(np.tile([0.0, 1.0, np.nan], len(gy) // 3), gy)
        for i, lab in enumerate(self._ticks):
            lab.visible = i < len(exps)
            if lab.visible:
                e = int(exps[i])
                lab.x, lab.y, lab.offset = 0.5, 10.0 ** e, (-4, 0)
                lab.text = "1" if e == 0 else f"1e{e}"
        self._head.text = (f"depth {L}, weights × {fmt(v['weights ×'], 3)} "
                           f"(× the usual initialisation)")

    def _readout(self, v) -> str:
        L = int(v["depth"])
        rows = []
        for name in STACK_ACTIVATIONS:
            rows.append([name,
                         num_span(f"ratio_1 ({name})", v[f"ratio_1 ({name})"], bare=True),
                         num_span(f"per layer ({name})", v[f"per layer ({name})"], "value",
                                  bare=True),
                         f"{v[f'saturated ({name})']:.0f}%"])
        return (f"<div>δ reaching layer 1 of {L}, relative to the top layer:</div>"
                + table(["", "‖δ¹‖ / ‖δᴸ‖", "factor per layer", "saturated / inactive units"],
                        rows)
                + '<div class="cl-note">Each layer multiplies δ by its weights and its '
                  "slopes f'(z): the gradient vanishes or explodes geometrically, a straight "
                  "line on this log scale.</div>")
